//! The poll loop: ask for work while a slot is free, start a task per grant.
//!
//! Every poll names the leases whose work runs (`PollRequest::leases`), and
//! the controller answers at once with a cancel notice when an operator
//! cancels one of them. While every slot is busy the loop keeps one poll with
//! no free slot held for those notices only, so a cancel reaches the job
//! within a round trip at any lease TTL; the agent still has one request held
//! at a time, idle or busy.

use std::sync::Arc;
use std::time::Duration;

use baton_proto::{Capabilities, LeaseRef, PollRequest};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, debug, error, info, warn};

use crate::runner::{self, Shared};
use crate::transport::Error;

const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_CAP: Duration = Duration::from_secs(10);
/// Longest `Retry-After` honoured in one wait.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);
/// Longest wait, before a poll, for the completions being written to the
/// outbox (their fdatasync), so they ride it.
const RIDE_WAIT: Duration = Duration::from_millis(20);
/// While refused, the ERROR line is repeated every this many polls (every ~5 min).
const REFUSED_REPEAT: u32 = 30;

/// What the poll loop asks for.
#[derive(Debug, Clone)]
pub struct PollSettings {
    /// Worker groups.
    pub groups: Vec<String>,
    /// Long-poll hold.
    pub wait: Duration,
    /// What the agent runs.
    pub capabilities: Capabilities,
}

/// Poll until `shutdown` fires (an in-flight poll is dropped then), spawning
/// one task per grant into `jobs`. `slots` holds one permit per free slot.
pub async fn run(
    shared: &Arc<Shared>,
    settings: &PollSettings,
    slots: &Arc<Semaphore>,
    jobs: &mut JoinSet<()>,
    shutdown: &CancellationToken,
) {
    let mut state = LoopState::new();
    loop {
        reap(jobs);
        // Poll for work while a slot is free; while none is, hold a poll
        // for the running jobs' cancel notices.
        let first = tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return,
            },
            () = notices(shared, settings, &mut state) => continue,
        };
        if let Some(until) = shared.transport.gate().crashed_until() {
            drop(first);
            crashed(until, shutdown).await;
            continue;
        }
        // Finished jobs' completions ride this poll (`delivery::ride`).
        let riders = tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            r = shared.delivery.riders(RIDE_WAIT) => r,
        };
        let mut req = request(
            settings,
            1 + slots.available_permits(),
            shared.registry.leases(),
        );
        req.completions = riders.items();
        let sent_at = Instant::now();
        let answer = tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            r = shared.transport.poll(&req, settings.wait) => r,
        };
        let pause = match answer {
            Err(e) if !riders.is_empty() && refuses_riders(&e) => {
                // A controller older than completions in a poll: they go
                // on their own, and the poll is sent again at once.
                shared.delivery.refused_riders(riders);
                drop(first);
                continue;
            }
            Ok(mut resp) => {
                shared
                    .delivery
                    .ridden(riders, Some(std::mem::take(&mut resp.completed)));
                state.answered(resp.drain, resp.grants.len(), jobs.len());
                cancel_notices(shared, &resp.cancels);
                let pause = resp.retry_after_ms.map(Duration::from_millis);
                start_grants(shared, resp.grants, first, sent_at, slots, jobs);
                pause
            }
            Err(_) if shared.transport.gate().crashed_until().is_some() => {
                // A drill's crash dropped the held poll: not a failure.
                drop(first);
                None
            }
            Err(e) => {
                drop(first);
                Some(state.failed(&e))
            }
        };
        if let Some(pause) = pause {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }
}

/// Every slot is busy: hold one poll with no free slot, naming the running
/// leases, until it is answered (with cancel notices, or empty when the
/// hold ends); after a failure, wait out the backoff. Never returns when
/// no lease runs (nothing to be told about). Dropped when a slot frees.
async fn notices(shared: &Arc<Shared>, settings: &PollSettings, state: &mut LoopState) {
    if let Some(until) = shared.transport.gate().crashed_until() {
        tokio::time::sleep_until(until).await;
        return;
    }
    let leases = shared.registry.leases();
    if leases.is_empty() {
        return std::future::pending().await;
    }
    let req = request(settings, 0, leases);
    match shared.transport.poll(&req, settings.wait).await {
        Ok(resp) => {
            state.answered(resp.drain, 0, shared.registry.len());
            cancel_notices(shared, &resp.cancels);
            let pause = resp
                .retry_after_ms
                .map_or(Duration::ZERO, Duration::from_millis);
            tokio::time::sleep(pause).await;
        }
        Err(_) if shared.transport.gate().crashed_until().is_some() => {}
        Err(e) => {
            let pause = state.failed(&e);
            tokio::time::sleep(pause).await;
        }
    }
}

/// Whether a poll was refused for the completions it carried: a
/// controller that does not know the field.
fn refuses_riders(e: &Error) -> bool {
    matches!(e, Error::Rejected { status: 400 | 422, body, .. } if body.contains("completions"))
}

/// Act on a poll's cancel notices (see [`crate::runner::Registry::cancel_notice`]).
fn cancel_notices(shared: &Shared, cancels: &[LeaseRef]) {
    for &c in cancels {
        shared.registry.cancel_notice(c);
    }
}

/// A drill's simulated crash: take no work until `until` (a crashed
/// process does not poll), unless the agent shuts down first.
async fn crashed(until: Instant, shutdown: &CancellationToken) {
    let ms = until.saturating_duration_since(Instant::now()).as_millis();
    info!(
        for_ms = u64::try_from(ms).unwrap_or(u64::MAX),
        "Drill crash: taking no work until the fault ends"
    );
    tokio::select! {
        () = shutdown.cancelled() => {}
        () = tokio::time::sleep_until(until) => {}
    }
    info!("Drill crash over: taking work again");
}

/// The poll body: groups, `free` slots, what the agent runs, the hold, the
/// running leases.
fn request(settings: &PollSettings, free: usize, leases: Vec<LeaseRef>) -> PollRequest {
    PollRequest {
        groups: settings.groups.clone(),
        free_slots: u32::try_from(free).unwrap_or(u32::MAX),
        capabilities: settings.capabilities.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        os: std::env::consts::OS.to_owned(),
        metrics: None,
        wait_ms: Some(u64::try_from(settings.wait.as_millis()).unwrap_or(u64::MAX)),
        leases,
        failover_ms: None,
        completions: Vec::new(),
    }
}

/// One task per grant, each holding a slot (`first`: the slot the poll was
/// sent for); a grant beyond the free slots is released at once.
fn start_grants(
    shared: &Arc<Shared>,
    grants: Vec<baton_proto::Grant>,
    first: tokio::sync::OwnedSemaphorePermit,
    sent_at: Instant,
    slots: &Arc<Semaphore>,
    jobs: &mut JoinSet<()>,
) {
    let mut first = Some(first);
    let mut taken = Vec::with_capacity(grants.len());
    let mut over = Vec::new();
    for grant in grants {
        match first
            .take()
            .or_else(|| slots.clone().try_acquire_owned().ok())
        {
            Some(permit) => taken.push((grant, permit)),
            None => over.push(grant),
        }
    }
    // One poll's leases are recorded together (one append, one sync).
    let keys: Vec<_> = taken.iter().map(|(g, _)| (g.job_id, g.token)).collect();
    let records = if keys.is_empty() {
        Vec::new()
    } else {
        shared.leases.start_many(&keys)
    };
    for ((grant, permit), record) in taken.into_iter().zip(records) {
        jobs.spawn(runner::run(shared.clone(), grant, sent_at, permit, record));
    }
    for grant in over {
        let span = crate::logging::job_span(&grant);
        span.in_scope(|| warn!("Granted more jobs than free slots; releasing"));
        let transport = shared.transport.clone();
        let (job_id, token) = (grant.job_id, grant.token);
        jobs.spawn(
            async move {
                runner::release(&transport, job_id, token, "no free slot").await;
            }
            .instrument(span),
        );
    }
}

/// What the loop remembers between polls: backoff, failing, refusals, drain.
struct LoopState {
    delays: crate::backoff::ExponentialBackoff,
    failing: bool,
    refused: u32,
    drained: bool,
}

impl LoopState {
    fn new() -> Self {
        LoopState {
            delays: crate::backoff::delays(BACKOFF_MIN, BACKOFF_CAP),
            failing: false,
            refused: 0,
            drained: false,
        }
    }

    /// A poll was answered (`drain`: the operator's drain flag).
    fn answered(&mut self, drain: bool, grants: usize, running: usize) {
        if self.failing {
            info!("Controller reachable again");
            self.failing = false;
        }
        self.refused = 0;
        self.delays = crate::backoff::delays(BACKOFF_MIN, BACKOFF_CAP);
        debug!(grants, "Poll answered");
        if drain != self.drained {
            self.drained = drain;
            if drain {
                info!(
                    running,
                    "Drained by an operator: taking no new work; running jobs go on"
                );
            } else {
                info!("Drain lifted: taking new work again");
            }
        }
    }

    /// A poll failed: how long to wait before the next one.
    fn failed(&mut self, e: &Error) -> Duration {
        let was_failing = std::mem::replace(&mut self.failing, true);
        match e {
            // Refusals: an operator must act. Stay alive, but do not spin.
            Error::Unauthorized(_) | Error::Forbidden(_) | Error::Rejected { .. } => {
                if self.refused.is_multiple_of(REFUSED_REPEAT) {
                    if e.is_auth() {
                        error!(error = %e, "Agent credentials refused; revoked or unknown — re-enroll");
                    } else {
                        error!(error = %e, "Controller refused the poll; check the agent config");
                    }
                }
                self.refused = self.refused.wrapping_add(1);
                BACKOFF_CAP
            }
            Error::RateLimited { retry_after, .. } => {
                let pause = retry_after
                    .unwrap_or_else(|| self.delays.next().unwrap_or(BACKOFF_CAP))
                    .min(MAX_RETRY_AFTER);
                warn!(
                    retry_after_ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX),
                    "Poll rate limited by the controller; waiting"
                );
                pause
            }
            e => {
                if !was_failing {
                    warn!(error = %e, "Poll failed; retrying with backoff");
                } else {
                    debug!(error = %e, "Poll failed again");
                }
                self.delays.next().unwrap_or(BACKOFF_CAP)
            }
        }
    }
}

/// Collect finished job tasks; a panic in one is a bug worth an ERROR line.
pub fn reap(jobs: &mut JoinSet<()>) {
    while let Some(done) = jobs.try_join_next() {
        if let Err(e) = done
            && e.is_panic()
        {
            error!(error = %e, "A job task panicked");
        }
    }
}

#[cfg(all(test, unix))]
mod tests;
