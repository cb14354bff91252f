//! Connections the listener accepts by itself (auto-accept), the spare connection it keeps
//! for the next accept, and its close waiting for the accept handshakes it started.
//!
//! The auto-accept tests run a listener against the local relay emulator with real senders.
//! The spare-connection and close tests run it against a fake service instead: a fake
//! control channel that sends the `accept` messages the test writes, and a fake rendezvous
//! server that numbers its TCP connections and answers each handshake as its rendezvous id
//! says (see [`Rendezvous`]), so that every connection the listener opens can be followed.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyco_core::listener::{
    self, AcceptRequest, ListenerCommand, ListenerEvent, ListenerHandle, ListenerOptions,
    ListenerSink, Token,
};
use hyco_core::relay::{LocalRelay, RelayConfig};
use hyco_core::socket::{
    self, Command, ConnectOptions, Event, EventSink, Handle, SocketError, SocketOptions,
};
use hyco_core::{sas, uri};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::Message;

/// The longest wait for anything that should happen.
const WAIT: Duration = Duration::from_secs(10);
/// How long a "nothing happens" assertion watches.
const QUIET: Duration = Duration::from_millis(400);
/// Text frame opcode.
const OP_TEXT: u8 = 1;

// ---------------------------------------------------------------------------------------
// The listener under test
// ---------------------------------------------------------------------------------------

/// An accepted socket's handle (which has no `Debug` of its own).
struct SocketHandle(Handle);

impl std::fmt::Debug for SocketHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Handle")
    }
}

/// Everything the listener tells the test, in one channel so that order across the listener
/// and its accepted sockets can be checked.
#[derive(Debug)]
enum Seen {
    /// A listener event.
    Listener(ListenerEvent),
    /// `ListenerSink::accepted` was called and took the connection.
    Accepted(AcceptRequest, SocketHandle),
    /// `ListenerSink::accepted` was called and declined.
    Declined(AcceptRequest),
    /// An event of the accepted socket for this rendezvous id.
    Socket(String, Event),
}

/// What the test's `ListenerSink::accepted` does.
#[derive(Clone, Copy)]
enum Mode {
    /// Takes every connection offered.
    Take,
    /// Declines every connection offered.
    Decline,
}

struct Sink {
    tx: mpsc::UnboundedSender<Seen>,
    mode: Mode,
}

impl ListenerSink for Sink {
    fn push(&self, event: ListenerEvent) {
        let _ = self.tx.send(Seen::Listener(event));
    }

    fn accepted(&self, request: &AcceptRequest, handle: &Handle) -> Option<Arc<dyn EventSink>> {
        match self.mode {
            Mode::Decline => {
                let _ = self.tx.send(Seen::Declined(request.clone()));
                None
            }
            Mode::Take => {
                let _ = self.tx.send(Seen::Accepted(
                    request.clone(),
                    SocketHandle(handle.clone()),
                ));
                Some(Arc::new(SocketSink {
                    id: request.id.clone(),
                    tx: self.tx.clone(),
                }))
            }
        }
    }
}

/// Forwards an accepted socket's events, tagged with its rendezvous id.
struct SocketSink {
    id: String,
    tx: mpsc::UnboundedSender<Seen>,
}

impl EventSink for SocketSink {
    fn push(&self, event: Event) {
        let _ = self.tx.send(Seen::Socket(self.id.clone(), event));
    }
}

/// A running listener, answering its token requests with `token`.
struct Harness {
    handle: ListenerHandle,
    seen: mpsc::UnboundedReceiver<Seen>,
    token: String,
}

impl Harness {
    fn start(options: ListenerOptions, mode: Mode, token: String) -> Self {
        let (tx, seen) = mpsc::unbounded_channel();
        let handle = listener::start(options, Arc::new(Sink { tx, mode }));
        Harness {
            handle,
            seen,
            token,
        }
    }

    /// The next thing seen, answering token requests and skipping `Connecting` and the
    /// accepted sockets' `Written` reports on the way.
    async fn recv(&mut self) -> Seen {
        loop {
            match self
                .seen
                .recv()
                .await
                .expect("the listener or one of its sockets is still running")
            {
                Seen::Listener(ListenerEvent::NeedToken { request, .. }) => {
                    self.handle.send(ListenerCommand::Token {
                        request,
                        result: Ok(Token::new(self.token.clone())),
                    });
                }
                Seen::Listener(ListenerEvent::Connecting { .. })
                | Seen::Socket(_, Event::Written { .. }) => {}
                other => return other,
            }
        }
    }

    async fn next(&mut self, what: &str) -> Seen {
        timeout(WAIT, self.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
    }

    /// Asserts that the listener reports nothing for `window`.
    async fn quiet(&mut self, window: Duration, what: &str) {
        // Only a wait of a fixed length can show that something does not happen.
        if let Ok(seen) = timeout(window, self.recv()).await {
            panic!("{what}, but got {seen:?}");
        }
    }

    async fn online(&mut self) {
        match self.next("the listener to go online").await {
            Seen::Listener(ListenerEvent::Online) => {}
            other => panic!("expected Online, got {other:?}"),
        }
    }

    /// The next event must be a `ListenerEvent::Accept`.
    async fn accept_event(&mut self, what: &str) -> AcceptRequest {
        match self.next(what).await {
            Seen::Listener(ListenerEvent::Accept(request)) => request,
            other => panic!("expected an Accept event ({what}), got {other:?}"),
        }
    }

    /// `accepted` is called for `id` (and takes it).
    async fn accepted(&mut self, id: &str) -> (AcceptRequest, Handle) {
        match self.next(&format!("accepted() for {id}")).await {
            Seen::Accepted(request, handle) if request.id == id => (request, handle.0),
            other => panic!("expected accepted() for {id}, got {other:?}"),
        }
    }

    /// The accepted socket for `id` opens.
    async fn open(&mut self, id: &str) {
        match self.next(&format!("the socket for {id} to open")).await {
            Seen::Socket(i, Event::Open { protocol, .. }) if i == id => assert_eq!(protocol, ""),
            other => panic!("expected the socket for {id} to open, got {other:?}"),
        }
    }

    /// `accepted` is called for `id`, then its socket opens.
    async fn opened(&mut self, id: &str) -> (AcceptRequest, Handle) {
        let accepted = self.accepted(id).await;
        self.open(id).await;
        accepted
    }

    /// `accepted` is called for `id`, then its handshake fails: returns the error.
    async fn failed(&mut self, id: &str) -> SocketError {
        self.accepted(id).await;
        let error = match self.next(&format!("the socket for {id} to fail")).await {
            Seen::Socket(i, Event::Error(e)) if i == id => e,
            other => panic!("expected an error on the socket for {id}, got {other:?}"),
        };
        match self.next(&format!("the socket for {id} to close")).await {
            Seen::Socket(i, Event::Closed { code: 1006, .. }) if i == id => {}
            other => panic!("expected the socket for {id} to close with 1006, got {other:?}"),
        }
        error
    }

    /// Closes the listener; it must report `Closed` without error and, until then, no
    /// listener event and no `accepted` call (accepted sockets may report meanwhile).
    async fn close(&mut self) {
        self.handle.send(ListenerCommand::Close);
        loop {
            match self.next("the listener's Closed event").await {
                Seen::Listener(ListenerEvent::Closed { error: None }) => return,
                Seen::Socket(..) => {}
                other => panic!("expected the listener's Closed, got {other:?}"),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Against the local relay emulator
// ---------------------------------------------------------------------------------------

async fn relay() -> Arc<LocalRelay> {
    LocalRelay::start(RelayConfig::default(), None)
        .await
        .expect("the local relay starts")
}

fn relay_token(relay: &LocalRelay, url: &str) -> String {
    let rule = &relay.config().rules[0];
    sas::create_token(url, &rule.name, &rule.key, Some(3600.0), sas::now_ms())
        .expect("a token for the local relay")
}

/// A listener for the Hybrid Connection `hc` of `relay`.
fn relay_listener(relay: &LocalRelay, mode: Mode) -> Harness {
    let url = uri::action_uri(&relay.origin(), "hc", uri::Action::Listen, None, None)
        .expect("a listen address");
    let token = relay_token(relay, &url);
    Harness::start(ListenerOptions::new(url), mode, token)
}

/// Collects a sender's events.
struct Forward(mpsc::UnboundedSender<Event>);

impl EventSink for Forward {
    fn push(&self, event: Event) {
        let _ = self.0.send(event);
    }
}

/// A sender to `path` (below the relay's origin) with rendezvous id `id`, the header
/// `X-Custom: hello`, and the subprotocols `protocols`.
fn sender(
    relay: &LocalRelay,
    path: &str,
    id: &str,
    protocols: &[&str],
) -> (Handle, mpsc::UnboundedReceiver<Event>) {
    let url = uri::action_uri(&relay.origin(), path, uri::Action::Connect, None, Some(id))
        .expect("a sender address");
    let token = relay_token(relay, &url);
    let (tx, events) = mpsc::unbounded_channel();
    let options = ConnectOptions {
        url,
        headers: vec![
            ("ServiceBusAuthorization".to_owned(), token),
            ("X-Custom".to_owned(), "hello".to_owned()),
        ],
        protocols: protocols.iter().map(|p| (*p).to_owned()).collect(),
        handshake_timeout: WAIT,
        deflate: None,
        ca: Vec::new(),
        proxy: None,
    };
    let handle = socket::connect(options, SocketOptions::default(), Arc::new(Forward(tx)));
    (handle, events)
}

/// The sender's next event other than `Written`.
async fn sender_next(events: &mut mpsc::UnboundedReceiver<Event>, what: &str) -> Event {
    let wait = async {
        loop {
            match events.recv().await.expect("the sender's events go on") {
                Event::Written { .. } => {}
                other => return other,
            }
        }
    };
    timeout(WAIT, wait)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for the sender: {what}"))
}

/// Rejects `request` with 418; the sender must see its handshake refused with that status.
async fn reject(request: &AcceptRequest, sender: &mut mpsc::UnboundedReceiver<Event>) {
    let address = format!(
        "{}&sb-hc-statusCode=418&sb-hc-statusDescription=teapot",
        request.address
    );
    let outcome = listener::reject(&address, WAIT, &[], None).await;
    assert!(outcome.is_ok(), "the reject failed: {outcome:?}");
    match sender_next(sender, "its handshake to be refused").await {
        Event::Error(e) => assert_eq!(e.status_code, Some(418), "{e:?}"),
        other => panic!("expected the sender's handshake to fail, got {other:?}"),
    }
}

fn header<'a>(request: &'a AcceptRequest, name: &str) -> Option<&'a str> {
    request
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// With auto-accept on, a sender without subprotocols is handed to `accepted` (no `Accept`
/// event) with the right id, `req.url` and headers; its socket opens, and messages go
/// both ways between the sender and the accepted socket.
#[tokio::test]
async fn auto_accept_hands_the_sender_to_the_sink_and_it_talks() {
    let relay = relay().await;
    let mut h = relay_listener(&relay, Mode::Take);
    h.handle.set_auto_accept(true);
    h.online().await;

    let (sender, mut sent) = sender(&relay, "hc/sub/dir?x=1", "trace-1", &[]);
    let (request, socket) = h.opened("trace-1").await;
    assert_eq!(request.id, "trace-1");
    assert_eq!(request.url, "/sub/dir?x=1");
    assert!(
        request
            .address
            .contains("/$hc/hc/sub/dir?x=1&sb-hc-action=accept"),
        "{}",
        request.address
    );
    assert_eq!(header(&request, "x-custom"), Some("hello"), "{request:?}");
    assert!(
        header(&request, "sec-websocket-key").is_some(),
        "{request:?}"
    );
    assert!(
        header(&request, "servicebusauthorization").is_none(),
        "the relay passed the sender's token on: {request:?}"
    );
    assert_eq!(request.remote_address.as_deref(), Some("127.0.0.1"));
    match sender_next(&mut sent, "its open event").await {
        Event::Open { protocol, .. } => assert_eq!(protocol, ""),
        other => panic!("expected the sender to open, got {other:?}"),
    }

    sender.send(Command::Frame {
        opcode: OP_TEXT,
        fin: true,
        payload: b"ping".to_vec(),
        compress: false,
        accounted: 0,
        ack: 0,
    });
    match h.next("the sender's message at the accepted socket").await {
        Seen::Socket(id, Event::Message { binary, frames }) => {
            assert_eq!(id, "trace-1");
            assert!(!binary);
            assert_eq!(frames.concat(), b"ping");
        }
        other => panic!("expected the sender's message, got {other:?}"),
    }
    socket.send(Command::Frame {
        opcode: OP_TEXT,
        fin: true,
        payload: b"pong".to_vec(),
        compress: false,
        accounted: 0,
        ack: 0,
    });
    match sender_next(&mut sent, "the echo").await {
        Event::Message { binary, frames } => {
            assert!(!binary);
            assert_eq!(frames.concat(), b"pong");
        }
        other => panic!("expected the echo at the sender, got {other:?}"),
    }

    // `close` fails on any listener event before `Closed`: no Accept was emitted.
    h.close().await;
    relay.stop().await;
}

/// With auto-accept on, a sender that offers a subprotocol is not accepted here: the owner
/// gets an `Accept` event (and `accepted` is not called), since it must pick the protocol.
#[tokio::test]
async fn auto_accept_leaves_senders_with_subprotocols_to_the_owner() {
    let relay = relay().await;
    let mut h = relay_listener(&relay, Mode::Take);
    h.handle.set_auto_accept(true);
    h.online().await;

    let (_sender, mut sent) = sender(&relay, "hc", "proto-1", &["chat"]);
    let request = h
        .accept_event("an Accept for a sender with a subprotocol")
        .await;
    assert_eq!(request.id, "proto-1");
    assert_eq!(
        header(&request, "sec-websocket-protocol"),
        Some("chat"),
        "{request:?}"
    );
    reject(&request, &mut sent).await;

    h.close().await;
    relay.stop().await;
}

/// With auto-accept off (the default), every sender, with or without subprotocols, gives
/// an `Accept` event and `accepted` is never called.
#[tokio::test]
async fn without_auto_accept_every_sender_goes_to_the_owner() {
    let relay = relay().await;
    let mut h = relay_listener(&relay, Mode::Take);
    h.online().await;

    let (_plain, mut plain_events) = sender(&relay, "hc", "plain-1", &[]);
    let request = h.accept_event("an Accept for a plain sender").await;
    assert_eq!(request.id, "plain-1");
    assert_eq!(request.url, "/");
    reject(&request, &mut plain_events).await;

    let (_proto, mut proto_events) = sender(&relay, "hc", "proto-1", &["chat"]);
    let request = h
        .accept_event("an Accept for a sender with a subprotocol")
        .await;
    assert_eq!(request.id, "proto-1");
    reject(&request, &mut proto_events).await;

    h.close().await;
    relay.stop().await;
}

/// With auto-accept on, a sink whose `accepted` declines (returns `None`) gets the same
/// request as an `Accept` event.
#[tokio::test]
async fn a_declined_connection_goes_to_the_owner() {
    let relay = relay().await;
    let mut h = relay_listener(&relay, Mode::Decline);
    h.handle.set_auto_accept(true);
    h.online().await;

    let (_sender, mut sent) = sender(&relay, "hc/a", "declined-1", &[]);
    let offered = match h.next("accepted() to be called").await {
        Seen::Declined(request) => request,
        other => panic!("expected accepted() to be called, got {other:?}"),
    };
    assert_eq!(offered.id, "declined-1");
    let request = h.accept_event("an Accept after the decline").await;
    assert_eq!(request, offered);
    assert_eq!(request.url, "/a");
    reject(&request, &mut sent).await;

    h.close().await;
    relay.stop().await;
}

// ---------------------------------------------------------------------------------------
// Against a fake service
// ---------------------------------------------------------------------------------------

/// A fake control channel: the listener connects to `url`; `accept` sends it a message.
struct Service {
    url: String,
    feed: mpsc::UnboundedSender<String>,
    /// One item each time a control channel ends.
    ended: mpsc::UnboundedReceiver<()>,
}

impl Service {
    async fn start() -> Service {
        let server = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake service");
        let url = format!(
            "ws://{}/$hc/hc?sb-hc-action=listen",
            server.local_addr().expect("the fake service's address")
        );
        let (feed, mut messages) = mpsc::unbounded_channel::<String>();
        let (ended_tx, ended) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            // One control channel at a time: a listener opens no more.
            while let Ok((tcp, _)) = server.accept().await {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    continue;
                };
                let mut feeding = true;
                loop {
                    tokio::select! {
                        m = messages.recv(), if feeding => match m {
                            Some(text) => {
                                if ws.send(Message::text(text)).await.is_err() {
                                    break;
                                }
                            }
                            None => feeding = false,
                        },
                        // Reading also answers the listener's close frame.
                        incoming = ws.next() => {
                            if !matches!(incoming, Some(Ok(_))) {
                                break;
                            }
                        }
                    }
                }
                let _ = ended_tx.send(());
            }
        });
        Service { url, feed, ended }
    }

    /// Sends the listener an `accept` for rendezvous `id` at `address`.
    fn accept(&self, address: &str, id: &str) {
        let message = serde_json::json!({
            "accept": {
                "address": address,
                "id": id,
                "connectHeaders": {},
                "remoteEndpoint": { "address": "127.0.0.1", "port": 1 }
            }
        })
        .to_string();
        self.feed
            .send(message)
            .expect("the fake service is running");
    }

    async fn wait_ended(&mut self) {
        timeout(WAIT, self.ended.recv())
            .await
            .expect("timed out waiting for the control channel to end")
            .expect("the fake service is running");
    }
}

/// What the fake rendezvous server saw. Connections are numbered from 1 in the order they
/// were accepted.
#[derive(Debug, PartialEq, Eq)]
enum Rv {
    /// Connection n was opened.
    Connected(usize),
    /// Connection n carried the handshake for this rendezvous id.
    Request(usize, String),
    /// The listener closed connection n (before a request, or after the 101).
    Eof(usize),
    /// The server closed connection n on the test's order.
    Killed(usize),
    /// Connection n sent something that is not a WebSocket handshake.
    Garbage(usize, String),
}

/// A fake rendezvous server. The rendezvous id decides the answer to a handshake: `fail-*`
/// gets 404, `drop-*` is closed without an answer, `once-*` is closed without an answer
/// the first time and gets its 101 after that, `hold-*` gets its 101 when the test calls
/// [`Rendezvous::release`], anything else gets its 101 at once. After a 101 the connection
/// is kept until the listener's side closes it.
struct Rendezvous {
    port: u16,
    events: mpsc::UnboundedReceiver<Rv>,
    answers: Arc<Answers>,
    kills: Arc<Mutex<HashMap<usize, oneshot::Sender<()>>>>,
}

/// What the connections of a rendezvous server share.
struct Answers {
    /// Permits for `hold-*` handshakes.
    gate: Semaphore,
    /// The ids of the `once-*` handshakes seen.
    seen: Mutex<HashSet<String>>,
}

enum Head {
    Request { id: String, key: String },
    Eof,
    Garbage(String),
}

async fn read_head(tcp: &mut TcpStream) -> Head {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        match tcp.read(&mut chunk).await {
            Ok(0) | Err(_) => return Head::Eof,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&buf) {
            Ok(httparse::Status::Partial) => continue,
            Err(e) => return Head::Garbage(format!("{e}: {:?}", String::from_utf8_lossy(&buf))),
            Ok(httparse::Status::Complete(_)) => {
                let id = request
                    .path
                    .and_then(|p| url::Url::parse(&format!("ws://h{p}")).ok())
                    .and_then(|u| {
                        u.query_pairs()
                            .find(|(k, _)| k == "sb-hc-id")
                            .map(|(_, v)| v.into_owned())
                    });
                let key = request
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-key"))
                    .map(|h| String::from_utf8_lossy(h.value).into_owned());
                return match (id, key) {
                    (Some(id), Some(key)) => Head::Request { id, key },
                    _ => Head::Garbage(String::from_utf8_lossy(&buf).into_owned()),
                };
            }
        }
    }
}

async fn serve_rendezvous(
    mut tcp: TcpStream,
    n: usize,
    kill: oneshot::Receiver<()>,
    answers: Arc<Answers>,
    events: mpsc::UnboundedSender<Rv>,
) {
    let head = tokio::select! {
        head = read_head(&mut tcp) => head,
        Ok(()) = kill => {
            drop(tcp);
            let _ = events.send(Rv::Killed(n));
            return;
        }
    };
    let (id, key) = match head {
        Head::Request { id, key } => (id, key),
        Head::Eof => {
            let _ = events.send(Rv::Eof(n));
            return;
        }
        Head::Garbage(what) => {
            let _ = events.send(Rv::Garbage(n, what));
            return;
        }
    };
    let _ = events.send(Rv::Request(n, id.clone()));
    if id.starts_with("fail") {
        let _ = tcp
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            .await;
        return;
    }
    if id.starts_with("drop") {
        return;
    }
    if id.starts_with("once")
        && answers
            .seen
            .lock()
            .expect("the seen ids")
            .insert(id.clone())
    {
        return;
    }
    if id.starts_with("hold") {
        answers
            .gate
            .acquire()
            .await
            .expect("the gate is never closed")
            .forget();
    }
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    );
    if tcp.write_all(response.as_bytes()).await.is_err() {
        return;
    }
    let mut sink = [0u8; 1024];
    while matches!(tcp.read(&mut sink).await, Ok(n) if n > 0) {}
    let _ = events.send(Rv::Eof(n));
}

impl Rendezvous {
    async fn start() -> Rendezvous {
        let server = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the rendezvous server");
        let port = server
            .local_addr()
            .expect("the rendezvous server's address")
            .port();
        let (tx, events) = mpsc::unbounded_channel();
        let answers = Arc::new(Answers {
            gate: Semaphore::new(0),
            seen: Mutex::default(),
        });
        let kills: Arc<Mutex<HashMap<usize, oneshot::Sender<()>>>> = Arc::default();
        let (answers2, kills2) = (answers.clone(), kills.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while let Ok((tcp, _)) = server.accept().await {
                n += 1;
                let (kill_tx, kill) = oneshot::channel();
                if let Ok(mut k) = kills2.lock() {
                    k.insert(n, kill_tx);
                }
                let _ = tx.send(Rv::Connected(n));
                tokio::spawn(serve_rendezvous(tcp, n, kill, answers2.clone(), tx.clone()));
            }
        });
        Rendezvous {
            port,
            events,
            answers,
            kills,
        }
    }

    /// The accept address for rendezvous `id`.
    fn address(&self, id: &str) -> String {
        format!(
            "ws://127.0.0.1:{}/$hc/hc?sb-hc-action=accept&sb-hc-id={id}",
            self.port
        )
    }

    async fn next(&mut self, what: &str) -> Rv {
        timeout(WAIT, self.events.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for the rendezvous server: {what}"))
            .expect("the rendezvous server is running")
    }

    /// Asserts that the rendezvous server sees nothing for `window`.
    async fn quiet(&mut self, window: Duration, what: &str) {
        // Only a wait of a fixed length can show that something does not happen.
        if let Ok(seen) = timeout(window, self.events.recv()).await {
            panic!("{what}, but the rendezvous server saw {seen:?}");
        }
    }

    /// Lets `n` `hold-*` handshakes have their 101.
    fn release(&self, n: usize) {
        self.answers.gate.add_permits(n);
    }

    /// Closes connection n, which must still be waiting for its request.
    fn kill(&self, n: usize) {
        let kill = self
            .kills
            .lock()
            .expect("the kill list")
            .remove(&n)
            .unwrap_or_else(|| panic!("no connection {n}"));
        kill.send(())
            .unwrap_or_else(|_| panic!("connection {n} is no longer waiting for a request"));
    }
}

/// A fake service, a rendezvous server, and an online auto-accepting listener.
async fn fake_setup(spare_max_age: Option<Duration>) -> (Service, Rendezvous, Harness) {
    let service = Service::start().await;
    let rendezvous = Rendezvous::start().await;
    let mut options = ListenerOptions::new(service.url.clone());
    options.keep_alive = None;
    options.spare_max_age = spare_max_age;
    let token = sas::create_token(&service.url, "rule", "key", Some(3600.0), sas::now_ms())
        .expect("a token for the fake service");
    let mut h = Harness::start(options, Mode::Take, token);
    h.handle.set_auto_accept(true);
    h.online().await;
    (service, rendezvous, h)
}

/// The handshake for `id` must arrive on connection `conn`, and its socket open.
async fn handshake_on(rv: &mut Rendezvous, h: &mut Harness, id: &str, conn: usize) {
    assert_eq!(
        rv.next(&format!("the request for {id}")).await,
        Rv::Request(conn, id.to_owned()),
        "the request for {id} must come on connection {conn}"
    );
    h.opened(id).await;
}

/// Sends the accept for `id`: its handshake must go over the open connection `conn` (no
/// new connection), and its socket open.
async fn accept_on(s: &Service, rv: &mut Rendezvous, h: &mut Harness, id: &str, conn: usize) {
    s.accept(&rv.address(id), id);
    handshake_on(rv, h, id, conn).await;
}

/// Sends the accept for `id`: a new connection `conn` must carry its handshake, and its
/// socket open.
async fn accept_fresh(s: &Service, rv: &mut Rendezvous, h: &mut Harness, id: &str, conn: usize) {
    s.accept(&rv.address(id), id);
    assert_eq!(
        rv.next(&format!("a new connection for {id}")).await,
        Rv::Connected(conn),
        "a new connection for {id}"
    );
    handshake_on(rv, h, id, conn).await;
}

/// After an accept the listener opens exactly one spare connection, which sends nothing;
/// the next accept's handshake goes over it (no new connection), and a new spare follows.
#[tokio::test]
async fn the_spare_connection_carries_the_next_accept() {
    let (s, mut rv, mut h) = fake_setup(Some(Duration::from_secs(60))).await;

    accept_fresh(&s, &mut rv, &mut h, "ok-1", 1).await;
    assert_eq!(rv.next("the spare").await, Rv::Connected(2));
    rv.quiet(QUIET, "the spare must send nothing and be the only one")
        .await;

    accept_on(&s, &mut rv, &mut h, "ok-2", 2).await;
    assert_eq!(rv.next("the next spare").await, Rv::Connected(3));
    rv.quiet(QUIET, "one spare at a time").await;

    h.close().await;
}

/// After an accept handshake that fails (404, or closed without an answer) no spare is
/// opened; a later successful accept does open one.
#[tokio::test]
async fn no_spare_after_a_failed_accept() {
    let (s, mut rv, mut h) = fake_setup(Some(Duration::from_secs(60))).await;

    s.accept(&rv.address("fail-1"), "fail-1");
    assert_eq!(rv.next("the connection").await, Rv::Connected(1));
    assert_eq!(
        rv.next("the request").await,
        Rv::Request(1, "fail-1".into())
    );
    let e = h.failed("fail-1").await;
    assert_eq!(e.status_code, Some(404), "{e:?}");
    rv.quiet(QUIET, "no spare after a 404").await;

    s.accept(&rv.address("drop-1"), "drop-1");
    assert_eq!(rv.next("the connection").await, Rv::Connected(2));
    assert_eq!(
        rv.next("the request").await,
        Rv::Request(2, "drop-1".into())
    );
    let e = h.failed("drop-1").await;
    assert_eq!(e.status_code, None, "{e:?}");
    rv.quiet(QUIET, "no spare after a handshake closed without an answer")
        .await;

    accept_fresh(&s, &mut rv, &mut h, "ok-1", 3).await;
    assert_eq!(rv.next("the spare").await, Rv::Connected(4));

    h.close().await;
}

/// A spare the server closed before the next accept does not fail that accept: its
/// handshake goes over a fresh connection, and a new spare follows.
#[tokio::test]
async fn an_accept_after_the_server_closed_the_spare_still_succeeds() {
    let (s, mut rv, mut h) = fake_setup(Some(Duration::from_secs(60))).await;

    accept_fresh(&s, &mut rv, &mut h, "ok-1", 1).await;
    assert_eq!(rv.next("the spare").await, Rv::Connected(2));
    rv.kill(2);
    assert_eq!(rv.next("the spare's close").await, Rv::Killed(2));

    accept_fresh(&s, &mut rv, &mut h, "ok-2", 3).await;
    assert_eq!(rv.next("the next spare").await, Rv::Connected(4));

    h.close().await;
}

/// A spare the server drops when the handshake arrives on it (it had given up on the
/// connection just as the listener used it) does not fail the accept either: the handshake
/// is made again on a fresh connection, and a new spare follows.
#[tokio::test]
async fn a_handshake_on_a_spare_the_server_dropped_is_made_again() {
    let (s, mut rv, mut h) = fake_setup(Some(Duration::from_secs(60))).await;

    accept_fresh(&s, &mut rv, &mut h, "ok-1", 1).await;
    assert_eq!(rv.next("the spare").await, Rv::Connected(2));

    s.accept(&rv.address("once-2"), "once-2");
    assert_eq!(
        rv.next("the request on the spare").await,
        Rv::Request(2, "once-2".into())
    );
    assert_eq!(rv.next("a fresh connection").await, Rv::Connected(3));
    assert_eq!(
        rv.next("the request again").await,
        Rv::Request(3, "once-2".into())
    );
    h.opened("once-2").await;
    assert_eq!(rv.next("the next spare").await, Rv::Connected(4));

    h.close().await;
}

/// Accepts whose handshakes overlap each ask for a spare once they open, but only one
/// spare is opened.
#[tokio::test]
async fn overlapping_accepts_leave_one_spare() {
    let (s, mut rv, mut h) = fake_setup(Some(Duration::from_secs(60))).await;

    // Both handshakes are held until both have arrived: neither can find a spare.
    s.accept(&rv.address("hold-1"), "hold-1");
    s.accept(&rv.address("hold-2"), "hold-2");
    let mut requests = Vec::new();
    for _ in 0..4 {
        match rv.next("the two connections and their requests").await {
            Rv::Connected(_) => {}
            Rv::Request(conn, id) => requests.push((id, conn)),
            other => panic!("expected two connections and requests, got {other:?}"),
        }
    }
    requests.sort();
    let conns: HashSet<usize> = requests.iter().map(|(_, c)| *c).collect();
    assert_eq!(conns, HashSet::from([1, 2]), "{requests:?}");
    assert_eq!(
        requests
            .iter()
            .map(|(id, _)| id.as_str())
            .collect::<Vec<_>>(),
        ["hold-1", "hold-2"]
    );
    h.accepted("hold-1").await;
    h.accepted("hold-2").await;

    rv.release(2);
    let mut opened = Vec::new();
    for _ in 0..2 {
        match h.next("the held sockets to open").await {
            Seen::Socket(id, Event::Open { .. }) => opened.push(id),
            other => panic!("expected the held sockets to open, got {other:?}"),
        }
    }
    opened.sort();
    assert_eq!(opened, ["hold-1", "hold-2"]);
    assert_eq!(rv.next("the spare").await, Rv::Connected(3));
    rv.quiet(QUIET, "one spare at a time").await;

    h.close().await;
}

/// With `spare_max_age: None` no spare is ever opened: every accept connects afresh.
#[tokio::test]
async fn no_spare_without_spare_max_age() {
    let (s, mut rv, mut h) = fake_setup(None).await;

    accept_fresh(&s, &mut rv, &mut h, "ok-1", 1).await;
    rv.quiet(QUIET, "no spare without spare_max_age").await;

    accept_fresh(&s, &mut rv, &mut h, "ok-2", 2).await;
    rv.quiet(QUIET, "no spare without spare_max_age").await;

    h.close().await;
}

/// A spare unused for `spare_max_age` is closed by the listener (not sooner), and not
/// replaced until the next accept, which then connects afresh and opens a new spare.
#[tokio::test]
async fn an_unused_spare_expires_and_is_not_replaced() {
    let max_age = Duration::from_millis(300);
    let (s, mut rv, mut h) = fake_setup(Some(max_age)).await;

    accept_fresh(&s, &mut rv, &mut h, "ok-1", 1).await;
    assert_eq!(rv.next("the spare").await, Rv::Connected(2));
    let opened = Instant::now();
    assert_eq!(rv.next("the spare's expiry").await, Rv::Eof(2));
    let age = opened.elapsed();
    // The listener's clock starts once its connect completes, a little before the server
    // sees the connection: allow some slack below max_age.
    assert!(
        age >= max_age - Duration::from_millis(50),
        "the spare was closed after {age:?}, before its max age {max_age:?}"
    );
    rv.quiet(max_age * 2, "an expired spare is not replaced")
        .await;

    accept_fresh(&s, &mut rv, &mut h, "ok-2", 3).await;
    assert_eq!(rv.next("the next spare").await, Rv::Connected(4));

    h.close().await;
}

/// The listener's close closes its spare (long before its max age).
#[tokio::test]
async fn the_spare_is_closed_with_the_listener() {
    // Far longer than WAIT: an expiry cannot pass for the close.
    let (s, mut rv, mut h) = fake_setup(Some(Duration::from_secs(60))).await;

    accept_fresh(&s, &mut rv, &mut h, "ok-1", 1).await;
    assert_eq!(rv.next("the spare").await, Rv::Connected(2));

    h.close().await;
    assert_eq!(rv.next("the spare's close").await, Rv::Eof(2));
}

/// The listener's close waits for an accept handshake it started by itself: `Closed` comes
/// only after that socket's `Open`, so the owner hears of every connection before it hears
/// that the listener is closed. No spare is opened once the listener is closed.
#[tokio::test]
async fn close_waits_for_an_accept_in_flight() {
    let (mut s, mut rv, mut h) = fake_setup(Some(Duration::from_secs(60))).await;

    s.accept(&rv.address("hold-1"), "hold-1");
    assert_eq!(rv.next("the connection").await, Rv::Connected(1));
    assert_eq!(
        rv.next("the request").await,
        Rv::Request(1, "hold-1".into())
    );
    h.accepted("hold-1").await;

    h.handle.send(ListenerCommand::Close);
    s.wait_ended().await;
    h.quiet(
        QUIET,
        "the listener must not close while its accept is in flight",
    )
    .await;

    rv.release(1);
    match h.next("the held socket to open").await {
        Seen::Socket(id, Event::Open { .. }) if id == "hold-1" => {}
        other => panic!("expected the held socket to open before the close, got {other:?}"),
    }
    match h.next("the listener's Closed").await {
        Seen::Listener(ListenerEvent::Closed { error: None }) => {}
        other => panic!("expected the listener's Closed, got {other:?}"),
    }
    rv.quiet(QUIET, "no spare once the listener is closed")
        .await;
}
