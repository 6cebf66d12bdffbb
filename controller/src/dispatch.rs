//! Wake-ups and the lease reaper.
//!
//! Pollers of a group wait on that group's [`Notify`]; a submit, a requeue, a
//! release or an expiry notifies the group at once (DESIGN.md point 7). The
//! reaper sleeps until the earliest lease deadline, but never longer than
//! [`REAPER_MAX_SLEEP`] without looking again (one indexed read), and
//! expires leases within a few milliseconds of their deadline (point 5).
//!
//! Each group also has a generation, bumped by every [`Wakers::wake`] before
//! its pollers are notified. Every change that can give a group work (submit,
//! requeue, release, expiry, retry, drill, revocation, drain and resume) calls
//! `wake` *after* its transaction committed, so a poller that read the
//! generations of its groups before an empty grant, and reads the same values
//! later, knows that no such change happened in between: it may skip the grant
//! (see `presence`). The reaper alone expires leases for idle fleets then.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::clock::{SKEW_WARN_MS, SkewWatch};
use crate::store::{Store, now_ms};

/// One [`Notify`] per worker group.
#[derive(Debug, Default)]
pub struct Wakers {
    groups: Mutex<HashMap<String, Arc<Group>>>,
}

/// A group's notifier and generation.
#[derive(Debug, Default)]
pub struct Group {
    /// Pollers of the group wait here.
    pub notify: Notify,
    generation: AtomicU64,
}

impl Group {
    /// How many wake-ups the group has had. Read it after registering on
    /// [`Group::notify`] and before looking for work.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }
}

impl Wakers {
    /// The notifier of a group (created on first use).
    pub fn get(&self, group: &str) -> Arc<Group> {
        let mut g = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(found) = g.get(group) {
            return found.clone();
        }
        g.entry(group.to_owned()).or_default().clone()
    }

    /// Bump `group`'s generation, then wake every poller waiting on it. Call
    /// it after the change that may give the group work has committed.
    pub fn wake(&self, group: &str) {
        let n = {
            let g = self.groups.lock().unwrap_or_else(|p| p.into_inner());
            g.get(group).cloned()
        };
        // No entry: nobody ever polled the group, so nobody remembers a
        // generation of it either.
        if let Some(n) = n {
            n.generation.fetch_add(1, Ordering::SeqCst);
            n.notify.notify_waiters();
        }
    }
}

/// The longest the reaper sleeps without looking again, whatever the next
/// deadline: a deadline that moves earlier without a grant's kick (a
/// controller clock that was wrong, a database clock in an HA setup) is
/// still met within this.
pub const REAPER_MAX_SLEEP: Duration = Duration::from_secs(1);

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

/// Run the reaper until `shutdown`. `kick` is notified whenever a lease is
/// granted (its deadline may be earlier than the one the reaper sleeps for).
/// It looks at the earliest deadline at least every [`REAPER_MAX_SLEEP`]
/// (one indexed read) and expires leases only when one is due.
pub async fn reaper(
    store: Store,
    wakers: Arc<Wakers>,
    kick: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let mut failures = 0u32;
    let mut skew = SkewWatch::default();
    loop {
        let kicked = kick.notified();
        tokio::pin!(kicked);
        kicked.as_mut().enable();
        watch_skew(&mut skew);
        let now = now_ms();
        let looked = match store.next_lease_deadline().await {
            Ok(Some(deadline)) if deadline <= now => expire(&store, &wakers, now).await,
            Ok(next) => Ok(next),
            Err(e) => Err(e),
        };
        let sleep = match looked {
            Ok(next) => {
                failures = 0;
                reaper_sleep(next, now_ms())
            }
            Err(e) => {
                failures += 1;
                if matches!(e, crate::store::Error::Unavailable { .. }) {
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

/// Expire the leases due at `now` and wake their groups; returns the next
/// deadline.
async fn expire(store: &Store, wakers: &Wakers, now: i64) -> crate::store::Result<Option<i64>> {
    let expired = store.expire_leases(now).await?;
    for (job_id, token, agent) in &expired.leases {
        tracing::info!(job_id, token, agent_id = %agent, "Lease expired");
    }
    for g in &expired.woken {
        wakers.wake(g);
    }
    store.next_lease_deadline().await
}

/// Say when the wall clock stepped away from the controller's clock, or
/// back (once per change of more than [`SKEW_WARN_MS`]).
fn watch_skew(watch: &mut SkewWatch) {
    let Some(skew_ms) = watch.check(crate::clock::process().skew_ms()) else {
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

#[cfg(test)]
mod tests;
