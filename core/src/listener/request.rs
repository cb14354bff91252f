//! What a `RelayedServer` shows of a sender's request: `req.url` and `req.headers`, made
//! here (on a tokio thread) so that the accept costs the JavaScript thread as little as
//! possible.

use crate::encode::decode_uri_component;

/// The `req.url` of an accepted connection: the sender's path below the Hybrid Connection
/// `entity` and its query, without `sb-hc-*` parameters; e.g. `/sub/dir?x=1`, or `/`.
/// The path stays encoded, as Node keeps `req.url`.
pub fn request_url(address: &str, entity: &str) -> String {
    let Ok(parsed) = url::Url::parse(address) else {
        return "/".to_owned();
    };
    let pathname = parsed.path();
    let raw = pathname
        .strip_prefix("/$hc/")
        .unwrap_or_else(|| pathname.get(1..).unwrap_or(""));
    below_entity(raw, parsed.query().unwrap_or(""), entity)
}

/// The `req.url` of an HTTP request from its request target (`/{entity}/sub?x=1`, as the
/// service passes it): as [`request_url`] makes it for WebSocket senders.
pub fn target_url(target: &str, entity: &str) -> String {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let path = path.split('#').next().unwrap_or("");
    below_entity(path.strip_prefix('/').unwrap_or(path), query, entity)
}

/// `raw` (a path after its first `/`, still encoded) below the Hybrid Connection `entity`
/// (compared decoded and case-insensitively, at a `/` boundary), with `query` less its
/// `sb-hc-*` parameters.
fn below_entity(raw: &str, query: &str, entity: &str) -> String {
    let want = entity.to_lowercase();
    let mut cut = None;
    for (i, c) in raw.char_indices().chain(std::iter::once((raw.len(), '/'))) {
        if c != '/' {
            continue;
        }
        if decode_uri_component(&raw[..i]).is_some_and(|head| head.to_lowercase() == want) {
            cut = Some(i);
            break;
        }
    }
    let rest = cut.map_or("", |i| &raw[i..]);
    let mut url = if rest.starts_with('/') {
        rest.to_owned()
    } else {
        format!("/{rest}")
    };
    let query: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            !pair.is_empty()
                && !pair
                    .get(..6)
                    .is_some_and(|p| p.eq_ignore_ascii_case("sb-hc-"))
        })
        .collect();
    if !query.is_empty() {
        url.push('?');
        url.push_str(&query.join("&"));
    }
    url
}

/// The Hybrid Connection's path in a listen address: its decoded path after `/$hc/`,
/// without trailing slashes (as `RelayedServer` computes it).
pub fn entity_of(listen_url: &str) -> String {
    let Ok(parsed) = url::Url::parse(listen_url) else {
        return String::new();
    };
    let raw = parsed.path().get(5..).unwrap_or("");
    let decoded = decode_uri_component(raw).unwrap_or_else(|| raw.to_owned());
    decoded.trim_end_matches('/').to_owned()
}

/// The sender's headers as Node's `req.headers` has them: names lowercased, repeated
/// headers joined with `", "`, in the order first seen.
pub fn request_headers(headers: &[(String, String)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        let key = name.to_ascii_lowercase();
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => {
                v.push_str(", ");
                v.push_str(value);
            }
            None => out.push((key, value.clone())),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "ws://127.0.0.1:9000/$hc/";

    #[test]
    fn url_is_the_path_below_the_entity_and_the_query_without_sb_hc() {
        let u = |rest: &str| request_url(&format!("{BASE}{rest}"), "hc");
        assert_eq!(u("hc?sb-hc-action=accept&sb-hc-id=1"), "/");
        assert_eq!(u("hc/?sb-hc-id=1"), "/");
        assert_eq!(u("hc/sub/dir?x=1&sb-hc-id=1&y=2"), "/sub/dir?x=1&y=2");
        assert_eq!(u("HC/a?SB-HC-ID=1&b=%20"), "/a?b=%20");
        assert_eq!(u("hc/a%20b/c%2Fd?x"), "/a%20b/c%2Fd?x");
        assert_eq!(u("hcx/a?x=1"), "/?x=1");
        assert_eq!(u("hc?&&x=1&"), "/?x=1");
    }

    #[test]
    fn http_urls_come_from_the_request_target() {
        assert_eq!(target_url("/hc", "hc"), "/");
        assert_eq!(
            target_url("/HC/orders/7?x=1&sb-hc-id=2", "hc"),
            "/orders/7?x=1"
        );
        assert_eq!(target_url("/my%20hc/a%20b?q", "my hc"), "/a%20b?q");
        assert_eq!(target_url("/a/b/c", "a/b"), "/c");
        assert_eq!(target_url("", "hc"), "/");
        assert_eq!(target_url("*", "hc"), "/");
    }

    #[test]
    fn encoded_entities_and_malformed_escapes() {
        assert_eq!(
            request_url(&format!("{BASE}my%20hc/sub?sb-hc-id=1"), "my hc"),
            "/sub"
        );
        assert_eq!(request_url(&format!("{BASE}a/b/c/d"), "a/b"), "/c/d");
        // A malformed escape never matches (decodeURIComponent would throw).
        assert_eq!(request_url(&format!("{BASE}hc%zz/x"), "hc%zz"), "/");
        assert_eq!(request_url(&format!("{BASE}%C3%A9t%C3%A9/x"), "ÉTÉ"), "/x");
        assert_eq!(request_url("not a url", "hc"), "/");
        assert_eq!(request_url("ws://h/other/x?a", "hc"), "/?a");
    }

    #[test]
    fn entity_of_a_listen_address() {
        assert_eq!(
            entity_of("ws://h:1/$hc/a%20b/c/?sb-hc-action=listen"),
            "a b/c"
        );
        assert_eq!(
            entity_of("wss://ns.servicebus.windows.net:443/$hc/hc"),
            "hc"
        );
        assert_eq!(entity_of("nonsense"), "");
    }

    #[test]
    fn headers_are_lowercased_and_joined() {
        let h = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        assert_eq!(
            request_headers(&[
                h("Origin", "x"),
                h("X-A", "1"),
                h("x-a", "2"),
                h("Host", "h")
            ]),
            vec![h("origin", "x"), h("x-a", "1, 2"), h("host", "h")]
        );
    }
}
