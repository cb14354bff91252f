//! Inline reads: the owner reads a sparse connection on its own thread.
//!
//! A connection's task reads its socket on a tokio thread and hands what it decoded to the
//! owner's thread (JavaScript's). For one small message at a time (a request and its
//! answer) that costs a wake-up of each thread in turn: the kernel wakes the tokio thread,
//! which wakes the owner's. The owner can instead watch the socket itself (its event loop
//! polls the descriptor) and read it when it is readable, under the connection's lock, as
//! the task would: one wake-up per message instead of two.
//!
//! Who reads is the connection's [`Reader`]:
//! - [`Reader::Task`]: the task reads (always, without [`SocketOptions::inline_reads`]).
//! - [`Reader::Wanted`]: a turn of the task read a little (less than the socket's
//!   `sparse_read`, [`SPARSE_READ`] by default) and then found the stream empty, so it asked
//!   its sink to start inline reads ([`EventSink::inline_wanted`]); it goes on reading until
//!   the owner does. After a burst, only the fourth such turn in a row asks.
//! - [`Reader::Owner`]: the owner watches the socket and reads it
//!   ([`Handle::read_inline`]); the task only writes, and keeps its timers.
//!
//! Reading changes hands to the owner under the connection's lock, between two turns of the
//! task, and the owner reads at once ([`Handle::start_inline`]): bytes a TLS session or a
//! tunnel already took from the socket do not make it readable again, so they must not wait
//! for the owner's watch.
//!
//! The sink may decline an offer ([`Handle::decline_inline`]), or give reading back while
//! the owner reads ([`Handle::stop_inline`], under the connection's lock: the listener's
//! control channel does both when its requests are dense, see `listener/control.rs`).
//!
//! The owner hands reading back to the task ([`Reader::Task`], and a wake-up) whenever
//! reading inline is not the cheap case: the connection is paused, behind its high-water
//! mark or the process's budget, closing, compressed, busy on the task's thread, or one
//! call read the socket's `sparse_read` bytes or more (bursts and bulk transfers stay on
//! tokio's threads, where reading overlaps the owner's work). Either way every read goes
//! through the one stream under the one lock, and every event through the one sink, so
//! events keep their order.
//!
//! The owner watches a duplicate of the descriptor: the task may end and drop its stream
//! at any time, and a descriptor that was closed and given to another socket must never
//! be watched. The duplicate keeps the socket open, so a task whose owner ever watched it
//! shuts the connection down when it ends.
//!
//! [`SocketOptions::inline_reads`]: crate::socket::SocketOptions::inline_reads
//! [`EventSink::inline_wanted`]: crate::socket::EventSink::inline_wanted

use std::sync::atomic::Ordering;
use std::sync::Weak;

use crate::io::SocketFd;
use crate::socket::shared::{Handle, Shared};

/// Sparse traffic, which the owner reads inline, brings less than this many bytes at a time
/// (the default of `SocketOptions::sparse_read`): a turn of the task that read less, and
/// then nothing more, asks the owner to read inline, and the owner hands reading back after
/// a call that read this much or more. A small
/// message, a few, or a 4 KiB one, as request/response traffic brings, stay with the owner:
/// one wake-up per message rather than two. A burst of many (200 messages of 64 B every 10
/// ms, say) goes to the task, which reads and decodes it on its own thread, so that the
/// owner's thread only handles the messages: at 20,000 messages of 64 B a second, that took
/// the listener's event-loop utilisation from 2.6-3.2 % to 2.0-2.2 %, for 13 % more CPU
/// time in all (one more wake-up per burst).
pub const SPARSE_READ: usize = 8 * 1024;

/// Who reads a connection (see the module's description).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Reader {
    /// The task.
    Task = 0,
    /// The task, until the owner starts reading.
    Wanted = 1,
    /// The owner.
    Owner = 2,
}

impl Reader {
    fn of(n: u8) -> Reader {
        match n {
            1 => Reader::Wanted,
            2 => Reader::Owner,
            _ => Reader::Task,
        }
    }
}

/// What an inline read did (see [`Handle::read_inline`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inline {
    /// Read what there was: keep watching the socket.
    Read,
    /// The task reads from now on (or the connection is gone): stop watching.
    Stop,
}

impl Shared {
    /// The task's request that the owner read ([`Reader::Wanted`]), if still there, is
    /// taken back: the task reads on. Only where the owner got the request and answers it
    /// (declining, or busy): a request withdrawn while still on its way to the owner, then
    /// made again, would reach it twice.
    fn unask(&self) {
        let _ = self.reader.compare_exchange(
            Reader::Wanted as u8,
            Reader::Task as u8,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
    }

    /// Who reads now.
    pub(super) fn reader(&self) -> Reader {
        Reader::of(self.reader.load(Ordering::SeqCst))
    }

    /// Asks the owner to read (from [`Reader::Task`] only); true when it was asked.
    pub(super) fn want_inline(&self) -> bool {
        self.inline_ok
            && self.watch.get().is_some()
            && !self.keep_reading.load(Ordering::SeqCst)
            && self
                .reader
                .compare_exchange(
                    Reader::Task as u8,
                    Reader::Wanted as u8,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                )
                .is_ok()
    }

    /// Tells the stream whether tokio watches its readability (see `tcp.rs`).
    fn switch_reads(&self, owner: bool) {
        if let Some(w) = self.watch.get() {
            w.switch.store(owner, Ordering::SeqCst);
        }
    }

    /// The owner's reading goes back to the task, which reads again from its next turn on
    /// (this wakes it); only from [`Reader::Owner`]. The owner stops watching either way
    /// ([`Inline::Stop`]). Never from another state: a task's request in flight
    /// ([`Reader::Wanted`]) is left for the owner to answer when it comes. A store here
    /// wiped such a request out (the task had taken reading back and read again while the
    /// owner's watch still ran), so that a second one was made while the first was on its
    /// way: the first started the owner's watch, the second found reading taken and
    /// stopped it, and nobody read the socket.
    pub(super) fn hand_back(&self) -> Inline {
        let owned = self
            .reader
            .compare_exchange(
                Reader::Owner as u8,
                Reader::Task as u8,
                Ordering::SeqCst,
                Ordering::SeqCst,
            )
            .is_ok();
        if owned {
            self.switch_reads(false);
            self.wake();
        }
        Inline::Stop
    }
}

impl Handle {
    /// Starts inline reads, when the task asked for them ([`Reader::Wanted`]): `watch` is
    /// given the socket's descriptor, valid for the call, and returns whether it now
    /// watches it (a duplicate of it, see the module's description). Then, under the
    /// connection's lock, reading changes hands and whatever the stream already holds is
    /// read at once, as [`Handle::read_inline`] reads (a TLS session may hold bytes the
    /// socket no longer shows as readable). True when the owner now reads: it calls [`Handle::read_inline`]
    /// whenever the socket is readable. False when it does not (the task asked nothing,
    /// the connection is gone or busy, `watch` failed, or the first read handed reading
    /// back): the owner stops watching, if it started.
    pub fn start_inline(&self, watch: impl FnOnce(SocketFd) -> bool) -> bool {
        let shared = &*self.shared;
        let Some(conn) = shared.conn.get().and_then(Weak::upgrade) else {
            return false;
        };
        // Under the lock: the task is between turns, so it never skips a read half-way
        // through one, and its descriptor stays the socket's while `watch` runs.
        let Ok(mut task) = conn.try_lock() else {
            // Busy: the task reads on, and asks again after its next sparse turn.
            shared.unask();
            return false;
        };
        let Some(fd) = shared.watch.get().map(|w| w.fd) else {
            return false;
        };
        if shared.reader() != Reader::Wanted {
            return false;
        }
        // Before the duplicate exists: the task's end must shut the connection down.
        shared.attached.store(true, Ordering::SeqCst);
        if !watch(fd) {
            // The task, which reads until the owner does, reads on.
            shared.unask();
            return false;
        }
        shared.reader.store(Reader::Owner as u8, Ordering::SeqCst);
        shared.switch_reads(true);
        crate::test_hooks::fire(crate::test_hooks::Site::Inline);
        task.read_inline() == Inline::Read
    }

    /// Reads the socket on the calling thread, as the task would, until the stream has
    /// nothing more or the socket's `sparse_read` bytes were read (then it hands reading
    /// back, a burst): its events go to the sink as the task's do (in
    /// order with them). Never blocks: when the task is running, or reading inline is not
    /// the cheap case (see the module's description), it hands reading back to the task and
    /// returns [`Inline::Stop`].
    pub fn read_inline(&self) -> Inline {
        let shared = &*self.shared;
        let Some(conn) = shared.conn.get().and_then(Weak::upgrade) else {
            return Inline::Stop;
        };
        let Ok(mut task) = conn.try_lock() else {
            // The task is running (or a poisoned lock, which the task meets).
            return shared.hand_back();
        };
        task.read_inline()
    }

    /// The task asked the owner to read ([`Reader::Wanted`]) and the sink declines for now:
    /// the task reads on, and asks again after a later sparse turn.
    pub fn decline_inline(&self) {
        self.shared.unask();
    }

    /// The owner stopped watching (its watch failed), or the sink finds the traffic too
    /// dense to be read on the owner's thread (see `listener/control.rs`): the task reads
    /// again. On the owner's thread, or under the connection's lock.
    pub fn stop_inline(&self) {
        self.shared.hand_back();
    }
}

impl Handle {
    /// While `on`, the task reads the socket itself, whatever the owner's thread is doing:
    /// something must be read even if that thread is busy (the listener's keep-alive pong).
    /// Turned on, the task takes reading back at its next turn, which this wakes (under the
    /// connection's lock, as every change of reader but the owner's own is made); turned
    /// off, the task offers reading to the owner again after its next sparse turn. From any
    /// thread.
    pub fn keep_reading(&self, on: bool) {
        self.shared.keep_reading.store(on, Ordering::SeqCst);
        if on {
            self.shared.wake();
        }
    }
}

// Unix: the tests give the connection a descriptor of a socket they own.
#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use crate::socket::api::{Event, EventSink, SocketOptions};
    use crate::socket::task::ConnectionTask;
    use std::os::fd::AsRawFd;
    use std::sync::{Arc, Mutex};
    use tokio::io::AsyncWriteExt;

    /// Collects the messages.
    #[derive(Default)]
    struct Messages(Mutex<Vec<Vec<u8>>>);

    impl EventSink for Messages {
        fn push(&self, e: Event) {
            if let Event::Message { frames, .. } = e {
                self.0.lock().unwrap().push(frames.concat());
            }
        }
    }

    /// An unmasked binary frame, as a server sends it.
    fn frame(payload: &[u8]) -> Vec<u8> {
        crate::socket::frame::server_frame(true, crate::socket::frame::OP_BINARY, payload)
    }

    /// 200 messages of 64 B at once, each 64 times its number, from `from` on.
    fn burst(from: u8) -> Vec<u8> {
        (from..from + 200).flat_map(|i| frame(&[i; 64])).collect()
    }

    /// Until the task asks the owner to read.
    async fn offered(handle: &Handle) {
        while handle.shared.reader() != Reader::Wanted {
            tokio::task::yield_now().await;
        }
    }

    /// A test connection: its handle, its task, what it received, and the stream's peer end.
    type Connection = (
        Handle,
        Arc<Mutex<ConnectionTask>>,
        Arc<Messages>,
        tokio::io::DuplexStream,
    );

    /// An open connection over an in-memory stream whose peer end is returned; its
    /// descriptor is `fd` (a socket the test owns: the task shuts it down when dropped).
    fn connection(fd: SocketFd) -> Connection {
        connection_over(fd, 4096)
    }

    /// [`connection`] over a stream that holds `capacity` bytes in flight.
    fn connection_over(fd: SocketFd, capacity: usize) -> Connection {
        connection_with(fd, capacity, SocketOptions::default().sparse_read)
    }

    /// [`connection_over`], sparse up to `sparse_read` bytes at a time.
    fn connection_with(fd: SocketFd, capacity: usize, sparse_read: usize) -> Connection {
        let (ours, peer) = tokio::io::duplex(capacity);
        let opts = SocketOptions {
            inline_reads: true,
            sparse_read,
            ..SocketOptions::default()
        };
        let handle = Handle::new(&opts);
        let sink = Arc::new(Messages::default());
        let task = ConnectionTask::new(
            Box::new(ours),
            opts,
            sink.clone(),
            handle.shared.clone(),
            None,
        );
        let conn = Arc::new(Mutex::new(task));
        let _ = handle.shared.conn.set(Arc::downgrade(&conn));
        let _ = handle.shared.watch.set(crate::io::Watchable {
            fd,
            switch: Default::default(),
        });
        (handle, conn, sink, peer)
    }

    #[tokio::test]
    async fn starting_inline_reads_what_the_stream_already_holds() {
        // What a TLS session or a tunnel already took from the socket does not make the
        // socket readable again: starting must read it, not wait for the owner's watch.
        let owned = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (handle, _conn, sink, mut peer) = connection(owned.as_raw_fd());
        peer.write_all(&[frame(b"one"), frame(b"two")].concat())
            .await
            .unwrap();
        assert!(handle.shared.want_inline());
        let mut watched = None;
        let reading = handle.start_inline(|fd| {
            watched = Some(fd);
            true
        });
        assert!(reading, "the owner reads");
        assert_eq!(watched, Some(owned.as_raw_fd()));
        assert_eq!(handle.shared.reader(), Reader::Owner);
        assert_eq!(
            *sink.0.lock().unwrap(),
            vec![b"one".to_vec(), b"two".to_vec()]
        );
        // Later messages are the owner's to read.
        peer.write_all(&frame(b"three")).await.unwrap();
        assert_eq!(handle.read_inline(), Inline::Read);
        assert_eq!(sink.0.lock().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn a_burst_read_inline_goes_back_to_the_task_whole_and_in_order() {
        let owned = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (handle, conn, sink, mut peer) = connection_over(owned.as_raw_fd(), 64 * 1024);
        assert_eq!(handle.shared.sparse_read, SPARSE_READ);
        assert!(handle.shared.want_inline());
        assert!(handle.start_inline(|_| true));
        // A small message at a time stays with the owner.
        peer.write_all(&frame(&[1; 64])).await.unwrap();
        assert_eq!(handle.read_inline(), Inline::Read);
        assert_eq!(handle.shared.reader(), Reader::Owner);
        // A burst of 200 (13 KiB at once): the owner delivers what it read, and hands
        // reading back.
        assert!(burst(0).len() > SPARSE_READ);
        peer.write_all(&burst(0)).await.unwrap();
        assert_eq!(handle.read_inline(), Inline::Stop);
        assert_eq!(handle.shared.reader(), Reader::Task, "handed back");
        // The task reads the next burst, and keeps reading: a burst is not sparse.
        let task = tokio::spawn(Driven(conn.clone()));
        let count = |n: usize| {
            let sink = sink.clone();
            async move {
                while sink.0.lock().unwrap().len() < n {
                    tokio::task::yield_now().await;
                }
            }
        };
        let limit = std::time::Duration::from_secs(5);
        peer.write_all(&burst(50)).await.unwrap();
        tokio::time::timeout(limit, count(401))
            .await
            .expect("the task reads the burst");
        assert_eq!(
            handle.shared.reader(),
            Reader::Task,
            "not offered after a burst"
        );
        // Small messages again, one at a time (this runtime has one thread: the task's turn
        // ends before this test goes on): after a burst, reading is offered to the owner
        // only after several sparse turns in a row.
        let turns = usize::from(crate::socket::task::SPARSE_TURNS);
        for i in 0..=turns {
            assert_eq!(
                handle.shared.reader(),
                Reader::Task,
                "not offered yet ({i})"
            );
            peer.write_all(&frame(&[9; 64])).await.unwrap();
            tokio::time::timeout(limit, count(402 + i))
                .await
                .expect("the task reads the message");
        }
        tokio::time::timeout(limit, offered(&handle))
            .await
            .expect("offered after sparse turns");
        let got = sink.0.lock().unwrap().clone();
        let expected: Vec<Vec<u8>> = std::iter::once(vec![1; 64])
            .chain((0..200u8).map(|i| vec![i; 64]))
            .chain((50..250u8).map(|i| vec![i; 64]))
            .chain(std::iter::repeat_n(vec![9; 64], turns + 1))
            .collect();
        assert_eq!(got, expected, "every message once, in order");
        task.abort();
    }

    #[tokio::test]
    async fn a_connection_sparse_up_to_more_keeps_reading_such_a_burst_inline() {
        let owned = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (handle, _conn, sink, mut peer) =
            connection_with(owned.as_raw_fd(), 64 * 1024, 64 * 1024);
        assert_eq!(handle.shared.sparse_read, 64 * 1024);
        assert!(handle.shared.want_inline());
        assert!(handle.start_inline(|_| true));
        peer.write_all(&burst(0)).await.unwrap();
        assert_eq!(handle.read_inline(), Inline::Read);
        assert_eq!(handle.shared.reader(), Reader::Owner, "still the owner's");
        assert_eq!(sink.0.lock().unwrap().len(), 200);
    }

    #[tokio::test]
    async fn a_connection_sparse_up_to_more_offers_reading_after_such_a_burst() {
        let owned = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (handle, conn, sink, mut peer) =
            connection_with(owned.as_raw_fd(), 64 * 1024, 64 * 1024);
        // The task reads a 13 KiB burst in one turn: sparse for this connection.
        let task = tokio::spawn(Driven(conn.clone()));
        peer.write_all(&burst(0)).await.unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), offered(&handle))
            .await
            .expect("offered after the turn");
        assert_eq!(sink.0.lock().unwrap().len(), 200);
        task.abort();
    }

    #[tokio::test]
    async fn a_paused_connection_is_not_read_inline() {
        let owned = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (handle, _conn, sink, mut peer) = connection(owned.as_raw_fd());
        peer.write_all(&frame(b"one")).await.unwrap();
        assert!(handle.shared.want_inline());
        handle.shared.pause();
        assert!(!handle.start_inline(|_| true));
        assert_eq!(handle.shared.reader(), Reader::Task, "handed back");
        assert!(sink.0.lock().unwrap().is_empty(), "nothing while paused");
        // Not asked: nothing starts.
        assert!(!handle.start_inline(|_| panic!("not asked")));
    }

    #[tokio::test]
    async fn a_busy_task_keeps_reading_and_asks_again_later() {
        let owned = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (handle, conn, _sink, _peer) = connection(owned.as_raw_fd());
        assert!(handle.shared.want_inline());
        let held = conn.lock().unwrap();
        assert!(!handle.start_inline(|_| panic!("not while busy")));
        drop(held);
        assert_eq!(handle.shared.reader(), Reader::Task);
        assert!(handle.shared.want_inline(), "asked again");
    }

    #[tokio::test]
    async fn a_request_in_flight_survives_the_owner_finding_the_task_busy() {
        // The task took reading back while the owner's watch still ran, read again, and
        // asked the owner to read (a request on its way). The old watch's read finds the
        // task busy: the request must stay, for the owner to answer once.
        let owned = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (handle, conn, _sink, _peer) = connection(owned.as_raw_fd());
        assert!(handle.shared.want_inline());
        let held = conn.lock().unwrap();
        assert_eq!(handle.read_inline(), Inline::Stop);
        handle.stop_inline();
        assert_eq!(handle.shared.reader(), Reader::Wanted, "still asked");
        assert!(!handle.shared.want_inline(), "no second request");
        drop(held);
        assert!(
            handle.start_inline(|_| true),
            "the request starts the owner"
        );
        assert_eq!(handle.shared.reader(), Reader::Owner);
    }

    #[tokio::test]
    async fn keep_reading_takes_reading_back_and_holds_it() {
        let owned = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (handle, conn, sink, mut peer) = connection(owned.as_raw_fd());
        assert!(handle.shared.want_inline());
        assert!(handle.start_inline(|_| true));
        assert_eq!(handle.shared.reader(), Reader::Owner);
        // Asked from another thread: the owner's next read gives reading back, under the
        // lock, and reads nothing itself.
        handle.keep_reading(true);
        peer.write_all(&frame(b"pong")).await.unwrap();
        assert_eq!(handle.read_inline(), Inline::Stop);
        assert_eq!(handle.shared.reader(), Reader::Task);
        assert!(sink.0.lock().unwrap().is_empty(), "left for the task");
        // Nothing is offered meanwhile.
        assert!(!handle.shared.want_inline());
        // The task reads it.
        let task = tokio::spawn(Driven(conn.clone()));
        let read = async {
            while sink.0.lock().unwrap().is_empty() {
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(5), read)
            .await
            .expect("the task reads what came");
        assert_eq!(*sink.0.lock().unwrap(), vec![b"pong".to_vec()]);
        task.abort();
        handle.keep_reading(false);
        assert!(handle.shared.want_inline(), "offered again");
    }

    /// Polls a connection's task (as its driver does) until aborted.
    struct Driven(Arc<Mutex<ConnectionTask>>);

    impl std::future::Future for Driven {
        type Output = ();

        fn poll(
            self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<()> {
            let mut task = self.0.lock().unwrap();
            std::pin::Pin::new(&mut *task).poll(cx)
        }
    }
}
