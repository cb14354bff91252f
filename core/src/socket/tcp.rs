//! A client connection's TCP stream whose readability tokio watches only while the
//! connection's task reads it (see `inline.rs`).
//!
//! tokio's own `TcpStream` is registered with its reactor for both directions for its whole
//! life, so every segment that arrives wakes a tokio thread, even while the owner reads the
//! socket inline and the task has nothing to do with it: on a two-core machine that thread
//! competes with the owner's for a core on every message. This stream is registered for
//! writability only while the owner reads ([`ReadSwitch`] on), and for both otherwise. The
//! registration changes at the stream's next use after the switch flips, on the thread that
//! uses it (within the runtime the stream was made in).
//!
//! While the owner reads, a read that finds nothing returns `Pending` without arranging a
//! wake-up: the owner's own watch of the descriptor is what tells it to read again (the
//! task does not read then).

use std::io::{self, Write};
use std::net::Shutdown;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Waker};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::runtime::Handle;

pub use crate::io::ReadSwitch;

/// A TCP stream with a [`ReadSwitch`] (see the module's description).
pub struct Tcp {
    /// The registered socket; `None` only if a registration failed (the stream then fails).
    io: Option<AsyncFd<std::net::TcpStream>>,
    /// The socket whose new registration failed: kept open until the stream goes, so that
    /// its descriptor (which the connection's state records) is never closed early and
    /// reused.
    unregistered: Option<std::net::TcpStream>,
    /// The registration includes readability.
    watching_reads: bool,
    switch: ReadSwitch,
    /// The runtime the stream was made in: registrations change there.
    runtime: Handle,
    /// Who waits for writability: woken when the registration changes (its wait belonged
    /// to the old one).
    writer: Option<Waker>,
}

impl Tcp {
    /// Takes over `tcp` (from the current runtime); returns it and its switch (off).
    pub fn new(tcp: tokio::net::TcpStream) -> io::Result<(Tcp, ReadSwitch)> {
        let std = tcp.into_std()?;
        let io = register(std, Interest::READABLE | Interest::WRITABLE).map_err(|(_, e)| e)?;
        let switch = ReadSwitch::default();
        let tcp = Tcp {
            io: Some(io),
            unregistered: None,
            watching_reads: true,
            switch: switch.clone(),
            runtime: Handle::current(),
            writer: None,
        };
        Ok((tcp, switch))
    }

    /// Changes the registration if the switch flipped since the last use.
    fn sync(&mut self) -> io::Result<()> {
        let want_reads = !self.switch.load(Ordering::SeqCst);
        if want_reads == self.watching_reads {
            return Ok(());
        }
        let Some(old) = self.io.take() else {
            return Ok(());
        };
        let interest = if want_reads {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::WRITABLE
        };
        let _runtime = self.runtime.enter();
        match register(old.into_inner(), interest) {
            Ok(io) => self.io = Some(io),
            Err((std, cause)) => {
                self.unregistered = Some(std);
                return Err(cause);
            }
        }
        self.watching_reads = want_reads;
        if let Some(w) = self.writer.take() {
            w.wake();
        }
        Ok(())
    }
}

/// The error of a stream whose registration failed.
fn unregistered() -> io::Error {
    io::Error::other("the connection's registration failed")
}

/// Registers `tcp` with the current runtime's reactor for `interest`; on failure, gives it
/// back with the cause.
fn register(
    tcp: std::net::TcpStream,
    interest: Interest,
) -> Result<AsyncFd<std::net::TcpStream>, (std::net::TcpStream, io::Error)> {
    // SAFETY: the `TcpStream` owns its descriptor, which stays open and the same until the
    // `AsyncFd` that owns the stream gives it back or is dropped.
    unsafe { AsyncFd::register_with_interest(tcp, interest) }.map_err(|e| e.into_parts())
}

/// Reads from `tcp` into `buf`'s unfilled part, without writing zeros into it first as
/// `ReadBuf::initialize_unfilled` would: a large frame's payload is read straight into its
/// vector's spare capacity (see `ConnectionTask::read_payload`), which zeroing would write
/// once more.
fn read_unfilled(tcp: &std::net::TcpStream, buf: &mut ReadBuf<'_>) -> io::Result<()> {
    // SAFETY: `recv` only writes into the slice; nothing in it is de-initialized.
    let unfilled = unsafe { buf.unfilled_mut() };
    let n = socket2::SockRef::from(tcp).recv(unfilled)?;
    // SAFETY: `recv` wrote the first `n` bytes of the unfilled part.
    unsafe { buf.assume_init(n) };
    buf.advance(n);
    Ok(())
}

impl AsyncRead for Tcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.sync()?;
        let Some(io) = this.io.as_ref() else {
            return Poll::Ready(Err(unregistered()));
        };
        if !this.watching_reads {
            // The owner reads, and watches readability itself.
            return match read_unfilled(io.get_ref(), buf) {
                Ok(()) => Poll::Ready(Ok(())),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            };
        }
        loop {
            let mut guard = match io.poll_read_ready(cx) {
                Poll::Ready(g) => g?,
                Poll::Pending => return Poll::Pending,
            };
            match guard.try_io(|s| read_unfilled(s.get_ref(), buf)) {
                Ok(Ok(())) => return Poll::Ready(Ok(())),
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                // Not readable after all: readiness was cleared; wait again.
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for Tcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.sync()?;
        let Some(io) = this.io.as_ref() else {
            return Poll::Ready(Err(unregistered()));
        };
        loop {
            let mut guard = match io.poll_write_ready(cx) {
                Poll::Ready(g) => {
                    // The wait is over. A waker kept past it would keep its task alive for
                    // the stream's life: a connection's handshake task (1.8 KiB) when its
                    // request waited, though the connection runs in a task of its own.
                    this.writer = None;
                    g?
                }
                Poll::Pending => {
                    if !this
                        .writer
                        .as_ref()
                        .is_some_and(|w| w.will_wake(cx.waker()))
                    {
                        this.writer = Some(cx.waker().clone());
                    }
                    return Poll::Pending;
                }
            };
            match guard.try_io(|s| s.get_ref().write(data)) {
                Ok(r) => return Poll::Ready(r),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Written straight to the socket: nothing is buffered here.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = match self.get_mut().io.as_ref() {
            Some(io) => io.get_ref().shutdown(Shutdown::Write),
            None => Ok(()),
        };
        Poll::Ready(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A connected pair: ours, and the peer's plain tokio stream.
    async fn pair() -> (Tcp, ReadSwitch, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (ours, theirs) = tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        let (tcp, switch) = Tcp::new(ours.unwrap()).unwrap();
        (tcp, switch, theirs.unwrap().0)
    }

    #[tokio::test]
    async fn reads_and_writes_whichever_way_the_switch_is() {
        let (mut tcp, switch, mut peer) = pair().await;
        tcp.write_all(b"one").await.unwrap();
        let mut got = [0u8; 3];
        peer.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"one");
        peer.write_all(b"two").await.unwrap();
        tcp.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"two");

        // The owner reads: a read with nothing there is Pending (no wake-up arranged),
        // and one after the peer wrote returns the bytes.
        switch.store(true, Ordering::SeqCst);
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        let mut buf = [0u8; 8];
        let mut rb = ReadBuf::new(&mut buf);
        assert!(Pin::new(&mut tcp).poll_read(&mut cx, &mut rb).is_pending());
        assert!(!tcp.watching_reads, "registered for writability only");
        peer.write_all(b"three").await.unwrap();
        let mut n = 0;
        while n < 5 {
            tokio::task::yield_now().await;
            let mut rb = ReadBuf::new(&mut buf[n..]);
            if let Poll::Ready(r) = Pin::new(&mut tcp).poll_read(&mut cx, &mut rb) {
                r.unwrap();
                n += rb.filled().len();
            }
        }
        assert_eq!(&buf[..5], b"three");
        tcp.write_all(b"four").await.unwrap();
        let mut got = [0u8; 4];
        peer.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"four");

        // Back to the task: data that came while nobody watched is read.
        peer.write_all(b"five").await.unwrap();
        switch.store(false, Ordering::SeqCst);
        let mut got = [0u8; 4];
        tokio::time::timeout(std::time::Duration::from_secs(5), tcp.read_exact(&mut got))
            .await
            .expect("the bytes that came before the switch are read")
            .unwrap();
        assert_eq!(&got, b"five");
        assert!(tcp.watching_reads);

        // The end of the stream, and a shutdown.
        tcp.shutdown().await.unwrap();
        let mut rest = Vec::new();
        peer.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
        drop(peer);
        assert_eq!(tcp.read(&mut got).await.unwrap(), 0);
    }

    /// A task's waker, counted: its `Arc` is shared by every clone of the waker.
    struct Counted;

    impl futures_util::task::ArcWake for Counted {
        fn wake_by_ref(_: &Arc<Self>) {}
    }

    #[tokio::test]
    async fn a_write_that_waited_keeps_no_waker_once_it_is_over() {
        let (mut tcp, _switch, mut peer) = pair().await;
        // Another task's write waits: the peer reads nothing, so the socket fills up.
        let counted = Arc::new(Counted);
        let waker = futures_util::task::waker(counted.clone());
        let mut cx = Context::from_waker(&waker);
        let chunk = vec![7u8; 64 * 1024];
        let mut sent = 0;
        loop {
            match Pin::new(&mut tcp).poll_write(&mut cx, &chunk) {
                Poll::Ready(Ok(n)) => sent += n,
                Poll::Ready(Err(e)) => panic!("write failed: {e}"),
                Poll::Pending => break,
            }
            assert!(sent < 1 << 30, "the socket never filled up");
        }
        // `counted` and `waker` are two; the stream and tokio's registration hold more.
        assert!(
            Arc::strong_count(&counted) > 2,
            "the waiting write keeps its waker"
        );

        // The peer drains it; once the socket is writable again, a write from elsewhere
        // goes through at once. The other task's wait is over, and nothing may keep its waker
        // (a handshake's task, kept for the connection's life while the connection runs in
        // a task of its own).
        let limit = std::time::Duration::from_secs(10);
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0;
        while got < sent {
            let n = tokio::time::timeout(limit, peer.read(&mut buf))
                .await
                .expect("the peer reads")
                .unwrap();
            assert!(n > 0, "the stream ended early");
            got += n;
        }
        let io = tcp.io.as_ref().expect("registered");
        let _writable = tokio::time::timeout(limit, io.writable())
            .await
            .expect("the socket becomes writable")
            .unwrap();
        let mut elsewhere = Context::from_waker(futures_util::task::noop_waker_ref());
        match Pin::new(&mut tcp).poll_write(&mut elsewhere, b"!") {
            Poll::Ready(Ok(1)) => {}
            other => panic!("the write did not go through at once: {other:?}"),
        }
        drop(waker);
        assert_eq!(
            Arc::strong_count(&counted),
            1,
            "a waker of the finished wait is still kept"
        );
    }
}
