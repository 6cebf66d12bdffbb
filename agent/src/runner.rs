//! One job from grant to delivered completion.
//!
//! The job task starts the lease keeper, runs the executor, then (unless the
//! lease was lost) hands the completion to the agent's delivery task, which
//! writes it to the outbox and delivers it (batched with others), while the
//! keeper goes on renewing. On agent shutdown a job still running is
//! stopped and released instead of completed. A job a drill "crashed" keeps
//! its slot for the fault's duration, as if the process were restarting.
//!
//! The lease is recorded under the state dir ([`LeaseRecords`]) as the
//! work starts (the fsync runs beside it), and the record removed when the lease ends for this run
//! (completion delivered or dropped, release answered, lease lost). A
//! completion kept in the outbox at shutdown keeps its record too: the next
//! start leaves out the records whose completion is in the outbox and
//! reports the rest as abandoned (`agent::predecessor`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use baton_proto::{CompleteRequest, FencingToken, Grant, JobId, ReleaseRequest};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, info, warn};

use crate::delivery::{Deliverer, Delivery};
use crate::executor::{Cancel, CancelReason, Executors, Job, ProgressHandle};
use crate::fault::CrashHold;
use crate::lease::record::LeaseRecords;
use crate::lease::{Keeper, Lease, LeaseState};
use crate::outbox::{Entry, Outbox};
use crate::transport::{self, MAX_CALL_TIMEOUT, Transport};

/// What every job task needs.
#[derive(Debug)]
pub struct Shared {
    /// Controller client.
    pub transport: Arc<Transport>,
    /// Durable completions.
    pub outbox: Outbox,
    /// The agent's delivery task (writes to the outbox, sends in batches).
    pub delivery: Deliverer,
    /// Job runners by kind.
    pub executors: Executors,
    /// Jobs in flight, for shutdown.
    pub registry: Registry,
    /// Bytes of log tail sent with heartbeats.
    pub log_tail_bytes: usize,
    /// The leases held, remembered under the state dir.
    pub leases: LeaseRecords,
}

/// Handles to stop one job task.
#[derive(Debug, Clone, Default)]
struct Control {
    /// Stops the work (with a reason).
    cancel: Cancel,
    /// Stops retrying delivery (the completion stays in the outbox).
    abandon: CancellationToken,
}

/// The job tasks in flight.
#[derive(Debug, Clone, Default)]
pub struct Registry(Arc<Mutex<HashMap<(JobId, FencingToken), Control>>>);

impl Registry {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<(JobId, FencingToken), Control>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many job tasks are in flight.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stop every job for shutdown: running work is stopped and released,
    /// pending deliveries stop retrying (their files stay in the outbox).
    pub fn stop_all(&self) {
        for control in self.map().values() {
            control.cancel.cancel(CancelReason::Shutdown);
            control.abandon.cancel();
        }
    }

    fn enter(&self, key: (JobId, FencingToken)) -> (Control, Entered) {
        let control = Control::default();
        self.map().insert(key, control.clone());
        let entered = Entered {
            registry: self.clone(),
            key,
        };
        (control, entered)
    }
}

/// Removes a job from the registry when its task ends (or is aborted).
struct Entered {
    registry: Registry,
    key: (JobId, FencingToken),
}

impl Drop for Entered {
    fn drop(&mut self) {
        self.registry.map().remove(&self.key);
    }
}

/// Stops the keeper when the job task ends (or is aborted).
struct StopOnDrop(CancellationToken);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Run one granted job to its end. `permit` is its slot, freed when the work
/// ends. Everything the run logs (its lease keeper, executor and the delivery
/// of its completion included) is inside the job's span
/// ([`crate::logging::job_span`]).
pub async fn run(
    shared: Arc<Shared>,
    grant: Grant,
    poll_sent_at: Instant,
    permit: OwnedSemaphorePermit,
) {
    let span = crate::logging::job_span(&grant);
    run_in_span(shared, grant, poll_sent_at, permit)
        .instrument(span)
        .await;
}

async fn run_in_span(
    shared: Arc<Shared>,
    grant: Grant,
    poll_sent_at: Instant,
    permit: OwnedSemaphorePermit,
) {
    let (job_id, token) = (grant.job_id, grant.token);
    info!("Lease granted");
    let lease = Lease::from_grant(&grant, poll_sent_at);
    if lease.expired() {
        warn!(
            reason = "the lease ran out before the job started",
            "Lease lost, stopping job"
        );
        return;
    }
    let record = shared.leases.start(job_id, token);
    let (control, _entered) = shared.registry.enter((job_id, token));
    let progress = ProgressHandle::new(shared.log_tail_bytes);
    let state = Arc::new(LeaseState::new(lease.deadline()));
    let (keeper_stop, crash) = spawn_keeper(&shared, lease, &progress, &control, &state);
    let _stop_keeper = StopOnDrop(keeper_stop.clone());

    let started = Instant::now();
    let job = Job {
        job_id,
        token,
        attempt: grant.attempt,
        retry_codes: grant.retry_codes,
        spec: grant.spec,
        timeout: grant.timeout_ms.map(Duration::from_millis),
        cancel: control.cancel.clone(),
        progress,
    };
    let outcome = shared.executors.execute(job).await;
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    if let Some(until) = crash.until() {
        info!("Crashed job's slot stays taken until the simulated restart");
        tokio::select! {
            () = tokio::time::sleep_until(until) => {}
            () = control.abandon.cancelled() => {}
        }
    }
    drop(permit);

    if !state.finish() {
        if control.cancel.reason() == Some(CancelReason::LeaseLost) {
            info!(duration_ms, "Fenced job stopped; its result is discarded");
        } else {
            warn!(
                duration_ms,
                reason = "the job ended after the lease deadline",
                "Lease lost, stopping job"
            );
        }
        record.forget().await;
        return;
    }
    if control.cancel.reason() == Some(CancelReason::Shutdown)
        && outcome.completion == baton_proto::Completion::Cancelled
    {
        keeper_stop.cancel();
        if release(&shared.transport, job_id, token, "shutdown").await {
            record.forget().await;
        } else {
            record.keep().await;
        }
        return;
    }
    info!(outcome = outcome.label(), duration_ms, "Job finished");
    if report(&shared, job_id, token, outcome, &control).await == Delivery::Kept {
        record.keep().await;
    } else {
        record.forget().await;
    }
}

/// Start the job's lease keeper in the job's span; its stop token and the
/// crash hold a drill's fault may set.
fn spawn_keeper(
    shared: &Shared,
    lease: Lease,
    progress: &ProgressHandle,
    control: &Control,
    state: &Arc<LeaseState>,
) -> (CancellationToken, CrashHold) {
    let keeper_stop = CancellationToken::new();
    let crash = CrashHold::default();
    let keeper = Keeper::new(
        shared.transport.clone(),
        lease,
        progress.clone(),
        control.cancel.clone(),
        state.clone(),
    )
    .with_crash_hold(crash.clone());
    tokio::spawn(keeper.run(keeper_stop.clone()).in_current_span());
    (keeper_stop, crash)
}

/// Hand the finished job's completion to the delivery task (outbox first).
async fn report(
    shared: &Shared,
    job_id: JobId,
    token: FencingToken,
    outcome: crate::executor::Outcome,
    control: &Control,
) -> Delivery {
    let mut request = CompleteRequest {
        token,
        completion: outcome.completion,
        result: outcome.result,
        error: outcome.error,
    };
    crate::delivery::fit::bound_data_depth(&mut request);
    let entry = Entry { job_id, request };
    let verdict = shared
        .delivery
        .deliver(&shared.transport, &shared.outbox, entry, &control.abandon)
        .await;
    if verdict == Delivery::Kept {
        info!("Completion left in the outbox for the next start");
    }
    verdict
}

/// Hand a job back without spending an attempt (logged in the caller's job
/// span). True when the controller answered for good (released, or the
/// lease was already lost); false when it could not be reached.
pub async fn release(
    transport: &Transport,
    job_id: JobId,
    token: FencingToken,
    reason: &str,
) -> bool {
    let req = ReleaseRequest {
        token,
        reason: reason.to_owned(),
    };
    match transport.release(job_id, &req, MAX_CALL_TIMEOUT).await {
        Ok(resp) => {
            info!(reason, state = %resp.state, "Job released");
            true
        }
        Err(transport::Error::LeaseLost(msg) | transport::Error::Forbidden(msg)) => {
            warn!(reason = %msg, "Release refused: lease already lost");
            true
        }
        Err(e) => {
            warn!(error = %e, "Release failed; the lease will run out instead");
            false
        }
    }
}
