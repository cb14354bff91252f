//! The client side of a WebSocket connection up to `101 Switching Protocols`: DNS, TCP,
//! TLS and the HTTP upgrade, with errors that say what failed in Node.js's terms
//! (`ECONNREFUSED`, `ENOTFOUND`, certificate codes, `Unexpected server response: 404`).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{CertificateError, Error as TlsError};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::io::IoStream;
use crate::redact::redact_secrets;
use crate::socket::deflate::{self, Agreement, Negotiation};
use crate::socket::error::SocketError;
use crate::socket::tls;
use crate::socket::verify::SelfSigned;

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

fn io_error(e: &std::io::Error, what: &str) -> SocketError {
    use std::io::ErrorKind::*;
    let code = match e.kind() {
        ConnectionRefused => "ECONNREFUSED",
        ConnectionReset => "ECONNRESET",
        ConnectionAborted => "ECONNABORTED",
        TimedOut => "ETIMEDOUT",
        AddrNotAvailable => "EADDRNOTAVAIL",
        UnexpectedEof => "ECONNRESET",
        _ => match e.raw_os_error() {
            Some(113) => "EHOSTUNREACH",
            Some(101) => "ENETUNREACH",
            _ => "ERR_SOCKET",
        },
    };
    fail(format!("{what}: {e}"), Some(code))
}

fn tls_error(e: &std::io::Error, host: &str) -> SocketError {
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<TlsError>());
    let (code, text) = match inner {
        Some(TlsError::InvalidCertificate(c)) => match c {
            CertificateError::UnknownIssuer => (
                "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
                "unable to verify the first certificate".to_owned(),
            ),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                (
                    "ERR_TLS_CERT_ALTNAME_INVALID",
                    format!("Hostname/IP does not match certificate's altnames: Host: {host}"),
                )
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                ("CERT_HAS_EXPIRED", "certificate has expired".to_owned())
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => (
                "CERT_NOT_YET_VALID",
                "certificate is not yet valid".to_owned(),
            ),
            CertificateError::Revoked => ("CERT_REVOKED", "certificate revoked".to_owned()),
            CertificateError::Other(o) if o.0.downcast_ref::<SelfSigned>().is_some() => (
                "DEPTH_ZERO_SELF_SIGNED_CERT",
                "self-signed certificate".to_owned(),
            ),
            other => (
                "ERR_TLS_CERT_INVALID",
                format!("invalid certificate: {other:?}"),
            ),
        },
        Some(other) => (
            "ERR_TLS_HANDSHAKE",
            format!("TLS handshake failed: {other}"),
        ),
        None => return io_error(e, "TLS handshake failed"),
    };
    fail(text, Some(code))
}

async fn open_stream(target: &Target, ca: &[Vec<u8>]) -> Result<IoStream, SocketError> {
    let addrs: Vec<std::net::SocketAddr> =
        tokio::net::lookup_host((target.host.as_str(), target.port))
            .await
            .map_err(|_| {
                fail(
                    format!("getaddrinfo ENOTFOUND {}", target.host),
                    Some("ENOTFOUND"),
                )
            })?
            .collect();
    if addrs.is_empty() {
        return Err(fail(
            format!("getaddrinfo ENOTFOUND {}", target.host),
            Some("ENOTFOUND"),
        ));
    }
    let mut last = None;
    let mut tcp = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => {
                let mut err = io_error(&e, "connect");
                // Node.js words it "connect ECONNREFUSED 127.0.0.1:9000".
                if let Some(code) = &err.code {
                    err.message = format!("connect {code} {addr}");
                }
                last = Some(err);
            }
        }
    }
    let tcp = match tcp {
        Some(t) => t,
        None => return Err(last.unwrap_or_else(|| fail("connection failed", Some("ERR_SOCKET")))),
    };
    let _ = tcp.set_nodelay(true);
    if !target.tls {
        return Ok(Box::new(tcp));
    }
    let config = tls::client_config(ca).map_err(|e| fail(e.to_string(), Some(e.code())))?;
    let name = ServerName::try_from(target.host.clone()).map_err(|_| {
        fail(
            format!("Invalid host name for TLS: {}", target.host),
            Some("ERR_INVALID_URL"),
        )
    })?;
    // Boxed: the TLS handshake's state is large, and without the box every plain (`ws:`)
    // handshake future would reserve room for it too.
    let tls = Box::pin(TlsConnector::from(config).connect(name, tcp))
        .await
        .map_err(|e| tls_error(&e, &target.host))?;
    Ok(Box::new(tls))
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
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => {
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
            Ok(Some((head, len)))
        }
        Ok(httparse::Status::Partial) if buf.len() > MAX_RESPONSE_HEAD => Err(fail(
            "Invalid handshake response: the header is too large",
            Some("ERR_INVALID_HTTP_RESPONSE"),
        )),
        Ok(httparse::Status::Partial) => Ok(None),
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
            buf.reserve(buf.capacity());
        }
        let n = stream
            .read_buf(&mut buf)
            .await
            .map_err(|e| io_error(&e, "reading the handshake response"))?;
        if n == 0 {
            return Err(fail("socket hang up", Some("ECONNRESET")));
        }
        if let Some((head, len)) = parse_response_head(&buf)? {
            return Ok((head, buf.split_off(len)));
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

/// Where a connection goes: what a [`Spare`] must match to serve a handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    tls: bool,
    host: String,
    port: u16,
}

impl Endpoint {
    /// The endpoint of a `ws:`/`wss:` URL; `None` if it is not one.
    pub fn of(url: &str) -> Option<Endpoint> {
        parse_target(url).ok().map(|t| t.endpoint())
    }
}

impl Target {
    fn endpoint(&self) -> Endpoint {
        Endpoint {
            tls: self.tls,
            host: self.host.clone(),
            port: self.port,
        }
    }
}

/// A connection opened before it is needed (TCP, and TLS for `wss:`), for the next
/// handshake to the same endpoint: that handshake then skips the connect (and the TLS
/// handshake), which is most of an accept's own time.
pub struct Spare {
    endpoint: Endpoint,
    stream: IoStream,
}

impl Spare {
    /// Opens a spare connection to `url`'s endpoint.
    pub async fn open(url: &str, ca: &[Vec<u8>], timeout: Duration) -> Result<Spare, SocketError> {
        let target = parse_target(url)?;
        let stream = tokio::time::timeout(timeout, open_stream(&target, ca))
            .await
            .map_err(|_| fail("Opening handshake has timed out", Some("ETIMEDOUT")))??;
        Ok(Spare {
            endpoint: target.endpoint(),
            stream,
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
) -> Result<Established, SocketError> {
    let target = parse_target(&opts.url)?;
    if let Some(mut spare) = spare {
        if spare.endpoint == target.endpoint() && spare.alive() {
            match upgrade_over(opts, &target, spare.stream, sent).await {
                Err(e) if spare_was_dead(&e) => {
                    log::debug!("socket: the spare connection was closed; connecting afresh")
                }
                done => return done,
            }
        }
    }
    let stream = open_stream(&target, &opts.ca).await?;
    upgrade_over(opts, &target, stream, sent).await
}

/// The opening handshake over an open connection.
async fn upgrade_over(
    opts: &ConnectOptions,
    target: &Target,
    mut stream: IoStream,
    sent: Sent<'_>,
) -> Result<Established, SocketError> {
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
    match tokio::time::timeout(opts.handshake_timeout, upgrade(opts, spare, sent)).await {
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
}
