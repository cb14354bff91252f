//! HTTP requests through the emulator ("Request operation" of the protocol), against
//! hand-written peers: a raw HTTP/1.1 sender and a listener speaking the control channel.

#[path = "support/http_peers.rs"]
mod peers;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::SinkExt;
use hyco_core::relay::{
    Entities, HybridConnectionConfig, LocalRelay, RelayConfig, RelayEvent, Right, Rule,
};
use hyco_core::sas;
use peers::*;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

async fn start(config: RelayConfig) -> Arc<LocalRelay> {
    LocalRelay::start(config, None).await.expect("relay starts")
}

/// A relay whose events go to a channel.
async fn start_with_events(
    config: RelayConfig,
) -> (Arc<LocalRelay>, mpsc::UnboundedReceiver<RelayEvent>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let tx = Mutex::new(tx);
    let sink: hyco_core::relay::EventSink = Arc::new(move |e| {
        let _ = tx.lock().unwrap().send(e);
    });
    (LocalRelay::start(config, Some(sink)).await.unwrap(), rx)
}

async fn next_event(rx: &mut mpsc::UnboundedReceiver<RelayEvent>, kind: &str) -> RelayEvent {
    within(kind, async {
        loop {
            let e = rx.recv().await.expect("events");
            if e.kind == kind {
                return e;
            }
        }
    })
    .await
}

fn body_of(n: usize, seed: u32) -> Vec<u8> {
    (0..n as u32)
        .map(|i| ((i.wrapping_mul(31) ^ seed) % 251) as u8)
        .collect()
}

#[tokio::test]
async fn get_inline_carries_every_field_and_strips_what_the_service_strips() {
    let relay = start(RelayConfig::default()).await;
    let mut control = listen(&relay, "hc").await;
    let tok = send_token(&relay, "hc");
    let target = format!(
        "/hc/sub/a%20b?app=1&sb-hc-token={}&sb-hc-id=track&sb-hc-undefined&keep=%2B",
        hyco_core::encode::encode_uri_component(&tok)
    );
    let mut sender = Sender::connect(&relay).await;
    let port = sender.local_port();
    sender
        .request(
            "GET",
            &target,
            &[
                ("Connection", "keep-alive, X-Hop"),
                ("X-Hop", "hop"),
                ("Keep-Alive", "timeout=5"),
                ("TE", "trailers"),
                ("Proxy-Connection", "keep-alive"),
                ("X-Multi", "a"),
                ("x-multi", "b"),
                ("Cookie", "c1=1"),
                ("Cookie", "c2=2"),
                ("Authorization", "Bearer app-token"),
                ("User-Agent", "raw-test"),
            ],
            b"",
        )
        .await;
    let r = next_request(&mut control).await;
    let id = r["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("track_G"), "{id}");
    assert_eq!(
        r["address"].as_str().unwrap(),
        format!(
            "ws://127.0.0.1:{}/$hc/hc?sb-hc-action=request&sb-hc-id={id}",
            relay.port()
        )
    );
    assert_eq!(
        r["requestTarget"],
        "/hc/sub/a%20b?app=1&sb-hc-undefined&keep=%2B"
    );
    assert_eq!(r["method"], "GET");
    assert_eq!(
        r["remoteEndpoint"],
        json!({ "address": "127.0.0.1", "port": port })
    );
    assert_eq!(r["body"], false);
    let headers = r["requestHeaders"].as_object().unwrap();
    let mut names: Vec<&str> = headers.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "Authorization",
            "Cookie",
            "Host",
            "User-Agent",
            "Via",
            "X-Multi"
        ]
    );
    assert_eq!(headers["Host"], format!("127.0.0.1:{}", relay.port()));
    assert_eq!(
        headers["Via"],
        format!("1.1 127.0.0.1:{}", relay.port()),
        "the relay adds itself"
    );
    assert_eq!(headers["X-Multi"], "a, b");
    assert_eq!(headers["Cookie"], "c1=1; c2=2");
    assert_eq!(
        headers["Authorization"], "Bearer app-token",
        "passed on as-is (rule 3)"
    );
    assert!(
        !r.to_string().contains("SharedAccessSignature"),
        "no token reaches the listener"
    );

    respond(
        &mut control,
        &id,
        200,
        json!({ "Content-Type": "text/plain", "X-Listener": "yes", "Content-Length": "99", "Connection": "close" }),
        Some(b"hi"),
    )
    .await;
    let resp = sender.response(false).await;
    assert_eq!((resp.status, resp.reason.as_str()), (200, "OK"));
    assert_eq!(resp.body, b"hi");
    assert_eq!(
        resp.header("Content-Length"),
        Some("2"),
        "the relay frames the body"
    );
    assert_eq!(resp.header("X-Listener"), Some("yes"));
    assert_eq!(
        resp.header("Via"),
        Some(format!("1.1 127.0.0.1:{}", relay.port()).as_str())
    );
    assert_eq!(
        resp.header("Connection"),
        None,
        "hop-by-hop headers of the listener dropped"
    );

    // Keep-alive: the next request on the same connection, token in the header this time.
    sender
        .request("DELETE", "/hc/x", &[("ServiceBusAuthorization", &tok)], b"")
        .await;
    let r = next_request(&mut control).await;
    assert_ne!(r["id"], json!(id));
    assert!(r["requestHeaders"].get("ServiceBusAuthorization").is_none());
    assert_eq!(r["method"], "DELETE");
    let id = r["id"].as_str().unwrap().to_owned();
    control
        .send(Message::text(
            json!({ "response": { "requestId": id, "statusCode": "201", "statusDescription": "Made It", "body": false } })
                .to_string(),
        ))
        .await
        .unwrap();
    let resp = sender.response(false).await;
    assert_eq!((resp.status, resp.reason.as_str()), (201, "Made It"));
    assert_eq!(resp.header("Content-Length"), Some("0"));
    relay.stop().await;
}

#[tokio::test]
async fn small_bodies_go_inline_as_one_message_and_large_inline_ones_in_frames() {
    let (relay, mut events) = start_with_events(RelayConfig::default()).await;
    let tok = send_token(&relay, "hc");
    let mut control = listen(&relay, "hc").await;
    let mut sender = Sender::connect(&relay).await;
    sender
        .request(
            "POST",
            "/hc",
            &[
                ("ServiceBusAuthorization", &tok),
                ("Expect", "100-continue"),
            ],
            b"hello",
        )
        .await;
    let r = next_request(&mut control).await;
    assert_eq!(r["body"], true);
    assert!(
        r["requestHeaders"].get("Expect").is_none(),
        "100-continue is the relay's"
    );
    assert!(r["requestHeaders"].get("Content-Length").is_none());
    assert_eq!(next_binary(&mut control).await, b"hello");
    let id = r["id"].as_str().unwrap();
    respond(&mut control, id, 200, json!({}), Some(b"echo")).await;
    assert_eq!(sender.response(false).await.body, b"echo");
    control.close(None).await.unwrap();
    next_event(&mut events, "listenerClosed").await;

    // 40 KiB (inline: under 64 KiB) reaches the listener as one message of 16 KiB frames.
    let mut raw = RawListener::listen(&relay, "hc").await;
    let body = body_of(40 * 1024, 7);
    let mut sender = Sender::connect(&relay).await;
    sender
        .request("PUT", "/hc", &[("ServiceBusAuthorization", &tok)], &body)
        .await;
    let (binary, frames) = raw.next_frames().await;
    assert!(!binary);
    let request: Value = serde_json::from_slice(&frames.concat()).unwrap();
    assert_eq!(request["request"]["body"], true);
    let (binary, frames) = raw.next_frames().await;
    assert!(binary);
    let sizes: Vec<usize> = frames.iter().map(Vec::len).collect();
    assert_eq!(sizes, [16384, 16384, 8192]);
    assert_eq!(frames.concat(), body);
    drop(raw);
    // Its listener left without answering: 502 from the relay (no Via).
    let resp = sender.response(false).await;
    assert_eq!(resp.status, 502);
    assert_eq!(resp.header("Via"), None);
    relay.stop().await;
}

/// Serves one address-only request: opens the rendezvous, checks the request, reads the
/// body, answers with `reply` (streamed in three frames).
async fn serve_rendezvous(control: &mut Ws, expect_body: &[u8], reply: &[u8]) -> (Ws, Value) {
    let msg = next_json(control).await;
    let address = msg["request"]["address"].as_str().unwrap().to_owned();
    assert_eq!(
        msg["request"].as_object().unwrap().len(),
        1,
        "address only: {msg}"
    );
    assert!(
        address.contains("sb-hc-action=request&sb-hc-id="),
        "{address}"
    );
    let mut rv = open_ws(&address, None)
        .await
        .expect("rendezvous opens without a token");
    let r = next_request(&mut rv).await;
    assert_eq!(r["address"], json!(address));
    assert_eq!(r["body"], true);
    assert!(r["method"].is_string() && r["requestHeaders"].is_object());
    let body = within("the body", next_binary(&mut rv)).await;
    assert_eq!(body.len(), expect_body.len());
    assert!(body == expect_body, "the body arrives intact");
    let id = r["id"].as_str().unwrap();
    rv.send(Message::text(
        json!({ "response": { "requestId": id, "statusCode": 200, "responseHeaders": { "X-Len": body.len().to_string() }, "body": true } })
            .to_string(),
    ))
    .await
    .unwrap();
    let third = reply.len() / 3;
    let pieces = [
        &reply[..third],
        &reply[third..2 * third],
        &reply[2 * third..],
    ];
    for (i, p) in pieces.iter().enumerate() {
        let opcode = if i == 0 { Data::Binary } else { Data::Continue };
        rv.send(Message::Frame(Frame::message(
            p.to_vec(),
            OpCode::Data(opcode),
            i == 2,
        )))
        .await
        .unwrap();
    }
    (rv, r)
}

#[tokio::test]
async fn large_bodies_go_over_a_rendezvous_streamed_both_ways() {
    let relay = start(RelayConfig::default()).await;
    let tok = send_token(&relay, "hc");
    let mut control = listen(&relay, "hc").await;
    for size in [1024 * 1024, 20 * 1024 * 1024] {
        let body = body_of(size, size as u32);
        let reply = body_of(300_000, 3);
        let mut sender = Sender::connect(&relay).await;
        let send = {
            let body = body.clone();
            let tok = tok.clone();
            async move {
                sender
                    .request(
                        "POST",
                        "/hc/upload",
                        &[("ServiceBusAuthorization", &tok)],
                        &body,
                    )
                    .await;
                sender
            }
        };
        let (mut sender, (_rv, r)) =
            tokio::join!(send, serve_rendezvous(&mut control, &body, &reply));
        assert_eq!(r["method"], "POST");
        assert_eq!(r["requestTarget"], "/hc/upload");
        let resp = sender.response(false).await;
        assert_eq!(resp.status, 200);
        assert!(resp.chunked, "a streamed response is chunked");
        assert_eq!(resp.header("X-Len"), Some(size.to_string().as_str()));
        assert!(resp.body == reply);
        assert_eq!(relay.stats().pending_requests, 0);
    }
    relay.stop().await;
}

#[tokio::test]
async fn chunked_request_bodies_go_over_a_rendezvous() {
    let relay = start(RelayConfig::default()).await;
    let tok = send_token(&relay, "hc");
    let mut control = listen(&relay, "hc").await;
    let mut sender = Sender::connect(&relay).await;
    sender
        .request(
            "POST",
            "/hc",
            &[
                ("ServiceBusAuthorization", &tok),
                ("Transfer-Encoding", "chunked"),
            ],
            b"5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
        )
        .await;
    let (_rv, r) = serve_rendezvous(&mut control, b"hello world", b"abcdef").await;
    assert!(r["requestHeaders"].get("Transfer-Encoding").is_none());
    let resp = sender.response(false).await;
    assert_eq!(resp.body, b"abcdef");
    relay.stop().await;
}

#[tokio::test]
async fn a_kept_alive_connection_carries_requests_then_a_websocket_upgrade() {
    let relay = start(RelayConfig::default()).await;
    let tok = send_token(&relay, "hc");
    let auth = ("ServiceBusAuthorization", tok.as_str());
    let mut control = listen(&relay, "hc").await;
    let mut sender = Sender::connect(&relay).await;
    // A body that looks like an upgrade head: framed by its length, it stays a body.
    let looks_like_a_head: &[u8] =
        b"GET /$hc/hc HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
    sender
        .request("POST", "/hc/a", &[auth], looks_like_a_head)
        .await;
    let r = next_request(&mut control).await;
    assert_eq!(next_binary(&mut control).await, looks_like_a_head);
    respond(
        &mut control,
        r["id"].as_str().unwrap(),
        200,
        json!({}),
        Some(b"a"),
    )
    .await;
    assert_eq!(sender.response(false).await.body, b"a");
    // A chunked body goes over a rendezvous, which the connection keeps for later requests.
    sender
        .request(
            "POST",
            "/hc/b",
            &[auth, ("Transfer-Encoding", "chunked")],
            b"3\r\nabc\r\n0\r\n\r\n",
        )
        .await;
    let (mut rv, _) = serve_rendezvous(&mut control, b"abc", b"bbb").await;
    assert_eq!(sender.response(false).await.body, b"bbb");

    // A WebSocket sender's upgrade on the same connection, as the service takes it.
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    sender
        .request(
            "GET",
            "/$hc/hc?sb-hc-action=connect",
            &[
                auth,
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Key", key),
                ("Sec-WebSocket-Version", "13"),
            ],
            b"",
        )
        .await;
    let accept = next_json(&mut control).await;
    let address = accept["accept"]["address"].as_str().unwrap();
    let mut peer = open_ws(address, None).await.expect("the accept succeeds");
    let mut ws = sender.upgraded().await;
    ws.send(Message::text("upgraded")).await.unwrap();
    assert_eq!(
        next_message(&mut peer).await,
        Some(Message::text("upgraded"))
    );
    peer.send(Message::binary(b"back".to_vec())).await.unwrap();
    assert_eq!(
        next_message(&mut ws).await,
        Some(Message::binary(b"back".to_vec()))
    );
    // The connection carries no more HTTP requests: its rendezvous is let go.
    assert_eq!(close_code(&mut rv).await, Some(1001));
    relay.stop().await;
}

#[tokio::test]
async fn a_websocket_upgrade_that_declares_a_body_is_refused() {
    let relay = start(RelayConfig::default()).await;
    let _control = listen(&relay, "hc").await;
    let tok = send_token(&relay, "hc");
    let framings: [(&str, &str, &[u8]); 2] = [
        ("Content-Length", "4", b"abcd"),
        ("Transfer-Encoding", "chunked", b"4\r\nabcd\r\n0\r\n\r\n"),
    ];
    for (name, value, body) in framings {
        let mut sender = Sender::connect(&relay).await;
        sender
            .request(
                "GET",
                "/$hc/hc?sb-hc-action=connect",
                &[
                    ("ServiceBusAuthorization", tok.as_str()),
                    ("Upgrade", "websocket"),
                    ("Connection", "Upgrade"),
                    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                    ("Sec-WebSocket-Version", "13"),
                    (name, value),
                ],
                body,
            )
            .await;
        let r = sender.response(false).await;
        assert_eq!(
            (r.status, r.reason.as_str()),
            (400, "Bad Request: a WebSocket upgrade carries no body"),
            "{name}"
        );
        assert!(sender.closed().await, "{name}: the connection closes");
    }
    relay.stop().await;
}

#[tokio::test]
async fn a_listener_opened_rendezvous_streams_the_response_and_carries_later_requests() {
    let (relay, mut events) = start_with_events(RelayConfig::default()).await;
    let tok = send_token(&relay, "hc");
    let mut control = listen(&relay, "hc").await;
    let mut sender = Sender::connect(&relay).await;
    sender
        .request("GET", "/hc/big", &[("ServiceBusAuthorization", &tok)], b"")
        .await;
    let r = next_request(&mut control).await;
    // A large response: the listener opens the request's address; the relay sends nothing
    // first; the listener writes the response there.
    let mut rv = open_ws(r["address"].as_str().unwrap(), None).await.unwrap();
    let reply = body_of(200_000, 9);
    rv.send(Message::text(
        json!({ "response": { "requestId": r["id"], "statusCode": 200, "responseHeaders": { "Set-Cookie": ["a=1; Path=/", "b=2; Path=/"] }, "body": true } })
            .to_string(),
    ))
    .await
    .unwrap();
    for (i, piece) in reply.chunks(50_000).enumerate() {
        let opcode = if i == 0 { Data::Binary } else { Data::Continue };
        rv.send(Message::Frame(Frame::message(
            piece.to_vec(),
            OpCode::Data(opcode),
            false,
        )))
        .await
        .unwrap();
    }
    rv.send(Message::Frame(Frame::message(
        Vec::new(),
        OpCode::Data(Data::Continue),
        true,
    )))
    .await
    .unwrap();
    let resp = sender.response(false).await;
    assert!(resp.chunked);
    assert!(resp.body == reply);
    assert_eq!(resp.all("Set-Cookie"), ["a=1; Path=/", "b=2; Path=/"]);
    // The address was good once.
    assert_eq!(
        open_ws(r["address"].as_str().unwrap(), None).await.err(),
        Some(403)
    );

    // The sender's next request arrives on the rendezvous, in full, with its body.
    sender
        .request(
            "POST",
            "/hc/again",
            &[("ServiceBusAuthorization", &tok)],
            b"second",
        )
        .await;
    let again = next_request(&mut rv).await;
    assert_eq!(again["requestTarget"], "/hc/again");
    assert_eq!(again["body"], true);
    assert_eq!(next_binary(&mut rv).await, b"second");
    respond(&mut rv, again["id"].as_str().unwrap(), 202, json!({}), None).await;
    let resp = sender.response(false).await;
    assert_eq!(resp.status, 202);
    let e = next_event(&mut events, "response").await;
    assert_eq!(e.status, Some(200));
    let e = next_event(&mut events, "response").await;
    assert_eq!(e.status, Some(202));

    // The listener closes the rendezvous: the relay closes the sender's connection.
    rv.close(None).await.unwrap();
    assert!(sender.closed().await);
    relay.stop().await;
}

#[tokio::test]
async fn bodiless_responses_have_no_body() {
    let relay = start(RelayConfig::default()).await;
    let tok = send_token(&relay, "hc");
    let mut control = listen(&relay, "hc").await;
    let mut sender = Sender::connect(&relay).await;
    for (method, status) in [("HEAD", 200), ("GET", 204), ("GET", 304), ("GET", 200)] {
        sender
            .request(method, "/hc", &[("ServiceBusAuthorization", &tok)], b"")
            .await;
        let r = next_request(&mut control).await;
        // hyco-https sends a body for HEAD; the relay must not pass it on.
        respond(
            &mut control,
            r["id"].as_str().unwrap(),
            status,
            json!({}),
            Some(b"ignored"),
        )
        .await;
        let resp = sender.response(method == "HEAD").await;
        assert_eq!(resp.status, status);
        assert_eq!(
            resp.header("Content-Length"),
            if status == 200 && method == "GET" {
                Some("7")
            } else {
                None
            }
        );
    }
    // The connection stayed in step: the last GET read exactly its 7 bytes.
    relay.stop().await;
}

#[tokio::test]
async fn refusals_no_listener_bad_tokens_rights_methods() {
    let mut config = RelayConfig {
        entities: Entities::List(vec![
            HybridConnectionConfig {
                name: "hc".into(),
                requires_client_authorization: true,
            },
            HybridConnectionConfig {
                name: "open".into(),
                requires_client_authorization: false,
            },
        ]),
        ..RelayConfig::default()
    };
    config.rules.push(Rule {
        name: "listen-only".into(),
        key: "k".into(),
        rights: vec![Right::Listen],
    });
    let (relay, mut events) = start_with_events(config).await;
    let tok = send_token(&relay, "hc");
    let auth = [("ServiceBusAuthorization", tok.as_str())];
    let r = exchange(&relay, "GET", "/hc", &auth, b"").await;
    assert_eq!(
        (r.status, r.reason.as_str()),
        (404, "There are no listeners connected for the endpoint.")
    );
    assert_eq!(r.header("Via"), None);
    let e = next_event(&mut events, "denied").await;
    assert_eq!(
        (e.status, e.hybrid_connection.as_deref()),
        (Some(404), Some("hc"))
    );
    assert_eq!(
        exchange(&relay, "GET", "/nope", &auth, b"").await.status,
        404
    );

    let mut control = listen(&relay, "hc").await;
    let r = exchange(&relay, "GET", "/hc", &[], b"").await;
    assert_eq!(r.status, 401);
    assert!(r.reason.starts_with("Unauthorized"), "{}", r.reason);
    let r = exchange(
        &relay,
        "GET",
        "/hc",
        &[(
            "ServiceBusAuthorization",
            "SharedAccessSignature sr=x&sig=y&se=1&skn=z",
        )],
        b"",
    )
    .await;
    assert_eq!(r.status, 401);
    let e = next_event(&mut events, "denied").await;
    assert!(!e.message.contains("sig=y"), "{}", e.message);
    let listen_only = sas::create_token(
        &format!("https://127.0.0.1:{}/hc", relay.port()),
        "listen-only",
        "k",
        Some(60.0),
        sas::now_ms(),
    )
    .unwrap();
    assert_eq!(
        exchange(
            &relay,
            "GET",
            "/hc",
            &[("ServiceBusAuthorization", &listen_only)],
            b""
        )
        .await
        .status,
        403
    );
    let other = send_token(&relay, "open");
    assert_eq!(
        exchange(
            &relay,
            "GET",
            "/hc",
            &[("ServiceBusAuthorization", &other)],
            b""
        )
        .await
        .status,
        403
    );
    // Rule 3: with no other token, Authorization carries the relay's (and is stripped).
    let mut sender = Sender::connect(&relay).await;
    sender
        .request("GET", "/hc", &[("Authorization", &tok)], b"")
        .await;
    let req = next_request(&mut control).await;
    assert!(req["requestHeaders"].get("Authorization").is_none());
    respond(
        &mut control,
        req["id"].as_str().unwrap(),
        200,
        json!({}),
        None,
    )
    .await;
    assert_eq!(sender.response(false).await.status, 200);

    assert_eq!(
        exchange(&relay, "CONNECT", "127.0.0.1:1", &auth, b"")
            .await
            .status,
        405
    );
    assert_eq!(
        exchange(
            &relay,
            "GET",
            "/hc",
            &[("Upgrade", "h2c"), ("Connection", "Upgrade")],
            b""
        )
        .await
        .status,
        400
    );
    assert_eq!(
        exchange(&relay, "GET", "/$hc/hc?sb-hc-action=listen", &auth, b"")
            .await
            .status,
        400
    );
    assert_eq!(
        exchange(
            &relay,
            "POST",
            "/hc",
            &[("Content-Length", "1"), ("Content-Length", "2")],
            b""
        )
        .await
        .status,
        400
    );

    // An anonymous Hybrid Connection: no token; Authorization passes as-is.
    let mut open = listen(&relay, "open").await;
    let mut sender = Sender::connect(&relay).await;
    sender
        .request("GET", "/open/x", &[("Authorization", "Basic abc")], b"")
        .await;
    let req = next_request(&mut open).await;
    assert_eq!(req["requestHeaders"]["Authorization"], "Basic abc");
    respond(&mut open, req["id"].as_str().unwrap(), 200, json!({}), None).await;
    assert_eq!(sender.response(false).await.status, 200);
    drop(control);
    relay.stop().await;
}

#[tokio::test]
async fn the_no_listener_status_is_configurable() {
    let relay = start(RelayConfig {
        no_listener_status: 503,
        ..RelayConfig::default()
    })
    .await;
    let _control = listen(&relay, "other").await;
    let tok = send_token(&relay, "other");
    let _ = relay.freeze_listeners(Some("other"), true);
    let r = exchange(
        &relay,
        "GET",
        "/other",
        &[("ServiceBusAuthorization", &tok)],
        b"",
    )
    .await;
    assert_eq!(r.status, 503);
    relay.stop().await;
}

#[tokio::test]
async fn a_listener_that_never_answers_gets_the_sender_a_504() {
    let (relay, mut events) = start_with_events(RelayConfig {
        request_timeout: Duration::from_millis(300),
        ..RelayConfig::default()
    })
    .await;
    let tok = send_token(&relay, "hc");
    let mut control = listen(&relay, "hc").await;
    let mut sender = Sender::connect(&relay).await;
    sender
        .request("GET", "/hc", &[("ServiceBusAuthorization", &tok)], b"")
        .await;
    let r = next_request(&mut control).await;
    let resp = sender.response(false).await;
    assert_eq!(resp.status, 504);
    assert_eq!(
        resp.reason,
        "The request was routed to the listener but the listener did not respond in the required time"
    );
    let body: Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(body["error"]["code"], "GatewayTimeout");
    let e = next_event(&mut events, "requestTimeout").await;
    assert_eq!((e.status, e.id.as_deref()), (Some(504), r["id"].as_str()));
    // A late response is dropped, and the connection serves the next request.
    respond(
        &mut control,
        r["id"].as_str().unwrap(),
        200,
        json!({}),
        Some(b"late"),
    )
    .await;
    sender
        .request("GET", "/hc/2", &[("ServiceBusAuthorization", &tok)], b"")
        .await;
    let r = next_request(&mut control).await;
    respond(
        &mut control,
        r["id"].as_str().unwrap(),
        200,
        json!({}),
        Some(b"on time"),
    )
    .await;
    assert_eq!(sender.response(false).await.body, b"on time");

    // Address-only requests time out too when the listener never opens the rendezvous.
    let mut sender = Sender::connect(&relay).await;
    sender
        .request(
            "POST",
            "/hc",
            &[
                ("ServiceBusAuthorization", &tok),
                ("Transfer-Encoding", "chunked"),
            ],
            b"1\r\nx\r\n",
        )
        .await;
    let _ = next_request(&mut control).await;
    assert_eq!(sender.response(false).await.status, 504);
    assert!(sender.closed().await);
    relay.stop().await;
}

#[tokio::test]
async fn a_sender_leaving_mid_body_closes_the_rendezvous() {
    let relay = start(RelayConfig::default()).await;
    let tok = send_token(&relay, "hc");
    let mut control = listen(&relay, "hc").await;
    let mut sender = Sender::connect(&relay).await;
    let head = format!(
        "POST /hc HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nServiceBusAuthorization: {tok}\r\nContent-Length: 1000000\r\n\r\n",
        relay.port()
    );
    sender.write(head.as_bytes()).await;
    sender.write(&[1u8; 100_000]).await;
    let msg = next_json(&mut control).await;
    let mut rv = open_ws(msg["request"]["address"].as_str().unwrap(), None)
        .await
        .unwrap();
    let _ = next_request(&mut rv).await;
    drop(sender);
    assert_eq!(close_code(&mut rv).await, Some(1001));
    relay.stop().await;
}

#[tokio::test]
async fn junk_on_the_control_channel_is_ignored_and_the_channel_stays_up() {
    let relay = start(RelayConfig::default()).await;
    let tok = send_token(&relay, "hc");
    let mut control = listen(&relay, "hc").await;
    for junk in [
        "not json",
        "{}",
        r#"{"response":7}"#,
        r#"{"response":{"requestId":"nobody","statusCode":200,"body":false}}"#,
        r#"{"response":{"statusCode":200,"body":false}}"#,
    ] {
        control.send(Message::text(junk)).await.unwrap();
    }
    // A response with a body to an unknown id: its body message is dropped with it.
    respond(&mut control, "nobody", 200, json!({}), Some(b"orphan")).await;
    control.send(Message::binary(vec![1, 2, 3])).await.unwrap();

    let mut sender = Sender::connect(&relay).await;
    sender
        .request("GET", "/hc", &[("ServiceBusAuthorization", &tok)], b"")
        .await;
    let r = next_request(&mut control).await;
    let id = r["id"].as_str().unwrap();
    // A 1xx is no final status: the sender gets 502.
    respond(&mut control, id, 101, json!({}), None).await;
    let resp = sender.response(false).await;
    assert_eq!(resp.status, 502);

    sender
        .request("GET", "/hc", &[("ServiceBusAuthorization", &tok)], b"")
        .await;
    let r = next_request(&mut control).await;
    // 502 and 504 from the listener pass through (as the service does), with Via.
    respond(
        &mut control,
        r["id"].as_str().unwrap(),
        504,
        json!({}),
        Some(b"upstream"),
    )
    .await;
    let resp = sender.response(false).await;
    assert_eq!((resp.status, resp.body.as_slice()), (504, &b"upstream"[..]));
    assert!(resp.header("Via").is_some());
    assert_eq!(relay.stats().listeners, 1);
    relay.stop().await;
}

#[tokio::test]
async fn fifty_concurrent_requests_each_get_their_answer() {
    let relay = start(RelayConfig::default()).await;
    let tok = send_token(&relay, "hc");
    let mut control = listen(&relay, "hc").await;
    let listener = tokio::spawn(async move {
        for _ in 0..50 {
            let r = next_request(&mut control).await;
            let body = if r["body"] == true {
                next_binary(&mut control).await
            } else {
                Vec::new()
            };
            let mut answer = r["requestTarget"].as_str().unwrap().as_bytes().to_vec();
            answer.extend_from_slice(&body);
            respond(
                &mut control,
                r["id"].as_str().unwrap(),
                200,
                json!({}),
                Some(&answer),
            )
            .await;
        }
        control
    });
    let mut senders = Vec::new();
    for i in 0..50 {
        let relay = relay.clone();
        let tok = tok.clone();
        senders.push(tokio::spawn(async move {
            let body = format!("#{i}");
            let r = exchange(
                &relay,
                "POST",
                &format!("/hc/{i}"),
                &[("ServiceBusAuthorization", &tok)],
                body.as_bytes(),
            )
            .await;
            assert_eq!(r.status, 200);
            assert_eq!(String::from_utf8(r.body).unwrap(), format!("/hc/{i}#{i}"));
        }));
    }
    for s in senders {
        within("a sender", s).await.unwrap();
    }
    within("the listener", listener).await.unwrap();
    assert_eq!(relay.stats().http_requests, 50);
    assert_eq!(relay.stats().pending_requests, 0);
    relay.stop().await;
}

#[tokio::test]
async fn websocket_senders_and_http_requests_share_a_listener() {
    let relay = start(RelayConfig::default()).await;
    let tok = send_token(&relay, "hc");
    let mut control = listen(&relay, "hc").await;
    let su = hyco_core::uri::action_uri(
        &relay.origin(),
        "hc",
        hyco_core::uri::Action::Connect,
        None,
        None,
    )
    .unwrap();
    let ws_tok = token(&relay, &su);
    let ws_sender = tokio::spawn(async move { open_ws(&su, Some(&ws_tok)).await });
    let mut http_sender = Sender::connect(&relay).await;
    http_sender
        .request("GET", "/hc", &[("ServiceBusAuthorization", &tok)], b"")
        .await;
    let mut seen_accept = None;
    let mut seen_request = None;
    while seen_accept.is_none() || seen_request.is_none() {
        let m = next_json(&mut control).await;
        if let Some(a) = m.get("accept") {
            seen_accept = Some(a.clone());
        } else {
            seen_request = Some(m["request"].clone());
        }
    }
    let accept = seen_accept.unwrap();
    let mut peer = open_ws(accept["address"].as_str().unwrap(), None)
        .await
        .unwrap();
    let mut ws = within("the WebSocket sender", ws_sender)
        .await
        .unwrap()
        .unwrap();
    respond(
        &mut control,
        seen_request.unwrap()["id"].as_str().unwrap(),
        200,
        json!({}),
        Some(b"http"),
    )
    .await;
    assert_eq!(http_sender.response(false).await.body, b"http");
    ws.send(Message::text("ws")).await.unwrap();
    assert_eq!(next_message(&mut peer).await, Some(Message::text("ws")));
    relay.stop().await;
}

#[tokio::test]
async fn stats_and_events_follow_requests() {
    let (relay, mut events) = start_with_events(RelayConfig::default()).await;
    let tok = send_token(&relay, "hc");
    let mut control = listen(&relay, "hc").await;
    let mut sender = Sender::connect(&relay).await;
    let target = format!(
        "/hc?sb-hc-token={}",
        hyco_core::encode::encode_uri_component(&tok)
    );
    sender.request("GET", &target, &[], b"").await;
    let r = next_request(&mut control).await;
    assert_eq!(relay.stats().pending_requests, 1);
    let e = next_event(&mut events, "request").await;
    assert_eq!(e.hybrid_connection.as_deref(), Some("hc"));
    assert_eq!(e.id.as_deref(), r["id"].as_str());
    assert!(
        !e.message.contains("sig="),
        "no token in events: {}",
        e.message
    );
    respond(
        &mut control,
        r["id"].as_str().unwrap(),
        418,
        json!({}),
        None,
    )
    .await;
    assert_eq!(sender.response(false).await.status, 418);
    let e = next_event(&mut events, "response").await;
    assert_eq!(e.status, Some(418));
    let s = relay.stats();
    assert_eq!((s.pending_requests, s.http_requests), (0, 1));
    relay.stop().await;
}

#[tokio::test]
async fn an_idle_streamed_response_is_cut_off() {
    let relay = start(RelayConfig {
        request_timeout: Duration::from_millis(1000),
        ..RelayConfig::default()
    })
    .await;
    let tok = send_token(&relay, "hc");
    let mut control = listen(&relay, "hc").await;
    let mut sender = Sender::connect(&relay).await;
    sender
        .request("GET", "/hc", &[("ServiceBusAuthorization", &tok)], b"")
        .await;
    let r = next_request(&mut control).await;
    let mut rv = open_ws(r["address"].as_str().unwrap(), None).await.unwrap();
    rv.send(Message::text(
        json!({ "response": { "requestId": r["id"], "statusCode": 200, "body": true } })
            .to_string(),
    ))
    .await
    .unwrap();
    rv.send(Message::Frame(Frame::message(
        b"partial".to_vec(),
        OpCode::Data(Data::Binary),
        false,
    )))
    .await
    .unwrap();
    // Nothing more: after the idle timeout the sender's connection ends mid-body and the
    // rendezvous is closed with 1011.
    let mut seen = Vec::new();
    let ended = within("the cut", async {
        let mut chunk = [0u8; 1024];
        loop {
            use tokio::io::AsyncReadExt;
            match sender.tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&chunk[..n]),
            }
        }
    });
    ended.await;
    let text = String::from_utf8_lossy(&seen);
    assert!(
        text.contains("Transfer-Encoding: chunked") && text.contains("7\r\npartial\r\n"),
        "{text}"
    );
    assert!(!text.ends_with("0\r\n\r\n"), "no last chunk: {text}");
    assert_eq!(close_code(&mut rv).await, Some(1011));
    relay.stop().await;
}

#[tokio::test]
async fn a_broken_chunked_body_gets_400_and_closes_the_rendezvous() {
    let relay = start(RelayConfig::default()).await;
    let tok = send_token(&relay, "hc");
    let mut control = listen(&relay, "hc").await;
    let mut sender = Sender::connect(&relay).await;
    sender
        .request(
            "POST",
            "/hc",
            &[
                ("ServiceBusAuthorization", &tok),
                ("Transfer-Encoding", "chunked"),
            ],
            b"3\r\nabc\r\nzz\r\n",
        )
        .await;
    let msg = next_json(&mut control).await;
    let mut rv = open_ws(msg["request"]["address"].as_str().unwrap(), None)
        .await
        .unwrap();
    let _ = next_request(&mut rv).await;
    let resp = sender.response(false).await;
    assert_eq!(resp.status, 400);
    assert_eq!(close_code(&mut rv).await, Some(1011));
    relay.stop().await;
}

#[tokio::test]
async fn a_control_message_over_the_limit_closes_the_channel_with_1009() {
    let relay = start(RelayConfig::default()).await;
    let mut control = listen(&relay, "hc").await;
    // The article: a response body over 64 KiB MUST go over a rendezvous.
    control
        .send(Message::binary(vec![0u8; 64 * 1024 + 1]))
        .await
        .unwrap();
    assert_eq!(close_code(&mut control).await, Some(1009));
    relay.stop().await;
}
