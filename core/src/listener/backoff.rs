//! Reconnect delays: a fixed schedule whose last step repeats, with random spread so that
//! many listeners cut off together do not come back together.

use std::time::Duration;

use rand::Rng;

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
        if base.is_zero() || self.jitter == 0.0 {
            return base;
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
        assert_eq!(b.next_delay(), Duration::ZERO);
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
        assert_eq!(b.next_delay(), Duration::ZERO);
        assert_eq!(Backoff::new(vec![], 0.5).next_delay(), Duration::ZERO);
    }
}
