//! The error a connection reports to its owner.

use crate::socket::frame::FrameError;
use crate::socket::handshake::ConnectError;

/// A failure reported to the owner before the close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketError {
    /// Message, as ws words it.
    pub message: String,
    /// `WS_ERR_*`, `ECONNREFUSED`, ...
    pub code: Option<String>,
    /// `RangeError` rather than `Error`.
    pub range_error: bool,
    /// HTTP status of a refused handshake.
    pub status_code: Option<u16>,
    /// Reason phrase of a refused handshake.
    pub status_description: Option<String>,
}

impl From<ConnectError> for SocketError {
    fn from(e: ConnectError) -> Self {
        SocketError {
            message: e.message,
            code: e.code,
            range_error: false,
            status_code: e.status_code,
            status_description: e.status_description,
        }
    }
}

impl From<FrameError> for SocketError {
    fn from(e: FrameError) -> Self {
        SocketError {
            message: e.message,
            code: Some(e.code.to_owned()),
            range_error: e.range_error,
            status_code: None,
            status_description: None,
        }
    }
}
