//! What the listener knows of a token: its value, and when it expires and should be renewed,
//! as its provider says (an Entra ID credential's `expiresOnTimestamp` and
//! `refreshAfterTimestamp`), or else as the token itself says (a SAS token's `se`, a JWT's
//! `exp`).

use base64::Engine as _;

use crate::sas;

/// A token for the control channel, with what is known of its life.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    /// The token, sent as it is (`ServiceBusAuthorization`, `renewToken`).
    pub value: String,
    /// When it expires, Unix milliseconds, if its provider said.
    pub expires_at_ms: Option<f64>,
    /// When its provider wants it renewed, Unix milliseconds, if it said.
    pub refresh_at_ms: Option<f64>,
}

impl Token {
    /// A token whose provider said nothing of its life.
    pub fn new(value: impl Into<String>) -> Token {
        Token {
            value: value.into(),
            expires_at_ms: None,
            refresh_at_ms: None,
        }
    }

    /// When it expires, Unix milliseconds: as its provider said, else as the token says
    /// (SAS `se`, JWT `exp`); `None` when nobody says. A provider's time below
    /// [`SECONDS_BELOW`] is Unix seconds (the classic mistake for `expiresOnTimestamp`), and
    /// read as such.
    pub fn expiry_ms(&self) -> Option<f64> {
        self.expires_at_ms
            .filter(|e| e.is_finite() && *e > 0.0)
            .map(|e| if e < SECONDS_BELOW { e * 1000.0 } else { e })
            .or_else(|| {
                sas::parse_token(&self.value)
                    .ok()
                    .map(|p| p.expires_at as f64 * 1000.0)
            })
            .or_else(|| jwt_expiry(&self.value).map(|s| s as f64 * 1000.0))
    }

    /// When its provider wants it renewed, Unix milliseconds, if it said (in seconds too,
    /// as [`Token::expiry_ms`] reads them).
    pub fn refresh_ms(&self) -> Option<f64> {
        self.refresh_at_ms
            .filter(|r| r.is_finite() && *r > 0.0)
            .map(|r| if r < SECONDS_BELOW { r * 1000.0 } else { r })
    }
}

/// A provider's time below this many milliseconds (1e11: March 1973) is Unix seconds: as
/// milliseconds it would be long past, and as seconds it is until the year 5138.
pub const SECONDS_BELOW: f64 = 1e11;

/// The `exp` claim (Unix seconds) of a JWT (`header.payload.signature`, base64url), read
/// without checking the signature: the listener only schedules its renewal with it.
pub fn jwt_expiry(token: &str) -> Option<u64> {
    let mut parts = token.trim().split('.');
    let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let exp = claims.get("exp")?.as_f64()?;
    (exp.is_finite() && exp > 0.0 && exp < 1e13).then_some(exp as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: &str) -> String {
        let b = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.sig", b(r#"{"alg":"HS256","typ":"JWT"}"#), b(claims))
    }

    #[test]
    fn expiry_from_the_provider_the_sas_token_or_the_jwt() {
        let sas = Token::new("SharedAccessSignature sr=x&sig=y&se=1700000000&skn=k");
        assert_eq!(sas.expiry_ms(), Some(1_700_000_000_000.0));
        let j = Token::new(jwt(r#"{"aud":"https://relay.azure.net","exp":1800000000}"#));
        assert_eq!(j.expiry_ms(), Some(1_800_000_000_000.0));
        // A provider's times in seconds are read as seconds.
        let seconds = Token {
            expires_at_ms: Some(1_800_000_000.0),
            refresh_at_ms: Some(1_799_000_000.0),
            ..Token::new("opaque")
        };
        assert_eq!(seconds.expiry_ms(), Some(1_800_000_000_000.0));
        assert_eq!(seconds.refresh_ms(), Some(1_799_000_000_000.0));
        let given = Token {
            expires_at_ms: Some(5.0e12),
            refresh_at_ms: Some(4.0e12),
            ..j.clone()
        };
        assert_eq!(
            (given.expiry_ms(), given.refresh_ms()),
            (Some(5.0e12), Some(4.0e12))
        );
        assert_eq!(Token::new("opaque").expiry_ms(), None);
        let bad = Token {
            expires_at_ms: Some(f64::NAN),
            refresh_at_ms: Some(-1.0),
            ..Token::new("opaque")
        };
        assert_eq!((bad.expiry_ms(), bad.refresh_ms()), (None, None));
    }

    #[test]
    fn jwts_that_say_nothing_usable() {
        for t in [
            "a.b",
            "a.b.c.d",
            "x.!!!.y",
            &jwt("not json"),
            &jwt(r#"{"exp":"soon"}"#),
            &jwt(r#"{"exp":-5}"#),
            &jwt(r#"{"nbf":1}"#),
        ] {
            assert_eq!(jwt_expiry(t), None, "{t}");
        }
    }
}
