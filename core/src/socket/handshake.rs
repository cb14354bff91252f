//! The client side of a WebSocket connection up to `101 Switching Protocols`: the stream
//! (DNS, TCP, a proxy's tunnel, TLS: [`crate::socket::dial`]) and the HTTP upgrade, with
//! errors that say what failed in Node.js's terms (`ECONNREFUSED`, `ENOTFOUND`, certificate
//! codes, `Unexpected server response: 404`).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::io::IoStream;
use crate::io::Watchable;
use crate::redact::redact_secrets;
use crate::socket::deflate::{self, Agreement, Negotiation};
use crate::socket::dial::{open_stream, Dialed, Route};
use crate::socket::error::{io_error, SocketError};
use crate::socket::proxy::{ProxyConfig, ProxyServer};

/// What the client asks for.
#[derive(Clone)]
pub struct ConnectOptions {
    /// `ws://` or `wss://` URL.
    pub url: String,
    /// Extra request headers (e.g. `ServiceBusAuthorization`). Never logged.
    pub headers: Vec<(String, String)>,
    /// Offered subprotocols.
    pub protocols: Vec<String>,
    /// Time allowed from the start to the 101 response. Default 70 s (as .NET's client).
    pub handshake_timeout: Duration,
    /// Extra trusted certificates (PEM).
    pub ca: Vec<Vec<u8>>,
    /// The proxies to choose from (see [`ProxyConfig::select`]); `None`: always direct.
    pub proxy: Option<Arc<ProxyConfig>>,
    /// permessage-deflate: offered (a client), answered (a listener's accept socket), or
    /// `None`.
    pub deflate: Option<Negotiation>,
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry `sb-hc-token` and the headers `ServiceBusAuthorization`.
        let names: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("ConnectOptions")
            .field("url", &redact_secrets(&self.url))
            .field("header_names", &names)
            .field("protocols", &self.protocols)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("ca", &self.ca.len())
            .field("proxy", &self.proxy)
            .field("deflate", &self.deflate)
            .finish()
    }
}

/// Request headers the handshake sets itself; a caller's copy is dropped (as ws's own
/// values win over user headers).
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "connection",
    "upgrade",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
];

fn fail(message: impl Into<String>, code: Option<&'static str>) -> SocketError {
    SocketError::new(message, code)
}

/// A connection after a successful upgrade.
pub struct Established {
    /// The stream, TLS or not.
    pub stream: IoStream,
    /// Bytes received after the 101 response (the first frames).
    pub initial: Vec<u8>,
    /// The subprotocol the server chose, `""` if none.
    pub protocol: String,
    /// The permessage-deflate agreement, if any.
    pub deflate: Option<Agreement>,
    /// The TCP socket, where the platform's is used (inline reads).
    pub watch: Option<Watchable>,
}

struct Target {
    tls: bool,
    host: String,
    port: u16,
    /// `Host` header value.
    authority: String,
    /// Request target (path and query).
    resource: String,
}

fn parse_target(url: &str) -> Result<Target, SocketError> {
    let parsed = url::Url::parse(url).map_err(|_| {
        fail(
            format!("Invalid URL: {}", redact_secrets(url)),
            Some("ERR_INVALID_URL"),
        )
    })?;
    let tls = match parsed.scheme() {
        "ws" | "http" => false,
        "wss" | "https" => true,
        _ => {
            return Err(fail(
                "The URL's protocol must be one of \"ws:\", \"wss:\", \"http:\", \"https:\"",
                Some("ERR_INVALID_URL"),
            ))
        }
    };
    let host = match parsed.host() {
        Some(url::Host::Ipv6(a)) => a.to_string(),
        Some(h) => h.to_string(),
        None => {
            return Err(fail(
                format!("Invalid URL: {}", redact_secrets(url)),
                Some("ERR_INVALID_URL"),
            ))
        }
    };
    let port = parsed
        .port_or_known_default()
        .unwrap_or(if tls { 443 } else { 80 });
    let host_for_header = match parsed.host() {
        Some(url::Host::Ipv6(a)) => format!("[{a}]"),
        _ => host.clone(),
    };
    let authority = match parsed.port() {
        Some(p) => format!("{host_for_header}:{p}"),
        None => host_for_header,
    };
    let mut resource = parsed.path().to_owned();
    if let Some(q) = parsed.query() {
        resource.push('?');
        resource.push_str(q);
    }
    Ok(Target {
        tls,
        host,
        port,
        authority,
        resource,
    })
}

/// Most bytes a handshake response's head may take.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// A handshake response's head.
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// The status code.
    pub status: u16,
    /// The reason phrase.
    pub reason: String,
    /// The headers in order, names lowercased (bytes that are not UTF-8 replaced).
    pub headers: Vec<(String, String)>,
}

/// Parses the response head at the start of `buf`: the head and its length in bytes, or
/// `None` while it is incomplete. Public (hidden) for the generated-input tests.
#[doc(hidden)]
pub fn parse_response_head(buf: &[u8]) -> Result<Option<(ResponseHead, usize)>, SocketError> {
    let parsed = crate::http_head::parse_response(buf, |resp, len| {
        let head = ResponseHead {
            status: resp.code.unwrap_or(0),
            reason: resp.reason.unwrap_or("").to_owned(),
            headers: resp
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_ascii_lowercase(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect(),
        };
        (head, len)
    });
    match parsed {
        Ok(None) if buf.len() > MAX_RESPONSE_HEAD => Err(fail(
            "Invalid handshake response: the header is too large",
            Some("ERR_INVALID_HTTP_RESPONSE"),
        )),
        Ok(parsed) => Ok(parsed),
        Err(_) => Err(fail(
            "Invalid handshake response",
            Some("ERR_INVALID_HTTP_RESPONSE"),
        )),
    }
}

/// Reads the response head; returns it with the bytes after it.
async fn read_response(stream: &mut IoStream) -> Result<(ResponseHead, Vec<u8>), SocketError> {
    // Read straight into the growing head buffer: no fixed chunk in the handshake's state,
    // which thousands of concurrent accepts would each hold.
    let mut buf = Vec::with_capacity(1024);
    loop {
        if buf.capacity() - buf.len() < 512 {
            buf.reserve(buf.capacity().max(1024));
        }
        let n = stream
            .read_buf(&mut buf)
            .await
            .map_err(|e| io_error(&e, "reading the handshake response"))?;
        if n == 0 {
            return Err(fail("socket hang up", Some("ECONNRESET")));
        }
        while let Some((head, len)) = parse_response_head(&buf)? {
            let rest = buf.split_off(len);
            // An informational answer (100 Continue, 103 Early Hints) comes before the real
            // one: skipped, as Node.js's parser does for ws.
            if (100..200).contains(&head.status) && head.status != 101 {
                buf = rest;
                continue;
            }
            return Ok((head, rest));
        }
    }
}

/// Checks the response to an upgrade request made with `key` and offering `protocols`, as
/// ws does; returns the subprotocol the server chose (`""` for none). Public (hidden) for
/// the generated-input tests.
#[doc(hidden)]
pub fn check_response(
    head: &ResponseHead,
    key: &str,
    protocols: &[String],
) -> Result<String, SocketError> {
    check_response_with(head, key, protocols, None).map(|(p, _)| p)
}

/// [`check_response`] for a request that negotiated permessage-deflate as `deflate` says:
/// also returns the agreement.
pub fn check_response_with(
    head: &ResponseHead,
    key: &str,
    protocols: &[String],
    deflate: Option<&Negotiation>,
) -> Result<(String, Option<Agreement>), SocketError> {
    // A header as ws sees it on Node.js's parser: values trimmed, a repeated header's
    // joined with ", " (so twice the right Sec-WebSocket-Accept is not the right one).
    let header = |name: &str| -> Option<String> {
        let mut values = head
            .headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.trim());
        let first = values.next()?.to_owned();
        Some(values.fold(first, |all, v| all + ", " + v))
    };
    // Node.js takes a 101 for a switch of protocols only with an Upgrade header and
    // `upgrade` among the Connection tokens; ws reports any other 101 as unexpected.
    let switching = header("upgrade").is_some_and(|v| !v.is_empty())
        && header("connection").is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        });
    if head.status != 101 || !switching {
        return Err(SocketError::unexpected_response(
            head.status,
            head.reason.clone(),
        ));
    }
    if !header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")) {
        return Err(fail(
            "Invalid Upgrade header",
            Some("ERR_INVALID_HTTP_RESPONSE"),
        ));
    }
    if header("sec-websocket-accept") != Some(derive_accept_key(key.as_bytes())) {
        return Err(fail(
            "Invalid Sec-WebSocket-Accept header",
            Some("ERR_INVALID_HTTP_RESPONSE"),
        ));
    }
    let protocol = match header("sec-websocket-protocol") {
        Some(_) if protocols.is_empty() => {
            return Err(fail(
                "Server sent a subprotocol but none was requested",
                Some("ERR_INVALID_HTTP_RESPONSE"),
            ))
        }
        Some(p) if !protocols.contains(&p) => {
            return Err(fail(
                "Server sent an invalid subprotocol",
                Some("ERR_INVALID_HTTP_RESPONSE"),
            ))
        }
        Some(p) => p,
        None if !protocols.is_empty() => {
            return Err(fail(
                "Server sent no subprotocol",
                Some("ERR_INVALID_HTTP_RESPONSE"),
            ))
        }
        None => String::new(),
    };
    let agreement = deflate::check_answer(deflate, header("sec-websocket-extensions").as_deref())?;
    Ok((protocol, agreement))
}

/// Where a connection goes, and through which proxy: what a [`Spare`] must match to serve
/// a handshake (a spare is never used across proxy settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    tls: bool,
    host: String,
    port: u16,
    via: Option<Arc<ProxyServer>>,
}

impl Endpoint {
    /// The endpoint of a `ws:`/`wss:` URL with `proxy`'s choice for it; `None` if it is not
    /// such a URL, or its proxy setting is unusable.
    pub fn of(url: &str, proxy: Option<&ProxyConfig>) -> Option<Endpoint> {
        parse_target(url).ok()?.endpoint(proxy).ok()
    }

    /// Opens a stream to this endpoint, by `deadline`.
    async fn open(&self, ca: &[Vec<u8>], deadline: Instant) -> Result<Dialed, SocketError> {
        let route = Route {
            tls: self.tls,
            host: &self.host,
            port: self.port,
            proxy: self.via.as_deref(),
        };
        open_stream(&route, ca, deadline).await
    }
}

impl Target {
    fn endpoint(&self, proxy: Option<&ProxyConfig>) -> Result<Endpoint, SocketError> {
        let via = match proxy {
            Some(p) => p.select(self.tls, &self.host, self.port)?,
            None => None,
        };
        Ok(Endpoint {
            tls: self.tls,
            host: self.host.clone(),
            port: self.port,
            via,
        })
    }
}

/// A connection opened before it is needed (TCP, a proxy's tunnel if one is used, and TLS
/// for `wss:`), for the next handshake to the same endpoint: that handshake then skips the
/// connect (and the TLS handshake), which is most of an accept's own time.
pub struct Spare {
    endpoint: Endpoint,
    stream: IoStream,
    watch: Option<Watchable>,
}

impl Spare {
    /// Opens a spare connection to `url`'s endpoint (through the proxy `proxy` chooses).
    pub async fn open(
        url: &str,
        ca: &[Vec<u8>],
        proxy: Option<&ProxyConfig>,
        timeout: Duration,
    ) -> Result<Spare, SocketError> {
        let endpoint = parse_target(url)?.endpoint(proxy)?;
        let deadline = Instant::now() + timeout;
        let Dialed { stream, watch } =
            tokio::time::timeout_at(deadline, endpoint.open(ca, deadline))
                .await
                .map_err(|_| fail("Opening handshake has timed out", Some("ETIMEDOUT")))??;
        Ok(Spare {
            endpoint,
            stream,
            watch,
        })
    }

    /// The endpoint it is connected to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Still open, with nothing received (the server has not given up on it).
    fn alive(&mut self) -> bool {
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        let mut byte = [0u8; 1];
        let mut buf = ReadBuf::new(&mut byte);
        matches!(
            Pin::new(&mut self.stream).poll_read(&mut cx, &mut buf),
            Poll::Pending
        )
    }
}

/// Errors after which a handshake over a spare connection is tried again on a fresh one:
/// the server had closed the spare without a word.
fn spare_was_dead(e: &SocketError) -> bool {
    e.status_code.is_none() && matches!(e.code, Some("ECONNRESET" | "EPIPE" | "ECONNABORTED"))
}

/// What a handshake calls once its request is on the wire (see [`connect_with`]).
type Sent<'a> = &'a (dyn Fn() + Sync);

async fn upgrade(
    opts: &ConnectOptions,
    spare: Option<Spare>,
    sent: Sent<'_>,
    deadline: Instant,
) -> Result<Established, SocketError> {
    let target = parse_target(&opts.url)?;
    let endpoint = target.endpoint(opts.proxy.as_deref())?;
    if let Some(mut spare) = spare {
        if spare.endpoint == endpoint && spare.alive() {
            let dialed = Dialed {
                stream: spare.stream,
                watch: spare.watch,
            };
            match upgrade_over(opts, &target, dialed, sent).await {
                Err(e) if spare_was_dead(&e) => {
                    log::debug!("socket: the spare connection was closed; connecting afresh")
                }
                done => return done,
            }
        }
    }
    let dialed = endpoint.open(&opts.ca, deadline).await?;
    upgrade_over(opts, &target, dialed, sent).await
}

/// The opening handshake over an open connection.
async fn upgrade_over(
    opts: &ConnectOptions,
    target: &Target,
    dialed: Dialed,
    sent: Sent<'_>,
) -> Result<Established, SocketError> {
    let Dialed { mut stream, watch } = dialed;
    let key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 16]>());
    let mut request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n",
        target.resource, target.authority
    );
    if opts
        .protocols
        .iter()
        .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_graphic() && b != b','))
    {
        return Err(fail(
            "An invalid or duplicated subprotocol was specified",
            Some("ERR_INVALID_ARG_VALUE"),
        ));
    }
    if !opts.protocols.is_empty() {
        request.push_str("Sec-WebSocket-Protocol: ");
        request.push_str(&opts.protocols.join(","));
        request.push_str("\r\n");
    }
    if let Some(n) = &opts.deflate {
        request.push_str("Sec-WebSocket-Extensions: ");
        request.push_str(&n.header());
        request.push_str("\r\n");
    }
    for (k, v) in &opts.headers {
        if RESERVED_HEADERS.iter().any(|r| k.eq_ignore_ascii_case(r)) {
            continue;
        }
        if [k, v]
            .iter()
            .any(|t| t.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0))
        {
            // A line break would let a header value start a header of its own.
            return Err(fail(
                format!(
                    "Invalid character in header content [\"{}\"]",
                    k.replace(['\r', '\n'], "")
                ),
                Some("ERR_INVALID_CHAR"),
            ));
        }
        request.push_str(k);
        request.push_str(": ");
        request.push_str(v);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| io_error(&e, "sending the handshake"))?;
    stream
        .flush()
        .await
        .map_err(|e| io_error(&e, "sending the handshake"))?;
    sent();
    let (head, initial) = read_response(&mut stream).await?;
    let (protocol, deflate) =
        check_response_with(&head, &key, &opts.protocols, opts.deflate.as_ref())?;
    Ok(Established {
        stream,
        initial,
        protocol,
        deflate,
        watch,
    })
}

/// Connects and upgrades within `handshake_timeout`.
pub async fn connect(opts: &ConnectOptions) -> Result<Established, SocketError> {
    connect_with(opts, None, &|| {}).await
}

/// [`connect`], over `spare` if it goes to the same endpoint and is still open (a fresh
/// connection otherwise, or if the server turns out to have closed it). `sent` is called
/// each time the request is on the wire (twice if a dead spare made it start over).
pub async fn connect_with(
    opts: &ConnectOptions,
    spare: Option<Spare>,
    sent: Sent<'_>,
) -> Result<Established, SocketError> {
    let deadline = Instant::now() + opts.handshake_timeout;
    match tokio::time::timeout_at(deadline, upgrade(opts, spare, sent, deadline)).await {
        Ok(r) => r,
        Err(_) => Err(fail("Opening handshake has timed out", Some("ETIMEDOUT"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = parse_target("wss://Example.com/$hc/x?a=1")
            .map_err(|e| e.message)
            .unwrap();
        assert!(t.tls);
        assert_eq!(
            (
                t.host.as_str(),
                t.port,
                t.authority.as_str(),
                t.resource.as_str()
            ),
            ("example.com", 443, "example.com", "/$hc/x?a=1")
        );
        let t = parse_target("ws://127.0.0.1:9000/x")
            .map_err(|e| e.message)
            .unwrap();
        assert_eq!((t.port, t.authority.as_str()), (9000, "127.0.0.1:9000"));
        assert!(parse_target("ftp://h/").is_err());
        assert!(parse_target("not a url").is_err());
    }

    #[test]
    fn a_head_with_more_headers_than_the_first_try_has_room_for() {
        let mut text = String::from("HTTP/1.1 101 Switching Protocols\r\n");
        for i in 0..300 {
            text.push_str(&format!("X-{i}: {i}\r\n"));
        }
        text.push_str("\r\n");
        let (head, len) = parse_response_head(text.as_bytes())
            .map_err(|e| e.message)
            .unwrap()
            .unwrap();
        assert_eq!(
            (head.status, head.headers.len(), len),
            (101, 300, text.len())
        );
        assert_eq!(head.headers[299], ("x-299".to_owned(), "299".to_owned()));
        // Incomplete, it is still waited for; past the limit, refused.
        assert!(matches!(
            parse_response_head(&text.as_bytes()[..text.len() - 2]),
            Ok(None)
        ));
        let huge = format!("HTTP/1.1 101 OK\r\nX: {}", "a".repeat(MAX_RESPONSE_HEAD));
        assert!(parse_response_head(huge.as_bytes()).is_err());
    }
}
