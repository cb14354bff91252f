//! WebSocket framing for the client role (RFC 6455), with ws 8's validation rules and error
//! catalogue: the decoder reassembles messages (inflating them under permessage-deflate) and
//! reports violations with ws's `WS_ERR_*` codes, messages and close codes; the encoder
//! masks every frame. [`parse_header`] is the
//! one frame-header parser of the project: the relay emulator's frame forwarding uses it too.

use crate::socket::compress::Inflater;
use crate::socket::error::SocketError;
use crate::socket::pool;
use std::mem::MaybeUninit;

/// Continuation frame.
pub const OP_CONTINUATION: u8 = 0x0;
/// Text frame.
pub const OP_TEXT: u8 = 0x1;
/// Binary frame.
pub const OP_BINARY: u8 = 0x2;
/// Close frame.
pub const OP_CLOSE: u8 = 0x8;
/// Ping frame.
pub const OP_PING: u8 = 0x9;
/// Pong frame.
pub const OP_PONG: u8 = 0xa;

/// The largest payload length JavaScript can represent exactly (2^53 - 1).
const MAX_SAFE_LENGTH: u64 = (1 << 53) - 1;

/// A protocol violation by the peer, as ws reports it: ws's code and message, and the close
/// code it calls for.
fn frame_error(code: &'static str, message: impl Into<String>, close_code: u16) -> SocketError {
    SocketError::protocol(
        code,
        format!("Invalid WebSocket frame: {}", message.into()),
        close_code,
        true,
    )
}

/// True for the close codes ws accepts on the wire and in `close()`.
pub fn is_valid_close_code(code: u16) -> bool {
    ((1000..=1014).contains(&code) && !matches!(code, 1004..=1006)) || (3000..=4999).contains(&code)
}

/// A message's frame payloads: one, held without an allocation of its own (most messages
/// are one frame), or several.
pub type Frames = smallvec::SmallVec<[Vec<u8>; 1]>;

/// Something the decoder produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A whole data message. `frames` holds the payload of each frame as received.
    Message {
        /// True for binary, false for text (already checked as UTF-8).
        binary: bool,
        /// Frame payloads in order; a single entry for an unfragmented message.
        frames: Frames,
    },
    /// A piece of a binary message, in stream mode ([`Limits::stream_binary`]): `first` on
    /// the message's first piece, `last` on its final one (which may be empty).
    Chunk {
        /// The bytes.
        data: Vec<u8>,
        /// The message's first piece.
        first: bool,
        /// The message's last piece.
        last: bool,
    },
    /// A ping and its payload.
    Ping(Vec<u8>),
    /// A pong and its payload.
    Pong(Vec<u8>),
    /// A close frame: the code (`None` for an empty payload) and the reason bytes.
    Close(Option<u16>, Vec<u8>),
}

/// What a frame's receiver expects of its header (see [`parse_header`]).
#[derive(Debug, Clone, Copy)]
pub struct Expect {
    /// The frames come from a client, so they must be masked (a server's must not be).
    pub masked: bool,
    /// RSV1 may be set on the first frame of a data message (permessage-deflate is agreed).
    pub rsv1: bool,
    /// Whether a fragmented data message is in progress; `None` when the receiver does not
    /// follow messages (a relay), and continuation frames are not checked against it.
    pub fragmented: Option<bool>,
}

/// A frame header as it is on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Final fragment.
    pub fin: bool,
    /// RSV1 (the frame is compressed, under permessage-deflate).
    pub rsv1: bool,
    /// The opcode.
    pub opcode: u8,
    /// The masking key of a masked frame.
    pub mask: Option<[u8; 4]>,
    /// The payload length, as sent (callers apply their own limits).
    pub len: u64,
    /// The header's size in bytes.
    pub size: usize,
}

/// Parses the frame header at the start of `buf`, for both ends of the project: the client's
/// decoder and the relay's frame forwarding. `Ok(None)` when more bytes are needed.
///
/// Checks what RFC 6455 requires of every frame, in the order ws 8 checks it and with its
/// codes and messages, as soon as the first two bytes are in: RSV2/RSV3 clear, RSV1 only on
/// the first frame of a data message and only when agreed, a defined opcode (and, where the
/// receiver follows messages, a continuation only inside a fragmented message and a new data
/// frame only outside one), control frames final and at most 125 bytes (a close frame not 1),
/// and masking as the sender's role requires. The length is returned as sent: the limits on
/// it differ between a client and a relay.
pub fn parse_header(buf: &[u8], expect: Expect) -> Result<Option<FrameHeader>, SocketError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    if b0 & 0x30 != 0 {
        return Err(frame_error(
            "WS_ERR_UNEXPECTED_RSV_2_3",
            "RSV2 and RSV3 must be clear",
            1002,
        ));
    }
    let rsv1 = b0 & 0x40 != 0;
    let rsv1_error = || frame_error("WS_ERR_UNEXPECTED_RSV_1", "RSV1 must be clear", 1002);
    if rsv1 && !expect.rsv1 {
        return Err(rsv1_error());
    }
    let fin = b0 & 0x80 != 0;
    let opcode = b0 & 0x0f;
    let len7 = b1 & 0x7f;
    let invalid_opcode = || {
        frame_error(
            "WS_ERR_INVALID_OPCODE",
            format!("invalid opcode {opcode}"),
            1002,
        )
    };
    match opcode {
        OP_CONTINUATION => {
            if rsv1 {
                return Err(rsv1_error());
            }
            if expect.fragmented == Some(false) {
                return Err(invalid_opcode());
            }
        }
        OP_TEXT | OP_BINARY => {
            if expect.fragmented == Some(true) {
                return Err(invalid_opcode());
            }
        }
        OP_CLOSE | OP_PING | OP_PONG => {
            if !fin {
                return Err(frame_error("WS_ERR_EXPECTED_FIN", "FIN must be set", 1002));
            }
            if rsv1 {
                return Err(rsv1_error());
            }
            if len7 > 125 || (opcode == OP_CLOSE && len7 == 1) {
                return Err(frame_error(
                    "WS_ERR_INVALID_CONTROL_PAYLOAD_LENGTH",
                    format!("invalid payload length {len7}"),
                    1002,
                ));
            }
        }
        _ => return Err(invalid_opcode()),
    }
    let masked = b1 & 0x80 != 0;
    if masked != expect.masked {
        return Err(if expect.masked {
            frame_error("WS_ERR_EXPECTED_MASK", "MASK must be set", 1002)
        } else {
            frame_error("WS_ERR_UNEXPECTED_MASK", "MASK must be clear", 1002)
        });
    }
    let ext = match len7 {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let size = 2 + ext + if masked { 4 } else { 0 };
    if buf.len() < size {
        return Ok(None);
    }
    let len = match ext {
        0 => u64::from(len7),
        2 => u64::from(u16::from_be_bytes([buf[2], buf[3]])),
        _ => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            u64::from_be_bytes(b)
        }
    };
    let mask = masked.then(|| {
        let mut m = [0u8; 4];
        m.copy_from_slice(&buf[2 + ext..size]);
        m
    });
    Ok(Some(FrameHeader {
        fin,
        rsv1,
        opcode,
        mask,
        len,
        size,
    }))
}

/// Limits of the decoder, and how it hands over binary messages.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest message (sum of its frames), 0 for none. ws default: 100 MiB.
    pub max_payload: u64,
    /// Most frames in one message, 0 for none. ws default: 16384.
    pub max_fragments: u32,
    /// Hand over binary messages in chunks as their bytes arrive ([`Incoming::Chunk`]),
    /// rather than whole: for bodies of any size, held back by the reader's backpressure
    /// rather than in memory. Text messages are still delivered whole. Default false.
    pub stream_binary: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_payload: 100 * 1024 * 1024,
            max_fragments: 16384,
            stream_binary: false,
        }
    }
}

/// The frame whose payload the decoder is reading: what it keeps of the header (small, as
/// every idle connection holds a decoder).
#[derive(Debug, Clone, Copy)]
struct Header {
    fin: bool,
    opcode: u8,
    /// A streamed frame: `len` counts what is still to come, and `started` says whether a
    /// piece of it was handed over.
    streamed: bool,
    started: bool,
    /// The frame belongs to a compressed message (RSV1 on its first frame).
    compressed: bool,
    len: u64,
}

/// Incremental decoder of server-to-client frames.
#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
    header: Option<Header>,
    payload: Vec<u8>,
    /// The data message being assembled (only a fragmented one, between its frames: boxed,
    /// so that a connection's decoder stays small).
    message: Option<Box<Assembly>>,
}

/// A fragmented data message between its frames.
#[derive(Debug, Default)]
struct Assembly {
    opcode: u8,
    frames: Frames,
    /// Payload bytes so far.
    total: u64,
    /// A streamed message (its frames are handed over, not kept): a piece of it went out.
    emitted: bool,
    /// A compressed message: its frames are inflated as they complete.
    compressed: bool,
    /// Inflated bytes so far.
    inflated: u64,
    /// Data frames so far, as ws counts them against `max_fragments` (a compressed frame
    /// that inflates to nothing counts, though it adds no buffer).
    parts: u32,
}

impl Decoder {
    /// A decoder with `limits`.
    pub fn new(limits: Limits) -> Self {
        Decoder {
            limits,
            header: None,
            payload: Vec::new(),
            message: None,
        }
    }

    /// Parses the next frame's header (see [`parse_header`]) and applies this client's
    /// limits; `Ok(None)` when more bytes are needed. `deflate`: permessage-deflate is
    /// agreed, so RSV1 may start a message.
    fn next_header(&self, buf: &[u8], deflate: bool) -> Result<Option<FrameHeader>, SocketError> {
        let expect = Expect {
            masked: false,
            rsv1: deflate,
            fragmented: Some(self.message.is_some()),
        };
        let Some(h) = parse_header(buf, expect)? else {
            return Ok(None);
        };
        if h.len > MAX_SAFE_LENGTH {
            return Err(SocketError::protocol(
                "WS_ERR_UNSUPPORTED_DATA_PAYLOAD_LENGTH",
                "Unsupported WebSocket frame: payload length > 2^53 - 1",
                1009,
                true,
            ));
        }
        if h.opcode < OP_CLOSE {
            let total = self.message.as_ref().map_or(0, |m| m.total) + h.len;
            if self.limits.max_payload > 0 && total > self.limits.max_payload {
                return Err(max_payload_error());
            }
        }
        Ok(Some(h))
    }

    /// Handles a complete frame.
    fn complete(
        &mut self,
        h: Header,
        payload: Vec<u8>,
        out: &mut Vec<Incoming>,
        inflater: Option<&mut Inflater>,
    ) -> Result<(), SocketError> {
        match h.opcode {
            OP_PING => out.push(Incoming::Ping(payload)),
            OP_PONG => out.push(Incoming::Pong(payload)),
            OP_CLOSE => {
                // A payload of 1 byte was refused with the header.
                if payload.len() < 2 {
                    out.push(Incoming::Close(None, Vec::new()));
                } else {
                    let code = u16::from_be_bytes([payload[0], payload[1]]);
                    if !is_valid_close_code(code) {
                        return Err(frame_error(
                            "WS_ERR_INVALID_CLOSE_CODE",
                            format!("invalid status code {code}"),
                            1002,
                        ));
                    }
                    let reason = payload[2..].to_vec();
                    if std::str::from_utf8(&reason).is_err() {
                        return Err(utf8_error());
                    }
                    out.push(Incoming::Close(Some(code), reason));
                }
            }
            _ => {
                // A fragment goes into the message's box (made at its first frame); a whole
                // message in one frame needs no box.
                let mut boxed = self.message.take();
                let (opcode, mut frames, total, mut inflated, parts) = match boxed.as_deref_mut() {
                    Some(m) => (
                        m.opcode,
                        std::mem::take(&mut m.frames),
                        m.total,
                        m.inflated,
                        m.parts,
                    ),
                    None => (h.opcode, Frames::new(), 0, 0, 0),
                };
                let total = total + h.len;
                let parts = parts.saturating_add(1);
                match inflater {
                    Some(inflater) if h.compressed => {
                        // As ws: each frame is inflated as it completes, and the message's
                        // inflated size is held to `max_payload`.
                        let max = self.limits.max_payload;
                        let limit = (max > 0).then(|| max - inflated.min(max));
                        let mut data = Vec::new();
                        inflater.inflate(&payload, h.fin, limit, &mut data)?;
                        // The compressed bytes' buffer may serve a later message.
                        pool::recycle(payload);
                        if data.capacity() - data.len() > data.len() / 8 {
                            // Inflation grows its output in steps: what the message keeps (it
                            // goes to JavaScript as it is, and then to the pool) is its size.
                            data.shrink_to_fit();
                        }
                        inflated += data.len() as u64;
                        if !data.is_empty() || (h.fin && frames.is_empty()) {
                            frames.push(data);
                        }
                    }
                    // As ws: an empty fragment counts (`parts`) but is not kept, unless it is
                    // all of the message; a peer's thousands of empty frames would otherwise
                    // reach JavaScript as as many Buffers.
                    _ if payload.is_empty() && !(h.fin && frames.is_empty()) => {}
                    _ => frames.push(payload),
                }
                if self.limits.max_fragments > 0 && parts > self.limits.max_fragments {
                    return Err(SocketError::protocol(
                        "WS_ERR_TOO_MANY_BUFFERED_PARTS",
                        "Too many message fragments",
                        1008,
                        true,
                    ));
                }
                if !h.fin {
                    let mut m = boxed.unwrap_or_default();
                    *m = Assembly {
                        opcode,
                        frames,
                        total,
                        emitted: false,
                        compressed: h.compressed,
                        inflated,
                        parts,
                    };
                    self.message = Some(m);
                    return Ok(());
                }
                if h.compressed && self.limits.stream_binary && opcode == OP_BINARY {
                    // A compressed binary message is inflated whole, then handed over as
                    // one piece.
                    out.push(Incoming::Chunk {
                        data: joined(frames),
                        first: true,
                        last: true,
                    });
                    return Ok(());
                }
                if opcode == OP_TEXT {
                    // Text is validated whole and handed on as one buffer.
                    let data = if frames.len() == 1 {
                        frames.pop().unwrap_or_default()
                    } else {
                        joined(frames)
                    };
                    if std::str::from_utf8(&data).is_err() {
                        return Err(utf8_error());
                    }
                    out.push(Incoming::Message {
                        binary: false,
                        frames: smallvec::smallvec![data],
                    });
                } else {
                    out.push(Incoming::Message {
                        binary: true,
                        frames,
                    });
                }
            }
        }
        Ok(())
    }

    /// Consumes `buf`, appending what it completes to `out`. Returns the bytes consumed;
    /// the rest (an incomplete header) must be passed again with more data. Decoding stops
    /// after a close frame: what follows it is left unconsumed, and is not for reading.
    pub fn decode(&mut self, buf: &[u8], out: &mut Vec<Incoming>) -> Result<usize, SocketError> {
        self.decode_with(buf, out, None)
    }

    /// [`Decoder::decode`] under permessage-deflate when `inflater` is given: RSV1 may mark
    /// a message compressed, and its frames are inflated with `inflater`.
    pub fn decode_with(
        &mut self,
        buf: &[u8],
        out: &mut Vec<Incoming>,
        mut inflater: Option<&mut Inflater>,
    ) -> Result<usize, SocketError> {
        let mut pos = 0;
        loop {
            let h = match self.header {
                Some(h) => h,
                None => match self.next_header(&buf[pos..], inflater.is_some())? {
                    None => return Ok(pos),
                    Some(f) => {
                        pos += f.size;
                        let binary = f.opcode == OP_BINARY
                            || (f.opcode == OP_CONTINUATION
                                && self.message.as_ref().is_some_and(|m| m.opcode == OP_BINARY));
                        let compressed = f.rsv1
                            || (f.opcode == OP_CONTINUATION
                                && self.message.as_ref().is_some_and(|m| m.compressed));
                        let h = Header {
                            fin: f.fin,
                            opcode: f.opcode,
                            // Compressed messages are inflated whole, not streamed.
                            streamed: self.limits.stream_binary && binary && !compressed,
                            started: false,
                            compressed,
                            len: f.len,
                        };
                        self.header = Some(h);
                        if h.streamed && !(h.fin && self.message.is_none()) {
                            // A fragmented streamed message: its box says so between frames
                            // and counts its size for `max_payload`.
                            let m = self.message.get_or_insert_with(Box::default);
                            m.opcode = OP_BINARY;
                            m.total += h.len;
                        }
                        if !h.streamed {
                            let len = usize::try_from(h.len.min(1 << 20)).unwrap_or(0);
                            // A whole small message may come from the thread's kept
                            // buffers; a fragment stays with its message, so it does not.
                            // A large one may get a buffer from the pool.
                            self.payload = if h.fin && self.message.is_none() && len < pool::SMALL {
                                pool::for_payload(len)
                            } else {
                                pool::for_message(len)
                            };
                        }
                        h
                    }
                },
            };
            if h.streamed {
                pos += self.stream(h, &buf[pos..], out);
                if self.header.is_some() {
                    return Ok(pos);
                }
                continue;
            }
            let want = usize::try_from(h.len).unwrap_or(usize::MAX) - self.payload.len();
            let take = want.min(buf.len() - pos);
            grow_payload(&mut self.payload, take, want);
            self.payload.extend_from_slice(&buf[pos..pos + take]);
            pos += take;
            if take < want {
                return Ok(pos);
            }
            self.complete_payload(h, out, inflater.as_deref_mut())?;
            if h.opcode == OP_CLOSE {
                // Nothing after a close frame is read: ws's receiver stops its loop there, so
                // a bad frame behind it in the same read is no protocol error.
                return Ok(pos);
            }
        }
    }
}

impl Decoder {
    /// The payload of the frame being received, with how many of its bytes are still to
    /// come, when the frame is kept whole (not streamed) and `min` or more are to come. Its
    /// reader may read them straight into the payload rather than through a buffer of its
    /// own, then call [`Decoder::payload_read`]; it must know that the stream's next bytes
    /// are that payload (no bytes of it held back) and append no more than the count.
    pub(crate) fn payload_to_read(&mut self, min: usize) -> Option<(&mut Vec<u8>, usize)> {
        let h = self.header?;
        if h.streamed {
            return None;
        }
        let want = usize::try_from(h.len)
            .ok()?
            .checked_sub(self.payload.len())?;
        (want >= min).then_some((&mut self.payload, want))
    }

    /// After bytes were read into [`Decoder::payload_to_read`]'s payload: completes the
    /// frame, appending to `out`, if they were its last.
    pub(crate) fn payload_read(
        &mut self,
        out: &mut Vec<Incoming>,
        inflater: Option<&mut Inflater>,
    ) -> Result<(), SocketError> {
        let Some(h) = self.header else {
            return Ok(());
        };
        debug_assert!(
            self.payload.len() as u64 <= h.len,
            "read past the frame's end"
        );
        if h.streamed || (self.payload.len() as u64) < h.len {
            return Ok(());
        }
        self.complete_payload(h, out, inflater)
    }

    /// Frame `h`'s payload is all in: ready for the next header, and the frame handled.
    fn complete_payload(
        &mut self,
        h: Header,
        out: &mut Vec<Incoming>,
        inflater: Option<&mut Inflater>,
    ) -> Result<(), SocketError> {
        self.header = None;
        let payload = std::mem::take(&mut self.payload);
        self.complete(h, payload, out, inflater)
    }

    /// Hands over what `buf` holds of the streamed frame `h`; returns the bytes used. Once
    /// the frame is complete the decoder is ready for the next header.
    fn stream(&mut self, mut h: Header, buf: &[u8], out: &mut Vec<Incoming>) -> usize {
        let take = usize::try_from(h.len).map_or(buf.len(), |r| r.min(buf.len()));
        h.len -= take as u64;
        let frame_done = h.len == 0;
        let last = frame_done && h.fin;
        if take > 0 || last {
            let first = !h.started && !self.message.as_ref().is_some_and(|m| m.emitted);
            h.started = true;
            out.push(Incoming::Chunk {
                data: buf[..take].to_vec(),
                first,
                last,
            });
        }
        if !frame_done {
            self.header = Some(h);
            return take;
        }
        self.header = None;
        if h.fin {
            self.message = None;
        } else if let Some(m) = self.message.as_mut() {
            m.emitted |= h.started;
        }
        take
    }
}

/// Makes room in a frame's payload for `take` more of the `want` bytes still to come: by
/// doubling, as `Vec` grows, but never past the frame's end, since the payload goes to
/// JavaScript with its capacity. (The first allocation is at most 1 MiB: a frame's declared
/// length is not trusted with one allocation up front.)
pub(crate) fn grow_payload(payload: &mut Vec<u8>, take: usize, want: usize) {
    if payload.capacity() - payload.len() < take {
        payload.reserve_exact(take.max(want.min(payload.capacity())));
    }
}

/// A message's frames in one buffer; the frames' buffers go back to the pool.
fn joined(frames: Frames) -> Vec<u8> {
    let total: usize = frames.iter().map(Vec::len).sum();
    let mut data = pool::for_message(total);
    for f in frames {
        data.extend_from_slice(&f);
        pool::recycle(f);
    }
    data
}

/// ws's error for a message over `maxPayload` (on the wire, or once inflated).
fn max_payload_error() -> SocketError {
    SocketError::protocol(
        "WS_ERR_UNSUPPORTED_MESSAGE_LENGTH",
        "Max payload size exceeded",
        1009,
        true,
    )
}

fn utf8_error() -> SocketError {
    SocketError::protocol(
        "WS_ERR_INVALID_UTF8",
        "Invalid WebSocket frame: invalid UTF-8 sequence",
        1007,
        false,
    )
}

/// The size of a masked client frame carrying `len` payload bytes.
pub fn framed_len(len: usize) -> usize {
    let ext = if len < 126 {
        0
    } else if len < 65536 {
        2
    } else {
        8
    };
    2 + ext + 4 + len
}

/// Appends a masked client frame to `out`.
pub fn encode(out: &mut Vec<u8>, fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    encode_frame(out, fin, false, opcode, payload, mask);
}

/// Appends a masked client frame to `out`, with RSV1 (the first frame of a compressed
/// message) when `rsv1`.
pub fn encode_frame(
    out: &mut Vec<u8>,
    fin: bool,
    rsv1: bool,
    opcode: u8,
    payload: &[u8],
    mask: [u8; 4],
) {
    out.reserve(framed_len(payload.len()));
    let (head, n) = client_header(fin, rsv1, opcode, payload.len(), mask);
    out.extend_from_slice(&head[..n]);
    extend_masked(out, payload, mask, 0);
}

/// The most a masked client frame's header takes: 2 bytes, an 8-byte length, the mask.
pub const MAX_CLIENT_HEADER: usize = 14;

/// A masked client frame's header for a `len`-byte payload, and its length.
fn client_header(
    fin: bool,
    rsv1: bool,
    opcode: u8,
    len: usize,
    mask: [u8; 4],
) -> ([u8; MAX_CLIENT_HEADER], usize) {
    let mut head = [0u8; MAX_CLIENT_HEADER];
    head[0] = if fin { 0x80 } else { 0 } | if rsv1 { 0x40 } else { 0 } | opcode;
    let mut n = 2;
    if len < 126 {
        head[1] = 0x80 | len as u8;
    } else if len < 65536 {
        head[1] = 0x80 | 126;
        head[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        n = 4;
    } else {
        head[1] = 0x80 | 127;
        head[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        n = 10;
    }
    head[n..n + 4].copy_from_slice(&mask);
    (head, n + 4)
}

/// Frames, in place, a payload that follows [`MAX_CLIENT_HEADER`] bytes of room in `buf`
/// (as the owner copied it, see `pool::copy_with_room`): the header (no RSV bits) goes at
/// the end of the room and the payload is masked where it is. Returns where the frame
/// starts in `buf`, or `None` (and nothing changed) when `buf` is shorter than the room.
pub(crate) fn frame_in_room(buf: &mut [u8], fin: bool, opcode: u8, mask: [u8; 4]) -> Option<usize> {
    let len = buf.len().checked_sub(MAX_CLIENT_HEADER)?;
    let (head, n) = client_header(fin, false, opcode, len, mask);
    let start = MAX_CLIENT_HEADER - n;
    let (room, payload) = buf.split_at_mut(MAX_CLIENT_HEADER);
    room[start..].copy_from_slice(&head[..n]);
    mask_in_place(payload, mask, 0);
    Some(start)
}

/// From this many bytes, [`extend_masked`] masks while it copies (one pass); below, the
/// setting up of that pass costs more than the second pass it saves.
const MASK_WHILE_COPYING: usize = 512;

/// Appends `data` XORed with `mask` (starting `offset` bytes into the mask) to `out`.
///
/// From [`MASK_WHILE_COPYING`] bytes, in one pass that reads `data` and writes the masked
/// bytes: 38 against 51 µs per MiB here, and the bytes are not read back later, possibly
/// from another core's cache. Shorter data is copied, then masked in place a word at a
/// time (both passes vectorise, and the second finds the bytes in cache).
pub fn extend_masked(out: &mut Vec<u8>, data: &[u8], mask: [u8; 4], offset: usize) {
    let start = out.len();
    if data.len() < MASK_WHILE_COPYING {
        out.extend_from_slice(data);
        mask_in_place(&mut out[start..], mask, offset);
        return;
    }
    out.reserve(data.len());
    write_masked(
        &mut out.spare_capacity_mut()[..data.len()],
        data,
        mask,
        offset,
    );
    // SAFETY: `reserve` made room for `data.len()` more bytes, and `write_masked` wrote
    // every one of them (`dst` and `src` are the same length).
    unsafe { out.set_len(start + data.len()) };
}

/// Writes `src` XORed with `mask` (starting `offset` bytes into the mask) to `dst`, which
/// is as long as `src`: 64 bytes at a time, which the compiler vectorises.
fn write_masked(dst: &mut [MaybeUninit<u8>], src: &[u8], mask: [u8; 4], offset: usize) {
    // `extend_masked`'s `set_len` relies on every byte of `dst` being written.
    assert_eq!(dst.len(), src.len());
    let m: [u8; 64] = mask_pattern(mask, offset);
    let mut to = dst.chunks_exact_mut(64);
    let mut from = src.chunks_exact(64);
    for (d, s) in (&mut to).zip(&mut from) {
        for i in 0..64 {
            d[i].write(s[i] ^ m[i]);
        }
    }
    for ((d, s), k) in to.into_remainder().iter_mut().zip(from.remainder()).zip(m) {
        d.write(s ^ k);
    }
}

/// `mask` repeated over `N` bytes, starting `offset` bytes into it: what `N` bytes of data
/// that start there are XORed with.
fn mask_pattern<const N: usize>(mask: [u8; 4], offset: usize) -> [u8; N] {
    std::array::from_fn(|i| mask[(offset + i) % 4])
}

/// XORs `buf` with `mask`, starting `offset` bytes into the mask.
fn mask_in_place(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    let m: [u8; 8] = mask_pattern(mask, offset);
    let word = u64::from_ne_bytes(m);
    let mut chunks = buf.chunks_exact_mut(8);
    for c in &mut chunks {
        let v = u64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) ^ word;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (b, k) in chunks.into_remainder().iter_mut().zip(m) {
        *b ^= k;
    }
}

/// An unmasked frame, as a server sends it (for tests here and in `task.rs`).
#[cfg(test)]
pub(crate) fn server_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![if fin { 0x80 } else { 0 } | opcode];
    match payload.len() {
        n if n < 126 => f.push(n as u8),
        n if n < 65536 => {
            f.push(126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(payload);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(wire: &[u8], limits: Limits) -> Result<Vec<Incoming>, SocketError> {
        let mut d = Decoder::new(limits);
        let mut out = Vec::new();
        let mut pending = Vec::new();
        for piece in wire.chunks(3) {
            pending.extend_from_slice(piece);
            let used = d.decode(&pending, &mut out)?;
            pending.drain(..used);
        }
        Ok(out)
    }

    #[test]
    fn reassembles_fragments_with_control_frames_between() {
        let mut wire = server_frame(false, OP_TEXT, "héllo ".as_bytes());
        wire.extend(server_frame(true, OP_PING, b"p"));
        wire.extend(server_frame(true, OP_CONTINUATION, b"world"));
        wire.extend(server_frame(false, OP_BINARY, &[1, 2]));
        wire.extend(server_frame(true, OP_CONTINUATION, &[3]));
        wire.extend(server_frame(true, OP_BINARY, &vec![7u8; 70_000]));
        // More than two frames: the message's box carries over from frame to frame.
        wire.extend(server_frame(false, OP_TEXT, b"a"));
        wire.extend(server_frame(false, OP_CONTINUATION, b"b"));
        wire.extend(server_frame(true, OP_PONG, b""));
        wire.extend(server_frame(false, OP_CONTINUATION, b"c"));
        wire.extend(server_frame(true, OP_CONTINUATION, b"d"));
        wire.extend(server_frame(false, OP_BINARY, &[4]));
        wire.extend(server_frame(false, OP_CONTINUATION, &[5]));
        wire.extend(server_frame(true, OP_CONTINUATION, &[6]));
        wire.extend(server_frame(true, OP_CLOSE, &[0x03, 0xe8, b'o', b'k']));
        let out = decode_all(&wire, Limits::default()).unwrap();
        assert_eq!(
            out[4..7],
            [
                Incoming::Pong(Vec::new()),
                Incoming::Message {
                    binary: false,
                    frames: vec![b"abcd".to_vec()].into()
                },
                Incoming::Message {
                    binary: true,
                    frames: vec![vec![4], vec![5], vec![6]].into()
                },
            ]
        );
        assert_eq!(
            out[..4],
            [
                Incoming::Ping(b"p".to_vec()),
                Incoming::Message {
                    binary: false,
                    frames: vec!["héllo world".as_bytes().to_vec()].into()
                },
                Incoming::Message {
                    binary: true,
                    frames: vec![vec![1, 2], vec![3]].into()
                },
                Incoming::Message {
                    binary: true,
                    frames: vec![vec![7u8; 70_000]].into()
                },
            ]
        );
        assert_eq!(out[7], Incoming::Close(Some(1000), b"ok".to_vec()));
        assert_eq!(out.len(), 8);
    }

    #[test]
    fn reports_violations_like_ws() {
        /// The error's fields as ws reports them (every protocol error has a code and a
        /// close code).
        struct Reported {
            code: &'static str,
            message: String,
            close_code: u16,
            range_error: bool,
        }
        let case = |wire: Vec<u8>, limits: Limits| {
            let e = decode_all(&wire, limits).unwrap_err();
            Reported {
                code: e.code.unwrap(),
                message: e.message,
                close_code: e.close_code.unwrap(),
                range_error: e.range_error,
            }
        };
        let l = Limits::default();
        let e = case(vec![0x85, 0x00], l);
        assert_eq!(
            (e.code, e.message.as_str(), e.close_code),
            (
                "WS_ERR_INVALID_OPCODE",
                "Invalid WebSocket frame: invalid opcode 5",
                1002
            )
        );
        assert_eq!(
            case(vec![0x80, 0x00], l).message,
            "Invalid WebSocket frame: invalid opcode 0"
        );
        assert_eq!(case(vec![0xc1, 0x00], l).code, "WS_ERR_UNEXPECTED_RSV_1");
        assert_eq!(case(vec![0xa1, 0x00], l).code, "WS_ERR_UNEXPECTED_RSV_2_3");
        assert_eq!(
            case(vec![0x09, 0x00], l).message,
            "Invalid WebSocket frame: FIN must be set"
        );
        assert_eq!(
            case(vec![0x89, 126, 0, 126], l).code,
            "WS_ERR_INVALID_CONTROL_PAYLOAD_LENGTH"
        );
        assert_eq!(
            case(vec![0x81, 0x80, 0, 0, 0, 0], l).message,
            "Invalid WebSocket frame: MASK must be clear"
        );
        assert_eq!(
            case(server_frame(true, OP_CLOSE, &[0x03, 0xec]), l).message,
            "Invalid WebSocket frame: invalid status code 1004"
        );
        assert_eq!(
            case(server_frame(true, OP_CLOSE, &[0x03]), l).message,
            "Invalid WebSocket frame: invalid payload length 1"
        );
        let utf8 = case(server_frame(true, OP_TEXT, &[0xff]), l);
        assert_eq!(
            (utf8.code, utf8.close_code, utf8.range_error),
            ("WS_ERR_INVALID_UTF8", 1007, false)
        );
        let big = case(
            server_frame(true, OP_BINARY, &[0; 2048]),
            Limits {
                max_payload: 1024,
                max_fragments: 0,
                stream_binary: false,
            },
        );
        assert_eq!(
            (big.code, big.message.as_str(), big.close_code),
            (
                "WS_ERR_UNSUPPORTED_MESSAGE_LENGTH",
                "Max payload size exceeded",
                1009
            )
        );
        let mut huge = vec![0x82, 127];
        huge.extend_from_slice(&(1u64 << 60).to_be_bytes());
        assert_eq!(
            case(huge, l).message,
            "Unsupported WebSocket frame: payload length > 2^53 - 1"
        );
        let mut frags = server_frame(false, OP_BINARY, b"a");
        frags.extend(server_frame(false, OP_CONTINUATION, b"b"));
        frags.extend(server_frame(false, OP_CONTINUATION, b"c"));
        assert_eq!(
            case(
                frags,
                Limits {
                    max_payload: 0,
                    max_fragments: 2,
                    stream_binary: false,
                }
            )
            .code,
            "WS_ERR_TOO_MANY_BUFFERED_PARTS"
        );
    }

    #[test]
    fn nothing_after_a_close_frame_is_decoded() {
        let mut wire = server_frame(true, OP_TEXT, b"a");
        wire.extend(server_frame(true, OP_CLOSE, &[0x03, 0xe8]));
        let close_end = wire.len();
        // A reserved opcode, then a message: neither is read.
        wire.extend([0x83, 0x00]);
        wire.extend(server_frame(true, OP_TEXT, b"b"));
        let mut d = Decoder::new(Limits::default());
        let mut out = Vec::new();
        assert_eq!(d.decode(&wire, &mut out), Ok(close_end));
        assert_eq!(
            out,
            vec![
                Incoming::Message {
                    binary: false,
                    frames: vec![b"a".to_vec()].into()
                },
                Incoming::Close(Some(1000), Vec::new()),
            ]
        );
    }

    #[test]
    fn one_header_parser_for_both_roles() {
        let relay = Expect {
            masked: true,
            rsv1: false,
            fragmented: None,
        };
        let code = |buf: &[u8], e: Expect| parse_header(buf, e).unwrap_err().code.unwrap();
        // A masked header needs its key before it is complete.
        assert_eq!(parse_header(&[0x82, 0x81, 1, 2, 3], relay).unwrap(), None);
        let h = parse_header(&[0x82, 0xfe, 0x01, 0x00, 1, 2, 3, 4], relay)
            .unwrap()
            .unwrap();
        assert_eq!((h.len, h.size, h.mask), (256, 8, Some([1, 2, 3, 4])));
        // A relay does not follow messages: a stray continuation passes.
        assert!(parse_header(&[0x80, 0x80, 0, 0, 0, 0], relay).is_ok());
        assert_eq!(code(&[0x82, 0x00], relay), "WS_ERR_EXPECTED_MASK");
        // Flags are checked on the first two bytes, as ws does.
        assert_eq!(code(&[0x8b, 0x80], relay), "WS_ERR_INVALID_OPCODE");
        let deflate = Expect {
            masked: false,
            rsv1: true,
            fragmented: Some(false),
        };
        assert!(parse_header(&[0xc1, 0x00], deflate).unwrap().unwrap().rsv1);
        assert_eq!(code(&[0xc9, 0x00], deflate), "WS_ERR_UNEXPECTED_RSV_1");
        let inside = Expect {
            fragmented: Some(true),
            ..deflate
        };
        assert_eq!(code(&[0x40, 0x00], inside), "WS_ERR_UNEXPECTED_RSV_1");
        assert_eq!(code(&[0x81, 0x00], inside), "WS_ERR_INVALID_OPCODE");
        assert_eq!(
            code(&[0x88, 0x01], deflate),
            "WS_ERR_INVALID_CONTROL_PAYLOAD_LENGTH"
        );
    }

    #[test]
    fn streams_binary_messages_piece_by_piece() {
        let limits = Limits {
            stream_binary: true,
            ..Limits::default()
        };
        let body: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
        let mut wire = server_frame(false, OP_BINARY, &body[..70_000]);
        wire.extend(server_frame(true, OP_PING, b"p"));
        wire.extend(server_frame(false, OP_CONTINUATION, &body[70_000..70_000]));
        wire.extend(server_frame(false, OP_CONTINUATION, &body[70_000..150_000]));
        wire.extend(server_frame(true, OP_CONTINUATION, &body[150_000..]));
        wire.extend(server_frame(true, OP_TEXT, b"whole text"));
        wire.extend(server_frame(true, OP_BINARY, b""));
        for split in [1usize, 7, 1000, 65_536, wire.len()] {
            let mut d = Decoder::new(limits);
            let mut out = Vec::new();
            let mut pending = Vec::new();
            for piece in wire.chunks(split) {
                pending.extend_from_slice(piece);
                let used = d.decode(&pending, &mut out).unwrap();
                pending.drain(..used);
            }
            let mut got = Vec::new();
            let mut firsts = 0;
            let mut between = Vec::new();
            let mut rest = Vec::new();
            let mut in_body = true;
            for item in out {
                match item {
                    Incoming::Chunk { data, first, last } if in_body => {
                        firsts += usize::from(first);
                        got.extend_from_slice(&data);
                        in_body = !last;
                    }
                    other if in_body => between.push(other),
                    other => rest.push(other),
                }
            }
            assert_eq!(got, body, "split {split}");
            assert_eq!(firsts, 1, "split {split}");
            assert_eq!(between, vec![Incoming::Ping(b"p".to_vec())]);
            assert_eq!(
                rest,
                vec![
                    Incoming::Message {
                        binary: false,
                        frames: vec![b"whole text".to_vec()].into()
                    },
                    Incoming::Chunk {
                        data: Vec::new(),
                        first: true,
                        last: true
                    },
                ],
                "split {split}"
            );
        }
        // The ping between the fragments still comes out between them, and the size limit
        // counts the whole message.
        let small = Limits {
            max_payload: 100_000,
            ..limits
        };
        let mut d = Decoder::new(small);
        let mut out = Vec::new();
        let err = d.decode(&wire, &mut out).unwrap_err();
        assert_eq!(err.code, Some("WS_ERR_UNSUPPORTED_MESSAGE_LENGTH"));
        assert!(out.contains(&Incoming::Ping(b"p".to_vec())));
    }

    /// A compressor and an inflater agreed with default parameters (this end the client).
    fn deflate_pair() -> (
        crate::socket::compress::PerMessage,
        crate::socket::compress::PerMessage,
    ) {
        use crate::socket::deflate::{
            accept_offer, check_answer, offer, DeflateOptions, Negotiation,
        };
        let d = DeflateOptions::default();
        let server = accept_offer(&d, &offer(&d)).unwrap().unwrap();
        let client = check_answer(Some(&Negotiation::Offer(d)), Some(&server.params.format()))
            .unwrap()
            .unwrap();
        (
            crate::socket::compress::PerMessage::new(&server),
            crate::socket::compress::PerMessage::new(&client),
        )
    }

    /// A server frame with RSV1 as given.
    fn rsv_frame(fin: bool, rsv1: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = server_frame(fin, opcode, payload);
        if rsv1 {
            f[0] |= 0x40;
        }
        f
    }

    #[test]
    fn inflates_compressed_messages_whole_or_fragmented() {
        let (mut server, mut client) = deflate_pair();
        let text = "héllo wörld ".repeat(500);
        let mut wire = Vec::new();
        let mut c = Vec::new();
        server.deflate.decide(true, true);
        server
            .deflate
            .compress(text.as_bytes(), true, &mut c)
            .unwrap();
        assert!(c.len() < text.len() / 10);
        wire.extend(rsv_frame(true, true, OP_TEXT, &c));
        // A fragmented binary message, a ping between its frames, an uncompressed message
        // after it.
        let body: Vec<u8> = (0..50_000u32).map(|i| (i % 7) as u8).collect();
        for (k, piece) in body.chunks(20_000).enumerate() {
            let fin = k == 2;
            server.deflate.decide(k == 0, true);
            server.deflate.compress(piece, fin, &mut c).unwrap();
            let op = if k == 0 { OP_BINARY } else { OP_CONTINUATION };
            wire.extend(rsv_frame(fin, k == 0, op, &c));
            if k == 0 {
                wire.extend(server_frame(true, OP_PING, b"p"));
            }
        }
        wire.extend(server_frame(true, OP_TEXT, b"plain"));
        let mut d = Decoder::new(Limits::default());
        let mut out = Vec::new();
        let mut pending = Vec::new();
        for piece in wire.chunks(777) {
            pending.extend_from_slice(piece);
            let used = d
                .decode_with(&pending, &mut out, Some(&mut client.inflate))
                .unwrap();
            pending.drain(..used);
        }
        assert_eq!(out.len(), 4);
        assert_eq!(
            out[0],
            Incoming::Message {
                binary: false,
                frames: vec![text.into_bytes()].into()
            }
        );
        assert_eq!(out[1], Incoming::Ping(b"p".to_vec()));
        match &out[2] {
            Incoming::Message {
                binary: true,
                frames,
            } => assert_eq!(frames.concat(), body),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            out[3],
            Incoming::Message {
                binary: false,
                frames: vec![b"plain".to_vec()].into()
            }
        );
    }

    #[test]
    fn compressed_frames_fail_as_ws() {
        let code = |wire: Vec<u8>, limits: Limits, inflate: bool| {
            let (_, mut client) = deflate_pair();
            let mut d = Decoder::new(limits);
            let inflater = inflate.then_some(&mut client.inflate);
            let e = d.decode_with(&wire, &mut Vec::new(), inflater).unwrap_err();
            (e.code.unwrap(), e.close_code.unwrap(), e.message)
        };
        let l = Limits::default();
        // RSV1 without an agreement, or on a continuation or a control frame.
        assert_eq!(
            code(rsv_frame(true, true, OP_TEXT, b"x"), l, false).0,
            "WS_ERR_UNEXPECTED_RSV_1"
        );
        let mut cont = rsv_frame(false, true, OP_TEXT, &[0x00]);
        cont.extend(rsv_frame(true, true, OP_CONTINUATION, &[0x00]));
        assert_eq!(code(cont, l, true).0, "WS_ERR_UNEXPECTED_RSV_1");
        assert_eq!(
            code(rsv_frame(true, true, OP_PING, b""), l, true).0,
            "WS_ERR_UNEXPECTED_RSV_1"
        );
        // Data that does not inflate: zlib's error, 1007.
        assert_eq!(
            code(rsv_frame(true, true, OP_BINARY, &[0xff, 0xff]), l, true),
            ("Z_DATA_ERROR", 1007, "invalid block type".to_owned())
        );
        // A bomb: small on the wire, over max_payload once inflated, even across frames.
        let (mut server, _) = deflate_pair();
        let mut c = Vec::new();
        server.deflate.decide(true, true);
        server
            .deflate
            .compress(&vec![0u8; 600_000], false, &mut c)
            .unwrap();
        let mut bomb = rsv_frame(false, true, OP_BINARY, &c);
        server
            .deflate
            .compress(&vec![0u8; 600_000], true, &mut c)
            .unwrap();
        bomb.extend(rsv_frame(true, false, OP_CONTINUATION, &c));
        let small = Limits {
            max_payload: 1_000_000,
            ..l
        };
        assert_eq!(
            code(bomb, small, true),
            (
                "WS_ERR_UNSUPPORTED_MESSAGE_LENGTH",
                1009,
                "Max payload size exceeded".to_owned()
            )
        );
        // Invalid UTF-8 is found after inflation.
        let (mut server, _) = deflate_pair();
        server.deflate.decide(true, true);
        server
            .deflate
            .compress(&[0xc3, 0x28], true, &mut c)
            .unwrap();
        assert_eq!(
            code(rsv_frame(true, true, OP_TEXT, &c), l, true).0,
            "WS_ERR_INVALID_UTF8"
        );
    }

    #[test]
    fn empty_fragments_count_but_are_not_kept() {
        let mut wire = server_frame(false, OP_BINARY, &[]);
        for _ in 0..1000 {
            wire.extend(server_frame(false, OP_CONTINUATION, &[]));
        }
        wire.extend(server_frame(false, OP_CONTINUATION, &[1, 2]));
        wire.extend(server_frame(true, OP_CONTINUATION, &[]));
        wire.extend(server_frame(false, OP_BINARY, &[]));
        wire.extend(server_frame(true, OP_CONTINUATION, &[]));
        let out = decode_all(&wire, Limits::default()).unwrap();
        assert_eq!(
            out,
            vec![
                Incoming::Message {
                    binary: true,
                    frames: vec![vec![1, 2]].into()
                },
                Incoming::Message {
                    binary: true,
                    frames: vec![Vec::new()].into()
                },
            ],
            "only the frames with bytes; an empty message keeps one empty frame"
        );
        let mut wire = server_frame(false, OP_BINARY, &[]);
        for _ in 0..3 {
            wire.extend(server_frame(false, OP_CONTINUATION, &[]));
        }
        let limits = Limits {
            max_fragments: 3,
            ..Limits::default()
        };
        let e = decode_all(&wire, limits).unwrap_err();
        assert_eq!(e.code, Some("WS_ERR_TOO_MANY_BUFFERED_PARTS"));
    }

    #[test]
    fn compressed_frames_that_inflate_to_nothing_count_as_fragments() {
        let (mut server, mut client) = deflate_pair();
        let mut c = Vec::new();
        server.deflate.decide(true, true);
        server.deflate.compress(b"hello", false, &mut c).unwrap();
        let mut wire = rsv_frame(false, true, OP_TEXT, &c);
        for _ in 0..3 {
            wire.extend(rsv_frame(false, false, OP_CONTINUATION, &[]));
        }
        let limits = Limits {
            max_fragments: 3,
            ..Limits::default()
        };
        let mut d = Decoder::new(limits);
        let e = d
            .decode_with(&wire, &mut Vec::new(), Some(&mut client.inflate))
            .unwrap_err();
        assert_eq!(e.code, Some("WS_ERR_TOO_MANY_BUFFERED_PARTS"));
    }

    #[test]
    fn compressed_binary_messages_are_one_piece_in_stream_mode() {
        let (mut server, mut client) = deflate_pair();
        let mut c = Vec::new();
        server.deflate.decide(true, true);
        server
            .deflate
            .compress(&[9u8; 70_000], true, &mut c)
            .unwrap();
        let wire = rsv_frame(true, true, OP_BINARY, &c);
        let mut d = Decoder::new(Limits {
            stream_binary: true,
            ..Limits::default()
        });
        let mut out = Vec::new();
        d.decode_with(&wire, &mut out, Some(&mut client.inflate))
            .unwrap();
        assert_eq!(
            out,
            vec![Incoming::Chunk {
                data: vec![9u8; 70_000],
                first: true,
                last: true
            }]
        );
    }

    #[test]
    fn encodes_rsv1() {
        let mut out = Vec::new();
        encode_frame(&mut out, true, true, OP_TEXT, b"x", [0; 4]);
        assert_eq!(out[0], 0xc1);
    }

    #[test]
    fn close_codes_follow_ws() {
        for ok in [1000, 1001, 1003, 1007, 1011, 1012, 1013, 1014, 3000, 4999] {
            assert!(is_valid_close_code(ok), "{ok}");
        }
        for bad in [0, 999, 1004, 1005, 1006, 1015, 2999, 5000] {
            assert!(!is_valid_close_code(bad), "{bad}");
        }
    }

    #[test]
    fn a_payload_read_by_its_reader_completes_the_frame() {
        let payload: Vec<u8> = (0..40_000u32).map(|i| i as u8).collect();
        let wire = [
            server_frame(true, OP_BINARY, &payload),
            server_frame(true, OP_TEXT, b"next"),
        ]
        .concat();
        let mut d = Decoder::new(Limits::default());
        let mut out = Vec::new();
        // The header and 1,000 bytes of the payload come through the decoder.
        let used = d.decode(&wire[..4 + 1_000], &mut out).unwrap();
        assert_eq!((used, out.len()), (4 + 1_000, 0));
        assert!(
            d.payload_to_read(40_000).is_none(),
            "less than asked for is to come"
        );
        let (into, want) = d
            .payload_to_read(16 * 1024)
            .expect("the rest of the payload");
        assert_eq!(want, 39_000);
        into.extend_from_slice(&wire[4 + 1_000..4 + 20_000]);
        d.payload_read(&mut out, None).unwrap();
        assert!(out.is_empty(), "not complete yet");
        let (into, want) = d.payload_to_read(1).unwrap();
        assert_eq!(want, 20_000);
        into.extend_from_slice(&wire[4 + 20_000..4 + 40_000]);
        d.payload_read(&mut out, None).unwrap();
        assert!(d.payload_to_read(1).is_none(), "between frames");
        d.decode(&wire[4 + 40_000..], &mut out).unwrap();
        let messages: Vec<(bool, Vec<u8>)> = out
            .into_iter()
            .map(|m| match m {
                Incoming::Message { binary, frames } => (binary, frames.concat()),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(messages, vec![(true, payload), (false, b"next".to_vec())]);
        // A streamed frame is never read this way.
        let mut streamed = Decoder::new(Limits {
            stream_binary: true,
            ..Limits::default()
        });
        streamed
            .decode(
                &server_frame(true, OP_BINARY, &[0; 40_000])[..4],
                &mut Vec::new(),
            )
            .unwrap();
        assert!(streamed.payload_to_read(1).is_none());
    }

    #[test]
    fn masks_byte_by_byte_at_every_length_and_offset() {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let data: Vec<u8> = (0..70_003u32).map(|i| (i * 31 + 7) as u8).collect();
        // Both ways of masking: copied then masked (short), masked while copied (from 512).
        for len in (0..40).chain([511, 512, 513, 575, 576, 577, 4096, 70_003]) {
            for offset in 0..8 {
                let mut out = vec![0xee; 3];
                extend_masked(&mut out, &data[..len], mask, offset);
                let expected: Vec<u8> =
                    (0..len).map(|i| data[i] ^ mask[(offset + i) % 4]).collect();
                assert_eq!(&out[..3], &[0xee; 3], "the bytes before are kept");
                assert_eq!(&out[3..], &expected[..], "length {len}, offset {offset}");
            }
        }
    }

    #[test]
    fn a_frame_made_in_its_room_is_the_frame_encode_makes() {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let data: Vec<u8> = (0..70_001u32).map(|i| (i * 13 + 5) as u8).collect();
        for len in [0, 1, 125, 126, 127, 65_535, 65_536, 70_001] {
            for (fin, opcode) in [(true, OP_BINARY), (false, OP_TEXT), (true, OP_CONTINUATION)] {
                let mut expected = Vec::new();
                encode(&mut expected, fin, opcode, &data[..len], mask);
                let mut buf = vec![0xee; MAX_CLIENT_HEADER];
                buf.extend_from_slice(&data[..len]);
                let start = frame_in_room(&mut buf, fin, opcode, mask).expect("room enough");
                assert_eq!(&buf[start..], &expected[..], "length {len}");
                assert!(
                    buf[..start].iter().all(|&b| b == 0xee),
                    "only the header's part of the room is written"
                );
            }
        }
        // The header itself, as RFC 6455 lays it out (not only as `encode` makes it).
        let mut buf = vec![0; MAX_CLIENT_HEADER];
        buf.extend_from_slice(&data);
        assert_eq!(frame_in_room(&mut buf, true, OP_BINARY, mask), Some(0));
        let mut expected = vec![0x82, 0x80 | 127];
        expected.extend_from_slice(&70_001u64.to_be_bytes());
        expected.extend_from_slice(&mask);
        assert_eq!(&buf[..MAX_CLIENT_HEADER], &expected[..]);
        let mut buf = vec![0; MAX_CLIENT_HEADER];
        buf.extend_from_slice(&data[..300]);
        assert_eq!(frame_in_room(&mut buf, false, OP_TEXT, mask), Some(6));
        assert_eq!(
            &buf[6..MAX_CLIENT_HEADER],
            &[0x01, 0x80 | 126, 0x01, 0x2c, 0x37, 0xfa, 0x21, 0x3d]
        );
        // No room: nothing is framed, nothing changes.
        let mut short = vec![1u8; MAX_CLIENT_HEADER - 1];
        assert_eq!(frame_in_room(&mut short, true, OP_BINARY, mask), None);
        assert_eq!(short, vec![1u8; MAX_CLIENT_HEADER - 1]);
    }

    #[test]
    fn encodes_masked_frames() {
        let mut out = Vec::new();
        encode(&mut out, true, OP_TEXT, b"Hello", [0x37, 0xfa, 0x21, 0x3d]);
        // RFC 6455 section 5.7: a masked "Hello".
        assert_eq!(
            out,
            vec![0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
        assert_eq!(framed_len(5), out.len());
        let mut masked = Vec::new();
        extend_masked(&mut masked, b"Hello", [0x37, 0xfa, 0x21, 0x3d], 0);
        let mut shifted = Vec::new();
        extend_masked(&mut shifted, b"llo", [0x37, 0xfa, 0x21, 0x3d], 2);
        assert_eq!(&masked[2..], &shifted[..]);
        let mut big = Vec::new();
        encode(&mut big, false, OP_BINARY, &vec![1u8; 70_000], [1, 2, 3, 4]);
        assert_eq!(big.len(), framed_len(70_000));
        assert_eq!(big[0], 0x02);
    }
}
