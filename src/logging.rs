//! Logs of the Rust core on stderr, off unless asked for:
//!
//! - `HYCO_WS_RS_LOG=error|warn|info|debug|trace` sets the level;
//! - `DEBUG=hyco-ws-rs*` (the `debug` package's convention; `*`, lists and `-exclusions`
//!   are understood) turns on `debug`.
//!
//! Every line goes through [`hyco_core::redact::redact_secrets`]: no token, `sig` or
//! `sb-hc-token` value is ever printed, whatever a message holds.

use std::io::Write;

use hyco_core::log_format::{debug_selects, timestamp};
use log::{LevelFilter, Log, Metadata, Record};

/// The name the `DEBUG` convention matches.
const DEBUG_NAME: &str = "hyco-ws-rs";

struct StderrLogger;

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target().starts_with("hyco_")
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = format!(
            "{} {DEBUG_NAME} {:<5} {}: {}\n",
            timestamp(),
            record.level(),
            record.target(),
            hyco_core::redact::redact_secrets(&record.args().to_string())
        );
        // Nowhere to report a failed write to stderr.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// The level the environment asks for.
fn level_from_env() -> LevelFilter {
    if let Ok(v) = std::env::var("HYCO_WS_RS_LOG") {
        return match v.trim().to_ascii_lowercase().as_str() {
            "error" => LevelFilter::Error,
            "warn" | "warning" => LevelFilter::Warn,
            "info" => LevelFilter::Info,
            "debug" | "1" | "true" => LevelFilter::Debug,
            "trace" => LevelFilter::Trace,
            _ => LevelFilter::Off,
        };
    }
    match std::env::var("DEBUG") {
        Ok(v) if debug_selects(&v, DEBUG_NAME) => LevelFilter::Debug,
        _ => LevelFilter::Off,
    }
}

/// Installs the logger if the environment asks for logs. Called once, at load.
pub fn init() {
    let level = level_from_env();
    if level == LevelFilter::Off {
        return;
    }
    if log::set_logger(&StderrLogger).is_ok() {
        log::set_max_level(level);
    }
}

#[napi_derive::module_init]
fn on_load() {
    init();
}
