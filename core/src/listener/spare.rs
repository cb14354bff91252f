//! The listener's spare connection: after accepting a sender, the listener opens one
//! connection (TCP, and TLS for `wss:`) to the same relay endpoint and keeps it for the next
//! accept, which then starts with its handshake instead of a connect. Bursts of senders are
//! accepted faster by the connect time (on Azure, by a TCP and a TLS handshake each).
//!
//! At most one spare at a time per listener, kept at most `max_age` (then closed, and not
//! replaced until the next accept: an idle listener holds none), closed with the listener.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::socket::handshake::{Endpoint, Spare};
use crate::socket::ProxyConfig;

#[derive(Default)]
struct Slot {
    spare: Option<Spare>,
    /// A spare is being opened.
    opening: bool,
    /// The listener has stopped: nothing is kept any more.
    closed: bool,
    /// Counts spares stored, so that an expiry only drops the one it was set for.
    generation: u64,
}

/// The spare connection of one listener.
pub(super) struct SparePool {
    slot: Mutex<Slot>,
    max_age: Duration,
    open_timeout: Duration,
}

impl SparePool {
    /// A pool keeping a spare at most `max_age`; opening one may take `open_timeout`.
    pub(super) fn new(max_age: Duration, open_timeout: Duration) -> Arc<Self> {
        Arc::new(SparePool {
            slot: Mutex::new(Slot::default()),
            max_age,
            open_timeout,
        })
    }

    /// The spare, if it goes to `endpoint`.
    pub(super) fn take(&self, endpoint: &Endpoint) -> Option<Spare> {
        let mut slot = self.slot.lock().ok()?;
        match &slot.spare {
            Some(s) if s.endpoint() == endpoint => slot.spare.take(),
            _ => None,
        }
    }

    /// Opens a spare to `url`'s endpoint (through the proxy `proxy` chooses for it) in the
    /// background, unless one is kept or coming.
    pub(super) fn refill(
        self: &Arc<Self>,
        url: &str,
        ca: &[Vec<u8>],
        proxy: Option<Arc<ProxyConfig>>,
    ) {
        {
            let Ok(mut slot) = self.slot.lock() else {
                return;
            };
            if slot.closed || slot.opening || slot.spare.is_some() {
                return;
            }
            slot.opening = true;
        }
        let (pool, url, ca) = (self.clone(), url.to_owned(), ca.to_vec());
        tokio::spawn(async move {
            let opened = Spare::open(&url, &ca, proxy.as_deref(), pool.open_timeout).await;
            let generation = {
                let Ok(mut slot) = pool.slot.lock() else {
                    return;
                };
                slot.opening = false;
                match opened {
                    Ok(spare) if !slot.closed && slot.spare.is_none() => {
                        slot.spare = Some(spare);
                        slot.generation += 1;
                        slot.generation
                    }
                    Ok(_) => return,
                    Err(e) => {
                        log::debug!("listener: no spare connection: {}", e.message);
                        return;
                    }
                }
            };
            tokio::time::sleep(pool.max_age).await;
            if let Ok(mut slot) = pool.slot.lock() {
                if slot.generation == generation {
                    // Unused for max_age: let it go (the server would close it sooner or
                    // later anyway).
                    slot.spare = None;
                }
            }
        });
    }

    /// The listener stopped: closes the spare and keeps none from now on.
    pub(super) fn close(&self) {
        if let Ok(mut slot) = self.slot.lock() {
            slot.closed = true;
            slot.spare = None;
        }
    }
}
