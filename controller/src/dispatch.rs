//! Wake-ups and the lease reaper.
//!
//! Pollers of a group wait on that group's [`Notify`]; a submit, a requeue, a
//! release or an expiry notifies the group at once (DESIGN.md point 7). The
//! reaper sleeps until the earliest lease deadline — no periodic sweep — and
//! expires leases within a few milliseconds of their deadline (point 5).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::store::{Store, now_ms};

/// One [`Notify`] per worker group.
#[derive(Debug, Default)]
pub struct Wakers {
    groups: Mutex<HashMap<String, Arc<Notify>>>,
}

impl Wakers {
    /// The notifier of a group (created on first use).
    pub fn get(&self, group: &str) -> Arc<Notify> {
        let mut g = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        g.entry(group.to_owned()).or_default().clone()
    }

    /// Wake every poller waiting on `group`.
    pub fn wake(&self, group: &str) {
        let n = {
            let g = self.groups.lock().unwrap_or_else(|p| p.into_inner());
            g.get(group).cloned()
        };
        if let Some(n) = n {
            n.notify_waiters();
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
                if level_error {
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
