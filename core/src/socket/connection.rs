//! One client WebSocket connection: the handshake, then one task that reads and writes.
//!
//! - Reading parses frames (on a tokio thread), answers pings, echoes close frames, and
//!   pushes events to an [`EventSink`]. It stops reading the socket while the connection is
//!   paused or while more than `inbound_high_water` bytes of messages wait to be consumed,
//!   so a slow consumer holds back the peer through TCP. Reads go into a buffer per tokio
//!   thread; between reads a connection keeps at most an incomplete frame header.
//! - Writing takes the owner's commands in order, frames and masks them, and coalesces
//!   everything queued into one write. Each write reports the bytes it covered and the
//!   callbacks it completes, so `bufferedAmount` and send callbacks follow bytes actually
//!   written.
//! - Events of one connection go through one sink, in order: a message can never overtake
//!   the close.
//!
//! An idle open connection costs one task (the [`Pump`] below, a few hundred bytes), its
//! [`Shared`] state and the socket: no read buffer, no channel, no second task. That is
//! what lets a listener hold thousands of them cheaply.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::io::IoStream;
use crate::socket::frame::{self, Decoder, FrameError, Incoming, Limits};
use crate::socket::handshake::{self, ConnectError, ConnectOptions, Spare};
use crate::socket::pool;

/// Behaviour of an open connection.
#[derive(Debug, Clone, Copy)]
pub struct SocketOptions {
    /// Message size and fragment limits.
    pub limits: Limits,
    /// Answer pings automatically. Default true.
    pub auto_pong: bool,
    /// How long to wait for the closing handshake before dropping the connection. Default 30 s.
    pub close_timeout: Duration,
    /// Message bytes handed to the sink and not yet consumed, above which reading stops.
    /// Default 16 MiB.
    pub inbound_high_water: usize,
    /// Largest single read. Reads go into a buffer per tokio thread of this size, so an idle
    /// connection holds none. Default 64 KiB.
    pub read_buffer: usize,
    /// Most bytes coalesced into one write. Default 1 MiB.
    pub write_batch: usize,
}

impl Default for SocketOptions {
    fn default() -> Self {
        SocketOptions {
            limits: Limits::default(),
            auto_pong: true,
            close_timeout: Duration::from_secs(30),
            inbound_high_water: 16 * 1024 * 1024,
            read_buffer: 64 * 1024,
            write_batch: 1024 * 1024,
        }
    }
}

/// What the owner asks of the connection.
#[derive(Debug)]
pub enum Command {
    /// Send a frame. `accounted` is what the owner added to its `bufferedAmount`; `ack` is a
    /// callback id (0 for none). Both come back in [`Event::Written`].
    Frame {
        /// Opcode.
        opcode: u8,
        /// Final fragment.
        fin: bool,
        /// Payload, unmasked.
        payload: Vec<u8>,
        /// Bytes to report as written.
        accounted: usize,
        /// Callback id, 0 for none.
        ack: u32,
    },
    /// Several small frames packed by the owner in one buffer (see [`BATCH_HEADER`]): saves
    /// a call and an allocation per message. Each reports `framed_len(len)` bytes written.
    Batch(Vec<u8>),
    /// Start the closing handshake (`None`: a close frame without a code).
    Close {
        /// Close code.
        code: Option<u16>,
        /// Close reason, at most 123 bytes.
        reason: Vec<u8>,
    },
    /// Drop the connection now.
    Terminate,
}

/// Most auto-pongs waiting to be written before the connection is dropped (ws 8's
/// `maxPendingAutoPongs` default).
pub const MAX_PENDING_AUTO_PONGS: u16 = 60;

/// What a control event counts against the consumer's backlog: its payload plus a fixed
/// cost, so a flood of pings or pongs stops the reader like a flood of messages does.
pub const CONTROL_EVENT_COST: usize = 64;

/// The write buffer is dropped after a write larger than this.
const SHRINK_ABOVE: usize = 4 * 1024 * 1024;

/// Bytes before each payload in a [`Command::Batch`]: flags (`0x80` FIN | opcode), payload
/// length (u32, big-endian), callback id (u32, big-endian, 0 for none).
pub const BATCH_HEADER: usize = 9;

/// Calls `f(opcode, fin, payload, ack)` for each frame of a batch; false if it is malformed
/// (the frames before the fault are still passed).
pub fn for_each_batched(data: &[u8], mut f: impl FnMut(u8, bool, &[u8], u32)) -> bool {
    let mut rest = data;
    while !rest.is_empty() {
        let Some(h) = rest.get(..BATCH_HEADER) else {
            return false;
        };
        let len = u32::from_be_bytes([h[1], h[2], h[3], h[4]]) as usize;
        let ack = u32::from_be_bytes([h[5], h[6], h[7], h[8]]);
        let Some(payload) = rest.get(BATCH_HEADER..BATCH_HEADER + len) else {
            return false;
        };
        f(h[0] & 0x0f, h[0] & 0x80 != 0, payload, ack);
        rest = &rest[BATCH_HEADER + len..];
    }
    true
}

/// A failure reported to the owner before the close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketError {
    /// Message, as ws words it.
    pub message: String,
    /// `WS_ERR_*`, `ECONNREFUSED`, ...
    pub code: Option<String>,
    /// `RangeError` rather than `Error`.
    pub range_error: bool,
    /// HTTP status of a refused handshake.
    pub status_code: Option<u16>,
    /// Reason phrase of a refused handshake.
    pub status_description: Option<String>,
}

impl From<ConnectError> for SocketError {
    fn from(e: ConnectError) -> Self {
        SocketError {
            message: e.message,
            code: e.code,
            range_error: false,
            status_code: e.status_code,
            status_description: e.status_description,
        }
    }
}

impl From<FrameError> for SocketError {
    fn from(e: FrameError) -> Self {
        SocketError {
            message: e.message,
            code: Some(e.code.to_owned()),
            range_error: e.range_error,
            status_code: None,
            status_description: None,
        }
    }
}

/// What the connection tells its owner, in order.
#[derive(Debug)]
pub enum Event {
    /// The handshake succeeded.
    Open {
        /// The chosen subprotocol, `""` if none.
        protocol: String,
    },
    /// A whole message.
    Message {
        /// Binary or text.
        binary: bool,
        /// Frame payloads (one for text and unfragmented binary messages).
        frames: Vec<Vec<u8>>,
    },
    /// A ping (already answered when auto-pong is on).
    Ping(Vec<u8>),
    /// A pong.
    Pong(Vec<u8>),
    /// Bytes written to the socket, and the callbacks now complete.
    Written {
        /// Sum of the `accounted` of the frames written.
        bytes: usize,
        /// Callback ids completed successfully.
        acks: Vec<u32>,
        /// Callback ids of frames dropped because the connection was closing.
        failed: Vec<u32>,
    },
    /// The peer's close frame arrived: the socket is closing.
    CloseReceived,
    /// An error; the close follows.
    Error(SocketError),
    /// The connection is gone. Always the last event, exactly once.
    Closed {
        /// 1006 when no close frame arrived, 1005 for one without a code.
        code: u16,
        /// The close reason.
        reason: Vec<u8>,
        /// A close frame arrived.
        frame_received: bool,
        /// A close frame was sent.
        frame_sent: bool,
    },
}

/// Receives a connection's events. Implementations must not block.
pub trait EventSink: Send + Sync + 'static {
    /// Takes one event.
    fn push(&self, event: Event);

    /// The opening handshake's request is on the wire and its response awaited: a moment
    /// when the connection has nothing to do (no event). Default: nothing.
    fn request_sent(&self) {}
}

/// State shared between the owner and the connection's task.
pub struct Shared {
    /// Commands from the owner, in order; the task takes them all at once.
    queue: Mutex<VecDeque<Command>>,
    /// The task's waker: every change the task must see wakes it.
    waker: Mutex<Option<Waker>>,
    paused: AtomicBool,
    inflight: AtomicUsize,
    cancel: AtomicBool,
    /// The task has ended; commands are refused.
    finished: AtomicBool,
    close_sent: AtomicBool,
    close_received: AtomicBool,
    close_deadline: Mutex<Option<Instant>>,
    close_timeout: Duration,
    /// `SocketOptions::inbound_high_water`: `consumed` wakes the task only when the backlog
    /// falls back below it.
    high_water: usize,
}

impl Shared {
    fn new(close_timeout: Duration, high_water: usize) -> Self {
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

    /// The owner consumed `bytes` of message data.
    pub fn consumed(&self, bytes: usize) {
        let taken = bytes.min(self.inflight.load(Ordering::SeqCst));
        let before = self.inflight.fetch_sub(taken, Ordering::SeqCst);
        // Only a reader held back needs waking: a wake for every message would cost the JS
        // thread a system call, and the message's delivery the time of a thread switch.
        if before > self.high_water && before - taken <= self.high_water {
            self.wake();
        }
    }

    fn register(&self, waker: &Waker) {
        if let Ok(mut w) = self.waker.lock() {
            match w.as_ref() {
                Some(current) if current.will_wake(waker) => {}
                _ => *w = Some(waker.clone()),
            }
        }
    }

    fn wake(&self) {
        if let Ok(w) = self.waker.lock() {
            if let Some(w) = w.as_ref() {
                w.wake_by_ref();
            }
        }
    }

    fn push(&self, c: Command) {
        if let Ok(mut q) = self.queue.lock() {
            q.push_back(c);
        }
        self.wake();
    }

    fn take_commands(&self) -> VecDeque<Command> {
        self.queue
            .lock()
            .map(|mut q| std::mem::take(&mut *q))
            .unwrap_or_default()
    }

    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }

    fn terminate(&self) {
        self.cancel.store(true, Ordering::SeqCst);
        self.wake();
    }

    /// Starts the closing-handshake timer, once.
    fn start_close_timer(&self) {
        if let Ok(mut d) = self.close_deadline.lock() {
            if d.is_none() {
                *d = Some(Instant::now() + self.close_timeout);
            }
        }
        self.wake();
    }

    fn close_deadline(&self) -> Option<Instant> {
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
}

impl Handle {
    /// A handle for a connection that [`Handle::start`] starts later: whoever receives the
    /// connection's events can know its handle before the first event.
    pub fn new(socket: &SocketOptions) -> Handle {
        Handle {
            shared: Arc::new(Shared::new(socket.close_timeout, socket.inbound_high_water)),
        }
    }

    /// Starts connecting on the current tokio runtime. Events go to `sink`; the last is
    /// always [`Event::Closed`]. Call it once.
    pub fn start(&self, options: ConnectOptions, socket: SocketOptions, sink: Arc<dyn EventSink>) {
        self.start_then(options, socket, sink, None, None);
    }

    /// [`Handle::start`], over `spare` (a connection opened ahead of time) if it fits, and
    /// calling `then(opened)` once the handshake is over, whatever its outcome: after the
    /// open event, or after the close event of a failed handshake.
    pub fn start_then(
        &self,
        options: ConnectOptions,
        socket: SocketOptions,
        sink: Arc<dyn EventSink>,
        spare: Option<Spare>,
        then: Option<Box<dyn FnOnce(bool) + Send>>,
    ) {
        tokio::spawn(run(options, socket, sink, self.shared.clone(), spare, then));
    }
}

/// Starts connecting on the current tokio runtime. Events go to `sink`; the last is always
/// [`Event::Closed`].
pub fn connect(options: ConnectOptions, socket: SocketOptions, sink: Arc<dyn EventSink>) -> Handle {
    let handle = Handle::new(&socket);
    handle.start(options, socket, sink);
    handle
}

/// Completes when the owner closes or terminates a connection still in its handshake.
fn abort_requested(shared: &Shared) -> impl Future<Output = ()> + '_ {
    std::future::poll_fn(move |cx| {
        shared.register(cx.waker());
        let closing = shared
            .queue
            .lock()
            .map(|q| q.iter().any(|c| matches!(c, Command::Close { .. })))
            .unwrap_or(false);
        if closing || shared.cancelled() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
}

fn closed(sink: &dyn EventSink, code: u16, reason: Vec<u8>, shared: &Shared) {
    shared.finished.store(true, Ordering::SeqCst);
    sink.push(Event::Closed {
        code,
        reason,
        frame_received: shared.close_received.load(Ordering::SeqCst),
        frame_sent: shared.close_sent.load(Ordering::SeqCst),
    });
}

/// The handshake; once open, the connection runs as a task of its own, so that the
/// handshake's state is not kept for the connection's life.
async fn run(
    options: ConnectOptions,
    socket: SocketOptions,
    sink: Arc<dyn EventSink>,
    shared: Arc<Shared>,
    spare: Option<Spare>,
    then: Option<Box<dyn FnOnce(bool) + Send>>,
) {
    let sent = || sink.request_sent();
    let established = tokio::select! {
        r = handshake::connect_with(&options, spare, &sent) => r,
        _ = abort_requested(&shared) => Err(ConnectError {
            message: "WebSocket was closed before the connection was established".into(),
            code: None,
            status_code: None,
            status_description: None,
        }),
    };
    let established = match established {
        Ok(e) => e,
        Err(e) => {
            log::debug!("socket: connect failed: {}", e.message);
            sink.push(Event::Error(e.into()));
            closed(&*sink, 1006, Vec::new(), &shared);
            if let Some(then) = then {
                then(false);
            }
            return;
        }
    };
    sink.push(Event::Open {
        protocol: established.protocol,
    });
    if let Some(then) = then {
        then(true);
    }
    let mut pump = Pump::new(established.stream, socket, sink, shared);
    pump.on_bytes(&established.initial);
    tokio::spawn(pump);
}

thread_local! {
    /// Each tokio thread reads into this one buffer; a connection keeps only an incomplete
    /// frame header between reads, so idle connections hold no read buffer.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Polls in one wake-up before the task yields to others.
const ROUNDS_PER_POLL: usize = 32;

/// What a read attempt did.
enum ReadStep {
    /// Bytes were read and handled.
    Progress,
    /// Nothing to read now (or reading is held back).
    Idle,
    /// The peer closed the connection or it failed.
    Ended,
}

/// An open connection: reading, writing, the closing handshake and its timer, in one task.
///
/// Kept small on purpose: a listener holds one per idle connection, and tokio allocates a
/// task in steps of 128 bytes (at most 280 bytes of future fit 384, up to 408 take 512),
/// so what an idle connection never uses is boxed or left out (the options it needs are
/// copied; the inbound limit is `shared.high_water`).
struct Pump {
    stream: IoStream,
    /// `SocketOptions::auto_pong`, `read_buffer` and `write_batch`.
    auto_pong: bool,
    read_buffer: usize,
    write_batch: usize,
    sink: Arc<dyn EventSink>,
    shared: Arc<Shared>,
    decoder: Decoder,
    /// An incomplete frame header left from the last read.
    partial: Vec<u8>,
    /// The peer's close frame, once received.
    close: Option<Box<(u16, Vec<u8>)>>,
    /// The peer broke the protocol: everything it sends is discarded.
    failed: bool,
    /// Commands taken from the queue and not yet framed (more than one write's worth).
    backlog: VecDeque<Command>,
    /// Frames being written, and how far.
    out: Vec<u8>,
    written: usize,
    /// Bytes written since the last flush.
    unflushed: bool,
    /// What the frames in `out` account for, reported once they are written.
    bytes: usize,
    acks: Vec<u32>,
    /// Callbacks of frames dropped while closing. Rare, so boxed: the box keeps the empty
    /// case at one word where a bare `Vec` takes three.
    #[allow(clippy::box_collection)]
    failed_acks: Option<Box<Vec<u32>>>,
    /// Automatic pongs in `out` not yet written (at most `MAX_PENDING_AUTO_PONGS`).
    pongs: u16,
    /// The write half is shut down (both close frames are out).
    shut: bool,
    /// The peer has finished sending; what is still queued is written before the end.
    eof: bool,
    timer: Option<Pin<Box<Sleep>>>,
}

// The budget above, checked when compiling: a field that pushes an idle connection's task
// into tokio's next allocation step must be boxed or found room for.
const _: () = assert!(std::mem::size_of::<Pump>() <= 280);

impl Pump {
    fn new(
        stream: IoStream,
        opts: SocketOptions,
        sink: Arc<dyn EventSink>,
        shared: Arc<Shared>,
    ) -> Self {
        Pump {
            stream,
            decoder: Decoder::new(opts.limits),
            auto_pong: opts.auto_pong,
            read_buffer: opts.read_buffer,
            write_batch: opts.write_batch,
            sink,
            shared,
            partial: Vec::new(),
            close: None,
            failed: false,
            backlog: VecDeque::new(),
            out: Vec::new(),
            written: 0,
            unflushed: false,
            bytes: 0,
            acks: Vec::new(),
            failed_acks: None,
            pongs: 0,
            shut: false,
            eof: false,
            timer: None,
        }
    }

    /// Ends the connection: the close code and reason ws reports, then the close event.
    fn finish(&mut self) -> Poll<()> {
        // ws reports 1006 locally after a protocol error, whatever it sent.
        let (code, reason) = if self.failed {
            (1006, Vec::new())
        } else {
            self.close.take().map_or((1006, Vec::new()), |c| *c)
        };
        closed(&*self.sink, code, reason, &self.shared);
        Poll::Ready(())
    }

    /// Ready when the closing handshake has run out of time.
    fn poll_timer(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.timer.is_none() {
            match self.shared.close_deadline() {
                Some(at) => self.timer = Some(Box::pin(tokio::time::sleep_until(at))),
                None => return Poll::Pending,
            }
        }
        match self.timer.as_mut() {
            Some(t) => t.as_mut().poll(cx),
            None => Poll::Pending,
        }
    }

    /// Handles received bytes (an incomplete header at their end is kept for the next read).
    fn on_bytes(&mut self, data: &[u8]) {
        if data.is_empty() || self.failed || self.close.is_some() {
            // Nothing after a close frame or a protocol error is parsed (as ws).
            return;
        }
        let mut items = Vec::new();
        match self.decoder.decode(data, &mut items) {
            Ok(used) => {
                self.partial.extend_from_slice(&data[used..]);
                self.deliver(items);
            }
            Err(e) => {
                // As ws: report it, send the close code it calls for, discard the rest.
                log::debug!("socket: protocol error from the peer: {}", e.message);
                let code = e.close_code;
                self.deliver(items);
                self.sink.push(Event::Error(e.into()));
                if !self.shared.close_received.load(Ordering::SeqCst) {
                    self.shared.push(Command::Close {
                        code: Some(code),
                        reason: Vec::new(),
                    });
                }
                self.shared.start_close_timer();
                self.failed = true;
            }
        }
    }

    /// Hands decoded items to the sink, answering pings and echoing a close.
    fn deliver(&mut self, items: Vec<Incoming>) {
        let shared = &*self.shared;
        for item in items {
            if self.close.is_some() {
                // Nothing may follow a close frame.
                break;
            }
            match item {
                Incoming::Message { binary, frames } => {
                    let bytes: usize = frames.iter().map(Vec::len).sum();
                    shared.inflight.fetch_add(bytes, Ordering::SeqCst);
                    self.sink.push(Event::Message { binary, frames });
                }
                Incoming::Ping(data) => {
                    let open = !shared.close_sent.load(Ordering::SeqCst)
                        && !shared.close_received.load(Ordering::SeqCst);
                    if self.auto_pong && open {
                        if self.pongs >= MAX_PENDING_AUTO_PONGS {
                            // The peer pings faster than it reads our pongs: drop it, as ws does.
                            log::debug!("socket: too many pongs pending; terminating");
                            shared.terminate();
                            break;
                        }
                        self.pongs += 1;
                        frame::encode(&mut self.out, true, frame::OP_PONG, &data, rand::random());
                    }
                    shared
                        .inflight
                        .fetch_add(data.len() + CONTROL_EVENT_COST, Ordering::SeqCst);
                    self.sink.push(Event::Ping(data));
                }
                Incoming::Pong(data) => {
                    shared
                        .inflight
                        .fetch_add(data.len() + CONTROL_EVENT_COST, Ordering::SeqCst);
                    self.sink.push(Event::Pong(data));
                }
                Incoming::Close(code, reason) => {
                    shared.close_received.store(true, Ordering::SeqCst);
                    self.sink.push(Event::CloseReceived);
                    // Echo it after what the owner already queued (the same code and reason,
                    // or an empty frame for "no code"). If our close went first, this only
                    // completes the handshake.
                    shared.push(Command::Close {
                        code,
                        reason: if code.is_some() {
                            reason.clone()
                        } else {
                            Vec::new()
                        },
                    });
                    shared.start_close_timer();
                    self.close = Some(Box::new((code.unwrap_or(1005), reason)));
                }
            }
        }
    }

    /// Nothing is left to write.
    fn written_out(&self) -> bool {
        self.written == self.out.len()
            && !self.unflushed
            && self.backlog.is_empty()
            && self
                .shared
                .queue
                .lock()
                .map(|q| q.is_empty())
                .unwrap_or(true)
    }

    /// Reads once into this thread's buffer and handles what came.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> ReadStep {
        if self.eof {
            return ReadStep::Idle;
        }
        let behind = self.shared.inflight.load(Ordering::SeqCst) > self.shared.high_water;
        let discarding = self.close.is_some() || self.failed;
        if (self.shared.paused.load(Ordering::SeqCst) || behind) && !discarding {
            // `resume()` and `consumed()` wake the task. Once a close frame (or a protocol
            // error) is in, nothing more is delivered, so reading goes on regardless: the
            // peer's end of the connection must not wait for a `resume()`.
            return ReadStep::Idle;
        }
        let max = self.read_buffer.max(4096);
        SCRATCH.with(|cell| {
            let Ok(mut scratch) = cell.try_borrow_mut() else {
                // Not reachable (nothing polls a connection from inside another's read);
                // a fresh buffer keeps it correct if it ever happens.
                let mut own = vec![0; max + self.partial.len()];
                return self.read_into(cx, &mut own);
            };
            let need = max + self.partial.len();
            if scratch.len() < need {
                scratch.resize(need, 0);
            }
            self.read_into(cx, &mut scratch[..need])
        })
    }

    fn read_into(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> ReadStep {
        let keep = self.partial.len();
        buf[..keep].copy_from_slice(&self.partial);
        let mut rb = ReadBuf::new(&mut buf[keep..]);
        match Pin::new(&mut self.stream).poll_read(cx, &mut rb) {
            Poll::Pending => ReadStep::Idle,
            Poll::Ready(Err(_)) => ReadStep::Ended,
            Poll::Ready(Ok(())) => {
                let n = rb.filled().len();
                if n == 0 {
                    if self.written_out() {
                        return ReadStep::Ended;
                    }
                    // The peer is done sending but may still read: write out what is queued
                    // (a close echo, say) first, within the closing-handshake time.
                    self.eof = true;
                    self.shared.start_close_timer();
                    return ReadStep::Progress;
                }
                self.partial.clear();
                self.on_bytes(&buf[..keep + n]);
                ReadStep::Progress
            }
        }
    }

    /// Frames queued commands into `out` (up to `write_batch` bytes); false if none.
    fn fill(&mut self) -> bool {
        if self.backlog.is_empty() {
            self.backlog = self.shared.take_commands();
            if self.backlog.is_empty() {
                return false;
            }
        }
        let shared = &*self.shared;
        while self.out.len() < self.write_batch {
            let Some(cmd) = self.backlog.pop_front() else {
                break;
            };
            let closing = shared.close_sent.load(Ordering::SeqCst);
            match cmd {
                Command::Frame {
                    opcode,
                    fin,
                    payload,
                    accounted,
                    ack,
                } => {
                    if !closing {
                        frame::encode(&mut self.out, fin, opcode, &payload, rand::random());
                    }
                    self.bytes += accounted;
                    if ack != 0 {
                        if closing {
                            self.failed_acks.get_or_insert_with(Box::default).push(ack);
                        } else {
                            self.acks.push(ack);
                        }
                    }
                    pool::recycle(payload);
                }
                Command::Batch(data) => {
                    let out = &mut self.out;
                    let (bytes, acks, failed) =
                        (&mut self.bytes, &mut self.acks, &mut self.failed_acks);
                    let whole = for_each_batched(&data, |opcode, fin, payload, ack| {
                        if !closing {
                            frame::encode(out, fin, opcode, payload, rand::random());
                        }
                        *bytes += frame::framed_len(payload.len());
                        if ack != 0 {
                            if closing {
                                failed.get_or_insert_with(Box::default).push(ack)
                            } else {
                                acks.push(ack)
                            }
                        }
                    });
                    if !whole {
                        log::warn!("socket: dropped the rest of a malformed send batch");
                    }
                }
                Command::Close { code, reason } => {
                    if !shared.close_sent.swap(true, Ordering::SeqCst) {
                        let mut payload = Vec::with_capacity(2 + reason.len());
                        if let Some(c) = code {
                            payload.extend_from_slice(&c.to_be_bytes());
                            payload.extend_from_slice(&reason);
                        }
                        frame::encode(
                            &mut self.out,
                            true,
                            frame::OP_CLOSE,
                            &payload,
                            rand::random(),
                        );
                        shared.start_close_timer();
                    }
                }
                Command::Terminate => shared.terminate(),
            }
        }
        if self.backlog.is_empty() {
            // Do not keep a burst's queue for the connection's life.
            self.backlog = VecDeque::new();
        }
        true
    }

    /// Everything in `out` is written: report it and start over.
    fn batch_done(&mut self) {
        if self.bytes > 0 || !self.acks.is_empty() || self.failed_acks.is_some() {
            self.sink.push(Event::Written {
                bytes: std::mem::take(&mut self.bytes),
                acks: std::mem::take(&mut self.acks),
                failed: self.failed_acks.take().map_or_else(Vec::new, |f| *f),
            });
        }
        self.pongs = 0;
        self.written = 0;
        if self.out.capacity() > SHRINK_ABOVE {
            // One huge message must not pin its buffer for the connection's life.
            self.out = Vec::new();
        } else {
            self.out.clear();
        }
    }

    /// Writes what is queued; `Err` when the connection cannot be written to any more.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Result<bool, ()> {
        let mut progress = false;
        loop {
            if self.written == self.out.len() {
                if self.unflushed {
                    match Pin::new(&mut self.stream).poll_flush(cx) {
                        Poll::Pending => return Ok(progress),
                        Poll::Ready(Err(_)) => return Err(()),
                        Poll::Ready(Ok(())) => self.unflushed = false,
                    }
                }
                self.batch_done();
                if !self.fill() {
                    break;
                }
                progress = true;
                continue;
            }
            match Pin::new(&mut self.stream).poll_write(cx, &self.out[self.written..]) {
                Poll::Pending => return Ok(progress),
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Err(()),
                Poll::Ready(Ok(n)) => {
                    self.written += n;
                    self.unflushed = true;
                    progress = true;
                }
            }
        }
        if !self.shut
            && self.shared.close_sent.load(Ordering::SeqCst)
            && self.shared.close_received.load(Ordering::SeqCst)
        {
            // Both close frames are out: half-close, and let the server end the connection.
            match Pin::new(&mut self.stream).poll_shutdown(cx) {
                Poll::Pending => return Ok(progress),
                Poll::Ready(_) => {
                    self.shut = true;
                    progress = true;
                }
            }
        }
        Ok(progress)
    }
}

impl Future for Pump {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        // Registered first: whatever changes from here on wakes this task again.
        this.shared.register(cx.waker());
        for _ in 0..ROUNDS_PER_POLL {
            if this.shared.cancelled() || this.poll_timer(cx).is_ready() {
                return this.finish();
            }
            let wrote = match this.poll_write(cx) {
                Ok(p) => p,
                Err(()) => {
                    // The reader may be paused and never see the failure: end here.
                    this.shared.cancel.store(true, Ordering::SeqCst);
                    return this.finish();
                }
            };
            if this.eof && this.written_out() {
                return this.finish();
            }
            let read = match this.poll_read(cx) {
                ReadStep::Progress => true,
                ReadStep::Idle => false,
                ReadStep::Ended => return this.finish(),
            };
            if !wrote && !read {
                return Poll::Pending;
            }
        }
        // A busy connection gives the other tasks of this thread a turn.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(out: &mut Vec<u8>, flags: u8, payload: &[u8], ack: u32) {
        out.push(flags);
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&ack.to_be_bytes());
        out.extend_from_slice(payload);
    }

    #[test]
    fn batches_unpack_and_refuse_truncation() {
        let mut b = Vec::new();
        item(&mut b, 0x81, b"hi", 3);
        item(&mut b, 0x02, b"", 0);
        let mut seen = Vec::new();
        assert!(for_each_batched(&b, |op, fin, p, ack| seen.push((
            op,
            fin,
            p.to_vec(),
            ack
        ))));
        assert_eq!(
            seen,
            vec![(1, true, b"hi".to_vec(), 3), (2, false, vec![], 0)]
        );
        b.truncate(b.len() - 1);
        let mut n = 0;
        assert!(!for_each_batched(&b, |_, _, _, _| n += 1));
        assert_eq!(n, 1);
        assert!(!for_each_batched(
            &[0x81, 0, 0, 0, 9, 0, 0, 0, 0, 1],
            |_, _, _, _| {}
        ));
    }
}
