//! The subset of Node.js's legacy `url.parse` / `url.format` that hyco-ws relies on.
//!
//! hyco-ws builds the signed resource of a token with `url.parse(uri)`, then formats it back.
//! That round trip lowercases the host, keeps an explicit port, adds `/` to an empty path of
//! a "slashed" scheme and percent-escapes a fixed set of characters (space, quotes, braces,
//! ...), but leaves `%` and non-ASCII characters alone. Tokens must match hyco-ws byte for byte,
//! so this module reproduces those rules for well-formed absolute URIs.
//!
//! Where Node's parser would quietly produce garbage (no scheme, no host, an invalid host name,
//! control characters, credentials) this parser refuses the URI instead: a clear error beats a
//! token the service will reject. The JavaScript tests compare it with Node's own `url.parse`
//! over generated URIs.

use crate::error::{Error, Result};

/// Characters that `url.parse` percent-escapes wherever they occur after the host.
const AUTO_ESCAPE: &[u8] = b"'{}|\\^`<>\" ";

/// Schemes for which `url.parse` gives an empty path the value `/`.
const SLASHED: &[&str] = &["http", "https", "ftp", "gopher", "file", "ws", "wss"];

/// A parsed absolute URI, in the normalised form `url.format` would print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyUrl {
    /// Lowercased scheme, without `:`.
    pub protocol: String,
    /// Lowercased host name (IPv6 in brackets), plus `:port` when the URI had one.
    pub host: String,
    /// The host name alone, lowercased, without brackets.
    pub hostname: String,
    /// The explicit port, if any.
    pub port: Option<u16>,
    /// The escaped path; `/` or longer for slashed schemes, possibly empty otherwise.
    pub pathname: String,
    /// The escaped query including its `?`, or empty.
    pub search: String,
    /// The escaped fragment including its `#`, or empty.
    pub hash: String,
}

impl LegacyUrl {
    /// Parses `input` (the argument named `name`, for error messages).
    pub fn parse(input: &str, name: &'static str) -> Result<Self> {
        let s = trim_node_whitespace(input);
        if s.is_empty() {
            return Err(Error::arg_type(name, "must be a non-empty string"));
        }
        if s.bytes().any(|b| b < 0x20 || b == 0x7f) {
            return Err(Error::uri(name, "it contains control characters"));
        }
        let scheme_end = s
            .find("://")
            .ok_or_else(|| Error::uri(name, "an absolute URI (scheme://host/path) is required"))?;
        let scheme = &s[..scheme_end];
        if !is_scheme(scheme) {
            return Err(Error::uri(name, "the scheme is invalid"));
        }
        let protocol = scheme.to_ascii_lowercase();
        let rest = &s[scheme_end + 3..];

        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        let after = &rest[authority_end..];
        if authority.contains('@') {
            return Err(Error::uri(name, "user information is not supported"));
        }
        let (hostname, port, host) = parse_host(authority, name)?;

        // Backslashes before the query become slashes in `url.parse`; refuse them rather than
        // guess, since they almost always mean a Windows path pasted by mistake.
        let path_end = after.find(['?', '#']).unwrap_or(after.len());
        if after[..path_end].contains('\\') {
            return Err(Error::uri(name, "the path contains a backslash"));
        }
        let escaped = auto_escape(after);
        let hash_at = escaped.find('#').unwrap_or(escaped.len());
        let (before_hash, hash) = escaped.split_at(hash_at);
        let search_at = before_hash.find('?').unwrap_or(before_hash.len());
        let (path, search) = before_hash.split_at(search_at);
        let mut pathname = path.to_owned();
        if pathname.is_empty() && SLASHED.contains(&protocol.as_str()) {
            pathname.push('/');
        }
        Ok(LegacyUrl {
            protocol,
            host,
            hostname,
            port,
            pathname,
            search: search.to_owned(),
            hash: hash.to_owned(),
        })
    }

    /// `url.format` of this URL.
    pub fn format(&self) -> String {
        let mut out = String::with_capacity(
            self.protocol.len()
                + 3
                + self.host.len()
                + self.pathname.len()
                + self.search.len()
                + self.hash.len(),
        );
        out.push_str(&self.protocol);
        out.push_str("://");
        out.push_str(&self.host);
        out.push_str(&self.pathname);
        out.push_str(&self.search);
        out.push_str(&self.hash);
        out
    }
}

/// Node's `url.parse` trims these from both ends before parsing.
fn trim_node_whitespace(s: &str) -> &str {
    s.trim_matches(|c: char| {
        matches!(
            c,
            ' ' | '\t' | '\r' | '\n' | '\u{0c}' | '\u{a0}' | '\u{feff}'
        )
    })
}

fn is_scheme(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// Splits `host[:port]` and normalises the host like `url.parse`: lowercase, IDNA for
/// non-ASCII names, brackets kept around IPv6 in `host` but not in `hostname`.
fn parse_host(authority: &str, name: &'static str) -> Result<(String, Option<u16>, String)> {
    let (host_part, port_part) = if let Some(stripped) = authority.strip_prefix('[') {
        let close = stripped
            .find(']')
            .ok_or_else(|| Error::uri(name, "the IPv6 host has no closing bracket"))?;
        let after = &stripped[close + 1..];
        let port = match after {
            "" => None,
            p if p.starts_with(':') => Some(&p[1..]),
            _ => {
                return Err(Error::uri(
                    name,
                    "unexpected characters after the IPv6 host",
                ))
            }
        };
        (&authority[..close + 2], port)
    } else {
        match authority.rfind(':') {
            Some(i) => (&authority[..i], Some(&authority[i + 1..])),
            None => (authority, None),
        }
    };
    if host_part.is_empty() {
        return Err(Error::uri(name, "the host is missing"));
    }
    let port = match port_part {
        None => None,
        Some(p) => {
            if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Error::uri(name, "the port is invalid"));
            }
            let n: u32 = p
                .parse()
                .map_err(|_| Error::uri(name, "the port is invalid"))?;
            if n > u32::from(u16::MAX) {
                return Err(Error::uri(name, "the port is out of range"));
            }
            Some(p)
        }
    };
    let hostname = if let Some(v6) = host_part.strip_prefix('[') {
        let inner = &v6[..v6.len() - 1];
        inner
            .parse::<std::net::Ipv6Addr>()
            .map_err(|_| Error::uri(name, "the IPv6 host is invalid"))?;
        inner.to_ascii_lowercase()
    } else {
        normalise_hostname(host_part, name)?
    };
    let mut host = if host_part.starts_with('[') {
        format!("[{hostname}]")
    } else {
        hostname.clone()
    };
    if let Some(p) = port {
        host.push(':');
        host.push_str(p);
    }
    let port_num = port.and_then(|p| p.parse::<u16>().ok());
    Ok((hostname, port_num, host))
}

/// Lowercases an ASCII host name and checks its labels the way `url.parse` does; converts a
/// non-ASCII one to punycode, as `url.parse` does with `toASCII`.
fn normalise_hostname(h: &str, name: &'static str) -> Result<String> {
    let ascii = if h.is_ascii() {
        h.to_ascii_lowercase()
    } else {
        match url::Host::parse(h) {
            Ok(url::Host::Domain(d)) => d,
            _ => return Err(Error::uri(name, "the host name is invalid")),
        }
    };
    if ascii.len() > 255 {
        return Err(Error::uri(name, "the host name is too long"));
    }
    let label_ok = |l: &str| {
        l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'_'))
    };
    if !ascii.split('.').all(label_ok) {
        return Err(Error::uri(name, "the host name is invalid"));
    }
    Ok(ascii)
}

/// Percent-escapes the characters `url.parse` escapes after the host.
fn auto_escape(s: &str) -> String {
    if !s.bytes().any(|b| AUTO_ESCAPE.contains(&b)) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\'' => out.push_str("%27"),
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            '|' => out.push_str("%7C"),
            '\\' => out.push_str("%5C"),
            '^' => out.push_str("%5E"),
            '`' => out.push_str("%60"),
            '<' => out.push_str("%3C"),
            '>' => out.push_str("%3E"),
            '"' => out.push_str("%22"),
            ' ' => out.push_str("%20"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(s: &str) -> String {
        LegacyUrl::parse(s, "uri")
            .map(|u| u.format())
            .unwrap_or_else(|e| format!("ERR {e}"))
    }

    #[test]
    fn normalises_like_node() {
        assert_eq!(
            fmt("WSS://Contoso.ServiceBus.Windows.Net:443/$hc/A B"),
            "wss://contoso.servicebus.windows.net:443/$hc/A%20B"
        );
        assert_eq!(fmt("http://h"), "http://h/");
        assert_eq!(fmt("sb://h"), "sb://h");
        assert_eq!(fmt("ws://h/p?a b#c d"), "ws://h/p?a%20b#c%20d");
        assert_eq!(fmt("ws://[::1]:80/x"), "ws://[::1]:80/x");
        assert_eq!(fmt("  ws://h/x\n"), "ws://h/x");
        assert_eq!(fmt("ws://bücher.example/x"), "ws://xn--bcher-kva.example/x");
    }

    #[test]
    fn refuses_what_node_would_mangle() {
        for bad in [
            "",
            "no-scheme/path",
            "ws:/one-slash",
            "ws:///no-host",
            "ws://h:port/",
            "ws://h:99999/",
            "ws://u:p@h/",
            "ws://h\\x/",
            "ws://h/a\tb",
            "ws://ba d/",
            "ws://[::1/",
            "1ws://h/",
        ] {
            assert!(
                LegacyUrl::parse(bad, "uri").is_err(),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn errors_never_echo_the_query() {
        let e = LegacyUrl::parse("ws://ba d/?sb-hc-token=secret", "uri").unwrap_err();
        assert!(!e.to_string().contains("secret"));
    }
}
