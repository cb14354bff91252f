//! Shared Access Signature tokens: create (byte-identical to hyco-ws), parse, verify.
//!
//! `SharedAccessSignature sr={enc(resource)}&sig={enc(signature)}&se={expiry}&skn={keyName}`
//! where `signature = base64(HMAC-SHA256(key, enc(resource) + "\n" + expiry))` and `enc` is
//! JavaScript's `encodeURIComponent`.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::encode::{decode_uri_component, encode_uri_component, encode_uri_component_into};
use crate::error::{Error, Result};
use crate::legacy_url::LegacyUrl;
use crate::rules::Rules;

type HmacSha256 = Hmac<Sha256>;

/// The lifetime hyco-ws gives a token when none (or 0) is asked for: one hour.
pub const DEFAULT_EXPIRATION_SECONDS: f64 = 3600.0;

/// The latest instant a JavaScript `Date` can hold, in milliseconds since the epoch.
const MAX_DATE_MS: f64 = 8.64e15;

const PREFIX: &str = "SharedAccessSignature ";

/// The current time in milliseconds since the Unix epoch, as `Date.now()` gives it.
pub fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as f64)
        .unwrap_or(0.0)
}

/// The resource a token for `uri` signs, as hyco-ws computes it: the URI moved to `http`,
/// without query, fragment or the first `$hc/`, host lowercased, explicit port kept.
pub fn signed_resource(uri: &str) -> Result<String> {
    let parsed = LegacyUrl::parse(uri, "uri")?;
    let mut pathname = parsed.pathname;
    if let Some(i) = pathname.find("$hc/") {
        pathname.replace_range(i..i + 4, "");
    }
    if pathname.is_empty() {
        // hyco-ws throws on an empty path (e.g. `sb://ns`); the namespace root is meant.
        pathname.push('/');
    }
    Ok(format!("http://{}{}", parsed.host, pathname))
}

/// The `se` value hyco-ws computes: `moment().add(seconds, 'seconds').unix()`.
///
/// `expiration_seconds` of `None` or `0` means one hour, as in hyco-ws. Negative and
/// non-finite values are refused.
pub fn expiry_from(expiration_seconds: Option<f64>, now_ms: f64) -> Result<u64> {
    expiry_with(Rules::Strict, expiration_seconds, now_ms)
}

/// [`expiry_from`] under `rules`: [`Rules::HycoWs`] takes a negative lifetime (an expiry in
/// the past, as hyco-ws computed it).
pub fn expiry_with(rules: Rules, expiration_seconds: Option<f64>, now_ms: f64) -> Result<u64> {
    let secs = match expiration_seconds {
        None => DEFAULT_EXPIRATION_SECONDS,
        Some(s) if s.is_nan() || s.is_infinite() => {
            return Err(Error::out_of_range(
                "expirationSeconds",
                "a finite number >= 0",
            ))
        }
        Some(s) if s < 0.0 && !rules.past_expiry() => {
            return Err(Error::out_of_range(
                "expirationSeconds",
                "a finite number >= 0",
            ))
        }
        Some(0.0) => DEFAULT_EXPIRATION_SECONDS,
        Some(s) => s,
    };
    // moment adds the milliseconds to the Date (which truncates), then floors to seconds.
    let at_ms = (now_ms + secs * 1000.0).trunc();
    if !(0.0..=MAX_DATE_MS).contains(&at_ms) {
        return Err(Error::out_of_range(
            "expirationSeconds",
            "small enough for the expiry to be a valid date",
        ));
    }
    Ok((at_ms / 1000.0).floor() as u64)
}

/// base64(HMAC-SHA256(key, string_to_sign)).
fn sign(key: &str, string_to_sign: &str) -> String {
    // HMAC-SHA256 takes keys of any length; `new_from_slice` only fails for fixed-size MACs.
    // Should that ever change, an empty signature simply never verifies.
    let Ok(mut mac) = HmacSha256::new_from_slice(key.as_bytes()) else {
        return String::new();
    };
    mac.update(string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn check_non_empty(value: &str, name: &'static str) -> Result<()> {
    if value.is_empty() {
        return Err(Error::arg_type(name, "must be a non-empty string"));
    }
    Ok(())
}

/// Creates a token for `uri`, exactly as hyco-ws's `createRelayToken` does at time `now_ms`.
pub fn create_token(
    uri: &str,
    key_name: &str,
    key: &str,
    expiration_seconds: Option<f64>,
    now_ms: f64,
) -> Result<String> {
    create_token_with(
        Rules::Strict,
        uri,
        key_name,
        key,
        expiration_seconds,
        now_ms,
    )
}

/// [`create_token`] under `rules` (see [`Rules::HycoWs`]).
pub fn create_token_with(
    rules: Rules,
    uri: &str,
    key_name: &str,
    key: &str,
    expiration_seconds: Option<f64>,
    now_ms: f64,
) -> Result<String> {
    check_non_empty(key_name, "keyName")?;
    if !rules.empty_key() {
        check_non_empty(key, "key")?;
    }
    let resource = signed_resource(uri)?;
    let expiry = expiry_with(rules, expiration_seconds, now_ms)?;
    Ok(token_for_resource(&resource, key_name, key, expiry))
}

/// Builds and signs a token for an already computed resource.
pub fn token_for_resource(resource: &str, key_name: &str, key: &str, expiry: u64) -> String {
    let enc_resource = encode_uri_component(resource);
    let expiry_text = expiry.to_string();
    let mut to_sign = String::with_capacity(enc_resource.len() + 1 + expiry_text.len());
    to_sign.push_str(&enc_resource);
    to_sign.push('\n');
    to_sign.push_str(&expiry_text);
    let signature = sign(key, &to_sign);

    let mut token = String::with_capacity(
        PREFIX.len() + enc_resource.len() + signature.len() + key_name.len() + 40,
    );
    token.push_str(PREFIX);
    token.push_str("sr=");
    token.push_str(&enc_resource);
    token.push_str("&sig=");
    encode_uri_component_into(&signature, &mut token);
    token.push_str("&se=");
    token.push_str(&expiry_text);
    // hyco-ws does not encode the key name; neither do we, for identical tokens.
    token.push_str("&skn=");
    token.push_str(key_name);
    token
}

/// The fields of a token. The signature is kept for verification but never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct ParsedToken {
    /// The signed resource, decoded (`http://ns.servicebus.windows.net/hc`).
    pub resource: String,
    /// The resource exactly as it appears in the token, still encoded: what was signed.
    pub encoded_resource: String,
    /// Expiry in Unix seconds.
    pub expires_at: u64,
    /// The SAS rule's name.
    pub key_name: String,
    signature: String,
}

impl std::fmt::Debug for ParsedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParsedToken")
            .field("resource", &self.resource)
            .field("expires_at", &self.expires_at)
            .field("key_name", &self.key_name)
            .field("signature", &"<redacted>")
            .finish()
    }
}

impl ParsedToken {
    /// True when `key` produced this token's signature. Constant time in the signature.
    pub fn signature_matches(&self, key: &str) -> bool {
        let mut to_sign = String::with_capacity(self.encoded_resource.len() + 24);
        to_sign.push_str(&self.encoded_resource);
        to_sign.push('\n');
        to_sign.push_str(&self.expires_at.to_string());
        let expected = sign(key, &to_sign);
        !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(self.signature.as_bytes()))
    }

    /// True when the token has expired at `now_secs`.
    pub fn is_expired(&self, now_secs: u64) -> bool {
        self.expires_at <= now_secs
    }
}

/// Parses a `SharedAccessSignature ...` token; fields may come in any order.
pub fn parse_token(token: &str) -> Result<ParsedToken> {
    const NAME: &str = "token";
    let body = token
        .get(..PREFIX.len())
        .filter(|p| p.eq_ignore_ascii_case(PREFIX))
        .map(|_| &token[PREFIX.len()..])
        .ok_or_else(|| Error::token(NAME, "it must start with \"SharedAccessSignature \""))?;
    let mut sr = None;
    let mut sig = None;
    let mut se = None;
    let mut skn = None;
    for pair in body.split('&') {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| Error::token(NAME, "every field must be name=value"))?;
        let slot = match k.trim() {
            "sr" => &mut sr,
            "sig" => &mut sig,
            "se" => &mut se,
            "skn" => &mut skn,
            _ => continue,
        };
        if slot.is_some() {
            return Err(Error::token(
                NAME,
                format!("the field \"{}\" is repeated", k.trim()),
            ));
        }
        *slot = Some(v);
    }
    fn field<'a>(v: Option<&'a str>, n: &str) -> Result<&'a str> {
        v.filter(|v| !v.is_empty())
            .ok_or_else(|| Error::token(NAME, format!("the field \"{n}\" is missing or empty")))
    }
    let encoded_resource = field(sr, "sr")?;
    let resource = decode_uri_component(encoded_resource)
        .ok_or_else(|| Error::token(NAME, "the field \"sr\" is not valid percent-encoding"))?;
    let signature = decode_uri_component(field(sig, "sig")?)
        .ok_or_else(|| Error::token(NAME, "the field \"sig\" is not valid percent-encoding"))?;
    let se_text = field(se, "se")?;
    if se_text.len() > 13 || !se_text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::token(
            NAME,
            "the field \"se\" must be an integer number of seconds",
        ));
    }
    let expires_at: u64 = se_text.parse().map_err(|_| {
        Error::token(
            NAME,
            "the field \"se\" must be an integer number of seconds",
        )
    })?;
    if expires_at as f64 * 1000.0 > MAX_DATE_MS {
        return Err(Error::token(NAME, "the field \"se\" is out of range"));
    }
    let skn_raw = field(skn, "skn")?;
    let key_name = decode_uri_component(skn_raw).unwrap_or_else(|| skn_raw.to_owned());
    Ok(ParsedToken {
        resource,
        encoded_resource: encoded_resource.to_owned(),
        expires_at,
        key_name,
        signature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: f64 = 1_764_288_000_000.0;

    #[test]
    fn matches_a_hyco_ws_vector() {
        let t = create_token(
            "wss://contoso.servicebus.windows.net:443/$hc/hyco?sb-hc-action=listen",
            "RootManageSharedAccessKey",
            "abc=",
            None,
            NOW,
        )
        .unwrap();
        assert_eq!(
            t,
            "SharedAccessSignature sr=http%3A%2F%2Fcontoso.servicebus.windows.net%3A443%2Fhyco&sig=CYuA%2BgSSY%2BErD88qZF7coxqwGUHJ%2FzMWh%2FxIzqQz82w%3D&se=1764291600&skn=RootManageSharedAccessKey"
        );
    }

    #[test]
    fn expiry_rules() {
        assert_eq!(expiry_from(None, NOW).unwrap(), 1_764_291_600);
        assert_eq!(expiry_from(Some(0.0), NOW).unwrap(), 1_764_291_600);
        assert_eq!(expiry_from(Some(1.0), NOW + 999.0).unwrap(), 1_764_288_001);
        assert_eq!(expiry_from(Some(0.5), NOW + 600.0).unwrap(), 1_764_288_001);
        assert!(expiry_from(Some(-1.0), NOW).is_err());
        // hyco-ws's rules: a negative lifetime is an expiry in the past, as moment computes it.
        assert_eq!(
            expiry_with(Rules::HycoWs, Some(-60.0), NOW).unwrap(),
            1_764_287_940
        );
        assert!(expiry_with(Rules::HycoWs, Some(f64::NAN), NOW).is_err());
        assert!(expiry_with(Rules::HycoWs, Some(-1e300), NOW).is_err());
        assert!(expiry_from(Some(f64::NAN), NOW).is_err());
        assert!(expiry_from(Some(f64::INFINITY), NOW).is_err());
        assert!(expiry_from(Some(1e300), NOW).is_err());
    }

    #[test]
    fn parse_and_verify_round_trip() {
        let t = create_token("sb://ns.example/hc", "rule", "k3y+/=ünï", Some(60.0), NOW).unwrap();
        let p = parse_token(&t).unwrap();
        assert_eq!(p.resource, "http://ns.example/hc");
        assert_eq!(p.key_name, "rule");
        assert_eq!(p.expires_at, 1_764_288_060);
        assert!(p.signature_matches("k3y+/=ünï"));
        assert!(!p.signature_matches("other"));
        assert!(!format!("{p:?}").contains(&p.signature));
    }

    #[test]
    fn parse_refuses_malformed_tokens() {
        for bad in [
            "",
            "Bearer x",
            "SharedAccessSignature ",
            "SharedAccessSignature sr=a&sig=b&se=1",
            "SharedAccessSignature sr=a&sig=b&se=x&skn=r",
            "SharedAccessSignature sr=a&sig=b&se=-1&skn=r",
            "SharedAccessSignature sr=%zz&sig=b&se=1&skn=r",
            "SharedAccessSignature sr=a&sig=b&se=1&skn=r&sr=b",
            "SharedAccessSignature sr=a&sig=b&se=99999999999999&skn=r",
            "SharedAccessSignature garbage",
        ] {
            let e = parse_token(bad).unwrap_err();
            assert_eq!(e.code(), "ERR_INVALID_TOKEN", "{bad:?}");
        }
    }

    #[test]
    fn parse_error_never_shows_the_signature() {
        let e = parse_token("SharedAccessSignature sr=a&sig=SECRETSIG&se=x&skn=r").unwrap_err();
        assert!(!e.to_string().contains("SECRETSIG"));
    }
}
