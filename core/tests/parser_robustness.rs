//! Every parser of outside input on generated input: no panic, and an error that says what
//! is wrong (a stable code, a message, never a secret). The handshake response's head and
//! checks, the control channel's `request` JSON, SAS tokens, relay URIs, connection strings,
//! a sender's `req.url`/`req.headers`, the emulator's request head, and the response bytes
//! Node.js writes for a relayed HTTP response. Generators give arbitrary strings and bytes
//! and inputs near each grammar: fields missing, repeated, reordered, in another case, with
//! broken percent-escapes, cut into reads anywhere.
//!
//! Case counts: `CASES` per property; `PROPTEST_CASES` runs longer.

mod common;

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::FutureExt;
use hyco_core::encode::{decode_uri_component, encode_uri_component};
use hyco_core::listener::http::message::{
    parse_request, RequestMessage, Unusable, MAX_REQUEST_HEADERS, MAX_REQUEST_HEADER_BYTES,
};
use hyco_core::listener::http::response::{Part, ResponseParser};
use hyco_core::listener::request::{request_headers, request_url, target_url};
use hyco_core::relay::http::read_head;
use hyco_core::socket::handshake::{check_response, parse_response_head};
use hyco_core::{connection_string, sas, uri};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{json, Map, Value};
use tokio::io::{AsyncRead, ReadBuf};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use common::{cases, reads};

/// Cases per property per `cargo test`.
const CASES: u32 = 2000;

/// The table of `__test__/fixtures/handshake-responses.json`, checked there against ws.
const HANDSHAKE_TABLE: &str = include_str!("../../__test__/fixtures/handshake-responses.json");

/// The request key of the handshakes here (RFC 6455's example).
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// Bytes near an HTTP/1.1 head, or any bytes.
fn head_like(lines: impl Strategy<Value = Vec<String>>) -> impl Strategy<Value = Vec<u8>> {
    let near = (
        lines,
        prop::collection::vec((any::<Index>(), any::<u8>()), 0..3),
    )
        .prop_map(|(lines, hits)| {
            let mut b = lines.join("\r\n").into_bytes();
            b.extend_from_slice(b"\r\n\r\n");
            for (at, x) in hits {
                let i = at.index(b.len());
                b[i] ^= x;
            }
            b
        });
    prop_oneof![3 => near, 1 => prop::collection::vec(any::<u8>(), 0..200)]
}

// ---------------------------------------------------------------------------------------
// The handshake response.

/// A response to an upgrade request: a status line and headers, each of the ones the
/// client checks absent, present or repeated, right or wrong, in any case and spacing.
fn response_lines() -> impl Strategy<Value = (Vec<String>, Vec<String>)> {
    let accept = derive_accept_key(KEY.as_bytes());
    let status = prop::sample::select(vec![
        "HTTP/1.1 101 Switching Protocols",
        "HTTP/1.1 101",
        "HTTP/1.0 101 OK",
        "HTTP/1.1 200 OK",
        "HTTP/1.1 404 Not Found",
        "HTTP/1.1 1010 X",
        "HTTP/2 101 X",
    ]);
    let field = |names: Vec<&'static str>, values: Vec<String>| {
        prop::collection::vec(
            (
                prop::sample::select(names),
                prop::sample::select(values),
                0usize..3,
            ),
            0..3,
        )
        .prop_map(|v| {
            v.into_iter()
                .map(|(n, val, pad)| format!("{n}:{}{val}{}", " ".repeat(pad), " ".repeat(pad)))
                .collect::<Vec<String>>()
        })
    };
    let upgrade = field(
        vec!["Upgrade", "upgrade", "UPGRADE"],
        vec![
            "websocket".into(),
            "WebSocket".into(),
            "".into(),
            "h2c".into(),
        ],
    );
    let connection = field(
        vec!["Connection", "connection"],
        vec![
            "Upgrade".into(),
            "keep-alive, upgrade".into(),
            "close".into(),
            "upgradex".into(),
        ],
    );
    let accepts = field(
        vec!["Sec-WebSocket-Accept", "sec-websocket-accept"],
        vec![accept.clone(), accept.to_lowercase(), "x".into(), "".into()],
    );
    let protocol = field(
        vec!["Sec-WebSocket-Protocol"],
        vec![
            "chat".into(),
            "other".into(),
            "".into(),
            "chat, other".into(),
        ],
    );
    let extensions = field(
        vec!["Sec-WebSocket-Extensions"],
        vec!["permessage-deflate".into(), "".into()],
    );
    let noise = field(vec!["X-Other", "Server"], vec!["1".into(), "é".into()]);
    let offered = prop::sample::select(vec![
        vec![],
        vec!["chat".to_owned()],
        vec!["other".to_owned(), "chat".to_owned()],
    ]);
    (
        status,
        (upgrade, connection, accepts, protocol, extensions, noise),
        any::<Index>(),
        offered,
    )
        .prop_map(|(status, (u, c, a, p, e, n), shuffle, offered)| {
            let mut headers: Vec<String> = [u, c, a, p, e, n].concat();
            if !headers.is_empty() {
                let k = shuffle.index(headers.len());
                headers.rotate_left(k);
            }
            let mut lines = vec![status.to_owned()];
            lines.extend(headers);
            (lines, offered)
        })
}

#[test]
fn handshake_responses_are_judged_as_ws_judges_them() {
    let table: Value = serde_json::from_str(HANDSHAKE_TABLE).expect("the table is JSON");
    let accept = derive_accept_key(KEY.as_bytes());
    let cases = table["cases"].as_array().expect("cases");
    assert!(cases.len() >= 20, "the table lost cases");
    for c in cases {
        let name = c["name"].as_str().expect("a name");
        let mut text = c["status"].as_str().expect("a status").to_owned();
        for h in c["headers"].as_array().expect("headers") {
            text.push_str("\r\n");
            text.push_str(&h.as_str().expect("a line").replace("{accept}", &accept));
        }
        text.push_str("\r\n\r\n");
        let (head, len) = parse_response_head(text.as_bytes())
            .expect("a head")
            .expect("a whole head");
        assert_eq!(len, text.len(), "{name}");
        let offered: Vec<String> = c["protocols"]
            .as_array()
            .expect("protocols")
            .iter()
            .map(|p| p.as_str().expect("a protocol").to_owned())
            .collect();
        let verdict = check_response(&head, KEY, &offered).map_err(|e| e.message);
        match c["error"].as_str() {
            Some(message) => assert_eq!(verdict, Err(message.to_owned()), "{name}"),
            None => assert!(verdict.is_ok(), "{name}: {verdict:?}"),
        }
    }
}

proptest! {
    #![proptest_config(cases(CASES))]

    /// The head parser takes any bytes: a head no longer than its input, more bytes wanted
    /// only below the size limit (and for every prefix of a whole head), or an error.
    #[test]
    fn response_heads_parse_or_fail_clearly(
        bytes in head_like(response_lines().prop_map(|(l, _)| l)),
    ) {
        match parse_response_head(&bytes) {
            Ok(Some((_, len))) => {
                prop_assert!(len <= bytes.len());
                for n in 0..len {
                    prop_assert!(matches!(parse_response_head(&bytes[..n]), Ok(None)), "prefix {}", n);
                }
            }
            Ok(None) => prop_assert!(bytes.len() <= 64 * 1024),
            Err(e) => {
                prop_assert_eq!(e.code, Some("ERR_INVALID_HTTP_RESPONSE"));
                prop_assert!(e.message.starts_with("Invalid handshake response"));
            }
        }
    }

    /// A response is accepted only when it is a switch to WebSocket with the right
    /// Sec-WebSocket-Accept, no extension and a subprotocol that was offered (or none when
    /// none was); anything else is refused with a code and ws's message.
    #[test]
    fn handshake_responses_are_accepted_only_when_right((lines, offered) in response_lines()) {
        let mut text = lines.join("\r\n");
        text.push_str("\r\n\r\n");
        let head = match parse_response_head(text.as_bytes()) {
            Ok(Some((head, _))) => head,
            Ok(None) => return Err(TestCaseError::fail("a whole head wanted more")),
            // Not HTTP/1.x (a four-digit status, HTTP/2): refused before any check.
            Err(e) => {
                prop_assert_eq!(e.code, Some("ERR_INVALID_HTTP_RESPONSE"));
                return Ok(());
            }
        };
        let values = |name: &str| -> Vec<String> {
            head.headers
                .iter()
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v.trim().to_owned())
                .collect()
        };
        match check_response(&head, KEY, &offered) {
            Ok(protocol) => {
                prop_assert_eq!(head.status, 101);
                let upgrade = values("upgrade");
                prop_assert!(upgrade.len() == 1 && upgrade[0].eq_ignore_ascii_case("websocket"));
                prop_assert_eq!(values("sec-websocket-accept"), vec![derive_accept_key(KEY.as_bytes())]);
                prop_assert!(values("connection")
                    .iter()
                    .flat_map(|v| v.split(','))
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade")));
                prop_assert!(values("sec-websocket-extensions").is_empty());
                if offered.is_empty() {
                    prop_assert_eq!(protocol, "");
                } else {
                    prop_assert_eq!(values("sec-websocket-protocol"), vec![protocol.clone()]);
                    prop_assert!(offered.contains(&protocol));
                }
            }
            Err(e) => {
                prop_assert!(matches!(
                    e.code,
                    Some("ERR_UNEXPECTED_RESPONSE" | "ERR_INVALID_HTTP_RESPONSE")
                ));
                prop_assert!(!e.message.is_empty());
                if e.code == Some("ERR_UNEXPECTED_RESPONSE") {
                    prop_assert_eq!(e.status_code, Some(head.status));
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The control channel's `request` message.

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-1e6f64..1e6).prop_map(|f| json!(f)),
        ".{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((".{0,6}", inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<String, Value>>())),
        ]
    })
}

/// A field that is usually of the right kind, sometimes missing or of another.
fn field(right: impl Strategy<Value = Value> + 'static) -> impl Strategy<Value = Option<Value>> {
    prop_oneof![6 => right.prop_map(Some), 1 => Just(None), 1 => json_value().prop_map(Some)]
}

/// A `request` message's value near the protocol's: every field perhaps missing or of the
/// wrong kind, headers perhaps too many or too large.
fn request_value() -> impl Strategy<Value = Value> {
    let text = || "[a-z0-9/:?=&._-]{0,16}".prop_map(Value::String);
    let header_value = prop_oneof![
        4 => ".{0,12}".prop_map(Value::String),
        1 => Just(Value::Null),
        1 => json_value(),
    ];
    let headers = prop_oneof![
        4 => prop::collection::vec(("[A-Za-z-]{1,10}", header_value), 0..6)
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        1 => (250usize..270).prop_map(|n| {
            Value::Object((0..n).map(|i| (format!("h{i}"), json!("v"))).collect())
        }),
        1 => (60_000usize..70_000).prop_map(|n| json!({ "big": "x".repeat(n) })),
    ];
    let remote = json_value().prop_map(|port| json!({ "address": "10.0.0.1", "port": port }));
    (
        field(text()),
        field(text()),
        field(prop::sample::select(vec!["GET", "POST", "DELETE"]).prop_map(|m| json!(m))),
        field(any::<bool>().prop_map(Value::Bool)),
        field(text()),
        field(headers),
        field(prop_oneof![
            remote,
            (0u64..70_000).prop_map(|p| json!({ "address": "a", "port": p }))
        ]),
    )
        .prop_map(|(address, id, method, body, target, headers, remote)| {
            let mut m = Map::new();
            for (k, v) in [
                ("address", address),
                ("id", id),
                ("method", method),
                ("body", body),
                ("requestTarget", target),
                ("requestHeaders", headers),
                ("remoteEndpoint", remote),
            ] {
                if let Some(v) = v {
                    m.insert(k.to_owned(), v);
                }
            }
            Value::Object(m)
        })
}

proptest! {
    #![proptest_config(cases(CASES))]

    /// A `request` message is served inline only with an address, an id, a method and a
    /// body flag, and only with headers within the limits (else answered 431); one with an
    /// address alone goes to its rendezvous; one without an address is ignored. Any JSON
    /// at all gives one of these.
    #[test]
    fn request_messages_are_read_or_refused(
        r in prop_oneof![3 => request_value(), 1 => json_value()],
    ) {
        let text = |k: &str| r.get(k).and_then(Value::as_str);
        let inline = text("method").is_some() && r.get("body").and_then(Value::as_bool).is_some();
        let result = parse_request(&r);
        let head = match &result {
            Err(Unusable::Ignore(why)) => {
                prop_assert!(!why.is_empty());
                prop_assert!(text("address").is_none() || (inline && text("id").is_none()));
                return Ok(());
            }
            Ok(RequestMessage::Rendezvous { address }) => {
                prop_assert_eq!(Some(address.as_str()), text("address"));
                prop_assert!(!inline);
                return Ok(());
            }
            Ok(RequestMessage::Inline(head)) => head.clone(),
            Err(Unusable::HeadersTooLarge(head)) => (**head).clone(),
        };
        prop_assert!(inline);
        prop_assert_eq!(Some(head.address.as_str()), text("address"));
        prop_assert_eq!(Some(head.id.as_str()), text("id"));
        prop_assert_eq!(Some(head.method.as_str()), text("method"));
        prop_assert_eq!(head.target.as_str(), text("requestTarget").unwrap_or("/"));
        let bytes: usize = head.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
        let within = head.headers.len() <= MAX_REQUEST_HEADERS && bytes <= MAX_REQUEST_HEADER_BYTES;
        let refused = matches!(result, Err(Unusable::HeadersTooLarge(_)));
        prop_assert_eq!(refused, !within);
        let given = r
            .get("requestHeaders")
            .and_then(Value::as_object)
            .map_or(0, |m| m.values().filter(|v| !v.is_null()).count());
        prop_assert_eq!(head.headers.len(), given);
        let port = r.pointer("/remoteEndpoint/port").and_then(Value::as_u64);
        prop_assert_eq!(head.remote_port.map(u64::from), port.filter(|p| *p <= 65535));
    }
}

// ---------------------------------------------------------------------------------------
// SAS tokens, relay URIs, connection strings.

/// Codes the helpers' errors carry.
const HELPER_CODES: &[&str] = &[
    "ERR_INVALID_ARG_TYPE",
    "ERR_OUT_OF_RANGE",
    "ERR_INVALID_URL",
    "ERR_INVALID_TOKEN",
    "ERR_INVALID_CONNECTION_STRING",
];

/// A URI near the relay's: scheme, host, port, path, query and fragment each perhaps odd.
fn uri_like() -> impl Strategy<Value = String> {
    let near = (
        prop::sample::select(vec![
            "sb", "ws", "wss", "https", "http", "SB", "ftp", "", "1x",
        ]),
        prop::sample::select(vec!["://", ":/", "", "://user@"]),
        prop_oneof![
            "[a-z0-9.-]{0,20}",
            Just("[::1]".to_owned()),
            Just("[::1".to_owned()),
            Just("Ünï.example".to_owned()),
        ],
        prop::option::of(prop_oneof!["[0-9]{0,6}", Just("x".to_owned())]),
        "(/[a-z$%. é]{0,6}){0,3}",
        prop::option::of("[a-z=&%]{0,8}"),
        prop::option::of("[a-z]{0,4}"),
    )
        .prop_map(|(scheme, sep, host, port, path, query, frag)| {
            let mut u = format!("{scheme}{sep}{host}");
            if let Some(p) = port {
                u.push(':');
                u.push_str(&p);
            }
            u.push_str(&path);
            if let Some(q) = query {
                u.push('?');
                u.push_str(&q);
            }
            if let Some(f) = frag {
                u.push('#');
                u.push_str(&f);
            }
            u
        });
    prop_oneof![3 => near, 1 => ".{0,30}"]
}

/// An expiry as JavaScript may pass it: any number, or none.
fn expiry() -> impl Strategy<Value = Option<f64>> {
    prop::option::of(prop_oneof![
        any::<f64>(),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(-1.0),
        Just(0.0),
        0.0f64..1e7,
        Just(1e300),
    ])
}

/// A token near the SAS grammar: the four fields (and a stranger) in any order, any of
/// them missing, repeated, empty, or with broken percent-escapes.
fn token_like() -> impl Strategy<Value = String> {
    let value = prop_oneof![
        "[A-Za-z0-9%.+/=]{0,16}",
        Just("%zz".to_owned()),
        Just("%e2%82".to_owned()),
        Just("%".to_owned()),
        "[0-9]{1,15}",
        Just("-1".to_owned()),
    ];
    let pair = (
        prop::sample::select(vec!["sr", "sig", "se", "skn", "x", " sr", "SR", ""]),
        prop::option::of(value),
    )
        .prop_map(|(k, v)| match v {
            Some(v) => format!("{k}={v}"),
            None => k.to_owned(),
        });
    (
        prop::sample::select(vec![
            "SharedAccessSignature ",
            "sharedaccesssignature ",
            "SharedAccessSignature",
            "Bearer ",
            "",
        ]),
        prop::collection::vec(pair, 0..7),
    )
        .prop_map(|(prefix, pairs)| format!("{prefix}{}", pairs.join("&")))
}

/// A connection string near the portal's: known keys (any case, spaced), values perhaps
/// empty, parts missing, repeated or unknown, separators doubled.
fn connection_string_like(secret: &'static str) -> impl Strategy<Value = String> {
    let part = prop_oneof![
        uri_like().prop_map(|u| format!("Endpoint={u}")),
        Just("Endpoint=sb://ns.example/".to_owned()),
        Just("endpoint = ws://127.0.0.1:9000 ".to_owned()),
        "[a-z]{0,8}".prop_map(|v| format!("EntityPath={v}")),
        Just("SharedAccessKeyName=rule".to_owned()),
        Just(format!("SharedAccessKey={secret}")),
        Just(format!("SHAREDACCESSKEY= {secret}=")),
        Just(format!(
            "SharedAccessSignature=SharedAccessSignature sr=a&sig={secret}&se=1&skn=r"
        )),
        prop::sample::select(vec!["1", "00:01:00", "1.5", "-1", "x", "1:2:3:4:5", ""])
            .prop_map(|v| format!("OperationTimeout={v}")),
        Just(secret.to_owned()),
        Just(format!("{secret}=")),
        "[A-Za-z]{1,6}=[a-z]{0,4}",
        Just(String::new()),
    ];
    prop_oneof![
        3 => prop::collection::vec(part, 0..6).prop_map(|p| p.join(";")),
        1 => ".{0,40}",
    ]
}

/// A secret that appears nowhere else in the generated inputs.
const SECRET: &str = "S3CRETk3yV4lue0123456789";

proptest! {
    #![proptest_config(cases(CASES))]

    /// Any text is a token or refused with ERR_INVALID_TOKEN; a token has each of its four
    /// fields once, a decimal expiry, and the decoded resource.
    #[test]
    fn tokens_parse_or_are_refused(token in prop_oneof![3 => token_like(), 1 => ".{0,40}"]) {
        match sas::parse_token(&token) {
            Ok(p) => {
                let fields: Vec<(&str, &str)> = token
                    .get(22..)
                    .unwrap_or("")
                    .split('&')
                    .filter_map(|kv| kv.split_once('='))
                    .collect();
                for name in ["sr", "sig", "se", "skn"] {
                    let n = fields.iter().filter(|(k, _)| k.trim() == name).count();
                    prop_assert_eq!(n, 1, "{}", name);
                }
                let sr = fields.iter().find(|(k, _)| k.trim() == "sr").map(|(_, v)| *v);
                prop_assert_eq!(Some(p.encoded_resource.as_str()), sr);
                prop_assert_eq!(decode_uri_component(&p.encoded_resource), Some(p.resource.clone()));
                let se = fields.iter().find(|(k, _)| k.trim() == "se").map(|(_, v)| *v);
                prop_assert_eq!(se.map(str::parse::<u64>), Some(Ok(p.expires_at)));
            }
            Err(e) => {
                prop_assert_eq!(e.code(), "ERR_INVALID_TOKEN");
                prop_assert!(!e.to_string().is_empty());
            }
        }
    }

    /// A parse error never shows the signature.
    #[test]
    fn token_errors_never_show_the_signature(token in token_like()) {
        let token = format!("{token}&sig={SECRET}");
        if let Err(e) = sas::parse_token(&token) {
            prop_assert!(!e.to_string().contains(SECRET), "{}", e);
        }
    }

    /// Any arguments make a token or a coded error; a token made parses back to its
    /// resource, expiry and key name, and verifies with its key.
    #[test]
    fn tokens_are_made_or_refused(
        uri in uri_like(),
        key_name in prop_oneof![3 => "[A-Za-z0-9._-]{0,12}", 1 => ".{0,8}"],
        key in prop_oneof![".{0,16}", Just(SECRET.to_owned())],
        exp in expiry(),
        now in prop_oneof![Just(1_764_288_000_000.0f64), 0.0f64..8.64e15],
    ) {
        match sas::create_token(&uri, &key_name, &key, exp, now) {
            Ok(token) => {
                prop_assert!(token.starts_with("SharedAccessSignature sr="));
                if key_name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
                    let p = sas::parse_token(&token).map_err(|e| TestCaseError::fail(e.to_string()))?;
                    prop_assert_eq!(Some(p.resource.clone()), sas::signed_resource(&uri).ok());
                    prop_assert_eq!(Some(p.expires_at), sas::expiry_from(exp, now).ok());
                    prop_assert_eq!(&p.key_name, &key_name);
                    prop_assert!(p.signature_matches(&key));
                }
            }
            Err(e) => {
                prop_assert!(HELPER_CODES.contains(&e.code()), "{}", e.code());
                prop_assert!(!e.to_string().contains(SECRET), "{}", e);
            }
        }
    }

    /// The address helpers take any namespace and path: an address of the form hyco-ws
    /// gives, with the token and id encoded, or a coded error.
    #[test]
    fn addresses_are_made_or_refused(
        namespace in uri_like(),
        path in ".{0,12}",
        token in prop::option::of(".{0,12}"),
        id in prop::option::of(".{0,8}"),
        listen in any::<bool>(),
    ) {
        let action = if listen { uri::Action::Listen } else { uri::Action::Connect };
        let results = [
            uri::base_uri(&namespace, &path),
            uri::action_uri(&namespace, &path, action, token.as_deref(), id.as_deref()),
            uri::https_uri(&namespace, &path, token.as_deref(), id.as_deref()),
        ];
        for r in &results {
            if let Err(e) = r {
                prop_assert!(HELPER_CODES.contains(&e.code()), "{}", e.code());
            }
        }
        if let Ok(a) = &results[1] {
            prop_assert!(a.starts_with("ws://") || a.starts_with("wss://"), "{}", a);
            let tail = format!("sb-hc-action={}", action.as_str());
            prop_assert!(a.contains(&tail));
            if let Some(t) = &token {
                let encoded = format!("sb-hc-token={}", encode_uri_component(t));
                prop_assert!(a.contains(&encoded));
            }
        }
    }

    /// `appendRelayToken` on any URI: the URI with a token added, or a coded error.
    #[test]
    fn tokens_are_appended_or_refused(uri in uri_like(), exp in expiry()) {
        match uri::append_token(&uri, "rule", "key", exp, 1_764_288_000_000.0) {
            Ok(u) => prop_assert!(u.contains("sb-hc-token=SharedAccessSignature%20sr%3D"), "{}", u),
            Err(e) => prop_assert!(HELPER_CODES.contains(&e.code()), "{}", e.code()),
        }
    }

    /// Any text is a connection string or refused with a coded error that never shows a
    /// key or a signature; a parsed one has an endpoint, a key name only with a key, and a
    /// namespace the address helpers take.
    #[test]
    fn connection_strings_parse_or_are_refused(text in connection_string_like(SECRET)) {
        match connection_string::parse(&text) {
            Ok(c) => {
                prop_assert!(!c.endpoint.is_empty());
                prop_assert_eq!(c.shared_access_key_name.is_some(), c.shared_access_key.is_some());
                prop_assert!(!(c.shared_access_signature.is_some() && c.shared_access_key.is_some()));
                prop_assert!(uri::base_uri(&c.namespace, "hc").is_ok(), "{:?}", c);
                let shown = format!("{:?}", c);
                prop_assert!(!shown.contains(SECRET));
            }
            Err(e) => {
                prop_assert!(
                    matches!(e.code(), "ERR_INVALID_CONNECTION_STRING" | "ERR_INVALID_ARG_TYPE"),
                    "{}", e.code()
                );
                prop_assert!(!e.to_string().contains(SECRET), "{}", e);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// What a listener shows of a sender's request.

/// A query as `req.url` has it: no `sb-hc-*` parameters, no empty ones.
fn clean_query(url: &str) -> bool {
    url.split_once('?').is_none_or(|(_, q)| {
        !q.is_empty()
            && q.split('&').all(|p| {
                !p.is_empty() && !p.get(..6).is_some_and(|h| h.eq_ignore_ascii_case("sb-hc-"))
            })
    })
}

proptest! {
    #![proptest_config(cases(CASES))]

    /// `req.url` from any address or request target: a path from `/`, its query without
    /// the service's parameters.
    #[test]
    fn request_urls_are_paths_without_the_services_parameters(
        address in prop_oneof![
            3 => (
                "[a-zA-Z%/]{0,6}",
                "(/[a-z%. ]{0,5}){0,3}",
                prop::collection::vec(
                    prop_oneof!["[a-z]{1,4}=[a-z%]{0,3}", Just("sb-hc-action=listen".to_owned()), Just("SB-HC-ID=1".to_owned()), Just(String::new())],
                    0..4,
                ),
            )
                .prop_map(|(e, p, q)| format!("wss://ns:443/$hc/{e}{p}?{}", q.join("&"))),
            1 => ".{0,30}",
        ],
        entity in prop_oneof!["[a-zA-Z%/]{0,6}", ".{0,6}"],
    ) {
        for url in [request_url(&address, &entity), target_url(&address, &entity)] {
            prop_assert!(url.starts_with('/'), "{}", url);
            prop_assert!(clean_query(&url), "{}", url);
        }
    }

    /// `req.headers`: names lowercased, each once, in the order first seen, repeated
    /// values joined with ", ".
    #[test]
    fn request_headers_are_folded_as_node_does(
        headers in prop::collection::vec(("[A-Za-z-]{1,4}|.{0,3}", ".{0,6}"), 0..10),
    ) {
        let folded = request_headers(&headers);
        let mut seen = Vec::new();
        for (k, _) in &headers {
            let k = k.to_ascii_lowercase();
            if !seen.contains(&k) {
                seen.push(k);
            }
        }
        let names: Vec<String> = folded.iter().map(|(k, _)| k.clone()).collect();
        prop_assert_eq!(&names, &seen);
        for (k, v) in &folded {
            let values: Vec<&str> = headers
                .iter()
                .filter(|(n, _)| n.to_ascii_lowercase() == *k)
                .map(|(_, v)| v.as_str())
                .collect();
            prop_assert_eq!(v, &values.join(", "));
        }
    }
}

// ---------------------------------------------------------------------------------------
// The emulator's request head.

/// An in-memory connection that returns the given reads, then the end of the stream.
struct Chunks(VecDeque<Vec<u8>>);

impl AsyncRead for Chunks {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if let Some(front) = self.0.front_mut() {
            let n = front.len().min(buf.remaining());
            buf.put_slice(&front[..n]);
            front.drain(..n);
            if front.is_empty() {
                self.0.pop_front();
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// A request head near the emulator's: a request line and headers, odd in places.
fn request_lines() -> impl Strategy<Value = Vec<String>> {
    (
        prop::sample::select(vec![
            "GET /$hc/hc?sb-hc-action=listen HTTP/1.1",
            "GET / HTTP/1.0",
            "POST /x HTTP/1.1",
            "GET  / HTTP/1.1",
            "GET /\u{e9} HTTP/1.1",
            "GET / HTTP/2",
            "G\u{0}T / HTTP/1.1",
        ]),
        prop::collection::vec(
            prop_oneof![
                Just("Host: h".to_owned()),
                Just("Upgrade: websocket".to_owned()),
                Just("Connection: Upgrade".to_owned()),
                Just("Sec-WebSocket-Version: 13".to_owned()),
                Just("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==".to_owned()),
                "[A-Za-z-]{1,8}: [ -~]{0,12}",
                Just("No colon".to_owned()),
                Just(" folded".to_owned()),
            ],
            0..8,
        ),
    )
        .prop_map(|(first, headers)| {
            let mut lines = vec![first.to_owned()];
            lines.extend(headers);
            lines
        })
}

proptest! {
    #![proptest_config(cases(CASES))]

    /// Any bytes in any reads give a head with what followed it, or an answer to give
    /// (400, 431), or "the peer is gone"; a head read in pieces is the head read whole.
    #[test]
    fn request_heads_are_read_or_refused(
        mut bytes in head_like(request_lines()),
        tail in prop::collection::vec(any::<u8>(), 0..8),
        reads in reads(),
        max in prop::sample::select(vec![64usize, 1024, 16 * 1024]),
    ) {
        bytes.extend_from_slice(&tail);
        let run = |pieces: Vec<&[u8]>| {
            let mut conn = Chunks(pieces.into_iter().map(<[u8]>::to_vec).collect());
            let total = bytes.len();
            let result = read_head(&mut conn, max)
                .now_or_never()
                .expect("an in-memory read never waits");
            let left: usize = conn.0.iter().map(Vec::len).sum();
            (result, total - left)
        };
        let (whole, _) = run(vec![&bytes[..]]);
        let (result, consumed) = run(reads.split(&bytes));
        match result {
            Ok((head, rest)) => {
                prop_assert!(!head.method.is_empty());
                // What followed the head is what was read after it.
                let at = consumed - rest.len();
                prop_assert_eq!(&bytes[at..consumed], &rest[..]);
                // (httparse takes a bare LF as a line end too.)
                prop_assert!(bytes[..at].ends_with(b"\n\n") || bytes[..at].ends_with(b"\n\r\n"));
                if let Ok((w, _)) = whole {
                    prop_assert_eq!((w.method, w.target, w.headers), (head.method, head.target, head.headers));
                }
            }
            Err(e) => prop_assert!(
                matches!(e.status(), Some(400 | 431)) || e == hyco_core::relay::http::HeadError::Closed,
                "{:?}", e
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The response Node.js writes for a relayed HTTP request.

/// A response as Node's `http.ServerResponse` writes it: perhaps interim heads, a head
/// with a raw or chunked body (chunk extensions, trailers), and the body it carries.
fn response() -> impl Strategy<Value = (Vec<u8>, u16, Vec<u8>, bool)> {
    (
        prop::sample::select(vec![200u16, 201, 204, 302, 404, 500, 599]),
        prop::collection::vec(
            prop_oneof![
                Just("Content-Type: text/plain".to_owned()),
                Just("Connection: keep-alive".to_owned()),
                Just("Connection: close, X-Gone".to_owned()),
                Just("X-Gone: 1".to_owned()),
                Just("Set-Cookie: a=1".to_owned()),
                "X-[a-z]{1,5}: [ -~]{0,8}",
            ],
            0..5,
        ),
        prop::collection::vec(any::<u8>(), 0..300),
        any::<bool>(),
        prop::collection::vec(any::<Index>(), 0..5),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(status, headers, body, chunked, cuts, interim, trailers)| {
                let mut w = Vec::new();
                if interim {
                    w.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                }
                w.extend_from_slice(format!("HTTP/1.1 {status} Reason\r\n").as_bytes());
                for h in &headers {
                    w.extend_from_slice(h.as_bytes());
                    w.extend_from_slice(b"\r\n");
                }
                if chunked {
                    w.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                    let mut at: Vec<usize> = cuts.iter().map(|i| i.index(body.len() + 1)).collect();
                    at.push(body.len());
                    at.sort_unstable();
                    let mut start = 0;
                    for (k, end) in at.into_iter().enumerate() {
                        if end > start {
                            let ext = if k % 2 == 0 { "" } else { ";x=1" };
                            w.extend_from_slice(format!("{:x}{ext}\r\n", end - start).as_bytes());
                            w.extend_from_slice(&body[start..end]);
                            w.extend_from_slice(b"\r\n");
                            start = end;
                        }
                    }
                    w.extend_from_slice(b"0\r\n");
                    if trailers {
                        w.extend_from_slice(b"X-Trailer: t\r\n");
                    }
                    w.extend_from_slice(b"\r\n");
                } else {
                    w.extend_from_slice(
                        format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes(),
                    );
                    w.extend_from_slice(&body);
                }
                (w, status, body, chunked)
            },
        )
}

/// Feeds `reads` to a parser: the head (if any), the body's bytes, whether it completed,
/// and the error's code (if one came).
type Fed = (Vec<Part>, Vec<u8>, bool, Option<&'static str>);

fn feed(reads: &[&[u8]]) -> Fed {
    let mut p = ResponseParser::default();
    let mut parts = Vec::new();
    let mut error = None;
    for r in reads {
        if let Err(e) = p.feed(r, &mut parts) {
            error = Some(e.code.expect("a code"));
            break;
        }
    }
    let mut heads = Vec::new();
    let mut body = Vec::new();
    for part in parts {
        match part {
            Part::Head(h) => heads.push(Part::Head(h)),
            Part::Body(b) => body.extend(b),
        }
    }
    (heads, body, p.complete(), error)
}

proptest! {
    #![proptest_config(cases(CASES))]

    /// A response cut anywhere gives its one head, its body's bytes, and (chunked) its end;
    /// hop-by-hop and framing headers are left out.
    #[test]
    fn responses_are_read_whatever_the_cuts((wire, status, body, chunked) in response(), reads in reads()) {
        let (heads, got, complete, error) = feed(&reads.split(&wire));
        prop_assert_eq!(error, None);
        prop_assert_eq!(heads.len(), 1);
        let Part::Head(head) = &heads[0] else { unreachable!() };
        prop_assert_eq!(head.status, status);
        let text = String::from_utf8_lossy(&wire).to_ascii_lowercase();
        let listed = text.contains("connection: close, x-gone");
        for (name, _) in &head.headers {
            let n = name.to_ascii_lowercase();
            prop_assert!(!["connection", "transfer-encoding", "content-length"].contains(&n.as_str()), "{}", name);
            prop_assert!(!(listed && n == "x-gone"), "a header Connection lists: {}", name);
        }
        prop_assert!(got == body, "the body differs");
        prop_assert_eq!(complete, chunked);
    }

    /// Any bytes (or a response with bytes changed) give the same parts, however they are
    /// cut, or an error ERR_HTTP_INVALID_RESPONSE: never a panic.
    #[test]
    fn any_response_bytes_parse_the_same_or_fail(
        wire in prop_oneof![
            1 => prop::collection::vec(any::<u8>(), 0..200),
            2 => (response(), prop::collection::vec((any::<Index>(), any::<u8>()), 1..3)).prop_map(
                |((mut w, ..), hits)| {
                    for (at, x) in hits {
                        let i = at.index(w.len());
                        w[i] ^= x;
                    }
                    w
                }
            ),
        ],
        reads in reads(),
    ) {
        let whole = feed(&[&wire]);
        let cut = feed(&reads.split(&wire));
        if let Some(code) = whole.3 {
            prop_assert_eq!(code, "ERR_HTTP_INVALID_RESPONSE");
        }
        prop_assert_eq!(&whole.0, &cut.0);
        prop_assert_eq!(whole.3, cut.3);
        if whole.3.is_none() {
            prop_assert!(whole.1 == cut.1, "the body depends on the cuts");
            prop_assert_eq!(whole.2, cut.2);
        }
    }
}
