//! For tests: a stream that buffers writes as a TLS stream does, to check that the relay
//! flushes what it writes.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What a [`BufferingStream`] has taken and sent.
#[derive(Default)]
pub struct Buffered {
    /// Taken by a write, not sent yet.
    pub pending: Vec<u8>,
    /// Sent.
    pub sent: Vec<u8>,
    /// The socket under it can take bytes.
    pub writable: bool,
    /// Woken when it becomes writable.
    pub waker: Option<Waker>,
}

impl Buffered {
    /// Makes the socket writable; returns the waker of whoever waits for that.
    pub fn make_writable(state: &Mutex<Buffered>) -> Option<Waker> {
        let mut b = state.lock().unwrap();
        b.writable = true;
        b.waker.take()
    }
}

/// A stream that writes as tokio-rustls does: a write always takes the bytes and says so,
/// but they reach the socket only when it is writable, at that write, a later one or a
/// flush. Reads never complete.
pub struct BufferingStream(pub Arc<Mutex<Buffered>>);

impl BufferingStream {
    /// Sends what is pending if the socket is writable; otherwise registers `cx`'s waker.
    fn push(b: &mut Buffered, cx: &mut Context<'_>) -> bool {
        if b.writable {
            let pending = std::mem::take(&mut b.pending);
            b.sent.extend_from_slice(&pending);
            true
        } else {
            b.waker = Some(cx.waker().clone());
            false
        }
    }
}

impl AsyncRead for BufferingStream {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Poll::Pending
    }
}

impl AsyncWrite for BufferingStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let mut b = self.0.lock().unwrap();
        b.pending.extend_from_slice(buf);
        BufferingStream::push(&mut b, cx);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let mut b = self.0.lock().unwrap();
        if BufferingStream::push(&mut b, cx) {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.poll_flush(cx)
    }
}

/// Waits (at most 5 s) until `done` holds for what the stream has.
pub async fn until(state: &Mutex<Buffered>, done: impl Fn(&Buffered) -> bool) {
    tokio::time::timeout(Duration::from_secs(5), async {
        while !done(&state.lock().unwrap()) {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("timed out waiting for the stream");
}
