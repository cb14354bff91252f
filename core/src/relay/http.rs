//! The HTTP/1.1 side of the relay: reading a request head with limits, and writing the
//! few responses the relay gives itself (101, errors with a description as the reason
//! phrase).

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::http_head::head_text;

/// The most headers a request may carry.
const MAX_HEADERS: usize = 100;

/// A parsed request head.
#[derive(Debug, Clone)]
pub struct RequestHead {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The minor version: 1 for HTTP/1.1, 0 for HTTP/1.0.
    pub version: u8,
    /// The request target, as sent (`/$hc/hyco?sb-hc-action=listen`).
    pub target: String,
    /// Headers in order, names as sent.
    pub headers: Vec<(String, String)>,
}

impl RequestHead {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every non-empty line of the header named `name` (case-insensitive), joined with
    /// `", "` as one list (as the listener sees it in `connectHeaders`, where an empty line
    /// adds nothing); `None` when there is none.
    pub fn header_joined(&self, name: &str) -> Option<String> {
        let mut lines = self
            .headers
            .iter()
            .filter(|(k, v)| k.eq_ignore_ascii_case(name) && !v.trim().is_empty())
            .map(|(_, v)| v.as_str());
        let first = lines.next()?.to_owned();
        Some(lines.fold(first, |all, v| all + ", " + v))
    }

    /// True when the header holds `token` in its comma-separated list (case-insensitive).
    pub fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// True for a WebSocket upgrade request (any version; the version is checked apart).
    pub fn is_websocket_upgrade(&self) -> bool {
        self.header_has_token("Upgrade", "websocket")
            && self.header_has_token("Connection", "upgrade")
    }

    /// The `Sec-WebSocket-Key` of a valid version-13 upgrade request.
    pub fn websocket_key(&self) -> Option<&str> {
        if self.method != "GET" || self.header("Sec-WebSocket-Version").map(str::trim) != Some("13")
        {
            return None;
        }
        self.header("Sec-WebSocket-Key")
            .map(str::trim)
            .filter(|k| !k.is_empty())
    }
}

/// The host name of a `Host` header, lowercased, without the port.
pub fn host_name(host: &str) -> String {
    let h = host.trim();
    let name = if h.starts_with('[') {
        h.split(']')
            .next()
            .map(|s| format!("{s}]"))
            .unwrap_or_default()
    } else {
        h.split(':').next().unwrap_or("").to_owned()
    };
    name.to_ascii_lowercase()
}

/// A `Host` header's value, if it is only `host[:port]`: a DNS name or IPv4 address, or an
/// IPv6 literal in brackets, and an optional port from 1 to 65535. Returns the host as it
/// goes in a URL (lowercase; IPv6 normalised, in brackets) and the port if one is given
/// (an empty port, `host:`, is none). `None` for anything else (user info, a path, a zone
/// id, spaces, a bad port): such a value must not go into an address.
pub fn parse_host_header(value: &str) -> Option<(String, Option<u16>)> {
    let value = value.trim();
    let (host, port) = match value.strip_prefix('[') {
        Some(rest) => {
            let (inner, after) = rest.split_once(']')?;
            let ip: std::net::Ipv6Addr = inner.parse().ok()?;
            let port = match after {
                "" => "",
                _ => after.strip_prefix(':')?,
            };
            (format!("[{ip}]"), port)
        }
        None => {
            let (name, port) = value.split_once(':').unwrap_or((value, ""));
            if !is_host_name(name) {
                return None;
            }
            (name.to_ascii_lowercase(), port)
        }
    };
    if port.is_empty() {
        return Some((host, None));
    }
    if port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let port = port.parse::<u16>().ok().filter(|p| *p != 0)?;
    Some((host, Some(port)))
}

/// True for a DNS name (or an IPv4 address): labels of letters, digits, `-` and `_`, none
/// empty (but for one trailing dot), none over 63 bytes, 253 bytes at most.
fn is_host_name(name: &str) -> bool {
    let bare = name.strip_suffix('.').unwrap_or(name);
    !bare.is_empty()
        && bare.len() <= 253
        && bare.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Why no request head was read.
#[derive(Debug, PartialEq, Eq)]
pub enum HeadError {
    /// The peer closed (or failed) before a whole head arrived: nobody to answer.
    Closed,
    /// A head to refuse with `status` (400: not HTTP/1.x; 431: larger than allowed).
    Refused {
        /// The status answered.
        status: u16,
        /// Its reason phrase, and the body of an answer to any other method.
        reason: &'static str,
        /// The request began `HEAD `: its answer carries no body (RFC 9110 9.3.2), which
        /// the client would otherwise read as the start of a next response.
        head_method: bool,
    },
}

impl HeadError {
    /// The status the head is refused with; `None` when the peer is gone.
    pub fn status(&self) -> Option<u16> {
        match self {
            HeadError::Closed => None,
            HeadError::Refused { status, .. } => Some(*status),
        }
    }

    /// Answers the refusal (nothing for a peer that is gone) and ends the stream.
    pub async fn answer<S: AsyncWrite + Unpin>(&self, stream: &mut S) {
        if let HeadError::Refused {
            status,
            reason,
            head_method,
        } = self
        {
            write_status_for(stream, *status, reason, *head_method).await;
        }
    }
}

/// Not HTTP/1.x: answered 400.
fn malformed(buf: &[u8]) -> HeadError {
    HeadError::Refused {
        status: 400,
        reason: "Bad Request",
        head_method: buf.starts_with(b"HEAD "),
    }
}

/// Larger than allowed: answered 431.
fn too_large(buf: &[u8]) -> HeadError {
    HeadError::Refused {
        status: 431,
        reason: "Request Header Fields Too Large",
        head_method: buf.starts_with(b"HEAD "),
    }
}

/// Reads one request head. Returns it with any bytes that followed it.
pub async fn read_head<S: AsyncRead + Unpin>(
    stream: &mut S,
    max_bytes: usize,
) -> Result<(RequestHead, Vec<u8>), HeadError> {
    let mut buf = Vec::with_capacity(2048);
    let head = read_head_into(stream, &mut buf, max_bytes).await?;
    Ok((head, buf))
}

/// Reads one request head whose first bytes may already be in `buf` (a keep-alive
/// connection's next request). On success `buf` keeps only the bytes after the head.
///
/// Cancel-safe: bytes read are in `buf` as soon as a read completes, so a caller that gives
/// up (to look at something else) and calls again loses nothing.
pub async fn read_head_into<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    max_bytes: usize,
) -> Result<RequestHead, HeadError> {
    let mut chunk = [0u8; 4096];
    // Parse what is there, then again only when a read ends a line (a head is complete only
    // at a line's end), when it was the first read (garbage is refused at once; garbage
    // coming later waits for a line's end, the size limit or the caller's timeout) or when
    // the head is too long: each parse starts from the head's first byte, so a client
    // sending a byte at a time would otherwise cost the square of the head's length. Empty
    // lines before the request line are dropped as they come (RFC 9112 2.2 lets a server
    // ignore them; httparse would skip them at every parse).
    let mut parse = !buf.is_empty();
    let mut first = true;
    let mut blanks = 0;
    loop {
        let blank = buf
            .iter()
            .take_while(|b| matches!(b, b'\r' | b'\n'))
            .count();
        if blank > 0 {
            buf.drain(..blank);
            // They count towards the head's size all the same.
            blanks += blank;
            if blanks > max_bytes {
                return Err(too_large(buf));
            }
        }
        if parse && !buf.is_empty() {
            if let Some((head, len)) = parse_head(buf, max_bytes)? {
                buf.drain(..len);
                return Ok(head);
            }
        }
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|_| HeadError::Closed)?;
        if n == 0 {
            return Err(HeadError::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
        parse = first || chunk[..n].contains(&b'\n') || buf.len() > max_bytes;
        first = false;
    }
}

#[cfg(test)]
thread_local! {
    /// Heads parsed on this thread (tests of how often a slow head is parsed).
    static PARSES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Parses a head at the start of `buf`: the head and its length, `None` if incomplete.
fn parse_head(buf: &[u8], max_bytes: usize) -> Result<Option<(RequestHead, usize)>, HeadError> {
    #[cfg(test)]
    PARSES.with(|c| c.set(c.get() + 1));
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => {
            // Node's client writes a head one byte per character (Latin-1) unless head and
            // body go out together (UTF-8): read as the listener reads a response's head.
            let utf8 = std::str::from_utf8(&buf[..len]).is_ok();
            let head = RequestHead {
                version: req.version.unwrap_or(1),
                method: req.method.unwrap_or_default().to_owned(),
                target: req.path.unwrap_or_default().to_owned(),
                headers: req
                    .headers
                    .iter()
                    .map(|h| (h.name.to_owned(), head_text(h.value, utf8)))
                    .collect(),
            };
            Ok(Some((head, len)))
        }
        Ok(httparse::Status::Partial) if buf.len() > max_bytes => Err(too_large(buf)),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(too_large(buf)),
        Err(_) => Err(malformed(buf)),
    }
}

/// A reason phrase safe to put on a status line: visible ASCII and spaces, bounded.
pub fn sanitize_reason(text: &str) -> String {
    let cleaned = clean_reason(text, false);
    if cleaned.is_empty() {
        "Error".into()
    } else {
        cleaned
    }
}

/// `text` as a reason phrase: visible ASCII and spaces, with `obs_text` also U+0080 to U+00FF
/// (RFC 9110's reason-phrase, for a head written one byte per character), other characters
/// as spaces; at most 256, trimmed (possibly empty).
pub fn clean_reason(text: &str, obs_text: bool) -> String {
    text.chars()
        .map(|c| {
            let kept = c == ' '
                || c.is_ascii_graphic()
                || (obs_text && ('\u{80}'..='\u{ff}').contains(&c));
            if kept {
                c
            } else {
                ' '
            }
        })
        .take(256)
        .collect::<String>()
        .trim()
        .to_owned()
}

/// Writes an error (or 410) response and ends the stream.
pub async fn write_status<S: AsyncWrite + Unpin>(stream: &mut S, status: u16, description: &str) {
    write_status_for(stream, status, description, false).await;
}

/// [`write_status`], for a request whose method may be HEAD (`head`): then without the body
/// (RFC 9110 §9.3.2), as the service answers it.
pub async fn write_status_for<S: AsyncWrite + Unpin>(
    stream: &mut S,
    status: u16,
    description: &str,
    head: bool,
) {
    let reason = sanitize_reason(description);
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        reason.len(),
        if head { "" } else { reason.as_str() }
    );
    // The peer may be gone already; there is nobody to report a failure to.
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Writes the `101 Switching Protocols` response for `key`, echoing `protocol` if any.
pub async fn write_switching<S: AsyncWrite + Unpin>(
    stream: &mut S,
    key: &str,
    protocol: Option<&str>,
) -> std::io::Result<()> {
    write_switching_with(stream, key, protocol, None).await
}

/// [`write_switching`] with a `Sec-WebSocket-Extensions` header when `extensions` is given.
pub async fn write_switching_with<S: AsyncWrite + Unpin>(
    stream: &mut S,
    key: &str,
    protocol: Option<&str>,
    extensions: Option<&str>,
) -> std::io::Result<()> {
    let mut response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n",
        derive_accept_key(key.as_bytes())
    );
    if let Some(p) = protocol {
        response.push_str("Sec-WebSocket-Protocol: ");
        response.push_str(p);
        response.push_str("\r\n");
    }
    if let Some(e) = extensions {
        response.push_str("Sec-WebSocket-Extensions: ");
        response.push_str(e);
        response.push_str("\r\n");
    }
    response.push_str("\r\n");
    stream.write_all(response.as_bytes()).await?;
    stream.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_a_head_and_keeps_what_follows() {
        let data = b"GET /$hc/x?a=1 HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: abc\r\n\r\nEXTRA";
        let mut r = &data[..];
        let (head, rest) = read_head(&mut r, 16 * 1024).await.unwrap();
        assert_eq!(head.target, "/$hc/x?a=1");
        assert!(head.is_websocket_upgrade());
        assert_eq!(head.websocket_key(), Some("abc"));
        assert_eq!(rest, b"EXTRA");
    }

    #[tokio::test]
    async fn non_ascii_header_values_read_as_node_wrote_them() {
        // Latin-1, as Node's client writes 'café' in a head of its own.
        let latin1 = b"GET / HTTP/1.1\r\nHost: h\r\nX-Name: caf\xe9\r\n\r\n";
        let (head, _) = read_head(&mut &latin1[..], 1024).await.unwrap();
        assert_eq!(head.header("X-Name"), Some("café"));
        // UTF-8, when the whole head is.
        let utf8 = "GET / HTTP/1.1\r\nHost: h\r\nX-Name: café ✓\r\n\r\n";
        let (head, _) = read_head(&mut utf8.as_bytes(), 1024).await.unwrap();
        assert_eq!(head.header("X-Name"), Some("café ✓"));
    }

    #[tokio::test]
    async fn refuses_garbage_and_oversize_heads() {
        let mut r = &b"\x00\x01\x02garbage\r\n\r\n"[..];
        assert_eq!(
            read_head(&mut r, 1024).await.unwrap_err().status(),
            Some(400)
        );
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(5000));
        let mut r = big.as_bytes();
        assert_eq!(
            read_head(&mut r, 1024).await.unwrap_err().status(),
            Some(431)
        );
        let mut r = &b"GET / HTTP/1.1\r\nHost"[..];
        assert_eq!(
            read_head(&mut r, 1024).await.unwrap_err(),
            HeadError::Closed
        );
    }

    #[tokio::test]
    async fn a_refused_head_request_is_answered_without_a_body() {
        let answer = |e: HeadError| async move {
            let mut out = Vec::new();
            e.answer(&mut out).await;
            String::from_utf8(out).unwrap()
        };
        let big = format!("HEAD / HTTP/1.1\r\nX: {}\r\n", "a".repeat(5000));
        let e = read_head(&mut big.as_bytes(), 1024).await.unwrap_err();
        assert_eq!(e.status(), Some(431));
        let text = answer(e).await;
        assert!(text.starts_with("HTTP/1.1 431 "), "{text}");
        assert!(text.contains("Content-Length: 31\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n"), "a body after the head: {text}");
        let mut r = &b"\r\nHEAD /\x01 HTTP/1.1\r\n\r\n"[..];
        let text = answer(read_head(&mut r, 1024).await.unwrap_err()).await;
        assert!(text.starts_with("HTTP/1.1 400 "), "{text}");
        assert!(text.ends_with("\r\n\r\n"), "a body after the head: {text}");
        // Any other method's refusal says why in its body; a peer gone gets nothing.
        let mut r = &b"GET /\x01 HTTP/1.1\r\n\r\n"[..];
        let text = answer(read_head(&mut r, 1024).await.unwrap_err()).await;
        assert!(text.ends_with("\r\n\r\nBad Request"), "{text}");
        assert_eq!(answer(HeadError::Closed).await, "");
    }

    /// Gives its bytes one at a time, as a slow (or hostile) client sends them.
    struct ByteAtATime<'a>(&'a [u8]);

    impl AsyncRead for ByteAtATime<'_> {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            if let Some((first, rest)) = self.0.split_first() {
                buf.put_slice(&[*first]);
                self.0 = rest;
            }
            std::task::Poll::Ready(Ok(()))
        }
    }

    /// The status a head fed a byte at a time is refused with (`None`: another failure).
    async fn refusal(head: &[u8], max_bytes: usize) -> Option<u16> {
        match read_head(&mut ByteAtATime(head), max_bytes).await {
            Ok(_) => panic!("the head was taken"),
            Err(e) => e.status(),
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_head_sent_a_byte_at_a_time_is_parsed_once_per_line() {
        let mut head = String::from("GET /$hc/x HTTP/1.1\r\nHost: h\r\n");
        for i in 0..20 {
            head.push_str(&format!("X-Filler-{i}: {}\r\n", "a".repeat(400)));
        }
        head.push_str("\r\n");
        PARSES.with(|c| c.set(0));
        let (got, rest) = read_head(&mut ByteAtATime(head.as_bytes()), 16 * 1024)
            .await
            .unwrap();
        assert_eq!(got.target, "/$hc/x");
        assert!(rest.is_empty());
        // Once per line (23) and once for the first byte: not once per byte (8,000 and more).
        let parses = PARSES.with(|c| c.get());
        assert!(
            parses <= 24,
            "{parses} parses of a {}-byte head",
            head.len()
        );
        // Empty lines before the request line cost nothing either.
        let padded = format!(
            "{}GET /$hc/y HTTP/1.1\r\nHost: h\r\n\r\n",
            "\r\n".repeat(4000)
        );
        PARSES.with(|c| c.set(0));
        let (got, _) = read_head(&mut ByteAtATime(padded.as_bytes()), 16 * 1024)
            .await
            .unwrap();
        assert_eq!(got.target, "/$hc/y");
        let parses = PARSES.with(|c| c.get());
        assert!(parses <= 4, "{parses} parses after 4,000 empty lines");
        // And count towards the head's size.
        assert_eq!(refusal(padded.as_bytes(), 1024).await, Some(431));
        // Garbage is still refused at its first read, and an oversize head with no line end
        // once it is too long.
        assert_eq!(refusal(b"\x00\x01garbage", 1024).await, Some(400));
        let long = format!("GET /{}", "a".repeat(3000));
        assert_eq!(refusal(long.as_bytes(), 1024).await, Some(431));
    }

    #[test]
    fn host_headers_are_only_host_and_port() {
        let ok = |v: &str| parse_host_header(v);
        let some = |h: &str, p: Option<u16>| Some((h.to_owned(), p));
        assert_eq!(ok("Relay.Example.NET"), some("relay.example.net", None));
        assert_eq!(ok(" ns.test:8443 "), some("ns.test", Some(8443)));
        assert_eq!(ok("ns.test:"), some("ns.test", None));
        assert_eq!(ok("ns.test."), some("ns.test.", None));
        assert_eq!(ok("127.0.0.1:9000"), some("127.0.0.1", Some(9000)));
        assert_eq!(ok("[::1]:9000"), some("[::1]", Some(9000)));
        assert_eq!(ok("[0:0:0:0:0:0:0:1]"), some("[::1]", None));
        assert_eq!(ok("[FE80::A]:1"), some("[fe80::a]", Some(1)));
        assert_eq!(ok("[::1]:"), some("[::1]", None));
        for bad in [
            "",
            ":443",
            "ns.test:0",
            "ns.test:65536",
            "ns.test:+1",
            "ns.test:443:1",
            "ns..test",
            ".ns",
            "-ns.test",
            "ns test",
            "user@ns.test",
            "ns.test/path",
            "ns.test?x=1",
            "ns.test#x",
            "[::1",
            "[::1]x",
            "[fe80::1%25eth0]",
            "[v1.x]",
            "::1",
            "ns\u{e9}.test",
            &"a".repeat(64),
            &format!("{}.x", "a.".repeat(127)),
        ] {
            assert_eq!(ok(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn reasons_are_single_line_ascii() {
        assert_eq!(sanitize_reason("go\r\naway é"), "go  away");
        assert_eq!(sanitize_reason("\r\n"), "Error");
    }
}
