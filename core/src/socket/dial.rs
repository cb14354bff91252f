//! Opening the byte stream a handshake runs over: TCP to the host (its addresses raced, see
//! [`connector`]) or to the proxy that [`ProxyConfig`] chooses for it (TLS to the proxy for
//! an `https://` one, then a `CONNECT` tunnel), then TLS to the relay for `wss:`. Every
//! connection the package opens comes through here: senders, the control channel, accepts,
//! spare connections, HTTP rendezvous and rejects.
//!
//! Failures are worded as Node.js words them (`connect ECONNREFUSED 10.0.0.1:443`,
//! certificate codes); one that reaching the proxy caused names the proxy.

use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

use tokio::time::Instant;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{CertificateError, Error as TlsError};
use tokio_rustls::TlsConnector;

use crate::io::{IoStream, Watchable};
use crate::socket::connector;
use crate::socket::error::{io_error, SocketError};
use crate::socket::proxy::{tunnel, ProxyServer};
use crate::socket::tls;
use crate::socket::verify::Untrusted;

/// Where a stream goes.
pub(crate) struct Route<'a> {
    /// TLS to the host (`wss:`).
    pub tls: bool,
    /// The host: a name or an IP literal (IPv6 without brackets).
    pub host: &'a str,
    /// Its port.
    pub port: u16,
    /// The proxy to go through, if any.
    pub proxy: Option<&'a ProxyServer>,
}

/// An open stream, and what lets its owner read it inline: the TCP socket under it (the
/// proxy's, through a tunnel), where the platform's is used.
pub(crate) struct Dialed {
    /// The stream, TLS or not.
    pub stream: IoStream,
    /// Its TCP socket, for inline reads.
    pub watch: Option<Watchable>,
}

/// The TCP stream under every connection: one whose readability tokio can stop watching
/// (Unix; see `tcp.rs`).
#[cfg(unix)]
type Plain = crate::socket::tcp::Tcp;

#[cfg(not(unix))]
type Plain = tokio::net::TcpStream;

/// Takes over a connected TCP stream.
#[cfg(unix)]
fn plain(tcp: tokio::net::TcpStream) -> Result<(Plain, Option<Watchable>), SocketError> {
    use std::os::fd::AsRawFd;
    let fd = tcp.as_raw_fd();
    let (tcp, switch) = crate::socket::tcp::Tcp::new(tcp)
        .map_err(|e| io_error(&e, "registering the connection"))?;
    Ok((tcp, Some(Watchable { fd, switch })))
}

#[cfg(not(unix))]
fn plain(tcp: tokio::net::TcpStream) -> Result<(Plain, Option<Watchable>), SocketError> {
    Ok((tcp, None))
}

/// A TLS failure in Node.js's words and codes.
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
            CertificateError::Other(o) => match o.0.downcast_ref::<Untrusted>() {
                Some(why) => (why.code(), why.to_string()),
                None => (
                    "ERR_TLS_CERT_INVALID",
                    format!("invalid certificate: {c:?}"),
                ),
            },
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
    SocketError::coded(text, code)
}

/// TLS to `host` over `stream`, verified against the default roots and `ca`.
async fn tls_over<S>(stream: S, host: &str, ca: &[Vec<u8>]) -> Result<IoStream, SocketError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let config = tls::client_config(ca).map_err(|e| SocketError::coded(e.to_string(), e.code()))?;
    let name = ServerName::try_from(host.to_owned()).map_err(|_| {
        SocketError::coded(
            format!("Invalid host name for TLS: {host}"),
            "ERR_INVALID_URL",
        )
    })?;
    // Boxed: the TLS handshake's state is large, and without the box every plain (`ws:`)
    // handshake future would reserve room for it too.
    let tls = Box::pin(TlsConnector::from(config).connect(name, stream))
        .await
        .map_err(|e| tls_error(&e, host))?;
    Ok(Box::new(tls))
}

/// How long reaching a proxy and its answer to CONNECT may take (as `relayedFetch`'s tunnel:
/// undici's default `connectTimeout`): a proxy that takes the connection and never answers
/// fails with its name, rather than at the end of the whole handshake's time.
const TUNNEL_TIMEOUT: Duration = Duration::from_secs(10);

/// A tunnel to `route`'s host through `proxy`.
async fn through(
    proxy: &ProxyServer,
    route: &Route<'_>,
    ca: &[Vec<u8>],
    deadline: Instant,
) -> Result<Dialed, SocketError> {
    let limit = deadline.min(Instant::now() + TUNNEL_TIMEOUT);
    let tunnel = async {
        let tcp = connector::connect_host(&proxy.host, proxy.port, deadline)
            .await
            .map_err(|e| proxy.named_in(e))?;
        let (tcp, watch) = plain(tcp)?;
        let stream: IoStream = if proxy.tls {
            tls_over(tcp, &proxy.host, ca)
                .await
                .map_err(|e| proxy.named_in(e))?
        } else {
            Box::new(tcp)
        };
        let stream = tunnel::open(stream, proxy, route.host, route.port).await?;
        Ok(Dialed { stream, watch })
    };
    match tokio::time::timeout_at(limit, tunnel).await {
        Ok(dialed) => dialed,
        Err(_) => Err(SocketError::coded(
            format!("Opening a tunnel through the proxy {proxy} has timed out"),
            "ETIMEDOUT",
        )),
    }
}

/// Opens a stream along `route` (see the module's description), by `deadline`.
pub(crate) async fn open_stream(
    route: &Route<'_>,
    ca: &[Vec<u8>],
    deadline: Instant,
) -> Result<Dialed, SocketError> {
    match route.proxy {
        None => {
            // Boxed, as the TLS handshake is: the address race's state is needed only while
            // connecting, and would otherwise sit in every handshake future to the end.
            let tcp = Box::pin(connector::connect_host(route.host, route.port, deadline)).await?;
            let (tcp, watch) = plain(tcp)?;
            let stream = if route.tls {
                tls_over(tcp, route.host, ca).await?
            } else {
                Box::new(tcp)
            };
            Ok(Dialed { stream, watch })
        }
        Some(proxy) => {
            // Boxed: the proxy's part is rare, and its state need not weigh on every
            // direct handshake.
            let tunnel = Box::pin(through(proxy, route, ca, deadline)).await?;
            if route.tls {
                let stream = tls_over(tunnel.stream, route.host, ca).await?;
                Ok(Dialed {
                    stream,
                    watch: tunnel.watch,
                })
            } else {
                Ok(tunnel)
            }
        }
    }
}
