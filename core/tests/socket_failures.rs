//! The client socket when a server breaks the protocol (RFC 6455 section 7.1.7), held to what
//! ws 8 does: the table in `__test__/fixtures/socket-failures.json`, which
//! `__test__/socket-failure-semantics.test.mjs` checks against ws's own client.
//!
//! A raw TCP server completes the handshake by hand, then writes in ONE write the messages
//! before the bad frame, the bad frame and more frames after it. The client must deliver the
//! messages before it, in order, then report the error with ws's code, message and close code,
//! deliver nothing after it, send a close frame with that code (read here, unmasked), and
//! close with 1006 (ws reports 1006 locally after a protocol error, whatever it sent).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyco_core::socket::{self, ConnectOptions, Event, EventSink, SocketOptions};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

const TABLE: &str = include_str!("../../__test__/fixtures/socket-failures.json");
const WAIT: Duration = Duration::from_secs(10);

struct Collect(Mutex<mpsc::UnboundedSender<Event>>);

impl EventSink for Collect {
    fn push(&self, event: Event) {
        if let Ok(tx) = self.0.lock() {
            let _ = tx.send(event);
        }
    }
}

fn hex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "hex of whole bytes: {s}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// The first close frame in what a client sent, unmasked: its code (1005 for none).
fn sent_close_code(mut buf: &[u8]) -> Option<u16> {
    loop {
        if buf.len() < 2 {
            return None;
        }
        let opcode = buf[0] & 0x0f;
        assert!(buf[1] & 0x80 != 0, "client frames are masked");
        let (len, at) = match buf[1] & 0x7f {
            126 => (
                usize::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?])),
                4,
            ),
            127 => {
                let b: [u8; 8] = buf.get(2..10)?.try_into().ok()?;
                (usize::try_from(u64::from_be_bytes(b)).ok()?, 10)
            }
            n => (usize::from(n), 2),
        };
        let mask = buf.get(at..at + 4)?;
        let payload: Vec<u8> = buf
            .get(at + 4..at + 4 + len)?
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        if opcode == 0x8 {
            return Some(if payload.len() >= 2 {
                u16::from_be_bytes([payload[0], payload[1]])
            } else {
                1005
            });
        }
        buf = &buf[at + 4 + len..];
    }
}

/// A server for one client: the handshake, then `wire` in one write; then it reads what the
/// client sends until a close frame, whose code it reports, and ends the connection.
async fn server(wire: Vec<u8>) -> (u16, oneshot::Receiver<Option<u16>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let port = listener.local_addr().expect("its address").port();
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.expect("the client");
        let mut buf = Vec::new();
        let mut b = [0u8; 4096];
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = tcp.read(&mut b).await.expect("the request");
            assert!(n > 0, "the client hung up during its handshake");
            buf.extend_from_slice(&b[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let key = head
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .expect("a key")
            .trim()
            .to_owned();
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        let response = format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n");
        tcp.write_all(response.as_bytes())
            .await
            .expect("the response");
        tcp.write_all(&wire).await.expect("the frames");
        let mut got = buf.split_off(end);
        let code = loop {
            if let Some(code) = sent_close_code(&got) {
                break Some(code);
            }
            match tokio::time::timeout(WAIT, tcp.read(&mut b)).await {
                Ok(Ok(n)) if n > 0 => got.extend_from_slice(&b[..n]),
                _ => break None,
            }
        };
        let _ = tx.send(code);
        let _ = tcp.shutdown().await;
    });
    (port, rx)
}

/// What the client did: its events (Open, Written and CloseReceived left out) up to Closed.
async fn run(wire: Vec<u8>) -> (Vec<Event>, Option<u16>) {
    let (port, sent) = server(wire).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let _handle = socket::connect(
        ConnectOptions {
            url: format!("ws://127.0.0.1:{port}/"),
            headers: vec![],
            protocols: vec![],
            handshake_timeout: WAIT,
            deflate: None,
            ca: vec![],
            proxy: None,
        },
        SocketOptions::default(),
        Arc::new(Collect(Mutex::new(tx))),
    );
    let mut events = Vec::new();
    loop {
        let ev = tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("an event in time")
            .expect("events go on until Closed");
        match ev {
            Event::Open { .. } | Event::Written { .. } | Event::CloseReceived => {}
            Event::Closed { .. } => {
                events.push(ev);
                break;
            }
            other => events.push(other),
        }
    }
    let sent = tokio::time::timeout(WAIT, sent)
        .await
        .expect("the server's read in time")
        .expect("the server's report");
    (events, sent)
}

/// An event as the table writes it.
fn expected_event(e: &Value) -> String {
    let data = e["hex"].as_str().map(hex).unwrap_or_default();
    match e["type"].as_str() {
        Some("message") => format!(
            "message binary={} {:?}",
            e["binary"].as_bool().expect("binary"),
            data
        ),
        Some("ping") => format!("ping {data:?}"),
        other => panic!("an event type the table does not use: {other:?}"),
    }
}

/// A delivered event, written as the table would.
fn delivered_event(e: &Event) -> String {
    match e {
        Event::Message { binary, frames } => {
            format!("message binary={binary} {:?}", frames.concat())
        }
        Event::Ping(data) => format!("ping {data:?}"),
        other => format!("{other:?}"),
    }
}

#[tokio::test]
async fn a_protocol_error_delivers_what_came_before_then_fails_as_ws_does() {
    let table: Value = serde_json::from_str(TABLE).expect("the table is JSON");
    let before = &table["before"];
    let cases = table["cases"].as_array().expect("cases");
    assert!(cases.len() >= 15, "the table lost cases");
    for case in cases {
        let name = case["name"].as_str().expect("a name");
        let mut wire = hex(before["hex"].as_str().expect("before.hex"));
        wire.extend(hex(case["bad"].as_str().expect("bad")));
        wire.extend(hex(table["after"]["hex"].as_str().expect("after.hex")));
        let (events, sent) = run(wire).await;

        let mut expected: Vec<String> = before["events"]
            .as_array()
            .expect("before.events")
            .iter()
            .chain(case["events"].as_array().into_iter().flatten())
            .map(expected_event)
            .collect();
        let error = &case["error"];
        if !error.is_null() {
            expected.push("error".to_owned());
        }
        expected.push("closed".to_owned());
        let got: Vec<String> = events
            .iter()
            .map(|e| match e {
                Event::Error(_) => "error".to_owned(),
                Event::Closed { .. } => "closed".to_owned(),
                other => delivered_event(other),
            })
            .collect();
        // The messages before the bad frame, in order, then the error, and nothing of what
        // followed the bad frame.
        assert_eq!(got, expected, "{name}");

        if let Some(Event::Error(e)) = events.iter().find(|e| matches!(e, Event::Error(_))) {
            assert_eq!(e.code, error["code"].as_str(), "{name}");
            assert_eq!(
                e.message,
                error["message"].as_str().expect("message"),
                "{name}"
            );
            assert_eq!(
                e.close_code.map(u64::from),
                error["closeCode"].as_u64(),
                "{name}"
            );
            assert_eq!(
                e.range_error,
                error["rangeError"].as_bool().expect("rangeError"),
                "{name}"
            );
        }
        assert_eq!(
            sent.map(u64::from),
            case["sentCode"].as_u64(),
            "{name}: the close code the client sent"
        );
        match events.last() {
            Some(Event::Closed { code, reason, .. }) => {
                assert_eq!(Some(u64::from(*code)), case["closeCode"].as_u64(), "{name}");
                assert_eq!(
                    String::from_utf8_lossy(reason),
                    case["closeReason"].as_str().unwrap_or(""),
                    "{name}"
                );
            }
            other => panic!("{name}: the last event is not Closed: {other:?}"),
        }
    }
}
