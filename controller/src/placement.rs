//! Placement at submit: whether any enrolled agent could ever run a job.
//!
//! A submit is refused (422) when no enrolled, unrevoked agent (online or
//! not) serves the job's `group`, or when no agent of the group advertises
//! the job's connection (`spec.connection`); `allow_unplaced` accepts it
//! anyway. The engines the group's agents advertise for the connection
//! (`mysql`, `mssql`) decide the name and value checks of a procedure call
//! ([`validate::call`]).
//!
//! Cost: the answer comes from a [`Fleet`] snapshot built from one read of
//! the agents table (groups and last advertised capabilities). An accepted
//! submit never reads the store after the first; a refusal is re-checked on
//! a fresh snapshot when something changed since (an agent's advertisement
//! written by a poll, counted by presence; an enrollment, a revocation:
//! [`Placement::changed`]) or the snapshot is older than [`MAX_AGE`]. See
//! [`Placement::check`]. One rebuild runs at a time: the submits that need
//! one meanwhile wait for it and take its snapshot, so the first 100 submits
//! after a restart do not read 10,000 agents 100 times. The read returns the
//! distinct (groups, capabilities) pairs, a handful in a fleet configured
//! alike. Measured on 10,000 agents (debug build, loaded 2-core machine):
//! a rebuild 93-460 ms, a cached answer 3-40 µs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use baton_proto::JobSubmit;
use baton_proto::param::Engine;

use crate::store::{self, Store};
use crate::validate;

/// Errors of the placement service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] store::Error),
}

/// Longest a snapshot may back a refusal without a known change (a write
/// this process did not see: another process on the same store).
pub const MAX_AGE: Duration = Duration::from_secs(5);
/// Most names listed in a refusal.
pub const MAX_LISTED: usize = 20;

/// Per group, per connection name, the engines its agents advertise.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Fleet {
    groups: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
    /// Per group, the object stores (`[stores.<name>]`) its agents advertise.
    stores: BTreeMap<String, BTreeSet<String>>,
    /// Per group, the (connection, store) pairs one agent advertises both
    /// of: a job naming both runs only there.
    pairs: BTreeMap<String, BTreeSet<(String, String)>>,
}

/// Sorted names, at most [`MAX_LISTED`] of them, then how many more.
fn listed(names: impl ExactSizeIterator<Item = String>) -> String {
    let total = names.len();
    let mut out: Vec<String> = names.take(MAX_LISTED).collect();
    if total > MAX_LISTED {
        out.push(format!("… {} more", total - MAX_LISTED));
    }
    out.join(", ")
}

/// A placement refusal of `field` (422), with the way around it.
fn unplaced(field: &str, message: String) -> validate::Error {
    validate::Error {
        field: field.to_owned(),
        message: format!(
            "{message}; set allow_unplaced (batonctl submit --allow-unplaced) to submit it \
             anyway for an agent not enrolled yet"
        ),
        kind: validate::Kind::Unprocessable,
    }
}

impl Fleet {
    /// Build from the agents' groups and capabilities.
    pub fn new(agents: &[(Vec<String>, baton_proto::Capabilities)]) -> Fleet {
        let mut groups: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
        let mut stores: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut pairs: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
        for (gs, caps) in agents {
            for g in gs {
                let both = pairs.entry(g.clone()).or_default();
                for c in &caps.connections {
                    for st in &caps.stores {
                        both.insert((c.name.clone(), st.clone()));
                    }
                }
                stores
                    .entry(g.clone())
                    .or_default()
                    .extend(caps.stores.iter().cloned());
                let conns = groups.entry(g.clone()).or_default();
                for c in &caps.connections {
                    conns
                        .entry(c.name.clone())
                        .or_default()
                        .insert(c.kind.clone());
                }
            }
        }
        Fleet {
            groups,
            stores,
            pairs,
        }
    }

    /// Refuses (`spec.store`) a job naming an object store no agent of its
    /// group advertises, unless it allows that.
    fn place_store(&self, job: &JobSubmit) -> Result<(), validate::Error> {
        let Some(store) = job.spec.store() else {
            return Ok(());
        };
        let none = BTreeSet::new();
        let known = self.stores.get(&job.group).unwrap_or(&none);
        if job.allow_unplaced || known.contains(store) {
            return Ok(());
        }
        let known = if known.is_empty() {
            "they advertise no store".to_owned()
        } else {
            format!("they advertise: {}", listed(known.iter().cloned()))
        };
        Err(unplaced(
            job.spec.store_field(),
            format!(
                "no agent of group `{}` advertises store `{store}` ({known})",
                job.group
            ),
        ))
    }

    /// Refuses (`spec.store`) a job naming a connection and a store that
    /// agents of its group advertise, but no one agent both (it could never
    /// be granted), unless it allows that.
    fn place_pair(&self, job: &JobSubmit, connection: &str) -> Result<(), validate::Error> {
        let Some(store) = job.spec.store() else {
            return Ok(());
        };
        let both = self
            .pairs
            .get(&job.group)
            .is_some_and(|p| p.contains(&(connection.to_owned(), store.to_owned())));
        if job.allow_unplaced || both {
            return Ok(());
        }
        Err(unplaced(
            job.spec.store_field(),
            format!(
                "no agent of group `{}` advertises both connection `{connection}` and store \
                 `{store}` (some advertise one, others the other; the job runs on one agent)",
                job.group
            ),
        ))
    }

    /// Where `job` can run: the engines of its connection (empty for a job
    /// without one, or when nothing is known and `allow_unplaced` is set).
    /// Refuses (`group`, `spec.connection`) when no enrolled agent could run
    /// it, unless the job allows that.
    pub fn place(&self, job: &JobSubmit) -> Result<Vec<Engine>, validate::Error> {
        let refuse = |field: &str, message: String| Err(unplaced(field, message));
        let Some(conns) = self.groups.get(&job.group) else {
            if job.allow_unplaced {
                return Ok(Vec::new());
            }
            let known = if self.groups.is_empty() {
                "no agent is enrolled".to_owned()
            } else {
                format!(
                    "groups with agents: {}",
                    listed(self.groups.keys().cloned())
                )
            };
            return refuse(
                "group",
                format!("no enrolled agent serves group `{}` ({known})", job.group),
            );
        };
        self.place_store(job)?;
        let Some(connection) = job.spec.connection() else {
            return Ok(Vec::new());
        };
        match conns.get(connection) {
            Some(kinds) => {
                self.place_pair(job, connection)?;
                let mut engines = Vec::new();
                // `mysql` and `mariadb` are one engine.
                for e in kinds.iter().filter_map(|k| Engine::parse(k)) {
                    if !engines.contains(&e) {
                        engines.push(e);
                    }
                }
                Ok(engines)
            }
            None if job.allow_unplaced => Ok(Vec::new()),
            None => {
                let known = if conns.is_empty() {
                    "they advertise no connection".to_owned()
                } else {
                    let names = conns
                        .iter()
                        .map(|(name, kinds)| {
                            let kinds: Vec<&str> = kinds.iter().map(String::as_str).collect();
                            format!("{name} ({})", kinds.join("/"))
                        })
                        .collect::<Vec<_>>();
                    format!("they advertise: {}", listed(names.into_iter()))
                };
                refuse(
                    "spec.connection",
                    format!(
                        "no agent of group `{}` advertises connection `{connection}` ({known})",
                        job.group
                    ),
                )
            }
        }
    }
}

struct Cached {
    changes: (u64, u64),
    at: Instant,
    fleet: Arc<Fleet>,
}

/// The snapshot behind placement checks, rebuilt after changes.
#[derive(Default)]
pub struct Placement {
    changes: AtomicU64,
    cached: Mutex<Option<Cached>>,
    /// Held by the one rebuild in progress.
    rebuilding: tokio::sync::Mutex<()>,
    rebuilds: AtomicU64,
}

impl std::fmt::Debug for Placement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Placement")
            .field("changes", &self.changes.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Placement {
    /// Something the snapshot is built from may have changed (an agent's
    /// advertisement, an enrollment, a revocation): the next check rebuilds it.
    pub fn changed(&self) {
        self.changes.fetch_add(1, Ordering::Release);
    }

    /// Run `check` on the snapshot. The cached one answers first, however
    /// old: what it accepts is accepted (at worst the job waits with a
    /// blocked reason, as any job whose agents went away). Only a refusal by
    /// a snapshot older than the latest change, or than [`MAX_AGE`], reads
    /// the store again and checks once more. So accepted submits read the
    /// store once per process, a fleet's churn (10,000 agents advertising
    /// after a controller restart) costs them nothing, and a refusal never
    /// rests on data older than the last change. `advertised` is the presence
    /// service's count of advertisement writes (`Presence::durable_epoch`).
    pub async fn check<T, E>(
        &self,
        store: &Store,
        advertised: u64,
        check: impl Fn(&Fleet) -> Result<T, E>,
    ) -> Result<Result<T, E>, Error> {
        let changes = (self.changes.load(Ordering::Acquire), advertised);
        if let Some((fleet, current)) = self.cached(changes) {
            let answer = check(&fleet);
            if answer.is_ok() || current {
                return Ok(answer);
            }
        }
        // One rebuild at a time; who waited for it takes its snapshot when
        // that was read as of the same changes.
        let _one = self.rebuilding.lock().await;
        if let Some((fleet, true)) = self.cached(changes) {
            return Ok(check(&fleet));
        }
        let fleet = self.rebuild(store, changes).await?;
        Ok(check(&fleet))
    }

    /// The snapshot, and whether it is current as of `changes`.
    fn cached(&self, changes: (u64, u64)) -> Option<(Arc<Fleet>, bool)> {
        let cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        cached.as_ref().map(|c| {
            (
                c.fleet.clone(),
                c.changes == changes && c.at.elapsed() < MAX_AGE,
            )
        })
    }

    /// Snapshots read from the store so far.
    pub fn rebuilds(&self) -> u64 {
        self.rebuilds.load(Ordering::Relaxed)
    }

    /// One read of the store into a new snapshot, kept as of `changes`;
    /// called only under `rebuilding`, so the last rebuild is the newest.
    async fn rebuild(&self, store: &Store, changes: (u64, u64)) -> Result<Arc<Fleet>, Error> {
        let at = Instant::now();
        self.rebuilds.fetch_add(1, Ordering::Relaxed);
        let fleet = Arc::new(Fleet::new(&store.placement().await?));
        *self.cached.lock().unwrap_or_else(|p| p.into_inner()) = Some(Cached {
            changes,
            at,
            fleet: fleet.clone(),
        });
        Ok(fleet)
    }
}

#[cfg(test)]
mod tests;
