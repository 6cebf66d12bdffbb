//! Retry delays: exponential with jitter, never giving up.

use std::time::Duration;

pub use backon::ExponentialBackoff;
use backon::{BackoffBuilder, ExponentialBuilder};

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
mod tests;
