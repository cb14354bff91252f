//! The emulator against tokio-tungstenite clients playing listener and sender by hand.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyco_core::relay::{Entities, HybridConnectionConfig, LocalRelay, RelayConfig, Right, Rule};
use hyco_core::{sas, uri};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{client_async, WebSocketStream};

type Ws = WebSocketStream<TcpStream>;

const WAIT: Duration = Duration::from_secs(10);

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

fn token(relay: &LocalRelay, target: &str, secs: f64) -> String {
    let rule = &relay.config().rules[0];
    sas::create_token(target, &rule.name, &rule.key, Some(secs), sas::now_ms()).unwrap()
}

/// Opens a WebSocket to `url` with optional token and protocols; Err holds the HTTP status.
async fn open(
    url: &str,
    token: Option<&str>,
    protocols: Option<&str>,
) -> Result<(Ws, Option<String>), (u16, String)> {
    let mut req = url.into_client_request().unwrap();
    if let Some(t) = token {
        req.headers_mut()
            .insert("ServiceBusAuthorization", HeaderValue::from_str(t).unwrap());
    }
    if let Some(p) = protocols {
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_str(p).unwrap());
    }
    let authority = req.uri().authority().unwrap().as_str().to_owned();
    let tcp = TcpStream::connect(authority).await.unwrap();
    match client_async(req, tcp).await {
        Ok((ws, resp)) => {
            let proto = resp
                .headers()
                .get("Sec-WebSocket-Protocol")
                .map(|v| v.to_str().unwrap().to_owned());
            Ok((ws, proto))
        }
        Err(WsError::Http(resp)) => Err((
            resp.status().as_u16(),
            resp.status().canonical_reason().unwrap_or("").to_owned(),
        )),
        Err(e) => panic!("unexpected handshake error: {e}"),
    }
}

async fn start(config: RelayConfig) -> std::sync::Arc<LocalRelay> {
    LocalRelay::start(config, None).await.expect("relay starts")
}

async fn listen(relay: &LocalRelay, hc: &str) -> Ws {
    let u = uri::action_uri(&relay.origin(), hc, uri::Action::Listen, None, None).unwrap();
    open(&u, Some(&token(relay, &u, 60.0)), None)
        .await
        .expect("listener connects")
        .0
}

async fn next_accept(control: &mut Ws) -> serde_json::Value {
    loop {
        match within("an accept message", control.next()).await {
            Some(Ok(Message::Text(t))) => {
                return serde_json::from_str::<serde_json::Value>(&t).unwrap()["accept"].clone()
            }
            Some(Ok(_)) => continue,
            other => panic!("control channel ended: {other:?}"),
        }
    }
}

async fn next_data(ws: &mut Ws) -> Message {
    loop {
        match within("a message", ws.next()).await {
            Some(Ok(m @ (Message::Text(_) | Message::Binary(_) | Message::Close(_)))) => return m,
            Some(Ok(_)) => continue,
            other => panic!("stream ended: {other:?}"),
        }
    }
}

#[tokio::test]
async fn relays_messages_and_close_codes_end_to_end() {
    let relay = start(RelayConfig::default()).await;
    let mut control = listen(&relay, "hc").await;
    let su = uri::action_uri(
        &relay.origin(),
        "hc/sub?x=1",
        uri::Action::Connect,
        None,
        Some("track-1"),
    )
    .unwrap();
    let tok = token(&relay, &su, 60.0);
    let sender = tokio::spawn(async move { open(&su, Some(&tok), Some("chat, other")).await });
    let accept = next_accept(&mut control).await;
    assert_eq!(accept["id"], "track-1");
    let address = accept["address"].as_str().unwrap().to_owned();
    assert!(
        address.ends_with("/$hc/hc/sub?x=1&sb-hc-action=accept&sb-hc-id=track-1"),
        "{address}"
    );
    assert!(accept["connectHeaders"]["Sec-WebSocket-Key"].is_string());
    assert!(accept["connectHeaders"]
        .get("ServiceBusAuthorization")
        .is_none());
    assert_eq!(accept["remoteEndpoint"]["address"], "127.0.0.1");
    let (mut listener_side, proto) = open(&address, None, Some("chat"))
        .await
        .expect("accept succeeds");
    assert_eq!(proto.as_deref(), Some("chat"));
    let (mut sender, sender_proto) = within("the sender", sender)
        .await
        .unwrap()
        .expect("sender connects");
    assert_eq!(sender_proto.as_deref(), Some("chat"));
    assert_eq!(relay.stats().connections, 1);

    sender.send(Message::text("hello")).await.unwrap();
    assert_eq!(next_data(&mut listener_side).await, Message::text("hello"));
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    listener_side
        .send(Message::binary(big.clone()))
        .await
        .unwrap();
    assert_eq!(next_data(&mut sender).await, Message::binary(big));

    // Address used once: a second accept is refused.
    assert_eq!(
        open(&address, None, None).await.err().map(|e| e.0),
        Some(403)
    );

    sender
        .close(Some(CloseFrame {
            code: CloseCode::from(4001),
            reason: "bye".into(),
        }))
        .await
        .unwrap();
    match next_data(&mut listener_side).await {
        Message::Close(Some(f)) => {
            assert_eq!((u16::from(f.code), f.reason.as_str()), (4001, "bye"))
        }
        other => panic!("expected a close, got {other:?}"),
    }
    relay.stop().await;
    assert_eq!(relay.stats().listeners, 0);
}

#[tokio::test]
async fn reject_gives_410_to_the_listener_and_the_status_to_the_sender() {
    let relay = start(RelayConfig::default()).await;
    let mut control = listen(&relay, "hc").await;
    let su = uri::action_uri(&relay.origin(), "hc", uri::Action::Connect, None, None).unwrap();
    let tok = token(&relay, &su, 60.0);
    let sender = tokio::spawn(async move { open(&su, Some(&tok), None).await.err() });
    let accept = next_accept(&mut control).await;
    let id = accept["id"].as_str().unwrap();
    assert_eq!(id.len(), 36, "a generated UUID: {id}");
    let reject = format!(
        "{}&sb-hc-statusCode=403&sb-hc-statusDescription=go%20away",
        accept["address"].as_str().unwrap()
    );
    assert_eq!(
        open(&reject, None, None).await.err().map(|e| e.0),
        Some(410)
    );
    let (status, _) = within("the sender", sender)
        .await
        .unwrap()
        .expect("sender refused");
    assert_eq!(status, 403);
    relay.stop().await;
}

#[tokio::test]
async fn accept_addresses_name_the_host_the_listener_connected_with() {
    let relay = start(RelayConfig::default()).await;
    // The listener comes by a host name, the sender by the relay's IP address: the address
    // follows the listener (the service's names the namespace, whose certificate it has).
    let by_name = format!("ws://localhost:{}", relay.port());
    let lu = uri::action_uri(&by_name, "hc", uri::Action::Listen, None, None).unwrap();
    let (mut control, _) = open(&lu, Some(&token(&relay, &lu, 60.0)), None)
        .await
        .expect("the listener connects by name");
    let su = uri::action_uri(&relay.origin(), "hc", uri::Action::Connect, None, None).unwrap();
    let tok = token(&relay, &su, 60.0);
    let sender = tokio::spawn(async move { open(&su, Some(&tok), None).await.map(|_| ()) });
    let accept = next_accept(&mut control).await;
    let address = accept["address"].as_str().unwrap();
    assert!(
        address.starts_with(&format!("{by_name}/$hc/hc?sb-hc-action=accept&sb-hc-id=")),
        "{address}"
    );
    open(address, None, None)
        .await
        .expect("the accept by name succeeds");
    within("the sender", sender)
        .await
        .unwrap()
        .expect("the sender connects");
    relay.stop().await;
}

#[tokio::test]
async fn handshake_statuses() {
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
        accept_timeout: Duration::from_millis(300),
        ..RelayConfig::default()
    };
    config.rules.push(Rule {
        name: "send-only".into(),
        key: "k".into(),
        rights: vec![Right::Send],
    });
    let relay = start(config).await;
    let origin = relay.origin();
    let lu = uri::action_uri(&origin, "hc", uri::Action::Listen, None, None).unwrap();
    let su = uri::action_uri(&origin, "hc", uri::Action::Connect, None, None).unwrap();
    let status = |r: Result<(Ws, Option<String>), (u16, String)>| r.err().map(|e| e.0);

    assert_eq!(status(open(&lu, None, None).await), Some(401));
    assert_eq!(
        status(open(&lu, Some("SharedAccessSignature junk"), None).await),
        Some(401)
    );
    let rule = &relay.config().rules[0];
    let expired = sas::create_token(
        &lu,
        &rule.name,
        &rule.key,
        Some(1.0),
        sas::now_ms() - 10_000.0,
    )
    .unwrap();
    assert_eq!(status(open(&lu, Some(&expired), None).await), Some(401));
    let send_only = sas::create_token(&lu, "send-only", "k", Some(60.0), sas::now_ms()).unwrap();
    assert_eq!(status(open(&lu, Some(&send_only), None).await), Some(403));
    let other = uri::action_uri(&origin, "open", uri::Action::Listen, None, None).unwrap();
    assert_eq!(
        status(open(&lu, Some(&token(&relay, &other, 60.0)), None).await),
        Some(403)
    );
    let unknown = uri::action_uri(&origin, "nope", uri::Action::Listen, None, None).unwrap();
    assert_eq!(
        status(open(&unknown, Some(&token(&relay, &unknown, 60.0)), None).await),
        Some(404)
    );
    assert_eq!(
        status(open(&su, Some(&token(&relay, &su, 60.0)), None).await),
        Some(404)
    );
    let bad_action = format!("{origin}/$hc/hc?sb-hc-action=dance");
    assert_eq!(
        status(open(&bad_action, Some(&token(&relay, &lu, 60.0)), None).await),
        Some(400)
    );

    // A listener that never accepts: the sender times out with 504.
    let _control = listen(&relay, "hc").await;
    assert_eq!(
        status(open(&su, Some(&token(&relay, &su, 60.0)), None).await),
        Some(504)
    );
    // An anonymous sender is allowed where the entity says so (then 404: no listener).
    let anon = uri::action_uri(&origin, "open", uri::Action::Connect, None, None).unwrap();
    assert_eq!(status(open(&anon, None, None).await), Some(404));
    relay.stop().await;
}

#[tokio::test]
async fn expired_listener_tokens_close_the_channel_with_1008_unless_renewed() {
    let relay = start(RelayConfig::default()).await;
    let lu = uri::action_uri(&relay.origin(), "hc", uri::Action::Listen, None, None).unwrap();
    let (mut expiring, _) = open(&lu, Some(&token(&relay, &lu, 2.0)), None)
        .await
        .unwrap();
    let (mut renewed, _) = open(&lu, Some(&token(&relay, &lu, 2.0)), None)
        .await
        .unwrap();
    let renewal =
        serde_json::json!({ "renewToken": { "token": token(&relay, &lu, 60.0) } }).to_string();
    renewed.send(Message::text(renewal)).await.unwrap();
    match next_data(&mut expiring).await {
        Message::Close(Some(f)) => assert_eq!(u16::from(f.code), 1008),
        other => panic!("expected close 1008, got {other:?}"),
    }
    // The renewed one is still there: it answers a ping after the first one's expiry.
    renewed
        .send(Message::Ping(b"still here".to_vec().into()))
        .await
        .unwrap();
    loop {
        match within("a pong", renewed.next()).await {
            Some(Ok(Message::Pong(p))) => {
                assert_eq!(&p[..], b"still here");
                break;
            }
            Some(Ok(_)) => continue,
            other => panic!("renewed channel ended: {other:?}"),
        }
    }
    // A renewal with a bad token closes the channel with 1008.
    let bad = serde_json::json!({ "renewToken": { "token": "SharedAccessSignature sr=x&sig=y&se=1&skn=z" } }).to_string();
    renewed.send(Message::text(bad)).await.unwrap();
    match next_data(&mut renewed).await {
        Message::Close(Some(f)) => assert_eq!(u16::from(f.code), 1008),
        other => panic!("expected close 1008, got {other:?}"),
    }
    relay.stop().await;
}

#[tokio::test]
async fn stops_and_resumes_on_the_same_port() {
    let relay = start(RelayConfig::default()).await;
    let port = relay.port();
    let mut control = listen(&relay, "hc").await;
    relay.stop().await;
    // The listener sees its connection end.
    loop {
        match within("the end of the control channel", control.next()).await {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
            Some(Ok(_)) => continue,
        }
    }
    assert!(
        TcpStream::connect(("127.0.0.1", port)).await.is_err(),
        "the port is closed"
    );
    relay.resume().await.unwrap();
    assert_eq!(relay.port(), port);
    let _again = listen(&relay, "hc").await;
    assert_eq!(relay.stats().listeners, 1);
    relay.stop().await;
}

/// A masked client frame (FIN set) with this opcode and payload, or an unmasked one.
fn raw_frame(opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = vec![
        0x80 | opcode,
        (payload.len() as u8) | if masked { 0x80 } else { 0 },
    ];
    if masked {
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

#[tokio::test]
async fn a_listener_that_breaks_the_protocol_hears_why_in_a_close_frame() {
    use tokio::io::AsyncWriteExt;
    let relay = start(RelayConfig::default()).await;
    for (frame, code) in [
        // Text that is not UTF-8.
        (
            raw_frame(0x1, &[0x61, 0xff, 0xfe], true),
            CloseCode::Invalid,
        ),
        // A client frame without a mask.
        (raw_frame(0x1, b"{}", false), CloseCode::Protocol),
    ] {
        let mut control = listen(&relay, "hc").await;
        control.get_mut().write_all(&frame).await.unwrap();
        match next_data(&mut control).await {
            Message::Close(Some(CloseFrame { code: got, .. })) => assert_eq!(got, code),
            other => panic!("expected a close frame with {code:?}, got {other:?}"),
        }
    }
}
