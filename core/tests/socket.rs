//! The client socket against the emulator, with a tokio-tungstenite listener as the peer.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyco_core::relay::{LocalRelay, RelayConfig};
use hyco_core::socket::{self, Command, ConnectOptions, Event, EventSink, SocketOptions};
use hyco_core::{sas, uri};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{client_async, WebSocketStream};

const WAIT: Duration = Duration::from_secs(10);

/// Collects events into a channel.
struct Collect(Mutex<mpsc::UnboundedSender<Event>>);

impl EventSink for Collect {
    fn push(&self, event: Event) {
        if let Ok(tx) = self.0.lock() {
            let _ = tx.send(event);
        }
    }
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Event>) -> Event {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("an event in time")
        .expect("events go on")
}

fn token(relay: &LocalRelay, target: &str) -> String {
    let rule = &relay.config().rules[0];
    sas::create_token(target, &rule.name, &rule.key, Some(60.0), sas::now_ms()).unwrap()
}

async fn open_ws(url: &str, token: Option<&str>) -> WebSocketStream<TcpStream> {
    let mut req = url.into_client_request().unwrap();
    if let Some(t) = token {
        req.headers_mut()
            .insert("ServiceBusAuthorization", HeaderValue::from_str(t).unwrap());
    }
    let tcp = TcpStream::connect(req.uri().authority().unwrap().as_str())
        .await
        .unwrap();
    client_async(req, tcp).await.expect("handshake").0
}

fn start(url: String, token: Option<String>) -> (socket::Handle, mpsc::UnboundedReceiver<Event>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let opts = ConnectOptions {
        url,
        headers: token
            .map(|t| vec![("ServiceBusAuthorization".to_owned(), t)])
            .unwrap_or_default(),
        protocols: vec![],
        handshake_timeout: Duration::from_secs(5),
        deflate: None,
        ca: vec![],
        proxy: None,
    };
    let handle = socket::connect(
        opts,
        SocketOptions::default(),
        Arc::new(Collect(Mutex::new(tx))),
    );
    (handle, rx)
}

#[tokio::test]
async fn talks_through_the_relay_and_closes_with_the_peer_code() {
    let relay = LocalRelay::start(RelayConfig::default(), None)
        .await
        .unwrap();
    let lu = uri::action_uri(&relay.origin(), "hc", uri::Action::Listen, None, None).unwrap();
    let mut control = open_ws(&lu, Some(&token(&relay, &lu))).await;
    let su = uri::action_uri(&relay.origin(), "hc", uri::Action::Connect, None, None).unwrap();
    let (handle, mut events) = start(su.clone(), Some(token(&relay, &su)));
    let accept = match tokio::time::timeout(WAIT, control.next()).await.unwrap() {
        Some(Ok(Message::Text(t))) => serde_json::from_str::<serde_json::Value>(&t).unwrap(),
        other => panic!("no accept: {other:?}"),
    };
    let mut peer = open_ws(accept["accept"]["address"].as_str().unwrap(), None).await;
    assert!(matches!(next(&mut events).await, Event::Open { .. }));

    handle.send(Command::Frame {
        opcode: 1,
        fin: false,
        payload: b"hel".to_vec(),
        compress: false,
        accounted: 9,
        ack: 7,
    });
    handle.send(Command::Frame {
        opcode: 0,
        fin: true,
        payload: b"lo".to_vec(),
        compress: false,
        accounted: 8,
        ack: 0,
    });
    let mut written = 0;
    while written < 17 {
        match next(&mut events).await {
            Event::Written { bytes, acks, .. } => {
                written += bytes;
                assert!(acks.is_empty() || acks == vec![7]);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(peer.next().await.unwrap().unwrap(), Message::text("hello"));

    peer.send(Message::binary(vec![9u8; 200_000]))
        .await
        .unwrap();
    match next(&mut events).await {
        Event::Message {
            binary: true,
            frames,
        } => assert_eq!(frames.concat(), vec![9u8; 200_000]),
        other => panic!("unexpected {other:?}"),
    }
    peer.send(Message::Ping(b"hi".to_vec().into()))
        .await
        .unwrap();
    assert!(matches!(next(&mut events).await, Event::Ping(p) if p == b"hi"));

    peer.close(Some(CloseFrame {
        code: CloseCode::from(4000),
        reason: "done".into(),
    }))
    .await
    .unwrap();
    let mut saw_close_frame = false;
    loop {
        match next(&mut events).await {
            Event::CloseReceived => saw_close_frame = true,
            Event::Written { .. } => {}
            Event::Closed {
                code,
                reason,
                frame_received,
                frame_sent,
            } => {
                assert!(saw_close_frame);
                assert_eq!(
                    (code, reason.as_slice(), frame_received, frame_sent),
                    (4000, &b"done"[..], true, true)
                );
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    relay.stop().await;
}

#[tokio::test]
async fn reports_refusals_and_unreachable_hosts() {
    let relay = LocalRelay::start(RelayConfig::default(), None)
        .await
        .unwrap();
    let su = uri::action_uri(&relay.origin(), "nobody", uri::Action::Connect, None, None).unwrap();
    let (_h, mut events) = start(su.clone(), Some(token(&relay, &su)));
    match next(&mut events).await {
        Event::Error(e) => {
            assert_eq!(e.message, "Unexpected server response: 404");
            assert_eq!(e.status_code, Some(404));
            assert!(e
                .status_description
                .unwrap_or_default()
                .contains("Endpoint not found"));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(
        next(&mut events).await,
        Event::Closed { code: 1006, .. }
    ));
    let port = relay.port();
    relay.stop().await;

    let (_h, mut events) = start(format!("ws://127.0.0.1:{port}/$hc/x"), None);
    match next(&mut events).await {
        Event::Error(e) => assert_eq!(e.code, Some("ECONNREFUSED"), "{}", e.message),
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(
        next(&mut events).await,
        Event::Closed { code: 1006, .. }
    ));
}

/// A server that floods pings and never reads: the client must drop it (ws's
/// `maxPendingAutoPongs` rule), not queue pongs without bound.
#[tokio::test]
async fn a_ping_flood_from_a_peer_that_never_reads_ends_the_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = server.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut tcp, _) = server.accept().await.unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tcp.read(&mut b).await.unwrap();
            head.extend_from_slice(&b[..n]);
        }
        let text = String::from_utf8_lossy(&head).into_owned();
        let key = text
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap()
            .trim()
            .to_owned();
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        let response = format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n");
        tcp.write_all(response.as_bytes()).await.unwrap();
        let pings = [0x89u8, 0x00].repeat(64 * 1024);
        // Never read; write pings until the client goes away.
        while tcp.write_all(&pings).await.is_ok() {}
    });
    let (_handle, mut events) = start(format!("ws://127.0.0.1:{port}/"), None);
    let outcome = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match events.recv().await {
                Some(Event::Closed { code, .. }) => return code,
                Some(_) => continue,
                None => panic!("no close"),
            }
        }
    })
    .await
    .expect("the client gives up on the flooding peer");
    assert_eq!(outcome, 1006);
}

/// A raw WebSocket server for one client: answers the handshake, then hands the TCP
/// stream to `script`.
async fn raw_server<F, Fut>(script: F) -> u16
where
    F: FnOnce(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let port = server.local_addr().expect("its address").port();
    tokio::spawn(async move {
        let (mut tcp, _) = server.accept().await.expect("the client");
        let mut head = Vec::new();
        let mut b = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tcp.read(&mut b).await.expect("the request");
            assert!(n > 0, "the client hung up during its handshake");
            head.extend_from_slice(&b[..n]);
        }
        let text = String::from_utf8_lossy(&head).into_owned();
        let key = text
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
        script(tcp).await;
    });
    port
}

async fn closed_event(
    events: &mut mpsc::UnboundedReceiver<Event>,
    within: Duration,
) -> (u16, bool) {
    tokio::time::timeout(within, async {
        loop {
            match events.recv().await {
                Some(Event::Closed {
                    code, frame_sent, ..
                }) => return (code, frame_sent),
                Some(_) => continue,
                None => panic!("the events ended without a close"),
            }
        }
    })
    .await
    .expect("the close in time")
}

/// A peer that sends its close frame and at once shuts its sending side (but still reads)
/// gets the client's close echo: the client writes out what it queued before it ends.
#[tokio::test]
async fn the_close_echo_is_written_after_the_peer_stopped_sending() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (echo_tx, echo_rx) = tokio::sync::oneshot::channel::<Vec<u8>>();
    let port = raw_server(|mut tcp| async move {
        // Close 1000 "bye", then FIN.
        tcp.write_all(&[0x88, 0x05, 0x03, 0xe8, b'b', b'y', b'e'])
            .await
            .expect("the close frame");
        tcp.shutdown().await.expect("the half-close");
        let mut got = Vec::new();
        let _ = tcp.read_to_end(&mut got).await;
        let _ = echo_tx.send(got);
    })
    .await;
    let (_handle, mut events) = start(format!("ws://127.0.0.1:{port}/"), None);
    let (code, frame_sent) = closed_event(&mut events, WAIT).await;
    assert_eq!(code, 1000);
    assert!(frame_sent, "the echo was sent");
    let got = tokio::time::timeout(WAIT, echo_rx)
        .await
        .expect("the server's read in time")
        .expect("the server's read");
    // A masked close frame: 0x88, 0x80 | 5, a 4-byte mask, then the masked payload.
    assert!(got.len() >= 11, "no close echo reached the peer: {got:?}");
    assert_eq!(got[0], 0x88);
    assert_eq!(got[1], 0x85);
    let mask = [got[2], got[3], got[4], got[5]];
    let payload: Vec<u8> = got[6..11]
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ mask[i % 4])
        .collect();
    assert_eq!(payload, [0x03, 0xe8, b'b', b'y', b'e']);
}

/// A client paused after the peer's close frame arrived still notices the peer hanging up:
/// nothing after a close frame is delivered anyway, so the close comes at once, not after
/// the closing-handshake timeout (30 s here).
#[tokio::test]
async fn a_client_paused_after_the_close_frame_sees_the_peer_hang_up() {
    use tokio::io::AsyncWriteExt;
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let port = raw_server(|mut tcp| async move {
        tcp.write_all(&[0x88, 0x02, 0x03, 0xe8])
            .await
            .expect("the close frame");
        let _ = go_rx.await;
        drop(tcp);
    })
    .await;
    let (handle, mut events) = start(format!("ws://127.0.0.1:{port}/"), None);
    assert!(matches!(next(&mut events).await, Event::Open { .. }));
    assert!(matches!(next(&mut events).await, Event::CloseReceived));
    handle.shared.pause();
    let _ = go_tx.send(());
    let (code, _) = closed_event(&mut events, Duration::from_secs(5)).await;
    assert_eq!(code, 1000);
}

/// Counts `request_sent` calls and sends each event with the count at that moment.
struct CountSent {
    sent: std::sync::atomic::AtomicUsize,
    events: Mutex<mpsc::UnboundedSender<(usize, Event)>>,
}

impl EventSink for CountSent {
    fn push(&self, event: Event) {
        let sent = self.sent.load(std::sync::atomic::Ordering::SeqCst);
        if let Ok(tx) = self.events.lock() {
            let _ = tx.send((sent, event));
        }
    }

    fn request_sent(&self) {
        self.sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The sink hears that the handshake's request is out exactly once, before the open event
/// (a listener wakes JavaScript for a prepared accept at that moment).
#[tokio::test]
async fn the_sink_hears_once_that_the_request_is_out_before_the_open() {
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let port = raw_server(|tcp| async move {
        let _ = done_rx.await;
        drop(tcp);
    })
    .await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let sink = Arc::new(CountSent {
        sent: std::sync::atomic::AtomicUsize::new(0),
        events: Mutex::new(tx),
    });
    let opts = ConnectOptions {
        url: format!("ws://127.0.0.1:{port}/"),
        headers: vec![],
        protocols: vec![],
        handshake_timeout: Duration::from_secs(5),
        deflate: None,
        ca: vec![],
        proxy: None,
    };
    let _handle = socket::connect(opts, SocketOptions::default(), sink.clone());
    let (sent_at_open, open) = tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("an event in time")
        .expect("events go on");
    assert!(matches!(open, Event::Open { .. }), "{open:?}");
    assert_eq!(sent_at_open, 1);
    let _ = done_tx.send(());
    let mut closed = false;
    while let Ok(Some((sent, e))) = tokio::time::timeout(WAIT, rx.recv()).await {
        assert_eq!(sent, 1, "request_sent again after the open: {e:?}");
        if matches!(e, Event::Closed { .. }) {
            closed = true;
            break;
        }
    }
    assert!(closed, "the close event in time");
}
