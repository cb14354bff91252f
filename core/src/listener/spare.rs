//! The listener's spare connection: after accepting a sender, the listener opens one
//! connection (TCP, and TLS for `wss:`) to the same relay endpoint and keeps it for the next
//! accept, which then starts with its handshake instead of a connect. Bursts of senders are
//! accepted faster by the connect time (on Azure, by a TCP and a TLS handshake each).
//!
//! At most one spare at a time per listener, kept at most `max_age` (then closed, and not
//! replaced until the next accept: an idle listener holds none), closed with the listener.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::socket::handshake::{Endpoint, Spare};
use crate::socket::ProxyConfig;

#[derive(Default)]
struct Slot {
    spare: Option<Spare>,
    /// Kept with the spare, and dropped when it goes (taken, or the listener closed): that
    /// ends the wait of the task that would expire it, which otherwise held its memory for
    /// `max_age` after every accept (one task per accept, 10 s each: megabytes at a
    /// thousand accepts a second).
    expiry: Option<oneshot::Sender<()>>,
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
            Some(s) if s.endpoint() == endpoint => {
                slot.expiry = None;
                slot.spare.take()
            }
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
            let (generation, gone) = {
                let Ok(mut slot) = pool.slot.lock() else {
                    return;
                };
                slot.opening = false;
                match opened {
                    Ok(spare) if !slot.closed && slot.spare.is_none() => {
                        let (expiry, gone) = oneshot::channel();
                        slot.spare = Some(spare);
                        slot.expiry = Some(expiry);
                        slot.generation += 1;
                        (slot.generation, gone)
                    }
                    Ok(_) => return,
                    Err(e) => {
                        log::debug!("listener: no spare connection: {}", e.message);
                        return;
                    }
                }
            };
            // Nothing is ever sent: the channel closes when the spare goes sooner, and then
            // there is nothing left to expire.
            if tokio::time::timeout(pool.max_age, gone).await.is_ok() {
                return;
            }
            if let Ok(mut slot) = pool.slot.lock() {
                if slot.generation == generation {
                    // Unused for max_age: let it go (the server would close it sooner or
                    // later anyway).
                    slot.spare = None;
                    slot.expiry = None;
                }
            }
        });
    }

    /// The listener stopped: closes the spare and keeps none from now on.
    pub(super) fn close(&self) {
        if let Ok(mut slot) = self.slot.lock() {
            slot.closed = true;
            slot.spare = None;
            slot.expiry = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;
    use tokio::time::timeout;

    const WAIT: Duration = Duration::from_secs(5);

    /// The runtime's live tasks.
    fn tasks() -> usize {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    }

    /// Yields until `done` holds; false if it does not within [`WAIT`].
    async fn until(mut done: impl FnMut() -> bool) -> bool {
        timeout(WAIT, async {
            while !done() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .is_ok()
    }

    /// Waits for the runtime to be back to `before` tasks; fails naming `after`.
    async fn tasks_back_to(before: usize, after: &str) {
        assert!(
            until(|| tasks() == before).await,
            "{} tasks left after {after} (before: {before})",
            tasks()
        );
    }

    /// A spare for a listening port (connected through the kernel's backlog: nothing
    /// accepts it), and its URL.
    async fn pool_with_spare(max_age: Duration) -> (Arc<SparePool>, String, TcpListener) {
        let server = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let port = server.local_addr().expect("its address").port();
        let url = format!("ws://127.0.0.1:{port}/$hc/hc");
        let pool = SparePool::new(max_age, WAIT);
        pool.refill(&url, &[], None);
        let kept = || pool.slot.lock().map(|s| s.spare.is_some()).unwrap_or(false);
        assert!(until(kept).await, "no spare was opened");
        (pool, url, server)
    }

    /// Taking the spare ends the task that would have expired it: one task per accept must
    /// not stay behind for `max_age`.
    #[tokio::test]
    async fn a_taken_spare_leaves_no_task_behind() {
        let before = tasks();
        let (pool, url, _server) = pool_with_spare(Duration::from_secs(60)).await;
        assert_eq!(tasks(), before + 1, "the spare's expiry task");
        let endpoint = Endpoint::of(&url, None).expect("an endpoint");
        assert!(pool.take(&endpoint).is_some(), "the spare");
        tasks_back_to(before, "the spare was taken").await;
    }

    /// Closing the pool does too.
    #[tokio::test]
    async fn a_closed_pool_leaves_no_task_behind() {
        let before = tasks();
        let (pool, _url, _server) = pool_with_spare(Duration::from_secs(60)).await;
        pool.close();
        tasks_back_to(before, "the pool closed").await;
    }

    /// An unused spare still goes after `max_age`, and its task with it.
    #[tokio::test]
    async fn an_unused_spare_expires() {
        let before = tasks();
        let (pool, _url, _server) = pool_with_spare(Duration::from_millis(50)).await;
        let gone = || pool.slot.lock().map(|s| s.spare.is_none()).unwrap_or(false);
        assert!(until(gone).await, "the spare did not expire");
        tasks_back_to(before, "the spare expired").await;
    }
}
