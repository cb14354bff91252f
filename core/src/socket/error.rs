//! The one error type of the WebSocket path, on both sides of the wire: a client's failed
//! connect or handshake, a protocol violation by a peer (client decoder or the relay's frame
//! forwarding), an HTTP head that cannot be read, and the relay's refusal of a request.
//!
//! Every failure says what happened in the words Node.js and ws use (`message`), with a
//! stable `code` where they have one (`ECONNREFUSED`, `WS_ERR_INVALID_OPCODE`, ...), the close
//! code a protocol error calls for, and the HTTP status of a refusal. Messages never carry a
//! token: URLs are redacted before they go in.

use std::fmt;

/// A failure of the WebSocket path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketError {
    /// For people, as ws and Node.js word it; never contains a token.
    pub message: String,
    /// `WS_ERR_*`, `ECONNREFUSED`, `ERR_UNEXPECTED_RESPONSE`, ...; `None` where ws sets none.
    pub code: Option<&'static str>,
    /// A `RangeError` rather than an `Error` in JavaScript (as ws throws it).
    pub range_error: bool,
    /// For a protocol violation: the close code the other side is sent (1002, 1007, 1008,
    /// 1009).
    pub close_code: Option<u16>,
    /// The HTTP status of a refused handshake (client side), or of the refusal to send
    /// (relay side).
    pub status_code: Option<u16>,
    /// That status's reason phrase (the relay's or the listener's description).
    pub status_description: Option<String>,
}

impl SocketError {
    /// A failure with a message and a code.
    pub fn new(message: impl Into<String>, code: Option<&'static str>) -> Self {
        SocketError {
            message: message.into(),
            code,
            range_error: false,
            close_code: None,
            status_code: None,
            status_description: None,
        }
    }

    /// A failure with a message and a code (shorthand for the common case).
    pub fn coded(message: impl Into<String>, code: &'static str) -> Self {
        SocketError::new(message, Some(code))
    }

    /// A protocol violation by the peer: ws's `code` and message, and the close code it
    /// calls for. ws throws most of these as `RangeError`s.
    pub fn protocol(
        code: &'static str,
        message: impl Into<String>,
        close_code: u16,
        range_error: bool,
    ) -> Self {
        SocketError {
            range_error,
            close_code: Some(close_code),
            ..SocketError::coded(message, code)
        }
    }

    /// An HTTP refusal: the status and its description (which is also the message).
    pub fn status(status: u16, description: impl Into<String>) -> Self {
        let description = description.into();
        SocketError {
            status_code: Some(status),
            status_description: Some(description.clone()),
            ..SocketError::new(description, None)
        }
    }

    /// The handshake's response was not 101: ws's `Unexpected server response: N`, with
    /// the status and its reason phrase.
    pub fn unexpected_response(status: u16, reason: impl Into<String>) -> Self {
        SocketError {
            status_code: Some(status),
            status_description: Some(reason.into()),
            ..SocketError::coded(
                format!("Unexpected server response: {status}"),
                "ERR_UNEXPECTED_RESPONSE",
            )
        }
    }
}

/// An I/O failure as Node.js words it: `{what}: {error}`, with the errno's code
/// (`ECONNREFUSED`, `ECONNRESET`, `ETIMEDOUT`, ...; `ERR_SOCKET` for the rest).
pub(crate) fn io_error(e: &std::io::Error, what: &str) -> SocketError {
    SocketError::coded(
        format!("{what}: {e}"),
        errno_code(e).unwrap_or("ERR_SOCKET"),
    )
}

/// The errno name Node.js gives `e`, from its kind (the same on every platform), or `None`
/// when it is not one of the network's.
pub(crate) fn errno_code(e: &std::io::Error) -> Option<&'static str> {
    use std::io::ErrorKind::*;
    let from_os = e.raw_os_error().is_some();
    Some(match e.kind() {
        ConnectionRefused => "ECONNREFUSED",
        ConnectionReset | UnexpectedEof => "ECONNRESET",
        ConnectionAborted => "ECONNABORTED",
        TimedOut => "ETIMEDOUT",
        AddrNotAvailable => "EADDRNOTAVAIL",
        AddrInUse => "EADDRINUSE",
        BrokenPipe => "EPIPE",
        HostUnreachable => "EHOSTUNREACH",
        NetworkUnreachable => "ENETUNREACH",
        NetworkDown => "ENETDOWN",
        NotConnected => "ENOTCONN",
        // Only the system's: Rust's own InvalidInput (a bad address string) is not EINVAL.
        InvalidInput if from_os => "EINVAL",
        // A firewall's refusal: EPERM where the system says so, else EACCES.
        PermissionDenied if from_os => {
            if is_eperm(e) {
                "EPERM"
            } else {
                "EACCES"
            }
        }
        _ => return None,
    })
}

/// Whether the system's error is EPERM (Unix); Windows says WSAEACCES only.
fn is_eperm(e: &std::io::Error) -> bool {
    #[cfg(unix)]
    {
        e.raw_os_error() == Some(libc::EPERM)
    }
    #[cfg(not(unix))]
    {
        let _ = e;
        false
    }
}

impl fmt::Display for SocketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SocketError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_fill_what_they_say() {
        let e = SocketError::unexpected_response(404, "Not Found");
        assert_eq!(e.to_string(), "Unexpected server response: 404");
        assert_eq!(
            (e.code, e.status_code, e.status_description.as_deref()),
            (
                Some("ERR_UNEXPECTED_RESPONSE"),
                Some(404),
                Some("Not Found")
            )
        );
        let p = SocketError::protocol("WS_ERR_INVALID_UTF8", "bad", 1007, false);
        assert_eq!((p.close_code, p.range_error), (Some(1007), false));
        let s = SocketError::status(401, "Unauthorized: no token");
        assert_eq!(
            (s.status_code, s.message.as_str()),
            (Some(401), "Unauthorized: no token")
        );
        assert_eq!(s.code, None);
    }
}
