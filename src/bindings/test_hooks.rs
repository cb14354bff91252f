//! The test hook `testPanic` (internal: `lib/` does not re-export it): proves that a panic
//! never crosses into Node. It does nothing unless `HYCO_WS_RS_TEST_HOOKS=1` is set.

use hyco_core::test_hooks::{arm, Site};
use napi_derive::napi;

/// `testPanic(site)`: `'napi'` panics here, inside this call (the caller gets an Error);
/// `'socket'` and `'listener'` make the next connection task or listener loop to start panic;
/// `'inline'` the next socket whose reading the JS thread takes over, as it starts.
/// Returns whether it armed anything (false without `HYCO_WS_RS_TEST_HOOKS=1`).
#[napi(js_name = "testPanic", catch_unwind)]
pub fn test_panic(site: String) -> napi::Result<bool> {
    if std::env::var("HYCO_WS_RS_TEST_HOOKS").as_deref() != Ok("1") {
        return Ok(false);
    }
    match site.as_str() {
        "napi" => panic!("hyco-ws-rs test hook: a panic in a napi call, as asked"),
        "socket" => arm(Site::Socket),
        "listener" => arm(Site::Listener),
        "inline" => arm(Site::Inline),
        other => {
            return Err(napi::Error::from_reason(format!(
                "testPanic: unknown site {other:?}"
            )))
        }
    }
    Ok(true)
}
