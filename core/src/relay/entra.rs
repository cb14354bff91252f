//! Entra ID (Azure AD) tokens at the emulator, in a mode of its own: JWTs signed with a
//! secret the relay is given (HS256, where Entra signs RS256 with keys only Microsoft holds),
//! checked as the service checks Entra tokens: signature, expiry (`exp`, and `nbf` when
//! present), audience `https://relay.azure.net` (with or without the trailing slash), and
//! the rights from the caller's Azure RBAC roles, which the `roles` claim stands in for:
//! `Azure Relay Listener` (Listen), `Azure Relay Sender` (Send), `Azure Relay Owner` (all).
//! Roles apply to the whole namespace (the service also allows role assignments scoped to one
//! Hybrid Connection; the emulator does not model scopes).
//!
//! [`mint`] makes such tokens, for offline tests of code that uses credentials.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::relay::config::Right;
use crate::socket::error::SocketError;

/// The audiences the service accepts for Relay.
const AUDIENCES: &[&str] = &["https://relay.azure.net", "https://relay.azure.net/"];

/// The role that grants a right (Owner grants all).
pub const LISTENER_ROLE: &str = "Azure Relay Listener";
/// See [`LISTENER_ROLE`].
pub const SENDER_ROLE: &str = "Azure Relay Sender";
/// See [`LISTENER_ROLE`].
pub const OWNER_ROLE: &str = "Azure Relay Owner";

/// Entra ID mode's settings.
#[derive(Clone)]
pub struct EntraConfig {
    /// The HS256 secret tokens are signed with. Never logged.
    pub secret: Vec<u8>,
    /// SAS tokens are accepted too (`true`, the default); `false` is a namespace whose local
    /// (SAS) authentication is disabled, as Azure Policy can require.
    pub local_auth: bool,
}

impl std::fmt::Debug for EntraConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntraConfig")
            .field("secret", &"<redacted>")
            .field("local_auth", &self.local_auth)
            .finish()
    }
}

/// Whether `token` has the shape of a JWT (three base64url segments), not a SAS token.
pub fn looks_like_jwt(token: &str) -> bool {
    let t = token.trim();
    let t = t.strip_prefix("Bearer ").unwrap_or(t);
    t.split('.').count() == 3
        && t.split('.').all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

fn signature(secret: &[u8], signed: &str) -> Vec<u8> {
    // HMAC takes keys of any length.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return Vec::new(),
    };
    mac.update(signed.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

fn unauthorized(why: &str) -> SocketError {
    SocketError::status(401, format!("Unauthorized: {why}"))
}

/// The rights of a token the emulator accepted, and when it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntraGrant {
    /// Expiry, Unix seconds.
    pub expires_at: u64,
    /// The roles it carries.
    pub roles: Vec<String>,
}

impl EntraGrant {
    /// Whether the roles grant `right`.
    pub fn grants(&self, right: Right) -> bool {
        self.roles.iter().any(|r| {
            r == OWNER_ROLE
                || (r == LISTENER_ROLE && right == Right::Listen)
                || (r == SENDER_ROLE && right == Right::Send)
        })
    }
}

/// Checks a JWT: signature (in constant time), `alg`, `exp`, `nbf`, `aud`. The roles are
/// returned for the caller to check against the right it needs (403 when missing).
pub fn verify(config: &EntraConfig, token: &str, now_secs: u64) -> Result<EntraGrant, SocketError> {
    let token = token.trim();
    // The service takes the raw token; a `Bearer ` prefix is tolerated, as it is harmless.
    let token = token.strip_prefix("Bearer ").unwrap_or(token);
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(unauthorized("the token is malformed"));
    };
    let decode = |part: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
    };
    let (Some(header), Some(claims)) = (decode(h), decode(p)) else {
        return Err(unauthorized("the token is malformed"));
    };
    if header.get("alg").and_then(Value::as_str) != Some("HS256") {
        return Err(unauthorized(
            "the token is not signed as this relay expects (HS256)",
        ));
    }
    let given = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap_or_default();
    let expected = signature(&config.secret, &format!("{h}.{p}"));
    if expected.is_empty() || !bool::from(given.ct_eq(&expected)) {
        return Err(unauthorized("the signature does not match"));
    }
    let exp = claims
        .get("exp")
        .and_then(Value::as_f64)
        .filter(|e| e.is_finite() && *e > 0.0)
        .ok_or_else(|| unauthorized("the token has no expiry"))?;
    if (exp as u64) <= now_secs {
        return Err(unauthorized("the token has expired"));
    }
    if claims
        .get("nbf")
        .and_then(Value::as_f64)
        .is_some_and(|n| n as u64 > now_secs)
    {
        return Err(unauthorized("the token is not valid yet"));
    }
    let audience_ok = match claims.get("aud") {
        Some(Value::String(a)) => AUDIENCES.contains(&a.as_str()),
        Some(Value::Array(list)) => list
            .iter()
            .any(|a| a.as_str().is_some_and(|a| AUDIENCES.contains(&a))),
        _ => false,
    };
    if !audience_ok {
        return Err(unauthorized(
            "InvalidAudience: the token is not for https://relay.azure.net",
        ));
    }
    let roles = match claims.get("roles") {
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Some(Value::String(r)) => vec![r.clone()],
        _ => Vec::new(),
    };
    Ok(EntraGrant {
        expires_at: exp as u64,
        roles,
    })
}

/// Makes a token the relay accepts: audience `https://relay.azure.net`, these `roles`,
/// valid `ttl_secs` from `now_secs`.
pub fn mint(config: &EntraConfig, roles: &[String], ttl_secs: u64, now_secs: u64) -> String {
    mint_for(config, AUDIENCES[0], roles, ttl_secs, now_secs)
}

/// Makes a token signed as the relay's, for `audience`: what Entra ID issues for another
/// resource's scope, which the relay refuses (401 InvalidAudience) unless `audience` is its
/// own.
pub fn mint_for(
    config: &EntraConfig,
    audience: &str,
    roles: &[String],
    ttl_secs: u64,
    now_secs: u64,
) -> String {
    let header = b64(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = json!({
        "aud": audience,
        "iss": "https://hyco-ws-rs.local-relay/",
        "iat": now_secs,
        "nbf": now_secs,
        "exp": now_secs + ttl_secs,
        "roles": roles,
    });
    let payload = b64(claims.to_string().as_bytes());
    let signed = format!("{header}.{payload}");
    let sig = b64(&signature(&config.secret, &signed));
    format!("{signed}.{sig}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn config() -> EntraConfig {
        EntraConfig {
            secret: b"test secret".to_vec(),
            local_auth: true,
        }
    }

    fn roles(r: &[&str]) -> Vec<String> {
        r.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn minted_tokens_verify_with_their_roles() {
        let c = config();
        let t = mint(&c, &roles(&[SENDER_ROLE]), 600, NOW);
        assert!(looks_like_jwt(&t));
        let g = verify(&c, &t, NOW + 1).unwrap();
        assert_eq!(g.expires_at, NOW + 600);
        assert!(g.grants(Right::Send) && !g.grants(Right::Listen));
        let owner = verify(&c, &mint(&c, &roles(&[OWNER_ROLE]), 60, NOW), NOW).unwrap();
        assert!(owner.grants(Right::Listen) && owner.grants(Right::Send));
        assert!(verify(&c, &format!("Bearer {t}"), NOW).is_ok());
        // Another resource's token, signed as the relay's, is refused for its audience.
        let storage = mint_for(
            &c,
            "https://storage.azure.com",
            &roles(&[OWNER_ROLE]),
            60,
            NOW,
        );
        let refused = verify(&c, &storage, NOW).unwrap_err();
        assert_eq!(refused.status_code, Some(401));
        assert!(refused.to_string().contains("InvalidAudience"), "{refused}");
    }

    #[test]
    fn bad_tokens_are_401() {
        let c = config();
        let t = mint(&c, &roles(&[OWNER_ROLE]), 600, NOW);
        let status = |token: &str, now: u64| verify(&c, token, now).unwrap_err().status_code;
        assert_eq!(status(&t, NOW + 600), Some(401), "expired");
        assert_eq!(status(&t, NOW - 10), Some(401), "not yet valid");
        let other = EntraConfig {
            secret: b"other".to_vec(),
            ..config()
        };
        assert_eq!(
            status(&mint(&other, &roles(&[OWNER_ROLE]), 600, NOW), NOW),
            Some(401)
        );
        let mut tampered = t.clone();
        tampered.push('x');
        assert_eq!(status(&tampered, NOW), Some(401));
        assert_eq!(status("a.b.c", NOW), Some(401));
        assert_eq!(status("not a jwt", NOW), Some(401));
        // Another audience, no expiry, another algorithm.
        let forge = |header: &str, claims: Value| {
            let signed = format!(
                "{}.{}",
                b64(header.as_bytes()),
                b64(claims.to_string().as_bytes())
            );
            format!("{signed}.{}", b64(&signature(&c.secret, &signed)))
        };
        let hs = r#"{"alg":"HS256"}"#;
        assert_eq!(
            status(
                &forge(
                    hs,
                    json!({"aud": "https://management.azure.com", "exp": NOW + 60})
                ),
                NOW
            ),
            Some(401)
        );
        assert_eq!(
            status(&forge(hs, json!({"aud": "https://relay.azure.net/"})), NOW),
            Some(401)
        );
        assert_eq!(
            status(
                &forge(
                    r#"{"alg":"none"}"#,
                    json!({"aud": "https://relay.azure.net", "exp": NOW + 60})
                ),
                NOW
            ),
            Some(401)
        );
        let slash = forge(
            hs,
            json!({"aud": ["x", "https://relay.azure.net/"], "exp": NOW + 60, "roles": "Azure Relay Listener"}),
        );
        assert!(verify(&c, &slash, NOW).unwrap().grants(Right::Listen));
        let err = verify(&c, &tampered, NOW).unwrap_err();
        assert!(
            !err.message.contains(&tampered[..20]),
            "no part of the token in the message"
        );
    }

    #[test]
    fn sas_tokens_are_not_jwts() {
        assert!(!looks_like_jwt(
            "SharedAccessSignature sr=a&sig=b&se=1&skn=c"
        ));
        assert!(!looks_like_jwt("a.b"));
        assert!(!looks_like_jwt("a..c"));
    }
}
