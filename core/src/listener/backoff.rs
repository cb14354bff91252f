//! Reconnect delays: a fixed schedule whose last step repeats, with random spread so that
//! many listeners cut off together do not come back together (a zero step included).

use std::time::Duration;

use rand::Rng;

/// What a zero step's spread is a share of (see [`Backoff::next_delay`]).
const ZERO_SPREAD: Duration = Duration::from_secs(1);

/// The delay schedule and where we are in it.
#[derive(Debug, Clone)]
pub struct Backoff {
    delays: Vec<Duration>,
    jitter: f64,
    attempt: usize,
}

impl Backoff {
    /// A schedule; an empty one means "no delay".
    pub fn new(delays: Vec<Duration>, jitter: f64) -> Self {
        Backoff {
            delays,
            jitter: if jitter.is_finite() {
                jitter.clamp(0.0, 1.0)
            } else {
                0.0
            },
            attempt: 0,
        }
    }

    /// The delay before the next attempt; advances the schedule.
    pub fn next_delay(&mut self) -> Duration {
        let base = self
            .delays
            .get(self.attempt.min(self.delays.len().saturating_sub(1)))
            .copied()
            .unwrap_or(Duration::ZERO);
        self.attempt = self.attempt.saturating_add(1);
        if self.jitter == 0.0 {
            return base;
        }
        if base.is_zero() {
            // "At once" is spread too, over the jitter's share of a second (0-200 ms at the
            // default 0.2): listeners a service cut off together do not all come back in the
            // same instant, and a schedule of zeros cannot spin (thousands of attempts a
            // second against a relay that is down).
            return ZERO_SPREAD.mul_f64(rand::rng().random_range(0.0..=self.jitter));
        }
        let spread = rand::rng().random_range(-self.jitter..=self.jitter);
        base.mul_f64(1.0 + spread)
    }

    /// Back to the start of the schedule (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_schedule_with_bounded_jitter() {
        let secs = |s: &[u64]| s.iter().map(|x| Duration::from_secs(*x)).collect();
        let mut b = Backoff::new(secs(&[0, 1, 2, 30]), 0.2);
        assert!(b.next_delay() <= Duration::from_millis(200));
        let d = b.next_delay();
        assert!(
            d >= Duration::from_millis(800) && d <= Duration::from_millis(1200),
            "{d:?}"
        );
        b.next_delay();
        for _ in 0..5 {
            let d = b.next_delay();
            assert!(
                d >= Duration::from_secs(24) && d <= Duration::from_secs(36),
                "{d:?}"
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(200));
        assert_eq!(Backoff::new(vec![], 0.0).next_delay(), Duration::ZERO);
        assert_eq!(Backoff::new(secs(&[0]), 0.0).next_delay(), Duration::ZERO);
    }

    #[test]
    fn zero_steps_are_spread_so_that_they_cannot_spin() {
        let mut b = Backoff::new(vec![Duration::ZERO], 0.2);
        let delays: Vec<Duration> = (0..200).map(|_| b.next_delay()).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_millis(200)));
        // 200 draws from 0-200 ms: their sum is far from zero (a mean of about 100 ms).
        let total: Duration = delays.iter().sum();
        assert!(total >= Duration::from_secs(10), "{total:?} in all");
        assert!(delays.iter().any(|d| *d >= Duration::from_millis(100)));
    }
}
