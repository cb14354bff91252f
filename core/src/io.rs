//! The byte-stream type shared by the relay and the client: plain TCP or TLS, boxed.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

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

/// A stream that first yields bytes already read from it: what came after a proxy's
/// answer to CONNECT, or after a WebSocket handshake's answer (the first frames, which
/// the connection's first turn then reads as any).
pub(crate) struct Prefixed {
    prefix: Vec<u8>,
    at: usize,
    inner: IoStream,
}

impl Prefixed {
    /// `inner`, yielding `prefix` first (`inner` itself when there is none).
    pub(crate) fn stream(prefix: Vec<u8>, inner: IoStream) -> IoStream {
        if prefix.is_empty() {
            inner
        } else {
            Box::new(Prefixed {
                prefix,
                at: 0,
                inner,
            })
        }
    }
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.at < self.prefix.len() {
            let n = buf.remaining().min(self.prefix.len() - self.at);
            let at = self.at;
            buf.put_slice(&self.prefix[at..at + n]);
            self.at += n;
            if self.at == self.prefix.len() {
                self.prefix = Vec::new();
                self.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn the_prefix_is_read_first() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut s = Prefixed {
            prefix: b"abc".to_vec(),
            at: 0,
            inner: Box::new(a),
        };
        b.write_all(b"def").await.ok();
        drop(b);
        let mut all = Vec::new();
        s.read_to_end(&mut all).await.ok();
        assert_eq!(all, b"abcdef");
    }
}
