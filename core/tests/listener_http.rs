//! HTTP requests at the listener, against a fake service written from the protocol: a fake
//! control channel that sends the `request` messages the test writes and reads the
//! responses, and fake rendezvous endpoints (`sb-hc-action=request`) that the test drives.
//! The owner here answers with raw HTTP/1.1, as Node's `http.ServerResponse` writes it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyco_core::listener::{
    self, Exchange, ExchangeEvent, ExchangeSink, HttpRequest, ListenerCommand, ListenerEvent,
    ListenerHandle, ListenerOptions, ListenerSink, RequestBody, Token,
};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// The longest wait for anything that should happen.
const WAIT: Duration = Duration::from_secs(10);
/// How long a "nothing happens" assertion watches.
const QUIET: Duration = Duration::from_millis(300);

type Ws = WebSocketStream<TcpStream>;

// ---------------------------------------------------------------------------------------
// The fake service
// ---------------------------------------------------------------------------------------

/// A WebSocket the listener opened, with the request target of its handshake.
struct Opened {
    target: String,
    ws: Ws,
}

/// Accepts the listener's WebSockets and hands them over, the control channel first.
struct Service {
    origin: String,
    opened: mpsc::UnboundedReceiver<Opened>,
}

impl Service {
    async fn start() -> Service {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("ws://{}", tcp.local_addr().unwrap());
        let (tx, opened) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((stream, _)) = tcp.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let target = Arc::new(Mutex::new(String::new()));
                    let seen = target.clone();
                    // tungstenite's callback type returns its (large) error response.
                    #[allow(clippy::result_large_err)]
                    let callback = move |req: &Request, resp: Response| {
                        *seen.lock().unwrap() = req.uri().to_string();
                        Ok(resp)
                    };
                    if let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await {
                        let target = target.lock().unwrap().clone();
                        let _ = tx.send(Opened { target, ws });
                    }
                });
            }
        });
        Service { origin, opened }
    }

    fn listen_url(&self) -> String {
        format!("{}/$hc/hc?sb-hc-action=listen", self.origin)
    }

    /// A rendezvous address for request `id`.
    fn address(&self, id: &str) -> String {
        format!("{}/$hc/hc?sb-hc-action=request&sb-hc-id={id}", self.origin)
    }

    /// The next WebSocket the listener opens.
    async fn next(&mut self, what: &str) -> Opened {
        timeout(WAIT, self.opened.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
            .expect("the service runs")
    }

    /// Asserts that the listener opens nothing for a while.
    async fn none_opened(&mut self, what: &str) {
        if let Ok(Some(o)) = timeout(QUIET, self.opened.recv()).await {
            panic!("{what}, but the listener opened {}", o.target);
        }
    }
}

/// The next message that is not a ping or pong.
async fn read(ws: &mut Ws, what: &str) -> Message {
    loop {
        let m = timeout(WAIT, ws.next())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
            .unwrap_or_else(|| panic!("the socket ended before {what}"))
            .unwrap_or_else(|e| panic!("the socket failed before {what}: {e}"));
        if !matches!(m, Message::Ping(_) | Message::Pong(_)) {
            return m;
        }
    }
}

/// The next text message, as JSON.
async fn read_json(ws: &mut Ws, what: &str) -> Value {
    match read(ws, what).await {
        Message::Text(t) => serde_json::from_str(&t).expect("JSON"),
        other => panic!("expected {what} as text, got {other:?}"),
    }
}

/// The next binary message (tungstenite joins its fragments).
async fn read_binary(ws: &mut Ws, what: &str) -> Vec<u8> {
    match read(ws, what).await {
        Message::Binary(b) => b.to_vec(),
        other => panic!("expected {what} as binary, got {other:?}"),
    }
}

/// Asserts that nothing comes for a while.
async fn quiet(ws: &mut Ws, what: &str) {
    if let Ok(Some(Ok(m))) = timeout(QUIET, ws.next()).await {
        if !matches!(m, Message::Ping(_) | Message::Pong(_)) {
            panic!("{what}, but got {m:?}");
        }
    }
}

/// An inline `request` message.
fn request(service: &Service, id: &str, method: &str, target: &str, body: bool) -> Message {
    Message::text(
        json!({"request": {
            "address": service.address(id),
            "id": id,
            "requestTarget": target,
            "method": method,
            "remoteEndpoint": {"address": "203.0.113.7", "port": 50123},
            "requestHeaders": {"Host": "ns.example", "X-Trace": id},
            "body": body,
        }})
        .to_string(),
    )
}

/// Sends one binary message as frames of `piece` bytes.
async fn send_fragmented(ws: &mut Ws, data: &[u8], piece: usize) {
    let pieces: Vec<&[u8]> = data.chunks(piece.max(1)).collect();
    if pieces.is_empty() {
        ws.send(Message::Binary(Vec::new().into())).await.unwrap();
        return;
    }
    for (i, p) in pieces.iter().enumerate() {
        let opcode = if i == 0 {
            OpCode::Data(Data::Binary)
        } else {
            OpCode::Data(Data::Continue)
        };
        let frame = Frame::message(p.to_vec(), opcode, i + 1 == pieces.len());
        ws.send(Message::Frame(frame)).await.unwrap();
    }
}

// ---------------------------------------------------------------------------------------
// The listener and its owner
// ---------------------------------------------------------------------------------------

/// What the owner does with a request.
type Handler =
    Arc<dyn Fn(HttpRequest, Exchange, mpsc::UnboundedReceiver<ExchangeEvent>) + Send + Sync>;

/// What the test hears from the listener.
#[derive(Debug)]
enum Seen {
    Listener(String),
    /// An exchange's last event: `Ok` for finished, the error's code for aborted.
    Over(String, Result<(), String>),
}

struct Owner {
    handler: Handler,
    seen: mpsc::UnboundedSender<Seen>,
}

/// Forwards an exchange's events to its handler, and its end to the test.
struct Events {
    id: String,
    tx: mpsc::UnboundedSender<ExchangeEvent>,
    seen: mpsc::UnboundedSender<Seen>,
}

impl ExchangeSink for Events {
    fn push(&self, event: ExchangeEvent) {
        match &event {
            ExchangeEvent::Finished => {
                let _ = self.seen.send(Seen::Over(self.id.clone(), Ok(())));
            }
            ExchangeEvent::Aborted(e) => {
                let code = e.code.unwrap_or("").to_owned();
                let _ = self.seen.send(Seen::Over(self.id.clone(), Err(code)));
            }
            _ => {}
        }
        let _ = self.tx.send(event);
    }
}

impl ListenerSink for Owner {
    fn push(&self, event: ListenerEvent) {
        let _ = self.seen.send(Seen::Listener(format!("{event:?}")));
    }

    fn http_request(
        &self,
        request: HttpRequest,
        exchange: &Exchange,
    ) -> Option<Arc<dyn ExchangeSink>> {
        let (tx, rx) = mpsc::unbounded_channel();
        let sink = Arc::new(Events {
            id: request.id.clone(),
            tx,
            seen: self.seen.clone(),
        });
        (self.handler)(request, exchange.clone(), rx);
        Some(sink)
    }
}

struct Listener {
    handle: ListenerHandle,
    seen: mpsc::UnboundedReceiver<Seen>,
    /// Exchanges seen to end while waiting for another.
    ended: std::collections::HashMap<String, Result<(), String>>,
}

impl Listener {
    /// Starts a listener on `service` whose requests go to `handler`; returns it with the
    /// control channel, once online.
    async fn start(
        service: &mut Service,
        options: impl FnOnce(&mut ListenerOptions),
        handler: Handler,
    ) -> (Listener, Ws) {
        let mut opts = ListenerOptions::new(service.listen_url());
        opts.keep_alive = None;
        options(&mut opts);
        let (tx, seen) = mpsc::unbounded_channel();
        let handle = listener::start(opts, Arc::new(Owner { handler, seen: tx }));
        handle.set_http(true);
        let mut l = Listener {
            handle,
            seen,
            ended: Default::default(),
        };
        // The token request comes first; the fake service takes any token.
        loop {
            match l.next().await {
                Seen::Listener(e) if e.starts_with("NeedToken") => {
                    let request: u64 = e
                        .split("request: ")
                        .nth(1)
                        .and_then(|r| r.split(',').next())
                        .and_then(|r| r.trim().parse().ok())
                        .expect("a request number");
                    l.handle.send(ListenerCommand::Token {
                        request,
                        result: Ok(Token::new(
                            "SharedAccessSignature sr=x&sig=y&se=99999999999&skn=k",
                        )),
                    });
                    break;
                }
                _ => {}
            }
        }
        let control = service.next("the control channel").await;
        assert!(control.target.contains("sb-hc-action=listen"));
        loop {
            if let Seen::Listener(e) = l.next().await {
                if e == "Online" {
                    break;
                }
            }
        }
        (l, control.ws)
    }

    async fn next(&mut self) -> Seen {
        timeout(WAIT, self.seen.recv())
            .await
            .expect("the listener reports in time")
            .expect("the listener runs")
    }

    /// Waits for exchange `id` to end; returns how.
    async fn over(&mut self, id: &str) -> Result<(), String> {
        if let Some(outcome) = self.ended.remove(id) {
            return outcome;
        }
        loop {
            if let Seen::Over(i, outcome) = self.next().await {
                if i == id {
                    return outcome;
                }
                self.ended.insert(i, outcome);
            }
        }
    }
}

/// A handler that answers every request with `status`, `headers` and `body`, written as
/// Node does (the head, then the body in `pieces`), after reading the whole request body
/// (checked against `X-Expect-Length` when the test sets it as the request's id prefix).
fn answer(
    status: u16,
    headers: &'static [(&'static str, &'static str)],
    body: Vec<u8>,
    pieces: usize,
) -> Handler {
    let body = Arc::new(body);
    Arc::new(move |request, exchange, mut events| {
        let body = body.clone();
        tokio::spawn(async move {
            let received = match request.body {
                RequestBody::Complete(b) => b,
                RequestBody::Empty => Vec::new(),
                RequestBody::Streamed => {
                    let mut all = Vec::new();
                    while let Some(e) = events.recv().await {
                        match e {
                            ExchangeEvent::Body { data, source } => {
                                source.consumed(data.len());
                                all.extend(data);
                            }
                            ExchangeEvent::BodyEnd => break,
                            _ => {}
                        }
                    }
                    all
                }
            };
            let mut head = format!("HTTP/1.1 {status} Status{status}\r\n");
            for (k, v) in headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str(&format!(
                "X-Request-Length: {}\r\nConnection: close\r\n\r\n",
                received.len()
            ));
            write_all(&exchange, &mut events, head.into_bytes()).await;
            for piece in body.chunks((body.len() / pieces.max(1)).max(1)) {
                write_all(&exchange, &mut events, piece.to_vec()).await;
            }
            exchange.end();
        });
    })
}

/// Writes to an exchange, waiting for `Drained` when it asks to.
async fn write_all(
    exchange: &Exchange,
    events: &mut mpsc::UnboundedReceiver<ExchangeEvent>,
    data: Vec<u8>,
) {
    if !exchange.write(data) {
        loop {
            match events.recv().await {
                Some(ExchangeEvent::Drained) => return,
                Some(_) => {}
                None => return,
            }
        }
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

// ---------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------

/// A small request on the control channel is answered there: the `response` message with
/// the request's id, the status and reason, the headers (repeats joined, framing and
/// connection headers dropped), then exactly one binary message with the body.
#[tokio::test]
async fn a_small_request_is_answered_inline() {
    let mut service = Service::start().await;
    let seen_request = Arc::new(Mutex::new(None));
    let keep = seen_request.clone();
    let inner = answer(
        201,
        &[
            ("Set-Cookie", "a=1"),
            ("Set-Cookie", "b=2"),
            ("Content-Length", "5"),
            ("Content-Type", "text/plain"),
        ],
        b"hello".to_vec(),
        1,
    );
    let handler: Handler = Arc::new(move |r: HttpRequest, x, e| {
        *keep.lock().unwrap() = Some(r.clone());
        inner(r, x, e)
    });
    let (mut l, mut control) = Listener::start(&mut service, |_| {}, handler).await;

    control
        .send(request(&service, "r1", "POST", "/hc/orders/7?x=1", true))
        .await
        .unwrap();
    send_fragmented(&mut control, b"ping body", 4).await;
    let response = read_json(&mut control, "the response").await;
    assert_eq!(
        response,
        json!({"response": {"requestId": "r1", "statusCode": 201, "statusDescription": "Status201",
            "responseHeaders": {"Set-Cookie": "a=1, b=2", "Content-Type": "text/plain", "X-Request-Length": "9"},
            "body": true}})
    );
    assert_eq!(read_binary(&mut control, "the body").await, b"hello");
    assert_eq!(l.over("r1").await, Ok(()));
    let r = seen_request.lock().unwrap().clone().unwrap();
    assert_eq!(
        (r.method.as_str(), r.url.as_str(), r.id.as_str()),
        ("POST", "/orders/7?x=1", "r1")
    );
    assert_eq!(r.body, RequestBody::Complete(b"ping body".to_vec()));
    assert_eq!(
        (r.remote_address.as_deref(), r.remote_port),
        (Some("203.0.113.7"), Some(50123))
    );
    assert!(r.headers.contains(&("X-Trace".into(), "r1".into())));
    quiet(&mut control, "nothing follows the body").await;
    service
        .none_opened("an inline response opens no rendezvous")
        .await;
}

/// Responses without a body (HEAD, 204, 304, or nothing written) say `body: false` and no
/// binary message follows.
#[tokio::test]
async fn bodiless_responses_send_no_body_frame() {
    let mut service = Service::start().await;
    let handler: Handler = Arc::new(|r: HttpRequest, x: Exchange, _| {
        let status = match r.url.as_str() {
            "/204" => 204,
            "/304" => 304,
            _ => 200,
        };
        let head = if r.url == "/empty" {
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_owned()
        } else {
            format!("HTTP/1.1 {status} X\r\nContent-Length: 3\r\n\r\n")
        };
        x.write(head.into_bytes());
        if status == 200 && r.method == "GET" && r.url != "/empty" {
            x.write(b"abc".to_vec());
        }
        x.end();
    });
    let (mut l, mut control) = Listener::start(&mut service, |_| {}, handler).await;
    for (i, (method, target, expect_body)) in [
        ("HEAD", "/hc/head", false),
        ("GET", "/hc/204", false),
        ("GET", "/hc/304", false),
        ("GET", "/hc/empty", false),
        ("GET", "/hc/body", true),
    ]
    .into_iter()
    .enumerate()
    {
        let id = format!("b{i}");
        control
            .send(request(&service, &id, method, target, false))
            .await
            .unwrap();
        let r = read_json(&mut control, "a response").await;
        assert_eq!(r["response"]["requestId"], json!(id));
        assert_eq!(
            r["response"]["body"],
            json!(expect_body),
            "{method} {target}"
        );
        if expect_body {
            assert_eq!(read_binary(&mut control, "the body").await, b"abc");
        }
        assert_eq!(l.over(&id).await, Ok(()));
    }
    quiet(&mut control, "no body frame after body:false").await;
}

/// A response larger than the control channel allows goes over a rendezvous that the
/// listener opens at the request's address: the response message, then the body in frames.
/// The sender's next request, which the service routes to that rendezvous, is served there.
#[tokio::test]
async fn a_large_response_goes_over_a_rendezvous_that_then_serves_the_next_request() {
    let mut service = Service::start().await;
    let big = pattern(300 * 1024);
    let (mut l, mut control) = Listener::start(
        &mut service,
        |_| {},
        answer(
            200,
            &[("Content-Type", "application/octet-stream")],
            big.clone(),
            7,
        ),
    )
    .await;

    control
        .send(request(&service, "big1", "GET", "/hc/file", false))
        .await
        .unwrap();
    let mut rendezvous = service.next("the response's rendezvous").await;
    assert!(
        rendezvous
            .target
            .ends_with("sb-hc-action=request&sb-hc-id=big1"),
        "{}",
        rendezvous.target
    );
    let response = read_json(&mut rendezvous.ws, "the response").await;
    assert_eq!(response["response"]["requestId"], json!("big1"));
    assert_eq!(response["response"]["body"], json!(true));
    assert_eq!(
        response["response"]["responseHeaders"]["Content-Type"],
        json!("application/octet-stream")
    );
    assert_eq!(read_binary(&mut rendezvous.ws, "the body").await, big);
    assert_eq!(l.over("big1").await, Ok(()));
    quiet(&mut control, "the control channel carries nothing of it").await;

    // The next request of that sender comes over the rendezvous, with a body.
    rendezvous
        .ws
        .send(request(&service, "big2", "PUT", "/hc/file", true))
        .await
        .unwrap();
    send_fragmented(&mut rendezvous.ws, &pattern(5000), 1000).await;
    let response = read_json(&mut rendezvous.ws, "the second response").await;
    assert_eq!(response["response"]["requestId"], json!("big2"));
    assert_eq!(
        response["response"]["responseHeaders"]["X-Request-Length"],
        json!("5000")
    );
    assert_eq!(
        read_binary(&mut rendezvous.ws, "the second body").await,
        big
    );
    assert_eq!(l.over("big2").await, Ok(()));
}

/// A request the service leaves at its rendezvous (only the address on the control
/// channel) is fetched there: its body streams to the owner in pieces of any size, and the
/// response goes back on the rendezvous.
#[tokio::test]
async fn an_address_only_request_is_fetched_from_its_rendezvous_and_streamed() {
    let mut service = Service::start().await;
    let (mut l, mut control) =
        Listener::start(&mut service, |_| {}, answer(200, &[], b"done".to_vec(), 1)).await;
    let address = service.address("s1");
    control
        .send(Message::text(
            json!({"request": {"address": address}}).to_string(),
        ))
        .await
        .unwrap();
    let mut rendezvous = service.next("the request's rendezvous").await;
    assert!(rendezvous
        .target
        .ends_with("sb-hc-action=request&sb-hc-id=s1"));
    rendezvous
        .ws
        .send(request(&service, "s1", "POST", "/hc/upload", true))
        .await
        .unwrap();
    let body = pattern(3 * 1024 * 1024 + 17);
    send_fragmented(&mut rendezvous.ws, &body, 100_000).await;
    let response = read_json(&mut rendezvous.ws, "the response").await;
    assert_eq!(
        response["response"]["responseHeaders"]["X-Request-Length"],
        json!(body.len().to_string())
    );
    assert_eq!(read_binary(&mut rendezvous.ws, "the body").await, b"done");
    assert_eq!(l.over("s1").await, Ok(()));
}

/// Without an owner for HTTP, requests are answered 501, on the control channel and at a
/// rendezvous alike; the channel carries on.
#[tokio::test]
async fn without_http_requests_are_answered_501() {
    let mut service = Service::start().await;
    let (l, mut control) =
        Listener::start(&mut service, |_| {}, answer(200, &[], Vec::new(), 1)).await;
    l.handle.set_http(false);
    control
        .send(request(&service, "n1", "POST", "/hc", true))
        .await
        .unwrap();
    control
        .send(Message::Binary(b"body".to_vec().into()))
        .await
        .unwrap();
    let r = read_json(&mut control, "the 501").await;
    assert_eq!(
        (
            r["response"]["statusCode"].clone(),
            r["response"]["body"].clone()
        ),
        (json!(501), json!(false))
    );
    control
        .send(Message::text(
            json!({"request": {"address": service.address("n2")}}).to_string(),
        ))
        .await
        .unwrap();
    let mut rendezvous = service.next("the rendezvous").await;
    rendezvous
        .ws
        .send(request(&service, "n2", "GET", "/hc", false))
        .await
        .unwrap();
    let r = read_json(&mut rendezvous.ws, "the 501 at the rendezvous").await;
    assert_eq!(r["response"]["statusCode"], json!(501));
}

/// A handler that never answers: the listener gives up when the service would (the request
/// timeout), and the exchange reports it.
#[tokio::test]
async fn an_unanswered_request_times_out() {
    let mut service = Service::start().await;
    let never: Handler = Arc::new(|_, x: Exchange, _| {
        // Holds the exchange without answering.
        std::mem::forget(x);
    });
    let (mut l, mut control) = Listener::start(
        &mut service,
        |o| o.request_timeout = Duration::from_millis(300),
        never,
    )
    .await;
    control
        .send(request(&service, "t1", "GET", "/hc", false))
        .await
        .unwrap();
    assert_eq!(l.over("t1").await, Err("ETIMEDOUT".into()));
    quiet(&mut control, "no response after the timeout").await;
}

/// A head flushed alone (`res.flushHeaders()`) or an event stream goes out at once over a
/// rendezvous, before any body is written; the body follows there.
#[tokio::test]
async fn flushed_heads_and_event_streams_are_streamed_at_once() {
    let mut service = Service::start().await;
    let (go_tx, mut go_rx) = mpsc::unbounded_channel::<Exchange>();
    let handler: Handler = Arc::new(move |r: HttpRequest, x: Exchange, _| {
        let head = if r.url == "/sse" {
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n"
        } else {
            "HTTP/1.1 200 OK\r\n\r\n"
        };
        x.write(head.as_bytes().to_vec());
        go_tx.send(x).unwrap();
    });
    let (mut l, mut control) = Listener::start(&mut service, |_| {}, handler).await;
    for (id, target) in [("f1", "/hc/flush"), ("f2", "/hc/sse")] {
        control
            .send(request(&service, id, "GET", target, false))
            .await
            .unwrap();
        let mut rendezvous = service.next("the streaming rendezvous").await;
        // The head is out though nothing of the body is written yet.
        let response = read_json(&mut rendezvous.ws, "the head").await;
        assert_eq!(response["response"]["body"], json!(true));
        let x = timeout(WAIT, go_rx.recv()).await.unwrap().unwrap();
        x.write(b"data: 1\n\n".to_vec());
        x.write(b"data: 2\n\n".to_vec());
        x.end();
        assert_eq!(
            read_binary(&mut rendezvous.ws, "the body").await,
            b"data: 1\n\ndata: 2\n\n"
        );
        assert_eq!(l.over(id).await, Ok(()));
    }
}

/// A response still being written after [`listener::http::STREAM_AFTER`] goes over a
/// rendezvous by itself, with what was written so far; the rest follows there.
#[tokio::test]
async fn a_slow_response_moves_to_a_rendezvous() {
    let mut service = Service::start().await;
    let (go_tx, mut go_rx) = mpsc::unbounded_channel::<Exchange>();
    let handler: Handler = Arc::new(move |_, x: Exchange, _| {
        x.write(b"HTTP/1.1 200 OK\r\n\r\nfirst ".to_vec());
        go_tx.send(x).unwrap();
    });
    let (mut l, mut control) = Listener::start(&mut service, |_| {}, handler).await;
    control
        .send(request(&service, "slow", "GET", "/hc", false))
        .await
        .unwrap();
    let x = timeout(WAIT, go_rx.recv()).await.unwrap().unwrap();
    let started = std::time::Instant::now();
    let mut rendezvous = service.next("the rendezvous of a slow response").await;
    assert!(started.elapsed() >= listener::http::STREAM_AFTER - Duration::from_millis(200));
    assert_eq!(
        read_json(&mut rendezvous.ws, "the head").await["response"]["requestId"],
        json!("slow")
    );
    x.write(b"second".to_vec());
    x.end();
    assert_eq!(
        read_binary(&mut rendezvous.ws, "the body").await,
        b"first second"
    );
    assert_eq!(l.over("slow").await, Ok(()));
    quiet(&mut control, "the control channel carries nothing of it").await;
}

/// Broken messages on the control channel are ignored and the listener carries on: no
/// address, no id, a body for no request, a text message where a body should be, a second
/// request with an id in progress, too many headers (431).
#[tokio::test]
async fn malformed_requests_are_ignored() {
    let mut service = Service::start().await;
    let (mut l, mut control) =
        Listener::start(&mut service, |_| {}, answer(200, &[], b"ok".to_vec(), 1)).await;
    for junk in [
        json!({"request": {"id": "x", "method": "GET", "body": false}}),
        json!({"request": {"address": "ws://x", "method": "GET", "body": false}}),
        json!({"request": 5}),
        json!({"response": {"requestId": "nobody"}}),
    ] {
        control.send(Message::text(junk.to_string())).await.unwrap();
    }
    control
        .send(Message::Binary(b"stray".to_vec().into()))
        .await
        .unwrap();
    control.send(Message::text("not json")).await.unwrap();
    // A request whose body never comes (a text message instead) is dropped.
    control
        .send(request(&service, "lost", "POST", "/hc", true))
        .await
        .unwrap();
    let many: serde_json::Map<String, Value> =
        (0..300).map(|i| (format!("h{i}"), json!("v"))).collect();
    control
        .send(Message::text(
            json!({"request": {"address": service.address("h"), "id": "h", "requestTarget": "/hc",
                "method": "GET", "requestHeaders": many, "body": false}})
            .to_string(),
        ))
        .await
        .unwrap();
    let r = read_json(&mut control, "the 431").await;
    assert_eq!(
        (
            r["response"]["requestId"].clone(),
            r["response"]["statusCode"].clone()
        ),
        (json!("h"), json!(431))
    );
    control
        .send(request(&service, "ok", "GET", "/hc", false))
        .await
        .unwrap();
    let r = read_json(&mut control, "a good request's response").await;
    assert_eq!(r["response"]["requestId"], json!("ok"));
    assert_eq!(read_binary(&mut control, "its body").await, b"ok");
    assert_eq!(l.over("ok").await, Ok(()));
    service.none_opened("nothing opens a rendezvous").await;
}

/// Many requests in flight at once, answered out of order: each response carries its own
/// id and body, and a slow one holds up none of the others.
#[tokio::test]
async fn concurrent_requests_are_isolated() {
    let mut service = Service::start().await;
    let handler: Handler = Arc::new(|r: HttpRequest, x: Exchange, _| {
        tokio::spawn(async move {
            let n: u64 = r.url.trim_start_matches('/').parse().unwrap_or(0);
            if n == 0 {
                // The slow one answers last.
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            let body = format!("answer {}", r.id);
            x.write(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes(),
            );
            x.end();
        });
    });
    let (mut l, mut control) = Listener::start(&mut service, |_| {}, handler).await;
    for i in 0..50 {
        control
            .send(request(
                &service,
                &format!("c{i}"),
                "GET",
                &format!("/hc/{i}"),
                false,
            ))
            .await
            .unwrap();
    }
    let mut answered = Vec::new();
    for _ in 0..50 {
        let r = read_json(&mut control, "a response").await;
        let id = r["response"]["requestId"].as_str().unwrap().to_owned();
        assert_eq!(
            read_binary(&mut control, "its body").await,
            format!("answer {id}").into_bytes()
        );
        answered.push(id);
    }
    assert_eq!(
        answered.last().map(String::as_str),
        Some("c0"),
        "the slow one came last"
    );
    for i in 0..50 {
        assert_eq!(l.over(&format!("c{i}")).await, Ok(()));
    }
}

/// The service closes a rendezvous in the middle of a request's body (the sender left):
/// the exchange is aborted.
#[tokio::test]
async fn a_rendezvous_lost_mid_body_aborts_the_exchange() {
    let mut service = Service::start().await;
    let (mut l, mut control) =
        Listener::start(&mut service, |_| {}, answer(200, &[], Vec::new(), 1)).await;
    control
        .send(Message::text(
            json!({"request": {"address": service.address("m1")}}).to_string(),
        ))
        .await
        .unwrap();
    let mut rendezvous = service.next("the request's rendezvous").await;
    rendezvous
        .ws
        .send(request(&service, "m1", "POST", "/hc", true))
        .await
        .unwrap();
    let frame = Frame::message(pattern(1000), OpCode::Data(Data::Binary), false);
    rendezvous.ws.send(Message::Frame(frame)).await.unwrap();
    drop(rendezvous);
    assert_eq!(l.over("m1").await, Err("ECONNRESET".into()));
}
