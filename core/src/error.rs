//! The one error type of the core.
//!
//! Every failure that can reach a user carries a stable `code` (an `ERR_*` string, in the
//! style of Node.js) and a message. Messages never contain a key, a signature or a token:
//! callers pass argument *names*, never argument values, when they build one.

use std::fmt;

/// The kind of JavaScript error a failure maps to when it crosses into Node.js.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// A value of the wrong type or format: `TypeError`.
    Type,
    /// A value outside its allowed range: `RangeError`.
    Range,
    /// Anything else: plain `Error`.
    Plain,
}

/// All errors of the core.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// An argument has the wrong type or shape (`ERR_INVALID_ARG_TYPE`).
    #[error("The \"{name}\" argument {expected}")]
    InvalidArgType {
        /// The argument's name as the public API spells it.
        name: &'static str,
        /// What was expected, e.g. `must be a non-empty string`.
        expected: String,
    },
    /// An argument is outside its range (`ERR_OUT_OF_RANGE`).
    #[error("The value of \"{name}\" is out of range. It must be {expected}")]
    OutOfRange {
        /// The argument's name.
        name: &'static str,
        /// The allowed range, in words.
        expected: String,
    },
    /// A URI that cannot be used (`ERR_INVALID_URL`).
    #[error("The \"{name}\" argument is not a valid URI: {reason}")]
    InvalidUri {
        /// The argument's name.
        name: &'static str,
        /// Why, without echoing query strings (they may carry tokens).
        reason: String,
    },
    /// A malformed SAS token (`ERR_INVALID_TOKEN`).
    #[error("The \"{name}\" argument is not a valid SharedAccessSignature token: {reason}")]
    InvalidToken {
        /// The argument's name.
        name: &'static str,
        /// Why, without the token's signature.
        reason: String,
    },
    /// A malformed connection string (`ERR_INVALID_CONNECTION_STRING`).
    #[error("The \"connectionString\" argument is invalid: {0}")]
    InvalidConnectionString(String),
    /// An I/O failure, e.g. a port that cannot be bound (`ERR_IO`).
    #[error("{0}")]
    Io(String),
    /// TLS configuration failure (`ERR_TLS_CONFIG`).
    #[error("TLS configuration error: {0}")]
    TlsConfig(String),
}

impl Error {
    /// The stable, documented error code.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidArgType { .. } => "ERR_INVALID_ARG_TYPE",
            Error::OutOfRange { .. } => "ERR_OUT_OF_RANGE",
            Error::InvalidUri { .. } => "ERR_INVALID_URL",
            Error::InvalidToken { .. } => "ERR_INVALID_TOKEN",
            Error::InvalidConnectionString(_) => "ERR_INVALID_CONNECTION_STRING",
            Error::Io(_) => "ERR_IO",
            Error::TlsConfig(_) => "ERR_TLS_CONFIG",
        }
    }

    /// The JavaScript error class this error becomes.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::OutOfRange { .. } => ErrorClass::Range,
            Error::Io(_) => ErrorClass::Plain,
            _ => ErrorClass::Type,
        }
    }

    /// Shorthand for [`Error::InvalidArgType`].
    pub fn arg_type(name: &'static str, expected: impl fmt::Display) -> Self {
        Error::InvalidArgType {
            name,
            expected: expected.to_string(),
        }
    }

    /// Shorthand for [`Error::OutOfRange`].
    pub fn out_of_range(name: &'static str, expected: impl fmt::Display) -> Self {
        Error::OutOfRange {
            name,
            expected: expected.to_string(),
        }
    }

    /// Shorthand for [`Error::InvalidUri`].
    pub fn uri(name: &'static str, reason: impl fmt::Display) -> Self {
        Error::InvalidUri {
            name,
            reason: reason.to_string(),
        }
    }

    /// Shorthand for [`Error::InvalidToken`].
    pub fn token(name: &'static str, reason: impl fmt::Display) -> Self {
        Error::InvalidToken {
            name,
            reason: reason.to_string(),
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e.to_string())
    }
}

/// Result alias of the core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_classes_are_stable() {
        let e = Error::arg_type("key", "must be a non-empty string");
        assert_eq!(e.code(), "ERR_INVALID_ARG_TYPE");
        assert_eq!(e.class(), ErrorClass::Type);
        assert_eq!(
            e.to_string(),
            "The \"key\" argument must be a non-empty string"
        );
        let r = Error::out_of_range("expirationSeconds", ">= 0");
        assert_eq!(r.class(), ErrorClass::Range);
        assert_eq!(r.code(), "ERR_OUT_OF_RANGE");
    }
}
