//! A worker group's held polls, and how a wake-up picks among them.
//!
//! A wake for `n` jobs hands itself to at most `n` held polls that can take
//! them ([`Group::wake`]): not drained, running the job's kind and having
//! its connection and store when the waker knows them ([`Need`]), and not woken
//! already; the longest-held first. The other polls sleep on: one job
//! submitted to 10,000 idle agents wakes one poll, not 10,000. Every wake
//! still bumps the group's generation, so the presence shortcut
//! (`presence::Known`) of a poll that was not woken is void at its next look.
//!
//! A wake handed to a poll ([`Handed`]) is an obligation: the poll looks,
//! and when it takes nothing, or all it could while work remains, it hands
//! the wake on ([`Handed::pass_on`]) to another poll that has not looked
//! since the group's last wake ([`Group::pass_on`]: no generation bump, so a
//! wake travels through each poll at most once per generation and ends).
//! A poll that ends (hold over, request gone, error) with a wake it has not
//! settled hands it on too (`dispatch::poll`). So a job never sits while a
//! poll that could take it sleeps (lease lifecycle point 7).
//!
//! Registration and the generation read are one step under the group's
//! lock ([`Poller::register`]): a wake bumps the generation *before*
//! taking the lock, so either the poll read the bumped generation (its look
//! runs after the commit the wake announces), or the waker finds the poll
//! registered with an older one and may pick it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use baton_proto::JobKind;
use futures_util::FutureExt;
use tokio::sync::Notify;

use crate::telemetry;

/// What the jobs a wake announces need of a poll, when the waker knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Need {
    /// Unknown (a requeue, another replica's signal, the periodic look):
    /// any poll not drained.
    #[default]
    Any,
    /// A job of this kind, needing this connection and store if any.
    Job {
        /// The job's kind.
        kind: JobKind,
        /// The connection it names.
        connection: Option<String>,
        /// The object store it names.
        store: Option<String>,
    },
}

/// A worker group's wake generation and held polls.
#[derive(Debug, Default)]
pub struct Group {
    name: String,
    generation: AtomicU64,
    waiting: Mutex<Waiting>,
    /// Polls woken so far (the process-wide figure is a metric).
    woken: AtomicU64,
}

#[derive(Debug, Default)]
struct Waiting {
    next: u64,
    /// By registration order: the longest-held poll first.
    polls: BTreeMap<u64, Entry>,
}

#[derive(Debug)]
struct Entry {
    poller: Arc<Poller>,
    /// The group's generation when the poll registered (then looked).
    read: u64,
}

/// A wake handed to a poll: it must take the work or hand it on.
#[derive(Debug, Clone)]
pub struct Handed {
    /// The woken group.
    pub group: Arc<Group>,
    /// What the announced jobs need.
    pub need: Need,
}

impl Handed {
    /// Hand this wake to another poll of the group that has not looked
    /// since its last wake (none: every poll that could take it looked).
    pub fn pass_on(self) {
        self.group.pass_on(&self.need);
    }
}

/// One held poll, as the groups it waits on see it.
#[derive(Debug)]
pub struct Poller {
    agent: String,
    kinds: Vec<JobKind>,
    connections: Vec<String>,
    stores: Vec<String>,
    drained: AtomicBool,
    /// Set when a wake reached the poll since it last registered.
    woken: AtomicBool,
    notify: Notify,
    handed: Mutex<Vec<Handed>>,
}

/// A poll's places in its groups' queues; left when dropped.
#[derive(Debug, Default)]
pub struct Registration {
    entries: Vec<(Arc<Group>, u64)>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        for (g, key) in &self.entries {
            g.lock().polls.remove(key);
        }
    }
}

impl Group {
    /// A group named `name`, with no poll.
    pub fn new(name: &str) -> Self {
        Group {
            name: name.to_owned(),
            ..Group::default()
        }
    }

    /// The group's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many wake-ups the group has had. Read it after registering
    /// (see [`Poller::register`], which returns it) and before looking.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// How many held polls this group's wakes have woken.
    pub fn woken_total(&self) -> u64 {
        self.woken.load(Ordering::Relaxed)
    }

    /// How many polls wait on the group now.
    pub fn waiting(&self) -> usize {
        self.lock().polls.len()
    }

    fn lock(&self) -> MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bump the generation, then hand a wake to at most `n` held polls that
    /// can take what `need` says; returns how many were woken.
    pub fn wake(self: &Arc<Self>, n: usize, need: &Need) -> usize {
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        self.hand(n, need, generation)
    }

    /// Hand one wake on without a bump: to a poll that registered before the
    /// last wake (it has not looked since) and can take what `need` says.
    pub fn pass_on(self: &Arc<Self>, need: &Need) -> usize {
        let generation = self.generation();
        self.hand(1, need, generation)
    }

    fn hand(self: &Arc<Self>, n: usize, need: &Need, generation: u64) -> usize {
        let picked: Vec<Arc<Poller>> = {
            let mut w = self.lock();
            let mut keys = Vec::new();
            for (k, e) in &w.polls {
                if keys.len() >= n {
                    break;
                }
                if e.read < generation
                    && e.poller.can_take(need)
                    && !e.poller.woken.swap(true, Ordering::AcqRel)
                {
                    keys.push(*k);
                }
            }
            keys.iter()
                .filter_map(|k| w.polls.remove(k))
                .map(|e| e.poller)
                .collect()
        };
        for p in &picked {
            p.lock_handed().push(Handed {
                group: self.clone(),
                need: need.clone(),
            });
            p.notify.notify_one();
        }
        self.count_woken(picked.len());
        picked.len()
    }

    /// Bump the generation and wake every held poll (no wake is handed:
    /// each looks once). For what may concern any poll: signals lost while
    /// a listener was down.
    pub fn wake_every(&self) -> usize {
        self.wake_where(|_| true)
    }

    /// Bump the generation and wake agent `agent`'s held polls (its drain
    /// or resume: they read the drain state again).
    pub fn wake_agent(&self, agent: &str) -> usize {
        self.wake_where(|p| p.agent == agent)
    }

    fn wake_where(&self, which: impl Fn(&Poller) -> bool) -> usize {
        self.generation.fetch_add(1, Ordering::SeqCst);
        let picked: Vec<Arc<Poller>> = {
            let mut w = self.lock();
            let keys: Vec<u64> = w
                .polls
                .iter()
                .filter(|(_, e)| which(&e.poller))
                .map(|(k, _)| *k)
                .collect();
            keys.iter()
                .filter_map(|k| w.polls.remove(k))
                .map(|e| e.poller)
                .filter(|p| !p.woken.swap(true, Ordering::AcqRel))
                .collect()
        };
        for p in &picked {
            p.notify.notify_one();
        }
        self.count_woken(picked.len());
        picked.len()
    }

    fn count_woken(&self, n: usize) {
        if n > 0 {
            self.woken.fetch_add(n as u64, Ordering::Relaxed);
            telemetry::metrics().polls_woken.inc_by(n as u64);
        }
    }
}

impl Poller {
    /// A poll of agent `agent`, able to run `kinds` on `connections`, with
    /// the object stores `stores`.
    pub fn new(
        agent: &str,
        kinds: &[JobKind],
        connections: &[String],
        stores: &[String],
    ) -> Arc<Self> {
        Arc::new(Poller {
            agent: agent.to_owned(),
            kinds: kinds.to_vec(),
            connections: connections.to_vec(),
            stores: stores.to_vec(),
            drained: AtomicBool::new(false),
            woken: AtomicBool::new(false),
            notify: Notify::new(),
            handed: Mutex::new(Vec::new()),
        })
    }

    fn lock_handed(&self) -> MutexGuard<'_, Vec<Handed>> {
        self.handed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the poll can take a job that needs `need`.
    fn can_take(&self, need: &Need) -> bool {
        if self.drained.load(Ordering::Acquire) {
            return false;
        }
        match need {
            Need::Any => true,
            Need::Job {
                kind,
                connection,
                store,
            } => {
                self.kinds.contains(kind)
                    && connection
                        .as_ref()
                        .is_none_or(|c| self.connections.contains(c))
                    && store.as_ref().is_none_or(|s| self.stores.contains(s))
            }
        }
    }

    /// What the poll's last look found of its agent's drain (a drained poll
    /// is handed no work wake).
    pub fn set_drained(&self, drained: bool) {
        self.drained.store(drained, Ordering::Release);
    }

    /// Wait in `groups`' queues (until the registration is dropped) and read
    /// their generations in the same step; also returns whether a wake
    /// reached the poll since it last registered.
    pub fn register(self: &Arc<Self>, groups: &[Arc<Group>]) -> (Registration, Vec<u64>, bool) {
        // A wake since the last registration was looked at (or is in
        // `handed`): forget its permit.
        let was_woken = self.woken.swap(false, Ordering::AcqRel);
        let _ = self.notify.notified().now_or_never();
        let mut reg = Registration::default();
        let mut gens = Vec::with_capacity(groups.len());
        for g in groups {
            let mut w = g.lock();
            let key = w.next;
            w.next += 1;
            let read = g.generation();
            w.polls.insert(
                key,
                Entry {
                    poller: self.clone(),
                    read,
                },
            );
            drop(w);
            reg.entries.push((g.clone(), key));
            gens.push(read);
        }
        (reg, gens, was_woken)
    }

    /// Resolves when a wake reaches the poll.
    pub async fn woken(&self) {
        self.notify.notified().await;
    }

    /// The wakes handed to the poll and not yet taken.
    pub fn take_handed(&self) -> Vec<Handed> {
        std::mem::take(&mut *self.lock_handed())
    }
}

#[cfg(test)]
mod tests;
