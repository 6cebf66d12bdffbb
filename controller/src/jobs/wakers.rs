//! Per-group wake-ups: a [`Notify`] and a generation per worker group.
//! Pollers (`dispatch::long_poll`) read them; only the jobs service wakes
//! ([`Wakers::wake`] is private to it), after its commit.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

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
    pub(super) fn wake(&self, group: &str) {
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
