//! Retry delays: exponential with jitter, never giving up.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// Delays starting near `min` and never above `cap`, each randomised.
///
/// backon's jitter adds up to one more delay on top of the base, so the base
/// is capped at half of `cap`. Each agent seeds its own jitter, so a fleet
/// that lost its controller does not come back in lock step.
pub fn delays(min: Duration, cap: Duration) -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(min)
        .with_max_delay((cap / 2).max(min))
        .with_factor(2.0)
        .with_jitter()
        .with_jitter_seed(rand::random())
        .without_max_times()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_under_the_cap() {
        let min = Duration::from_millis(200);
        let cap = Duration::from_secs(10);
        let all: Vec<Duration> = delays(min, cap).take(40).collect();
        assert_eq!(all.len(), 40, "never gives up");
        assert!(all[0] >= min && all[0] < min * 2, "{:?}", all[0]);
        assert!(all.iter().all(|d| *d <= cap), "{all:?}");
        assert!(all[39] >= cap / 2, "reaches the cap: {:?}", all[39]);
    }
}
