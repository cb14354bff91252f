//! Bindings for proxy settings: the object `lib/proxy.js` makes from the `proxy` option or
//! the environment, and the check of a proxy URL that the option's validation uses (so that
//! JavaScript and Rust read a proxy URL by one set of rules).

use std::sync::Arc;

use hyco_core::socket::{ProxyConfig, ProxyServer};
use napi_derive::napi;

/// Proxy settings, made by `lib/proxy.js`.
#[napi(object)]
pub struct NativeProxyOptions {
    /// The proxy for `ws:` addresses, if any.
    pub http: Option<String>,
    /// The proxy for `wss:` addresses, if any.
    pub https: Option<String>,
    /// The `NO_PROXY` list.
    pub no_proxy: Option<String>,
    /// From the environment (messages then name the variables), not the `proxy` option.
    pub from_env: bool,
}

/// The core's configuration for `options` (`None`: connect directly).
pub fn config(options: Option<NativeProxyOptions>) -> Option<Arc<ProxyConfig>> {
    let o = options?;
    Some(Arc::new(ProxyConfig::new(
        o.http.as_deref(),
        o.https.as_deref(),
        o.no_proxy.as_deref(),
        o.from_env,
    )))
}

/// What is wrong with a proxy URL, in words that follow "The proxy URL" (and never repeat
/// it); `null` when it can be used.
#[napi(js_name = "checkProxyUrl", catch_unwind)]
pub fn check_proxy_url(url: String) -> Option<String> {
    ProxyServer::parse(&url).err()
}
