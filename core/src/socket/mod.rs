//! The client WebSocket under the ws-compatible JavaScript socket: handshake, framing,
//! the reader and writer tasks, and TLS with verification always on.

pub mod connection;
pub mod frame;
pub mod handshake;
pub mod pool;
pub mod tls;
pub mod verify;

pub use connection::{connect, Command, Event, EventSink, Handle, SocketError, SocketOptions};
pub use handshake::ConnectOptions;
