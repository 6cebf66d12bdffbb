//! Completions riding the next poll.
//!
//! When the poll loop is about to ask for work with a free slot, the
//! completions already written to the outbox and not yet sent go in that
//! poll (`PollRequest::completions`) instead of a batch of their own; the
//! poll's answer carries their results (`PollResponse::completed`), which
//! the delivery task applies exactly as a batch answer. The controller
//! records them at once and holds the poll like any other, until work
//! comes for it or the hold ends: a job's completion and the next grant
//! are one round trip, one request per job for the agent and the
//! controller. One carrying a refused completion is answered at once (the
//! delivery task must cut it down or retry it before its lease runs out).
//! An idle agent's last completion is therefore answered (its `done`
//! record, its "Completion delivered" line) when that hold ends.
//!
//! A completion goes one way or the other, never both. The delivery task
//! offers what it wrote only while a poll waits for company
//! ([`Rides::arrived`]); everything else it sends itself, as before. The poll
//! loop waits for the completions handed over but not yet written (a short,
//! bounded wait: the outbox's fdatasync), takes what is ready, and hands
//! back, through the delivery task's channel, what it could not carry or
//! what a failed poll carried ([`Riders`] does so when dropped). A
//! controller that refuses completions in a poll (one older than this
//! field) ends riding for the run: completions then go on their own.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use baton_proto::lease::{BatchCompleteItem, BatchCompleteResult};
use tokio::sync::{Notify, mpsc};
use tracing::info;

use super::queue::{Msg, Pending, take_chunk};

/// A completion with more text than this (output, error, `data`) goes on
/// its own: a poll stays small, and the completion route cuts down one the
/// controller finds too large (`delivery::fit`).
const RIDE_MAX_BYTES: usize = 64 << 10;

/// What the poll loop and the delivery task share.
#[derive(Debug, Default)]
pub(super) struct Rides {
    state: Mutex<State>,
    /// Fired when `handed` drops or `ready` grows.
    changed: Notify,
}

#[derive(Debug, Default)]
struct State {
    /// Completions handed to the delivery task and not yet written.
    handed: usize,
    /// Written, waiting for the poll that waits for them.
    ready: Vec<Pending>,
    /// A poll waits for company.
    waiting: bool,
    /// The controller refused completions in a poll: no more riding.
    off: bool,
}

impl Rides {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A finished job's completion was handed to the delivery task.
    pub(super) fn handed_off(&self) {
        self.lock().handed += 1;
    }

    /// The delivery task wrote `written` (`counted` of them were handed
    /// off by [`Self::handed_off`]). While a poll waits for company
    /// (`offer`), they are kept for it and none is returned; otherwise
    /// they are returned, for the delivery task to send.
    pub(super) fn arrived(
        &self,
        written: Vec<Pending>,
        counted: usize,
        offer: bool,
    ) -> Vec<Pending> {
        let mut st = self.lock();
        st.handed = st.handed.saturating_sub(counted);
        let back = if offer && st.waiting && !st.off {
            st.ready.extend(written);
            Vec::new()
        } else {
            written
        };
        drop(st);
        self.changed.notify_waiters();
        back
    }

    /// Riding ends for this run.
    fn stop(&self) -> Vec<Pending> {
        let mut st = self.lock();
        st.off = true;
        st.waiting = false;
        std::mem::take(&mut st.ready)
    }

    /// Wait (at most `wait`) for the completions handed off but not yet
    /// written, then take the ready ones, up to one request's worth and
    /// none over [`RIDE_MAX_BYTES`]; the rest go back to the delivery task.
    pub(super) async fn take(&self, wait: Duration, tx: &mpsc::UnboundedSender<Msg>) -> Riders {
        let deadline = tokio::time::Instant::now() + wait;
        let mut guard = Waiting {
            rides: self,
            tx,
            armed: true,
        };
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = self.lock();
                if st.off {
                    break;
                }
                if st.handed == 0 || tokio::time::Instant::now() >= deadline {
                    st.waiting = false;
                    let (mut ready, mut rest): (Vec<_>, Vec<_>) = std::mem::take(&mut st.ready)
                        .into_iter()
                        .partition(|p| p.text_bytes() <= RIDE_MAX_BYTES);
                    drop(st);
                    let riders = take_chunk(&mut ready);
                    rest.append(&mut ready);
                    let ready = rest;
                    if !ready.is_empty() {
                        let _ = tx.send(Msg::Ridden(ready, None));
                    }
                    guard.armed = false;
                    return Riders::new(riders, tx.clone());
                }
                st.waiting = true;
            }
            let _ = tokio::time::timeout_at(deadline, notified).await;
        }
        guard.armed = false;
        Riders::new(Vec::new(), tx.clone())
    }

    /// A poll carrying completions was refused: ride no more.
    pub(super) fn refused(&self, tx: &mpsc::UnboundedSender<Msg>) {
        let was_on = !self.lock().off;
        let ready = self.stop();
        if was_on {
            info!("The controller takes no completions in a poll; sending them on their own");
        }
        if !ready.is_empty() {
            let _ = tx.send(Msg::Ridden(ready, None));
        }
    }
}

/// While a poll waits for company: if that wait is dropped (shutdown), no
/// poll waits any more, and what was kept for it goes back.
struct Waiting<'a> {
    rides: &'a Rides,
    tx: &'a mpsc::UnboundedSender<Msg>,
    armed: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let ready = {
            let mut st = self.rides.lock();
            st.waiting = false;
            std::mem::take(&mut st.ready)
        };
        if !ready.is_empty() {
            let _ = self.tx.send(Msg::Ridden(ready, None));
        }
    }
}

/// The completions one poll carries. Dropped without an answer
/// ([`super::Deliverer::ridden`]), they go back to the delivery task, to
/// be sent on their own.
#[derive(Debug)]
pub struct Riders {
    pending: Vec<Pending>,
    tx: mpsc::UnboundedSender<Msg>,
}

impl Riders {
    fn new(pending: Vec<Pending>, tx: mpsc::UnboundedSender<Msg>) -> Self {
        Riders { pending, tx }
    }

    /// None to carry.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The poll's `completions`.
    pub fn items(&self) -> Vec<BatchCompleteItem> {
        self.pending
            .iter()
            .map(|p| BatchCompleteItem::new(p.entry.job_id, p.entry.request.clone()))
            .collect()
    }

    /// Hand them to the delivery task with the poll's results (`None`:
    /// the poll failed; they are sent on their own).
    pub(super) fn answer(mut self, results: Option<Vec<BatchCompleteResult>>) {
        let pending = std::mem::take(&mut self.pending);
        if !pending.is_empty() {
            let _ = self.tx.send(Msg::Ridden(pending, results));
        }
    }
}

impl Drop for Riders {
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            let _ = self
                .tx
                .send(Msg::Ridden(std::mem::take(&mut self.pending), None));
        }
    }
}

#[cfg(test)]
mod tests;
