//! Keeps secrets out of messages and logs: SAS tokens, signatures, `sb-hc-token` values,
//! connection strings' `SharedAccessKey` values and the passwords of URLs
//! (`http://user:password@proxy`) are replaced with `<redacted>`.

/// `text` with the password of every `scheme://user:password@host` URL replaced by
/// `<redacted>`.
fn redact_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let start = i + 3;
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let authority_end = tail
            .find(|c: char| {
                matches!(c, '/' | '?' | '#' | '"' | '\'' | '<' | '>') || c.is_whitespace()
            })
            .unwrap_or(tail.len());
        let authority = &tail[..authority_end];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.find(':') {
                    Some(colon) => {
                        out.push_str(&userinfo[..=colon]);
                        out.push_str("<redacted>");
                    }
                    None => out.push_str(userinfo),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[authority_end..];
    }
    out.push_str(rest);
    out
}

/// `text` with every `sb-hc-token=…`, `sig=…` and `SharedAccessKey=…` value, every
/// `SharedAccessSignature …` token (URL-encoded too) and every URL's password replaced by
/// `<redacted>`.
pub fn redact_secrets(text: &str) -> String {
    let text = &redact_userinfo(text);
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    loop {
        let lower = rest.to_ascii_lowercase();
        // `sig=` counts only as a whole parameter name: at the start, or after `?`, `&`, a
        // space or a quote (so `design=` is left alone).
        let at_boundary = |i: usize| {
            i == 0 || matches!(rest.as_bytes()[i - 1], b'?' | b'&' | b' ' | b'"' | b'\'')
        };
        let next = [
            ("sb-hc-token=", true),
            ("sig=", true),
            ("sharedaccesskey=", true),
            ("sharedaccesssignature ", false),
            // URL-encoded, as a token in any query parameter is (`%20` or `+` for the
            // space): it holds no raw `&`, so it runs to the parameter's end.
            ("sharedaccesssignature%20", true),
            ("sharedaccesssignature+", true),
        ]
        .iter()
        .filter_map(|(pat, is_param)| {
            lower
                .match_indices(pat)
                .map(|(i, _)| i)
                .find(|&i| *pat != "sig=" || at_boundary(i))
                .map(|i| (i, *pat, *is_param))
        })
        .min_by_key(|(i, _, _)| *i);
        let Some((i, pat, is_param)) = next else {
            out.push_str(rest);
            return out;
        };
        let value_start = i + pat.len();
        out.push_str(&rest[..value_start]);
        let tail = &rest[value_start..];
        // A token runs to the end of its field: `&` ends a parameter (`;` a connection
        // string's), white space or a quote ends a header value or a token.
        let end = tail
            .find(|c: char| {
                (is_param && (c == '&' || c == ';'))
                    || c.is_whitespace()
                    || c == '"'
                    || c == '\''
                    || c == '#'
            })
            .unwrap_or(tail.len());
        out.push_str("<redacted>");
        rest = &tail[end..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_tokens_signatures_and_query_values() {
        assert_eq!(
            redact_secrets("ws://h/$hc/x?sb-hc-action=connect&sb-hc-token=SharedAccessSignature%20sr%3Dx&sb-hc-id=1"),
            "ws://h/$hc/x?sb-hc-action=connect&sb-hc-token=<redacted>&sb-hc-id=1"
        );
        assert_eq!(
            redact_secrets("token SharedAccessSignature sr=a&sig=b&se=1&skn=r was refused"),
            "token SharedAccessSignature <redacted> was refused"
        );
        assert_eq!(
            redact_secrets("https://h/p?sig=abc&x=1"),
            "https://h/p?sig=<redacted>&x=1"
        );
        assert_eq!(redact_secrets("nothing secret"), "nothing secret");
        // A token in a parameter of any name, URL-encoded either way.
        assert_eq!(
            redact_secrets("/hc?token=SharedAccessSignature%20sr%3Dx%26sig%3Dy&z=1"),
            "/hc?token=SharedAccessSignature%20<redacted>&z=1"
        );
        assert_eq!(
            redact_secrets("/hc?t=sharedaccesssignature+sr%3Dx%26sig%3Dy"),
            "/hc?t=sharedaccesssignature+<redacted>"
        );
        assert_eq!(
            redact_secrets("proxy http://alice:s3cr%40t@proxy:3128/ and https://bob@h:1"),
            "proxy http://alice:<redacted>@proxy:3128/ and https://bob@h:1"
        );
        assert_eq!(
            redact_secrets("HTTPS_PROXY=http://u:p@w@h:1 ws://h/$hc/x"),
            "HTTPS_PROXY=http://u:<redacted>@h:1 ws://h/$hc/x"
        );
        assert_eq!(redact_secrets("http://h:80/a@b"), "http://h:80/a@b");
        assert_eq!(redact_secrets("design=1"), "design=1");
        assert_eq!(redact_secrets("xsig=1&sig=secret"), "xsig=1&sig=<redacted>");
        assert_eq!(
            redact_secrets(
                "Endpoint=sb://ns/;SharedAccessKeyName=Root;SharedAccessKey=abc+/=;EntityPath=hc"
            ),
            "Endpoint=sb://ns/;SharedAccessKeyName=Root;SharedAccessKey=<redacted>;EntityPath=hc"
        );
    }
}
