//! The client's frame decoder (`socket::frame::Decoder`) against tungstenite's client-side
//! reader, on generated server-to-client byte streams cut at random read boundaries: they
//! must agree on every message (text, binary, ping, pong, close code and reason) and, on a
//! failure, on its close code (1002 protocol error, 1007 invalid UTF-8, 1009 too big).
//!
//! # The reference
//!
//! tungstenite is driven as a whole client: `WebSocket::from_raw_socket` with `Role::Client`
//! over an in-memory stream whose reads return the same cuts. That is the fairest comparison
//! for what our decoder is for: tungstenite's `FrameCodec` only splits frames, and all of the
//! validation under test (RSV bits, opcodes, masks, control frames, fragmentation, UTF-8,
//! close codes, sizes) is in its message layer. Its limits are set to ours: the largest
//! message is our `max_payload`; its frame limit, which ws does not have, is kept out of the
//! way (`max(max_payload, 128 KiB)`) except for lengths no generated stream carries in full.
//! Its errors map to close codes as RFC 6455 and ws use them: `ProtocolError` 1002,
//! `CapacityError` 1009, `Utf8` 1007; an invalid close code, which tungstenite answers with a
//! close frame of its own (1002, "Protocol violation") rather than an error, counts as a
//! 1002 failure.
//!
//! # Where tungstenite differs from ws, deliberately
//!
//! ws 8 is the contract of this project. Where tungstenite behaves otherwise the generated
//! stream is written for tungstenite so that its answer is ws's (`Stream::reference`),
//! and each difference is asserted on its own in `where_tungstenite_differs_we_follow_ws`:
//!
//! 1. UTF-8: tungstenite validates text fragment by fragment and fails at the first bad
//!    fragment; ws validates a text message once it is complete (`Receiver#dataMessage`), so
//!    control frames between the fragments are still delivered, a message never finished is
//!    never an error, and a later protocol error wins. For tungstenite, a text message that is
//!    not UTF-8 is rewritten to ASCII ending in an incomplete sequence: invalid only once
//!    whole, at the same frame.
//! 2. Header order: ws checks a frame's flags, opcode and control length on its first two
//!    bytes; tungstenite first applies its frame-size limit (on a huge length it reports
//!    1009 where ws reports 1002). For tungstenite, a bad header with a huge length carries a
//!    small payload instead.
//! 3. Control frame lengths: ws refuses a control frame whose 7-bit length is 126 or 127
//!    even when the extended length is small (RFC 6455 requires the minimal encoding);
//!    tungstenite checks the extended length. For tungstenite, such a frame carries 126 bytes.
//! 4. Close codes: tungstenite refuses 1014 (Bad Gateway, registered by IANA), which ws
//!    accepts; and on an invalid code with a reason that is not UTF-8 it reports the UTF-8
//!    error where ws reports the code first. For tungstenite, 1014 is sent as 1013 (and read
//!    back as 1014), and an invalid code goes without its reason.
//!
//! Streams end at frame boundaries (a message may be left unfinished): tungstenite checks a
//! message's size once a frame's payload is in, ws and our decoder on its header, so a stream
//! cut inside an oversized frame would differ only in when the end of the stream is noticed.
//!
//! The generator writes messages over several frames with control frames (and close frames)
//! between them, zero-length frames and fragments, payloads at 125/126/127/65535/65536
//! bytes, lengths written longer than needed, text with two- to four-byte characters and
//! invalid sequences (cut across fragments by the frames and across reads by the cuts), close
//! frames empty, of one byte, with codes ws refuses, with reasons that are not UTF-8 or too
//! long, RSV1/2/3 on every kind of frame, reserved opcodes 3-7 and 11-15, masked frames,
//! continuations without a message, data frames inside a fragmented message, fragmented
//! control frames, and lengths at 2^31, 2^32, 100 MiB + 1, 2^53 - 1, 2^53, 2^63 - 1, 2^63
//! and 2^64 - 1; with `Limits::default()` or a small `max_payload` (1 byte to 64 KiB).
//!
//! A second property checks `Limits::stream_binary`: the pieces of each binary message
//! concatenate to the whole-message bytes, with exactly one `first` and one `last`.
//!
//! Case counts: see `DIFFERENTIAL_CASES` and `STREAMED_CASES`; `PROPTEST_CASES=100000 cargo
//! test -p hyco-core --test frame_differential` runs longer.

mod common;

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};

use hyco_core::socket::frame::{Decoder, Incoming, Limits};
use proptest::prelude::*;
use proptest::sample::Index;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocket, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as TError, Message};

use common::{cases, reads, Reads};

/// Cases of the differential property per `cargo test`.
const DIFFERENTIAL_CASES: u32 = 5000;
/// Cases of the stream-mode property per `cargo test`.
const STREAMED_CASES: u32 = 2500;

const MIB: u64 = 1024 * 1024;

// ---------------------------------------------------------------------------------------
// Frames as the generator writes them.

/// How a frame's length is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Enc {
    /// The shortest form.
    Minimal,
    /// The 16-bit form, even for a short payload (longer ones take the 64-bit form).
    Ext16,
    /// The 64-bit form.
    Ext64,
}

#[derive(Clone)]
struct Frame {
    fin: bool,
    /// RSV1, RSV2, RSV3 as bits 2, 1, 0.
    rsv: u8,
    opcode: u8,
    mask: Option<[u8; 4]>,
    enc: Enc,
    payload: Vec<u8>,
    /// A length the header claims instead of the payload's; the payload is not sent.
    claimed: Option<u64>,
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Frame(fin={} rsv={} op={} mask={:?} enc={:?} claimed={:?} payload={})",
            self.fin,
            self.rsv,
            self.opcode,
            self.mask,
            self.enc,
            self.claimed,
            Short(&self.payload)
        )
    }
}

/// Bytes shown by their length and first few values (payloads run to 64 KiB).
struct Short<'a>(&'a [u8]);

impl fmt::Display for Short<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let head = &self.0[..self.0.len().min(12)];
        write!(f, "{}B{:02x?}", self.0.len(), head)?;
        if self.0.len() > head.len() {
            f.write_str("..")?;
        }
        Ok(())
    }
}

impl Frame {
    fn new(fin: bool, opcode: u8, payload: Vec<u8>) -> Frame {
        Frame {
            fin,
            rsv: 0,
            opcode,
            mask: None,
            enc: Enc::Minimal,
            payload,
            claimed: None,
        }
    }

    fn is_control(&self) -> bool {
        self.opcode >= 8
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.push(u8::from(self.fin) << 7 | self.rsv << 4 | self.opcode);
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let len = self.claimed.unwrap_or(self.payload.len() as u64);
        let enc = match (self.enc, self.claimed) {
            (_, Some(_)) => Enc::Ext64,
            (Enc::Ext16, None) if len > 0xffff => Enc::Ext64,
            (Enc::Minimal, None) if len < 126 => Enc::Minimal,
            (Enc::Minimal, None) if len <= 0xffff => Enc::Ext16,
            (Enc::Minimal, None) => Enc::Ext64,
            (e, None) => e,
        };
        match enc {
            Enc::Minimal => out.push(mask_bit | len as u8),
            Enc::Ext16 => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            Enc::Ext64 => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&len.to_be_bytes());
            }
        }
        if let Some(m) = self.mask {
            out.extend_from_slice(&m);
        }
        if self.claimed.is_none() {
            match self.mask {
                Some(m) => out.extend(self.payload.iter().enumerate().map(|(i, b)| b ^ m[i % 4])),
                None => out.extend_from_slice(&self.payload),
            }
        }
    }

    /// The 7-bit length field as written (what ws checks control frames by).
    fn len7(&self) -> u8 {
        let mut out = Vec::new();
        self.write(&mut out);
        out[1] & 0x7f
    }
}

fn wire(frames: &[Frame]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in frames {
        f.write(&mut out);
    }
    out
}

// ---------------------------------------------------------------------------------------
// The stream as tungstenite is given it (see the module doc, "Where tungstenite differs").

/// A generated stream: the frames, and the same frames written so that tungstenite's answer
/// is ws's.
#[derive(Clone)]
struct Stream {
    frames: Vec<Frame>,
    reference: Vec<Frame>,
    /// The code of the first close frame, if any (see difference 4).
    first_close_code: Option<u16>,
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.frames).finish()
    }
}

/// True for the close codes ws accepts (its `isValidStatusCode`).
fn ws_valid_close_code(code: u16) -> bool {
    ((1000..=1014).contains(&code) && !matches!(code, 1004..=1006)) || (3000..=4999).contains(&code)
}

/// A text message for tungstenite that is invalid only once whole (difference 1): ASCII,
/// ending in the lead byte of a three-byte sequence.
fn invalid_only_when_whole(frames: &mut [Frame], indices: &[usize]) {
    let last = indices
        .iter()
        .rev()
        .copied()
        .find(|&i| !frames[i].payload.is_empty());
    for &i in indices {
        for b in frames[i].payload.iter_mut() {
            *b = b'a';
        }
    }
    if let Some(i) = last {
        if let Some(b) = frames[i].payload.last_mut() {
            *b = 0xe2;
        }
    }
}

/// Where a text message's bytes would make tungstenite fail earlier than ws, rewrites them
/// (difference 1). `finished`: its final fragment is in the stream.
fn settle_text(frames: &mut [Frame], opcode: u8, indices: &[usize], finished: bool) {
    if opcode != 1 {
        return;
    }
    let bytes: Vec<u8> = indices
        .iter()
        .flat_map(|&i| frames[i].payload.iter().copied())
        .collect();
    let early = match std::str::from_utf8(&bytes) {
        Ok(_) => false,
        // Complete and invalid: ws fails at the final fragment, tungstenite perhaps sooner.
        Err(_) if finished => true,
        // Unfinished: ws never looks; tungstenite fails unless the bytes are a valid prefix.
        Err(e) => e.error_len().is_some(),
    };
    if early {
        invalid_only_when_whole(frames, indices);
    }
}

impl Stream {
    fn new(frames: Vec<Frame>) -> Stream {
        let mut reference = frames.clone();
        let mut first_close_code = None;
        // The message in progress, as ws's receiver follows it: opcode and frame indices.
        let mut current: Option<(u8, Vec<usize>)> = None;
        for i in 0..reference.len() {
            let f = &mut reference[i];
            let reserved = !matches!(f.opcode, 0..=2 | 8..=10);
            let misplaced = match f.opcode {
                0 => current.is_none(),
                1 | 2 => current.is_some(),
                _ => false,
            };
            let control_length = f.is_control() && !reserved && matches!(f.len7(), 1 | 126 | 127);
            let too_long = control_length && f.len7() > 1;
            let bad_header = f.rsv != 0
                || f.mask.is_some()
                || reserved
                || misplaced
                || (f.is_control() && !f.fin)
                || (control_length && (too_long || f.opcode == 8));
            if bad_header || f.claimed.is_some() {
                if too_long || (bad_header && f.claimed.is_some()) {
                    // Differences 2 and 3: refused by ws on its first two bytes, whatever
                    // its length; tungstenite is given one it reads, and refuses.
                    f.claimed = None;
                    f.enc = Enc::Minimal;
                    f.payload = vec![b'a'; 126];
                }
                // Both readers fail on this header: the message in progress never ends.
                if let Some((op, idx)) = current.take() {
                    settle_text(&mut reference, op, &idx, false);
                }
                break;
            }
            if f.opcode == 8 && f.payload.len() >= 2 {
                let code = u16::from_be_bytes([f.payload[0], f.payload[1]]);
                first_close_code.get_or_insert(code);
                if code == 1014 {
                    // Difference 4.
                    f.payload[..2].copy_from_slice(&1013u16.to_be_bytes());
                } else if !ws_valid_close_code(code) {
                    // Difference 4: the code is refused first.
                    f.payload.truncate(2);
                }
            }
            match f.opcode {
                0 => {
                    let fin = f.fin;
                    if let Some((_, idx)) = current.as_mut() {
                        idx.push(i);
                    }
                    if fin {
                        if let Some((op, idx)) = current.take() {
                            settle_text(&mut reference, op, &idx, true);
                        }
                    }
                }
                1 | 2 => {
                    let (op, fin) = (f.opcode, f.fin);
                    if fin {
                        settle_text(&mut reference, op, &[i], true);
                    } else {
                        current = Some((op, vec![i]));
                    }
                }
                _ => {}
            }
        }
        if let Some((op, idx)) = current.take() {
            settle_text(&mut reference, op, &idx, false);
        }
        Stream {
            frames,
            reference,
            first_close_code,
        }
    }
}

// ---------------------------------------------------------------------------------------
// What a reader made of a stream.

#[derive(Clone, PartialEq, Eq)]
enum Ev {
    Text(Vec<u8>),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, Vec<u8>),
}

impl fmt::Debug for Ev {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ev::Text(b) => write!(f, "Text({})", Short(b)),
            Ev::Binary(b) => write!(f, "Binary({})", Short(b)),
            Ev::Ping(b) => write!(f, "Ping({})", Short(b)),
            Ev::Pong(b) => write!(f, "Pong({})", Short(b)),
            Ev::Close(c, r) => write!(f, "Close({c:?}, {})", Short(r)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The stream ended (perhaps inside a message).
    Eof,
    /// A close frame came; nothing after it is read.
    Closed,
    /// The connection fails with this close code.
    Fail(u16),
}

/// Our decoder over `reads`, as the connection task drives it: what is left of a read (an
/// incomplete header) goes again with the next one; reading stops at a close frame or an
/// error.
fn ours(reads: &[&[u8]], limits: Limits) -> (Vec<Incoming>, End) {
    let mut d = Decoder::new(limits);
    let mut out = Vec::new();
    let mut pending = Vec::new();
    for r in reads {
        pending.extend_from_slice(r);
        match d.decode(&pending, &mut out) {
            Ok(used) => {
                assert!(used <= pending.len());
                pending.drain(..used);
            }
            Err(e) => {
                assert!(
                    !out.iter().any(|i| matches!(i, Incoming::Close(..))),
                    "an error after a close frame: {e:?}"
                );
                // A clear error: ws's code, a message, and the close code it calls for.
                let code = e.code.expect("a protocol error has a code");
                assert!(code.starts_with("WS_ERR_"), "{code}");
                assert!(!e.message.is_empty());
                let close = e.close_code.expect("a protocol error has a close code");
                assert!(matches!(close, 1002 | 1007 | 1008 | 1009), "{close}");
                return (out, End::Fail(close));
            }
        }
        if out.iter().any(|i| matches!(i, Incoming::Close(..))) {
            return (out, End::Closed);
        }
    }
    (out, End::Eof)
}

/// Whole-message items as events.
fn events(items: Vec<Incoming>) -> Vec<Ev> {
    items
        .into_iter()
        .map(|i| match i {
            Incoming::Message { binary, frames } => {
                assert!(binary || frames.len() == 1, "text comes whole");
                if binary {
                    Ev::Binary(frames.concat())
                } else {
                    Ev::Text(frames.concat())
                }
            }
            Incoming::Ping(p) => Ev::Ping(p),
            Incoming::Pong(p) => Ev::Pong(p),
            Incoming::Close(c, r) => Ev::Close(c, r),
            Incoming::Chunk { .. } => panic!("a chunk outside stream mode"),
        })
        .collect()
}

/// Stream-mode items as events: the pieces of each binary message joined at its last one,
/// checking that each message has exactly one `first` (its first piece) and one `last`.
fn joined(items: Vec<Incoming>) -> Vec<Ev> {
    let mut out = Vec::new();
    let mut body: Option<Vec<u8>> = None;
    for i in items {
        match i {
            Incoming::Chunk { data, first, last } => {
                assert_eq!(first, body.is_none(), "`first` on exactly the first piece");
                let b = body.get_or_insert_with(Vec::new);
                b.extend_from_slice(&data);
                if last {
                    out.push(Ev::Binary(body.take().unwrap_or_default()));
                }
            }
            Incoming::Message { binary, .. } if binary => {
                panic!("a whole binary message in stream mode")
            }
            other => out.extend(events(vec![other])),
        }
    }
    out
}

/// An in-memory connection: reads return the scripted cuts, then the end of the stream;
/// writes (tungstenite's pongs and close replies) are dropped.
struct Script(VecDeque<Vec<u8>>);

impl Read for Script {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(front) = self.0.front_mut() else {
            return Ok(0);
        };
        let n = front.len().min(buf.len());
        buf[..n].copy_from_slice(&front[..n]);
        front.drain(..n);
        if front.is_empty() {
            self.0.pop_front();
        }
        Ok(n)
    }
}

impl Write for Script {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// tungstenite's client over `reads`, with our `max_payload` (see the module doc).
fn tungstenite(reads: &[&[u8]], max_payload: u64) -> (Vec<Ev>, End) {
    let max = usize::try_from(max_payload).expect("a limit that fits");
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .max_message_size(Some(max))
        .max_frame_size(Some(max.max(128 * 1024)));
    let script = Script(reads.iter().map(|r| r.to_vec()).collect());
    let mut ws = WebSocket::from_raw_socket(script, Role::Client, Some(config));
    let mut out = Vec::new();
    loop {
        let end = match ws.read() {
            Ok(Message::Text(t)) => {
                out.push(Ev::Text(t.as_bytes().to_vec()));
                continue;
            }
            Ok(Message::Binary(b)) => {
                out.push(Ev::Binary(b.to_vec()));
                continue;
            }
            Ok(Message::Ping(p)) => {
                out.push(Ev::Ping(p.to_vec()));
                continue;
            }
            Ok(Message::Pong(p)) => {
                out.push(Ev::Pong(p.to_vec()));
                continue;
            }
            Ok(Message::Close(None)) => {
                out.push(Ev::Close(None, Vec::new()));
                End::Closed
            }
            Ok(Message::Close(Some(c))) => {
                if c.code == CloseCode::Protocol && c.reason.as_str() == "Protocol violation" {
                    // Its answer to an invalid close code (no generated reason reads so).
                    End::Fail(1002)
                } else {
                    out.push(Ev::Close(Some(c.code.into()), c.reason.as_bytes().to_vec()));
                    End::Closed
                }
            }
            Ok(Message::Frame(_)) => unreachable!("read never returns raw frames"),
            Err(TError::Protocol(ProtocolError::ResetWithoutClosingHandshake)) => End::Eof,
            Err(TError::Protocol(_)) => End::Fail(1002),
            Err(TError::Capacity(_)) => End::Fail(1009),
            Err(TError::Utf8(_)) => End::Fail(1007),
            Err(other) => panic!("tungstenite: {other:?}"),
        };
        return (out, end);
    }
}

// ---------------------------------------------------------------------------------------
// The generator.

/// Bytes of a given length, cheap to make at 64 KiB.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Payload lengths: small ones, and the boundaries of the length encodings.
fn data_len() -> impl Strategy<Value = usize> {
    prop_oneof![
        6 => 0usize..40,
        1 => prop::sample::select(vec![124usize, 125, 126, 127, 65535, 65536]),
        1 => 128usize..400,
    ]
}

fn enc() -> impl Strategy<Value = Enc> {
    prop_oneof![8 => Just(Enc::Minimal), 1 => Just(Enc::Ext16), 1 => Just(Enc::Ext64)]
}

/// Text: mostly valid (with two-, three- and four-byte characters to split), sometimes not.
fn text_bytes() -> impl Strategy<Value = Vec<u8>> {
    let valid = prop_oneof![
        4 => "[a-z é€😀\u{10348}]{0,24}".prop_map(String::into_bytes),
        1 => data_len().prop_map(|n| vec![b'a'; n]),
    ];
    let bad = prop::sample::select(vec![
        &[0xff][..],
        &[0x80],
        &[0xc0, 0x80],
        &[0xc3, 0x28],
        &[0xe2, 0x82],
        &[0xe2, 0x28, 0xa1],
        &[0xed, 0xa0, 0x80],
        &[0xf4, 0x90, 0x80, 0x80],
        &[0xf0, 0x9f, 0x98],
    ]);
    let invalid = ("[a-zé€😀]{0,8}", bad, "[a-zé€😀]{0,8}").prop_map(|(a, bad, b)| {
        let mut v = a.into_bytes();
        v.extend_from_slice(bad);
        v.extend_from_slice(b.as_bytes());
        v
    });
    prop_oneof![4 => valid, 1 => invalid]
}

fn control_payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => prop::collection::vec(any::<u8>(), 0..8),
        1 => (0usize..=125, any::<u8>()).prop_map(|(n, s)| pattern(n, s)),
    ]
}

/// A ping or a pong, its length mostly written the shortest way.
fn ping_pong() -> impl Strategy<Value = Frame> {
    (prop::bool::ANY, control_payload(), enc()).prop_map(|(ping, payload, enc)| Frame {
        enc,
        ..Frame::new(true, if ping { 9 } else { 10 }, payload)
    })
}

/// Close frames: empty, valid, with a code ws refuses, of one byte, with a reason that is
/// not UTF-8, too long.
fn close() -> impl Strategy<Value = Frame> {
    let valid_code = prop_oneof![
        prop::sample::select(vec![
            1000u16, 1001, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014
        ]),
        3000u16..=4999,
    ];
    let invalid_code = prop::sample::select(vec![
        0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535,
    ]);
    let reason = prop_oneof![
        4 => "[a-z é€😀]{0,20}".prop_map(String::into_bytes),
        1 => Just(vec![0xc3, 0x28]),
        1 => Just(vec![b'o', b'k', 0xff]),
    ];
    let with = |code: u16, reason: Vec<u8>| {
        let mut p = code.to_be_bytes().to_vec();
        p.extend(reason);
        Frame::new(true, 8, p)
    };
    prop_oneof![
        1 => Just(Frame::new(true, 8, Vec::new())),
        6 => (valid_code, reason.clone()).prop_map(move |(c, r)| with(c, r)),
        2 => (invalid_code, reason).prop_map(move |(c, r)| with(c, r)),
        1 => any::<u8>().prop_map(|b| Frame::new(true, 8, vec![b])),
        1 => (1000u16..1001, 124usize..=130).prop_map(move |(c, n)| with(c, vec![b'r'; n])),
    ]
}

/// A data message over one or more frames, with control frames between its fragments;
/// sometimes left unfinished (whatever comes next is read as inside it).
fn message() -> impl Strategy<Value = Vec<Frame>> {
    let data = prop_oneof![
        (text_bytes(), Just(1u8)),
        (
            (data_len(), any::<u8>()).prop_map(|(n, s)| pattern(n, s)),
            Just(2u8)
        ),
    ];
    let between = prop::collection::vec(prop_oneof![4 => ping_pong(), 1 => close()], 0..2);
    (
        data,
        prop::collection::vec(any::<Index>(), 0..4),
        prop::collection::vec(between, 4),
        prop::collection::vec(enc(), 5),
        prop::bool::weighted(0.9),
    )
        .prop_map(|((bytes, opcode), cuts, between, encs, finished)| {
            let mut at: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
            at.sort_unstable();
            let mut pieces = Vec::new();
            let mut start = 0;
            for cut in at {
                pieces.push(bytes[start..cut].to_vec());
                start = cut;
            }
            pieces.push(bytes[start..].to_vec());
            let n = pieces.len();
            let mut frames = Vec::new();
            for (k, piece) in pieces.into_iter().enumerate() {
                if k > 0 {
                    frames.extend(between[k - 1].iter().cloned());
                }
                let op = if k == 0 { opcode } else { 0 };
                frames.push(Frame {
                    enc: encs[k],
                    ..Frame::new(k + 1 == n && finished, op, piece)
                });
            }
            frames
        })
}

/// Frames that break the protocol, or may (a continuation is fine inside a message).
fn bad() -> impl Strategy<Value = Vec<Frame>> {
    let small = prop::collection::vec(any::<u8>(), 0..6);
    let any_kind = prop::sample::select(vec![0u8, 1, 2, 8, 9, 10]);
    let huge = prop::sample::select(vec![
        1u64 << 31,
        1 << 32,
        100 * MIB + 1,
        (1 << 53) - 1,
        1 << 53,
        (1 << 63) - 1,
        1 << 63,
        u64::MAX,
    ]);
    prop_oneof![
        // RSV1, RSV2, RSV3 on any kind of frame.
        (1u8..8, any_kind.clone(), prop::bool::ANY, small.clone()).prop_map(
            |(rsv, op, fin, p)| vec![Frame {
                rsv,
                ..Frame::new(fin || op >= 8, op, p)
            }]
        ),
        // Reserved opcodes.
        (
            prop_oneof![3u8..=7, 11u8..=15],
            prop::bool::ANY,
            small.clone()
        )
            .prop_map(|(op, fin, p)| vec![Frame::new(fin, op, p)]),
        // A masked frame from the server.
        (any_kind.clone(), any::<[u8; 4]>(), small.clone()).prop_map(|(op, m, p)| vec![Frame {
            mask: Some(m),
            ..Frame::new(true, op, p)
        }]),
        // A continuation (without a message, unless one is open).
        (prop::bool::ANY, small.clone()).prop_map(|(fin, p)| vec![Frame::new(fin, 0, p)]),
        // A new data frame inside a fragmented message.
        (1u8..=2, 1u8..=2, small.clone())
            .prop_map(|(a, b, p)| vec![Frame::new(false, a, p.clone()), Frame::new(true, b, p),]),
        // A fragmented control frame.
        (8u8..=10, small.clone()).prop_map(|(op, p)| vec![Frame::new(false, op, p)]),
        // A control frame over 125 bytes, or under it in a longer encoding than needed.
        (8u8..=10, 126usize..=200).prop_map(|(op, n)| vec![Frame::new(true, op, pattern(n, 1))]),
        (8u8..=10, small.clone(), 1u8..=2).prop_map(|(op, p, e)| vec![Frame {
            enc: if e == 1 { Enc::Ext16 } else { Enc::Ext64 },
            ..Frame::new(true, op, if op == 8 { vec![0x03, 0xe8] } else { p })
        }]),
        // A length too large to take, on a data frame or any other.
        (any_kind.clone(), prop::bool::ANY, huge.clone()).prop_map(|(op, fin, n)| vec![Frame {
            claimed: Some(n),
            ..Frame::new(fin || op >= 8, op, Vec::new())
        }]),
        (1u8..8, any_kind, huge).prop_map(|(rsv, op, n)| vec![Frame {
            rsv,
            claimed: Some(n),
            ..Frame::new(true, op, Vec::new())
        }]),
    ]
}

fn stream() -> impl Strategy<Value = Stream> {
    let part = prop_oneof![
        8 => message(),
        3 => ping_pong().prop_map(|f| vec![f]),
        1 => close().prop_map(|f| vec![f]),
        3 => bad(),
    ];
    prop::collection::vec(part, 1..7)
        .prop_map(|parts| Stream::new(parts.into_iter().flatten().collect()))
}

/// `Limits::default()`, or a small `max_payload`.
fn limits() -> impl Strategy<Value = Limits> {
    prop_oneof![
        2 => Just(Limits::default()),
        1 => prop::sample::select(vec![1u64, 5, 125, 126, 1000, 65535, 65536]).prop_map(|p| {
            Limits {
                max_payload: p,
                ..Limits::default()
            }
        }),
    ]
}

// ---------------------------------------------------------------------------------------
// The properties.

/// Both readers over `stream` cut by `reads`; asserts that they agree.
fn agree(stream: &Stream, reads: &Reads, limits: Limits) -> Result<(), TestCaseError> {
    let ours_wire = wire(&stream.frames);
    let (items, our_end) = ours(&reads.split(&ours_wire), limits);
    let our_events = events(items);
    let ref_wire = wire(&stream.reference);
    let (mut their_events, their_end) = tungstenite(&reads.split(&ref_wire), limits.max_payload);
    if stream.first_close_code == Some(1014) {
        // Difference 4: sent to tungstenite as 1013.
        for e in their_events.iter_mut() {
            if let Ev::Close(c @ Some(1013), _) = e {
                *c = Some(1014);
            }
        }
    }
    prop_assert_eq!(&our_events, &their_events);
    prop_assert_eq!(our_end, their_end);
    Ok(())
}

proptest! {
    #![proptest_config(cases(DIFFERENTIAL_CASES))]

    /// Our decoder and tungstenite's agree on every generated stream, however it is read.
    #[test]
    fn decoder_agrees_with_tungstenite(stream in stream(), reads in reads(), limits in limits()) {
        agree(&stream, &reads, limits)?;
    }
}

proptest! {
    #![proptest_config(cases(STREAMED_CASES))]

    /// In stream mode, binary messages come as pieces that join into the whole-message bytes,
    /// one `first` and one `last` each, with everything else as in whole-message mode.
    #[test]
    fn streamed_binary_messages_join_into_whole_ones(
        stream in stream(),
        reads in reads(),
        whole_reads in reads(),
        limits in limits(),
    ) {
        let wire = wire(&stream.frames);
        let (items, whole_end) = ours(&whole_reads.split(&wire), limits);
        let whole = events(items);
        let streamed_limits = Limits { stream_binary: true, ..limits };
        let (items, streamed_end) = ours(&reads.split(&wire), streamed_limits);
        prop_assert_eq!(joined(items), whole);
        prop_assert_eq!(streamed_end, whole_end);
    }
}

// ---------------------------------------------------------------------------------------
// The differences, one by one: what tungstenite does, and what ws (and so our decoder) does.

fn both(frames: &[Frame]) -> ((Vec<Ev>, End), (Vec<Ev>, End)) {
    let w = wire(frames);
    let (items, end) = ours(&[&w], Limits::default());
    (
        (events(items), end),
        tungstenite(&[&w], Limits::default().max_payload),
    )
}

#[test]
fn where_tungstenite_differs_we_follow_ws() {
    let ping = Frame::new(true, 9, b"p".to_vec());

    // 1. Invalid UTF-8 in the first fragment of a text message, a ping before the last:
    //    ws delivers the ping and fails when the message is whole.
    let frames = [
        Frame::new(false, 1, vec![0xff]),
        ping.clone(),
        Frame::new(true, 0, b"x".to_vec()),
    ];
    let (ours, theirs) = both(&frames);
    assert_eq!(ours, (vec![Ev::Ping(b"p".to_vec())], End::Fail(1007)));
    assert_eq!(theirs, (vec![], End::Fail(1007)));
    //    ... and a message never finished is no error for ws.
    let (ours, theirs) = both(&frames[..2]);
    assert_eq!(ours, (vec![Ev::Ping(b"p".to_vec())], End::Eof));
    assert_eq!(theirs.1, End::Fail(1007));

    // 2. RSV2 on a frame with a huge length: a protocol error for ws on its first byte;
    //    tungstenite applies its frame limit first.
    let frames = [Frame {
        rsv: 0b010,
        claimed: Some(1 << 40),
        ..Frame::new(true, 2, Vec::new())
    }];
    let (ours, theirs) = both(&frames);
    assert_eq!(ours.1, End::Fail(1002));
    assert_eq!(theirs.1, End::Fail(1009));

    // 3. A ping of 1 byte with a 16-bit length: ws refuses the length field (126).
    let frames = [Frame {
        enc: Enc::Ext16,
        ..Frame::new(true, 9, b"p".to_vec())
    }];
    let (ours, theirs) = both(&frames);
    assert_eq!(ours, (vec![], End::Fail(1002)));
    assert_eq!(theirs.0, vec![Ev::Ping(b"p".to_vec())]);

    // 4. Close code 1014: valid for ws (`isValidStatusCode`), not for tungstenite.
    let frames = [Frame::new(true, 8, vec![0x03, 0xf6])];
    let (ours, theirs) = both(&frames);
    assert_eq!(ours, (vec![Ev::Close(Some(1014), Vec::new())], End::Closed));
    // (tungstenite answers it with a close frame of its own, 1002 "Protocol violation",
    // which `tungstenite()` reads as a failure.)
    assert_eq!(theirs, (vec![], End::Fail(1002)));
    //    An invalid code with a reason that is not UTF-8: ws reports the code.
    let frames = [Frame::new(true, 8, vec![0x03, 0xed, 0xff])];
    let (ours, theirs) = both(&frames);
    assert_eq!(ours, (vec![], End::Fail(1002)));
    assert_eq!(theirs, (vec![], End::Fail(1007)));
}

/// The generator reaches what it is meant to: every kind of outcome, at every length
/// boundary (a generator that lost a branch would pass the properties vacuously).
#[test]
fn the_generator_covers_the_outcomes() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = stream();
    let mut ends = std::collections::BTreeSet::new();
    let mut lengths = std::collections::BTreeSet::new();
    for _ in 0..3000 {
        let s = strategy.new_tree(&mut runner).expect("a stream").current();
        for f in &s.frames {
            lengths.insert(f.payload.len());
        }
        let w = wire(&s.frames);
        ends.insert(format!("{:?}", ours(&[&w], Limits::default()).1));
    }
    for end in ["Eof", "Closed", "Fail(1002)", "Fail(1007)", "Fail(1009)"] {
        assert!(ends.contains(end), "no stream ends in {end}: {ends:?}");
    }
    for len in [0, 125, 126, 65535, 65536] {
        assert!(lengths.contains(&len), "no payload of {len} bytes");
    }
}
