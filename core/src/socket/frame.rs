//! WebSocket framing for the client role (RFC 6455), with ws 8's validation rules and error
//! catalogue: the decoder reassembles messages and reports violations with ws's `WS_ERR_*`
//! codes, messages and close codes; the encoder masks every frame.

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

/// A protocol violation by the peer, as ws reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    /// `WS_ERR_*`.
    pub code: &'static str,
    /// The message, e.g. `Invalid WebSocket frame: invalid opcode 5`.
    pub message: String,
    /// The close code the local side sends (1002, 1007, 1008, 1009).
    pub close_code: u16,
    /// `RangeError` (true) or `Error` (false), as ws throws it.
    pub range_error: bool,
}

fn frame_error(code: &'static str, message: impl Into<String>, close_code: u16) -> FrameError {
    FrameError {
        code,
        message: format!("Invalid WebSocket frame: {}", message.into()),
        close_code,
        range_error: true,
    }
}

/// True for the close codes ws accepts on the wire and in `close()`.
pub fn is_valid_close_code(code: u16) -> bool {
    ((1000..=1014).contains(&code) && !matches!(code, 1004..=1006)) || (3000..=4999).contains(&code)
}

/// Something the decoder produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A whole data message. `frames` holds the payload of each frame as received.
    Message {
        /// True for binary, false for text (already checked as UTF-8).
        binary: bool,
        /// Frame payloads in order; a single entry for an unfragmented message.
        frames: Vec<Vec<u8>>,
    },
    /// A ping and its payload.
    Ping(Vec<u8>),
    /// A pong and its payload.
    Pong(Vec<u8>),
    /// A close frame: the code (`None` for an empty payload) and the reason bytes.
    Close(Option<u16>, Vec<u8>),
}

#[derive(Debug, Clone, Copy)]
struct Header {
    fin: bool,
    opcode: u8,
    len: u64,
}

/// Limits of the decoder.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest message (sum of its frames), 0 for none. ws default: 100 MiB.
    pub max_payload: u64,
    /// Most frames in one message, 0 for none. ws default: 16384.
    pub max_fragments: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_payload: 100 * 1024 * 1024,
            max_fragments: 16384,
        }
    }
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
    frames: Vec<Vec<u8>>,
    /// Payload bytes so far.
    total: u64,
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

    /// Parses a frame header at the start of `buf`; `Ok(None)` when more bytes are needed.
    fn parse_header(&self, buf: &[u8]) -> Result<Option<(Header, usize)>, FrameError> {
        if buf.len() < 2 {
            return Ok(None);
        }
        let (b0, b1) = (buf[0], buf[1]);
        let len7 = b1 & 0x7f;
        let ext = match len7 {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        if buf.len() < 2 + ext {
            return Ok(None);
        }
        if b0 & 0x30 != 0 {
            return Err(frame_error(
                "WS_ERR_UNEXPECTED_RSV_2_3",
                "RSV2 and RSV3 must be clear",
                1002,
            ));
        }
        if b0 & 0x40 != 0 {
            return Err(frame_error(
                "WS_ERR_UNEXPECTED_RSV_1",
                "RSV1 must be clear",
                1002,
            ));
        }
        let fin = b0 & 0x80 != 0;
        let opcode = b0 & 0x0f;
        match opcode {
            OP_CONTINUATION if self.message.is_none() => {
                return Err(frame_error(
                    "WS_ERR_INVALID_OPCODE",
                    "invalid opcode 0",
                    1002,
                ))
            }
            OP_TEXT | OP_BINARY if self.message.is_some() => {
                return Err(frame_error(
                    "WS_ERR_INVALID_OPCODE",
                    format!("invalid opcode {opcode}"),
                    1002,
                ))
            }
            OP_CONTINUATION | OP_TEXT | OP_BINARY => {}
            OP_CLOSE | OP_PING | OP_PONG => {
                if !fin {
                    return Err(frame_error("WS_ERR_EXPECTED_FIN", "FIN must be set", 1002));
                }
                if len7 > 125 {
                    return Err(frame_error(
                        "WS_ERR_INVALID_CONTROL_PAYLOAD_LENGTH",
                        format!("invalid payload length {len7}"),
                        1002,
                    ));
                }
            }
            _ => {
                return Err(frame_error(
                    "WS_ERR_INVALID_OPCODE",
                    format!("invalid opcode {opcode}"),
                    1002,
                ))
            }
        }
        if b1 & 0x80 != 0 {
            return Err(frame_error(
                "WS_ERR_UNEXPECTED_MASK",
                "MASK must be clear",
                1002,
            ));
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
        if len > MAX_SAFE_LENGTH {
            return Err(FrameError {
                code: "WS_ERR_UNSUPPORTED_DATA_PAYLOAD_LENGTH",
                message: "Unsupported WebSocket frame: payload length > 2^53 - 1".into(),
                close_code: 1009,
                range_error: true,
            });
        }
        if opcode < OP_CLOSE {
            let total = self.message.as_ref().map_or(0, |m| m.total) + len;
            if self.limits.max_payload > 0 && total > self.limits.max_payload {
                return Err(FrameError {
                    code: "WS_ERR_UNSUPPORTED_MESSAGE_LENGTH",
                    message: "Max payload size exceeded".into(),
                    close_code: 1009,
                    range_error: true,
                });
            }
        }
        Ok(Some((Header { fin, opcode, len }, 2 + ext)))
    }

    /// Handles a complete frame.
    fn complete(
        &mut self,
        h: Header,
        payload: Vec<u8>,
        out: &mut Vec<Incoming>,
    ) -> Result<(), FrameError> {
        match h.opcode {
            OP_PING => out.push(Incoming::Ping(payload)),
            OP_PONG => out.push(Incoming::Pong(payload)),
            OP_CLOSE => {
                if payload.is_empty() {
                    out.push(Incoming::Close(None, Vec::new()));
                } else if payload.len() == 1 {
                    return Err(frame_error(
                        "WS_ERR_INVALID_CONTROL_PAYLOAD_LENGTH",
                        "invalid payload length 1",
                        1002,
                    ));
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
                let (opcode, mut frames, total) = match boxed.as_deref_mut() {
                    Some(m) => (m.opcode, std::mem::take(&mut m.frames), m.total),
                    None => (h.opcode, Vec::new(), 0),
                };
                frames.push(payload);
                let total = total + h.len;
                if self.limits.max_fragments > 0 && frames.len() > self.limits.max_fragments {
                    return Err(FrameError {
                        code: "WS_ERR_TOO_MANY_BUFFERED_PARTS",
                        message: "Too many message fragments".into(),
                        close_code: 1008,
                        range_error: true,
                    });
                }
                if !h.fin {
                    let mut m = boxed.unwrap_or_default();
                    *m = Assembly {
                        opcode,
                        frames,
                        total,
                    };
                    self.message = Some(m);
                    return Ok(());
                }
                if opcode == OP_TEXT {
                    // Text is validated whole and handed on as one buffer.
                    let data = if frames.len() == 1 {
                        frames.pop().unwrap_or_default()
                    } else {
                        frames.concat()
                    };
                    if std::str::from_utf8(&data).is_err() {
                        return Err(utf8_error());
                    }
                    out.push(Incoming::Message {
                        binary: false,
                        frames: vec![data],
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
    /// the rest (an incomplete header) must be passed again with more data.
    pub fn decode(&mut self, buf: &[u8], out: &mut Vec<Incoming>) -> Result<usize, FrameError> {
        let mut pos = 0;
        loop {
            let h = match self.header {
                Some(h) => h,
                None => match self.parse_header(&buf[pos..])? {
                    None => return Ok(pos),
                    Some((h, n)) => {
                        pos += n;
                        self.header = Some(h);
                        self.payload =
                            Vec::with_capacity(usize::try_from(h.len.min(1 << 20)).unwrap_or(0));
                        h
                    }
                },
            };
            let want = usize::try_from(h.len).unwrap_or(usize::MAX) - self.payload.len();
            let take = want.min(buf.len() - pos);
            self.payload.extend_from_slice(&buf[pos..pos + take]);
            pos += take;
            if take < want {
                return Ok(pos);
            }
            self.header = None;
            let payload = std::mem::take(&mut self.payload);
            self.complete(h, payload, out)?;
        }
    }
}

fn utf8_error() -> FrameError {
    FrameError {
        code: "WS_ERR_INVALID_UTF8",
        message: "Invalid WebSocket frame: invalid UTF-8 sequence".into(),
        close_code: 1007,
        range_error: false,
    }
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
    out.reserve(framed_len(payload.len()));
    out.push(if fin { 0x80 } else { 0 } | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len < 65536 {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    extend_masked(out, payload, mask, 0);
}

/// Appends `data` XORed with `mask` (starting `offset` bytes into the mask) to `out`, in one
/// pass: copying and masking separately would read the payload twice.
pub fn extend_masked(out: &mut Vec<u8>, data: &[u8], mask: [u8; 4], offset: usize) {
    let mut m = [0u8; 8];
    for (i, b) in m.iter_mut().enumerate() {
        *b = mask[(offset + i) % 4];
    }
    let word = u64::from_ne_bytes(m);
    out.reserve(data.len());
    let mut chunks = data.chunks_exact(8);
    for chunk in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        out.extend_from_slice(&(u64::from_ne_bytes(w) ^ word).to_ne_bytes());
    }
    for (i, b) in chunks.remainder().iter().enumerate() {
        out.push(b ^ m[i]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
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

    fn decode_all(wire: &[u8], limits: Limits) -> Result<Vec<Incoming>, FrameError> {
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
                    frames: vec![b"abcd".to_vec()]
                },
                Incoming::Message {
                    binary: true,
                    frames: vec![vec![4], vec![5], vec![6]]
                },
            ]
        );
        assert_eq!(
            out[..4],
            [
                Incoming::Ping(b"p".to_vec()),
                Incoming::Message {
                    binary: false,
                    frames: vec!["héllo world".as_bytes().to_vec()]
                },
                Incoming::Message {
                    binary: true,
                    frames: vec![vec![1, 2], vec![3]]
                },
                Incoming::Message {
                    binary: true,
                    frames: vec![vec![7u8; 70_000]]
                },
            ]
        );
        assert_eq!(out[7], Incoming::Close(Some(1000), b"ok".to_vec()));
        assert_eq!(out.len(), 8);
    }

    #[test]
    fn reports_violations_like_ws() {
        let case = |wire: Vec<u8>, limits: Limits| decode_all(&wire, limits).unwrap_err();
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
                    max_fragments: 2
                }
            )
            .code,
            "WS_ERR_TOO_MANY_BUFFERED_PARTS"
        );
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
