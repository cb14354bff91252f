//! Pieces of the addon's stderr logger that need no Node.js: the `DEBUG` pattern match of
//! the `debug` package's convention and the timestamp format.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, as `2026-11-28T02:17:00.123Z`.
pub fn timestamp() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_millis()
    )
}

/// True when a `DEBUG` value (`debug`'s syntax) selects `name`.
pub fn debug_selects(value: &str, name: &str) -> bool {
    let matches = |pattern: &str| {
        let (prefix, wildcard) = match pattern.strip_suffix('*') {
            Some(p) => (p, true),
            None => (pattern, false),
        };
        if wildcard {
            name.starts_with(prefix)
        } else {
            name == prefix
        }
    };
    let patterns: Vec<&str> = value.split([',', ' ']).filter(|p| !p.is_empty()).collect();
    let excluded = patterns
        .iter()
        .filter_map(|p| p.strip_prefix('-'))
        .any(matches);
    !excluded
        && patterns
            .iter()
            .filter(|p| !p.starts_with('-'))
            .any(|p| matches(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_patterns() {
        assert!(debug_selects("hyco-ws-rs*", "hyco-ws-rs"));
        assert!(debug_selects("*", "hyco-ws-rs"));
        assert!(debug_selects("express,hyco-ws-rs", "hyco-ws-rs"));
        assert!(!debug_selects("*,-hyco-ws-rs", "hyco-ws-rs"));
        assert!(!debug_selects("express:*", "hyco-ws-rs"));
        assert!(!debug_selects("", "hyco-ws-rs"));
    }

    #[test]
    fn timestamps_are_iso() {
        let t = timestamp();
        assert_eq!(t.len(), 24, "{t}");
        assert!(t.ends_with('Z') && t.as_bytes()[10] == b'T', "{t}");
    }
}
