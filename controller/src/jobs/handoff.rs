//! The hand-off: a job submitted while a poll that can take it is held on
//! this controller goes to that poll in the submit's own transaction.
//!
//! Without it a submit commits the job, wakes the group, and the woken poll
//! grants in a second commit: two flushes before the agent hears of the job.
//! A held poll that looked and found nothing *parks* here ([`Handoffs::park`])
//! with what it can take (groups, kinds, connections, stores, free slots). A single
//! submit takes the first parked poll of its group that matches
//! ([`Handoffs::take`]; first parked, first taken), and the store submits and
//! grants to it in one transaction (`LeaseStore::submit_and_grant`). The poll
//! gets the grants through its ticket ([`Ticket::handed`]) and answers.
//!
//! Nothing else changes: the grant is the store's ordinary grant for that
//! agent (a drained agent or a lost race gets nothing), and when the new job
//! was not among the grants the submit wakes its group as before, so no job
//! sits while an able poller sleeps. A poll that wakes for another reason
//! withdraws its ticket first; when a submit took it already, the poll waits
//! for that submit's answer instead of granting on its own, so an agent is
//! never granted more than its free slots by two paths at once.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use baton_proto::JobKind;
use tokio::sync::oneshot;

use crate::store::Granted;
use crate::store::lease::OwnedGrant;

/// What a taken poll is told: the grants made for it (`None` when the
/// submit failed; the poll then looks again).
pub type Handed = Option<Granted>;

/// The parked polls of this controller.
#[derive(Debug, Default)]
pub struct Handoffs {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next: u64,
    /// Tickets by group, in parking order.
    by_group: HashMap<String, BTreeSet<u64>>,
    parked: HashMap<u64, Parked>,
}

/// A parked poll: what it can take and where its grants go.
#[derive(Debug)]
struct Parked {
    want: OwnedGrant,
    reply: oneshot::Sender<Handed>,
}

/// A parked poll, taken by a submit: grant to `want`, then [`Taken::hand`]
/// the result.
#[derive(Debug)]
pub struct Taken {
    /// The grant request of the parked poll.
    pub want: OwnedGrant,
    reply: oneshot::Sender<Handed>,
}

impl Taken {
    /// Tell the poll what it was granted (`None`: nothing, look again).
    /// Returns false when the poll is gone (its request ended): whatever was
    /// granted then waits for the lease to expire, as a grant whose answer
    /// was lost on the way does.
    pub fn hand(self, granted: Handed) -> bool {
        self.reply.send(granted).is_ok()
    }
}

/// A poll's place among the parked; withdrawn when dropped.
#[derive(Debug)]
pub struct Ticket<'a> {
    handoffs: &'a Handoffs,
    id: u64,
    rx: oneshot::Receiver<Handed>,
    withdrawn: bool,
}

impl Handoffs {
    /// Park a poll that can take `want` (its free slots in `want.max`).
    pub fn park(&self, want: OwnedGrant) -> Ticket<'_> {
        let (reply, rx) = oneshot::channel();
        let mut inner = self.lock();
        inner.next += 1;
        let id = inner.next;
        for g in &want.groups {
            inner.by_group.entry(g.clone()).or_default().insert(id);
        }
        inner.parked.insert(id, Parked { want, reply });
        Ticket {
            handoffs: self,
            id,
            rx,
            withdrawn: false,
        }
    }

    /// Take the first parked poll of `group` that runs `kind` and has
    /// `connection` and `store` (when the job names them), and whose request
    /// is still open.
    pub fn take(
        &self,
        group: &str,
        kind: JobKind,
        connection: Option<&str>,
        store: Option<&str>,
    ) -> Option<Taken> {
        let mut inner = self.lock();
        let found = inner.by_group.get(group)?.iter().copied().find(|id| {
            inner.parked.get(id).is_some_and(|p| {
                !p.reply.is_closed()
                    && p.want.max > 0
                    && p.want.kinds.contains(&kind)
                    && connection.is_none_or(|c| p.want.connections.iter().any(|n| n == c))
                    && store.is_none_or(|s| p.want.stores.iter().any(|n| n == s))
            })
        })?;
        let parked = inner.remove(found)?;
        Some(Taken {
            want: parked.want,
            reply: parked.reply,
        })
    }

    /// How many polls are parked.
    pub fn len(&self) -> usize {
        self.lock().parked.len()
    }

    /// Whether no poll is parked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves the maps consistent (every
        // change is one insert or remove): go on with them.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Inner {
    fn remove(&mut self, id: u64) -> Option<Parked> {
        let parked = self.parked.remove(&id)?;
        for g in &parked.want.groups {
            if let Some(set) = self.by_group.get_mut(g) {
                set.remove(&id);
                if set.is_empty() {
                    self.by_group.remove(g);
                }
            }
        }
        Some(parked)
    }
}

impl Ticket<'_> {
    /// Leave the parked polls. True when the ticket was still there; false
    /// when a submit took it: its answer then comes through
    /// [`Ticket::handed`], and the poll must wait for it.
    pub fn withdraw(&mut self) -> bool {
        if self.withdrawn {
            return true;
        }
        self.withdrawn = true;
        self.handoffs.lock().remove(self.id).is_some()
    }

    /// The grants a submit made for this poll; `None` when the submit failed
    /// or granted nothing to it. Pending until a submit takes the ticket.
    pub async fn handed(&mut self) -> Handed {
        (&mut self.rx).await.ok().flatten()
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if !self.withdrawn {
            self.handoffs.lock().remove(self.id);
        }
    }
}

#[cfg(test)]
mod tests;
