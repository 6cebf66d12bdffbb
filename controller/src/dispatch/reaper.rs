//! The lease reaper: sleeps until the earliest lease deadline (at most
//! [`REAPER_MAX_SLEEP`]), expires what is due through the jobs service
//! (which wakes the groups that got a job back), and says when the wall
//! clock stepped.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::clock::{SKEW_WARN_MS, SkewWatch};
use crate::jobs::{self, Jobs};
use crate::store::{self, now_ms};

/// The longest the reaper sleeps without looking again, whatever the next
/// deadline: a deadline that moves earlier without a grant's kick (a
/// controller clock that was wrong, a database clock in an HA setup) is
/// still met within this.
pub const REAPER_MAX_SLEEP: Duration = Duration::from_secs(1);

/// Whether a lease granted for `ttl_ms` must kick the reaper. It never
/// sleeps past [`REAPER_MAX_SLEEP`] from its last look, and every look
/// reads the earliest deadline anew: a lease granted now whose deadline is
/// at least that far off is seen by the next look, which sleeps until just
/// past it, so the kick would only cost a read (one per grant, the hot
/// path's fourth statement). Shorter leases (twice the margin) kick.
pub fn needs_kick(ttl_ms: u64) -> bool {
    u128::from(ttl_ms) < 2 * REAPER_MAX_SLEEP.as_millis()
}

/// How long the reaper sleeps at `now` when the earliest lease deadline is
/// `next`: until just past it, at most [`REAPER_MAX_SLEEP`].
pub fn reaper_sleep(next: Option<i64>, now: i64) -> Duration {
    match next {
        Some(deadline) => {
            let ms = u64::try_from(deadline.saturating_sub(now)).unwrap_or(0);
            Duration::from_millis(ms.saturating_add(1)).min(REAPER_MAX_SLEEP)
        }
        None => REAPER_MAX_SLEEP,
    }
}

/// Run the reaper until `shutdown`. `kick` is notified when a lease is
/// granted whose deadline may be earlier than the reaper's next look
/// ([`needs_kick`]).
/// It looks at the earliest deadline at least every [`REAPER_MAX_SLEEP`]
/// (one indexed read) and expires leases only when one is due.
pub async fn reaper(jobs: Jobs, kick: Arc<Notify>, shutdown: CancellationToken) {
    let store = jobs.store();
    let mut failures = 0u32;
    let mut skew = SkewWatch::default();
    loop {
        let kicked = kick.notified();
        tokio::pin!(kicked);
        kicked.as_mut().enable();
        watch_skew(&mut skew);
        let now = now_ms();
        let looked = match store.next_lease_deadline().await {
            Ok(Some(deadline)) if deadline <= now => expire(&jobs, now).await,
            Ok(next) => Ok(next),
            Err(e) => Err(e.into()),
        };
        let sleep = match looked {
            Ok(next) => {
                failures = 0;
                reaper_sleep(next, now_ms())
            }
            Err(e) => {
                failures += 1;
                if matches!(e, jobs::Error::Store(store::Error::Unavailable { .. })) {
                    // The store's health logged it once, as an ERROR.
                    tracing::debug!(error = %e, "Lease reaper cannot write, retrying");
                } else if failures >= 5 {
                    tracing::error!(error = %e, failures, "Lease reaper cannot reach the store");
                } else {
                    tracing::warn!(error = %e, "Lease reaper failed, retrying");
                }
                Duration::from_millis(200)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = &mut kicked => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Expire the leases due at `now` (the jobs service wakes their groups);
/// returns the next deadline.
async fn expire(jobs: &Jobs, now: i64) -> jobs::Result<Option<i64>> {
    jobs.expire(now).await?;
    Ok(jobs.store().next_lease_deadline().await?)
}

/// Say when the wall clock stepped away from the controller's clock, or
/// back (once per change of more than [`SKEW_WARN_MS`]).
fn watch_skew(watch: &mut SkewWatch) {
    let Some(skew_ms) = watch.check(crate::clock::skew_ms()) else {
        return;
    };
    if skew_ms.abs() > SKEW_WARN_MS {
        tracing::warn!(
            skew_ms,
            "Wall clock stepped away from the controller's clock; leases are unaffected, new timestamps keep the controller's clock until it restarts"
        );
    } else {
        tracing::info!(
            skew_ms,
            "Wall clock is back in step with the controller's clock"
        );
    }
}
