//! The CONNECT exchange: asks an HTTP proxy for a tunnel to `host:port` over an open
//! connection to it, and hands back the tunnel. A `2xx` answer opens it (any bytes after
//! the answer's head already belong to the tunnel); `407` is `ERR_PROXY_AUTH`; any other
//! answer is `ERR_PROXY_REFUSED`, with the status and its reason.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::http_head;
use crate::io::{IoStream, Prefixed};
use crate::socket::error::{io_error, SocketError};
use crate::socket::proxy::ProxyServer;

/// Largest response head a proxy may send.
const MAX_HEAD: usize = 16 * 1024;

/// `host:port` as a CONNECT request names it (an IPv6 host in brackets).
fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The proxy's answer: status, reason, and the bytes read past its head.
async fn read_head(
    stream: &mut IoStream,
    proxy: &ProxyServer,
) -> Result<(u16, String, Vec<u8>), SocketError> {
    let mut buf = Vec::with_capacity(512);
    loop {
        if buf.capacity() - buf.len() < 256 {
            buf.reserve(buf.capacity());
        }
        let n = stream
            .read_buf(&mut buf)
            .await
            .map_err(|e| proxy.named_in(io_error(&e, "reading the proxy's answer to CONNECT")))?;
        if n == 0 {
            return Err(SocketError::coded(
                format!("The proxy {proxy} closed the connection before answering CONNECT"),
                "ECONNRESET",
            ));
        }
        // Any number of headers, as Node.js takes them (a proxy's 407 or 403 page may carry
        // many); MAX_HEAD bounds the head.
        let parsed = http_head::parse_response(&buf, |response, len| {
            let status = response.code.unwrap_or(0);
            (status, response.reason.unwrap_or("").to_owned(), len)
        });
        match parsed {
            Ok(Some((status, reason, len))) => return Ok((status, reason, buf.split_off(len))),
            Ok(None) if buf.len() <= MAX_HEAD => {}
            _ => {
                return Err(SocketError::coded(
                    format!("The proxy {proxy} sent an invalid answer to CONNECT"),
                    "ERR_INVALID_HTTP_RESPONSE",
                ))
            }
        }
    }
}

/// Asks `proxy`, over `stream` (a connection to it), for a tunnel to `host:port`; returns
/// the tunnel.
pub(crate) async fn open(
    mut stream: IoStream,
    proxy: &ProxyServer,
    host: &str,
    port: u16,
) -> Result<IoStream, SocketError> {
    let target = authority(host, port);
    let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(credentials) = proxy.authorization() {
        request.push_str("Proxy-Authorization: ");
        request.push_str(credentials);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| proxy.named_in(io_error(&e, "sending CONNECT")))?;
    stream
        .flush()
        .await
        .map_err(|e| proxy.named_in(io_error(&e, "sending CONNECT")))?;
    let (status, reason, rest) = read_head(&mut stream, proxy).await?;
    log::debug!("socket: proxy {proxy}: CONNECT {target}: {status} {reason}");
    let refused = |code: &'static str, message: String| SocketError {
        status_code: Some(status),
        status_description: Some(reason.clone()),
        ..SocketError::coded(message, code)
    };
    match status {
        200..=299 => Ok(Prefixed::stream(rest, stream)),
        407 => Err(refused(
            "ERR_PROXY_AUTH",
            format!(
                "The proxy {proxy} requires authentication (407 {reason}): {}",
                if proxy.authorization().is_some() {
                    "it refused the user name and password of the proxy URL"
                } else {
                    "give a user name and password in the proxy URL (http://user:password@host:port)"
                }
            ),
        )),
        _ => Err(refused(
            "ERR_PROXY_REFUSED",
            format!("The proxy {proxy} refused to open a tunnel to {target}: {status} {reason}")
                .trim_end()
                .to_owned(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities() {
        assert_eq!(authority("relay.example", 443), "relay.example:443");
        assert_eq!(authority("::1", 9000), "[::1]:9000");
    }

    #[tokio::test]
    async fn bytes_after_the_answer_belong_to_the_tunnel() {
        let (a, mut b) = tokio::io::duplex(1024);
        let proxy = ProxyServer::parse("http://proxy.example:3128").unwrap();
        let peer = tokio::spawn(async move {
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                let mut byte = [0u8; 1];
                if b.read_exact(&mut byte).await.is_err() {
                    break;
                }
                head.push(byte[0]);
            }
            b.write_all(b"HTTP/1.1 200 Connection established\r\n\r\nhello")
                .await
                .ok();
            (b, head)
        });
        let mut tunnel = open(Box::new(a), &proxy, "::1", 443)
            .await
            .map_err(|e| e.message)
            .unwrap();
        let mut first = [0u8; 5];
        tunnel.read_exact(&mut first).await.ok();
        assert_eq!(&first, b"hello");
        let (_b, head) = peer.await.unwrap();
        assert_eq!(
            head,
            b"CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\r\n"
        );
    }
}
