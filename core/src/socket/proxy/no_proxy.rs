//! The `NO_PROXY` list: which hosts are reached directly although a proxy is set. A pure
//! function, read as curl reads the variable, with a few forms curl ignores made to mean
//! what they obviously mean:
//!
//! - entries are separated by commas (white space around them is ignored); curl's rules:
//!   `*` alone matches every host; `example.com` matches `example.com` and every name under
//!   it (`www.example.com`, not `notexample.com`); a leading dot (`.example.com`) is
//!   ignored, so it matches the same; trailing dots are ignored; names compare
//!   case-insensitively; an IP literal matches that address (or, with `/bits`, that
//!   network: `10.0.0.0/8`, `fd00::/8`) and only when the target is that IP literal (host
//!   names are never resolved to be compared);
//! - added to curl's: `host:port` (and `[v6]:port`) matches that host on that port only;
//!   an IPv6 entry may be in brackets (`[::1]`); `*.example.com` is read as `.example.com`;
//!   a `*` entry anywhere in the list matches every host; white space also separates
//!   entries.

use std::borrow::Cow;
use std::net::IpAddr;

/// A target host as the matcher compares it.
enum Subject {
    /// A name, lowercased, without a trailing dot.
    Name(String),
    /// An IP literal.
    Ip(IpAddr),
}

impl Subject {
    fn of(host: &str) -> Subject {
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        match bare.parse::<IpAddr>() {
            Ok(ip) => Subject::Ip(ip),
            Err(_) => Subject::Name(bare.trim_end_matches('.').to_ascii_lowercase()),
        }
    }
}

/// One entry, split into its host part and its port (`None`: any port; `Some(None)`: a
/// port that is not a number, which matches nothing).
fn split_port(entry: &str) -> (Cow<'_, str>, Option<Option<u16>>) {
    if let Some(rest) = entry.strip_prefix('[') {
        // `[v6]`, `[v6]:port` or a network `[v6]/bits`.
        let Some(close) = rest.find(']') else {
            return (entry.into(), None);
        };
        let host = &rest[..close];
        let after = &rest[close + 1..];
        if after.starts_with('/') {
            return (format!("{host}{after}").into(), None);
        }
        return match after.strip_prefix(':') {
            Some(port) => (host.into(), Some(port.parse().ok())),
            None => (host.into(), None),
        };
    }
    match entry.rfind(':') {
        // One colon: `host:port`. More: an IPv6 literal without brackets.
        Some(i) if entry.find(':') == Some(i) => {
            (entry[..i].into(), Some(entry[i + 1..].parse().ok()))
        }
        _ => (entry.into(), None),
    }
}

/// Whether `ip` is in `pattern`: an address, or a network `address/bits`.
fn ip_matches(ip: IpAddr, pattern: &str) -> bool {
    let (address, bits) = match pattern.split_once('/') {
        Some((a, b)) => match b.parse::<u32>() {
            Ok(bits) => (a, Some(bits)),
            Err(_) => return false,
        },
        None => (pattern, None),
    };
    let Ok(network) = address.parse::<IpAddr>() else {
        return false;
    };
    match (ip, network) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            prefix_equal(u128::from(u32::from(a)), u128::from(u32::from(n)), 32, bits)
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => prefix_equal(u128::from(a), u128::from(n), 128, bits),
        _ => false,
    }
}

/// Whether the first `bits` of two `width`-bit numbers are equal; `bits` absent, 0 or past
/// the width compares them whole (as curl does).
fn prefix_equal(a: u128, b: u128, width: u32, bits: Option<u32>) -> bool {
    let bits = match bits {
        Some(b) if b > 0 && b <= width => b,
        _ => width,
    };
    let shift = width - bits;
    (a >> shift) == (b >> shift)
}

/// Whether `name` (lowercased, no trailing dot) is `pattern` or a name under it.
fn name_matches(name: &str, pattern: &str) -> bool {
    let pattern = pattern.trim_end_matches('.');
    let pattern = pattern
        .strip_prefix("*.")
        .or_else(|| pattern.strip_prefix('.'))
        .unwrap_or(pattern);
    if pattern.is_empty() || name.len() < pattern.len() {
        return false;
    }
    let tail = name.len() - pattern.len();
    name[tail..].eq_ignore_ascii_case(pattern) && (tail == 0 || name.as_bytes()[tail - 1] == b'.')
}

/// Whether `list` (a `NO_PROXY` value) says that `host` (a name, or an IP literal, IPv6
/// with or without brackets) on `port` is reached without the proxy.
pub fn no_proxy_matches(list: &str, host: &str, port: u16) -> bool {
    let subject = Subject::of(host);
    if let Subject::Name(n) = &subject {
        if n.is_empty() {
            return false;
        }
    }
    list.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|e| !e.is_empty())
        .any(|entry| {
            if entry == "*" {
                return true;
            }
            let (pattern, entry_port) = split_port(entry);
            match entry_port {
                Some(Some(p)) if p != port => return false,
                Some(None) => return false,
                _ => {}
            }
            match &subject {
                Subject::Ip(ip) => ip_matches(*ip, &pattern),
                Subject::Name(name) => name_matches(name, &pattern),
            }
        })
}

#[cfg(test)]
mod tests {
    use super::no_proxy_matches;

    /// (NO_PROXY, host, port, bypassed)
    const CASES: &[(&str, &str, u16, bool)] = &[
        // Empty lists and entries.
        ("", "example.com", 443, false),
        (" , ,, ", "example.com", 443, false),
        // `*`: everything, alone or (an addition to curl) anywhere in the list.
        ("*", "example.com", 443, true),
        (" * ", "10.1.2.3", 80, true),
        ("foo.com, *", "example.com", 443, true),
        ("*foo.com", "example.com", 443, false),
        // Exact names and domain suffixes, with and without a leading dot (curl ignores it).
        ("example.com", "example.com", 443, true),
        ("example.com", "www.example.com", 443, true),
        ("example.com", "a.b.example.com", 443, true),
        ("example.com", "notexample.com", 443, false),
        ("example.com", "example.com.evil", 443, false),
        (".example.com", "example.com", 443, true),
        (".example.com", "www.example.com", 443, true),
        (".example.com", "wwwexample.com", 443, false),
        ("*.example.com", "www.example.com", 443, true),
        ("www.example.com", "example.com", 443, false),
        // Case, trailing dots, white space, empty entries.
        ("EXAMPLE.Com", "www.example.COM", 443, true),
        ("example.com.", "example.com", 443, true),
        ("example.com", "example.com.", 443, true),
        (" foo.com ,\texample.com ,", "example.com", 443, true),
        ("foo.com,,example.com", "example.com", 443, true),
        ("foo.com example.com", "example.com", 443, true),
        (".", "example.com", 443, false),
        // host:port: that port only.
        ("example.com:443", "example.com", 443, true),
        ("example.com:443", "example.com", 80, false),
        ("example.com:443", "www.example.com", 443, true),
        ("example.com:http", "example.com", 80, false),
        ("127.0.0.1:9000", "127.0.0.1", 9000, true),
        ("127.0.0.1:9000", "127.0.0.1", 9001, false),
        // IP literals: exact, CIDR, never against a name (nothing is resolved).
        ("127.0.0.1", "127.0.0.1", 80, true),
        ("127.0.0.1", "127.0.0.2", 80, false),
        ("127.0.0.1", "localhost", 80, false),
        ("localhost", "127.0.0.1", 80, false),
        ("127.0.0.0/8", "127.9.8.7", 80, true),
        ("10.0.0.0/8", "11.0.0.1", 80, false),
        ("192.168.1.0/24", "192.168.1.77", 80, true),
        ("192.168.1.0/24", "192.168.2.77", 80, false),
        ("10.0.0.1/x", "10.0.0.1", 80, false),
        ("127.0.0.1", "::1", 80, false),
        // IPv6, bare or in brackets, with a port, with CIDR.
        ("::1", "::1", 443, true),
        ("::1", "[::1]", 443, true),
        ("[::1]", "::1", 443, true),
        ("[::1]:443", "::1", 443, true),
        ("[::1]:443", "::1", 80, false),
        ("fd00::/8", "fd12:3456::1", 80, true),
        ("fd00::/8", "fe80::1", 80, false),
        ("[fe80::1", "fe80::1", 80, false),
        // A network in brackets, as an address is written in one.
        ("[fd00::]/8", "fd12::1", 443, true),
        ("[fd00::]/8", "fe80::1", 443, false),
        ("::1", "localhost", 80, false),
        // A name entry never matches an IP target.
        ("example.com", "93.184.216.34", 80, false),
        // An empty target.
        ("*.", "", 80, false),
    ];

    #[test]
    fn reads_the_list_as_curl_does() {
        for &(list, host, port, expected) in CASES {
            assert_eq!(
                no_proxy_matches(list, host, port),
                expected,
                "NO_PROXY={list:?}, host {host:?}, port {port}"
            );
        }
    }
}
