//! Counts of the native objects alive, for leak tests and benchmarks: after a workload,
//! once everything it opened is closed, each must be back to its idle value. Internal: the
//! addon exposes them as `liveCounts()`, which is not part of the package's API.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Socket states alive in the process (see [`sockets`]).
static SOCKETS: AtomicUsize = AtomicUsize::new(0);

/// A socket state was made.
pub(crate) fn socket_made() {
    SOCKETS.fetch_add(1, Ordering::Relaxed);
}

/// A socket state was dropped.
pub(crate) fn socket_dropped() {
    SOCKETS.fetch_sub(1, Ordering::Relaxed);
}

/// Socket states (`socket::Shared`: one per client socket and accepted connection, from
/// its handle's creation to the drop of the last reference) alive in the process.
pub fn sockets() -> usize {
    SOCKETS.load(Ordering::Relaxed)
}

/// HTTP exchanges' tasks started and not finished (see [`exchanges`]).
static EXCHANGES: AtomicUsize = AtomicUsize::new(0);

/// Counts an HTTP exchange's task from its start until the guard drops (with the task).
pub(crate) struct ExchangeCounted(());

impl ExchangeCounted {
    pub(crate) fn start() -> Self {
        EXCHANGES.fetch_add(1, Ordering::Relaxed);
        ExchangeCounted(())
    }
}

impl Drop for ExchangeCounted {
    fn drop(&mut self) {
        EXCHANGES.fetch_sub(1, Ordering::Relaxed);
    }
}

/// HTTP exchanges' tasks started and not yet finished in the process: a request answered
/// whole at once by its owner, on the control channel, never starts one.
pub fn exchanges() -> usize {
    EXCHANGES.load(Ordering::Relaxed)
}

/// Tasks alive on the current tokio runtime (spawned and not yet finished, or finished
/// but not yet dropped); `None` outside a runtime.
pub fn tasks() -> Option<usize> {
    tokio::runtime::Handle::try_current()
        .ok()
        .map(|h| h.metrics().num_alive_tasks())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::socket::{Handle, SocketOptions};

    #[test]
    fn a_socket_state_is_counted_while_it_lives() {
        let before = sockets();
        let handle = Handle::new(&SocketOptions::default());
        let copy = handle.clone();
        // Other tests of this binary may make sockets meanwhile: at least ours is there.
        assert!(sockets() > before);
        drop(handle);
        drop(copy);
    }

    #[tokio::test]
    async fn tasks_are_counted_until_they_finish() {
        let before = tasks().expect("a runtime");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = rx.await;
        });
        assert_eq!(tasks(), Some(before + 1));
        drop(tx);
        task.await.expect("the task");
        assert_eq!(tasks(), Some(before));
    }
}
