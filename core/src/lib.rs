//! # hyco-core
//!
//! The pure-Rust core of hyco-ws-rs: Azure Relay Hybrid Connections over WebSockets.
//! Nothing here depends on Node.js; the napi bindings in the parent crate are a thin layer
//! over this crate, and `cargo test` covers it directly.
//!
//! - [`sas`]: SAS tokens, byte-identical to Microsoft's hyco-ws, plus parsing and verification.
//! - [`uri`]: relay addresses (`createRelayListenUri` and friends).
//! - [`connection_string`]: the Azure portal's connection strings.

#![deny(missing_docs)]

pub mod connection_string;
pub mod encode;
pub mod error;
pub(crate) mod http_head;
pub mod io;
pub mod legacy_url;
pub mod listener;
pub mod live;
pub mod log_format;
pub mod redact;
pub mod relay;
pub mod rules;
pub mod sas;
pub mod socket;
pub mod test_hooks;
pub mod uri;

pub use error::{Error, ErrorClass, Result};
