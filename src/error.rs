//! Turning core errors into JavaScript exceptions.
//!
//! A core [`hyco_core::Error`] becomes a `TypeError`, `RangeError` or `Error` (by its
//! [`ErrorClass`]) whose `code` property is the core's stable `ERR_*` code. The exception is
//! thrown here, on the JS thread, and a `PendingException` status goes back to napi so that it
//! is not thrown a second time.

use hyco_core::{Error as CoreError, ErrorClass};
use napi::{Env, Status};

/// Throws `e` as the matching JavaScript error and returns the napi error to propagate.
pub fn throw(env: &Env, e: CoreError) -> napi::Error {
    let message = e.to_string();
    let code = Some(e.code());
    let thrown = match e.class() {
        ErrorClass::Type => env.throw_type_error(&message, code),
        ErrorClass::Range => env.throw_range_error(&message, code),
        ErrorClass::Plain => env.throw_error(&message, code),
    };
    match thrown {
        Ok(()) => napi::Error::new(Status::PendingException, message),
        // The environment could not throw (it is shutting down): let napi report it.
        Err(_) => napi::Error::new(Status::GenericFailure, message),
    }
}

/// Extension to map core results into napi results, throwing the right JS error class.
pub trait IntoJs<T> {
    /// Maps the error with [`throw`].
    fn or_throw(self, env: &Env) -> napi::Result<T>;
}

impl<T> IntoJs<T> for Result<T, CoreError> {
    fn or_throw(self, env: &Env) -> napi::Result<T> {
        self.map_err(|e| throw(env, e))
    }
}

/// For async functions, which cannot throw on the JS thread: the error's class and code go
/// into a `[ERR_CODE:Class] ` prefix of the message, which `lib/errors.js` turns back into
/// a `TypeError`/`RangeError`/`Error` with a `code`.
pub fn tagged(e: CoreError) -> napi::Error {
    let class = match e.class() {
        ErrorClass::Type => "TypeError",
        ErrorClass::Range => "RangeError",
        ErrorClass::Plain => "Error",
    };
    napi::Error::new(
        Status::GenericFailure,
        format!("[{}:{class}] {e}", e.code()),
    )
}
