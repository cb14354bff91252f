//! Relayed HTTP requests waiting for their listener: by request id, so that a `response` on a
//! control channel, or a listener opening the request's rendezvous address, reaches the
//! sender's task; plus the HTTP counters of `stats()`.
//!
//! An entry is taken once (a response, or one rendezvous: the address is valid for one use)
//! and removed by its [`PendingGuard`] when the sender's task ends in any way, so that the
//! map never outlives its requests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

use crate::relay::http_message::ResponseHead;
use crate::relay::rendezvous::Rendezvous;

/// What reaches a waiting request.
pub enum Delivery {
    /// The listener answered on the control channel: the head, and the body if `body` was
    /// true.
    Response {
        /// The response message.
        head: ResponseHead,
        /// The body message, whole (at most a control message).
        body: Option<Vec<u8>>,
    },
    /// The listener opened the request's address.
    Rendezvous(Rendezvous),
    /// The listener answered with something the sender cannot be given (502).
    Invalid(String),
}

/// How a request was sent to its listener, which says what may answer it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Inline on the control channel of this listener: answered by a `response` on that
    /// channel, or by the listener opening the address (a large response).
    Inline(u64),
    /// Address only, on the control channel of this listener: answered by the listener
    /// opening the address.
    AddressOnly(u64),
}

impl Route {
    fn listener(self) -> u64 {
        match self {
            Route::Inline(l) | Route::AddressOnly(l) => l,
        }
    }
}

struct Entry {
    entity_key: String,
    route: Route,
    deliver: oneshot::Sender<Delivery>,
}

/// The relay's waiting HTTP requests and HTTP counters.
#[derive(Default)]
pub struct PendingRequests {
    map: Mutex<HashMap<String, Entry>>,
    next: AtomicU64,
    /// Requests routed to a listener and not answered yet.
    awaiting: AtomicUsize,
    /// Requests routed to a listener since the relay started.
    routed: AtomicU64,
}

impl PendingRequests {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        // Each update is a single insert or remove: a poisoned map is still consistent.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A request id unique in this relay: `{base}_G{n}` with `n` counting every request, so
    /// that ids look like the service's (`…_G10`) and no two can be equal (the part after
    /// the last `_G` is `n`).
    pub fn new_id(&self, base: &str) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        format!("{base}_G{n}")
    }

    /// Registers request `id` for `entity_key`, routed as `route`. The guard removes it.
    pub fn insert(
        self: &Arc<Self>,
        id: &str,
        entity_key: &str,
        route: Route,
    ) -> (PendingGuard, oneshot::Receiver<Delivery>) {
        let (deliver, rx) = oneshot::channel();
        self.lock().insert(
            id.to_owned(),
            Entry {
                entity_key: entity_key.to_owned(),
                route,
                deliver,
            },
        );
        (
            PendingGuard {
                pending: self.clone(),
                id: id.to_owned(),
            },
            rx,
        )
    }

    /// True while request `id` waits (the control channel skips requests whose sender left
    /// while they were queued).
    pub fn contains(&self, id: &str) -> bool {
        self.lock().contains_key(id)
    }

    /// Takes request `id` for a `response` arriving on `listener`'s control channel: only an
    /// inline request sent on that channel qualifies.
    pub fn take_response(&self, id: &str, listener: u64) -> Option<oneshot::Sender<Delivery>> {
        let mut map = self.lock();
        match map.get(id) {
            Some(e) if e.route == Route::Inline(listener) => map.remove(id).map(|e| e.deliver),
            _ => None,
        }
    }

    /// Takes request `id` for a rendezvous opened on `entity_key`'s address.
    pub fn take_rendezvous(&self, id: &str, entity_key: &str) -> Option<oneshot::Sender<Delivery>> {
        let mut map = self.lock();
        match map.get(id) {
            Some(e) if e.entity_key == entity_key => map.remove(id).map(|e| e.deliver),
            _ => None,
        }
    }

    /// Drops every request still waiting on `listener`'s control channel (it closed): their
    /// senders see the channel end and answer 502.
    pub fn fail_listener(&self, listener: u64) {
        self.lock().retain(|_, e| e.route.listener() != listener);
    }

    /// Counts a request as awaiting its response until the guard drops (its response
    /// arrived, or the request ended without one). Taken before the request goes out, so
    /// that a listener that has the request always sees it counted.
    pub fn awaiting(self: &Arc<Self>) -> AwaitingGuard {
        self.awaiting.fetch_add(1, Ordering::Relaxed);
        AwaitingGuard(self.clone())
    }

    /// Counts a request handed to a listener.
    pub fn count_routed(&self) {
        self.routed.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests routed and not answered yet.
    pub fn awaiting_count(&self) -> usize {
        self.awaiting.load(Ordering::Relaxed)
    }

    /// Requests routed since the relay started.
    pub fn routed_count(&self) -> u64 {
        self.routed.load(Ordering::Relaxed)
    }
}

/// Removes a request from the map when its task is done with it (or is cancelled).
pub struct PendingGuard {
    pending: Arc<PendingRequests>,
    id: String,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.pending.lock().remove(&self.id);
    }
}

/// One request counted in [`PendingRequests::awaiting_count`].
pub struct AwaitingGuard(Arc<PendingRequests>);

impl Drop for AwaitingGuard {
    fn drop(&mut self) {
        self.0.awaiting.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_taken_once_by_the_right_party() {
        let p = Arc::new(PendingRequests::default());
        let a = p.new_id("x");
        let b = p.new_id("x");
        assert_ne!(a, b);
        assert!(a.starts_with("x_G"));
        let (guard, _rx) = p.insert(&a, "hc", Route::Inline(1));
        assert!(p.take_response(&a, 2).is_none(), "another channel");
        assert!(p.take_rendezvous(&a, "other").is_none(), "another entity");
        assert!(p.take_response(&a, 1).is_some());
        assert!(p.take_response(&a, 1).is_none(), "once");
        drop(guard);
        let (_guard, _rx) = p.insert(&b, "hc", Route::AddressOnly(1));
        assert!(
            p.take_response(&b, 1).is_none(),
            "address-only: no control response"
        );
        p.fail_listener(1);
        assert!(!p.contains(&b));
        let (guard, _rx) = p.insert(&a, "hc", Route::Inline(3));
        drop(guard);
        assert!(!p.contains(&a), "the guard removes it");
        let w = p.awaiting();
        p.count_routed();
        assert_eq!((p.awaiting_count(), p.routed_count()), (1, 1));
        drop(w);
        assert_eq!((p.awaiting_count(), p.routed_count()), (0, 1));
    }
}
