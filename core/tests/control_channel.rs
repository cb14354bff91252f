//! The listener on generated control-channel messages, through its public API: a fake
//! service sends one open control channel thousands of messages (accepts with fields
//! missing or of the wrong kind, requests, JSON of any shape, text that is not JSON, binary
//! messages), and the listener reports exactly the well-formed accepts, in order and as
//! sent, and stays online: no panic, no lost channel.
//!
//! Message count: `MESSAGES` per `cargo test`; `PROPTEST_CASES` sets another.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyco_core::listener::request::request_url;
use hyco_core::listener::{
    self, AcceptRequest, ListenerCommand, ListenerEvent, ListenerOptions, ListenerSink,
};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// Messages sent per `cargo test`.
const MESSAGES: u32 = 2000;

const WAIT: Duration = Duration::from_secs(20);

struct Collect(Mutex<mpsc::UnboundedSender<ListenerEvent>>);

impl ListenerSink for Collect {
    fn push(&self, event: ListenerEvent) {
        if let Ok(tx) = self.0.lock() {
            let _ = tx.send(event);
        }
    }
}

/// Any JSON value, a few levels deep (object keys too short to be `accept` or `request`).
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        ".{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(("[a-z]{0,5}", inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<String, Value>>())),
        ]
    })
}

/// A value that is usually of the right kind, sometimes missing or of another.
fn maybe(right: impl Strategy<Value = Value> + 'static) -> impl Strategy<Value = Option<Value>> {
    prop_oneof![6 => right.prop_map(Some), 1 => Just(None), 1 => json_value().prop_map(Some)]
}

/// An `accept` message's value near the protocol's.
fn accept() -> impl Strategy<Value = Value> {
    (
        maybe("[a-z0-9-]{1,12}".prop_map(Value::String)),
        maybe(
            ("[a-zA-Z%]{0,4}", "(/[a-z%]{0,4}){0,2}", "[a-z0-9=&-]{0,12}").prop_map(|(e, p, q)| {
                json!(format!("wss://ns:443/$hc/{e}{p}?sb-hc-action=accept&{q}"))
            }),
        ),
        maybe(
            prop::collection::vec(("[A-Za-z-]{1,8}", json_value()), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ),
        maybe((json_value(), json_value()).prop_map(|(a, p)| json!({ "address": a, "port": p }))),
    )
        .prop_map(|(id, address, headers, remote)| {
            let mut m = Map::new();
            for (k, v) in [
                ("id", id),
                ("address", address),
                ("connectHeaders", headers),
                ("remoteEndpoint", remote),
            ] {
                if let Some(v) = v {
                    m.insert(k.to_owned(), v);
                }
            }
            Value::Object(m)
        })
}

/// A `request` that never sends the listener to the network: served inline (HTTP is off,
/// so answered 501 on the control channel) or ignored (no address).
fn request() -> impl Strategy<Value = Value> {
    (
        prop::option::of("[a-z0-9]{1,8}"),
        any::<bool>(),
        any::<bool>(),
        json_value(),
    )
        .prop_map(|(id, with_address, body, headers)| {
            let mut r = json!({ "method": "GET", "body": body, "requestHeaders": headers });
            if let Some(id) = id {
                r["id"] = json!(id);
            }
            if with_address {
                r["address"] = json!("wss://127.0.0.1:1/$hc/hc?sb-hc-action=request");
            }
            r
        })
}

/// One control message: text (JSON or not) or binary.
fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        6 => accept().prop_map(|a| Message::text(json!({ "accept": a }).to_string())),
        2 => request().prop_map(|r| Message::text(json!({ "request": r }).to_string())),
        2 => json_value().prop_map(|v| Message::text(v.to_string())),
        1 => ".{0,30}".prop_map(Message::text),
        1 => Just(Message::text("{\"accept\":")),
        1 => prop::collection::vec(any::<u8>(), 0..30).prop_map(Message::binary),
    ]
}

/// What the listener must report for a message: the accept it describes, if well formed.
fn expected(message: &Message, entity: &str) -> Option<AcceptRequest> {
    let Message::Text(text) = message else {
        return None;
    };
    let value: Value = serde_json::from_str(text.as_str()).ok()?;
    let a = value.get("accept")?;
    let id = a.get("id")?.as_str()?;
    let address = a.get("address")?.as_str()?;
    let headers = a
        .get("connectHeaders")
        .and_then(Value::as_object)
        .map(|h| {
            h.iter()
                .map(|(k, v)| {
                    let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                    (k.clone(), v)
                })
                .collect()
        })
        .unwrap_or_default();
    let remote = a.get("remoteEndpoint");
    Some(AcceptRequest {
        id: id.to_owned(),
        url: request_url(address, entity),
        address: address.to_owned(),
        headers,
        remote_address: remote
            .and_then(|r| r.get("address"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        remote_port: remote
            .and_then(|r| r.get("port"))
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok()),
    })
}

#[tokio::test]
async fn the_listener_reports_exactly_the_well_formed_accepts() {
    let count = common::cases(MESSAGES).cases;
    let mut runner = TestRunner::default();
    let strategy = message();
    let messages: Vec<Message> = (0..count)
        .map(|_| strategy.new_tree(&mut runner).expect("a message").current())
        .collect();
    let entity = "hc";
    let expected_accepts: Vec<AcceptRequest> = messages
        .iter()
        .filter_map(|m| expected(m, entity))
        .collect();
    // The last word, so that the listener's reports can be awaited to the end.
    let last = AcceptRequest {
        id: "the-last".into(),
        url: "/".into(),
        address: "wss://ns:443/$hc/hc?sb-hc-action=accept".into(),
        headers: vec![],
        remote_address: None,
        remote_port: None,
    };

    let server = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let port = server.local_addr().expect("its address").port();
    let to_send = messages.clone();
    let last_address = last.address.clone();
    let service = tokio::spawn(async move {
        let (tcp, _) = server.accept().await.expect("the listener");
        let ws = tokio_tungstenite::accept_async(tcp)
            .await
            .expect("the control channel's handshake");
        let (mut tx, mut rx) = ws.split();
        // Read what the listener sends (501 answers), as the service does.
        let reader = tokio::spawn(async move { while let Some(Ok(_)) = rx.next().await {} });
        for m in to_send {
            tx.feed(m).await.expect("a control message");
        }
        tx.send(Message::text(
            json!({ "accept": { "id": "the-last", "address": last_address } }).to_string(),
        ))
        .await
        .expect("the last message");
        reader.await.ok();
    });

    let mut opts = ListenerOptions::new(format!(
        "ws://127.0.0.1:{port}/$hc/{entity}?sb-hc-action=listen"
    ));
    opts.keep_alive = None;
    let (tx, mut events) = mpsc::unbounded_channel();
    let handle = listener::start(opts, Arc::new(Collect(Mutex::new(tx))));
    let mut accepts = Vec::new();
    loop {
        let ev = tokio::time::timeout(WAIT, events.recv())
            .await
            .expect("a listener event in time")
            .expect("the listener is running");
        match ev {
            ListenerEvent::NeedToken { request, .. } => {
                handle.send(ListenerCommand::Token {
                    request,
                    result: Ok(listener::Token::new(
                        "SharedAccessSignature sr=a&sig=b&se=4102444800&skn=r",
                    )),
                });
            }
            ListenerEvent::Connecting { error: None, .. } | ListenerEvent::Online => {}
            ListenerEvent::Accept(a) if a.id == "the-last" && a.address == last.address => break,
            ListenerEvent::Accept(a) => accepts.push(a),
            other => panic!("the listener did not stay online: {other:?}"),
        }
    }
    assert_eq!(accepts.len(), expected_accepts.len());
    for (got, want) in accepts.iter().zip(&expected_accepts) {
        assert_eq!(got, want);
    }
    assert!(
        expected_accepts.len() > count as usize / 10,
        "the generator makes too few well-formed accepts to mean anything"
    );
    handle.send(ListenerCommand::Close);
    service.abort();
}
