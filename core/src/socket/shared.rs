//! The state a connection's owner and its task share, and the owner's [`Handle`] to it.
//!
//! The owner queues commands and flips flags from any thread; every change the task must
//! see wakes it through the one waker kept here.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::Waker;
use std::time::Duration;

use tokio::time::Instant;

use crate::live;
use crate::socket::api::{Command, EventSink, SocketOptions};
use crate::socket::budget;
use crate::socket::handshake::{ConnectOptions, Spare};
use crate::socket::open;
use crate::socket::task::{ConnectionTask, Direct, Outgoing};

/// State shared between the owner and the connection's task.
pub struct Shared {
    /// Commands from the owner, in order; the task takes them all at once.
    pub(super) queue: Mutex<VecDeque<Command>>,
    /// The task's waker: every change the task must see wakes it.
    pub(super) waker: Mutex<Option<Waker>>,
    pub(super) paused: AtomicBool,
    pub(super) inflight: AtomicUsize,
    pub(super) cancel: AtomicBool,
    /// The task has ended; commands are refused.
    pub(super) finished: AtomicBool,
    pub(super) close_sent: AtomicBool,
    pub(super) close_received: AtomicBool,
    pub(super) close_deadline: Mutex<Option<Instant>>,
    pub(super) close_timeout: Duration,
    /// `SocketOptions::inbound_high_water`: `consumed` wakes the task only when the backlog
    /// falls back below it.
    pub(super) high_water: usize,
    /// The open connection, which its task owns and polls under this lock; the owner's
    /// direct sends take the lock too ([`Handle::send_direct`]). Set once it is open.
    pub(super) conn: OnceLock<Weak<Mutex<ConnectionTask>>>,
    /// Who reads the socket: an `inline::Reader`, as a number.
    pub(super) reader: AtomicU8,
    /// `SocketOptions::inline_reads`.
    pub(super) inline_ok: bool,
    /// `SocketOptions::owner_echoes_close` (here: the task has no byte to spare).
    pub(super) owner_echoes: bool,
    /// `SocketOptions::sparse_read`.
    pub(super) sparse_read: usize,
    /// The open socket's descriptor and its stream's read switch, for inline reads; unset
    /// until it is open, and where the platform's descriptor is not used.
    pub(super) watch: OnceLock<crate::io::Watchable>,
    /// The owner has watched the socket (a duplicate of its descriptor): the task shuts the
    /// connection down when it ends (see `inline.rs`).
    pub(super) attached: AtomicBool,
    /// The task reads, whatever the owner's thread is doing ([`Handle::keep_reading`]): no
    /// inline reads meanwhile.
    pub(super) keep_reading: AtomicBool,
}

impl Drop for Shared {
    /// What the owner never took stops counting against the process's budget when the
    /// connection is gone; the live count (leak tests) drops by one.
    fn drop(&mut self) {
        budget::release(*self.inflight.get_mut());
        live::socket_dropped();
    }
}

impl Shared {
    pub(super) fn new(close_timeout: Duration, high_water: usize) -> Self {
        live::socket_made();
        Shared {
            queue: Mutex::new(VecDeque::new()),
            waker: Mutex::new(None),
            paused: AtomicBool::new(false),
            inflight: AtomicUsize::new(0),
            cancel: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            close_sent: AtomicBool::new(false),
            close_received: AtomicBool::new(false),
            close_deadline: Mutex::new(None),
            close_timeout,
            high_water,
            conn: OnceLock::new(),
            reader: AtomicU8::new(0),
            inline_ok: false,
            owner_echoes: false,
            sparse_read: crate::socket::inline::SPARSE_READ,
            watch: OnceLock::new(),
            attached: AtomicBool::new(false),
            keep_reading: AtomicBool::new(false),
        }
    }

    /// Stops reading from the socket.
    pub fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
    }

    /// Reads again.
    pub fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
        self.wake();
    }

    /// `bytes` of message data (or a control event's cost) were handed to the owner.
    pub(super) fn delivered(&self, bytes: usize) {
        self.inflight.fetch_add(bytes, Ordering::SeqCst);
        budget::add(bytes);
    }

    /// More message bytes wait for the owner than `SocketOptions::inbound_high_water`.
    pub(super) fn over_high_water(&self) -> bool {
        self.inflight.load(Ordering::SeqCst) > self.high_water
    }

    /// The owner consumed `bytes` of message data.
    pub fn consumed(&self, bytes: usize) {
        let taken = bytes.min(self.inflight.load(Ordering::SeqCst));
        let before = self.inflight.fetch_sub(taken, Ordering::SeqCst);
        budget::release(taken);
        // Only a reader held back needs waking: a wake for every message would cost the JS
        // thread a system call, and the message's delivery the time of a thread switch.
        if before > self.high_water && before - taken <= self.high_water {
            self.wake();
        }
    }

    pub(super) fn register(&self, waker: &Waker) {
        if let Ok(mut w) = self.waker.lock() {
            match w.as_ref() {
                Some(current) if current.will_wake(waker) => {}
                _ => *w = Some(waker.clone()),
            }
        }
    }

    pub(super) fn wake(&self) {
        if let Ok(w) = self.waker.lock() {
            if let Some(w) = w.as_ref() {
                w.wake_by_ref();
            }
        }
    }

    pub(super) fn push(&self, c: Command) {
        if let Ok(mut q) = self.queue.lock() {
            q.push_back(c);
        }
        self.wake();
    }

    pub(super) fn take_commands(&self) -> VecDeque<Command> {
        self.queue
            .lock()
            .map(|mut q| std::mem::take(&mut *q))
            .unwrap_or_default()
    }

    pub(super) fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }

    pub(super) fn terminate(&self) {
        self.cancel.store(true, Ordering::SeqCst);
        self.wake();
    }

    /// Starts the closing-handshake timer, once.
    pub(super) fn start_close_timer(&self) {
        if let Ok(mut d) = self.close_deadline.lock() {
            if d.is_none() {
                *d = Some(Instant::now() + self.close_timeout);
            }
        }
        self.wake();
    }

    pub(super) fn close_deadline(&self) -> Option<Instant> {
        self.close_deadline.lock().ok().and_then(|d| *d)
    }
}

/// The owner's handle: sends commands, pauses and resumes.
#[derive(Clone)]
pub struct Handle {
    /// Shared state.
    pub shared: Arc<Shared>,
}

impl Handle {
    /// Queues a command; false when the connection is gone.
    pub fn send(&self, c: Command) -> bool {
        if self.shared.finished.load(Ordering::SeqCst) {
            return false;
        }
        match c {
            Command::Terminate => self.shared.terminate(),
            Command::Close { .. } => {
                // As ws: the closing handshake's time starts with close(), not when the close
                // frame gets past data a stalled peer is not reading.
                self.shared.start_close_timer();
                self.shared.push(c);
            }
            _ => self.shared.push(c),
        }
        true
    }

    /// Whether the connection takes no more data frames: its owner closed it (the close
    /// frame is on its way) or it is gone.
    pub fn closing(&self) -> bool {
        self.shared.finished.load(Ordering::SeqCst) || self.shared.close_deadline().is_some()
    }

    /// Writes `send` at once, from the calling thread, when the open connection has nothing
    /// queued or being written (see `ConnectionTask::send_direct`): a lone message then
    /// costs no wake-up of the connection's task. [`Direct::Refused`] when it does not take
    /// it (busy, closing, not open yet or gone): [`Handle::send`] it as usual then.
    ///
    /// Never blocks: when the task is running, the send is refused rather than waited for.
    /// The owner must call it only when no written event of an earlier send is still on
    /// its way to it, or its send callbacks would complete out of order.
    pub fn send_direct(&self, send: Outgoing<'_>) -> Direct {
        let Some(conn) = self.shared.conn.get().and_then(Weak::upgrade) else {
            return Direct::Refused;
        };
        let Ok(mut task) = conn.try_lock() else {
            return Direct::Refused;
        };
        task.send_direct(send)
    }
}

impl Handle {
    /// A handle for a connection that [`Handle::start`] starts later: whoever receives the
    /// connection's events can know its handle before the first event.
    pub fn new(socket: &SocketOptions) -> Handle {
        let mut shared = Shared::new(socket.close_timeout, socket.inbound_high_water);
        shared.inline_ok = socket.inline_reads;
        shared.owner_echoes = socket.owner_echoes_close;
        shared.sparse_read = socket.sparse_read;
        Handle {
            shared: Arc::new(shared),
        }
    }

    /// Starts connecting on the current tokio runtime. Events go to `sink`; the last is
    /// always [`Event::Closed`]. Call it once.
    pub fn start(&self, options: ConnectOptions, socket: SocketOptions, sink: Arc<dyn EventSink>) {
        self.start_then(options, socket, sink, None, None);
    }

    /// [`Handle::start`], over `spare` (a connection opened ahead of time) if it fits, and
    /// calling `then(opened)` once the handshake is over, whatever its outcome: `true` after
    /// the open event, `false` after the close event of a failed handshake, or `false` when
    /// the handshake is dropped without an outcome (a panic, the runtime's shutdown), then
    /// possibly before the close event or with none, from any thread (see `open::Then`).
    pub fn start_then(
        &self,
        options: ConnectOptions,
        socket: SocketOptions,
        sink: Arc<dyn EventSink>,
        spare: Option<Spare>,
        then: Option<Box<dyn FnOnce(bool) + Send>>,
    ) {
        let guard = (sink.clone(), self.shared.clone());
        tokio::spawn(open::guarded(
            open::run(
                options,
                socket,
                sink,
                self.shared.clone(),
                spare,
                open::Then(then),
            ),
            guard.0,
            guard.1,
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::socket::SocketOptions;

    #[test]
    fn closing_once_the_owner_closes_or_the_connection_is_gone() {
        let open = Handle::new(&SocketOptions::default());
        assert!(!open.closing());
        assert!(open.send(Command::Close {
            code: Some(1000),
            reason: Vec::new(),
        }));
        assert!(
            open.closing(),
            "a close frame on its way takes no more data"
        );
        let gone = Handle::new(&SocketOptions::default());
        gone.shared.finished.store(true, Ordering::SeqCst);
        assert!(gone.closing());
    }
}
