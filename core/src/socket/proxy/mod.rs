//! HTTP proxies: which proxy, if any, a connection goes through, and the tunnel through it.
//!
//! The configuration comes from JavaScript when a sender or a listener is made: the `proxy`
//! option (one proxy for every address), or else a snapshot of the environment's
//! `HTTP_PROXY`/`http_proxy` (for `ws:` addresses), `HTTPS_PROXY`/`https_proxy` (for `wss:`
//! ones) and `NO_PROXY`/`no_proxy`. The choice is made here, per connection, from the
//! address it goes to ([`ProxyConfig::select`]); `NO_PROXY` applies to an explicit proxy
//! too, as curl applies it to `--proxy`. Every connection goes through the tunnel then:
//! `CONNECT host:port` ([`tunnel`]), and TLS to the relay inside it.
//!
//! A proxy's password never shows: not in [`ProxyServer`]'s `Debug`, not in a message.

mod no_proxy;
pub(crate) mod tunnel;

use std::sync::Arc;

use base64::Engine as _;

use crate::encode::decode_uri_component;
use crate::socket::error::SocketError;

pub use no_proxy::no_proxy_matches;

/// A proxy server: where it is, and the credentials its URL carried.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyServer {
    /// TLS to the proxy itself (an `https://` proxy URL).
    pub tls: bool,
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// Port: the URL's, else 80 for `http://` and 443 for `https://`.
    pub port: u16,
    /// `Basic …` from the URL's user name and password. Never shown.
    authorization: Option<String>,
    /// `http://host:port`, for messages: no user name, no password.
    display: String,
}

impl std::fmt::Debug for ProxyServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyServer")
            .field("url", &self.display)
            .field("credentials", &self.authorization.is_some())
            .finish()
    }
}

impl std::fmt::Display for ProxyServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display)
    }
}

impl ProxyServer {
    /// Reads a proxy URL: `http://[user[:password]@]host[:port]` (or `https://`, TLS to the
    /// proxy), or `host[:port]` without a scheme, which is `http://` (as curl reads it).
    /// The error says what is wrong, in words that fit after "The proxy URL", and never
    /// repeats the URL (it may hold a password).
    pub fn parse(url: &str) -> Result<ProxyServer, String> {
        let url = url.trim();
        if url.is_empty() {
            return Err("is empty".into());
        }
        let with_scheme;
        let text = if url.contains("://") {
            url
        } else {
            with_scheme = format!("http://{url}");
            &with_scheme
        };
        let parsed = url::Url::parse(text).map_err(|e| format!("is not a valid URL ({e})"))?;
        let tls = match parsed.scheme() {
            "http" => false,
            "https" => true,
            other => {
                return Err(format!(
                    "must start with http:// or https:// (an HTTP proxy), not {other}://"
                ))
            }
        };
        let host = match parsed.host() {
            Some(url::Host::Ipv6(a)) => a.to_string(),
            Some(h) => h.to_string(),
            None => return Err("has no host".into()),
        };
        if !matches!(parsed.path(), "" | "/") || parsed.query().is_some() {
            return Err("must have no path or query: http://host:port".into());
        }
        if parsed.fragment().is_some() {
            return Err("must have no fragment: http://host:port".into());
        }
        let port = parsed
            .port_or_known_default()
            .unwrap_or(if tls { 443 } else { 80 });
        let authorization = if parsed.username().is_empty() && parsed.password().is_none() {
            None
        } else {
            let decode = |s: &str| {
                decode_uri_component(s).ok_or_else(|| {
                    "has a malformed %-escape in its user name or password".to_owned()
                })
            };
            let user = decode(parsed.username())?;
            let password = decode(parsed.password().unwrap_or(""))?;
            let pair = format!("{user}:{password}");
            Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            ))
        };
        let host_in_url = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.clone()
        };
        Ok(ProxyServer {
            display: format!("{}://{host_in_url}:{port}", parsed.scheme()),
            tls,
            host,
            port,
            authorization,
        })
    }

    /// The `Proxy-Authorization` value, if the URL had credentials. Public for the HTTP
    /// sender, whose tunnels JavaScript opens; like the password, it must never be shown.
    pub fn authorization(&self) -> Option<&str> {
        self.authorization.as_deref()
    }

    /// `e` with this proxy named at the end of its message: a failure to reach the proxy.
    pub(crate) fn named_in(&self, mut e: SocketError) -> SocketError {
        e.message = format!("{} (proxy {})", e.message, self.display);
        e
    }
}

/// One scheme's proxy: absent, usable, or unusable (an environment variable that is not a
/// proxy URL, reported when a connection would use it).
type Slot = Option<Result<Arc<ProxyServer>, String>>;

/// The proxies of one sender or listener, and the hosts that go without.
#[derive(Clone)]
pub struct ProxyConfig {
    /// For `ws:` (and `http:`) addresses.
    http: Slot,
    /// For `wss:` (and `https:`) addresses.
    https: Slot,
    /// The `NO_PROXY` list.
    no_proxy: String,
    /// From the environment (messages name the variables) rather than the `proxy` option.
    from_env: bool,
}

impl std::fmt::Debug for ProxyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |s: &Slot| match s {
            None => "none".to_owned(),
            Some(Ok(p)) => p.display.clone(),
            Some(Err(_)) => "unusable".to_owned(),
        };
        f.debug_struct("ProxyConfig")
            .field("http", &show(&self.http))
            .field("https", &show(&self.https))
            .field("no_proxy", &self.no_proxy)
            .field("from_env", &self.from_env)
            .finish()
    }
}

impl ProxyConfig {
    /// A configuration: the proxy for `ws:` addresses, the one for `wss:` addresses (empty
    /// or absent: none), the `NO_PROXY` list, and whether these come from the environment.
    pub fn new(
        http: Option<&str>,
        https: Option<&str>,
        no_proxy: Option<&str>,
        from_env: bool,
    ) -> ProxyConfig {
        let slot = |v: Option<&str>| -> Slot {
            let v = v.map(str::trim).filter(|v| !v.is_empty())?;
            Some(ProxyServer::parse(v).map(Arc::new))
        };
        ProxyConfig {
            http: slot(http),
            https: slot(https),
            no_proxy: no_proxy.unwrap_or("").to_owned(),
            from_env,
        }
    }

    /// One proxy for every address (the `proxy` option), with a `NO_PROXY` list.
    pub fn explicit(url: &str, no_proxy: Option<&str>) -> ProxyConfig {
        ProxyConfig::new(Some(url), Some(url), no_proxy, false)
    }

    /// The proxy for a connection to `host` (a name or an IP literal) on `port`, `tls` for
    /// `wss:`; `None` to connect directly. An unusable proxy setting for that scheme is an
    /// error (`ERR_PROXY_INVALID`), unless `NO_PROXY` leaves the host out anyway.
    pub fn select(
        &self,
        tls: bool,
        host: &str,
        port: u16,
    ) -> Result<Option<Arc<ProxyServer>>, SocketError> {
        let slot = if tls { &self.https } else { &self.http };
        let Some(choice) = slot else {
            return Ok(None);
        };
        if no_proxy_matches(&self.no_proxy, host, port) {
            return Ok(None);
        }
        match choice {
            Ok(p) => Ok(Some(p.clone())),
            Err(why) => {
                let source = match (self.from_env, tls) {
                    (true, true) => "The HTTPS_PROXY (https_proxy) environment variable",
                    (true, false) => "The HTTP_PROXY (http_proxy) environment variable",
                    (false, _) => "The proxy URL",
                };
                Err(SocketError::coded(
                    format!("{source} is not a usable proxy: it {why}"),
                    "ERR_PROXY_INVALID",
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> ProxyServer {
        ProxyServer::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    #[test]
    fn reads_proxy_urls() {
        let p = parse("http://proxy.example:3128");
        assert_eq!(
            (p.tls, p.host.as_str(), p.port),
            (false, "proxy.example", 3128)
        );
        assert_eq!(p.to_string(), "http://proxy.example:3128");
        assert_eq!(p.authorization(), None);
        assert_eq!(parse("http://proxy.example/").port, 80);
        assert_eq!(parse("https://proxy.example").port, 443);
        assert!(parse("https://proxy.example").tls);
        assert_eq!(
            parse("proxy.example:8080").to_string(),
            "http://proxy.example:8080"
        );
        let v6 = parse("http://[::1]:3128");
        assert_eq!(
            (v6.host.as_str(), v6.to_string().as_str()),
            ("::1", "http://[::1]:3128")
        );
        assert_eq!(parse("HTTP://Proxy.Example:1").host, "proxy.example");
    }

    #[test]
    fn credentials_become_basic_auth_and_never_show() {
        let p = parse("http://alice:s%40cr%3At@proxy.example:3128");
        // base64("alice:s@cr:t")
        assert_eq!(p.authorization(), Some("Basic YWxpY2U6c0Bjcjp0"));
        assert_eq!(p.to_string(), "http://proxy.example:3128");
        let debug = format!("{p:?}");
        assert!(
            !debug.contains("s%40cr") && !debug.contains("YWxp"),
            "{debug}"
        );
        assert_eq!(
            parse("http://bob@h:1").authorization(),
            Some("Basic Ym9iOg==")
        );
        let named = p.named_in(SocketError::coded(
            "connect ECONNREFUSED 1.2.3.4:3128",
            "ECONNREFUSED",
        ));
        assert_eq!(
            named.message,
            "connect ECONNREFUSED 1.2.3.4:3128 (proxy http://proxy.example:3128)"
        );
    }

    #[test]
    fn refuses_what_is_not_an_http_proxy_without_echoing_it() {
        for (url, says) in [
            ("", "empty"),
            ("socks5://u:secret@h:1080", "socks5://"),
            ("http://u:secret@h:1/path", "no path"),
            ("http://u:secret@h:1/?q=1", "no path"),
            ("http://u:secret@h:1/#x", "no fragment"),
            ("http://u:secret@:1", "valid URL"),
            ("http://u:sec%zzret@h:1", "%-escape"),
        ] {
            let e = ProxyServer::parse(url).err().unwrap_or_default();
            assert!(e.contains(says), "{url}: {e}");
            assert!(!e.contains("secret") && !e.contains("sec%zz"), "{url}: {e}");
        }
    }

    #[test]
    fn selects_per_scheme_and_honours_no_proxy() {
        let env = ProxyConfig::new(
            Some("http://plain.proxy:1"),
            Some("http://tls.proxy:2"),
            Some("internal.example, 10.0.0.0/8"),
            true,
        );
        let host = |tls, h: &str| {
            env.select(tls, h, 443)
                .map(|p| p.map(|p| p.host.clone()))
                .map_err(|e| e.message)
        };
        assert_eq!(host(false, "relay.example"), Ok(Some("plain.proxy".into())));
        assert_eq!(host(true, "relay.example"), Ok(Some("tls.proxy".into())));
        assert_eq!(host(true, "a.internal.example"), Ok(None));
        assert_eq!(host(true, "10.1.1.1"), Ok(None));
        let only_tls = ProxyConfig::new(None, Some("http://tls.proxy:2"), None, true);
        assert!(matches!(
            only_tls.select(false, "relay.example", 80),
            Ok(None)
        ));
        let empty = ProxyConfig::new(Some(""), Some("  "), None, true);
        assert!(matches!(empty.select(true, "relay.example", 443), Ok(None)));
        // An explicit proxy honours NO_PROXY too (curl's --proxy does).
        let explicit = ProxyConfig::explicit("http://p:3128", Some("*"));
        assert!(matches!(
            explicit.select(true, "relay.example", 443),
            Ok(None)
        ));
    }

    #[test]
    fn an_unusable_variable_fails_the_connections_that_would_use_it() {
        let env = ProxyConfig::new(
            None,
            Some("socks5://u:secret@h:1080"),
            Some("skip.example"),
            true,
        );
        let e = env
            .select(true, "relay.example", 443)
            .err()
            .map(|e| (e.code, e.message));
        let (code, message) = e.unwrap_or_default();
        assert_eq!(code, Some("ERR_PROXY_INVALID"));
        assert!(
            message.contains("HTTPS_PROXY") && !message.contains("secret"),
            "{message}"
        );
        assert!(matches!(env.select(false, "relay.example", 80), Ok(None)));
        assert!(matches!(env.select(true, "skip.example", 443), Ok(None)));
        assert!(!format!("{env:?}").contains("secret"));
    }
}
