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

use baton_proto::{CompleteRequest, FencingToken, Grant, JobId, LeaseRef, ReleaseRequest};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, debug, info, warn};

use crate::delivery::{Deliverer, Delivery};
use crate::executor::{Cancel, CancelReason, Executors, Job, ProgressHandle};
use crate::fault::CrashHold;
use crate::lease::record::{LeaseRecords, Recording};
use crate::lease::{Keeper, Lease, LeaseState, Phase};
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
#[derive(Debug, Clone)]
struct Control {
    /// Stops the work (with a reason).
    cancel: Cancel,
    /// Stops retrying delivery (the completion stays in the outbox).
    abandon: CancellationToken,
    /// The job's phase: only working jobs take a cancel notice.
    state: Arc<LeaseState>,
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
    /// pending deliveries stop retrying (their completions stay in the outbox).
    pub fn stop_all(&self) {
        for control in self.map().values() {
            control.cancel.cancel(CancelReason::Shutdown);
            control.abandon.cancel();
        }
    }

    /// The leases whose work runs and was not asked to stop: the ones a
    /// poll names for cancel notices.
    pub fn leases(&self) -> Vec<LeaseRef> {
        let mut out: Vec<LeaseRef> = self
            .map()
            .iter()
            .filter(|(_, c)| c.cancel.reason().is_none() && c.state.phase() == Phase::Working)
            .map(|(&(job_id, token), _)| LeaseRef { job_id, token })
            .collect();
        out.sort_by_key(|l| l.job_id);
        out
    }

    /// A poll's cancel notice: stop that job's work (it completes
    /// `cancelled`), exactly as a heartbeat's `cancel_requested` does —
    /// only the lease it names (job and token), only while it works.
    pub fn cancel_notice(&self, l: LeaseRef) {
        let control = self.map().get(&(l.job_id, l.token)).cloned();
        match control {
            Some(c) if c.cancel.reason().is_none() && c.state.phase() == Phase::Working => {
                info!(
                    job_id = l.job_id,
                    token = l.token,
                    "Cancel requested, stopping job"
                );
                c.cancel.cancel(CancelReason::Cancelled);
            }
            _ => debug!(
                job_id = l.job_id,
                token = l.token,
                "Cancel notice for a lease no longer working; ignored"
            ),
        }
    }

    fn enter(&self, key: (JobId, FencingToken), state: Arc<LeaseState>) -> (Control, Entered) {
        let control = Control {
            cancel: Cancel::default(),
            abandon: CancellationToken::new(),
            state,
        };
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
/// ends; `record` its lease record, being written (see
/// [`LeaseRecords::start_many`]). Everything the run logs (its lease
/// keeper, executor and the delivery of its completion included) is inside
/// the job's span ([`crate::logging::job_span`]).
///
/// The lease is checked and the job entered in the registry before this
/// returns (so the next poll names it, `Registry::leases`); the rest runs
/// in the returned future.
pub fn run(
    shared: Arc<Shared>,
    grant: Grant,
    poll_sent_at: Instant,
    permit: OwnedSemaphorePermit,
    record: Recording,
) -> impl Future<Output = ()> + Send + 'static {
    let span = crate::logging::job_span(&grant);
    let prepared = span.in_scope(|| prepare(&shared, &grant, poll_sent_at, record));
    async move {
        match prepared {
            Ok(p) => run_in_span(shared, grant, p, permit).await,
            Err(record) => record.forget().await,
        }
    }
    .instrument(span)
}

/// A job entered in the registry, its lease not yet run out.
struct Prepared {
    lease: Lease,
    state: Arc<LeaseState>,
    control: Control,
    _entered: Entered,
    record: Recording,
    /// When the grant arrived (the start of the attempt's granted span).
    received: Instant,
}

/// Check the lease and enter the job in the registry (`Err`: the lease ran
/// out before the job started; its record is handed back to be removed).
fn prepare(
    shared: &Shared,
    grant: &Grant,
    poll_sent_at: Instant,
    record: Recording,
) -> Result<Prepared, Recording> {
    info!("Lease granted");
    let received = Instant::now();
    let lease = Lease::from_grant(grant, poll_sent_at);
    if lease.expired() {
        warn!(
            reason = "the lease ran out before the job started",
            "Lease lost, stopping job"
        );
        return Err(record);
    }
    let state = Arc::new(LeaseState::new(lease.deadline()));
    let (control, entered) = shared
        .registry
        .enter((grant.job_id, grant.token), state.clone());
    Ok(Prepared {
        lease,
        state,
        control,
        _entered: entered,
        record,
        received,
    })
}

async fn run_in_span(
    shared: Arc<Shared>,
    grant: Grant,
    prepared: Prepared,
    permit: OwnedSemaphorePermit,
) {
    let (job_id, token) = (grant.job_id, grant.token);
    let Prepared {
        lease,
        state,
        control,
        _entered,
        record,
        received,
    } = prepared;
    let progress = ProgressHandle::new(shared.log_tail_bytes);
    let (keeper_stop, crash) = spawn_keeper(&shared, lease, &progress, &control, &state);
    let _stop_keeper = StopOnDrop(keeper_stop.clone());

    let started = Instant::now();
    progress.mark_started(
        u64::try_from(started.saturating_duration_since(received).as_millis()).unwrap_or(u64::MAX),
    );
    let started_after_ms = progress.started_after_ms();
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
    let done = (job_id, token, started_after_ms);
    if report(&shared, done, outcome, &control).await == Delivery::Kept {
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
    (job_id, token, started_after_ms): (JobId, FencingToken, Option<u64>),
    outcome: crate::executor::Outcome,
    control: &Control,
) -> Delivery {
    let mut request = CompleteRequest {
        started_after_ms,
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
