//! napi binding types, one file per area. Thin: conversions only, no protocol logic.

pub(crate) mod delivery;
pub mod events;
pub mod flat;
pub mod helpers;
pub mod http;
pub mod hub;
pub mod listener;
pub mod live;
pub mod proxy;
pub(crate) mod reader;
pub mod relay;
pub(crate) mod run;
pub mod socket;
pub mod test_hooks;
pub(crate) mod uv;
