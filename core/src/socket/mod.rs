//! The client WebSocket under the ws-compatible JavaScript socket: the handshake, framing,
//! one task per open connection, and TLS with verification always on.
//!
//! - [`api`]: the public types (options, commands, events, the event sink);
//! - [`shared`]: the state an owner and its connection share, and the owner's [`Handle`];
//! - [`open`]: the handshake driver, which hands an open connection to its task;
//! - [`task`]: the open connection's one task (reading, writing, closing);
//! - [`inline`]: the owner reading a sparse connection on its own thread; [`tcp`]: the
//!   TCP stream whose readability tokio stops watching meanwhile;
//! - [`batch`]: the packed-send format; [`frame`]: RFC 6455 framing; [`handshake`]: the
//!   HTTP upgrade; [`dial`]: the stream under it (DNS, TCP, a proxy's tunnel, TLS);
//!   [`connector`]: RFC 8305 address racing; [`proxy`]: proxy settings and the `CONNECT`
//!   tunnel; [`error`]: the errors reported to the owner;
//! - [`deflate`]: permessage-deflate's negotiation; [`compress`]: its per-message
//!   compression and inflation.

pub mod api;
pub mod batch;
pub mod budget;
pub mod compress;
pub mod connector;
pub mod deflate;
mod dial;
pub mod error;
pub mod frame;
pub mod handshake;
mod heartbeat;
pub mod inline;
pub mod open;
pub mod pool;
pub mod proxy;
pub mod shared;
pub mod task;
#[cfg(unix)]
pub mod tcp;
pub mod tls;
pub mod verify;

pub use api::{Command, Event, EventSink, SocketOptions, CONTROL_EVENT_COST};
pub use error::SocketError;
pub use handshake::ConnectOptions;
pub use open::connect;
pub use proxy::{ProxyConfig, ProxyServer};
pub use shared::{Handle, Shared};
