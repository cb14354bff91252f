//! ws's heartbeat, built in: a ping every interval, and a connection whose peer has not
//! answered the last ping by the next one is dropped. It finds a peer that vanished without a
//! FIN (a dead NAT, a pulled cable) within two intervals, where TCP alone may take hours.

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
}

impl Heartbeat {
    /// A heartbeat whose first ping is one `interval` from now.
    pub(super) fn new(interval: Duration) -> Heartbeat {
        Heartbeat {
            interval,
            sleep: Box::pin(tokio::time::sleep(interval)),
            awaiting_pong: false,
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
        let next = Instant::now() + self.interval;
        self.sleep.as_mut().reset(next);
        Poll::Ready(Beat::Ping)
    }

    /// A pong arrived: the peer is alive.
    pub(super) fn pong(&mut self) {
        self.awaiting_pong = false;
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
}
