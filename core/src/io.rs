//! The byte-stream type shared by the relay and the client: plain TCP or TLS, boxed.

use tokio::io::{AsyncRead, AsyncWrite};

/// Any byte stream: plain TCP or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A boxed connection.
pub type IoStream = Box<dyn Io>;
