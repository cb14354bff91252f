//! The byte-stream type shared by the relay and the client: plain TCP or TLS, boxed.

use tokio::io::{AsyncRead, AsyncWrite};

/// Any byte stream: plain TCP or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A boxed connection.
pub type IoStream = Box<dyn Io>;

/// A connection socket's descriptor, for watching it for readability on another thread than
/// tokio's (see [`crate::socket::Handle::start_inline`]): the file descriptor on Unix.
pub type SocketFd = i32;

/// On while the owner reads a connection inline: tokio then does not watch its
/// readability (see `socket/tcp.rs`).
pub type ReadSwitch = std::sync::Arc<std::sync::atomic::AtomicBool>;

/// What the owner needs to read a connection inline: its socket's descriptor, and the
/// switch that takes readability away from tokio.
#[derive(Debug, Clone)]
pub struct Watchable {
    /// The TCP socket's descriptor.
    pub fd: SocketFd,
    /// The stream's switch.
    pub switch: ReadSwitch,
}
