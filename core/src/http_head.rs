//! HTTP/1.1 as Node.js writes it, read by the client side and the local relay: response
//! heads parsed with room for every header they carry (Node.js takes any number of headers,
//! and so must what stands in for it: a WebSocket handshake's answer, a relayed request's
//! response as Node.js serializes it; callers bound the head's size), head text, and
//! chunk-size lines.

/// Headers a first parse has room for, on the stack; a head with more is parsed again with
/// room for one per line.
const FIRST_TRY: usize = 128;

/// Parses the response head at the start of `buf`; once it is complete, calls `f` with it
/// and the head's length in bytes. `Ok(None)` while it is incomplete.
pub(crate) fn parse_response<R>(
    buf: &[u8],
    f: impl FnOnce(&httparse::Response<'_, '_>, usize) -> R,
) -> Result<Option<R>, httparse::Error> {
    let mut headers = [httparse::EMPTY_HEADER; FIRST_TRY];
    match parse_with(buf, &mut headers) {
        Err(httparse::Error::TooManyHeaders) => {}
        parsed => return parsed.map(|p| p.map(|(resp, len)| f(&resp, len))),
    }
    let lines = buf.iter().filter(|&&b| b == b'\n').count();
    let mut headers = vec![httparse::EMPTY_HEADER; lines + 1];
    parse_with(buf, &mut headers).map(|p| p.map(|(resp, len)| f(&resp, len)))
}

/// [`parse_response`] with room for `headers.len()` headers.
fn parse_with<'h, 'b>(
    buf: &'b [u8],
    headers: &'h mut [httparse::Header<'b>],
) -> Result<Option<(httparse::Response<'h, 'b>, usize)>, httparse::Error> {
    let mut resp = httparse::Response::new(headers);
    match resp.parse(buf)? {
        httparse::Status::Complete(len) => Ok(Some((resp, len))),
        httparse::Status::Partial => Ok(None),
    }
}

/// Head text as Node.js wrote it, read back as the characters it was given (a response
/// head at the listener, a request head at the local relay): Node writes a
/// head one byte per character (Latin-1: `res.attachment('café.pdf')`'s `filename="café.pdf"`
/// has the byte E9, which UTF-8 decoding made U+FFFD), except when the head and a string
/// body go out in one write, as UTF-8. A head that is UTF-8 is read as UTF-8 (`utf8`), others
/// as Latin-1; the JSON then carries the characters the application set. (A Latin-1 head
/// whose bytes happen to be UTF-8, such as `Ã©`, reads as UTF-8: the bytes cannot tell.)
pub(crate) fn head_text(bytes: &[u8], utf8: bool) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) if utf8 => text.to_owned(),
        _ => bytes.iter().map(|&b| char::from(b)).collect(),
    }
}

/// The size on a chunk-size line (RFC 9112 7.1): hex digits only (at most 15, so that the
/// size fits), then the line's end or extensions, after optional blanks before their `;`.
/// No sign, no blanks before the digits, no `0x`: `u64::from_str_radix` alone takes a
/// leading `+`, and trimming took blanks and a stray CR. `line` is without its CRLF. For a
/// request body at the local relay and a response body at the listener.
pub(crate) fn chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 15 {
        return None;
    }
    let rest = &line[digits..];
    let blanks = rest
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    if !(rest.is_empty() || rest[blanks..].starts_with(b";")) {
        return None;
    }
    // ASCII hex digits: the text is valid, and the value fits (15 digits).
    u64::from_str_radix(std::str::from_utf8(&line[..digits]).ok()?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head_with(n: usize) -> String {
        let mut text = String::from("HTTP/1.1 200 OK\r\n");
        for i in 0..n {
            text.push_str(&format!("X-{i}: {i}\r\n"));
        }
        text + "\r\n"
    }

    #[test]
    fn any_number_of_headers() {
        for n in [0, 1, FIRST_TRY, FIRST_TRY + 1, 1000] {
            let text = head_with(n);
            let got = parse_response(text.as_bytes(), |r, len| (r.headers.len(), len));
            assert_eq!(got, Ok(Some((n, text.len()))), "{n} headers");
            // Every prefix is incomplete, never an error.
            for cut in [1, text.len() / 2, text.len() - 1] {
                let got = parse_response(&text.as_bytes()[..cut], |_, len| len);
                assert_eq!(got, Ok(None), "{n} headers, cut at {cut}");
            }
        }
        assert!(parse_response(b"HTTP/1.1 2OO OK\r\n\r\n", |_, len| len).is_err());
    }
}
