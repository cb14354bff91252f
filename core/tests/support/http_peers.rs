//! Hand-written peers for the emulator's HTTP tests, written from the protocol and not from
//! the relay's code: a raw HTTP/1.1 sender over TCP (request bytes out, responses parsed),
//! and a listener speaking the control channel with tokio-tungstenite, or with raw frames
//! where the framing itself is under test. Every wait has a timeout.

#![allow(dead_code)]

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyco_core::relay::LocalRelay;
use hyco_core::socket::frame::{Decoder, Incoming, Limits};
use hyco_core::{sas, uri};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{client_async, WebSocketStream};

pub type Ws = WebSocketStream<TcpStream>;

pub const WAIT: Duration = Duration::from_secs(20);

pub async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// A token of the relay's first rule for `resource`.
pub fn token(relay: &LocalRelay, resource: &str) -> String {
    let rule = &relay.config().rules[0];
    sas::create_token(resource, &rule.name, &rule.key, Some(600.0), sas::now_ms()).unwrap()
}

/// A sender token for Hybrid Connection `hc`, in the https form senders sign.
pub fn send_token(relay: &LocalRelay, hc: &str) -> String {
    token(relay, &format!("https://127.0.0.1:{}/{hc}", relay.port()))
}

/// Opens a WebSocket to `url`, with an optional token header; Err holds the HTTP status.
pub async fn open_ws(url: &str, token: Option<&str>) -> Result<Ws, u16> {
    let mut req = url.into_client_request().unwrap();
    if let Some(t) = token {
        req.headers_mut()
            .insert("ServiceBusAuthorization", HeaderValue::from_str(t).unwrap());
    }
    let authority = req.uri().authority().unwrap().as_str().to_owned();
    let tcp = TcpStream::connect(authority).await.unwrap();
    match client_async(req, tcp).await {
        Ok((ws, _)) => Ok(ws),
        Err(WsError::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("unexpected handshake error: {e}"),
    }
}

/// A listener's control channel on `hc`.
pub async fn listen(relay: &LocalRelay, hc: &str) -> Ws {
    let u = uri::action_uri(&relay.origin(), hc, uri::Action::Listen, None, None).unwrap();
    let t = token(relay, &u);
    within("the control channel", open_ws(&u, Some(&t)))
        .await
        .expect("listener connects")
}

/// The next data message (pings and pongs skipped); `None` when the socket closed.
pub async fn next_message(ws: &mut Ws) -> Option<Message> {
    loop {
        match within("a message", ws.next()).await {
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(m)) => return Some(m),
        }
    }
}

/// The next text message, as JSON.
pub async fn next_json(ws: &mut Ws) -> Value {
    match next_message(ws).await {
        Some(Message::Text(t)) => serde_json::from_str(&t).unwrap(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

/// The next `request` message's body.
pub async fn next_request(ws: &mut Ws) -> Value {
    let v = next_json(ws).await;
    assert!(v.get("request").is_some(), "expected a request: {v}");
    v["request"].clone()
}

/// The next binary message (a body), whole.
pub async fn next_binary(ws: &mut Ws) -> Vec<u8> {
    match next_message(ws).await {
        Some(Message::Binary(b)) => b.to_vec(),
        other => panic!("expected a binary message, got {other:?}"),
    }
}

/// Waits for the socket to close; the close code, if a close frame came.
pub async fn close_code(ws: &mut Ws) -> Option<u16> {
    loop {
        match within("the close", ws.next()).await {
            Some(Ok(Message::Close(f))) => return f.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            None | Some(Err(_)) => return None,
        }
    }
}

/// Sends a `response` message and, if `body` is given, one binary message.
pub async fn respond(ws: &mut Ws, id: &str, status: u16, headers: Value, body: Option<&[u8]>) {
    let msg = serde_json::json!({ "response": {
        "requestId": id, "statusCode": status, "responseHeaders": headers, "body": body.is_some()
    }});
    ws.send(Message::text(msg.to_string())).await.unwrap();
    if let Some(b) = body {
        ws.send(Message::binary(b.to_vec())).await.unwrap();
    }
}

/// A response as the sender parsed it.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub chunked: bool,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// A raw HTTP/1.1 client connection to the relay.
pub struct Sender {
    pub tcp: TcpStream,
    buf: Vec<u8>,
    host: String,
}

impl Sender {
    pub async fn connect(relay: &LocalRelay) -> Sender {
        let tcp = TcpStream::connect(("127.0.0.1", relay.port()))
            .await
            .unwrap();
        Sender {
            tcp,
            buf: Vec::new(),
            host: format!("127.0.0.1:{}", relay.port()),
        }
    }

    pub fn local_port(&self) -> u16 {
        self.tcp.local_addr().unwrap().port()
    }

    pub async fn write(&mut self, bytes: &[u8]) {
        self.tcp.write_all(bytes).await.unwrap();
    }

    /// Writes a request: `Host`, the given headers, and `Content-Length` for a non-empty
    /// body unless the headers frame it.
    pub async fn request(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) {
        let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {}\r\n", self.host);
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        let framed = headers.iter().any(|(k, _)| {
            k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("transfer-encoding")
        });
        if !body.is_empty() && !framed {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut all = head.into_bytes();
        all.extend_from_slice(body);
        self.write(&all).await;
    }

    async fn fill(&mut self) -> bool {
        let mut chunk = vec![0u8; 64 * 1024];
        match self.tcp.read(&mut chunk).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    async fn line(&mut self) -> String {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..i + 2).collect();
                return String::from_utf8_lossy(&line[..i]).into_owned();
            }
            assert!(self.fill().await, "connection closed mid-line");
        }
    }

    async fn exact(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(self.fill().await, "connection closed mid-body");
        }
        self.buf.drain(..n).collect()
    }

    async fn read_response(&mut self, head_request: bool) -> HttpResponse {
        loop {
            let status_line = self.line().await;
            let mut parts = status_line.splitn(3, ' ');
            assert!(
                parts.next().unwrap().starts_with("HTTP/1."),
                "{status_line}"
            );
            let status: u16 = parts.next().unwrap().parse().unwrap();
            let reason = parts.next().unwrap_or("").to_owned();
            let mut headers = Vec::new();
            loop {
                let l = self.line().await;
                if l.is_empty() {
                    break;
                }
                let (k, v) = l.split_once(':').unwrap();
                headers.push((k.trim().to_owned(), v.trim().to_owned()));
            }
            if status == 100 {
                continue;
            }
            let mut r = HttpResponse {
                status,
                reason,
                headers,
                body: Vec::new(),
                chunked: false,
            };
            if head_request || status == 204 || status == 304 {
                return r;
            }
            if r.header("Transfer-Encoding")
                .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
            {
                r.chunked = true;
                loop {
                    let size = usize::from_str_radix(self.line().await.trim(), 16).unwrap();
                    if size == 0 {
                        assert_eq!(self.line().await, "", "no trailers");
                        return r;
                    }
                    let data = self.exact(size).await;
                    r.body.extend_from_slice(&data);
                    assert_eq!(self.line().await, "");
                }
            }
            if let Some(n) = r.header("Content-Length") {
                let n: usize = n.parse().unwrap();
                r.body = self.exact(n).await;
                return r;
            }
            while self.fill().await {}
            r.body = std::mem::take(&mut self.buf);
            return r;
        }
    }

    /// The next response (`head_request` for a response to HEAD: no body).
    pub async fn response(&mut self, head_request: bool) -> HttpResponse {
        within("a response", self.read_response(head_request)).await
    }

    /// Reads a `101 Switching Protocols` head (failing on any other status) and goes on
    /// as the client side of a WebSocket over the same connection.
    pub async fn upgraded(mut self) -> Ws {
        let status_line = within("the upgrade response", self.line()).await;
        assert!(
            status_line.starts_with("HTTP/1.1 101 "),
            "expected 101, got {status_line:?}"
        );
        while !within("the upgrade response", self.line()).await.is_empty() {}
        WebSocketStream::from_partially_read(self.tcp, self.buf, Role::Client, None).await
    }

    /// True when the relay closes the connection (nothing more to read).
    pub async fn closed(&mut self) -> bool {
        within("the connection to close", async {
            while self.buf.is_empty() {
                if !self.fill().await {
                    return true;
                }
            }
            false
        })
        .await
    }
}

/// One request (on a fresh connection) and its response.
pub async fn exchange(
    relay: &LocalRelay,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let mut s = Sender::connect(relay).await;
    s.request(method, target, headers, body).await;
    s.response(method == "HEAD").await
}

/// A control channel at the frame level, for tests about how the relay frames messages.
pub struct RawListener {
    tcp: TcpStream,
    decoder: Decoder,
    buf: Vec<u8>,
    decoded: std::collections::VecDeque<Incoming>,
}

impl RawListener {
    pub async fn listen(relay: &LocalRelay, hc: &str) -> RawListener {
        let u = uri::action_uri(&relay.origin(), hc, uri::Action::Listen, None, None).unwrap();
        let t = token(relay, &u);
        let mut tcp = TcpStream::connect(("127.0.0.1", relay.port()))
            .await
            .unwrap();
        let req = format!(
            "GET /$hc/{hc}?sb-hc-action=listen HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nServiceBusAuthorization: {t}\r\n\r\n",
            relay.port()
        );
        tcp.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let end = within("the 101", async {
            loop {
                let n = tcp.read(&mut chunk).await.unwrap();
                assert!(n > 0, "closed during the handshake");
                buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    return i + 4;
                }
            }
        })
        .await;
        assert!(
            buf.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&buf)
        );
        buf.drain(..end);
        RawListener {
            tcp,
            decoder: Decoder::new(Limits::default()),
            buf,
            decoded: Default::default(),
        }
    }

    /// The next data message: binary or not, and each frame's payload.
    pub async fn next_frames(&mut self) -> (bool, Vec<Vec<u8>>) {
        within("a message", async {
            let mut out = Vec::new();
            loop {
                let used = self.decoder.decode(&self.buf, &mut out).unwrap();
                self.buf.drain(..used);
                self.decoded.extend(out.drain(..));
                while let Some(m) = self.decoded.pop_front() {
                    if let Incoming::Message { binary, frames } = m {
                        return (binary, frames.into_vec());
                    }
                }
                let mut chunk = vec![0u8; 64 * 1024];
                let n = self.tcp.read(&mut chunk).await.unwrap();
                assert!(n > 0, "control channel closed");
                self.buf.extend_from_slice(&chunk[..n]);
            }
        })
        .await
    }
}
