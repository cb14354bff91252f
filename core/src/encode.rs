//! JavaScript's `encodeURIComponent` and `decodeURIComponent`, byte for byte.
//!
//! Tokens and URIs must be identical to those hyco-ws builds in JavaScript, so the
//! percent-encoding rules are JavaScript's, not RFC 3986's (`!'()*` stay unescaped).

/// True for the characters `encodeURIComponent` leaves alone.
#[inline]
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
        )
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Appends `s`, encoded as JavaScript's `encodeURIComponent` would, to `out`.
pub fn encode_uri_component_into(s: &str, out: &mut String) {
    out.reserve(s.len());
    for &b in s.as_bytes() {
        if is_unreserved(b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 0x0f) as usize] as char);
        }
    }
}

/// JavaScript's `encodeURIComponent`. Rust strings are valid UTF-8, so the lone-surrogate
/// `URIError` of JavaScript cannot happen here.
pub fn encode_uri_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 2);
    encode_uri_component_into(s, &mut out);
    out
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// JavaScript's `decodeURIComponent`: `None` where JavaScript throws `URIError`
/// (a malformed escape, or escapes that do not form UTF-8). `+` stays `+`.
pub fn decode_uri_component(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_owned());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = hex_value(*bytes.get(i + 1)?)?;
            let lo = hex_value(*bytes.get(i + 2)?)?;
            out.push((hi << 4) | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Decodes an `application/x-www-form-urlencoded` query component: `+` is a space, and a
/// malformed escape is kept as it is (the WHATWG rule), so this never fails.
pub fn decode_query_component(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let pair = bytes
                    .get(i + 1)
                    .and_then(|h| hex_value(*h))
                    .zip(bytes.get(i + 2).and_then(|l| hex_value(*l)));
                match pair {
                    Some((hi, lo)) => {
                        out.push((hi << 4) | lo);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_javascript() {
        assert_eq!(encode_uri_component("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
        assert_eq!(encode_uri_component("-_.!~*'()"), "-_.!~*'()");
        assert_eq!(encode_uri_component("+/="), "%2B%2F%3D");
        assert_eq!(encode_uri_component(""), "");
    }

    #[test]
    fn decodes_like_javascript() {
        assert_eq!(decode_uri_component("a%20b%2B").as_deref(), Some("a b+"));
        assert_eq!(decode_uri_component("a+b").as_deref(), Some("a+b"));
        assert_eq!(decode_uri_component("%C3%A9").as_deref(), Some("é"));
        assert_eq!(decode_uri_component("%"), None);
        assert_eq!(decode_uri_component("%zz"), None);
        assert_eq!(decode_uri_component("%C3"), None);
        assert_eq!(decode_uri_component("%e2%82%ac").as_deref(), Some("€"));
        assert_eq!(decode_uri_component("%4"), None);
        assert_eq!(decode_uri_component("%ff"), None);
        assert_eq!(decode_uri_component("%+f"), None);
        assert_eq!(decode_uri_component("").as_deref(), Some(""));
    }

    #[test]
    fn decodes_query_components_leniently() {
        assert_eq!(decode_query_component("a+b%20c"), "a b c");
        assert_eq!(decode_query_component("100%"), "100%");
        assert_eq!(decode_query_component("%e9"), "\u{fffd}");
    }

    #[test]
    fn round_trips() {
        for s in [
            "",
            "abc",
            "ü n ï &=?/#",
            "SharedAccessSignature sr=x&sig=a%2B",
        ] {
            assert_eq!(
                decode_uri_component(&encode_uri_component(s)).as_deref(),
                Some(s)
            );
        }
    }
}
