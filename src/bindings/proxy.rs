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

/// A proxy to go through, as [`select_proxy`] hands it to JavaScript.
#[napi(object)]
pub struct NativeProxyRoute {
    /// The proxy as messages name it: `http://host:port`, without credentials.
    pub url: String,
    /// TLS to the proxy itself (an `https://` proxy).
    pub tls: bool,
    /// Its host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// Its port.
    pub port: u32,
    /// The `Proxy-Authorization` value from the URL's credentials. Never to be shown.
    pub authorization: Option<String>,
}

/// Where a connection goes: through `proxy`, directly (neither set), or nowhere (`invalid`:
/// the setting that applies is not a usable proxy URL; the message never repeats it).
#[napi(object)]
pub struct NativeProxyChoice {
    /// The proxy to go through, if any.
    pub proxy: Option<NativeProxyRoute>,
    /// Why the proxy setting that applies cannot be used (`ERR_PROXY_INVALID`).
    pub invalid: Option<String>,
}

/// The proxy for a connection to `host` on `port` (`tls`: an `https:` address), by the
/// settings `options` and the same rules as the WebSocket connections (`NO_PROXY` included):
/// `relayedFetch` opens its tunnels in JavaScript, and asks here so that there is one
/// reading of proxy settings, not two.
#[napi(js_name = "selectProxy", catch_unwind)]
pub fn select_proxy(
    options: NativeProxyOptions,
    tls: bool,
    host: String,
    port: u32,
) -> NativeProxyChoice {
    let Some(config) = config(Some(options)) else {
        return NativeProxyChoice {
            proxy: None,
            invalid: None,
        };
    };
    // Ports come from a parsed URL; one out of range matches no `host:port` entry anyway.
    let port = u16::try_from(port).unwrap_or(0);
    match config.select(tls, &host, port) {
        Ok(None) => NativeProxyChoice {
            proxy: None,
            invalid: None,
        },
        Ok(Some(p)) => NativeProxyChoice {
            proxy: Some(NativeProxyRoute {
                url: p.to_string(),
                tls: p.tls,
                host: p.host.clone(),
                port: u32::from(p.port),
                authorization: p.authorization().map(str::to_owned),
            }),
            invalid: None,
        },
        Err(e) => NativeProxyChoice {
            proxy: None,
            invalid: Some(e.message),
        },
    }
}
