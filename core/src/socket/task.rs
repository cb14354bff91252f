//! An open connection's one task: reading, writing, the closing handshake and its timer.
//!
//! - Reading parses frames (on a tokio thread), answers pings, echoes close frames (or
//!   leaves the echo to the owner: `SocketOptions::owner_echoes_close`), and pushes events
//!   to an [`EventSink`]. It stops reading the socket while the connection is
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
//! - Under permessage-deflate, frames are compressed as they are framed and messages
//!   inflated as they are decoded ([`PerMessage`]); the contexts are dropped whenever the
//!   connection goes idle (nothing to read or write), so an idle compressed connection keeps
//!   only a small box and, if the peer keeps its context, the window it may refer back to.
//!
//! An idle open connection costs this task (a few hundred bytes), its [`Shared`] state and
//! the socket: no read buffer, no channel, no second task. That is what lets a listener
//! hold thousands of them cheaply.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use crate::io::IoStream;
use crate::socket::api::{
    Command, Event, EventSink, SocketOptions, CONTROL_EVENT_COST, MAX_PENDING_AUTO_PONGS,
};
use crate::socket::batch::batched_until;
use crate::socket::budget;
use crate::socket::compress::{Inflater, PerMessage};
use crate::socket::deflate::Agreement;
use crate::socket::error::SocketError;
use crate::socket::frame::{self, Decoder, Incoming};
use crate::socket::heartbeat::{Beat, Heartbeat};
use crate::socket::inline::{Inline, Reader};
use crate::socket::open::closed;
use crate::socket::pool;
use crate::socket::shared::Shared;

/// The write buffer is dropped after a write larger than this.
const SHRINK_ABOVE: usize = 4 * 1024 * 1024;

/// Write buffer an idle connection keeps for its next send: a larger one goes (back to the
/// pool when it is large, see `pool.rs`) once everything is written and nothing else is
/// waiting, so that a connection which once sent a large message does not hold its buffer
/// while idle (thousands of connections would); the next large send takes one from the pool
/// again rather than mapping fresh pages.
const IDLE_OUT_KEEP: usize = 16 * 1024;

thread_local! {
    /// Each tokio thread reads into this one buffer; a connection keeps only an incomplete
    /// frame header between reads, so idle connections hold no read buffer.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// Each tokio thread compresses into this one buffer before a frame is masked into the
    /// connection's output.
    static DEFLATED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// Each thread decodes a read's frames into this one list: made anew for every read,
    /// it grew from nothing (a reallocation at every doubling) for every burst of messages.
    static DECODED: RefCell<Vec<Incoming>> = const { RefCell::new(Vec::new()) };
}

/// At most this many decoded items' room is kept in [`DECODED`] between reads.
const DECODED_KEPT: usize = 1024;

#[cfg(test)]
thread_local! {
    /// Reads made straight into a payload on this thread: the tests check that large frames
    /// take that path.
    static DIRECT_READS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// A frame's payload with this much or more still to come is read straight into the
/// payload (see [`ConnectionTask::read_payload`]); less goes through the thread's buffer,
/// where one read takes several small frames at once.
const DIRECT_PAYLOAD: usize = 16 * 1024;

/// Frames `payload` into `out`: compressed (RSV1 on a message's first frame) when it is a
/// data frame, the owner asked, and permessage-deflate is agreed (`ext`). Returns the
/// payload bytes compressed (0 when sent as is).
fn encode(
    out: &mut Vec<u8>,
    ext: Option<&mut PerMessage>,
    fin: bool,
    opcode: u8,
    payload: &[u8],
    compress: bool,
) -> Result<usize, SocketError> {
    let Some(ext) = ext.filter(|_| opcode < frame::OP_CLOSE) else {
        frame::encode(out, fin, opcode, payload, rand::random());
        return Ok(0);
    };
    let first = opcode != frame::OP_CONTINUATION;
    if !ext.deflate.decide(first, compress) {
        frame::encode(out, fin, opcode, payload, rand::random());
        return Ok(0);
    }
    DEFLATED.with(|cell| {
        let mut own = Vec::new();
        let mut scratch = cell.try_borrow_mut();
        let buf = match scratch.as_deref_mut() {
            Ok(b) => b,
            Err(_) => &mut own,
        };
        ext.deflate.compress(payload, fin, buf)?;
        frame::encode_frame(out, fin, first, opcode, buf, rand::random());
        if buf.capacity() > SHRINK_ABOVE {
            *buf = Vec::new();
        }
        Ok(payload.len())
    })
}

/// Largest send the owner writes directly (see [`ConnectionTask::send_direct`]): above it,
/// framing and masking on the owner's (JavaScript's) thread would cost it more than the
/// task's wake-up.
pub const DIRECT_MAX: usize = 64 * 1024;

/// A send, borrowed from its owner: one frame, or a packed batch of them.
#[derive(Debug, Clone, Copy)]
pub enum Outgoing<'a> {
    /// One frame; see [`Command::Frame`].
    Frame {
        /// Opcode.
        opcode: u8,
        /// Final fragment.
        fin: bool,
        /// Payload, unmasked.
        payload: &'a [u8],
        /// Compress it, if permessage-deflate is agreed.
        compress: bool,
        /// Bytes to report as written.
        accounted: usize,
        /// Callback id, 0 for none.
        ack: u32,
    },
    /// Frames packed as [`Command::Batch`] packs them.
    Batch(&'a [u8]),
}

impl Outgoing<'_> {
    /// The bytes handed over.
    pub fn len(&self) -> usize {
        match self {
            Outgoing::Frame { payload, .. } => payload.len(),
            Outgoing::Batch(data) => data.len(),
        }
    }

    /// Nothing handed over.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What became of a direct send (see [`crate::socket::Handle::send_direct`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direct {
    /// Written to the socket: its bytes and callbacks are complete now, and no written event
    /// will report them.
    Written,
    /// Framed, and not all written: the task writes the rest and reports the whole send in a
    /// written event, as for a queued one.
    Handed,
    /// Not taken (something is queued or being written, the connection is closing or
    /// compressed, or the send is large): queue it as usual.
    Refused,
}

/// Polls in one wake-up before the task yields to others.
const ROUNDS_PER_POLL: usize = 32;

/// Sparse turns in a row after a burst before reading is offered to the owner again (see
/// `ConnectionTask::after_turn`).
pub(super) const SPARSE_TURNS: u8 = 3;

// `pongs` is a byte.
const _: () = assert!(MAX_PENDING_AUTO_PONGS < u8::MAX as u16);

/// What a write attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wrote {
    /// Nothing was written (nothing to write, or the socket takes no more now).
    Idle,
    /// Bytes were written.
    Progress,
    /// A part's worth of compressed frames was written (see [`ConnectionTask::fill`]) and
    /// more may be queued.
    Yield,
}

impl Wrote {
    fn of(progress: bool) -> Self {
        if progress {
            Wrote::Progress
        } else {
            Wrote::Idle
        }
    }
}

/// What a read attempt did.
enum ReadStep {
    /// Bytes were read and handled (how many; 0 for the peer's end of sending).
    Progress(usize),
    /// The stream has nothing more now (it returned `Pending`): everything that came is
    /// handled, none of it left in a TLS session or a tunnel's buffer.
    Drained,
    /// Reading is held back (paused, behind the high-water mark or the budget, the peer
    /// done sending, or the owner reads): the stream may still hold bytes.
    Held,
    /// The peer closed the connection or it failed.
    Ended,
}

/// An open connection: reading, writing, the closing handshake and its timer, in one task.
///
/// Kept small on purpose: a listener holds one per idle connection, and tokio allocates a
/// task in steps of 128 bytes (at most 280 bytes of future fit 384, up to 408 take 512),
/// so what an idle connection never uses is boxed or left out (the options it needs are
/// copied; the inbound limit is `shared.high_water`).
pub(super) struct ConnectionTask {
    stream: IoStream,
    /// `SocketOptions::auto_pong`, `read_buffer` and `write_batch`.
    auto_pong: bool,
    /// (u32: room for the boxed options below within the task's budget.)
    read_buffer: u32,
    write_batch: u32,
    sink: Arc<dyn EventSink>,
    shared: Arc<Shared>,
    decoder: Decoder,
    /// An incomplete frame header left from the last read.
    partial: Vec<u8>,
    /// The peer's close frame, once received.
    close: Option<Box<PeerClose>>,
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
    /// Automatic pongs in `out` not yet written (at most `MAX_PENDING_AUTO_PONGS`, 60: a
    /// byte, so that `sparse_wait` fits in the task's budget).
    pongs: u8,
    /// Sparse turns still to come before reading is offered to the owner again (see
    /// `after_turn`).
    sparse_wait: u8,
    /// The write half is shut down (both close frames are out).
    shut: bool,
    /// The peer has finished sending; what is still queued is written before the end.
    eof: bool,
    /// An inline read met the stream's end or failure (see `inline.rs`): the task ends.
    read_ended: bool,
    timer: Option<Pin<Box<Sleep>>>,
    /// permessage-deflate's state, when agreed (boxed: most connections have none).
    ext: Option<Box<PerMessage>>,
    /// The heartbeat, when asked for (boxed: most connections have none).
    heartbeat: Option<Box<Heartbeat>>,
}

/// The peer's close frame.
struct PeerClose {
    /// Its code (`None`: it had none, reported as 1005).
    code: Option<u16>,
    reason: Vec<u8>,
    /// Not echoed yet: waiting for [`Command::EchoClose`] (queued at once, unless the owner
    /// echoes it: `SocketOptions::owner_echoes_close`).
    echo_pending: bool,
}

// The budget above, checked when compiling: a field that pushes an idle connection's task
// into tokio's next allocation step must be boxed or found room for.
const _: () = assert!(std::mem::size_of::<ConnectionTask>() <= 280);

impl Drop for ConnectionTask {
    /// The owner's duplicate of the socket's descriptor (see `inline.rs`) would keep the
    /// connection open after the stream goes: shut it down now, as closing it would.
    fn drop(&mut self) {
        if let Some(w) = self.shared.watch.get() {
            if self.shared.attached.load(Ordering::SeqCst) {
                shut_down(w.fd);
            }
        }
    }
}

/// Shuts down both directions of the connection on descriptor `fd`.
#[cfg(unix)]
fn shut_down(fd: crate::io::SocketFd) {
    // SAFETY: `fd` is the socket of the stream this task still owns (it is dropped after
    // this), so it is open and refers to that socket.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    if let Err(e) = socket2::SockRef::from(&fd).shutdown(std::net::Shutdown::Both) {
        log::debug!("socket: shutdown after inline reads: {e}");
    }
}

#[cfg(not(unix))]
fn shut_down(_: crate::io::SocketFd) {}

/// A [`Command::InPlace`] send, taken apart for `ConnectionTask::frame_in_place`.
struct InPlaceSend {
    /// Opcode.
    opcode: u8,
    /// Final fragment.
    fin: bool,
    /// The room, then the payload, unmasked.
    buf: Vec<u8>,
    /// Bytes to report as written.
    accounted: usize,
    /// Callback id, 0 for none.
    ack: u32,
}

impl ConnectionTask {
    pub(super) fn new(
        stream: IoStream,
        opts: SocketOptions,
        sink: Arc<dyn EventSink>,
        shared: Arc<Shared>,
        deflate: Option<&Agreement>,
    ) -> Self {
        ConnectionTask {
            ext: deflate.map(|a| Box::new(PerMessage::new(a))),
            stream,
            decoder: Decoder::new(opts.limits),
            auto_pong: opts.auto_pong,
            read_buffer: u32::try_from(opts.read_buffer).unwrap_or(u32::MAX),
            write_batch: u32::try_from(opts.write_batch).unwrap_or(u32::MAX),
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
            sparse_wait: 0,
            shut: false,
            eof: false,
            read_ended: false,
            timer: None,
            heartbeat: opts.heartbeat.map(|i| Box::new(Heartbeat::new(i))),
        }
    }

    /// The heartbeat's turn: a ping when one is due; `Ready` when the peer has not answered
    /// the last one (the connection is then dropped), or when the stream ended. Silent once
    /// the closing handshake has begun (its own timer bounds it).
    ///
    /// Only a pong this task could have read counts as missing: its timer keeps running
    /// while the owner's thread (JavaScript's event loop) is busy, and a busy owner may be
    /// what kept the pong unread. So, when the last ping is unanswered at the deadline:
    /// - when the task reads, it first reads what the socket holds (the timer and the pong
    ///   may come in the same poll, after a busy spell of its thread), and when that is
    ///   nothing, it looks again a moment later (after the process was stopped, the runtime
    ///   fires its timers before it learns what its sockets hold);
    /// - while reading is held at the deadline (paused, or messages waiting for the owner
    ///   beyond the high-water mark or the process's budget), or the socket holds more than
    ///   it could read then (a backlog the pong may be behind), it waits another interval,
    ///   and again;
    /// - once per ping, when reading was held during the interval or bytes were still to
    ///   read at the deadline (the pong may be behind them), or the owner's thread was
    ///   reading the socket (inline reads: the task takes reading back), it waits one
    ///   interval more.
    ///
    /// Bytes that keep coming do not count: a peer that sends but never answers is dropped,
    /// as with ws's pattern.
    fn poll_heartbeat(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.closing() {
            return Poll::Pending;
        }
        let Some(hb) = self.heartbeat.as_deref_mut() else {
            return Poll::Pending;
        };
        match hb.poll_beat(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Beat::Ping) => {
                // Ahead of what is queued, not behind it: the peer cannot answer a ping stuck
                // behind a backlog (compressed in parts, one per turn), while its deadline
                // runs from now. A control frame may go between any frames.
                self.backlog.push_front(Command::empty_ping());
                // The round that frames it, and the one that polls the reset timer.
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Poll::Ready(Beat::Dead) => self.judge_heartbeat(cx),
        }
    }

    /// The closing handshake has begun, or the peer broke the protocol or finished sending:
    /// the heartbeat is silent (the close timer, or the end of what is queued, ends it).
    fn closing(&self) -> bool {
        self.close.is_some()
            || self.failed
            || self.eof
            || self.shared.close_sent.load(Ordering::SeqCst)
            || self.shared.close_received.load(Ordering::SeqCst)
    }

    /// The last ping is unanswered at the deadline: reads what can be read, then waits
    /// longer or drops the connection (see [`ConnectionTask::poll_heartbeat`]).
    fn judge_heartbeat(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.read_ended {
            // An inline read met the stream's end or failure: the close (1006), no timeout.
            return Poll::Ready(());
        }
        // Before this deadline's reads, whose messages wait for the owner until the poll
        // ends: they must not make the reading look held.
        let held = self.reading_held(cx);
        // The owner's thread reads the socket inline, and may be busy or not have come to
        // it yet, with the pong in the socket: the task takes reading back (it holds the
        // connection's lock) and reads now, as when it reads all along. Granting the owner
        // an interval more instead made a dead peer's detection take up to twice as long
        // on sparse sockets only, the ones read inline (helper-71).
        self.shared.hand_back();
        // Bytes were read here; and whether more were left than could be read now (reading
        // became held, or the rounds ran out): a backlog the pong may be behind.
        let (mut read_any, mut behind) = (false, false);
        if !held {
            for round in 1..=ROUNDS_PER_POLL {
                let answered = !self
                    .heartbeat
                    .as_deref()
                    .is_some_and(Heartbeat::awaiting_pong);
                if answered {
                    break;
                }
                match self.poll_read(cx) {
                    ReadStep::Ended => return Poll::Ready(()),
                    ReadStep::Progress(_) => {
                        read_any = true;
                        behind = round == ROUNDS_PER_POLL;
                    }
                    ReadStep::Held => {
                        behind = true;
                        break;
                    }
                    ReadStep::Drained => break,
                }
            }
            if self.closing() {
                // The read brought the peer's close, a protocol error or the stream's end.
                return Poll::Pending;
            }
        }
        let Some(hb) = self.heartbeat.as_deref_mut() else {
            return Poll::Pending;
        };
        if !hb.awaiting_pong() {
            // The pong was in what the socket held: the next ping is due now.
            return self.poll_heartbeat(cx);
        }
        if held || behind {
            log::debug!("socket: heartbeat: no pong yet, but reading is held or behind; waiting");
            hb.wait_longer(cx);
            return Poll::Pending;
        }
        if !read_any && hb.take_recheck() {
            hb.wait_briefly(cx);
            return Poll::Pending;
        }
        // Bytes came just now, or reading was held during the interval: the pong may have
        // been behind them, and be on its way.
        if (read_any || hb.was_held()) && hb.take_grace() {
            log::debug!(
                "socket: heartbeat: no pong yet, but it may not have been read; waiting once"
            );
            hb.wait_longer(cx);
            return Poll::Pending;
        }
        let ms = hb.interval().as_millis();
        log::debug!("socket: no pong within the heartbeat interval ({ms} ms); dropping");
        self.sink.push(Event::Error(SocketError::coded(
            format!("WebSocket heartbeat timed out: no pong within {ms} ms"),
            "ETIMEDOUT",
        )));
        Poll::Ready(())
    }

    /// Ends the connection: the close code and reason ws reports, then the close event.
    fn finish(&mut self) -> Poll<()> {
        // ws reports 1006 locally after a protocol error, whatever it sent.
        let (code, reason) = if self.failed {
            (1006, Vec::new())
        } else {
            self.close
                .take()
                .map_or((1006, Vec::new()), |c| (c.code.unwrap_or(1005), c.reason))
        };
        closed(&*self.sink, code, reason, &self.shared);
        Poll::Ready(())
    }

    /// Ends the connection after an internal error: an error event, then the close (1006).
    fn internal_error(&mut self) -> Poll<()> {
        log::error!("socket: internal error; the connection is dropped");
        self.shared.cancel.store(true, Ordering::SeqCst);
        self.sink.push(Event::Error(SocketError::coded(
            "internal error in the connection",
            "ERR_INTERNAL",
        )));
        self.failed = true;
        self.finish()
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
    pub(super) fn on_bytes(&mut self, data: &[u8]) {
        if data.is_empty() || self.failed || self.close.is_some() {
            // Nothing after a close frame or a protocol error is parsed (as ws).
            return;
        }
        self.decode(|decoder, items, inflater| {
            let used = decoder.decode_with(data, items, inflater)?;
            Ok(&data[used..])
        });
    }

    /// Runs the decoder with this thread's list of decoded items, then hands what it
    /// decoded to the sink, keeps what `step` left unconsumed (an incomplete header) for the
    /// next read, or reports its protocol error.
    fn decode<'a>(
        &mut self,
        step: impl FnOnce(
            &mut Decoder,
            &mut Vec<Incoming>,
            Option<&mut Inflater>,
        ) -> Result<&'a [u8], SocketError>,
    ) {
        // Taken, not borrowed: delivering runs the sink, which must be free to decode too.
        let mut items = DECODED.with(|d| d.take());
        let inflater = self.ext.as_deref_mut().map(|e| &mut e.inflate);
        match step(&mut self.decoder, &mut items, inflater) {
            Ok(rest) => {
                self.deliver_read(&mut items);
                if self.close.is_none() {
                    // An incomplete header, for the next read; after a close frame the
                    // decoder stopped, and the rest is never read.
                    self.partial.extend_from_slice(rest);
                }
            }
            Err(e) => {
                // As ws: report it, send the close code it calls for, discard the rest.
                log::debug!("socket: protocol error from the peer: {}", e.message);
                let code = e.close_code.unwrap_or(1002);
                self.deliver_read(&mut items);
                self.sink.push(Event::Error(e));
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
        if items.capacity() <= DECODED_KEPT {
            items.clear();
            DECODED.with(|d| {
                if d.borrow().capacity() < items.capacity() {
                    *d.borrow_mut() = items;
                }
            });
        }
    }

    /// Hands one read's decoded items to the sink as one read (see
    /// [`EventSink::read_start`]).
    fn deliver_read(&mut self, items: &mut Vec<Incoming>) {
        self.sink.read_start();
        self.deliver(items);
        self.sink.read_end();
    }

    /// Hands decoded items to the sink, answering pings and echoing a close.
    fn deliver(&mut self, items: &mut Vec<Incoming>) {
        let shared = &*self.shared;
        for item in items.drain(..) {
            if self.close.is_some() {
                // Nothing may follow a close frame.
                break;
            }
            match item {
                Incoming::Message { binary, frames } => {
                    let bytes: usize = frames.iter().map(Vec::len).sum();
                    shared.delivered(bytes);
                    self.sink.push(Event::Message { binary, frames });
                }
                Incoming::Ping(data) => {
                    let open = !shared.close_sent.load(Ordering::SeqCst)
                        && !shared.close_received.load(Ordering::SeqCst);
                    if self.auto_pong && open {
                        if u16::from(self.pongs) >= MAX_PENDING_AUTO_PONGS {
                            // The peer pings faster than it reads our pongs: drop it, as ws does.
                            log::debug!("socket: too many pongs pending; terminating");
                            shared.terminate();
                            break;
                        }
                        self.pongs += 1;
                        frame::encode(&mut self.out, true, frame::OP_PONG, &data, rand::random());
                    }
                    shared.delivered(data.len() + CONTROL_EVENT_COST);
                    self.sink.push(Event::Ping(data));
                }
                Incoming::Chunk { data, first, last } => {
                    shared.delivered(data.len());
                    self.sink.push(Event::Chunk { data, first, last });
                }
                Incoming::Pong(data) => {
                    if let Some(hb) = self.heartbeat.as_deref_mut() {
                        hb.pong();
                    }
                    shared.delivered(data.len() + CONTROL_EVENT_COST);
                    self.sink.push(Event::Pong(data));
                }
                Incoming::Close(code, reason) => {
                    shared.close_received.store(true, Ordering::SeqCst);
                    self.sink.push(Event::CloseReceived);
                    // The echo (the same code and reason, or an empty frame for "no code";
                    // nothing if our close went first) is framed by `Command::EchoClose`.
                    self.close = Some(Box::new(PeerClose {
                        code,
                        reason,
                        echo_pending: true,
                    }));
                    if !shared.owner_echoes {
                        // Echoed after what the owner already queued.
                        shared.push(Command::EchoClose);
                        shared.start_close_timer();
                    }
                    // Else the owner echoes it once it has handled what came before it, and
                    // the closing-handshake timer starts with the echo, as ws's with its
                    // close(): the time the owner takes over those messages is not counted
                    // against it (a paused owner answers at once, as ws does). A peer that
                    // ends the stream first starts it too (`end_of_input`).
                }
            }
        }
    }

    /// Nothing is left to write.
    fn written_out(&self) -> bool {
        // An echo the owner still owes (`SocketOptions::owner_echoes_close`) is still to be
        // written: a peer that half-closes after its close frame gets it all the same. (Not
        // once a close frame of ours went: the echo would be nothing then.)
        let echo_owed = self.close.as_deref().is_some_and(|c| c.echo_pending)
            && !self.shared.close_sent.load(Ordering::SeqCst);
        !echo_owed
            && self.written == self.out.len()
            && !self.unflushed
            && self.backlog.is_empty()
            && self
                .shared
                .queue
                .lock()
                .map(|q| q.is_empty())
                .unwrap_or(true)
    }

    /// Whether reading is held back: the owner paused, or more messages wait for it than
    /// the high-water mark or the process's budget allow (then `cx` is woken once the
    /// budget has room again).
    fn reading_held(&self, cx: &Context<'_>) -> bool {
        let behind = self.shared.over_high_water() || budget::spent(cx.waker());
        self.shared.paused.load(Ordering::SeqCst) || behind
    }

    /// Reads once, into this thread's buffer or the payload of a large frame (see
    /// [`ConnectionTask::read_payload`]), and handles what came.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> ReadStep {
        if self.read_ended {
            return ReadStep::Ended;
        }
        if self.eof {
            return ReadStep::Held;
        }
        let discarding = self.close.is_some() || self.failed;
        if self.reading_held(cx) && !discarding {
            // `resume()` and `consumed()` wake the task. Once a close frame (or a protocol
            // error) is in, nothing more is delivered, so reading goes on regardless: the
            // peer's end of the connection must not wait for a `resume()`.
            if let Some(hb) = self.heartbeat.as_deref_mut() {
                hb.reading_held();
            }
            return ReadStep::Held;
        }
        let max = (self.read_buffer as usize).max(4096);
        if !discarding && self.partial.is_empty() {
            if let Some(step) = self.read_payload(cx, max) {
                return step;
            }
        }
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
            Poll::Pending => ReadStep::Drained,
            Poll::Ready(Err(_)) => ReadStep::Ended,
            Poll::Ready(Ok(())) => {
                let n = rb.filled().len();
                if n == 0 {
                    return self.end_of_input();
                }
                self.partial.clear();
                self.on_bytes(&buf[..keep + n]);
                ReadStep::Progress(n)
            }
        }
    }

    /// Reads the rest of a large frame's payload (at least [`DIRECT_PAYLOAD`] bytes to
    /// come) straight into the decoder's payload, at most `max` bytes and never past the
    /// frame's end: the kernel's copy is then the only one (through this thread's buffer, the
    /// bytes were copied once more into the payload). `None`: not the case, read through the
    /// buffer. Called only with no header bytes held in `partial` and nothing discarded, so
    /// the stream's next bytes are that payload.
    fn read_payload(&mut self, cx: &mut Context<'_>, max: usize) -> Option<ReadStep> {
        let (payload, want) = self.decoder.payload_to_read(DIRECT_PAYLOAD)?;
        let take = want.min(max);
        // A frame over the decoder's first allocation (1 MiB) grows, to its end at most.
        frame::grow_payload(payload, take, want);
        let mut limited = bytes::BufMut::limit(payload, take);
        let step = match tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), cx, &mut limited)
        {
            Poll::Pending => ReadStep::Drained,
            Poll::Ready(Err(_)) => ReadStep::Ended,
            Poll::Ready(Ok(0)) => self.end_of_input(),
            Poll::Ready(Ok(n)) => {
                #[cfg(test)]
                DIRECT_READS.with(|c| c.set(c.get() + 1));
                self.decode(|decoder, items, inflater| {
                    decoder.payload_read(items, inflater)?;
                    Ok(&[])
                });
                ReadStep::Progress(n)
            }
        };
        Some(step)
    }

    /// The peer is done sending.
    fn end_of_input(&mut self) -> ReadStep {
        if self.written_out() {
            return ReadStep::Ended;
        }
        // The peer is done sending but may still read: write out what is queued (a close
        // echo, say) first, within the closing-handshake time.
        self.eof = true;
        self.shared.start_close_timer();
        ReadStep::Progress(0)
    }

    /// Payload bytes compressed before what was compressed is written (no limit without
    /// compression).
    fn deflate_part(&self) -> usize {
        self.ext.as_deref().map_or(usize::MAX, |e| e.deflate.part())
    }

    /// Frames queued commands into `out`, up to `write_batch` bytes or until a part of
    /// payload was compressed (`Deflater::part`, 16 KiB at level 6): the payload bytes
    /// compressed, or `None` if nothing was queued. A [`Command::InPlace`] send is a batch
    /// of its own: it ends the batch before it, and nothing is framed after it.
    ///
    /// Compressing costs far more than framing (zlib-rs at level 6: about 35 µs per 4 KiB
    /// of JSON-like text): framing a whole queue (a whole window of sends, packed in one
    /// batch by JavaScript) before writing any of it kept the peer waiting for all of it,
    /// and the two ends took turns instead of working at the same time.
    fn fill(&mut self) -> Option<usize> {
        if self.backlog.is_empty() {
            self.backlog = self.shared.take_commands();
            if self.backlog.is_empty() {
                return None;
            }
        }
        let shared = Arc::clone(&self.shared);
        let shared = &*shared;
        let mut broken: Option<SocketError> = None;
        let mut deflated = 0;
        let part = self.deflate_part();
        while self.out.len() < self.write_batch as usize && deflated < part && broken.is_none() {
            let Some(cmd) = self.backlog.pop_front() else {
                break;
            };
            if matches!(cmd, Command::InPlace { .. }) && !self.out.is_empty() {
                // Framed in place in the next batch, which it starts (see below).
                self.backlog.push_front(cmd);
                break;
            }
            let closing = shared.close_sent.load(Ordering::SeqCst);
            match cmd {
                Command::Frame {
                    opcode,
                    fin,
                    payload,
                    compress,
                    accounted,
                    ack,
                } => {
                    let frame = Outgoing::Frame {
                        opcode,
                        fin,
                        payload: &payload,
                        compress,
                        accounted,
                        ack,
                    };
                    deflated += self.frame_out(frame, closing, &mut broken, usize::MAX).0;
                    pool::recycle(payload);
                }
                Command::InPlace {
                    opcode,
                    fin,
                    buf,
                    accounted,
                    ack,
                } => {
                    let send = InPlaceSend {
                        opcode,
                        fin,
                        buf: buf.into_inner(),
                        accounted,
                        ack,
                    };
                    deflated += self.frame_in_place(send, closing, &mut broken);
                    // A batch of its own: appending to its buffer would copy it again.
                    break;
                }
                Command::Batch(data) => {
                    // A batch packs every send of one JavaScript turn (a whole window of
                    // echoes, say): it is compressed in parts too, and its rest stays first
                    // in line (only compression stops a batch early, so `ext` holds where).
                    let from = self
                        .ext
                        .as_deref_mut()
                        .map_or(0, |e| std::mem::take(&mut e.batch_from));
                    let rest = data.get(from..).unwrap_or_default();
                    let budget = part.saturating_sub(deflated);
                    let (n, stopped) =
                        self.frame_out(Outgoing::Batch(rest), closing, &mut broken, budget);
                    deflated += n;
                    if let Some(used) = stopped {
                        match self.ext.as_deref_mut() {
                            Some(e) => {
                                e.batch_from = from + used;
                                self.backlog.push_front(Command::Batch(data));
                            }
                            // Not reachable (see above): the rest as a batch of its own.
                            None => self
                                .backlog
                                .push_front(Command::Batch(data[from + used..].to_vec())),
                        }
                    } else {
                        // Framed whole: its buffer goes back for the next large send.
                        pool::recycle(data);
                    }
                }
                Command::Close { code, reason } => self.frame_close(code, &reason),
                Command::EchoClose => {
                    let echo = match self.close.as_deref_mut() {
                        Some(c) if c.echo_pending => {
                            c.echo_pending = false;
                            // The same code and reason (a frame without a code has no
                            // reason either: an empty frame answers it).
                            Some((c.code, c.reason.clone()))
                        }
                        _ => None,
                    };
                    if let Some((code, reason)) = echo {
                        self.frame_close(code, &reason);
                    }
                }
                Command::Terminate => shared.terminate(),
            }
        }
        if self.backlog.is_empty() {
            // Do not keep a burst's queue for the connection's life.
            self.backlog = VecDeque::new();
        }
        if let Some(e) = broken {
            // Not reachable with a valid compressor; the stream cannot go on without it.
            log::error!("socket: {}; dropping the connection", e.message);
            shared.terminate();
        }
        Some(deflated)
    }

    /// Frames our close frame into `out`, unless one already went.
    fn frame_close(&mut self, code: Option<u16>, reason: &[u8]) {
        if self.shared.close_sent.swap(true, Ordering::SeqCst) {
            return;
        }
        let mut payload = Vec::with_capacity(2 + reason.len());
        if let Some(c) = code {
            payload.extend_from_slice(&c.to_be_bytes());
            payload.extend_from_slice(reason);
        }
        frame::encode(
            &mut self.out,
            true,
            frame::OP_CLOSE,
            &payload,
            rand::random(),
        );
        self.shared.start_close_timer();
    }

    /// Frames a send into `out` and takes note of what it accounts for and whom to call
    /// back. Once our close frame is out (`closing`) nothing more is framed, and the
    /// callbacks fail. A compressor failure is left in `broken`. A batch stops after the
    /// frame that brings the payload bytes compressed to `budget`. Returns the payload bytes
    /// compressed, and where a batch stopped (its rest is still to be framed).
    fn frame_out(
        &mut self,
        send: Outgoing<'_>,
        closing: bool,
        broken: &mut Option<SocketError>,
        budget: usize,
    ) -> (usize, Option<usize>) {
        if self.out.capacity() == 0 {
            // A buffer let go when the connection was last idle: a large one from the pool.
            self.out = pool::with_capacity(send.len() + frame::MAX_CLIENT_HEADER);
        }
        let out = &mut self.out;
        let (bytes, acks, failed) = (&mut self.bytes, &mut self.acks, &mut self.failed_acks);
        let ext = &mut self.ext;
        let mut one = |opcode, fin, payload: &[u8], compress, accounted, ack| {
            let mut deflated = 0;
            if !closing && broken.is_none() {
                match encode(out, ext.as_deref_mut(), fin, opcode, payload, compress) {
                    Ok(n) => deflated = n,
                    Err(e) => *broken = Some(e),
                }
            }
            *bytes += accounted;
            if ack != 0 {
                if closing {
                    failed.get_or_insert_with(Box::default).push(ack);
                } else {
                    acks.push(ack);
                }
            }
            deflated
        };
        match send {
            Outgoing::Frame {
                opcode,
                fin,
                payload,
                compress,
                accounted,
                ack,
            } => (one(opcode, fin, payload, compress, accounted, ack), None),
            Outgoing::Batch(data) => {
                let mut deflated = 0;
                let (used, well_formed) = batched_until(data, |f| {
                    // What the owner counted: the payload as given, framed.
                    let accounted = frame::framed_len(f.payload.len());
                    deflated += one(f.opcode, f.fin, f.payload, f.compress, accounted, f.ack);
                    deflated < budget
                });
                if !well_formed {
                    log::warn!("socket: dropped the rest of a malformed send batch");
                }
                (deflated, (well_formed && used < data.len()).then_some(used))
            }
        }
    }

    /// Frames a [`Command::InPlace`] send in its own buffer, which then becomes `out` (it
    /// starts a batch, see `fill`): the send is not copied again. When the frame is a
    /// continuation of a compressed message after all, or cannot be framed (`closing`, a
    /// compressor that failed), it goes as a [`Command::Frame`] would, from the payload.
    /// Returns the payload bytes compressed.
    fn frame_in_place(
        &mut self,
        send: InPlaceSend,
        closing: bool,
        broken: &mut Option<SocketError>,
    ) -> usize {
        let InPlaceSend {
            opcode,
            fin,
            mut buf,
            accounted,
            ack,
        } = send;
        // The deflater's state moves on as for any data frame: a first frame decides that
        // its message is not compressed; a continuation follows its first frame.
        let compressed = match self.ext.as_deref_mut() {
            Some(e) if opcode < frame::OP_CLOSE => {
                e.deflate.decide(opcode != frame::OP_CONTINUATION, false)
            }
            _ => false,
        };
        if self.out.is_empty() && self.written == 0 && !compressed && !closing && broken.is_none() {
            if let Some(start) = frame::frame_in_room(&mut buf, fin, opcode, rand::random()) {
                pool::recycle(std::mem::replace(&mut self.out, buf));
                self.written = start;
                self.bytes += accounted;
                if ack != 0 {
                    self.acks.push(ack);
                }
                return 0;
            }
        }
        let frame = Outgoing::Frame {
            opcode,
            fin,
            payload: buf.get(frame::MAX_CLIENT_HEADER..).unwrap_or_default(),
            compress: false,
            accounted,
            ack,
        };
        let deflated = self.frame_out(frame, closing, broken, usize::MAX).0;
        pool::recycle(buf);
        deflated
    }

    /// The owner's direct send (see [`crate::socket::Handle::send_direct`]): when nothing
    /// is queued or being written and the connection is open both ways, frames `send` and
    /// writes it at once, without waking the task, as far as the socket takes it (a write
    /// that would block leaves the rest to the task). Anything else is [`Direct::Refused`],
    /// and the owner queues the send as usual, so sends keep their order with each other
    /// and with the close.
    pub(super) fn send_direct(&mut self, send: Outgoing<'_>) -> Direct {
        let shared = Arc::clone(&self.shared);
        let shared = &*shared;
        let idle = self.out.is_empty()
            && !self.unflushed
            && self.backlog.is_empty()
            && !self.shut
            && !self.eof
            && !self.failed
            && self.close.is_none()
            // Compression stays on tokio's threads: it costs too much for the JS thread.
            && self.ext.is_none()
            && send.len() <= DIRECT_MAX;
        if !idle
            || shared.cancelled()
            || shared.finished.load(Ordering::SeqCst)
            || shared.close_sent.load(Ordering::SeqCst)
            || shared.close_received.load(Ordering::SeqCst)
            || !shared.queue.lock().map(|q| q.is_empty()).unwrap_or(false)
        {
            return Direct::Refused;
        }
        let mut broken = None;
        self.frame_out(send, false, &mut broken, usize::MAX);
        if broken.is_some() {
            // Not reachable without a compressor; the task ends the connection as `fill` does.
            shared.terminate();
            return Direct::Handed;
        }
        // A waker that does nothing: whatever registers it instead of the task's is replaced
        // when the task runs again, which it does below whenever anything is left.
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        loop {
            if self.written == self.out.len() {
                match Pin::new(&mut self.stream).poll_flush(&mut cx) {
                    Poll::Ready(Ok(())) => {
                        // Written out: the owner completes the callbacks and its count.
                        self.unflushed = false;
                        self.bytes = 0;
                        self.acks.clear();
                        self.written = 0;
                        self.reuse_out();
                        return Direct::Written;
                    }
                    // The task flushes again, and meets the error if there is one.
                    Poll::Pending | Poll::Ready(Err(_)) => break,
                }
            }
            match Pin::new(&mut self.stream).poll_write(&mut cx, &self.out[self.written..]) {
                Poll::Ready(Ok(n)) if n > 0 => {
                    self.written += n;
                    self.unflushed = true;
                }
                // Would block, or failed: the task writes the rest, or meets the error.
                _ => break,
            }
        }
        shared.wake();
        Direct::Handed
    }

    /// Nothing more may be read inline: paused, behind, closing, compressed, or ended.
    fn inline_held(&self) -> bool {
        let shared = &*self.shared;
        shared.paused.load(Ordering::SeqCst)
            || shared.over_high_water()
            || budget::over()
            || shared.cancelled()
            || shared.finished.load(Ordering::SeqCst)
            || self.eof
            || self.read_ended
            || self.failed
            || self.shut
            || self.close.is_some()
            // Inflating stays on tokio's threads, as compressing does.
            || self.ext.is_some()
            || shared.keep_reading.load(Ordering::SeqCst)
    }

    /// After a turn that read `n` bytes and then found the stream empty. A sparse turn (less
    /// than `sparse_read`) offers reading to the owner; after a burst (a turn, or an inline
    /// read, of `sparse_read` or more), only the next [`SPARSE_TURNS`] + 1st sparse turn in a
    /// row does, so that traffic about the limit does not change hands at every message
    /// (each change costs both threads a wake-up and the socket two registrations).
    fn after_turn(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        if n >= self.shared.sparse_read {
            // An offer made before the burst stays: withdrawn, a later offer would queue a
            // second request to the owner, whose second start would find reading already
            // taken and stop watching the socket.
            self.sparse_wait = SPARSE_TURNS;
        } else if self.sparse_wait > 0 {
            self.sparse_wait -= 1;
        } else {
            self.offer_inline();
        }
    }

    /// The task's turn read a little and then found nothing: asks the owner to read (see
    /// `inline.rs`), unless it could not do so now anyway.
    fn offer_inline(&mut self) {
        if !self.inline_held() && self.shared.want_inline() {
            self.sink.inline_wanted();
        }
    }

    /// The owner's inline read (see [`crate::socket::Handle::read_inline`]): reads until the
    /// socket has nothing more, as the task's turn would, and hands reading back to the task
    /// when it cannot go on cheaply (see `inline.rs`), the socket's `sparse_read` bytes
    /// being the most one call reads inline.
    pub(super) fn read_inline(&mut self) -> Inline {
        let shared = Arc::clone(&self.shared);
        if shared.reader() != Reader::Owner {
            return Inline::Stop;
        }
        if self.inline_held() {
            return shared.hand_back();
        }
        // The task's read waker is left unregistered (see the task's poll): readiness is
        // the owner's to watch.
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        let mut total = 0;
        let step = loop {
            match self.poll_read(&mut cx) {
                ReadStep::Drained => break Inline::Read,
                // Paused or behind meanwhile: the task reads, once it may, with its own
                // waker registered where it waits.
                ReadStep::Held => break shared.hand_back(),
                ReadStep::Ended => {
                    self.read_ended = true;
                    break shared.hand_back();
                }
                ReadStep::Progress(n) => {
                    total += n;
                    if total >= shared.sparse_read {
                        // A burst: the task reads on, until traffic is sparse again for a
                        // while (see `after_turn`).
                        self.sparse_wait = SPARSE_TURNS;
                        break shared.hand_back();
                    }
                    if self.inline_held() {
                        break shared.hand_back();
                    }
                    // The sink gave reading back (the traffic is dense).
                    if shared.reader() != Reader::Owner {
                        break Inline::Stop;
                    }
                }
            }
        };
        if !self.out.is_empty() {
            // An automatic pong to write.
            shared.wake();
        }
        step
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
        self.reuse_out();
    }

    /// Empties the write buffer for the next batch, or lets it go: after a huge write, and
    /// when nothing else is waiting to be written and it is larger than an idle connection
    /// keeps (see [`IDLE_OUT_KEEP`]).
    fn reuse_out(&mut self) {
        let idle = self.backlog.is_empty();
        if self.out.capacity() > SHRINK_ABOVE || (idle && self.out.capacity() > IDLE_OUT_KEEP) {
            pool::recycle(std::mem::take(&mut self.out));
        } else {
            self.out.clear();
        }
    }

    /// Writes what is queued; `Err` when the connection cannot be written to any more.
    /// Once it has written a part's worth of payload compressed (`Deflater::part`), it stops
    /// with [`Wrote::Yield`] and leaves the rest of the queue for the task's next turn.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Result<Wrote, ()> {
        let mut progress = false;
        let mut deflated = 0;
        let part = self.deflate_part();
        loop {
            if self.written == self.out.len() {
                if self.unflushed {
                    match Pin::new(&mut self.stream).poll_flush(cx) {
                        Poll::Pending => return Ok(Wrote::of(progress)),
                        Poll::Ready(Err(_)) => return Err(()),
                        Poll::Ready(Ok(())) => self.unflushed = false,
                    }
                }
                self.batch_done();
                if deflated >= part {
                    return Ok(Wrote::Yield);
                }
                match self.fill() {
                    Some(n) => deflated += n,
                    None => break,
                }
                progress = true;
                continue;
            }
            match Pin::new(&mut self.stream).poll_write(cx, &self.out[self.written..]) {
                Poll::Pending => return Ok(Wrote::of(progress)),
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
            && (self.shared.close_received.load(Ordering::SeqCst) || self.failed)
        {
            // Both close frames are out, or ours answers the peer's protocol error (nothing
            // it sends is read any more): half-close, and let the server end the connection,
            // as ws does.
            match Pin::new(&mut self.stream).poll_shutdown(cx) {
                Poll::Pending => return Ok(Wrote::of(progress)),
                Poll::Ready(_) => {
                    self.shut = true;
                    progress = true;
                }
            }
        }
        Ok(Wrote::of(progress))
    }
}

/// Runs an open connection: polls its state under the lock that its owner's direct sends
/// take too (see [`ConnectionTask::send_direct`]). Its events are held back for the length of
/// a poll ([`EventSink::turn_start`]) and their consumer woken once the lock is released: a
/// consumer woken earlier would find the lock taken when it answers at once, and queue
/// its answer rather than write it.
pub(super) struct Driver {
    pub(super) conn: Arc<Mutex<ConnectionTask>>,
    pub(super) sink: Arc<dyn EventSink>,
}

impl Future for Driver {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.sink.turn_start();
        let done = match self.conn.lock() {
            Ok(mut task) => Pin::new(&mut *task).poll(cx),
            // A direct send panicked with the lock held (none is known to): its state may be
            // half changed, so the connection ends, as after a panic in the task.
            Err(poisoned) => poisoned.into_inner().internal_error(),
        };
        self.sink.turn_end();
        done
    }
}

impl Future for ConnectionTask {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        // Registered first: whatever changes from here on wakes this task again.
        this.shared.register(cx.waker());
        let mut read_total = 0;
        for _ in 0..ROUNDS_PER_POLL {
            if this.shared.cancelled() {
                // Terminated: what was queued before goes out if the socket takes it now,
                // without waiting, as ws writes a send when it is made and its destroy()
                // drops only what the kernel did not take (a send() then terminate() from a
                // busy connection lost its message).
                let _ = this.poll_write(cx);
                return this.finish();
            }
            if this.poll_timer(cx).is_ready() || this.poll_heartbeat(cx).is_ready() {
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
            // While the owner reads inline, the task does not: its read waker stays
            // unregistered, so a message wakes the owner's thread only. Unless the task must
            // read meanwhile (`Handle::keep_reading`): it takes reading back.
            if this.shared.reader() == Reader::Owner
                && this.shared.keep_reading.load(Ordering::SeqCst)
            {
                this.shared.hand_back();
            }
            let inline = this.shared.reader() == Reader::Owner && !this.read_ended;
            let step = if inline {
                ReadStep::Held
            } else {
                this.poll_read(cx)
            };
            // The stream itself had nothing more (see `offer_inline` below).
            let drained = matches!(step, ReadStep::Drained);
            let read = match step {
                ReadStep::Progress(n) => {
                    read_total += n;
                    true
                }
                ReadStep::Drained | ReadStep::Held => false,
                ReadStep::Ended => return this.finish(),
            };
            if wrote == Wrote::Yield {
                // A batch of compressed frames is out: the poll ends, so that what was read
                // reaches its consumer now (events are held for a poll) while the peer
                // inflates; the task runs again at once for the rest of the queue.
                break;
            }
            if wrote == Wrote::Idle && !read {
                if let Some(ext) = this.ext.as_deref_mut() {
                    // Idle: the compression contexts go (see `PerMessage::release`).
                    ext.release();
                }
                // Only once the stream itself had nothing more: bytes left in a TLS session
                // would not make the socket readable for the owner.
                if drained {
                    this.after_turn(read_total);
                }
                return Poll::Pending;
            }
        }
        // A busy connection gives the other tasks of this thread a turn. Busy reading, it
        // had a burst (busy writing only says nothing of what it receives).
        if read_total > 0 {
            this.sparse_wait = SPARSE_TURNS;
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::socket::batch::{BATCH_HEADER, COMPRESS};
    use crate::socket::deflate::Params;
    use crate::socket::Handle;
    use std::time::Duration;

    use crate::socket::api::Ignore;

    fn agreement(server: bool) -> Agreement {
        Agreement {
            params: Params::default(),
            server,
            level: -1,
            mem_level: 8,
        }
    }

    /// Polls `task` once.
    fn poll_once(task: &mut ConnectionTask) -> Poll<()> {
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        Pin::new(task).poll(&mut cx)
    }

    /// What the peer's end of `stream` has to read now.
    fn readable(stream: &mut tokio::io::DuplexStream) -> Vec<u8> {
        use futures_util::FutureExt;
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 256];
        match stream.read(&mut buf).now_or_never() {
            Some(Ok(n)) => buf[..n].to_vec(),
            _ => Vec::new(),
        }
    }

    /// A client connection's task with a heartbeat of 1 s, events to `sink`, and the peer's
    /// end of its in-memory stream.
    fn heartbeat_task(
        sink: Arc<dyn EventSink>,
        deflate: Option<&Agreement>,
    ) -> (ConnectionTask, tokio::io::DuplexStream) {
        let (a, peer) = tokio::io::duplex(4096);
        let opts = SocketOptions {
            heartbeat: Some(Duration::from_secs(1)),
            ..SocketOptions::default()
        };
        let shared = Arc::new(Shared::new(Duration::from_secs(1), usize::MAX));
        let task = ConnectionTask::new(Box::new(a), opts, sink, shared, deflate);
        (task, peer)
    }

    #[tokio::test(start_paused = true)]
    async fn the_heartbeat_goes_on_after_a_pong_read_at_the_deadline() {
        use tokio::io::AsyncWriteExt;
        let (mut task, mut peer) = heartbeat_task(Arc::new(Ignore), None);
        let ping = |wire: &[u8]| wire.len() == 6 && wire[..2] == [0x89, 0x80];
        assert!(poll_once(&mut task).is_pending());
        tokio::time::advance(Duration::from_millis(1001)).await;
        assert!(poll_once(&mut task).is_pending());
        assert!(ping(&readable(&mut peer)), "the first ping");
        // The pong comes, but the task runs only after the next deadline (a busy thread).
        peer.write_all(&[0x8a, 0x00]).await.unwrap();
        tokio::time::advance(Duration::from_millis(1001)).await;
        assert!(
            poll_once(&mut task).is_pending(),
            "the pong was there: alive"
        );
        assert!(
            ping(&readable(&mut peer)),
            "and the next ping goes out at once"
        );
        // That one goes unanswered: dropped at the deadline after it, once a second look a
        // moment later (the runtime's news of the socket may be stale) found nothing either.
        tokio::time::advance(Duration::from_millis(1001)).await;
        assert!(poll_once(&mut task).is_pending(), "a second look first");
        tokio::time::advance(Duration::from_millis(101)).await;
        assert!(poll_once(&mut task).is_ready(), "a silent peer is dropped");
    }

    #[tokio::test(start_paused = true)]
    async fn a_close_read_at_the_heartbeats_deadline_is_no_timeout() {
        use tokio::io::AsyncWriteExt;
        let sink = Arc::new(Collect::default());
        let (mut task, mut peer) = heartbeat_task(sink.clone(), None);
        assert!(poll_once(&mut task).is_pending());
        tokio::time::advance(Duration::from_millis(1001)).await;
        assert!(poll_once(&mut task).is_pending());
        assert_eq!(readable(&mut peer)[0], 0x89, "the ping");
        // A message, no pong, read at the deadline: the once-per-ping interval more.
        peer.write_all(&[0x81, 0x01, b'x']).await.unwrap();
        tokio::time::advance(Duration::from_millis(1001)).await;
        assert!(poll_once(&mut task).is_pending());
        assert!(sink.1.lock().unwrap().is_empty(), "spared once");
        // Still no pong, but the peer's close (4000) arrives before the task runs at the
        // next deadline: that is no timeout, though the once-per-ping interval is spent.
        peer.write_all(&[0x88, 0x02, 0x0f, 0xa0]).await.unwrap();
        tokio::time::advance(Duration::from_millis(1001)).await;
        let _ = poll_once(&mut task);
        assert!(
            sink.1.lock().unwrap().is_empty(),
            "no ETIMEDOUT: the closing handshake takes over"
        );
        assert_eq!(task.close.as_ref().and_then(|c| c.code), Some(4000));
    }

    #[tokio::test(start_paused = true)]
    async fn the_heartbeats_ping_goes_ahead_of_a_compressed_backlog() {
        let (mut task, _peer) = heartbeat_task(Arc::new(Ignore), Some(&agreement(false)));
        for i in 0..16 {
            task.shared.push(Command::Frame {
                opcode: frame::OP_TEXT,
                fin: true,
                payload: text(i),
                compress: true,
                accounted: 4096,
                ack: 0,
            });
        }
        // One part is compressed per turn: the rest waits for later turns.
        assert!(task.fill().is_some());
        assert!(!task.backlog.is_empty(), "a backlog is left");
        task.out.clear();
        task.written = 0;
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        assert!(task.poll_heartbeat(&mut cx).is_pending());
        tokio::time::advance(Duration::from_millis(1001)).await;
        assert!(task.poll_heartbeat(&mut cx).is_pending(), "the ping is due");
        assert!(task.fill().is_some());
        let frames = client_frame_parts(&task.out);
        assert_eq!(
            frames[0],
            (0x89, Vec::new()),
            "the ping first, then the backlog"
        );
        assert!(frames.len() > 1);
    }

    /// A client connection's task under permessage-deflate, on one end of an in-memory
    /// stream (nothing is written in these tests).
    fn task() -> ConnectionTask {
        let (a, _b) = tokio::io::duplex(64);
        ConnectionTask::new(
            Box::new(a),
            SocketOptions::default(),
            Arc::new(Ignore),
            Arc::new(Shared::new(Duration::from_secs(1), usize::MAX)),
            Some(&agreement(false)),
        )
    }

    fn text(i: usize) -> Vec<u8> {
        format!("{{\"id\":{i},\"name\":\"user-{i}\"}},")
            .repeat(200)
            .into_bytes()[..4096]
            .to_vec()
    }

    /// The messages of client frames in `out` (masked, compressed), inflated by `peer`.
    fn messages(out: &[u8], peer: &mut PerMessage) -> Vec<Vec<u8>> {
        client_frame_parts(out)
            .into_iter()
            .map(|(first, payload)| {
                assert_eq!(first & 0xf0, 0xc0, "FIN and RSV1");
                let mut data = Vec::new();
                peer.inflate
                    .inflate(&payload, true, None, &mut data)
                    .unwrap();
                data
            })
            .collect()
    }

    /// The client frames in `wire`: each one's first byte (FIN, RSV bits, opcode) and its
    /// unmasked payload.
    fn client_frame_parts(mut wire: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut got = Vec::new();
        while !wire.is_empty() {
            let (len, at) = match wire[1] & 0x7f {
                126 => (u16::from_be_bytes([wire[2], wire[3]]) as usize, 4),
                127 => {
                    let mut n = [0u8; 8];
                    n.copy_from_slice(&wire[2..10]);
                    (u64::from_be_bytes(n) as usize, 10)
                }
                n => (n as usize, 2),
            };
            assert_eq!(wire[1] & 0x80, 0x80, "masked");
            let mask = &wire[at..at + 4];
            let payload = wire[at + 4..at + 4 + len]
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4])
                .collect();
            got.push((wire[0], payload));
            wire = &wire[at + 4 + len..];
        }
        got
    }

    /// A plain client connection's task (no extension); its owner echoes the peer's close
    /// frame when `owner_echoes`.
    fn plain_task(owner_echoes: bool) -> ConnectionTask {
        let (a, _b) = tokio::io::duplex(64);
        let mut shared = Shared::new(Duration::from_secs(1), usize::MAX);
        shared.owner_echoes = owner_echoes;
        ConnectionTask::new(
            Box::new(a),
            SocketOptions::default(),
            Arc::new(Ignore),
            Arc::new(shared),
            None,
        )
    }

    /// A server's close frame with `code` and `reason`.
    fn server_close(code: u16, reason: &[u8]) -> Vec<u8> {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(reason);
        frame::server_frame(true, frame::OP_CLOSE, &payload)
    }

    #[test]
    fn the_peers_close_is_echoed_at_once_unless_the_owner_echoes_it() {
        let mut task = plain_task(false);
        task.on_bytes(&server_close(4000, b"bye"));
        assert_eq!(task.fill(), Some(0));
        let frames = client_frame_parts(&task.out);
        assert_eq!(frames, [(0x88, b"\x0f\xa0bye".to_vec())]);
        assert!(task.shared.close_sent.load(Ordering::SeqCst));
    }

    #[test]
    fn an_owner_echoes_the_peers_close_after_what_it_sent_in_reply() {
        let mut task = plain_task(true);
        task.on_bytes(&server_close(4000, b"bye"));
        // Nothing goes until the owner has handled what came before the close frame.
        assert_eq!(task.fill(), None);
        assert!(task.out.is_empty());
        assert!(!task.shared.close_sent.load(Ordering::SeqCst));
        // What it sends in reply goes first, then the echo, with the peer's code and reason;
        // a second echo, or a close of its own after it, sends nothing more.
        task.shared.push(Command::Frame {
            opcode: frame::OP_TEXT,
            fin: true,
            payload: b"reply".to_vec(),
            compress: false,
            accounted: 11,
            ack: 1,
        });
        task.shared.push(Command::EchoClose);
        task.shared.push(Command::EchoClose);
        task.shared.push(Command::Close {
            code: Some(1000),
            reason: Vec::new(),
        });
        assert_eq!(task.fill(), Some(0));
        let frames = client_frame_parts(&task.out);
        assert_eq!(
            frames,
            [(0x81, b"reply".to_vec()), (0x88, b"\x0f\xa0bye".to_vec())]
        );
        assert_eq!(task.acks, [1]);
    }

    #[test]
    fn an_owed_echo_holds_the_end_and_starts_the_closing_timer_only_when_framed() {
        let mut task = plain_task(true);
        task.on_bytes(&server_close(1000, b""));
        // The owner may take its time over the messages before the close: no timer yet, and
        // the connection is not done (a peer that half-closes now still gets the echo).
        assert!(task.shared.close_deadline.lock().unwrap().is_none());
        assert!(!task.written_out());
        task.shared.push(Command::EchoClose);
        task.fill();
        assert!(task.shared.close_deadline.lock().unwrap().is_some());
        // Framed, not yet written.
        assert!(!task.written_out());
        // Once a close of ours went, no echo is owed.
        let mut task = plain_task(true);
        task.on_bytes(&server_close(1000, b""));
        task.shared.push(Command::Close {
            code: Some(1001),
            reason: Vec::new(),
        });
        task.fill();
        task.out.clear();
        assert!(task.written_out());
        // Without the owner echoing, the timer starts at once.
        let mut task = plain_task(false);
        task.on_bytes(&server_close(1000, b""));
        assert!(task.shared.close_deadline.lock().unwrap().is_some());
    }

    #[test]
    fn an_owner_echoes_a_close_without_a_code_as_an_empty_close_frame() {
        let mut task = plain_task(true);
        task.on_bytes(&frame::server_frame(true, frame::OP_CLOSE, &[]));
        task.shared.push(Command::EchoClose);
        assert_eq!(task.fill(), Some(0));
        assert_eq!(client_frame_parts(&task.out), [(0x88, Vec::new())]);
    }

    #[test]
    fn an_owner_echo_without_a_close_from_the_peer_sends_nothing() {
        let mut task = plain_task(true);
        task.shared.push(Command::EchoClose);
        task.fill();
        assert!(task.out.is_empty());
        assert!(!task.shared.close_sent.load(Ordering::SeqCst));
    }

    #[test]
    fn a_batch_is_compressed_a_part_at_a_time() {
        // Eight 4 KiB messages sent in one JavaScript turn, packed in one batch.
        let mut batch = Vec::new();
        for i in 0..8 {
            let t = text(i);
            batch.push(0x80 | COMPRESS | frame::OP_TEXT);
            batch.extend_from_slice(&(t.len() as u32).to_be_bytes());
            batch.extend_from_slice(&(i as u32 + 1).to_be_bytes());
            batch.extend_from_slice(&t);
        }
        assert_eq!(batch.len(), 8 * (BATCH_HEADER + 4096));
        let mut task = task();
        task.shared.push(Command::Batch(batch));
        let mut peer = PerMessage::new(&agreement(true));
        // The first turn compresses a part (16 KiB at level 6) of it, not the whole batch, so that
        // they can be written while the rest waits; the rest follows, in order.
        assert_eq!(task.fill(), Some(16 * 1024));
        assert_eq!(task.acks, [1, 2, 3, 4]);
        let first = messages(&task.out, &mut peer);
        task.out.clear();
        assert_eq!(task.fill(), Some(16 * 1024));
        assert_eq!(task.acks, [1, 2, 3, 4, 5, 6, 7, 8]);
        let second = messages(&task.out, &mut peer);
        task.out.clear();
        assert_eq!(task.fill(), None);
        let got: Vec<Vec<u8>> = first.into_iter().chain(second).collect();
        assert_eq!(got, (0..8).map(text).collect::<Vec<_>>());
    }

    #[test]
    fn queued_frames_are_compressed_a_part_at_a_time() {
        let mut task = task();
        for i in 0..6 {
            task.shared.push(Command::Frame {
                opcode: frame::OP_TEXT,
                fin: true,
                payload: text(i),
                compress: true,
                accounted: 0,
                ack: i as u32 + 1,
            });
        }
        assert_eq!(task.fill(), Some(16 * 1024));
        assert_eq!(task.acks, [1, 2, 3, 4]);
        assert_eq!(task.fill(), Some(2 * 4096));
        assert_eq!(task.acks, [1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn a_send_framed_in_place_follows_its_message_s_compression() {
        let small = |opcode, fin, compress: bool, ack| Command::Frame {
            opcode,
            fin,
            payload: text(0)[..100].to_vec(),
            compress,
            accounted: 0,
            ack,
        };
        // A continuation of a compressed message is compressed too, in-place or not.
        {
            let mut task = task();
            task.shared.push(small(frame::OP_TEXT, false, true, 1));
            task.shared.push(Command::in_place(
                frame::OP_CONTINUATION,
                true,
                &text(1)[..100],
                0,
                2,
            ));
            assert_eq!(task.fill(), Some(100), "the first frame compressed");
            let mut wire = std::mem::take(&mut task.out);
            assert_eq!(task.fill(), Some(100), "its continuation compressed too");
            assert_eq!(task.acks, [1, 2]);
            // The continuation is compressed from its own bytes, not its buffer's room.
            wire.extend_from_slice(&task.out);
            let parts = client_frame_parts(&wire);
            assert_eq!(
                parts
                    .iter()
                    .map(|(first, _)| first & 0xf0)
                    .collect::<Vec<_>>(),
                [0x40, 0x80],
                "RSV1 on the first frame, FIN on the last"
            );
            let mut peer = PerMessage::new(&agreement(true));
            let mut message = Vec::new();
            for (k, (_, payload)) in parts.iter().enumerate() {
                peer.inflate
                    .inflate(payload, k == 1, None, &mut message)
                    .unwrap();
            }
            assert_eq!(message, [&text(0)[..100], &text(1)[..100]].concat());
        }
        // After a compressed message, a message whose first frame went in place is not
        // compressed, even if a continuation asks for it (the deflater's state moved on).
        let mut task = task();
        task.shared.push(small(frame::OP_TEXT, true, true, 1));
        assert_eq!(task.fill(), Some(100), "the first message compressed");
        task.out.clear();
        task.shared.push(Command::in_place(
            frame::OP_TEXT,
            false,
            &text(1)[..100],
            0,
            2,
        ));
        task.shared
            .push(small(frame::OP_CONTINUATION, true, true, 3));
        // The in-place frame is a batch of its own; its continuation follows.
        assert_eq!(task.fill(), Some(0), "not compressed");
        task.out.clear();
        task.written = 0;
        assert_eq!(
            task.fill(),
            Some(0),
            "the continuation not compressed either"
        );
        assert_eq!(task.acks, [1, 2, 3]);
    }

    /// The client frames in `wire`: FIN, opcode, unmasked payload.
    fn client_frames(wire: &[u8]) -> Vec<(bool, u8, Vec<u8>)> {
        client_frame_parts(wire)
            .into_iter()
            .map(|(first, payload)| (first & 0x80 != 0, first & 0x0f, payload))
            .collect()
    }

    #[test]
    fn a_terminate_writes_first_what_was_queued_before_it_when_the_socket_takes_it() {
        let (mut task, handle, mut peer) = plain_connection();
        assert!(handle.send(Command::frame(
            frame::OP_TEXT,
            true,
            b"last words",
            false,
            16,
            0
        )));
        assert!(handle.send(Command::Terminate));
        assert!(poll_once(&mut task).is_ready(), "terminated at once");
        assert_eq!(
            client_frames(&readable(&mut peer)),
            vec![(true, frame::OP_TEXT, b"last words".to_vec())]
        );
    }

    #[test]
    fn large_sends_are_framed_in_place_each_in_a_batch_of_its_own_in_order() {
        let (mut task, _handle, _peer) = plain_connection();
        let half = crate::socket::api::IN_PLACE_MIN + 3;
        let big: Vec<u8> = (0..2 * half as u32).map(|i| (i % 251) as u8).collect();
        let small = |opcode, payload: &[u8], accounted, ack| {
            let c = Command::frame(opcode, true, payload, false, accounted, ack);
            assert!(
                matches!(c, Command::Frame { .. }),
                "small sends are framed together"
            );
            c
        };
        let mut places = Vec::new();
        let mut large = |opcode, fin, payload: &[u8], accounted, ack| {
            let c = Command::frame(opcode, fin, payload, false, accounted, ack);
            let Command::InPlace { buf, .. } = &c else {
                panic!("a large uncompressed send is framed in place")
            };
            places.push(buf.as_ptr() as usize);
            c
        };
        task.shared.push(small(frame::OP_TEXT, b"before", 1, 1));
        task.shared
            .push(large(frame::OP_BINARY, false, &big[..half], 10, 2));
        task.shared.push(small(frame::OP_PING, b"between", 0, 0));
        task.shared
            .push(large(frame::OP_CONTINUATION, true, &big[half..], 20, 3));
        task.shared.push(small(frame::OP_TEXT, b"after", 30, 4));
        // Each turn frames a batch; what it framed is then "written".
        let mut wire = Vec::new();
        let mut turns = Vec::new();
        while task.fill().is_some() {
            turns.push((task.out.as_ptr() as usize, task.bytes, task.acks.clone()));
            wire.extend_from_slice(&task.out[task.written..]);
            task.written = task.out.len();
            task.batch_done();
        }
        let batches: Vec<(usize, Vec<u32>)> = turns.iter().map(|t| (t.1, t.2.clone())).collect();
        assert_eq!(
            batches,
            vec![
                (1, vec![1]),
                (10, vec![2]),
                (0, vec![]),
                (20, vec![3]),
                (30, vec![4])
            ],
            "a large send is a batch of its own; callbacks in order"
        );
        assert_eq!(turns[1].0, places[0], "written from its own buffer");
        assert_eq!(turns[3].0, places[1], "written from its own buffer");
        assert_eq!(
            client_frames(&wire),
            vec![
                (true, frame::OP_TEXT, b"before".to_vec()),
                (false, frame::OP_BINARY, big[..half].to_vec()),
                (true, frame::OP_PING, b"between".to_vec()),
                (true, frame::OP_CONTINUATION, big[half..].to_vec()),
                (true, frame::OP_TEXT, b"after".to_vec()),
            ]
        );
    }

    #[test]
    fn a_send_framed_in_place_after_the_close_is_not_written_and_fails_its_callback() {
        let (mut task, _handle, _peer) = plain_connection();
        task.shared.push(Command::Close {
            code: Some(1000),
            reason: Vec::new(),
        });
        task.shared
            .push(Command::in_place(frame::OP_BINARY, true, &[5; 300], 306, 7));
        let mut wire = Vec::new();
        while task.fill().is_some() {
            wire.extend_from_slice(&task.out[task.written..]);
            task.written = task.out.len();
            task.out.clear();
            task.written = 0;
        }
        assert_eq!(
            client_frames(&wire),
            vec![(true, frame::OP_CLOSE, 1000u16.to_be_bytes().to_vec())],
            "only the close is written"
        );
        assert!(task.acks.is_empty());
        assert_eq!(task.failed_acks.as_deref(), Some(&vec![7]));
        assert_eq!(
            task.bytes, 306,
            "still accounted, as any send after the close"
        );
    }

    #[tokio::test]
    async fn a_send_framed_in_place_reaches_the_peer_and_its_buffer_is_let_go() {
        use tokio::io::AsyncReadExt;
        let (task, handle, mut peer) = plain_connection();
        let mut task = Box::pin(task);
        let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        handle.send(Command::frame(
            frame::OP_BINARY,
            true,
            &payload,
            false,
            300_010,
            0,
        ));
        let reading = async {
            let mut wire = vec![0; frame::framed_len(payload.len())];
            peer.read_exact(&mut wire).await.expect("the frame");
            wire
        };
        let (wire, ()) = tokio::time::timeout(Duration::from_secs(5), async {
            tokio::join!(reading, written_out(&mut task))
        })
        .await
        .expect("the frame is written and read");
        assert_eq!(
            client_frames(&wire),
            vec![(true, frame::OP_BINARY, payload)]
        );
        assert!(
            task.out.capacity() <= IDLE_OUT_KEEP,
            "the buffer is let go once written and nothing waits: {}",
            task.out.capacity()
        );
    }

    /// Runs `task` until it has written everything it was given.
    async fn written_out(task: &mut Pin<Box<ConnectionTask>>) {
        std::future::poll_fn(|cx| {
            let _ = task.as_mut().poll(cx);
            if task.out.is_empty() && task.backlog.is_empty() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }

    /// An open connection without compression over an in-memory pipe, and the pipe's
    /// other end.
    fn plain_connection() -> (ConnectionTask, Handle, tokio::io::DuplexStream) {
        let (ours, theirs) = tokio::io::duplex(1 << 20);
        let opts = SocketOptions::default();
        let handle = Handle::new(&opts);
        let task = ConnectionTask::new(
            Box::new(ours),
            opts,
            Arc::new(Ignore),
            handle.shared.clone(),
            None,
        );
        (task, handle, theirs)
    }

    fn binary(payload: &[u8]) -> Outgoing<'_> {
        Outgoing::Frame {
            opcode: frame::OP_BINARY,
            fin: true,
            payload,
            compress: false,
            accounted: payload.len(),
            ack: 0,
        }
    }

    #[tokio::test]
    async fn an_idle_connection_keeps_no_large_write_buffer_after_a_direct_send() {
        use tokio::io::AsyncReadExt;
        let (mut task, _handle, mut peer) = plain_connection();
        assert_eq!(task.send_direct(binary(&[7; 64])), Direct::Written);
        let small = task.out.capacity();
        assert!(
            small > 0 && small <= 1024,
            "a small buffer is kept: {small}"
        );
        assert_eq!(task.send_direct(binary(&[7; 60_000])), Direct::Written);
        assert!(
            task.out.capacity() <= IDLE_OUT_KEEP,
            "a 60,000-byte message's buffer is let go once written: {}",
            task.out.capacity()
        );
        let mut got = vec![0; 2 + 4 + 64];
        peer.read_exact(&mut got).await.expect("the first frame");
        assert_eq!(got[0], 0x80 | frame::OP_BINARY);
    }

    #[tokio::test]
    async fn an_idle_connection_keeps_no_large_write_buffer_after_a_queued_send() {
        use tokio::io::AsyncReadExt;
        let (task, handle, mut peer) = plain_connection();
        let mut task = Box::pin(task);
        handle.send(Command::Frame {
            opcode: frame::OP_BINARY,
            fin: true,
            payload: vec![7u8; 60_000],
            compress: false,
            accounted: 60_000,
            ack: 0,
        });
        tokio::time::timeout(Duration::from_secs(5), written_out(&mut task))
            .await
            .expect("the frame is written");
        assert!(
            task.out.capacity() <= IDLE_OUT_KEEP,
            "the buffer is let go once written and nothing waits: {}",
            task.out.capacity()
        );
        let mut got = vec![0; 4];
        peer.read_exact(&mut got).await.expect("the frame's header");
        assert_eq!((got[0], got[1] & 0x7f), (0x80 | frame::OP_BINARY, 126));
    }

    /// Collects messages (binary or not, and their bytes) and errors' codes.
    #[derive(Default)]
    struct Collect(
        std::sync::Mutex<Vec<(bool, Vec<u8>)>>,
        std::sync::Mutex<Vec<String>>,
        tokio::sync::Notify,
        // The capacity of each one-frame message's buffer (what goes to JavaScript).
        std::sync::Mutex<Vec<usize>>,
    );

    impl EventSink for Collect {
        fn push(&self, e: Event) {
            match e {
                Event::Message { binary, frames } => {
                    if let [one] = &frames[..] {
                        self.3.lock().unwrap().push(one.capacity());
                    }
                    self.0.lock().unwrap().push((binary, frames.concat()))
                }
                Event::Error(e) => self.1.lock().unwrap().push(e.code.unwrap_or("").into()),
                _ => return,
            }
            self.2.notify_one();
        }
    }

    /// A task over a real loopback connection (read as `Tcp` reads, into spare capacity),
    /// whose peer writes `wire` in pieces of `piece` bytes; returns the sink once it holds
    /// `messages` messages or an error.
    async fn receive(wire: Vec<u8>, piece: usize, messages: usize) -> Arc<Collect> {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ours = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut peer, _) = listener.accept().await.unwrap();
        // Where the stream reads as `Tcp` does (Unix); elsewhere the plain tokio stream, as
        // `dial` takes it there.
        #[cfg(unix)]
        let (tcp, _switch) = crate::socket::tcp::Tcp::new(ours).unwrap();
        #[cfg(not(unix))]
        let tcp = ours;
        let sink = Arc::new(Collect::default());
        let task = ConnectionTask::new(
            Box::new(tcp),
            SocketOptions::default(),
            sink.clone(),
            Arc::new(Shared::new(Duration::from_secs(1), usize::MAX)),
            None,
        );
        let running = tokio::spawn(task);
        for chunk in wire.chunks(piece) {
            peer.write_all(chunk).await.unwrap();
        }
        let done = async {
            while sink.0.lock().unwrap().len() < messages && sink.1.lock().unwrap().is_empty() {
                sink.2.notified().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), done)
            .await
            .expect("the messages within 10 s");
        running.abort();
        sink
    }

    #[tokio::test]
    async fn large_payloads_read_into_their_message_arrive_whole_and_in_order() {
        let big: Vec<u8> = (0..300_001u32).map(|i| (i * 31 + 7) as u8).collect();
        // Over the decoder's first allocation (1 MiB): its buffer grows to the frame's size.
        let huge: Vec<u8> = (0..(2 << 20) + 3u32).map(|i| (i * 7 + 1) as u8).collect();
        // Over it by half: `Vec`'s own growth would make its buffer 2 MiB.
        let half: Vec<u8> = huge[..(3 << 19)].to_vec();
        let wire = [
            frame::server_frame(true, frame::OP_BINARY, &big),
            frame::server_frame(true, frame::OP_TEXT, b"small"),
            // A fragmented message whose first frame is large: the second follows the
            // direct read of the first.
            frame::server_frame(false, frame::OP_BINARY, &big[..40_000]),
            frame::server_frame(true, frame::OP_CONTINUATION, &big[40_000..40_100]),
            frame::server_frame(true, frame::OP_BINARY, &big[..20_000]),
            frame::server_frame(true, frame::OP_BINARY, &huge),
            frame::server_frame(true, frame::OP_BINARY, &half),
        ]
        .concat();
        // Pieces that split headers and payloads at every kind of place.
        for piece in [7_001, 65_537, wire.len()] {
            let direct = DIRECT_READS.with(|c| c.get());
            let sink = receive(wire.clone(), piece, 6).await;
            // The test's runtime has one thread: the task's reads are counted here.
            assert!(
                DIRECT_READS.with(|c| c.get()) > direct,
                "read straight into payloads"
            );
            assert!(sink.1.lock().unwrap().is_empty());
            let got = sink.0.lock().unwrap().clone();
            assert_eq!(got.len(), 6, "pieces of {piece}");
            assert_eq!(got[0], (true, big.clone()));
            assert_eq!(got[1], (false, b"small".to_vec()));
            assert_eq!(got[2], (true, big[..40_100].to_vec()));
            assert_eq!(got[3], (true, big[..20_000].to_vec()));
            assert!(got[4] == (true, huge.clone()), "the 2 MiB + 3 message");
            assert!(got[5] == (true, half.clone()), "the 1.5 MiB message");
            // Read into their own buffers, grown no further than their frames: grown as
            // `Vec` grows, they would be 4 MiB and 2 MiB.
            let capacities = sink.3.lock().unwrap().clone();
            assert_eq!(capacities[capacities.len() - 2..], [huge.len(), half.len()]);
        }
    }

    #[tokio::test]
    async fn a_large_text_payload_read_into_its_message_is_still_checked_as_utf8() {
        let mut text = vec![b'a'; 200_000];
        text[199_999] = 0xff;
        let wire = frame::server_frame(true, frame::OP_TEXT, &text);
        let sink = receive(wire, 9_999, 1).await;
        assert_eq!(
            *sink.1.lock().unwrap(),
            vec!["WS_ERR_INVALID_UTF8".to_string()]
        );
        assert!(sink.0.lock().unwrap().is_empty());
    }
}
