//! Agent presence in memory: what a poll costs when nothing changed.
//!
//! An idle fleet polls all the time (10,000 agents with a 25 s hold are 400
//! polls a second); none of those polls should write to the store or open a
//! grant transaction when nothing happened. [`Presence`] keeps per agent:
//!
//! - the durable part of what it advertised (groups, capabilities, version,
//!   OS). A poll whose durable part differs from the cached one (or the first
//!   poll after start) goes through `Store::agent_sync`, which writes the row
//!   only if it differs from the stored one (with several controllers, also
//!   the first poll after [`AWAY_MS`] away: the agent may have advertised
//!   something else to another controller);
//! - the live part (last_seen, free slots, host metrics), the truth while the
//!   controller runs. [`run_flusher`] writes the live part of every agent that
//!   polled since the last flush in one transaction (at most
//!   `store::agents::FLUSH_BATCH` rows each) every [`FLUSH_EVERY`], soon after
//!   a change of free slots, and once more at shutdown ([`Presence::flush`]
//!   after the listener drained). Readers of the store (`GET /v1/agents`,
//!   `blocked_reason`) see last_seen at most one flush period late; the
//!   offline window (`agent_offline_after`, default hold + 20 s) is far wider;
//! - what the agent's last look found ([`Known`]): whether it was drained and
//!   whether the grant found nothing, with the generations of its groups read
//!   before looking (`dispatch`). While those generations are unchanged no
//!   wake-up happened in its groups — every change that can give a group work,
//!   and drain/resume, wakes the group after committing — so a poll may reuse
//!   the answer instead of reading the drain state or running a grant. A
//!   matching job whose backoff ends (`next_ready_at`) is the one thing that
//!   makes work appear without a wake-up; it is remembered and honoured.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton_proto::{Capabilities, HostMetrics};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::store::agents::{AgentSeen, PresenceRow};
use crate::store::{self, Store};

/// Errors of the presence service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store refused or failed (the rows stay to be written).
    #[error(transparent)]
    Store(#[from] store::Error),
}

/// Results of the presence service.
pub type Result<T> = std::result::Result<T, Error>;

/// How often the live presence of agents is written to the store.
pub const FLUSH_EVERY: Duration = Duration::from_secs(5);
/// Shortest gap between two flushes (a change of free slots asks for one soon).
pub const FLUSH_GAP: Duration = Duration::from_millis(500);

/// With several controllers on one store: an agent not seen here for this
/// long (more than a poll hold) may have polled another controller and
/// advertised something else there, so its next poll here compares its
/// advertisement with the stored row again (`agent_sync`: one read, a
/// write only if they differ) instead of with what this controller saw.
pub const AWAY_MS: i64 = 60_000;

/// What an agent's last look at the store found, valid while its groups'
/// generations are the ones recorded here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    /// Generations of the agent's groups (in the order of its groups), read
    /// before looking.
    pub generations: Vec<u64>,
    /// Whether the agent was drained.
    pub drained: bool,
    /// `Some` when a grant with free slots found nothing to run: the earliest
    /// `not_before` of a matching job still in backoff, if any.
    pub idle: Option<Option<i64>>,
}

impl Known {
    /// Whether a grant can be skipped at `now`: the last one found nothing and
    /// no matching job's backoff has ended since.
    pub fn nothing_to_grant(&self, now: i64) -> bool {
        matches!(self.idle, Some(ready_at) if ready_at.is_none_or(|t| t > now))
    }
}

#[derive(Debug)]
struct Entry {
    groups: Vec<String>,
    capabilities: Capabilities,
    version: String,
    os: String,
    last_seen: i64,
    free_slots: u32,
    metrics: Option<HostMetrics>,
    dirty: bool,
    /// Changes with every write of the durable part: a [`Known`] found with
    /// other groups or capabilities never applies.
    epoch: u64,
    known: Option<Known>,
}

impl Entry {
    fn same_durable(&self, a: &AgentSeen<'_>) -> bool {
        self.groups == a.groups
            && self.capabilities == *a.capabilities
            && self.version == a.version
            && self.os == a.os
    }
}

/// The in-memory presence of every agent that polled since the start.
#[derive(Debug, Default)]
pub struct Presence {
    agents: Mutex<HashMap<String, Entry>>,
    epochs: std::sync::atomic::AtomicU64,
    soon: Notify,
}

/// What [`Presence::polled`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Polled {
    /// Whether the agent is drained, when the store had to be read; `None`
    /// when nothing durable changed (ask [`Presence::known`]).
    pub drained: Option<bool>,
    /// The epoch of the agent's durable part this poll belongs to.
    pub epoch: u64,
}

impl Presence {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.agents.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Record a poll that arrived at `now`. `generations` are the agent's
    /// groups' generations, read before this call. Writes the agent's row
    /// only when its durable part changed (or on its first poll since the
    /// start, and only if the row differs).
    pub async fn polled(
        &self,
        store: &Store,
        seen: &AgentSeen<'_>,
        generations: &[u64],
        now: i64,
    ) -> Result<Polled> {
        {
            let mut agents = self.lock();
            if let Some(e) = agents.get_mut(seen.id)
                && e.same_durable(seen)
                && !(store.shared() && now - e.last_seen > AWAY_MS)
            {
                e.last_seen = e.last_seen.max(now);
                if e.free_slots != seen.free_slots {
                    self.soon.notify_one();
                }
                e.free_slots = seen.free_slots;
                if e.metrics.as_ref() != seen.metrics {
                    e.metrics = seen.metrics.cloned();
                }
                e.dirty = true;
                return Ok(Polled {
                    drained: None,
                    epoch: e.epoch,
                });
            }
        }
        let drained = store.agent_sync(seen, now).await?;
        let epoch = self
            .epochs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        let mut agents = self.lock();
        let e = Entry {
            groups: seen.groups.to_vec(),
            capabilities: seen.capabilities.clone(),
            version: seen.version.to_owned(),
            os: seen.os.to_owned(),
            last_seen: agents.get(seen.id).map_or(now, |e| e.last_seen.max(now)),
            free_slots: seen.free_slots,
            metrics: seen.metrics.cloned(),
            dirty: true,
            epoch,
            known: Some(Known {
                generations: generations.to_vec(),
                drained,
                idle: None,
            }),
        };
        agents.insert(seen.id.to_owned(), e);
        self.soon.notify_one();
        Ok(Polled {
            drained: Some(drained),
            epoch,
        })
    }

    /// How many times an agent's durable part (groups, capabilities, …) was
    /// written since the start: placement checks rebuild their snapshot when
    /// it moves.
    pub fn durable_epoch(&self) -> u64 {
        self.epochs.load(std::sync::atomic::Ordering::Acquire)
    }

    /// What the agent's last look found, if its durable part is still the
    /// one of `epoch` and its groups' generations are still `generations`.
    pub fn known(&self, id: &str, epoch: u64, generations: &[u64]) -> Option<Known> {
        self.lock()
            .get(id)
            .filter(|e| e.epoch == epoch)
            .and_then(|e| e.known.as_ref())
            .filter(|k| k.generations == generations)
            .cloned()
    }

    /// Remember what a look found (see [`Known`]) by a poll of `epoch`; a
    /// poll that advertised an older durable part is ignored.
    pub fn remember(&self, id: &str, epoch: u64, known: Known) {
        if let Some(e) = self.lock().get_mut(id).filter(|e| e.epoch == epoch) {
            e.known = Some(known);
        }
    }

    /// Agents in memory (every agent that polled since the start).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no agent polled since the start.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Take the live presence of every agent that polled since the last flush.
    fn take_dirty(&self) -> Vec<PresenceRow> {
        let mut agents = self.lock();
        let mut rows = Vec::new();
        for (id, e) in agents.iter_mut().filter(|(_, e)| e.dirty) {
            e.dirty = false;
            rows.push(PresenceRow {
                id: id.clone(),
                last_seen: e.last_seen,
                free_slots: e.free_slots,
                metrics: e.metrics.clone(),
            });
        }
        rows
    }

    /// Write the live presence of every agent that polled since the last
    /// flush; returns how many rows. On failure the rows stay to be written.
    pub async fn flush(&self, store: &Store) -> Result<usize> {
        let rows = self.take_dirty();
        if rows.is_empty() {
            return Ok(0);
        }
        if let Err(e) = store.flush_presence(&rows).await {
            let mut agents = self.lock();
            for r in &rows {
                if let Some(e) = agents.get_mut(&r.id) {
                    e.dirty = true;
                }
            }
            return Err(e.into());
        }
        Ok(rows.len())
    }
}

/// Flush `presence` every [`FLUSH_EVERY`] (sooner after a change of free
/// slots, never more often than every [`FLUSH_GAP`]) until `shutdown`. The
/// last flush is the caller's, once no poll can arrive any more.
pub async fn run_flusher(presence: Arc<Presence>, store: Store, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(FLUSH_EVERY) => {}
            _ = presence.soon.notified() => {}
            _ = shutdown.cancelled() => return,
        }
        match presence.flush(&store).await {
            Ok(0) => {}
            Ok(rows) => tracing::debug!(rows, "Agent presence flushed"),
            Err(e) => tracing::warn!(error = %e, "Cannot flush agent presence, retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(FLUSH_GAP) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests;
