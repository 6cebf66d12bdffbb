//! Per-group wake-ups: a [`Group`] (its held polls and a generation) per
//! worker group. Pollers (`dispatch::long_poll`) wait in it; only the jobs
//! service wakes ([`Wakers::wake`] is private to it), after its commit, and
//! a wake for `n` jobs wakes at most `n` polls that can take them
//! (`waiters`).
//!
//! Per-agent wake-ups, for cancel notices: a poll that names leases its
//! agent holds waits on its agent's [`Notify`] too ([`Wakers::agent`]); an
//! operator's cancel of a running job wakes its holder's ([`Wakers::wake_agent`]).
//! An agent has an entry only while such a poll is held (the [`AgentWait`]
//! removes it), so an idle fleet costs nothing here. A cancel also marks its
//! holder ([`Wakers::cancel_mark`]) until a poll of it finds nothing more to
//! tell: only marked agents' polls read the store for notices, so the polls
//! of busy agents cost no extra read. The marks live in memory; at start
//! the controller marks every agent holding a cancelled running lease
//! (`Jobs::mark_cancelled_holders`), so a cancel committed before a restart
//! still reaches its job by the holder's next poll.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

pub use super::waiters::{Group, Handed, Need, Poller, Registration};

/// One [`Group`] per worker group, one [`Notify`] per agent waiting for
/// cancel notices.
#[derive(Debug, Default)]
pub struct Wakers {
    groups: Mutex<HashMap<String, Arc<Group>>>,
    agents: Mutex<HashMap<String, Arc<Notify>>>,
    /// Agents whose polls may have a cancel notice to tell, with a count
    /// bumped by every cancel.
    cancels: Mutex<HashMap<String, u64>>,
}

/// A held poll's wait for its agent's cancel notices; the agent's entry is
/// removed when the last such poll ends.
#[derive(Debug)]
pub struct AgentWait<'a> {
    wakers: &'a Wakers,
    agent: String,
    /// Woken when a lease of the agent is cancelled.
    pub notify: Arc<Notify>,
}

impl Drop for AgentWait<'_> {
    fn drop(&mut self) {
        let mut a = self.wakers.agents.lock().unwrap_or_else(|p| p.into_inner());
        // The map's reference and this one: no other poll of the agent waits.
        if Arc::strong_count(&self.notify) <= 2 {
            a.remove(&self.agent);
        }
    }
}

impl Wakers {
    /// The notifier of a group (created on first use).
    pub fn get(&self, group: &str) -> Arc<Group> {
        let mut g = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(found) = g.get(group) {
            return found.clone();
        }
        g.entry(group.to_owned())
            .or_insert_with(|| Arc::new(Group::new(group)))
            .clone()
    }

    /// Wait for agent `id`'s cancel notices (while the returned guard lives).
    pub fn agent(&self, id: &str) -> AgentWait<'_> {
        let mut a = self.agents.lock().unwrap_or_else(|p| p.into_inner());
        let notify = a.entry(id.to_owned()).or_default().clone();
        AgentWait {
            wakers: self,
            agent: id.to_owned(),
            notify,
        }
    }

    /// Agent `id`'s cancel mark: `Some` when a cancel of one of its leases
    /// may not have been told to it yet (its polls then read the store).
    pub fn cancel_mark(&self, id: &str) -> Option<u64> {
        let c = self.cancels.lock().unwrap_or_else(|p| p.into_inner());
        c.get(id).copied()
    }

    /// A poll of agent `id`, taken with `mark`, found no cancel notice for
    /// it: forget the mark, unless another cancel came since.
    pub fn cancels_told(&self, id: &str, mark: u64) {
        let mut c = self.cancels.lock().unwrap_or_else(|p| p.into_inner());
        if c.get(id) == Some(&mark) {
            c.remove(id);
        }
    }

    /// How many agents have a poll waiting for cancel notices.
    #[cfg(test)]
    pub(crate) fn agents_waiting(&self) -> usize {
        self.agents.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Wake agent `id`'s held polls: one of its leases was cancelled. Call
    /// it after the cancel has committed. Nobody waits: the agent's next
    /// poll finds the cancel.
    pub(super) fn wake_agent(&self, id: &str) {
        self.mark_cancel(id);
        let n = {
            let a = self.agents.lock().unwrap_or_else(|p| p.into_inner());
            a.get(id).cloned()
        };
        if let Some(n) = n {
            n.notify_waiters();
        }
    }

    /// Mark agent `id`: its next poll naming leases reads the store for
    /// cancel notices.
    pub(super) fn mark_cancel(&self, id: &str) {
        let mut c = self.cancels.lock().unwrap_or_else(|p| p.into_inner());
        *c.entry(id.to_owned()).or_default() += 1;
    }

    /// Every group polled on this controller since the start.
    pub(super) fn group_names(&self) -> Vec<String> {
        let g = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        g.keys().cloned().collect()
    }

    /// The agents with a poll held for cancel notices now.
    pub(super) fn waiting_agents(&self) -> Vec<String> {
        let a = self.agents.lock().unwrap_or_else(|p| p.into_inner());
        a.keys().cloned().collect()
    }

    /// Wake every held poll of every group (signals from other controllers
    /// may have been lost: every held poll looks again).
    pub(super) fn wake_all(&self) {
        for g in self.existing() {
            g.wake_every();
        }
    }

    /// Bump `group`'s generation, then wake at most `n` of its held polls
    /// that can take what `need` says (each must take the work or hand the
    /// wake on). Call it after the change that may give the group work has
    /// committed.
    pub(super) fn wake(&self, group: &str, n: usize, need: &Need) {
        // No entry: nobody ever polled the group, so nobody remembers a
        // generation of it either.
        if let Some(g) = self.existing_one(group) {
            g.wake(n.max(1), need);
        }
    }

    /// Bump `group`'s generation and wake every held poll of it (a signal
    /// without a count, from an older replica).
    pub(super) fn wake_every(&self, group: &str) {
        if let Some(g) = self.existing_one(group) {
            g.wake_every();
        }
    }

    /// Bump each of `groups`' generations and wake agent `agent`'s held
    /// polls in them (its drain or resume).
    pub(super) fn wake_drain(&self, agent: &str, groups: &[String]) {
        for g in groups {
            if let Some(g) = self.existing_one(g) {
                g.wake_agent(agent);
            }
        }
    }

    fn existing_one(&self, group: &str) -> Option<Arc<Group>> {
        let g = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        g.get(group).cloned()
    }

    fn existing(&self) -> Vec<Arc<Group>> {
        let g = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        g.values().cloned().collect()
    }
}
