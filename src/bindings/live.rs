//! `liveCounts()`: how many native objects are alive, for the leak tests and the churn
//! benchmark. Internal (reached through `lib/native.js`, not exported by the package): the
//! fields may change with the implementation.

use hyco_core::live;
use napi_derive::napi;

use crate::bindings::{hub, reader};

/// Counts that return to their idle values once everything opened is closed.
#[napi(object)]
pub struct NativeLiveCounts {
    /// Tasks alive on the addon's tokio runtime: connections, handshakes, listeners, spare
    /// connections, a local relay's connections.
    pub tasks: u32,
    /// Socket states alive in the process: one per client socket and accepted connection
    /// until its last reference goes.
    pub sockets: u32,
    /// Objects this environment's event hub addresses: sockets and listeners whose last
    /// event has not reached JavaScript yet.
    pub targets: u32,
    /// Values queued in this environment's hub for the next JavaScript call.
    pub queued: u32,
    /// Sockets this JS thread watches to read them inline (see `reader.rs`).
    pub watched: u32,
    /// HTTP exchanges' tasks started and not finished (a request answered whole at once on
    /// the control channel starts none).
    pub exchanges: u32,
}

/// The counts now (see [`NativeLiveCounts`]). `targets` and `queued` are 0 before the
/// event hub exists.
#[napi(js_name = "liveCounts", catch_unwind)]
pub fn live_counts() -> NativeLiveCounts {
    let tasks = napi::bindgen_prelude::within_runtime_if_available(live::tasks).unwrap_or(0);
    let (targets, queued) = hub::current().map(|h| h.counts()).unwrap_or((0, 0));
    let n = |x: usize| u32::try_from(x).unwrap_or(u32::MAX);
    NativeLiveCounts {
        tasks: n(tasks),
        sockets: n(live::sockets()),
        targets: n(targets),
        queued: n(queued),
        watched: n(reader::watched()),
        exchanges: n(live::exchanges()),
    }
}

/// Bytes the process's pool of large buffers holds now (see `hyco_core::socket::pool`):
/// the tests see a received message's buffer come back once JavaScript lets it go, and
/// serve a later message. Internal, as `liveCounts()`; not a count that returns to zero.
#[napi(js_name = "pooledBytes", catch_unwind)]
pub fn pooled_bytes() -> f64 {
    hyco_core::socket::pool::pooled() as f64
}
