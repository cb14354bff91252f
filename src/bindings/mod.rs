//! napi binding types, one file per area. Thin: conversions only, no protocol logic.

pub mod event_queue;
pub mod helpers;
pub mod listener;
pub mod relay;
pub mod socket;
