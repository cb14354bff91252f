//! Reads a response as Node.js's `http.ServerResponse` writes it to its socket (HTTP/1.1:
//! interim 1xx heads, the head, then the body, raw or chunked) and gives back what the relay
//! needs: the status, the reason, the headers and the body's bytes.
//!
//! `RelayedServer` hands JavaScript real `http.ServerResponse` objects (frameworks replace
//! their prototypes, so nothing else survives an Express app), over a socket whose writes
//! come here. Node produced the bytes, but they are still checked as if they came from the
//! network: nothing here can panic, and a malformed stream is an error.

use crate::http_head::{self, head_text};
use crate::socket::error::SocketError;

/// Largest response head accepted (the service allows 32 KiB of headers on the control
/// channel; a head this large goes over a rendezvous).
const MAX_HEAD: usize = 256 * 1024;

/// Headers that describe the connection or the body's framing between two HTTP peers, not
/// the response: the relay frames the body itself (RFC 7230 §6.1, and the protocol
/// article's "RFC7230 defined headers MUST NOT be used").
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
];

/// A response's head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The status code.
    pub status: u16,
    /// The reason phrase.
    pub reason: String,
    /// The headers, in order, names as written, without hop-by-hop and framing headers.
    pub headers: Vec<(String, String)>,
}

/// What the parser made of some bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// The head (once).
    Head(Head),
    /// Body bytes.
    Body(Vec<u8>),
}

/// Where the parser is.
#[derive(Debug)]
enum State {
    /// Reading a head (interim 1xx heads are skipped).
    Head,
    /// The body runs to the end of the response.
    Raw,
    /// A chunked body: the size line of the next chunk.
    ChunkSize,
    /// Inside a chunk, this many bytes to go.
    ChunkData(u64),
    /// The CRLF after a chunk's data.
    ChunkEnd,
    /// After the last chunk: trailer lines until an empty one.
    Trailers,
    /// Nothing more may come.
    Done,
}

/// An incremental reader of one response.
#[derive(Debug)]
pub struct ResponseParser {
    state: State,
    /// Bytes not consumed yet (a partial head or chunk-size line).
    pending: Vec<u8>,
}

impl Default for ResponseParser {
    fn default() -> Self {
        ResponseParser {
            state: State::Head,
            pending: Vec::new(),
        }
    }
}

fn malformed(what: &str) -> SocketError {
    SocketError::coded(
        format!("the response cannot be relayed: {what}"),
        "ERR_HTTP_INVALID_RESPONSE",
    )
}

/// Whether a header names the body's framing or the connection (see [`HOP_BY_HOP`]), or is
/// listed in `Connection` (`connection_names`, lowercase).
fn is_hop_by_hop(name: &str, connection_names: &[String]) -> bool {
    HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
        || connection_names
            .iter()
            .any(|c| name.eq_ignore_ascii_case(c))
}

impl ResponseParser {
    /// Takes the next bytes Node wrote; appends what they complete to `out`.
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<Part>) -> Result<(), SocketError> {
        let mut input: &[u8] = data;
        let owned;
        if !self.pending.is_empty() {
            self.pending.extend_from_slice(data);
            owned = std::mem::take(&mut self.pending);
            input = &owned;
        }
        let mut pos = 0;
        while pos < input.len() {
            let rest = &input[pos..];
            let used = match self.state {
                State::Head => self.head(rest, out)?,
                State::Raw => {
                    out.push(Part::Body(rest.to_vec()));
                    rest.len()
                }
                State::ChunkSize => self.chunk_size(rest)?,
                State::ChunkData(left) => {
                    let take = usize::try_from(left).map_or(rest.len(), |l| l.min(rest.len()));
                    if take > 0 {
                        out.push(Part::Body(rest[..take].to_vec()));
                    }
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::ChunkEnd
                    } else {
                        State::ChunkData(left)
                    };
                    take
                }
                State::ChunkEnd => {
                    if rest.starts_with(b"\r\n") {
                        self.state = State::ChunkSize;
                        2
                    } else if rest == b"\r" {
                        0
                    } else {
                        return Err(malformed("no CRLF after a chunk"));
                    }
                }
                State::Trailers => match line(rest) {
                    None => 0,
                    Some((0, n)) => {
                        self.state = State::Done;
                        n
                    }
                    // Trailers have nowhere to go in the relay's response: dropped.
                    Some((_, n)) => n,
                },
                State::Done => return Err(malformed("bytes after the end of the body")),
            };
            if used == 0 {
                // An incomplete head or line: keep it for the next bytes.
                if rest.len() > MAX_HEAD {
                    return Err(malformed("the head is too large"));
                }
                self.pending = rest.to_vec();
                break;
            }
            pos += used;
        }
        Ok(())
    }

    /// Whether the body ended by its own framing (the last chunk), rather than by the end
    /// of the response.
    pub fn complete(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Parses a head at the start of `buf`; returns the bytes it took (0: incomplete).
    fn head(&mut self, buf: &[u8], out: &mut Vec<Part>) -> Result<usize, SocketError> {
        let parsed = crate::http_head::parse_response(buf, |resp, len| {
            let status = resp.code.unwrap_or(0);
            if (100..200).contains(&status) && status != 101 {
                // An interim response (100 Continue, 103 Early Hints): the relay has no way
                // to pass one on, and the final head follows.
                return Ok((len, None));
            }
            if !(200..1000).contains(&status) {
                return Err(malformed(&format!("status {status}")));
            }
            // One reading for the whole head, as Node wrote it in one encoding.
            let utf8 = std::str::from_utf8(&buf[..len]).is_ok();
            Ok((
                len,
                Some(final_head(resp, status, utf8, raw_reason(buf, utf8))),
            ))
        });
        let (len, head) = match parsed {
            Ok(Some(head)) => head?,
            Ok(None) => return Ok(0),
            Err(_) => return Err(malformed("not an HTTP/1.1 head")),
        };
        if let Some((head, chunked)) = head {
            out.push(Part::Head(head));
            self.state = if chunked {
                State::ChunkSize
            } else {
                State::Raw
            };
        }
        Ok(len)
    }

    /// Parses a chunk-size line; returns the bytes it took (0: incomplete).
    fn chunk_size(&mut self, buf: &[u8]) -> Result<usize, SocketError> {
        let Some((end, n)) = line(buf) else {
            if buf.len() > 1024 {
                return Err(malformed("a chunk size line is too long"));
            }
            return Ok(0);
        };
        // Text, as before the shared reading (which lets an extension's obs-text through).
        std::str::from_utf8(&buf[..end]).map_err(|_| malformed("a chunk size"))?;
        let size = http_head::chunk_size(&buf[..end]).ok_or_else(|| malformed("a chunk size"))?;
        self.state = if size == 0 {
            State::Trailers
        } else {
            State::ChunkData(size)
        };
        Ok(n)
    }
}

/// The reason phrase of the status line at the start of `buf` (see [`crate::http_head::head_text`]): httparse
/// gives an empty one when it is not UTF-8.
fn raw_reason(buf: &[u8], utf8: bool) -> String {
    let line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    // `HTTP/1.1 200 OK`: what follows the second space.
    let mut parts = line.splitn(3, |&b| b == b' ');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(_), Some(_), Some(reason)) => head_text(reason, utf8),
        _ => String::new(),
    }
}

/// A final response's head without its hop-by-hop headers (the relay frames the body
/// itself), and whether its body is chunked.
fn final_head(
    resp: &httparse::Response<'_, '_>,
    status: u16,
    utf8: bool,
    reason: String,
) -> (Head, bool) {
    let mut connection_names = Vec::new();
    let mut chunked = false;
    for h in resp.headers.iter() {
        let value = head_text(h.value, utf8);
        if h.name.eq_ignore_ascii_case("connection") {
            connection_names.extend(value.split(',').map(|v| v.trim().to_ascii_lowercase()));
        }
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value
                .split(',')
                .next_back()
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("chunked"));
        }
    }
    let headers = resp
        .headers
        .iter()
        .filter(|h| !is_hop_by_hop(h.name, &connection_names))
        .map(|h| (h.name.to_owned(), head_text(h.value, utf8)))
        .collect();
    let head = Head {
        status,
        reason,
        headers,
    };
    (head, chunked)
}

/// The first line of `buf`: (its length without CRLF, its length with it); `None` if `buf`
/// holds no whole line.
fn line(buf: &[u8]) -> Option<(usize, usize)> {
    buf.windows(2)
        .position(|w| w == b"\r\n")
        .map(|end| (end, end + 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_ascii_head_text_reads_back_as_the_characters_node_was_given() {
        // Latin-1, as Node writes most heads; UTF-8, as with a string body in one write.
        for wire in [
            &b"HTTP/1.1 200 D\xe9j\xe0 vu\r\nX-Name: caf\xe9\r\nContent-Length: 0\r\n\r\n"[..],
            "HTTP/1.1 200 Déjà vu\r\nX-Name: café\r\nContent-Length: 0\r\n\r\n".as_bytes(),
        ] {
            let (parts, _) = parse_split(wire, wire.len()).unwrap();
            let (head, _) = head_and_body(parts);
            assert_eq!(head.reason, "Déjà vu");
            assert!(head
                .headers
                .contains(&("X-Name".to_owned(), "café".to_owned())));
        }
        assert_eq!(raw_reason(b"HTTP/1.1 204\r\n\r\n", true), "");
        assert_eq!(raw_reason(b"HTTP/1.1 200 OK\n", true), "OK");
        // One reading per head: a Latin-1 head with one field that would read as UTF-8.
        let wire = b"HTTP/1.1 200 OK\r\nX-A: \xc3\xa9\r\nX-B: caf\xe9\r\n\r\n";
        let (parts, _) = parse_split(wire, wire.len()).unwrap();
        let (head, _) = head_and_body(parts);
        assert!(head
            .headers
            .contains(&("X-A".to_owned(), "\u{c3}\u{a9}".to_owned())));
    }

    fn parse_split(wire: &[u8], split: usize) -> Result<(Vec<Part>, bool), SocketError> {
        let mut p = ResponseParser::default();
        let mut out = Vec::new();
        for piece in wire.chunks(split) {
            p.feed(piece, &mut out)?;
        }
        Ok((out, p.complete()))
    }

    fn head_and_body(parts: Vec<Part>) -> (Head, Vec<u8>) {
        let mut head = None;
        let mut body = Vec::new();
        for p in parts {
            match p {
                Part::Head(h) => {
                    assert!(head.is_none(), "one head");
                    head = Some(h);
                }
                Part::Body(b) => body.extend(b),
            }
        }
        (head.expect("a head"), body)
    }

    #[test]
    fn raw_and_chunked_bodies_whatever_the_split() {
        let raw = b"HTTP/1.1 201 Created\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nConnection: keep-alive\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\nhello";
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close, X-Gone\r\nX-Gone: 1\r\nDate: x\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: t\r\n\r\n";
        for split in [1, 2, 3, 7, 100] {
            let (parts, done) = parse_split(raw, split).unwrap();
            assert!(!done);
            let (head, body) = head_and_body(parts);
            assert_eq!((head.status, head.reason.as_str()), (201, "Created"));
            assert_eq!(
                head.headers,
                vec![
                    ("Content-Type".into(), "text/plain".into()),
                    ("Set-Cookie".into(), "a=1".into()),
                    ("Set-Cookie".into(), "b=2".into()),
                ]
            );
            assert_eq!(body, b"hello");
            let (parts, done) = parse_split(chunked, split).unwrap();
            assert!(done, "split {split}");
            let (head, body) = head_and_body(parts);
            assert_eq!(head.headers, vec![("Date".into(), "x".into())]);
            assert_eq!(body, b"hello world");
        }
    }

    #[test]
    fn interim_heads_are_skipped() {
        let wire = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
        let (parts, _) = parse_split(wire, 5).unwrap();
        let (head, body) = head_and_body(parts);
        assert_eq!(head.status, 204);
        assert!(body.is_empty());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for wire in [
            &b"garbage\r\n\r\n"[..],
            b"HTTP/1.1 99 X\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nmore",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\n",
            // Read as the relay reads a request's (http_head::chunk_size): no sign, no blanks.
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n 5\r\nhello\r\n",
        ] {
            let err = parse_split(wire, 3).unwrap_err();
            assert_eq!(err.code, Some("ERR_HTTP_INVALID_RESPONSE"), "{wire:?}");
        }
        let huge = vec![b'a'; MAX_HEAD + 10];
        let mut p = ResponseParser::default();
        assert!(p.feed(b"HTTP/1.1 200 OK\r\nX: ", &mut Vec::new()).is_ok());
        assert!(p.feed(&huge, &mut Vec::new()).is_err());
    }
}
