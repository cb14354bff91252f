//! Token checks as the service makes them: SAS tokens (signature in constant time, expiry,
//! key name, rights, resource coverage) and, in Entra ID mode, JWTs (see `entra.rs`).

use crate::encode::decode_uri_component;
use crate::relay::config::{RelayConfig, Right, Rule};
use crate::relay::entra;
use crate::sas;
use crate::socket::error::SocketError;

/// A refused request: the HTTP status, and the description sent as its reason phrase
/// (without any part of the token).
fn deny(status: u16, description: impl Into<String>) -> SocketError {
    SocketError::status(status, description)
}

/// A token that passed every check.
#[derive(Debug, Clone)]
pub struct Grant {
    /// Expiry, Unix seconds.
    pub expires_at: u64,
    /// The rule that signed it (`Entra ID` for a JWT).
    pub key_name: String,
}

/// What a request asks for.
pub struct Access<'a> {
    /// The right needed.
    pub right: Right,
    /// The host name the client connected to (no port), lowercase.
    pub host: &'a str,
    /// The entity path plus any suffix, decoded, without leading or trailing `/`.
    pub path: &'a str,
}

/// A token resource reduced to what the service compares: lowercased host without port and
/// a lowercased, decoded path without `$hc/` or surrounding slashes.
fn normalise_resource(resource: &str) -> Option<(String, String)> {
    let (_, rest) = resource.split_once("://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let host = if let Some(v6) = authority.strip_prefix('[') {
        format!("[{}]", v6.split(']').next()?)
    } else {
        authority.split(':').next()?.to_owned()
    };
    let path = path.split(['?', '#']).next().unwrap_or("");
    let decoded = decode_uri_component(path).unwrap_or_else(|| path.to_owned());
    let mut p = decoded.trim_matches('/').to_ascii_lowercase();
    if let Some(stripped) = p.strip_prefix("$hc/") {
        p = stripped.to_owned();
    } else if p == "$hc" {
        p.clear();
    }
    Some((host.to_ascii_lowercase(), p))
}

/// True when `token_path` covers `path`: empty (the namespace), equal, or a prefix that
/// ends at a `/` boundary.
fn covers(token_path: &str, path: &str) -> bool {
    let path = path.to_ascii_lowercase();
    token_path.is_empty()
        || path == token_path
        || (path.starts_with(token_path) && path.as_bytes().get(token_path.len()) == Some(&b'/'))
}

/// The name of a right, for messages.
fn right_name(right: Right) -> &'static str {
    match right {
        Right::Listen => "Listen",
        Right::Send => "Send",
        Right::Manage => "Manage",
    }
}

/// Checks `token` for `access` at time `now_secs`: a JWT in Entra ID mode, else a SAS token
/// (refused when that mode disables local authentication).
pub fn authorize(
    config: &RelayConfig,
    token: Option<&str>,
    access: &Access<'_>,
    now_secs: u64,
) -> Result<Grant, SocketError> {
    if let Some(e) = &config.entra {
        if let Some(t) = token.filter(|t| entra::looks_like_jwt(t)) {
            let g = entra::verify(e, t, now_secs)?;
            if !g.grants(access.right) {
                return Err(deny(
                    403,
                    format!(
                        "Forbidden: the token's roles do not grant {} (Azure Relay {} or Owner)",
                        right_name(access.right),
                        if access.right == Right::Send {
                            "Sender"
                        } else {
                            "Listener"
                        }
                    ),
                ));
            }
            return Ok(Grant {
                expires_at: g.expires_at,
                key_name: "Entra ID".into(),
            });
        }
        if token.is_some_and(jwt_shaped) {
            return Err(deny(
                401,
                "Unauthorized: the token is not a JWT the service reads (three base64url parts, no padding, the JWT alone)",
            ));
        }
        if !e.local_auth {
            return Err(deny(
                401,
                "Unauthorized: local (SAS) authentication is disabled for this namespace: use an Entra ID token",
            ));
        }
    } else if token.is_some_and(jwt_shaped) {
        // The service takes Entra ID tokens; this relay only in its Entra ID mode.
        return Err(deny(
            401,
            "Unauthorized: an Entra ID token (JWT), and this local relay is not in Entra ID mode (start it with the entra option)",
        ));
    }
    authorize_sas(&config.rules, token, access, now_secs)
}

/// A token meant as a JWT, well formed or not: dot-separated parts and no SAS prefix. Its
/// refusal then says so, rather than that it is a malformed SAS token.
fn jwt_shaped(token: &str) -> bool {
    let t = token.trim();
    !t.starts_with("SharedAccessSignature") && t.split('.').count() == 3
}

/// Checks a SAS `token` against `rules` for `access` at time `now_secs`.
pub fn authorize_sas(
    rules: &[Rule],
    token: Option<&str>,
    access: &Access<'_>,
    now_secs: u64,
) -> Result<Grant, SocketError> {
    let token = token.filter(|t| !t.is_empty()).ok_or_else(|| {
        deny(
            401,
            "Unauthorized: a SharedAccessSignature token is required",
        )
    })?;
    let parsed =
        sas::parse_token(token).map_err(|_| deny(401, "Unauthorized: the token is malformed"))?;
    let rule = rules
        .iter()
        .find(|r| r.name == parsed.key_name)
        .ok_or_else(|| deny(401, "Unauthorized: unknown key name"))?;
    if !parsed.signature_matches(&rule.key) {
        return Err(deny(401, "Unauthorized: the signature does not match"));
    }
    if parsed.is_expired(now_secs) {
        return Err(deny(401, "Unauthorized: the token has expired"));
    }
    if !rule.grants(access.right) {
        return Err(deny(
            403,
            format!(
                "Forbidden: the rule lacks the {} right",
                right_name(access.right)
            ),
        ));
    }
    let (host, token_path) = normalise_resource(&parsed.resource)
        .ok_or_else(|| deny(401, "Unauthorized: the token's resource is malformed"))?;
    if host != access.host || !covers(&token_path, access.path) {
        return Err(deny(403, "Forbidden: the token does not cover this entity"));
    }
    Ok(Grant {
        expires_at: parsed.expires_at,
        key_name: parsed.key_name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: f64 = 1_764_288_000_000.0;
    const NOW: u64 = 1_764_288_000;

    fn rules() -> Vec<Rule> {
        vec![
            Rule {
                name: "root".into(),
                key: "k1".into(),
                rights: vec![Right::Manage],
            },
            Rule {
                name: "send".into(),
                key: "k2".into(),
                rights: vec![Right::Send],
            },
        ]
    }

    fn token(resource: &str, name: &str, key: &str, secs: f64) -> String {
        sas::create_token(resource, name, key, Some(secs), NOW_MS).unwrap()
    }

    fn check(t: &str, right: Right, path: &str) -> Result<Grant, SocketError> {
        authorize_sas(
            &rules(),
            Some(t),
            &Access {
                right,
                host: "ns.example",
                path,
            },
            NOW,
        )
    }

    #[test]
    fn every_resource_form_covers_its_entity() {
        for resource in [
            "wss://ns.example:443/$hc/hyco?sb-hc-action=listen",
            "https://ns.example/hyco",
            "http://NS.example/Hyco/",
            "sb://ns.example/hyco",
            "http://ns.example/",
            "sb://ns.example",
        ] {
            let t = token(resource, "root", "k1", 60.0);
            assert!(check(&t, Right::Listen, "hyco").is_ok(), "{resource}");
            assert!(
                check(&t, Right::Send, "hyco/suffix/x").is_ok(),
                "{resource}"
            );
        }
    }

    #[test]
    fn a_token_meant_as_a_jwt_is_refused_as_one() {
        let access = Access {
            right: Right::Send,
            host: "ns.example",
            path: "hyco",
        };
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJhdWQiOiJ4In0.c2ln";
        let why = |config: &RelayConfig, t: &str| {
            authorize(config, Some(t), &access, NOW)
                .unwrap_err()
                .to_string()
        };
        // Not in Entra ID mode: the mode is named.
        let sas_only = RelayConfig {
            rules: rules(),
            ..RelayConfig::default()
        };
        assert!(why(&sas_only, jwt).contains("not in Entra ID mode"));
        // In it: a JWT with padding or a lower-case prefix is not read as one, and says so,
        // whether or not SAS tokens are taken too.
        for local_auth in [true, false] {
            let entra = RelayConfig {
                rules: rules(),
                entra: Some(entra::EntraConfig {
                    secret: b"s".to_vec(),
                    local_auth,
                }),
                ..RelayConfig::default()
            };
            for t in [format!("{jwt}="), format!("bearer {jwt}")] {
                assert!(
                    why(&entra, &t).contains("not a JWT the service reads"),
                    "{t}"
                );
            }
        }
        // A SAS token stays a SAS token.
        let sas = token("http://ns.example/hyco", "send", "k2", 60.0);
        assert!(authorize(&sas_only, Some(&sas), &access, NOW).is_ok());
    }

    #[test]
    fn refusals_have_the_right_status() {
        let good = token("http://ns.example/hyco", "root", "k1", 60.0);
        assert_eq!(
            authorize_sas(
                &rules(),
                None,
                &Access {
                    right: Right::Listen,
                    host: "ns.example",
                    path: "hyco"
                },
                NOW
            )
            .unwrap_err()
            .status_code,
            Some(401)
        );
        assert_eq!(
            check("garbage", Right::Listen, "hyco")
                .unwrap_err()
                .status_code,
            Some(401)
        );
        assert_eq!(
            check(
                &token("http://ns.example/hyco", "nobody", "k1", 60.0),
                Right::Listen,
                "hyco"
            )
            .unwrap_err()
            .status_code,
            Some(401)
        );
        assert_eq!(
            check(
                &token("http://ns.example/hyco", "root", "wrong", 60.0),
                Right::Listen,
                "hyco"
            )
            .unwrap_err()
            .status_code,
            Some(401)
        );
        assert_eq!(
            authorize_sas(
                &rules(),
                Some(&good),
                &Access {
                    right: Right::Listen,
                    host: "ns.example",
                    path: "hyco"
                },
                NOW + 61
            )
            .unwrap_err()
            .status_code,
            Some(401)
        );
        assert_eq!(
            check(
                &token("http://ns.example/hyco", "send", "k2", 60.0),
                Right::Listen,
                "hyco"
            )
            .unwrap_err()
            .status_code,
            Some(403)
        );
        assert_eq!(
            check(&good, Right::Listen, "other")
                .unwrap_err()
                .status_code,
            Some(403)
        );
        assert_eq!(
            check(&good, Right::Listen, "hycox")
                .unwrap_err()
                .status_code,
            Some(403)
        );
        assert_eq!(
            check(
                &token("http://other.example/hyco", "root", "k1", 60.0),
                Right::Listen,
                "hyco"
            )
            .unwrap_err()
            .status_code,
            Some(403)
        );
        assert!(check(
            &token("http://ns.example/hyco", "send", "k2", 60.0),
            Right::Send,
            "hyco"
        )
        .is_ok());
    }

    #[test]
    fn denials_never_contain_the_token() {
        let t = token("http://ns.example/hyco", "root", "wrong", 60.0);
        let d = check(&t, Right::Listen, "hyco").unwrap_err();
        let sig = t.split("sig=").nth(1).unwrap().split('&').next().unwrap();
        assert!(!d.message.contains(sig));
        assert!(!d.status_description.unwrap_or_default().contains(sig));
    }
}
