//! Relay addresses: `createRelayBaseUri`, `createRelayListenUri`, `createRelaySendUri` and
//! `appendRelayToken`, as hyco-ws builds them, hyco-https's `createRelayHttpsUri`, plus
//! namespaces that carry a scheme.
//!
//! A bare namespace (`contoso.servicebus.windows.net`) gives exactly hyco-ws's
//! `wss://{ns}:443/$hc/{path}`: no validation, no encoding of the path, case kept. A namespace
//! with a scheme (`ws://127.0.0.1:9000`, `wss://host:8443`, `sb://ns/`) keeps its scheme, host
//! and port; `sb://` becomes `wss://` on port 443, the form hyco-ws uses.

use crate::encode::encode_uri_component_into;
use crate::error::{Error, Result};
use crate::legacy_url::LegacyUrl;
use crate::rules::Rules;
use crate::sas;

/// Which handshake an address is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A listener's control channel.
    Listen,
    /// A sender.
    Connect,
}

impl Action {
    /// The `sb-hc-action` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Listen => "listen",
            Action::Connect => "connect",
        }
    }
}

/// `{scheme}://{host[:port]}` for a namespace argument, or `None` for a bare namespace.
fn namespace_origin(namespace: &str) -> Result<Option<String>> {
    if !namespace.contains("://") {
        return Ok(None);
    }
    let parsed = LegacyUrl::parse(namespace, "namespace")?;
    if !(parsed.pathname.is_empty() || parsed.pathname == "/")
        || !parsed.search.is_empty()
        || !parsed.hash.is_empty()
    {
        return Err(Error::uri(
            "namespace",
            "a namespace has no path, query or fragment",
        ));
    }
    let (scheme, default_port) = match parsed.protocol.as_str() {
        "ws" | "http" => ("ws", None),
        "wss" | "https" => ("wss", None),
        "sb" => ("wss", Some(443)),
        _ => {
            return Err(Error::uri(
                "namespace",
                "the scheme must be sb, ws, wss, http or https",
            ))
        }
    };
    let mut origin = format!("{scheme}://{}", parsed.host);
    if let (None, Some(p)) = (parsed.port, default_port) {
        origin.push_str(&format!(":{p}"));
    }
    Ok(Some(origin))
}

fn require(value: &str, name: &'static str) -> Result<()> {
    if value.is_empty() {
        return Err(Error::arg_type(name, "must be a non-empty string"));
    }
    Ok(())
}

/// hyco-ws's `createRelayBaseUri(namespace, path)`.
pub fn base_uri(namespace: &str, path: &str) -> Result<String> {
    base_uri_with(Rules::Strict, namespace, path)
}

/// [`base_uri`] under `rules` ([`Rules::HycoWs`] takes an empty path).
pub fn base_uri_with(rules: Rules, namespace: &str, path: &str) -> Result<String> {
    require(namespace, "namespace")?;
    if !rules.empty_path() {
        require(path, "path")?;
    }
    let mut out = match namespace_origin(namespace)? {
        Some(origin) => origin,
        None => format!("wss://{namespace}:443"),
    };
    out.reserve(5 + path.len() + 64);
    out.push_str("/$hc/");
    out.push_str(path);
    Ok(out)
}

/// hyco-https's `createRelayHttpsUri(namespace, path, token, id)`: the address HTTP requests
/// are sent to, `https://{namespace}/{path}` (no `$hc/` infix), then `sb-hc-token` and
/// `sb-hc-id` when given, each `encodeURIComponent`ed. A namespace with a scheme keeps its
/// host and port, as `http` for `ws`/`http` and `https` otherwise.
pub fn https_uri(
    namespace: &str,
    path: &str,
    token: Option<&str>,
    id: Option<&str>,
) -> Result<String> {
    require(namespace, "namespace")?;
    require(path, "path")?;
    let mut uri = match namespace_origin(namespace)? {
        Some(origin) => {
            let origin = origin
                .replacen("wss://", "https://", 1)
                .replacen("ws://", "http://", 1);
            // `sb://` namespaces come with hyco-ws's explicit :443, the default here.
            match origin.strip_suffix(":443") {
                Some(o) if o.starts_with("https://") => o.to_owned(),
                _ => origin,
            }
        }
        None => format!("https://{namespace}"),
    };
    uri.push('/');
    uri.push_str(path);
    for (name, value) in [("sb-hc-token", token), ("sb-hc-id", id)] {
        if let Some(v) = value {
            require(v, if name == "sb-hc-token" { "token" } else { "id" })?;
            uri.push(if uri.contains('?') { '&' } else { '?' });
            uri.push_str(name);
            uri.push('=');
            encode_uri_component_into(v, &mut uri);
        }
    }
    Ok(uri)
}

/// hyco-ws's `createRelayListenUri` / `createRelaySendUri`: the base URI plus
/// `sb-hc-action`, then `sb-hc-token` and `sb-hc-id` when given, each `encodeURIComponent`ed.
pub fn action_uri(
    namespace: &str,
    path: &str,
    action: Action,
    token: Option<&str>,
    id: Option<&str>,
) -> Result<String> {
    action_uri_with(Rules::Strict, namespace, path, action, token, id)
}

/// [`action_uri`] under `rules` ([`Rules::HycoWs`] takes an empty path).
pub fn action_uri_with(
    rules: Rules,
    namespace: &str,
    path: &str,
    action: Action,
    token: Option<&str>,
    id: Option<&str>,
) -> Result<String> {
    if let Some(t) = token {
        require(t, "token")?;
    }
    if let Some(i) = id {
        require(i, "id")?;
    }
    let mut uri = base_uri_with(rules, namespace, path)?;
    uri.push(if uri.contains('?') { '&' } else { '?' });
    uri.push_str("sb-hc-action=");
    uri.push_str(action.as_str());
    if let Some(t) = token {
        uri.push_str("&sb-hc-token=");
        encode_uri_component_into(t, &mut uri);
    }
    if let Some(i) = id {
        uri.push_str("&sb-hc-id=");
        encode_uri_component_into(i, &mut uri);
    }
    Ok(uri)
}

/// hyco-ws's `appendRelayToken(uri, keyName, key, expirationSeconds)` at time `now_ms`:
/// the URI, normalised as `url.format` prints it, with `sb-hc-token` added to its query.
/// A URI without a query gets `?sb-hc-token=` (hyco-ws wrote `?null&sb-hc-token=`).
pub fn append_token(
    uri: &str,
    key_name: &str,
    key: &str,
    expiration_seconds: Option<f64>,
    now_ms: f64,
) -> Result<String> {
    append_token_with(
        Rules::Strict,
        uri,
        key_name,
        key,
        expiration_seconds,
        now_ms,
    )
}

/// [`append_token`] under `rules` (see [`Rules::HycoWs`]).
pub fn append_token_with(
    rules: Rules,
    uri: &str,
    key_name: &str,
    key: &str,
    expiration_seconds: Option<f64>,
    now_ms: f64,
) -> Result<String> {
    let token = sas::create_token_with(rules, uri, key_name, key, expiration_seconds, now_ms)?;
    let mut parsed = LegacyUrl::parse(uri, "uri")?;
    let hash = std::mem::take(&mut parsed.hash);
    let mut search = std::mem::take(&mut parsed.search);
    if search.len() > 1 {
        search.push('&');
    } else {
        search = String::from("?");
    }
    search.push_str("sb-hc-token=");
    encode_uri_component_into(&token, &mut search);
    parsed.search = search;
    parsed.hash = hash;
    Ok(parsed.format())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_namespaces_are_kept_verbatim() {
        assert_eq!(
            base_uri("Contoso.ServiceBus.Windows.Net", "path with space").unwrap(),
            "wss://Contoso.ServiceBus.Windows.Net:443/$hc/path with space"
        );
        assert_eq!(
            action_uri("ns", "hyco/suffix?x=1", Action::Listen, None, None).unwrap(),
            "wss://ns:443/$hc/hyco/suffix?x=1&sb-hc-action=listen"
        );
    }

    #[test]
    fn namespaces_with_a_scheme_keep_it() {
        assert_eq!(
            base_uri("ws://127.0.0.1:9000", "hc").unwrap(),
            "ws://127.0.0.1:9000/$hc/hc"
        );
        assert_eq!(
            base_uri("sb://ns.servicebus.windows.net/", "hc").unwrap(),
            "wss://ns.servicebus.windows.net:443/$hc/hc"
        );
        assert_eq!(
            base_uri("wss://host:8443", "hc").unwrap(),
            "wss://host:8443/$hc/hc"
        );
        assert_eq!(base_uri("https://host", "hc").unwrap(), "wss://host/$hc/hc");
        assert!(base_uri("ftp://host", "hc").is_err());
        assert!(base_uri("ws://host/prefix", "hc").is_err());
        assert!(base_uri("ws://", "hc").is_err());
    }

    #[test]
    fn action_uris_encode_token_and_id() {
        assert_eq!(
            action_uri("ns", "hc", Action::Connect, Some("a b"), Some("x&y")).unwrap(),
            "wss://ns:443/$hc/hc?sb-hc-action=connect&sb-hc-token=a%20b&sb-hc-id=x%26y"
        );
        assert!(action_uri("ns", "hc", Action::Connect, Some(""), None).is_err());
        assert!(action_uri("", "hc", Action::Connect, None, None).is_err());
        assert!(action_uri("ns", "", Action::Connect, None, None).is_err());
        // hyco-ws's rules take an empty path, as hyco-ws did.
        assert_eq!(
            action_uri_with(Rules::HycoWs, "ns", "", Action::Connect, None, None).unwrap(),
            "wss://ns:443/$hc/?sb-hc-action=connect"
        );
        assert!(action_uri_with(Rules::HycoWs, "", "hc", Action::Connect, None, None).is_err());
    }

    #[test]
    fn https_uris_are_hyco_https_s() {
        assert_eq!(
            https_uri("contoso.servicebus.windows.net", "hyco", None, None).unwrap(),
            "https://contoso.servicebus.windows.net/hyco"
        );
        assert_eq!(
            https_uri("ns", "hc/sub?x=1", Some("a b"), Some("i&d")).unwrap(),
            "https://ns/hc/sub?x=1&sb-hc-token=a%20b&sb-hc-id=i%26d"
        );
        assert_eq!(
            https_uri("ns", "hc", None, Some("7")).unwrap(),
            "https://ns/hc?sb-hc-id=7"
        );
        assert_eq!(
            https_uri("ws://127.0.0.1:9000", "hc", None, None).unwrap(),
            "http://127.0.0.1:9000/hc"
        );
        assert_eq!(
            https_uri("sb://ns.servicebus.windows.net/", "hc", None, None).unwrap(),
            "https://ns.servicebus.windows.net/hc"
        );
        assert_eq!(
            https_uri("wss://host:8443", "hc", None, None).unwrap(),
            "https://host:8443/hc"
        );
        assert_eq!(
            https_uri("wss://h:4430", "hc", None, None).unwrap(),
            "https://h:4430/hc"
        );
        assert!(https_uri("ns", "", None, None).is_err());
        assert!(https_uri("ns", "hc", Some(""), None).is_err());
    }

    #[test]
    fn append_token_without_a_query_starts_one() {
        let out = append_token("ws://127.0.0.1:9/$hc/x", "r", "k", Some(60.0), 0.0).unwrap();
        assert!(
            out.starts_with("ws://127.0.0.1:9/$hc/x?sb-hc-token=SharedAccessSignature%20"),
            "{out}"
        );
        let out = append_token("ws://127.0.0.1:9/$hc/x?", "r", "k", Some(60.0), 0.0).unwrap();
        assert!(
            out.starts_with("ws://127.0.0.1:9/$hc/x?sb-hc-token="),
            "{out}"
        );
    }
}
