//! The messages of HTTP over the relay, as the service writes and reads them: the `request`
//! message built from a sender's request (its target without `sb-hc-*=` parameters, its
//! headers without hop-by-hop ones and without the relay's token), the listener's
//! `response` message read leniently, and the response head the sender gets.

use std::net::SocketAddr;

use serde_json::{Map, Value};

use crate::encode::decode_query_component;

/// Headers that describe one hop (RFC 7230 6.1) or the message's framing on one hop: the
/// relay neither forwards them to the listener nor takes them from its response, because it
/// frames both sides itself. `Close` is the article's own addition to the list.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "content-length",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "close",
];

/// True for a header the relay drops on either way: hop-by-hop, framing, or named by the
/// message's own `Connection` header (`connection_names`, lowercased).
fn is_hop_by_hop(name: &str, connection_names: &[String]) -> bool {
    let lower = name.to_ascii_lowercase();
    HOP_BY_HOP.contains(&lower.as_str()) || connection_names.contains(&lower)
}

/// The header names listed in the `Connection` headers of `headers`, lowercased.
fn connection_names<'a>(headers: impl Iterator<Item = (&'a str, &'a str)>) -> Vec<String> {
    headers
        .filter(|(k, _)| k.eq_ignore_ascii_case("connection"))
        .flat_map(|(_, v)| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// The sender's request target as the listener gets it: `sb-hc-*` query parameters written
/// with `=` removed (the service keeps `?sb-hc-undefined`), everything else byte for byte.
pub fn request_target(target: &str) -> String {
    let Some((path, query)) = target.split_once('?') else {
        return target.to_owned();
    };
    let relay_param = |pair: &&str| {
        pair.split_once('=')
            .is_some_and(|(k, _)| decode_query_component(k).starts_with("sb-hc-"))
    };
    if !query.split('&').any(|p| relay_param(&p)) {
        return target.to_owned();
    }
    let kept: Vec<&str> = query.split('&').filter(|p| !relay_param(p)).collect();
    if kept.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", kept.join("&"))
    }
}

/// The sender's headers as the listener gets them (`requestHeaders`): without hop-by-hop
/// and framing headers, `ServiceBusAuthorization`, `Authorization` when it carried the relay
/// token (`strip_authorization`), and `Expect` (the relay answers `100-continue` itself).
/// `Host` is kept, as the service does. Repeated names (compared case-insensitively, spelled
/// as first seen) fold into one value joined with `", "`, `Cookie` with `"; "`. The relay
/// adds itself to `Via` (`1.1 {via}`, after the sender's own entries), as the article says
/// the service does and a captured request message shows
/// (`"Via":"1.1 {namespace}.servicebus.windows.net"`).
pub fn request_headers(
    headers: &[(String, String)],
    strip_authorization: bool,
    via: &str,
) -> Map<String, Value> {
    let named = connection_names(headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let mut folded: Vec<(String, String)> = Vec::new();
    for (name, value) in headers {
        let dropped = is_hop_by_hop(name, &named)
            || name.eq_ignore_ascii_case("ServiceBusAuthorization")
            || name.eq_ignore_ascii_case("Expect")
            || (strip_authorization && name.eq_ignore_ascii_case("Authorization"));
        if dropped {
            continue;
        }
        match folded
            .iter_mut()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
        {
            Some((_, v)) => {
                v.push_str(if name.eq_ignore_ascii_case("cookie") {
                    "; "
                } else {
                    ", "
                });
                v.push_str(value);
            }
            None => folded.push((name.clone(), value.clone())),
        }
    }
    let hop = format!("1.1 {via}");
    match folded
        .iter_mut()
        .find(|(k, _)| k.eq_ignore_ascii_case("Via"))
    {
        Some((_, v)) => {
            v.push_str(", ");
            v.push_str(&hop);
        }
        None => folded.push(("Via".to_owned(), hop)),
    }
    folded
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect()
}

/// Everything the `request` message says about one request.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    /// The rendezvous address for this request (`…?sb-hc-action=request&sb-hc-id=ID`).
    pub address: String,
    /// The request id.
    pub id: String,
    /// See [`request_target`].
    pub target: String,
    /// The method, as sent.
    pub method: String,
    /// The sender's address.
    pub remote: SocketAddr,
    /// See [`request_headers`].
    pub headers: Map<String, Value>,
    /// Whether a body message follows.
    pub body: bool,
}

impl RequestInfo {
    /// The full `request` message, with every field (both .NET and hyco-https decide inline
    /// vs rendezvous on a field's presence: `body` for one, `method` for the other).
    pub fn message(&self) -> String {
        serde_json::json!({
            "request": {
                "address": self.address,
                "id": self.id,
                "requestTarget": self.target,
                "method": self.method,
                "remoteEndpoint": { "address": self.remote.ip().to_string(), "port": self.remote.port() },
                "requestHeaders": self.headers,
                "body": self.body,
            }
        })
        .to_string()
    }

    /// The address-only `request` message that asks the listener to open the rendezvous
    /// ("the remainder of this message is left empty").
    pub fn address_only_message(&self) -> String {
        serde_json::json!({ "request": { "address": self.address } }).to_string()
    }

    /// The size of the header metadata, as the article's 32 kB limit counts it (roughly: the
    /// JSON of the headers).
    pub fn headers_size(&self) -> usize {
        self.headers
            .iter()
            .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len) + 6)
            .sum()
    }
}

/// A listener's `response`, as far as the relay uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// `requestId`, if any.
    pub request_id: Option<String>,
    /// `statusCode`.
    pub status: u16,
    /// `statusDescription`, if any.
    pub description: Option<String>,
    /// `responseHeaders`, one entry per header line (an array value gives several).
    pub headers: Vec<(String, String)>,
    /// `body`: whether a binary body message follows.
    pub body: bool,
}

/// What a listener's text message is, to the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenerReply {
    /// A usable response.
    Response(ResponseHead),
    /// A `response` the sender cannot be given (bad or 1xx status): answered 502 if its
    /// request is known. `body` says whether a body message follows anyway.
    Invalid {
        /// `requestId`, if any.
        request_id: Option<String>,
        /// Whether a body message follows.
        body: bool,
        /// What is wrong, for the log.
        why: String,
    },
    /// Not a `response` at all.
    Other,
}

/// Header names must be RFC 7230 tokens.
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A header value a sender's parser takes (RFC 9110 5.5): visible characters, blanks and
/// obs-text; no control character but HTAB (CR and LF would break the head, and Node's
/// parser refuses the others: `HPE_INVALID_HEADER_TOKEN`), no DEL.
fn is_safe_value(value: &str) -> bool {
    !value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f)
}

/// `responseHeaders` as header lines: strings as they are, arrays of strings as one line
/// each (so that two `Set-Cookie`s survive), numbers and booleans as text; anything else,
/// and names or values that would break the head, are dropped.
fn header_lines(headers: Option<&Value>) -> Vec<(String, String)> {
    let Some(Value::Object(map)) = headers else {
        return Vec::new();
    };
    let mut lines = Vec::new();
    for (name, value) in map {
        let values: Vec<String> = match value {
            Value::String(s) => vec![s.clone()],
            Value::Array(items) => items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect(),
            Value::Number(n) => vec![n.to_string()],
            Value::Bool(b) => vec![b.to_string()],
            _ => Vec::new(),
        };
        for v in values {
            if is_token(name) && is_safe_value(&v) {
                lines.push((name.clone(), v));
            } else {
                log::debug!("relay: dropping a response header that would break the head");
            }
        }
    }
    lines
}

/// Reads a listener's text message. Lenient where the clients differ: `statusCode` may be a
/// number or a numeric string (the article's example writes `"200"`), `requestId` may be
/// missing (hyco-https omits it when the request had no id).
pub fn parse_reply(text: &str) -> ListenerReply {
    match serde_json::from_str::<Value>(text) {
        Ok(value) => reply_of(&value),
        Err(_) => ListenerReply::Other,
    }
}

/// [`parse_reply`] of a message already parsed (the control channel's, which is parsed
/// once to tell a `response` from a `renewToken`).
pub fn reply_of(value: &Value) -> ListenerReply {
    let Some(r) = value.get("response").filter(|r| r.is_object()) else {
        return ListenerReply::Other;
    };
    let request_id = r
        .get("requestId")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let body = r.get("body").and_then(Value::as_bool).unwrap_or(false);
    let status = match r.get("statusCode") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    let status = match status {
        Some(s @ 200..=999) => s as u16,
        Some(s @ 100..=199) => {
            return ListenerReply::Invalid {
                request_id,
                body,
                why: format!("status {s} is not a final status"),
            }
        }
        _ => {
            return ListenerReply::Invalid {
                request_id,
                body,
                why: "statusCode is missing or not a status from 200 to 999".into(),
            }
        }
    };
    ListenerReply::Response(ResponseHead {
        request_id,
        status,
        description: r
            .get("statusDescription")
            .and_then(Value::as_str)
            .map(str::to_owned),
        headers: header_lines(r.get("responseHeaders")),
        body,
    })
}

/// The standard reason phrase of `status` (RFC 9110), or `""`.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// True when a response to `method` with `status` has no body by definition (RFC 9110
/// 6.4.1): HEAD, 204, 304 (1xx never reaches a sender).
pub fn is_bodiless(method: &str, status: u16) -> bool {
    method.eq_ignore_ascii_case("HEAD") || status == 204 || status == 304
}

/// How the relay frames the body it sends the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body by definition (HEAD, 204, 304): no framing header.
    Bodiless,
    /// The whole body is known: `Content-Length`.
    Length(u64),
    /// Streamed to an HTTP/1.1 sender: `Transfer-Encoding: chunked`.
    Chunked,
    /// Streamed to an HTTP/1.0 sender: the body ends when the connection does.
    UntilClose,
}

/// The response head the sender gets for a listener's `head`: the listener's status and
/// description (or the standard phrase), its headers minus hop-by-hop and framing ones, the
/// relay's `Via` (which, per the article, tells a listener's response from the service's own)
/// and the relay's framing.
pub fn sender_head(head: &ResponseHead, via: &str, framing: Framing, close: bool) -> Vec<u8> {
    let reason = head
        .description
        .as_deref()
        .map(|d| super::http::clean_reason(d, true))
        .filter(|d| !d.trim().is_empty())
        .unwrap_or_else(|| reason_phrase(head.status).to_owned());
    let mut bytes = format!("HTTP/1.1 {} ", head.status).into_bytes();
    bytes.extend(head_bytes(&reason));
    bytes.extend_from_slice(b"\r\n");
    let named = connection_names(head.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    for (name, value) in &head.headers {
        if !is_hop_by_hop(name, &named) {
            bytes.extend_from_slice(name.as_bytes());
            bytes.extend_from_slice(b": ");
            bytes.extend(head_bytes(value));
            bytes.extend_from_slice(b"\r\n");
        }
    }
    // The rest is ASCII.
    let mut out = String::new();
    out.push_str(&format!("Via: 1.1 {via}\r\n"));
    match framing {
        Framing::Bodiless | Framing::UntilClose => {}
        Framing::Length(n) => out.push_str(&format!("Content-Length: {n}\r\n")),
        Framing::Chunked => out.push_str("Transfer-Encoding: chunked\r\n"),
    }
    if close || framing == Framing::UntilClose {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    bytes.extend_from_slice(out.as_bytes());
    bytes
}

/// Header text as Node.js writes and reads it: one byte per character (Latin-1) when every
/// character fits, so that a Node.js listener's `filename="café.pdf"` reaches a Node.js
/// sender as written; UTF-8 otherwise (another listener may send any JSON string).
fn head_bytes(text: &str) -> Vec<u8> {
    if text.chars().all(|c| c <= '\u{ff}') {
        text.chars().map(|c| c as u8).collect()
    } else {
        text.as_bytes().to_vec()
    }
}

/// A response the relay gives itself about a relayed request (no `Via`: the article's way of
/// telling it from a listener's): the status, `description` as reason phrase, and a JSON
/// error body like the service's (`{"error":{"code":…,"message":…}}`), left out when it
/// answers a HEAD request (RFC 9110 §9.3.2: the headers say what a GET would have had; a
/// body there is read as the start of the next response).
pub fn relay_response(
    status: u16,
    code: &str,
    description: &str,
    close: bool,
    head: bool,
) -> Vec<u8> {
    let reason = super::http::sanitize_reason(description);
    let body = serde_json::json!({ "error": { "code": code, "message": description } }).to_string();
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n",
        body.len()
    );
    if close {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    if !head {
        out.push_str(&body);
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_lose_only_relay_parameters_with_a_value() {
        assert_eq!(request_target("/hc/a%20b?q=1&q=2"), "/hc/a%20b?q=1&q=2");
        assert_eq!(
            request_target("/hc?sb-hc-id=1&custom=value&sb-hc-token=x"),
            "/hc?custom=value"
        );
        assert_eq!(request_target("/hc?sb-hc-token=x"), "/hc");
        assert_eq!(
            request_target("/hc?sb-hc-undefined&a=1&&"),
            "/hc?sb-hc-undefined&a=1&&"
        );
        assert_eq!(request_target("/hc?sb%2Dhc%2Did=1&a"), "/hc?a");
        assert_eq!(request_target("/hc?&&&"), "/hc?&&&");
    }

    #[test]
    fn headers_fold_and_lose_hop_by_hop_ones() {
        let h = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let sent = h(&[
            ("Host", "ns"),
            ("Connection", "keep-alive, X-Hop"),
            ("X-Hop", "gone"),
            ("Keep-Alive", "timeout=5"),
            ("Content-Length", "3"),
            ("TE", "trailers"),
            ("ServiceBusAuthorization", "SharedAccessSignature x"),
            ("Authorization", "Bearer app"),
            ("X-Multi", "a"),
            ("x-multi", "b"),
            ("Cookie", "a=1"),
            ("cookie", "b=2"),
            ("Expect", "100-continue"),
        ]);
        let m = request_headers(&sent, false, "ns.example");
        let keys: Vec<&str> = m.keys().map(String::as_str).collect();
        assert_eq!(keys, ["Authorization", "Cookie", "Host", "Via", "X-Multi"]);
        assert_eq!(m["X-Multi"], "a, b");
        assert_eq!(m["Cookie"], "a=1; b=2");
        assert_eq!(m["Via"], "1.1 ns.example", "the relay adds itself");
        assert!(!request_headers(&sent, true, "ns.example").contains_key("Authorization"));
        let proxied = h(&[("via", "1.0 proxy"), ("Via", "1.1 other")]);
        assert_eq!(
            request_headers(&proxied, false, "ns.example")["via"],
            "1.0 proxy, 1.1 other, 1.1 ns.example",
            "after the sender's own entries"
        );
    }

    #[test]
    fn replies_are_read_leniently() {
        let r = parse_reply(
            r#"{"response":{"requestId":"r1","statusCode":"201","responseHeaders":{"Set-Cookie":["a=1","b=2"],"X-N":5,"Bad Name":"x","X-Evil":"a\r\nInjected: 1","X-Ctl":"a\u0001b","X-Del":"a\u007fb","X-Tab":"a\tb","X-Latin":"café"},"body":true}}"#,
        );
        let ListenerReply::Response(head) = r else {
            panic!("{r:?}")
        };
        assert_eq!(head.status, 201);
        assert_eq!(head.request_id.as_deref(), Some("r1"));
        assert!(head.body);
        assert_eq!(
            head.headers,
            vec![
                ("Set-Cookie".to_owned(), "a=1".to_owned()),
                ("Set-Cookie".to_owned(), "b=2".to_owned()),
                ("X-Latin".to_owned(), "café".to_owned()),
                ("X-N".to_owned(), "5".to_owned()),
                ("X-Tab".to_owned(), "a\tb".to_owned()),
            ]
        );
        assert!(matches!(
            parse_reply(r#"{"response":{"requestId":"r","statusCode":101,"body":false}}"#),
            ListenerReply::Invalid { body: false, .. }
        ));
        assert!(matches!(
            parse_reply(r#"{"response":{"requestId":"r","body":true}}"#),
            ListenerReply::Invalid { body: true, .. }
        ));
        assert_eq!(parse_reply("not json"), ListenerReply::Other);
        assert_eq!(parse_reply(r#"{"renewToken":{}}"#), ListenerReply::Other);
        assert_eq!(parse_reply(r#"{"response":7}"#), ListenerReply::Other);
    }

    #[test]
    fn sender_heads_frame_the_body_and_add_via() {
        let head = ResponseHead {
            request_id: None,
            status: 201,
            description: None,
            headers: vec![
                ("Content-Length".into(), "999".into()),
                ("Connection".into(), "X-Gone".into()),
                ("X-Gone".into(), "1".into()),
                ("Set-Cookie".into(), "a=1".into()),
                ("Set-Cookie".into(), "b=2".into()),
            ],
            body: true,
        };
        let text = String::from_utf8(sender_head(&head, "ns:1", Framing::Chunked, false)).unwrap();
        assert_eq!(
            text,
            "HTTP/1.1 201 Created\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nVia: 1.1 ns:1\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        let text = String::from_utf8(sender_head(&head, "ns", Framing::UntilClose, false)).unwrap();
        assert!(
            text.ends_with("Via: 1.1 ns\r\nConnection: close\r\n\r\n"),
            "{text}"
        );
    }
}
