//! Which controller a call goes to, when several are configured.
//!
//! The agent keeps one list of controller base URLs (`controller_urls`, or the
//! one `controller_url`). A call starts at the preferred URL — the last one
//! that answered (sticky) — and moves on to the next on a failure that proves
//! nothing about the call's outcome being final (connection refused or reset,
//! TLS error, timeout, 5xx, 408). The first move to another URL is at once (a
//! held poll on a replica that died is retried on another without delay);
//! further moves in the same call wait a short backoff with jitter. Any HTTP
//! answer (2xx or 4xx) makes its URL the preferred one; the change is logged
//! at INFO once (`Switched controller`).
//!
//! The route also measures a failover: from the first failure of the URL that
//! was answering to the next answer — of another URL, or of the same one
//! (one URL in front of a load balancer: the answer comes from another
//! replica behind it, or from the same one restarted). The measurement waits in
//! [`Route::pending_failover`] until a poll or heartbeat that carried it is
//! answered (the controller records it for a `controller-crash` drill).

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tracing::info;

/// The first wait between URLs after the immediate first move.
pub const FAILOVER_MIN: Duration = Duration::from_millis(100);
/// The cap of the waits between URLs in one call.
pub const FAILOVER_CAP: Duration = Duration::from_secs(2);

/// The controller URLs of one transport and its clones, and what was learnt about them.
#[derive(Debug)]
pub struct Route {
    bases: Vec<String>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Index of the URL tried first.
    preferred: usize,
    /// The first failure of the preferred URL since it last answered.
    lost_at: Option<Instant>,
    /// A failover measured and not yet reported: `(sequence, milliseconds)`.
    pending: Option<(u64, u64)>,
    /// Failovers measured so far.
    failovers: u64,
}

impl Route {
    /// A route over `bases` (checked, at least one).
    pub fn new(bases: Vec<String>) -> Route {
        Route {
            bases,
            state: Mutex::default(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// All URLs, in configured order.
    pub fn bases(&self) -> &[String] {
        &self.bases
    }

    /// The URL tried first now.
    pub fn preferred(&self) -> &str {
        &self.bases[self.state().preferred % self.bases.len()]
    }

    /// The URL indexes one call tries, in order: the preferred one first.
    pub fn order(&self) -> impl Iterator<Item = usize> + use<> {
        let n = self.bases.len();
        let start = self.state().preferred % n;
        (0..n).map(move |i| (start + i) % n)
    }

    /// The base URL at `idx`.
    pub fn base(&self, idx: usize) -> &str {
        &self.bases[idx]
    }

    /// A call to `idx` failed in a way that tries the next URL.
    pub fn failed(&self, idx: usize) {
        let mut s = self.state();
        if idx == s.preferred && s.lost_at.is_none() {
            s.lost_at = Some(Instant::now());
        }
    }

    /// `idx` answered: it becomes the preferred URL, and a failure of the
    /// preferred one before is measured as a failover. A change of URL is
    /// logged once (concurrent calls that land on the same URL log it once
    /// between them).
    pub fn answered(&self, idx: usize) {
        let mut s = self.state();
        let failover_ms = s
            .lost_at
            .take()
            .map(|t| u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX));
        if let Some(ms) = failover_ms {
            s.failovers += 1;
            s.pending = Some((s.failovers, ms));
        }
        if s.preferred == idx {
            return;
        }
        let from = s.preferred;
        s.preferred = idx;
        drop(s);
        info!(
            from = %self.bases[from],
            to = %self.bases[idx],
            failover_ms,
            "Switched controller"
        );
    }

    /// The failover measured and not yet reported: `(sequence, ms)`.
    pub fn pending_failover(&self) -> Option<(u64, u64)> {
        self.state().pending
    }

    /// The controller received the failover with sequence `seq`: stop sending it.
    pub fn reported(&self, seq: u64) {
        let mut s = self.state();
        if s.pending.is_some_and(|(n, _)| n == seq) {
            s.pending = None;
        }
    }

    /// How many failovers were measured.
    pub fn failovers(&self) -> u64 {
        self.state().failovers
    }
}

#[cfg(all(test, unix))]
mod tests;
