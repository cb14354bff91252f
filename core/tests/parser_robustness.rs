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

use hyco_core::socket::handshake::{check_response, parse_response_head};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::Value;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use common::cases;

/// Cases per property per `cargo test`.
const CASES: u32 = 1000;

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
