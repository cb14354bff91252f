//! Bodies on the sender's side of HTTP relaying: reading request heads and bodies as they
//! arrive (`Content-Length` or chunked, piece by piece, never a whole large body in memory),
//! and writing a response body in the framing the relay chose (`Content-Length`, chunked, or
//! until the connection closes).
//!
//! Every read here is cancel-safe: bytes are kept in [`SenderReader::buf`] as soon as a read
//! completes and parser state only changes together with the piece it returns, so the relay
//! can stop waiting on the sender (to look at the listener) and come back without loss.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::http_head;
use crate::relay::http::{self, RequestHead};
use crate::relay::http_message::Framing;
use crate::socket::error::SocketError;

/// How much the relay reads from a sender at a time (and so the largest body piece).
pub const PIECE_BYTES: usize = 64 * 1024;

/// The longest chunk-size line or trailer line accepted.
const MAX_LINE: usize = 4 * 1024;

/// The most trailer bytes accepted (they are read and dropped: the protocol has no
/// trailers).
const MAX_TRAILERS: usize = 16 * 1024;

/// How long, at most, a closing connection reads on and drops what its sender still sends
/// (see [`SenderReader::linger`]).
const LINGER_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// How long a lingering connection waits for the sender's next bytes before it closes.
const LINGER_PAUSE: std::time::Duration = std::time::Duration::from_secs(2);

/// The read side of a sender's connection, with the bytes read but not used yet.
pub struct SenderReader<R> {
    io: R,
    /// Bytes read and not consumed: the start of a body piece or of the next request.
    pub buf: Vec<u8>,
}

impl<R: AsyncRead + Unpin> SenderReader<R> {
    /// A reader over `io` that starts with `initial` (bytes that came after a head).
    pub fn new(io: R, initial: Vec<u8>) -> Self {
        SenderReader { io, buf: initial }
    }

    /// The stream and the bytes read from it but not used yet (a connection handed on).
    pub fn into_parts(self) -> (R, Vec<u8>) {
        (self.io, self.buf)
    }

    /// Reads the next request head (see [`http::read_head_into`]).
    pub async fn read_head(&mut self, max_bytes: usize) -> Result<RequestHead, http::HeadError> {
        http::read_head_into(&mut self.io, &mut self.buf, max_bytes).await
    }

    /// Reads more bytes into `buf`. `Ok(0)` at the end of the stream.
    async fn fill(&mut self) -> std::io::Result<usize> {
        self.buf.reserve(PIECE_BYTES);
        self.io.read_buf(&mut self.buf).await
    }

    /// Reads and drops what the sender still sends, until it closes its side, fails, pauses
    /// for [`LINGER_PAUSE`], or [`LINGER_TIME`] has passed; after the relay answered and
    /// shut its side down. Closing a socket with unread bytes makes the kernel reset the
    /// connection, and a sender still uploading a body (a request refused before its body
    /// was read: a wrong key, an unknown Hybrid Connection) would see that reset (`EPIPE`)
    /// instead of the answer: the lingering close of HTTP servers.
    pub async fn linger(&mut self) {
        let _ = tokio::time::timeout(LINGER_TIME, async {
            loop {
                self.buf.clear();
                match tokio::time::timeout(LINGER_PAUSE, self.fill()).await {
                    Ok(Ok(n)) if n > 0 => {}
                    _ => return,
                }
            }
        })
        .await;
        self.buf = Vec::new();
    }

    /// Waits until the sender closes its side (or the connection fails), keeping what it
    /// sends meanwhile (a pipelined request) in `buf`, up to `max_buffered` bytes; beyond
    /// that it stops reading and waits for ever (the sender is then held by TCP).
    pub async fn closed(&mut self, max_buffered: usize) {
        loop {
            if self.buf.len() >= max_buffered {
                return std::future::pending().await;
            }
            match self.fill().await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }
}

/// How a request's body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body.
    None,
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// The framing of `head`'s body (RFC 7230 3.3.3). Ambiguous framing (both headers, several
/// lengths) is refused with 400 rather than guessed, as request smuggling defences do;
/// codings other than a lone `chunked` with 501, because the listener could not be told
/// about them.
pub fn body_framing(head: &RequestHead) -> Result<BodyFraming, SocketError> {
    let header_values = |name: &str| -> Vec<&str> {
        head.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .collect()
    };
    let codings = header_values("Transfer-Encoding");
    let lengths = header_values("Content-Length");
    if !codings.is_empty() {
        if !lengths.is_empty() {
            return Err(SocketError::status(
                400,
                "Bad Request: both Content-Length and Transfer-Encoding",
            ));
        }
        return match codings.as_slice() {
            [c] if c.eq_ignore_ascii_case("chunked") => Ok(BodyFraming::Chunked),
            _ => Err(SocketError::status(
                501,
                "Not Implemented: the only transfer coding relayed is chunked",
            )),
        };
    }
    let Some(first) = lengths.first() else {
        return Ok(BodyFraming::None);
    };
    let valid = |v: &str| !v.is_empty() && v.len() <= 19 && v.bytes().all(|b| b.is_ascii_digit());
    if !lengths.iter().all(|v| *v == *first && valid(v)) {
        return Err(SocketError::status(
            400,
            "Bad Request: Content-Length is not valid",
        ));
    }
    match first.parse::<u64>() {
        Ok(0) => Ok(BodyFraming::None),
        Ok(n) => Ok(BodyFraming::Length(n)),
        Err(_) => Err(SocketError::status(
            400,
            "Bad Request: Content-Length is not valid",
        )),
    }
}

/// Why a request body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// The sender closed or reset the connection before the body ended.
    Gone,
    /// The chunked framing is broken.
    Malformed(&'static str),
}

/// Where a chunked body's parser is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailers(usize),
}

/// Reads one request body piece by piece.
#[derive(Debug)]
pub struct BodyReader {
    framing: BodyFraming,
    /// Bytes left of a `Content-Length` body.
    remaining: u64,
    chunk: Chunk,
    done: bool,
}

/// Takes the line at the start of `buf` (without its CRLF), if whole. Chunked framing ends
/// its lines with CRLF (RFC 9112 7.1): a bare LF, or a CR inside a line, is refused, as
/// strict parsers refuse it; a proxy in front that read such framing otherwise would see
/// other requests than the relay does (request smuggling).
fn take_line(buf: &mut Vec<u8>) -> Result<Option<Vec<u8>>, BodyError> {
    match buf.iter().position(|&b| b == b'\n') {
        Some(i) => {
            let mut line: Vec<u8> = buf.drain(..=i).collect();
            line.pop();
            if line.pop() != Some(b'\r') || line.contains(&b'\r') {
                return Err(BodyError::Malformed("a chunk line does not end with CRLF"));
            }
            Ok(Some(line))
        }
        None if buf.len() > MAX_LINE => Err(BodyError::Malformed("a chunk line is too long")),
        None => Ok(None),
    }
}

impl BodyReader {
    /// A reader for a body framed as `framing`.
    pub fn new(framing: BodyFraming) -> Self {
        BodyReader {
            framing,
            remaining: match framing {
                BodyFraming::Length(n) => n,
                _ => 0,
            },
            chunk: Chunk::Size,
            done: framing == BodyFraming::None,
        }
    }

    /// True once the whole body has been read.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Makes what progress `buf` allows without reading: a piece of body (at most `max`
    /// bytes), `Some(empty)` at the end, `None` if more bytes are needed.
    fn step(&mut self, buf: &mut Vec<u8>, max: usize) -> Result<Option<Vec<u8>>, BodyError> {
        loop {
            if self.done {
                return Ok(Some(Vec::new()));
            }
            match (self.framing, self.chunk) {
                (BodyFraming::None, _) => self.done = true,
                (BodyFraming::Length(_), _) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let n = usize::try_from(self.remaining)
                        .unwrap_or(usize::MAX)
                        .min(buf.len())
                        .min(max);
                    let piece: Vec<u8> = buf.drain(..n).collect();
                    self.remaining -= n as u64;
                    self.done = self.remaining == 0;
                    return Ok(Some(piece));
                }
                (BodyFraming::Chunked, Chunk::Size) => {
                    let Some(line) = take_line(buf)? else {
                        return Ok(None);
                    };
                    let size = http_head::chunk_size(&line)
                        .ok_or(BodyError::Malformed("a chunk size is not valid"))?;
                    self.chunk = if size == 0 {
                        Chunk::Trailers(0)
                    } else {
                        Chunk::Data(size)
                    };
                }
                (BodyFraming::Chunked, Chunk::Data(left)) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let n = usize::try_from(left)
                        .unwrap_or(usize::MAX)
                        .min(buf.len())
                        .min(max);
                    let piece: Vec<u8> = buf.drain(..n).collect();
                    let left = left - n as u64;
                    self.chunk = if left == 0 {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(left)
                    };
                    return Ok(Some(piece));
                }
                (BodyFraming::Chunked, Chunk::DataEnd) => {
                    let Some(line) = take_line(buf)? else {
                        return Ok(None);
                    };
                    if !line.is_empty() {
                        return Err(BodyError::Malformed("a chunk does not end with CRLF"));
                    }
                    self.chunk = Chunk::Size;
                }
                (BodyFraming::Chunked, Chunk::Trailers(seen)) => {
                    let Some(line) = take_line(buf)? else {
                        return Ok(None);
                    };
                    if line.is_empty() {
                        self.done = true;
                    } else if seen + line.len() > MAX_TRAILERS {
                        return Err(BodyError::Malformed("the trailers are too large"));
                    } else {
                        self.chunk = Chunk::Trailers(seen + line.len());
                    }
                }
            }
        }
    }

    /// The next piece of the body (at most `max` bytes, never empty), or `None` at its end.
    pub async fn next<R: AsyncRead + Unpin>(
        &mut self,
        src: &mut SenderReader<R>,
        max: usize,
    ) -> Result<Option<Vec<u8>>, BodyError> {
        loop {
            match self.step(&mut src.buf, max.max(1))? {
                Some(piece) if piece.is_empty() => return Ok(None),
                Some(piece) => return Ok(Some(piece)),
                None => match src.fill().await {
                    Ok(0) | Err(_) => return Err(BodyError::Gone),
                    Ok(_) => {}
                },
            }
        }
    }
}

/// Writes one piece of a response body in `framing`, and flushes it: over TLS, a write may
/// leave the bytes in the stream's buffer until a later write, and a streamed body's next
/// piece may be a long time coming.
pub async fn write_piece<W: AsyncWrite + Unpin>(
    w: &mut W,
    framing: Framing,
    data: &[u8],
) -> std::io::Result<()> {
    match framing {
        Framing::Bodiless => return Ok(()),
        Framing::Length(_) | Framing::UntilClose => w.write_all(data).await?,
        Framing::Chunked if data.is_empty() => return Ok(()),
        Framing::Chunked => {
            let mut out = Vec::with_capacity(data.len() + 12);
            out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
            out.extend_from_slice(data);
            out.extend_from_slice(b"\r\n");
            w.write_all(&out).await?
        }
    }
    w.flush().await
}

/// Ends a response body in `framing` (the last chunk of a chunked one) and flushes.
pub async fn finish<W: AsyncWrite + Unpin>(w: &mut W, framing: Framing) -> std::io::Result<()> {
    if framing == Framing::Chunked {
        w.write_all(b"0\r\n\r\n").await?;
    }
    w.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(headers: &[(&str, &str)]) -> RequestHead {
        RequestHead {
            method: "POST".into(),
            version: 1,
            target: "/hc".into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn framing_follows_rfc_7230_and_refuses_ambiguity() {
        assert_eq!(body_framing(&head(&[])).unwrap(), BodyFraming::None);
        assert_eq!(
            body_framing(&head(&[("Content-Length", "0")])).unwrap(),
            BodyFraming::None
        );
        assert_eq!(
            body_framing(&head(&[("content-length", "12")])).unwrap(),
            BodyFraming::Length(12)
        );
        assert_eq!(
            body_framing(&head(&[("Transfer-Encoding", "Chunked")])).unwrap(),
            BodyFraming::Chunked
        );
        let status = |h: &[(&str, &str)]| body_framing(&head(h)).unwrap_err().status_code;
        assert_eq!(
            status(&[("Content-Length", "1"), ("Content-Length", "2")]),
            Some(400)
        );
        assert_eq!(status(&[("Content-Length", "-1")]), Some(400));
        assert_eq!(
            status(&[("Content-Length", "99999999999999999999")]),
            Some(400)
        );
        assert_eq!(
            status(&[("Content-Length", "1"), ("Transfer-Encoding", "chunked")]),
            Some(400)
        );
        assert_eq!(status(&[("Transfer-Encoding", "gzip, chunked")]), Some(501));
    }

    async fn read_all(
        framing: BodyFraming,
        wire: &[u8],
        split: usize,
    ) -> Result<(Vec<u8>, Vec<u8>), BodyError> {
        let (mut a, b) = tokio::io::duplex(1 << 20);
        a.write_all(wire).await.unwrap();
        drop(a);
        let mut src = SenderReader::new(b, Vec::new());
        let mut body = BodyReader::new(framing);
        let mut out = Vec::new();
        while let Some(piece) = body.next(&mut src, split).await? {
            assert!(piece.len() <= split);
            out.extend_from_slice(&piece);
        }
        assert!(body.is_done());
        Ok((out, src.buf))
    }

    #[tokio::test]
    async fn reads_length_and_chunked_bodies_and_keeps_what_follows() {
        let (body, rest) = read_all(BodyFraming::Length(5), b"helloGET", 2)
            .await
            .unwrap();
        assert_eq!(
            (body.as_slice(), rest.as_slice()),
            (&b"hello"[..], &b"GET"[..])
        );
        let wire = b"3;ext=1\r\nabc\r\nA\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT";
        for split in [1, 4, 100] {
            let (body, rest) = read_all(BodyFraming::Chunked, wire, split).await.unwrap();
            assert_eq!(body, b"abc0123456789");
            assert_eq!(rest, b"NEXT");
        }
    }

    #[tokio::test]
    async fn truncated_or_broken_bodies_are_errors() {
        assert_eq!(
            read_all(BodyFraming::Length(10), b"short", 64)
                .await
                .unwrap_err(),
            BodyError::Gone
        );
        assert_eq!(
            read_all(BodyFraming::Chunked, b"3\r\nab", 64)
                .await
                .unwrap_err(),
            BodyError::Gone
        );
        assert!(matches!(
            read_all(BodyFraming::Chunked, b"zz\r\n", 64)
                .await
                .unwrap_err(),
            BodyError::Malformed(_)
        ));
        assert!(matches!(
            read_all(BodyFraming::Chunked, b"3\r\nabcX\r\n", 64)
                .await
                .unwrap_err(),
            BodyError::Malformed(_)
        ));
    }

    #[tokio::test]
    async fn chunk_lines_are_read_strictly() {
        // Extensions, with blanks before their `;`, and upper-case digits pass.
        for wire in [
            &b"5 ;a=b\r\nhello\r\n0\r\n\r\n"[..],
            b"5\t;x\r\nhello\r\n0\r\n\r\n",
            b"0000005\r\nhello\r\n0\r\n\r\n",
        ] {
            let (body, _) = read_all(BodyFraming::Chunked, wire, 64).await.unwrap();
            assert_eq!(body, b"hello", "{}", String::from_utf8_lossy(wire));
        }
        assert_eq!(http_head::chunk_size(b"Ff"), Some(255));
        // A sign, blanks around the digits, 0x, a bare LF, a stray CR, too many digits.
        for wire in [
            &b"+5\r\nhello\r\n0\r\n\r\n"[..],
            b" 5\r\nhello\r\n0\r\n\r\n",
            b"5 \r\nhello\r\n0\r\n\r\n",
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b"5\nhello\n0\n\n",
            b"5\r\r\nhello\r\n0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\nhello\r\n0\r\nX: 1\n\r\n",
            b"0000000000000005\r\nhello\r\n0\r\n\r\n",
        ] {
            assert!(
                matches!(
                    read_all(BodyFraming::Chunked, wire, 64).await,
                    Err(BodyError::Malformed(_))
                ),
                "{}",
                String::from_utf8_lossy(wire)
            );
        }
    }

    #[tokio::test]
    async fn writes_each_framing() {
        let mut out = Vec::new();
        write_piece(&mut out, Framing::Chunked, b"hello")
            .await
            .unwrap();
        write_piece(&mut out, Framing::Chunked, b"").await.unwrap();
        finish(&mut out, Framing::Chunked).await.unwrap();
        assert_eq!(out, b"5\r\nhello\r\n0\r\n\r\n");
        let mut out = Vec::new();
        write_piece(&mut out, Framing::Length(2), b"hi")
            .await
            .unwrap();
        finish(&mut out, Framing::Length(2)).await.unwrap();
        assert_eq!(out, b"hi");
    }

    #[tokio::test]
    async fn a_piece_reaches_a_buffering_stream_once_it_is_writable() {
        use crate::relay::buffering_stream::{until, Buffered, BufferingStream};
        use std::sync::{Arc, Mutex};
        let state = Arc::new(Mutex::new(Buffered::default()));
        let mut w = BufferingStream(state.clone());
        let task = tokio::spawn(async move {
            write_piece(&mut w, Framing::Chunked, b"event")
                .await
                .unwrap();
            // A streamed body's next piece is a long time coming.
            std::future::pending::<()>().await;
        });
        until(&state, |b| b.pending.len() == 10).await;
        Buffered::make_writable(&state)
            .expect("the write waits for the socket")
            .wake();
        until(&state, |b| b.sent.len() == 10).await;
        assert_eq!(state.lock().unwrap().sent, b"5\r\nevent\r\n");
        task.abort();
    }
}
