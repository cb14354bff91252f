//! ws's heartbeat, built in: a ping every interval, and a connection whose peer has not
//! answered the last ping by the next one is dropped. It finds a peer that vanished without a
//! FIN (a dead NAT, a pulled cable) within two intervals, where TCP alone may take hours.
//!
//! Unlike ws's pattern, whose timer runs on the event loop, this one runs on the connection's
//! own thread, and so keeps time while the event loop is busy: the connection then judges
//! only a pong it could have read (see `ConnectionTask::poll_heartbeat`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// What the heartbeat asks of its connection.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Beat {
    /// Send a ping now.
    Ping,
    /// The last ping went unanswered for a whole interval: drop the connection.
    Dead,
}

/// A connection's heartbeat (boxed in the task: most connections have none).
pub(super) struct Heartbeat {
    interval: Duration,
    sleep: Pin<Box<Sleep>>,
    awaiting_pong: bool,
    /// The one extra interval per ping is taken (see [`Heartbeat::take_grace`]).
    grace_used: bool,
    /// The brief second look of this deadline is taken (see [`Heartbeat::take_recheck`]).
    rechecked: bool,
    /// Reading was held since the last ping or wait ([`Heartbeat::reading_held`]).
    held: bool,
}

impl Heartbeat {
    /// A heartbeat whose first ping is one `interval` from now.
    pub(super) fn new(interval: Duration) -> Heartbeat {
        Heartbeat {
            interval,
            sleep: Box::pin(tokio::time::sleep(interval)),
            awaiting_pong: false,
            grace_used: false,
            rechecked: false,
            held: false,
        }
    }

    /// Ready when a ping is due, or when the last one went unanswered.
    pub(super) fn poll_beat(&mut self, cx: &mut Context<'_>) -> Poll<Beat> {
        if self.sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        if self.awaiting_pong {
            return Poll::Ready(Beat::Dead);
        }
        self.awaiting_pong = true;
        self.grace_used = false;
        self.rechecked = false;
        self.held = false;
        let next = Instant::now() + self.interval;
        self.sleep.as_mut().reset(next);
        Poll::Ready(Beat::Ping)
    }

    /// The last ping is unanswered, but its pong could not have been read: waits one more
    /// interval for it (still awaited), woken through `cx` when that is over.
    pub(super) fn wait_longer(&mut self, cx: &mut Context<'_>) {
        self.held = false;
        self.rechecked = false;
        self.sleep.as_mut().reset(Instant::now() + self.interval);
        // Registers `cx`'s waker with the new deadline; a full interval is never ready yet.
        let _ = self.sleep.as_mut().poll(cx);
    }

    /// Whether the brief second look of this deadline is still to be had (it is taken now):
    /// see [`Heartbeat::wait_briefly`].
    pub(super) fn take_recheck(&mut self) -> bool {
        !std::mem::replace(&mut self.rechecked, true)
    }

    /// The last ping is unanswered and nothing could be read at the deadline, which may be
    /// stale news: after the process was stopped (SIGSTOP, a debugger, a paused container)
    /// the runtime fires its due timers before it polls its sockets again. Waits a moment
    /// (a tenth of the interval, 1 to 50 ms), woken through `cx`, for a second look.
    pub(super) fn wait_briefly(&mut self, cx: &mut Context<'_>) {
        let moment =
            (self.interval / 10).clamp(Duration::from_millis(1), Duration::from_millis(50));
        self.sleep.as_mut().reset(Instant::now() + moment);
        let _ = self.sleep.as_mut().poll(cx);
    }

    /// Whether the one extra interval allowed per ping (when the pong may not have been
    /// read: bytes came just at the deadline, or reading was held for a while) is still to
    /// be had (it is taken now).
    pub(super) fn take_grace(&mut self) -> bool {
        !std::mem::replace(&mut self.grace_used, true)
    }

    /// A pong arrived: the peer is alive.
    pub(super) fn pong(&mut self) {
        self.awaiting_pong = false;
    }

    /// The connection held its reading back (paused, or behind its consumer): a pong may
    /// wait unread, or behind messages that will take a while to read once it reads again.
    pub(super) fn reading_held(&mut self) {
        self.held = true;
    }

    /// Whether reading was held since the last ping or wait.
    pub(super) fn was_held(&self) -> bool {
        self.held
    }

    /// Whether the last ping is still unanswered.
    pub(super) fn awaiting_pong(&self) -> bool {
        self.awaiting_pong
    }

    /// The interval, for messages.
    pub(super) fn interval(&self) -> Duration {
        self.interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll(hb: &mut Heartbeat) -> Poll<Beat> {
        let waker = futures_util::task::noop_waker();
        hb.poll_beat(&mut Context::from_waker(&waker))
    }

    #[tokio::test(start_paused = true)]
    async fn pings_each_interval_and_drops_a_silent_peer() {
        let mut hb = Heartbeat::new(Duration::from_secs(1));
        assert_eq!(poll(&mut hb), Poll::Pending);
        tokio::time::advance(Duration::from_millis(1001)).await;
        assert_eq!(poll(&mut hb), Poll::Ready(Beat::Ping));
        assert_eq!(poll(&mut hb), Poll::Pending, "one ping per interval");
        hb.pong();
        tokio::time::advance(Duration::from_millis(1001)).await;
        assert_eq!(
            poll(&mut hb),
            Poll::Ready(Beat::Ping),
            "answered: another ping"
        );
        tokio::time::advance(Duration::from_millis(1001)).await;
        assert_eq!(
            poll(&mut hb),
            Poll::Ready(Beat::Dead),
            "unanswered for an interval"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn waits_longer_for_a_pong_that_could_not_be_read() {
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut hb = Heartbeat::new(Duration::from_secs(1));
        tokio::time::advance(Duration::from_millis(1001)).await;
        assert_eq!(poll(&mut hb), Poll::Ready(Beat::Ping));
        tokio::time::advance(Duration::from_millis(1001)).await;
        assert_eq!(poll(&mut hb), Poll::Ready(Beat::Dead));
        assert!(hb.awaiting_pong());
        assert!(!hb.was_held(), "reading went on");
        hb.reading_held();
        assert!(hb.was_held());
        assert!(hb.take_grace(), "one grace per ping");
        assert!(!hb.take_grace(), "only one");
        hb.wait_longer(&mut cx);
        assert!(!hb.was_held(), "a wait starts a new interval");
        assert_eq!(poll(&mut hb), Poll::Pending, "a whole interval more");
        tokio::time::advance(Duration::from_millis(500)).await;
        hb.pong();
        tokio::time::advance(Duration::from_millis(501)).await;
        assert_eq!(
            poll(&mut hb),
            Poll::Ready(Beat::Ping),
            "answered while waiting: the next ping"
        );
        assert!(hb.take_grace(), "a new ping, a new grace");
        tokio::time::advance(Duration::from_millis(1001)).await;
        assert_eq!(poll(&mut hb), Poll::Ready(Beat::Dead));
        hb.wait_longer(&mut cx);
        tokio::time::advance(Duration::from_millis(1001)).await;
        assert_eq!(
            poll(&mut hb),
            Poll::Ready(Beat::Dead),
            "still unanswered after waiting"
        );
    }
}
