//! Failover-drill faults, simulated on the agent when the controller asks.
//!
//! The controller hands the lease holder a [`Fault`](baton_proto::drill::Fault)
//! in a heartbeat answer. The lease keeper acknowledges it
//! (`POST /v1/jobs/{id}/fault-ack`, the last call before the fault begins)
//! and then:
//! - `crash`: fences the job as if the process had been killed — the work is
//!   stopped, renewals stop, nothing is ever reported — and its slot stays
//!   taken for the fault's duration ([`CrashHold`], the simulated restart
//!   time), and the agent takes no work at all for that duration: the gate
//!   holds its polls and drops the one in flight, as a crashed process would
//!   not poll. Its other running jobs go on (heartbeats and completions
//!   pass), so a drill never kills unrelated work;
//! - `freeze`: engages the transport's [`Gate`]: every controller call
//!   (poll, heartbeat, completion, release) waits until the freeze ends (or
//!   its own timeout runs out first) and calls in flight are dropped;
//! - `partition`: engages the [`Gate`] so every controller call fails at once
//!   as if the network were cut; database connections are untouched.
//!
//! Under freeze and partition the lease keeper self-fences on its monotonic
//! clock, as for any lost renewal: the job is stopped before the controller
//! can re-grant it, and its result is never reported.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use baton_proto::drill::DrillMethod;
use tokio::sync::watch;
use tokio::time::Instant;

/// A controller-traffic outage in force until an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outage {
    /// `Freeze` or `Partition` (every call), or `Crash` (polls only).
    pub method: DrillMethod,
    /// When traffic resumes.
    pub until: Instant,
}

impl Outage {
    /// Whether the outage stops a call of `kind`: a crash stops polls only.
    pub fn stops(&self, kind: CallKind) -> bool {
        self.method != DrillMethod::Crash || kind == CallKind::Poll
    }
}

/// What a controller call is, for the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// A poll for work.
    Poll,
    /// Anything else (heartbeat, completion, release, ack, enrollment).
    Other,
}

/// What the gate decided for one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pass {
    /// Send it.
    Open,
    /// Do not send it: fail with this message.
    Refused(String),
}

/// The switch every controller call goes through (shared by all clones of
/// the transport).
#[derive(Debug)]
pub struct Gate {
    tx: watch::Sender<Option<Outage>>,
}

impl Default for Gate {
    fn default() -> Self {
        Gate {
            tx: watch::Sender::new(None),
        }
    }
}

impl Gate {
    /// Start an outage of `method` for `duration` (a crash stops polls only).
    pub fn engage(&self, method: DrillMethod, duration: Duration) {
        let until = Instant::now() + duration;
        self.tx.send_replace(Some(Outage { method, until }));
    }

    /// The outage in force now, if any.
    pub fn current(&self) -> Option<Outage> {
        let now = Instant::now();
        (*self.tx.borrow()).filter(|o| o.until > now)
    }

    /// When a simulated crash ends, while one is in force: the agent takes
    /// no work until then.
    pub fn crashed_until(&self) -> Option<Instant> {
        self.current()
            .filter(|o| o.method == DrillMethod::Crash)
            .map(|o| o.until)
    }

    /// Before a call of `kind`: wait out a freeze (at most `timeout`), refuse
    /// during a partition, and refuse a poll during a crash; pass otherwise.
    pub async fn before_call(&self, kind: CallKind, timeout: Duration) -> Pass {
        let Some(outage) = self.current().filter(|o| o.stops(kind)) else {
            return Pass::Open;
        };
        match outage.method {
            DrillMethod::Partition => {
                Pass::Refused("cannot reach the controller (drill: partition)".into())
            }
            DrillMethod::Crash => Pass::Refused("taking no work (drill: crash)".into()),
            _ => {
                let give_up = Instant::now() + timeout;
                if outage.until > give_up {
                    tokio::time::sleep_until(give_up).await;
                    Pass::Refused("timed out (drill: freeze)".into())
                } else {
                    tokio::time::sleep_until(outage.until).await;
                    Pass::Open
                }
            }
        }
    }

    /// A receiver whose [`Gate::engaged`] resolves when an outage starts.
    pub fn watch(&self) -> watch::Receiver<Option<Outage>> {
        self.tx.subscribe()
    }

    /// Resolve when an outage that stops calls of `kind` starts after `rx`
    /// was taken (never otherwise).
    pub async fn engaged(rx: &mut watch::Receiver<Option<Outage>>, kind: CallKind) -> Outage {
        loop {
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
            if let Some(o) = *rx.borrow_and_update()
                && o.stops(kind)
            {
                return o;
            }
        }
    }
}

/// How long a crashed job's slot stays taken (shared by the keeper and the job task).
#[derive(Debug, Clone, Default)]
pub struct CrashHold(Arc<Mutex<Option<Instant>>>);

impl CrashHold {
    /// The job crashed: hold its slot for `duration`.
    pub fn crash(&self, duration: Duration) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now() + duration);
    }

    /// Until when the slot stays taken, if the job crashed.
    pub fn until(&self) -> Option<Instant> {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests;
