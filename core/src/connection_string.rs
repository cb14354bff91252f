//! Connection strings as the Azure portal shows them:
//! `Endpoint=sb://{namespace}/;SharedAccessKeyName={rule};SharedAccessKey={key};EntityPath={path}`.
//!
//! The rules are those of Microsoft's .NET `RelayConnectionStringBuilder`: `;`-separated
//! `key=value` pairs split at the first `=`, keys case-insensitive, empty segments ignored,
//! `Endpoint` required and absolute, `SharedAccessSignature` excluding a key name and key, a
//! key name and a key only together, and an unknown key an error that names it. Messages never
//! contain a value: values may be secrets.

use crate::error::{Error, Result};
use crate::legacy_url::LegacyUrl;

/// A parsed connection string.
#[derive(Clone, Default, PartialEq)]
pub struct ConnectionString {
    /// `Endpoint`, as written (trimmed).
    pub endpoint: String,
    /// A namespace the URI helpers accept: the bare host for `sb://host`, otherwise
    /// `{scheme}://{host[:port]}` so that local and non-default ports survive.
    pub namespace: String,
    /// `EntityPath`: the Hybrid Connection's name.
    pub entity_path: Option<String>,
    /// `SharedAccessKeyName`.
    pub shared_access_key_name: Option<String>,
    /// `SharedAccessKey`.
    pub shared_access_key: Option<String>,
    /// `SharedAccessSignature`: a ready-made token.
    pub shared_access_signature: Option<String>,
    /// `OperationTimeout`, in milliseconds.
    pub operation_timeout_ms: Option<f64>,
}

impl std::fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redact = |o: &Option<String>| o.as_ref().map(|_| "<redacted>");
        f.debug_struct("ConnectionString")
            .field("endpoint", &self.endpoint)
            .field("namespace", &self.namespace)
            .field("entity_path", &self.entity_path)
            .field("shared_access_key_name", &self.shared_access_key_name)
            .field("shared_access_key", &redact(&self.shared_access_key))
            .field(
                "shared_access_signature",
                &redact(&self.shared_access_signature),
            )
            .field("operation_timeout_ms", &self.operation_timeout_ms)
            .finish()
    }
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidConnectionString(msg.into())
}

/// The keys a connection string may hold, lowercased.
const KNOWN_KEYS: &[&str] = &[
    "endpoint",
    "entitypath",
    "sharedaccesskeyname",
    "sharedaccesskey",
    "sharedaccesssignature",
    "operationtimeout",
];

/// A key as it may appear in an error message: bounded in length, printable.
fn shown(key: &str) -> String {
    let mut s: String = key.chars().filter(|c| !c.is_control()).take(64).collect();
    if key.chars().count() > 64 {
        s.push('…');
    }
    s
}

/// Parses a connection string.
pub fn parse(input: &str) -> Result<ConnectionString> {
    if input.trim().is_empty() {
        return Err(Error::arg_type(
            "connectionString",
            "must be a non-empty string",
        ));
    }
    let mut endpoint = None;
    let mut out = ConnectionString::default();
    for (index, segment) in input.split(';').enumerate() {
        if segment.trim().is_empty() {
            continue;
        }
        let Some((raw_key, raw_value)) = segment.split_once('=') else {
            return Err(invalid(format!(
                "part {} has no '=' (expected key=value)",
                index + 1
            )));
        };
        let key = raw_key.trim();
        let value = raw_value.trim();
        let lower = key.to_ascii_lowercase();
        if value.is_empty() {
            // A key pasted on its own ends in `=` padding and lands here: name the part, not
            // the text, unless it is one of the known keys.
            return Err(if KNOWN_KEYS.contains(&lower.as_str()) {
                invalid(format!("the value of \"{key}\" is empty"))
            } else {
                invalid(format!("part {} has an empty value", index + 1))
            });
        }
        let owned = Some(value.to_owned());
        match lower.as_str() {
            "endpoint" => endpoint = Some(value.to_owned()),
            "entitypath" => out.entity_path = owned,
            "sharedaccesskeyname" => out.shared_access_key_name = owned,
            "sharedaccesskey" => out.shared_access_key = owned,
            "sharedaccesssignature" => out.shared_access_signature = owned,
            "operationtimeout" => out.operation_timeout_ms = Some(parse_timeout(value)?),
            _ => return Err(invalid(format!("unknown key \"{}\"", shown(key)))),
        }
    }
    let endpoint = endpoint.ok_or_else(|| invalid("\"Endpoint\" is required"))?;
    out.namespace = namespace_of(&endpoint)?;
    out.endpoint = endpoint;
    if out.shared_access_signature.is_some()
        && (out.shared_access_key_name.is_some() || out.shared_access_key.is_some())
    {
        return Err(invalid(
            "\"SharedAccessSignature\" cannot be combined with \"SharedAccessKeyName\" or \"SharedAccessKey\"",
        ));
    }
    if out.shared_access_key_name.is_some() != out.shared_access_key.is_some() {
        return Err(invalid(
            "\"SharedAccessKeyName\" and \"SharedAccessKey\" must be given together",
        ));
    }
    Ok(out)
}

/// The namespace argument the URI helpers take, from an `Endpoint`.
fn namespace_of(endpoint: &str) -> Result<String> {
    let url = LegacyUrl::parse(endpoint, "connectionString").map_err(|_| {
        invalid("\"Endpoint\" must be an absolute URI such as sb://contoso.servicebus.windows.net/")
    })?;
    if !(url.pathname.is_empty() || url.pathname == "/")
        || !url.search.is_empty()
        || !url.hash.is_empty()
    {
        return Err(invalid(
            "\"Endpoint\" must not have a path, query or fragment",
        ));
    }
    match url.protocol.as_str() {
        "sb" if url.port.is_none() => Ok(url.hostname),
        "sb" | "ws" | "wss" | "http" | "https" => Ok(format!("{}://{}", url.protocol, url.host)),
        _ => Err(invalid(
            "the scheme of \"Endpoint\" must be sb, ws, wss, http or https",
        )),
    }
}

/// `OperationTimeout`: `[d.]hh:mm[:ss[.fraction]]` (a .NET `TimeSpan`) or plain seconds.
fn parse_timeout(value: &str) -> Result<f64> {
    let bad = || invalid("\"OperationTimeout\" must be hh:mm:ss or a number of seconds");
    if !value.contains(':') {
        let secs: f64 = value.parse().map_err(|_| bad())?;
        if !secs.is_finite()
            || secs < 0.0
            || !value.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        {
            return Err(bad());
        }
        return Ok(secs * 1000.0);
    }
    let (days, clock) = match value.split_once('.') {
        Some((d, rest)) if rest.contains(':') && !d.contains(':') => {
            (parse_int(d, u32::MAX).ok_or_else(bad)?, rest)
        }
        _ => (0, value),
    };
    let parts: Vec<&str> = clock.split(':').collect();
    if parts.len() < 2 || parts.len() > 3 {
        return Err(bad());
    }
    let hours = parse_int(parts[0], 23).ok_or_else(bad)?;
    let minutes = parse_int(parts[1], 59).ok_or_else(bad)?;
    let seconds = match parts.get(2) {
        None => 0.0,
        Some(s) => {
            let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
            let w = parse_int(whole, 59).ok_or_else(bad)?;
            if !frac.bytes().all(|b| b.is_ascii_digit()) || frac.len() > 7 {
                return Err(bad());
            }
            let f = if frac.is_empty() {
                0.0
            } else {
                format!("0.{frac}").parse::<f64>().map_err(|_| bad())?
            };
            f64::from(w) + f
        }
    };
    let total = f64::from(days) * 86_400.0
        + f64::from(hours) * 3600.0
        + f64::from(minutes) * 60.0
        + seconds;
    Ok(total * 1000.0)
}

fn parse_int(s: &str, max: u32) -> Option<u32> {
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u64>()
        .ok()
        .filter(|&n| n <= u64::from(max))
        .map(|n| n as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PORTAL: &str = "Endpoint=sb://contoso.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=abc/DEF+ghi=;EntityPath=hyco";

    #[test]
    fn parses_the_portal_format() {
        let c = parse(PORTAL).unwrap();
        assert_eq!(c.endpoint, "sb://contoso.servicebus.windows.net/");
        assert_eq!(c.namespace, "contoso.servicebus.windows.net");
        assert_eq!(c.entity_path.as_deref(), Some("hyco"));
        assert_eq!(
            c.shared_access_key_name.as_deref(),
            Some("RootManageSharedAccessKey")
        );
        assert_eq!(c.shared_access_key.as_deref(), Some("abc/DEF+ghi="));
        assert!(!format!("{c:?}").contains("abc/DEF"));
    }

    #[test]
    fn keys_are_case_insensitive_and_split_at_the_first_equals() {
        let c = parse("endpoint=sb://ns/;SHAREDACCESSKEYNAME=r;sharedaccesskey=a==;").unwrap();
        assert_eq!(c.shared_access_key.as_deref(), Some("a=="));
        assert_eq!(c.entity_path, None);
    }

    #[test]
    fn local_endpoints_keep_scheme_and_port() {
        assert_eq!(
            parse("Endpoint=ws://127.0.0.1:9000/;SharedAccessSignature=x")
                .unwrap()
                .namespace,
            "ws://127.0.0.1:9000"
        );
        assert_eq!(
            parse("Endpoint=sb://ns:5671/").unwrap().namespace,
            "sb://ns:5671"
        );
    }

    #[test]
    fn timeouts() {
        let t = |s: &str| {
            parse(&format!("Endpoint=sb://ns/;OperationTimeout={s}"))
                .map(|c| c.operation_timeout_ms)
        };
        assert_eq!(t("00:01:00").unwrap(), Some(60_000.0));
        assert_eq!(t("1.00:00:01").unwrap(), Some(86_401_000.0));
        assert_eq!(t("00:00:01.5").unwrap(), Some(1_500.0));
        assert_eq!(t("30").unwrap(), Some(30_000.0));
        for bad in [
            "abc", "-1", "24:00:00", "00:60:00", "1:2:3:4", "NaN", "inf", "1e3",
        ] {
            assert!(t(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn refuses_malformed_strings_without_echoing_values() {
        for (bad, needle) in [
            ("SharedAccessKeyName=r;SharedAccessKey=secret", "Endpoint"),
            ("Endpoint=not a uri;SharedAccessKeyName=r;SharedAccessKey=secret", "absolute"),
            ("Endpoint=sb://ns/;Bogus=1", "Bogus"),
            ("Endpoint=sb://ns/;SharedAccessKey=secret", "together"),
            ("Endpoint=sb://ns/;SharedAccessSignature=s;SharedAccessKeyName=r;SharedAccessKey=secret", "combined"),
            ("Endpoint=sb://ns/;secret", "no '='"),
            ("Endpoint=sb://ns/;secret=", "part 2 has an empty value"),
            ("Endpoint=sb://ns/;SharedAccessKey=", "empty"),
            ("Endpoint=sb://ns/path;SharedAccessKeyName=r;SharedAccessKey=secret", "path"),
        ] {
            let e = parse(bad).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains(needle), "{bad}: {msg}");
            assert!(!msg.contains("secret"), "{bad}: {msg}");
            assert_eq!(e.code(), "ERR_INVALID_CONNECTION_STRING");
        }
    }
}
