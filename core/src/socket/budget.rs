//! The inbound budget of the process: message bytes that every socket has handed to its
//! owner and the owner has not taken yet (for a JavaScript owner: what waits for the event
//! loop), summed over all sockets. Each socket stops reading above its own high-water mark
//! ([`crate::socket::SocketOptions::inbound_high_water`]); above this budget every socket
//! stops, as TCP backpressure, until owners catch up. So a stalled event loop holds at most
//! the budget (plus one read per socket), however many sockets are busy.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::task::Waker;

/// The default budget: 256 MiB.
pub const DEFAULT_BUDGET: usize = 256 * 1024 * 1024;

/// A budget: bytes used, the limit (0: none), and who waits for it.
pub(super) struct Budget {
    used: AtomicUsize,
    limit: AtomicUsize,
    waiting: Mutex<Vec<Waker>>,
}

impl Budget {
    const fn new(limit: usize) -> Budget {
        Budget {
            used: AtomicUsize::new(0),
            limit: AtomicUsize::new(limit),
            waiting: Mutex::new(Vec::new()),
        }
    }

    fn set_limit(&self, bytes: usize) -> usize {
        let before = self.limit.swap(bytes, Ordering::SeqCst);
        self.wake_all();
        before
    }

    fn over(&self) -> bool {
        let limit = self.limit.load(Ordering::SeqCst);
        limit != 0 && self.used.load(Ordering::SeqCst) > limit
    }

    fn add(&self, bytes: usize) {
        self.used.fetch_add(bytes, Ordering::SeqCst);
    }

    fn release(&self, bytes: usize) {
        if bytes == 0 {
            return;
        }
        let before = self
            .used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |u| {
                Some(u.saturating_sub(bytes))
            })
            .unwrap_or(0);
        let limit = self.limit.load(Ordering::SeqCst);
        if limit != 0 && before > limit && before.saturating_sub(bytes) <= limit {
            self.wake_all();
        }
    }

    fn spent(&self, waker: &Waker) -> bool {
        if !self.over() {
            return false;
        }
        if let Ok(mut w) = self.waiting.lock() {
            if !w.iter().any(|x| x.will_wake(waker)) {
                w.push(waker.clone());
            }
        }
        // Released meanwhile: the wake-up may have gone before the waker was in the list.
        self.over()
    }

    fn wake_all(&self) {
        let wakers = self
            .waiting
            .lock()
            .map(|mut w| std::mem::take(&mut *w))
            .unwrap_or_default();
        for w in wakers {
            w.wake();
        }
    }
}

/// The process's budget.
static BUDGET: Budget = Budget::new(DEFAULT_BUDGET);

/// Sets the budget in bytes (0: no budget) and returns the previous one. Sockets held back
/// by the old budget read again at once if the new one allows it.
pub fn set_limit(bytes: usize) -> usize {
    BUDGET.set_limit(bytes)
}

/// The budget in bytes (0: none).
pub fn limit() -> usize {
    BUDGET.limit.load(Ordering::SeqCst)
}

/// The bytes handed to owners and not taken yet, over every socket.
pub fn used() -> usize {
    BUDGET.used.load(Ordering::SeqCst)
}

/// `bytes` were handed to an owner.
pub(super) fn add(bytes: usize) {
    BUDGET.add(bytes);
}

/// `bytes` were taken by their owner (or their socket is gone).
pub(super) fn release(bytes: usize) {
    BUDGET.release(bytes);
}

/// Whether the budget is spent now (nobody is woken when it is not any more).
pub(super) fn over() -> bool {
    BUDGET.over()
}

/// Whether the budget is spent; if it is, `waker` is woken once it is not.
pub(super) fn spent(waker: &Waker) -> bool {
    BUDGET.spent(waker)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use std::task::Wake;

    struct Flag(AtomicBool);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_spent_budget_holds_readers_back_until_released() {
        // The budget is process-wide: this test is the only one in the crate that uses it.
        let before = set_limit(1000);
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = Waker::from(flag.clone());
        add(600);
        assert!(!spent(&waker));
        add(600);
        assert!(spent(&waker));
        assert!(!flag.0.load(Ordering::SeqCst));
        release(300);
        assert!(
            flag.0.load(Ordering::SeqCst),
            "woken once back under the limit"
        );
        assert!(!spent(&waker));
        release(900);
        assert_eq!(used(), 0);
        add(5000);
        assert!(spent(&waker));
        set_limit(0);
        assert!(!spent(&waker), "0 is no budget");
        release(5000);
        set_limit(before);
    }
}
