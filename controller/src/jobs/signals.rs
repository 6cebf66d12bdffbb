//! Wake-ups across controllers sharing one store (PostgreSQL replicas).
//!
//! Every wake this service makes after a commit ([`Jobs::wake`],
//! [`Jobs::wake_agent`]) is also queued for the other replicas; the
//! publisher task sends what is queued as one signal (`store::events`),
//! so a burst of submits costs one `NOTIFY`, sent after their commits
//! (from the service, not inside the store's transaction: the signal can
//! only announce what is already visible). The receiver task turns the
//! other replicas' signals into the same local wakes.
//!
//! Signals are wake-ups only, and may be lost (a listener reconnecting, a
//! failed send, `poll_only`). So every [`LOOK_EVERY`] each replica also
//! looks at the store itself ([`Look`]): a group polled here whose ready
//! queue changed since the last look is woken; a cancelled lease of an
//! agent holding a poll here that was not seen before marks and wakes the
//! agent; while nothing is heard, a drain or resume wakes the agent's
//! groups. Every [`BACKSTOP_LOOKS`]-th look wakes every group with ready
//! work whatever changed. When the listener comes back after a loss, every
//! group is woken once. A signal lost therefore costs at most about a
//! second; correctness (no job waits while an able poller sleeps) never
//! rests on a signal.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use baton_proto::JobId;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::{Jobs, Need};
use crate::store::events::{self, Inbound, LOOK_EVERY, Looked, Signal};
use crate::store::now_ms;

/// Every this many looks, groups with ready work are woken even when their
/// queue looks unchanged (a fingerprint can collide).
pub const BACKSTOP_LOOKS: u64 = 10;

/// Wakes waiting to be sent to the other replicas.
#[derive(Debug, Default)]
pub(super) struct Outbox {
    pending: Mutex<Pending>,
    queued: Notify,
}

#[derive(Debug, Default)]
struct Pending {
    /// Group → jobs announced (`None`: wake every poll, a drain or resume).
    groups: BTreeMap<String, Option<usize>>,
    agents: BTreeSet<String>,
}

impl Outbox {
    /// Queue a wake of `n` polls of `g` (`None`: every poll).
    pub(super) fn group(&self, g: &str, n: Option<usize>) {
        {
            let mut p = self.lock();
            let e = p.groups.entry(g.to_owned()).or_insert(Some(0));
            *e = e.zip(n).map(|(a, b)| a + b);
        }
        self.queued.notify_one();
    }

    pub(super) fn agent(&self, a: &str) {
        self.lock().agents.insert(a.to_owned());
        self.queued.notify_one();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take(&self) -> Vec<Signal> {
        let p = std::mem::take(&mut *self.lock());
        let mut out = Vec::new();
        if !p.groups.is_empty() {
            out.push(Signal::Work(
                p.groups
                    .into_iter()
                    .map(|(g, n)| events::work_item(&g, n))
                    .collect(),
            ));
        }
        if !p.agents.is_empty() {
            out.push(Signal::Cancel(p.agents.into_iter().collect()));
        }
        out
    }
}

/// What the last look found, to wake only on changes.
#[derive(Debug, Default)]
pub struct Look {
    looks: u64,
    work: HashMap<String, String>,
    cancels: HashSet<(JobId, i64)>,
    /// `None` until drains were read once.
    drained: Option<HashMap<String, Vec<String>>>,
}

impl Jobs {
    /// Wake `n` of `group`'s held polls that can take what `need` says,
    /// here, and `n` on each other replica (whatever they need: the signal
    /// carries a count only).
    pub(super) fn wake(&self, group: &str, n: usize, need: Need) {
        self.wakers.wake(group, n, &need);
        if let Some(o) = &self.outbox {
            o.group(group, Some(n));
        }
    }

    /// Agent `id` was drained or resumed: wake its held polls in `groups`
    /// here, and every poll of those groups on the other replicas (they
    /// cannot tell the agent's polls from the signal).
    pub(super) fn wake_drain(&self, id: &str, groups: &[String]) {
        self.wakers.wake_drain(id, groups);
        if let Some(o) = &self.outbox {
            for g in groups {
                o.group(g, None);
            }
        }
    }

    /// Mark and wake agent `id` here, and on the other replicas.
    pub(super) fn wake_agent(&self, id: &str) {
        self.wakers.wake_agent(id);
        if let Some(o) = &self.outbox {
            o.agent(id);
        }
    }

    /// Send and hear the signals of the other replicas, and look at the
    /// store every [`LOOK_EVERY`], until `shutdown` (returns at once on a
    /// store of one controller).
    pub async fn run_signals(self, shutdown: CancellationToken) {
        let Some(outbox) = self.outbox.clone() else {
            return;
        };
        let publisher = tokio::spawn(publish(self.clone(), outbox, shutdown.clone()));
        self.receive(shutdown).await;
        let _ = publisher.await;
    }

    /// Turn the other replicas' signals into local wakes; look every
    /// [`LOOK_EVERY`].
    async fn receive(&self, shutdown: CancellationToken) {
        let mut inbound = self.store.subscribe();
        let mut listening = false;
        let mut look = Look::default();
        let mut tick = tokio::time::interval(LOOK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                m = next(&mut inbound) => match m {
                    Some(m) => self.heard(m, &mut listening),
                    None => {
                        inbound = None;
                        listening = false;
                    }
                },
                _ = tick.tick() => {
                    if let Err(e) = self.look(&mut look, !listening).await {
                        tracing::debug!(error = %e, "Cannot look at the store for other controllers' changes");
                    }
                }
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// Act on one message of the listener.
    fn heard(&self, m: Inbound, listening: &mut bool) {
        match m {
            Inbound::Signal(Signal::Work(items)) => {
                for item in &items {
                    match events::parse_work_item(item) {
                        (g, Some(n)) => self.wakers.wake(g, n, &Need::Any),
                        (g, None) => self.wakers.wake_every(g),
                    }
                }
            }
            Inbound::Signal(Signal::Cancel(agents)) => {
                for a in &agents {
                    self.wakers.wake_agent(a);
                }
            }
            // The store cleared its credential cache.
            Inbound::Signal(Signal::Revoke) => {}
            Inbound::Up => {
                *listening = true;
                self.wakers.wake_all();
            }
            Inbound::Down => *listening = false,
        }
    }

    /// Look at the store once; wake what changed since `last`.
    pub async fn look(&self, last: &mut Look, drains: bool) -> super::Result<()> {
        let groups = self.wakers.group_names();
        let agents = self.wakers.waiting_agents();
        let looked = self.store.look(&groups, &agents, drains, now_ms()).await?;
        self.woken_by(last, looked, drains);
        Ok(())
    }

    fn woken_by(&self, last: &mut Look, looked: Looked, drains: bool) {
        last.looks += 1;
        let backstop = last.looks.is_multiple_of(BACKSTOP_LOOKS);
        let mut work = HashMap::with_capacity(looked.work.len());
        for w in looked.work {
            if backstop || last.work.get(&w.group) != Some(&w.fingerprint) {
                tracing::debug!(group = %w.group, "Ready work found by the periodic look");
                self.wakers.wake(&w.group, w.count(), &Need::Any);
            }
            work.insert(w.group, w.fingerprint);
        }
        last.work = work;
        let mut cancels = HashSet::with_capacity(looked.cancels.len());
        for (job, token, agent) in looked.cancels {
            if !last.cancels.contains(&(job, token)) {
                self.wakers.wake_agent(&agent);
            }
            cancels.insert((job, token));
        }
        last.cancels = cancels;
        // Drains not read (the listener hears them): the last map stays,
        // and the next read wakes what changed since it.
        if drains {
            self.drains_changed(last, looked.drained);
        }
    }

    /// Wake the groups of agents drained or resumed since the last look.
    fn drains_changed(&self, last: &mut Look, now: Vec<(String, Vec<String>)>) {
        let now: HashMap<String, Vec<String>> = now.into_iter().collect();
        if let Some(before) = &last.drained {
            let changed = now
                .iter()
                .filter(|(a, _)| !before.contains_key(*a))
                .chain(before.iter().filter(|(a, _)| !now.contains_key(*a)));
            for (agent, groups) in changed {
                self.wakers.wake_drain(agent, groups);
            }
        }
        last.drained = Some(now);
    }
}

/// The next message of the listener; never when there is none.
async fn next(inbound: &mut Option<mpsc::Receiver<Inbound>>) -> Option<Inbound> {
    match inbound {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Send what `outbox` holds as soon as something is queued; a burst
/// queued while a send is under way goes in the next one.
async fn publish(jobs: Jobs, outbox: Arc<Outbox>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = outbox.queued.notified() => {}
            () = shutdown.cancelled() => return,
        }
        let signals = outbox.take();
        if signals.is_empty() {
            continue;
        }
        if let Err(e) = jobs.store.publish(&signals).await {
            // The periodic look of the other replicas finds it.
            tracing::debug!(error = %e, "Cannot signal the other controllers");
        }
    }
}

#[cfg(test)]
mod tests;
