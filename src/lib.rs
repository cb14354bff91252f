//! hyco-ws-rs: the Node.js addon. napi exports only; the logic lives in `hyco-core`.
//!
//! The modules are public so that the exported functions count as used in every build
//! configuration (napi-derive registers them only outside `cfg(test)`).

#![deny(clippy::all)]

pub mod bindings;
pub mod error;
pub mod logging;
