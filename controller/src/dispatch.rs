//! Wake-ups and the lease reaper.
//!
//! Pollers of a group wait on that group's [`Notify`]; a submit, a requeue, a
//! release or an expiry notifies the group at once (DESIGN.md point 7). The
//! reaper sleeps until the earliest lease deadline — no periodic sweep — and
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

/// Run the reaper until `shutdown`. `kick` is notified whenever a lease is
/// granted (its deadline may be earlier than the one the reaper sleeps for).
pub async fn reaper(
    store: Store,
    wakers: Arc<Wakers>,
    kick: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let mut failures = 0u32;
    loop {
        let kicked = kick.notified();
        tokio::pin!(kicked);
        kicked.as_mut().enable();
        let now = now_ms();
        match store.expire_leases(now).await {
            Ok(expired) => {
                failures = 0;
                for (job_id, token, agent) in &expired.leases {
                    tracing::info!(job_id, token, agent_id = %agent, "Lease expired");
                }
                for g in &expired.woken {
                    wakers.wake(g);
                }
            }
            Err(e) => {
                failures += 1;
                let level_error = failures >= 5;
                if matches!(e, crate::store::Error::Unavailable { .. }) {
                    // The store's health logged it once, as an ERROR.
                    tracing::debug!(error = %e, "Lease reaper cannot write, retrying");
                } else if level_error {
                    tracing::error!(error = %e, failures, "Lease reaper cannot reach the store");
                } else {
                    tracing::warn!(error = %e, "Lease reaper failed, retrying");
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(200)) => continue,
                    _ = shutdown.cancelled() => return,
                }
            }
        }
        let next = store.next_lease_deadline().await.unwrap_or(None);
        let sleep = match next {
            Some(deadline) => Duration::from_millis((deadline - now_ms()).max(0) as u64 + 1),
            None => Duration::from_secs(3600),
        };
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = &mut kicked => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wake_bumps_the_generation_and_wakes_registered_pollers() {
        let w = Wakers::default();
        w.wake("db"); // nobody polls `db` yet: nothing to remember
        let g = w.get("db");
        assert_eq!(g.generation(), 0);
        let other = w.get("web");
        let waiting = g.notify.notified();
        tokio::pin!(waiting);
        waiting.as_mut().enable();
        w.wake("db");
        assert_eq!(g.generation(), 1);
        assert_eq!(other.generation(), 0, "other groups keep their generation");
        // The registered poller was woken (it completes without another wake).
        waiting.await;
        assert!(Arc::ptr_eq(&g, &w.get("db")));
    }
}
