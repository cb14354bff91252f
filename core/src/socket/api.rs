//! A connection's public types: how it behaves ([`SocketOptions`]), what its owner asks of
//! it ([`Command`]), what it reports ([`Event`]) and where that goes ([`EventSink`]).

use std::time::Duration;

use crate::socket::error::SocketError;
use crate::socket::frame::{Frames, Limits};

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
    /// connection holds none; the rest of a large frame's payload (16 KiB or more to come)
    /// is read straight into the message instead. Default 64 KiB.
    pub read_buffer: usize,
    /// Most bytes coalesced into one write. Default 1 MiB.
    pub write_batch: usize,
    /// Ping every this long, and drop the connection when a ping is still unanswered at the
    /// next (ws's heartbeat); `None` for no heartbeat. Default `None`.
    pub heartbeat: Option<Duration>,
    /// The owner can read the socket on a thread of its own while its traffic is sparse
    /// (see [`crate::socket::Handle::read_inline`]); the sink is told when to start
    /// ([`EventSink::inline_wanted`]). Default false: the task always reads.
    pub inline_reads: bool,
    /// With `inline_reads`: traffic is sparse, and read by the owner, while it brings at most
    /// this many bytes at a time (a turn of the task that read at most this much, and then
    /// nothing more, offers reading to the owner; an inline read of this much or more hands
    /// it back). Default [`crate::socket::inline::SPARSE_READ`] (8 KiB).
    pub sparse_read: usize,
    /// The owner answers the peer's close frame ([`Command::EchoClose`]) once it has handled
    /// the messages that came before it, as ws does (its receiver emits them, then closes):
    /// a reply the owner sends to one of them goes out before the echo. Default false: the
    /// connection echoes the close frame as soon as it reads it, and the closing-handshake
    /// timer starts then; with it, the timer starts with the owner's echo (as ws's starts
    /// with its `close()`), or when the peer ends the stream first. The connection does not
    /// end before the owed echo is written.
    pub owner_echoes_close: bool,
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
            heartbeat: None,
            inline_reads: false,
            sparse_read: crate::socket::inline::SPARSE_READ,
            owner_echoes_close: false,
        }
    }
}

/// Uncompressed payloads of at least this many bytes are framed in place
/// ([`Command::InPlace`]), each in a write of its own: for them, the copy saved outweighs
/// the write. Smaller ones are framed together into one write buffer, up to
/// `SocketOptions::write_batch`.
pub const IN_PLACE_MIN: usize = 256 * 1024;

/// A [`Command::InPlace`] send's buffer: [`frame::MAX_CLIENT_HEADER`] bytes of room, then
/// the payload. Made only by [`Command::frame`], so the room is always there.
///
/// [`frame::MAX_CLIENT_HEADER`]: crate::socket::frame::MAX_CLIENT_HEADER
#[derive(Debug)]
pub struct WithRoom(Vec<u8>);

impl WithRoom {
    /// The buffer, room included.
    pub(crate) fn into_inner(self) -> Vec<u8> {
        self.0
    }

    /// The buffer's address (tests: written from where it was made).
    #[cfg(test)]
    pub(crate) fn as_ptr(&self) -> *const u8 {
        self.0.as_ptr()
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
        /// Compress it, if permessage-deflate is agreed (see
        /// [`crate::socket::compress::Deflater::decide`]).
        compress: bool,
        /// Bytes to report as written.
        accounted: usize,
        /// Callback id, 0 for none.
        ack: u32,
    },
    /// Send a large frame that is not compressed, as [`Command::Frame`] does, from a buffer
    /// that holds its payload after room for the header (see [`Command::frame`]): the
    /// connection writes the header into the room, masks the payload where it is and writes
    /// that buffer itself, in a write of its own, so that a large send is copied once (by
    /// the owner) rather than twice.
    InPlace {
        /// Opcode.
        opcode: u8,
        /// Final fragment.
        fin: bool,
        /// The room, then the payload, unmasked.
        buf: WithRoom,
        /// Bytes to report as written.
        accounted: usize,
        /// Callback id, 0 for none.
        ack: u32,
    },
    /// Several small frames packed by the owner in one buffer (see [`crate::socket::batch::BATCH_HEADER`]): saves
    /// a call and an allocation per message. Each reports `framed_len(len)` bytes written.
    Batch(Vec<u8>),
    /// Start the closing handshake (`None`: a close frame without a code).
    Close {
        /// Close code.
        code: Option<u16>,
        /// Close reason, at most 123 bytes.
        reason: Vec<u8>,
    },
    /// Answer the peer's close frame with its code and reason (an empty close frame when it
    /// had no code): the owner sends it with [`SocketOptions::owner_echoes_close`], the
    /// connection itself otherwise. Nothing when no close frame came, or when a close frame
    /// of ours already went.
    EchoClose,
    /// Drop the connection now.
    Terminate,
}

impl Command {
    /// A data frame carrying a copy of `payload` (the caller may reuse it at once), to be
    /// compressed if `compress` and permessage-deflate is agreed: a [`Command::InPlace`]
    /// when it is not compressed and [`IN_PLACE_MIN`] bytes or more, a [`Command::Frame`]
    /// otherwise. `compress` is the message's (its first frame's) choice, for each of its
    /// frames: the connection compresses a continuation of a compressed message anyway.
    pub fn frame(
        opcode: u8,
        fin: bool,
        payload: &[u8],
        compress: bool,
        accounted: usize,
        ack: u32,
    ) -> Command {
        if compress || payload.len() < IN_PLACE_MIN {
            return Command::Frame {
                opcode,
                fin,
                payload: crate::socket::pool::copy_of(payload),
                compress,
                accounted,
                ack,
            };
        }
        Command::in_place(opcode, fin, payload, accounted, ack)
    }

    /// A [`Command::InPlace`] send of a copy of `payload`, whatever its size (see
    /// [`Command::frame`]).
    pub(crate) fn in_place(
        opcode: u8,
        fin: bool,
        payload: &[u8],
        accounted: usize,
        ack: u32,
    ) -> Command {
        Command::InPlace {
            opcode,
            fin,
            buf: WithRoom(crate::socket::pool::copy_with_room(
                crate::socket::frame::MAX_CLIENT_HEADER,
                payload,
            )),
            accounted,
            ack,
        }
    }

    /// A ping without payload, written by the connection itself (keep-alive, heartbeat):
    /// nothing to account, no callback.
    pub fn empty_ping() -> Command {
        Command::Frame {
            opcode: crate::socket::frame::OP_PING,
            fin: true,
            payload: Vec::new(),
            compress: false,
            accounted: 0,
            ack: 0,
        }
    }
}

/// Most auto-pongs waiting to be written before the connection is dropped (ws 8's
/// `maxPendingAutoPongs` default).
pub const MAX_PENDING_AUTO_PONGS: u16 = 60;

/// What a control event counts against the consumer's backlog: its payload plus a fixed
/// cost, so a flood of pings or pongs stops the reader like a flood of messages does.
pub const CONTROL_EVENT_COST: usize = 64;

/// What the connection tells its owner, in order.
#[derive(Debug)]
pub enum Event {
    /// The handshake succeeded.
    Open {
        /// The chosen subprotocol, `""` if none.
        protocol: String,
        /// The agreed extensions as a `Sec-WebSocket-Extensions` value, `""` if none.
        extensions: String,
    },
    /// A whole message.
    Message {
        /// Binary or text.
        binary: bool,
        /// Frame payloads (one for text and unfragmented binary messages).
        frames: Frames,
    },
    /// A piece of a binary message, when binary messages are streamed
    /// ([`crate::socket::frame::Limits::stream_binary`]). Its bytes count as a message's do
    /// until consumed.
    Chunk {
        /// The bytes.
        data: Vec<u8>,
        /// The message's first piece.
        first: bool,
        /// The message's last piece (may be empty).
        last: bool,
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

/// A sink that drops every event (for tests here and in `open.rs` and `task.rs`).
#[cfg(test)]
pub(crate) struct Ignore;

#[cfg(test)]
impl EventSink for Ignore {
    fn push(&self, _: Event) {}
}

/// Receives a connection's events. Implementations must not block.
pub trait EventSink: Send + Sync + 'static {
    /// Takes one event.
    fn push(&self, event: Event);

    /// The opening handshake's request is on the wire and its response awaited: a moment
    /// when the connection has nothing to do (no event). Default: nothing.
    fn request_sent(&self) {}

    /// The connection's task starts a turn: until [`EventSink::turn_end`], the sink may hold
    /// back waking its consumer (events stay in order either way). Default: nothing.
    fn turn_start(&self) {}

    /// The turn is over (the connection's lock is released): wake the consumer for what was
    /// held back. Default: nothing.
    fn turn_end(&self) {}

    /// The task is about to push what one read decoded, under the connection's lock: until
    /// [`EventSink::read_end`], the sink may hold the read's messages and send them on
    /// together, as long as nothing overtakes them. Default: nothing.
    fn read_start(&self) {}

    /// The read's events are pushed (still under the connection's lock): send on what was
    /// held. Default: nothing.
    fn read_end(&self) {}

    /// The connection's traffic is sparse, and its task hands reading to the owner, who
    /// starts [`crate::socket::Handle::start_inline`] on its own thread when it gets to it
    /// (the task reads until then). Only with [`SocketOptions::inline_reads`]. Default:
    /// nothing (the task goes on reading).
    fn inline_wanted(&self) {}
}
