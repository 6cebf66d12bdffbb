//! Failover drills as a service: plan a drill and its job, start it (the
//! job goes through [`Jobs`], which wakes its group), watch it until its
//! verdict, refresh running drills on reads, and the fault a holder's
//! heartbeat carries. The HTTP side (`api::drills`) parses, calls this, and
//! maps [`Error`] to its answers.
//!
//! A drill creates its own job (label `drill=<id>`): the operator's template
//! (which must be of the drill's group and retry on `lease_expired`) or the
//! built-in probe, a `noop` job sleeping two lease TTLs, retried at once. The
//! first heartbeat of that job is answered with the fault; a watcher task
//! refreshes the drill's timeline every [`WATCH_EVERY`] until the verdict.
//! The watcher lives on the controller that started the drill, which may be
//! the one a `controller_crash` drill kills: so every controller also
//! sweeps the running drills every [`SWEEP_EVERY`] ([`sweep`]), and reads
//! refresh them too. Refreshes racing on several replicas are safe (the
//! store writes a verdict once, on a drill still `running`).

use std::time::Duration;

use baton_proto::drill::{DrillId, DrillMethod, DrillStart, DrillState, DrillView, Fault};
use baton_proto::{FencingToken, JobId, JobSpec, JobSubmit, NoopSpec, RetryOn, RetryPolicy};
use tokio_util::sync::CancellationToken;

use crate::jobs::{self, Jobs};
use crate::store::drills::NewDrill;
use crate::store::jobs::NewJob;
use crate::store::{self, Store, now_ms};

/// How often a running drill's watcher looks at its job.
pub const WATCH_EVERY: Duration = Duration::from_millis(100);
/// How often every controller refreshes the running drills ([`sweep`]).
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Default RTO target.
pub const DEFAULT_RTO_MS: u64 = 60_000;
/// Largest RTO target (one day; it is stored as a signed 64-bit number).
pub const MAX_RTO_MS: u64 = 86_400_000;

/// Errors of the drills service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is not a valid drill; `field` names where.
    #[error("{field}: {message}")]
    Invalid {
        /// The field at fault (`duration_ms`, `job.retry`, …).
        field: String,
        /// Why.
        message: String,
    },
    /// A drill whose fields are each valid but do not fit together (the job
    /// template of another group or not retried after a lease expiry, a
    /// duration within the TTL, `agent` with the wrong method): 422, since
    /// no schema can say so; `field` names where.
    #[error("{field}: {message}")]
    Unfit {
        /// The field at fault.
        field: String,
        /// Why.
        message: String,
    },
    /// A valid drill this controller's config does not allow (422); `field`
    /// names the request field.
    #[error("{field}: {message}")]
    NotAllowed {
        /// The field at fault (`method`).
        field: String,
        /// Why, naming the setting.
        message: String,
    },
    /// A fault acknowledgement names no drill of that job.
    #[error("{0}")]
    NoSuchDrill(String),
    /// Creating the drill's job failed.
    #[error(transparent)]
    Jobs(#[from] jobs::Error),
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] store::Error),
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> Error {
    Error::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

fn unfit(field: impl Into<String>, message: impl Into<String>) -> Error {
    Error::Unfit {
        field: field.into(),
        message: message.into(),
    }
}

/// What this controller allows drills to do (`[drills]`), and the limits of a drill's job.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Lease TTL of a job that sets none.
    pub default_ttl_ms: u64,
    /// Largest job spec.
    pub max_spec_bytes: usize,
    /// `[drills] allow_controller_crash`.
    pub allow_controller_crash: bool,
}

/// The agent a `controller_crash` drill needs (and no other method takes).
fn drill_agent(req: &DrillStart, allow_controller_crash: bool) -> Result<Option<String>, Error> {
    if req.method != DrillMethod::ControllerCrash {
        if req.agent.is_some() {
            return Err(unfit(
                "agent",
                "only a controller_crash drill names an agent",
            ));
        }
        return Ok(None);
    }
    if !allow_controller_crash {
        return Err(Error::NotAllowed {
            field: "method".into(),
            message: "a controller_crash drill aborts a controller process: this controller \
                      refuses it unless its config sets [drills] allow_controller_crash = true"
                .into(),
        });
    }
    let agent = req.agent.as_deref().ok_or_else(|| {
        unfit(
            "agent",
            "a controller_crash drill needs the agent whose controller replica crashes",
        )
    })?;
    if !baton_proto::valid_name(agent) {
        return Err(invalid(
            "agent",
            "must be 1-128 characters of A-Z a-z 0-9 _ . -",
        ));
    }
    Ok(Some(agent.to_owned()))
}

/// Check a drill request and build its job. Errors name the field.
pub fn plan(req: &DrillStart, limits: Limits, who: &str) -> Result<(NewDrill, NewJob), Error> {
    let Limits {
        default_ttl_ms,
        max_spec_bytes,
        ..
    } = limits;
    crate::validate::groups(std::slice::from_ref(&req.group))
        .map_err(|e| invalid("group", e.message))?;
    let agent = drill_agent(req, limits.allow_controller_crash)?;
    let mut submit = match &req.job {
        Some(t) => template(t, &req.group)?,
        None => probe(&req.group),
    };
    if let Some(ttl) = req.lease_ttl_ms {
        submit.lease_ttl_ms = Some(ttl);
    }
    let ttl =
        crate::validate::submission(&submit, default_ttl_ms, max_spec_bytes).map_err(|e| {
            let field = if e.field == "lease_ttl_ms" && req.lease_ttl_ms.is_some() {
                e.field
            } else {
                format!("job.{}", e.field)
            };
            match e.kind {
                crate::validate::Kind::Malformed => invalid(field, e.message),
                crate::validate::Kind::Unprocessable => unfit(field, e.message),
            }
        })?;
    if let JobSpec::Noop(n) = &mut submit.spec
        && req.job.is_none()
    {
        // The fault comes with the first heartbeat (after TTL/3); the holder
        // self-fences one TTL later. Two TTLs keep the probe working until then.
        n.sleep_ms = 2 * ttl;
    }
    let (duration_ms, rto_ms) = timings(req, ttl)?;
    let canonical = serde_json::to_vec(&submit).unwrap_or_default();
    let drill = NewDrill {
        group: req.group.clone(),
        method: req.method,
        duration_ms,
        lease_ttl_ms: ttl,
        rto_ms,
        created_by: format!("token:{who}"),
        agent,
    };
    let job = NewJob {
        submit,
        lease_ttl_ms: ttl,
        idempotency_key: None,
        request_hash: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&canonical)),
        audit: None,
    };
    Ok((drill, job))
}

/// The operator's job template, if it fits a drill of `group`.
fn template(t: &JobSubmit, group: &str) -> Result<JobSubmit, Error> {
    if t.group != group {
        return Err(unfit(
            "job.group",
            format!(
                "the job template is for group `{}`, the drill for `{group}`",
                t.group
            ),
        ));
    }
    let r = &t.retry;
    if !r.retry_on.contains(&RetryOn::LeaseExpired) || r.max_attempts < 2 {
        return Err(unfit(
            "job.retry",
            "a drill's job must be retried after a lease expiry: retry_on must contain \
             lease_expired and max_attempts be at least 2",
        ));
    }
    Ok(t.clone())
}

/// The built-in probe: a `noop` job retried at once after a lease expiry.
fn probe(group: &str) -> JobSubmit {
    JobSubmit {
        allow_unplaced: false,
        group: group.to_owned(),
        spec: JobSpec::Noop(NoopSpec::default()),
        priority: 0,
        retry: RetryPolicy {
            max_attempts: 3,
            initial_backoff_ms: 0,
            jitter: 0.0,
            retry_on: vec![RetryOn::LeaseExpired],
            ..RetryPolicy::default()
        },
        timeout_ms: None,
        lease_ttl_ms: None,
        labels: Default::default(),
    }
}

/// The fault's duration and the RTO target of a drill whose lease TTL is `ttl`.
fn timings(req: &DrillStart, ttl: u64) -> Result<(u64, u64), Error> {
    let duration_ms = req.duration_ms.unwrap_or(2 * ttl);
    if duration_ms <= ttl {
        return Err(unfit(
            "duration_ms",
            format!(
                "must exceed the lease TTL ({ttl} ms), or the lease never runs out and no takeover happens"
            ),
        ));
    }
    if duration_ms > baton_proto::limits::MAX_LEASE_TTL_MS {
        // Given, the document bounds it (400); derived from the TTL, it is
        // a rule across fields (422).
        return Err(match req.duration_ms {
            Some(_) => invalid("duration_ms", "must be at most 3600000 (1 h)"),
            None => unfit(
                "duration_ms",
                format!(
                    "the default, twice the lease TTL ({ttl} ms), is past 3600000 (1 h): \
                     set duration_ms or a shorter lease_ttl_ms"
                ),
            ),
        });
    }
    let rto_ms = req.rto_ms.unwrap_or(DEFAULT_RTO_MS);
    if rto_ms == 0 || rto_ms > MAX_RTO_MS {
        return Err(invalid(
            "rto_ms",
            format!("must be between 1 and {MAX_RTO_MS} (1 day)"),
        ));
    }
    Ok((duration_ms, rto_ms))
}

/// Plan and start a drill for operator `who`: its job is created (its group
/// woken) and a watcher refreshes it until its verdict or `shutdown`.
pub async fn start(
    jobs: &Jobs,
    shutdown: &CancellationToken,
    req: &DrillStart,
    limits: Limits,
    who: &str,
) -> Result<DrillView, Error> {
    let (drill, job) = plan(req, limits, who)?;
    let view = jobs.create_drill(&drill, job, now_ms()).await?;
    tracing::info!(
        drill_id = view.id,
        job_id = view.job_id,
        group = %view.group,
        method = %view.method,
        duration_ms = view.duration_ms,
        rto_ms = view.rto_ms,
        by = %who,
        "Drill started"
    );
    tokio::spawn(watch(jobs.store().clone(), shutdown.clone(), view.id));
    Ok(view)
}

/// Refresh a running drill until its verdict (or shutdown).
async fn watch(store: Store, shutdown: CancellationToken, id: DrillId) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(WATCH_EVERY) => {}
        }
        match store.refresh_drill(id, now_ms()).await {
            Ok(v) if v.state == DrillState::Running => {}
            Ok(v) => {
                log_verdict(&v);
                return;
            }
            Err(e) => {
                tracing::warn!(drill_id = id, error = %e, "Cannot refresh the drill; retrying");
            }
        }
    }
}

fn log_verdict(v: &DrillView) {
    let r = v.report.as_ref();
    tracing::info!(
        drill_id = v.id,
        state = %v.state,
        takeover_ms = r.and_then(|r| r.takeover_ms),
        detection_ms = r.and_then(|r| r.detection_ms),
        reasons = ?r.map(|r| r.reasons.clone()).unwrap_or_default(),
        "Drill finished"
    );
}

/// Refresh every running drill every [`SWEEP_EVERY`] until `shutdown`, on
/// every controller: a drill gets its verdict (or gives up) even when the
/// controller that started it, and ran its watcher, is gone — killed by the
/// drill itself, say. One read of the running drills' ids per sweep.
pub async fn sweep(store: Store, shutdown: CancellationToken) {
    let mut failing = false;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(SWEEP_EVERY) => {}
        }
        match refresh_running(&store).await {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("Refreshing running drills again");
            }
            Ok(()) => {}
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "Cannot refresh the running drills; retrying every second");
            }
            Err(_) => {}
        }
    }
}

/// Refresh every running drill (their watchers may have died with a restart).
pub async fn refresh_running(store: &Store) -> Result<(), Error> {
    for id in store.running_drills().await? {
        let v = store.refresh_drill(id, now_ms()).await?;
        if v.state != DrillState::Running {
            log_verdict(&v);
        }
    }
    Ok(())
}

/// What a heartbeat's answer carries for a drill of its job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeartbeatFault {
    /// Nothing.
    None,
    /// A fault for the holder to simulate.
    Agent(Fault),
    /// A `controller_crash` drill's fault for this process: `fault_injected`
    /// is recorded; the caller ends the process ([`crash_now`]) without answering.
    CrashController(DrillId),
}

/// The fault for a heartbeat that renewed `job_id`'s lease, if a drill of
/// that job waits for one (`allow_crash`: this controller may abort for a
/// `controller_crash` drill). A store failure is logged and means no fault:
/// a drill must never break a renewal.
pub async fn fault_for_heartbeat(
    store: &Store,
    job_id: JobId,
    agent_id: &str,
    token: FencingToken,
    allow_crash: bool,
) -> HeartbeatFault {
    let fault = match store
        .drill_fault_for(job_id, agent_id, token, now_ms())
        .await
    {
        Ok(Some(f)) => f,
        Ok(None) => return HeartbeatFault::None,
        Err(e) => {
            tracing::error!(job_id, error = %e, "Cannot look up drills for a heartbeat");
            return HeartbeatFault::None;
        }
    };
    tracing::info!(
        drill_id = fault.drill_id,
        job_id,
        token,
        agent_id,
        method = %fault.method,
        duration_ms = fault.duration_ms,
        "Drill fault sent to the lease holder"
    );
    if fault.method != DrillMethod::ControllerCrash {
        return HeartbeatFault::Agent(fault);
    }
    if !allow_crash {
        tracing::warn!(
            drill_id = fault.drill_id,
            "A controller_crash drill reached this controller, which does not allow it \
             ([drills] allow_controller_crash); not crashing"
        );
        return HeartbeatFault::None;
    }
    // Recorded before the crash: the timeline shows when the replica died.
    match fault_ack(store, fault.drill_id, job_id, agent_id, token).await {
        Ok(_) => HeartbeatFault::CrashController(fault.drill_id),
        Err(e) => {
            tracing::warn!(drill_id = fault.drill_id, error = %e, "Cannot record the controller crash; not crashing");
            HeartbeatFault::None
        }
    }
}

/// End this process abruptly, as a crash would (a `controller_crash`
/// drill): no answer, no graceful shutdown, nothing flushed or dropped.
pub fn crash_now(drill_id: DrillId) -> ! {
    tracing::warn!(
        drill_id,
        "Drill: this controller crashes now (controller_crash)"
    );
    std::process::abort()
}

/// An agent reported (on a poll or heartbeat) that another replica answered
/// it `failover_ms` after it lost the one it used: recorded on its running
/// `controller_crash` drills. A store failure is logged, never an error of
/// the agent's call.
pub async fn agent_failover(store: &Store, agent_id: &str, failover_ms: u64) {
    match store
        .drill_agent_failover(agent_id, failover_ms, now_ms())
        .await
    {
        Ok(true) => {
            tracing::info!(
                agent_id,
                failover_ms,
                "Drill: the agent reached another controller"
            );
        }
        Ok(false) => {}
        Err(e) => tracing::warn!(agent_id, error = %e, "Cannot record an agent's failover"),
    }
}

/// The holder of `job_id`'s lease says it simulates drill `drill_id`'s
/// fault from now on; whether that was recorded (a repeat is not).
pub async fn fault_ack(
    store: &Store,
    drill_id: DrillId,
    job_id: JobId,
    agent_id: &str,
    token: FencingToken,
) -> Result<bool, Error> {
    let recorded = store
        .drill_fault_ack(drill_id, job_id, agent_id, token, now_ms())
        .await
        .map_err(|e| match e {
            store::Error::Missing(m) => Error::NoSuchDrill(m),
            other => Error::Store(other),
        })?;
    if recorded {
        tracing::info!(drill_id, job_id, token, agent_id = %agent_id, "Drill fault injected");
    }
    Ok(recorded)
}

#[cfg(test)]
mod tests;
