//! One client WebSocket connection: the handshake, then a reader task and a writer task.
//!
//! - The reader parses frames (on a tokio thread), answers pings, echoes close frames, and
//!   pushes events to an [`EventSink`]. It stops reading the socket while the connection is
//!   paused or while more than `inbound_high_water` bytes of messages wait to be consumed,
//!   so a slow consumer holds back the peer through TCP.
//! - The writer takes commands in order, frames and masks them, and coalesces everything
//!   queued into one write. Each write reports the bytes it covered and the callbacks it
//!   completes, so `bufferedAmount` and send callbacks follow bytes actually written.
//! - Events of one connection go through one sink, in order: a message can never overtake
//!   the close.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::io::IoStream;
use crate::socket::frame::{self, Decoder, FrameError, Incoming, Limits};
use crate::socket::handshake::{self, ConnectError, ConnectOptions};
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
    /// Read buffer size. Default 64 KiB.
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
    /// Answer a ping (queued by the reader; counted so that a ping flood cannot queue pongs
    /// without bound).
    AutoPong(Vec<u8>),
    /// Drop the connection now.
    Terminate,
}

/// Most auto-pongs waiting to be written before the connection is dropped (ws 8's
/// `maxPendingAutoPongs` default).
pub const MAX_PENDING_AUTO_PONGS: usize = 60;

/// What a control event counts against the consumer's backlog: its payload plus a fixed
/// cost, so a flood of pings or pongs stops the reader like a flood of messages does.
pub const CONTROL_EVENT_COST: usize = 64;

/// First size of the read buffer.
const INITIAL_READ_BUFFER: usize = 4 * 1024;

/// The writer's buffer is replaced by a small one after a write larger than this.
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
}

/// State shared between the owner and the connection's tasks.
pub struct Shared {
    paused: AtomicBool,
    resumed: Notify,
    inflight: AtomicUsize,
    drained: Notify,
    cancel: CancellationToken,
    close_sent: AtomicBool,
    close_received: AtomicBool,
    close_deadline: Mutex<Option<Instant>>,
    deadline_set: Notify,
    close_timeout: Mutex<Duration>,
    pending_pongs: AtomicUsize,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            paused: AtomicBool::new(false),
            resumed: Notify::new(),
            inflight: AtomicUsize::new(0),
            drained: Notify::new(),
            cancel: CancellationToken::new(),
            close_sent: AtomicBool::new(false),
            close_received: AtomicBool::new(false),
            close_deadline: Mutex::new(None),
            deadline_set: Notify::new(),
            close_timeout: Mutex::new(Duration::from_secs(30)),
            pending_pongs: AtomicUsize::new(0),
        }
    }
}

impl Shared {
    /// Starts the closing-handshake timer (once) with the connection's close timeout.
    fn start_configured_close_timer(&self) {
        let timeout = self
            .close_timeout
            .lock()
            .map(|t| *t)
            .unwrap_or(Duration::from_secs(30));
        self.start_close_timer(timeout);
    }

    /// Stops reading from the socket.
    pub fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
    }

    /// Reads again.
    pub fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
        self.resumed.notify_waiters();
    }

    /// The owner consumed `bytes` of message data.
    pub fn consumed(&self, bytes: usize) {
        let before = self.inflight.fetch_sub(
            bytes.min(self.inflight.load(Ordering::SeqCst)),
            Ordering::SeqCst,
        );
        if before > 0 {
            self.drained.notify_waiters();
        }
    }

    fn start_close_timer(&self, timeout: Duration) {
        if let Ok(mut d) = self.close_deadline.lock() {
            if d.is_none() {
                *d = Some(Instant::now() + timeout);
                self.deadline_set.notify_waiters();
            }
        }
    }

    fn close_deadline(&self) -> Option<Instant> {
        self.close_deadline.lock().ok().and_then(|d| *d)
    }
}

/// The owner's handle: sends commands, pauses and resumes.
#[derive(Clone)]
pub struct Handle {
    commands: mpsc::UnboundedSender<Command>,
    /// Shared state.
    pub shared: Arc<Shared>,
}

impl Handle {
    /// Queues a command; false when the connection is gone.
    pub fn send(&self, c: Command) -> bool {
        match c {
            Command::Terminate => self.shared.cancel.cancel(),
            // As ws: the closing handshake's time starts with close(), not when the close
            // frame gets past data a stalled peer is not reading.
            Command::Close { .. } => self.shared.start_configured_close_timer(),
            _ => {}
        }
        self.commands.send(c).is_ok()
    }
}

/// Starts connecting on the current tokio runtime. Events go to `sink`; the last is always
/// [`Event::Closed`].
pub fn connect(options: ConnectOptions, socket: SocketOptions, sink: Arc<dyn EventSink>) -> Handle {
    let (tx, rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared::default());
    if let Ok(mut t) = shared.close_timeout.lock() {
        *t = socket.close_timeout;
    }
    let handle = Handle {
        commands: tx.clone(),
        shared: shared.clone(),
    };
    tokio::spawn(run(options, socket, sink, tx, rx, shared));
    handle
}

/// Waits for a command that aborts a connection still in its handshake.
async fn abort_requested(rx: &mut mpsc::UnboundedReceiver<Command>) {
    loop {
        match rx.recv().await {
            Some(Command::Close { .. }) | Some(Command::Terminate) => return,
            // The owner cannot send frames before 'open'; anything else is ignored.
            Some(_) => continue,
            // The owner is gone: keep connecting would only waste; treat as an abort.
            None => return,
        }
    }
}

fn closed(sink: &dyn EventSink, code: u16, reason: Vec<u8>, shared: &Shared) {
    sink.push(Event::Closed {
        code,
        reason,
        frame_received: shared.close_received.load(Ordering::SeqCst),
        frame_sent: shared.close_sent.load(Ordering::SeqCst),
    });
}

async fn run(
    options: ConnectOptions,
    socket: SocketOptions,
    sink: Arc<dyn EventSink>,
    tx: mpsc::UnboundedSender<Command>,
    mut rx: mpsc::UnboundedReceiver<Command>,
    shared: Arc<Shared>,
) {
    let established = tokio::select! {
        r = handshake::connect(&options) => r,
        _ = abort_requested(&mut rx) => {
            sink.push(Event::Error(SocketError {
                message: "WebSocket was closed before the connection was established".into(),
                code: None,
                range_error: false,
                status_code: None,
                status_description: None,
            }));
            return closed(&*sink, 1006, Vec::new(), &shared);
        }
    };
    let established = match established {
        Ok(e) => e,
        Err(e) => {
            log::debug!("socket: connect failed: {}", e.message);
            sink.push(Event::Error(e.into()));
            return closed(&*sink, 1006, Vec::new(), &shared);
        }
    };
    sink.push(Event::Open {
        protocol: established.protocol,
    });
    run_open(
        established.stream,
        established.initial,
        socket,
        sink,
        tx,
        rx,
        shared,
    )
    .await;
}

/// Runs an established connection to its end. Public for the listener's accepted sockets.
pub async fn run_open(
    stream: IoStream,
    initial: Vec<u8>,
    socket: SocketOptions,
    sink: Arc<dyn EventSink>,
    tx: mpsc::UnboundedSender<Command>,
    rx: mpsc::UnboundedReceiver<Command>,
    shared: Arc<Shared>,
) {
    let (reader, writer) = tokio::io::split(stream);
    let write_task = tokio::spawn(write_loop(writer, rx, socket, shared.clone(), sink.clone()));
    let (code, reason) = read_loop(reader, initial, socket, &tx, &shared, &*sink).await;
    shared.cancel.cancel();
    // The writer stops at the cancel; should it still be stuck (a TLS flush to a peer that
    // reads nothing), it is aborted so that the close is never held up.
    let abort = write_task.abort_handle();
    if tokio::time::timeout(Duration::from_secs(1), write_task)
        .await
        .is_err()
    {
        abort.abort();
    }
    closed(&*sink, code, reason, &shared);
}

/// Why reading stopped waiting.
enum Wake {
    Go,
    Stop,
}

/// Waits while paused or while the consumer is behind; `Stop` on cancel or close timeout.
async fn wait_until_readable(shared: &Shared, high_water: usize) -> Wake {
    loop {
        let resumed = shared.resumed.notified();
        let drained = shared.drained.notified();
        tokio::pin!(resumed, drained);
        resumed.as_mut().enable();
        drained.as_mut().enable();
        let paused = shared.paused.load(Ordering::SeqCst);
        let behind = shared.inflight.load(Ordering::SeqCst) > high_water;
        if !paused && !behind {
            return Wake::Go;
        }
        tokio::select! {
            _ = &mut resumed, if paused => {}
            _ = &mut drained, if behind => {}
            _ = shared.cancel.cancelled() => return Wake::Stop,
            _ = close_timer(shared) => return Wake::Stop,
        }
    }
}

/// Completes when the closing handshake has run out of time (never if no close started).
async fn close_timer(shared: &Shared) {
    loop {
        let set = shared.deadline_set.notified();
        tokio::pin!(set);
        set.as_mut().enable();
        match shared.close_deadline() {
            Some(at) => return tokio::time::sleep_until(at).await,
            None => set.await,
        }
    }
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut reader: R,
    initial: Vec<u8>,
    socket: SocketOptions,
    tx: &mpsc::UnboundedSender<Command>,
    shared: &Shared,
    sink: &dyn EventSink,
) -> (u16, Vec<u8>) {
    let mut decoder = Decoder::new(socket.limits);
    // One buffer per connection: reads append to it and the decoder consumes from its front.
    // Reads start at 4 KiB and double while they fill up, to `read_buffer`, so idle
    // connections stay small and bulk transfers take few system calls.
    let mut buf = initial;
    let max_read = socket.read_buffer.max(INITIAL_READ_BUFFER);
    let mut want = INITIAL_READ_BUFFER;
    let mut items = Vec::new();
    let mut close: Option<(u16, Vec<u8>)> = None;
    let mut failed = false;
    loop {
        if close.is_some() {
            // Nothing after a close frame is parsed (as ws).
            buf.clear();
        }
        if !buf.is_empty() && !failed {
            let used = match decoder.decode(&buf, &mut items) {
                Ok(n) => n,
                Err(e) => {
                    // As ws: report it, send the close code it calls for, discard the rest.
                    log::debug!("socket: protocol error from the peer: {}", e.message);
                    let code = e.close_code;
                    deliver(&mut items, socket, tx, shared, sink, &mut close);
                    sink.push(Event::Error(e.into()));
                    if !shared.close_received.load(Ordering::SeqCst) {
                        let _ = tx.send(Command::Close {
                            code: Some(code),
                            reason: Vec::new(),
                        });
                    }
                    shared.start_close_timer(socket.close_timeout);
                    failed = true;
                    buf.clear();
                    continue;
                }
            };
            buf.drain(..used);
            deliver(&mut items, socket, tx, shared, sink, &mut close);
        }
        if let Wake::Stop = wait_until_readable(shared, socket.inbound_high_water).await {
            break;
        }
        if buf.is_empty() && buf.capacity() > 2 * max_read {
            // A large message is done: do not keep its buffer for the connection's life.
            buf = Vec::new();
        }
        buf.reserve(want);
        let n = tokio::select! {
            r = reader.read_buf(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
            _ = shared.cancel.cancelled() => break,
            _ = close_timer(shared) => break,
        };
        if failed || close.is_some() {
            buf.clear();
        }
        if n >= want && want < max_read {
            want = (want * 2).min(max_read);
        }
    }
    if failed {
        // ws reports 1006 locally after a protocol error, whatever it sent.
        return (1006, Vec::new());
    }
    close.unwrap_or((1006, Vec::new()))
}

/// Hands decoded items to the sink, answering pings and echoing a close.
fn deliver(
    items: &mut Vec<Incoming>,
    socket: SocketOptions,
    tx: &mpsc::UnboundedSender<Command>,
    shared: &Shared,
    sink: &dyn EventSink,
    close: &mut Option<(u16, Vec<u8>)>,
) {
    for item in items.drain(..) {
        if close.is_some() {
            // Nothing may follow a close frame.
            break;
        }
        match item {
            Incoming::Message { binary, frames } => {
                let bytes: usize = frames.iter().map(Vec::len).sum();
                shared.inflight.fetch_add(bytes, Ordering::SeqCst);
                sink.push(Event::Message { binary, frames });
            }
            Incoming::Ping(data) => {
                let open = !shared.close_sent.load(Ordering::SeqCst)
                    && !shared.close_received.load(Ordering::SeqCst);
                if socket.auto_pong && open {
                    if shared.pending_pongs.fetch_add(1, Ordering::SeqCst) >= MAX_PENDING_AUTO_PONGS
                    {
                        // The peer pings faster than it reads our pongs: drop it, as ws does.
                        log::debug!("socket: too many pongs pending; terminating");
                        shared.cancel.cancel();
                        break;
                    }
                    let _ = tx.send(Command::AutoPong(data.clone()));
                }
                shared
                    .inflight
                    .fetch_add(data.len() + CONTROL_EVENT_COST, Ordering::SeqCst);
                sink.push(Event::Ping(data));
            }
            Incoming::Pong(data) => {
                shared
                    .inflight
                    .fetch_add(data.len() + CONTROL_EVENT_COST, Ordering::SeqCst);
                sink.push(Event::Pong(data));
            }
            Incoming::Close(code, reason) => {
                shared.close_received.store(true, Ordering::SeqCst);
                sink.push(Event::CloseReceived);
                // Echo it (the same code and reason, or an empty frame for "no code"). If our
                // close went first, the writer only notes that the handshake is complete.
                let _ = tx.send(Command::Close {
                    code,
                    reason: if code.is_some() {
                        reason.clone()
                    } else {
                        Vec::new()
                    },
                });
                shared.start_close_timer(socket.close_timeout);
                *close = Some((code.unwrap_or(1005), reason));
            }
        }
    }
    items.clear();
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut rx: mpsc::UnboundedReceiver<Command>,
    socket: SocketOptions,
    shared: Arc<Shared>,
    sink: Arc<dyn EventSink>,
) {
    let mut out = Vec::new();
    let mut shut = false;
    loop {
        let first = tokio::select! {
            c = rx.recv() => match c {
                Some(c) => c,
                None => break,
            },
            _ = shared.cancel.cancelled() => break,
        };
        let mut bytes = 0;
        let mut acks = Vec::new();
        let mut failed = Vec::new();
        let mut next = Some(first);
        while let Some(cmd) = next.take() {
            match cmd {
                Command::Terminate => {
                    shared.cancel.cancel();
                    return;
                }
                Command::Frame {
                    opcode,
                    fin,
                    payload,
                    accounted,
                    ack,
                } => {
                    if shared.close_sent.load(Ordering::SeqCst) {
                        bytes += accounted;
                        if ack != 0 {
                            failed.push(ack);
                        }
                    } else {
                        frame::encode(&mut out, fin, opcode, &payload, rand::random());
                        bytes += accounted;
                        if ack != 0 {
                            acks.push(ack);
                        }
                    }
                    pool::recycle(payload);
                }
                Command::Batch(data) => {
                    let closing = shared.close_sent.load(Ordering::SeqCst);
                    let whole = for_each_batched(&data, |opcode, fin, payload, ack| {
                        if !closing {
                            frame::encode(&mut out, fin, opcode, payload, rand::random());
                        }
                        bytes += frame::framed_len(payload.len());
                        if ack != 0 {
                            if closing {
                                failed.push(ack)
                            } else {
                                acks.push(ack)
                            }
                        }
                    });
                    if !whole {
                        log::warn!("socket: dropped the rest of a malformed send batch");
                    }
                }
                Command::AutoPong(payload) => {
                    shared.pending_pongs.fetch_sub(1, Ordering::SeqCst);
                    if !shared.close_sent.load(Ordering::SeqCst) {
                        frame::encode(&mut out, true, frame::OP_PONG, &payload, rand::random());
                    }
                }
                Command::Close { code, reason } => {
                    if !shared.close_sent.swap(true, Ordering::SeqCst) {
                        let mut payload = Vec::with_capacity(2 + reason.len());
                        if let Some(c) = code {
                            payload.extend_from_slice(&c.to_be_bytes());
                            payload.extend_from_slice(&reason);
                        }
                        frame::encode(&mut out, true, frame::OP_CLOSE, &payload, rand::random());
                        shared.start_close_timer(socket.close_timeout);
                    }
                }
            }
            if out.len() < socket.write_batch {
                next = rx.try_recv().ok();
            }
        }
        if !out.is_empty() {
            let written = tokio::select! {
                r = writer.write_all(&out) => r.is_ok(),
                _ = shared.cancel.cancelled() => false,
            };
            out.clear();
            if out.capacity() > SHRINK_ABOVE {
                // One huge message must not pin its buffer for the connection's life.
                out = Vec::with_capacity(64 * 1024);
            }
            if !written {
                // The reader may be paused and never see the failure: end the connection.
                shared.cancel.cancel();
                break;
            }
        }
        if bytes > 0 || !acks.is_empty() || !failed.is_empty() {
            sink.push(Event::Written {
                bytes,
                acks,
                failed,
            });
        }
        if !shut
            && shared.close_sent.load(Ordering::SeqCst)
            && shared.close_received.load(Ordering::SeqCst)
        {
            // Both close frames are out: half-close, and let the server end the connection.
            tokio::select! {
                _ = async {
                    let _ = writer.flush().await;
                    let _ = writer.shutdown().await;
                } => {}
                _ = shared.cancel.cancelled() => break,
            }
            shut = true;
        }
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
