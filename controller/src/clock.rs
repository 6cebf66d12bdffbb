//! The controller's clock: the wall clock read once, at process start, plus
//! the monotonic time elapsed since (ARCHITECTURE.md "The controller's
//! clock").
//!
//! Every timestamp the controller stores or compares (lease deadlines,
//! `not_before`, created/started/ended times) comes from [`now_ms`]. Within
//! a process it never steps: a wall-clock step (an operator's `date -s`, NTP
//! stepping a clock that was far off) changes nothing — no lease ends early
//! or late, no duration turns negative — while NTP's slewing is still
//! followed (`CLOCK_MONOTONIC` is slewed with the wall clock). A step is
//! adopted at the next start, where the store recomputes what was kept in
//! the old time (`Store::rebase_clock`). [`Clock::skew_ms`] tells how far
//! the wall clock has moved away, for the step warning.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

/// Wall time at an origin, plus monotonic time since that origin.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// Unix milliseconds at `origin`.
    wall_ms: i64,
    origin: Instant,
}

impl Clock {
    /// A clock anchored to the wall clock now.
    pub fn start() -> Clock {
        Clock::anchored(wall_now_ms(), Instant::now())
    }

    /// A clock reading `wall_ms` at `origin`.
    pub fn anchored(wall_ms: i64, origin: Instant) -> Clock {
        Clock { wall_ms, origin }
    }

    /// Unix milliseconds at `at`, which must not precede the origin (an
    /// earlier instant reads as the origin).
    pub fn at_ms(&self, at: Instant) -> i64 {
        let elapsed = at.saturating_duration_since(self.origin).as_millis();
        self.wall_ms
            .saturating_add(i64::try_from(elapsed).unwrap_or(i64::MAX))
    }

    /// Unix milliseconds now.
    pub fn now_ms(&self) -> i64 {
        self.at_ms(Instant::now())
    }

    /// How far the wall clock is ahead of this clock (negative: behind),
    /// in milliseconds: the sum of the steps since the origin, plus the
    /// drift of the monotonic clock (tiny).
    pub fn skew_ms(&self) -> i64 {
        let at = Instant::now();
        wall_now_ms().saturating_sub(self.at_ms(at))
    }
}

/// The wall clock, in Unix milliseconds (display only; use [`now_ms`]).
fn wall_now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

static PROCESS: LazyLock<Clock> = LazyLock::new(Clock::start);

/// Added to [`PROCESS`]'s reading: 0, or (PostgreSQL) the database's clock
/// minus this host's at start ([`anchor_to`]).
static OFFSET_MS: AtomicI64 = AtomicI64::new(0);

/// The process's clock (anchored at its first use; `server::run` uses it
/// first), without the offset of [`anchor_to`].
pub fn process() -> &'static Clock {
    &PROCESS
}

/// The controller's now, in Unix milliseconds: [`process`]'s reading plus
/// the offset [`anchor_to`] set.
pub fn now_ms() -> i64 {
    PROCESS
        .now_ms()
        .saturating_add(OFFSET_MS.load(Ordering::Relaxed))
}

/// Anchor the controller's clock to another clock that reads `ms` now —
/// the database's, when several controllers share PostgreSQL, so that they
/// all read one clock whatever their hosts' wall clocks say
/// (ARCHITECTURE.md "Several controllers"). Call once at start, before
/// serving; it advances by the monotonic clock afterwards, like the rest.
pub fn anchor_to(ms: i64) {
    OFFSET_MS.store(ms.saturating_sub(PROCESS.now_ms()), Ordering::Relaxed);
}

/// How far this host's wall clock is ahead of the controller's clock
/// (negative: behind): the steps since start, plus (PostgreSQL) how far
/// it is from the database's clock.
pub fn skew_ms() -> i64 {
    wall_now_ms().saturating_sub(now_ms())
}

/// When the wall clock has moved away from the controller's clock by more
/// than this, the controller warns (once per change of this size).
pub const SKEW_WARN_MS: i64 = 1_000;

/// Tracks the wall clock's skew and says when it changed enough to log.
#[derive(Debug, Default)]
pub struct SkewWatch {
    reported_ms: i64,
}

impl SkewWatch {
    /// The skew to report, if it moved by more than [`SKEW_WARN_MS`] since
    /// the last report (the first report is against 0).
    pub fn check(&mut self, skew_ms: i64) -> Option<i64> {
        if (skew_ms - self.reported_ms).abs() > SKEW_WARN_MS {
            self.reported_ms = skew_ms;
            return Some(skew_ms);
        }
        None
    }
}

#[cfg(test)]
mod tests;
