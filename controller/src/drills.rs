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
//! Reads refresh running drills too, so a drill whose watcher died with a
//! controller restart still gets its verdict.

use std::time::Duration;

use baton_proto::drill::{DrillId, DrillStart, DrillState, DrillView, Fault};
use baton_proto::{FencingToken, JobId, JobSpec, JobSubmit, NoopSpec, RetryOn, RetryPolicy};
use tokio_util::sync::CancellationToken;

use crate::jobs::{self, Jobs};
use crate::store::drills::NewDrill;
use crate::store::jobs::NewJob;
use crate::store::{self, Store, now_ms};

/// How often a running drill's watcher looks at its job.
pub const WATCH_EVERY: Duration = Duration::from_millis(100);
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

/// Check a drill request and build its job. Errors name the field.
pub fn plan(
    req: &DrillStart,
    default_ttl_ms: u64,
    max_spec_bytes: usize,
    who: &str,
) -> Result<(NewDrill, NewJob), Error> {
    crate::validate::groups(std::slice::from_ref(&req.group))
        .map_err(|e| invalid("group", e.message))?;
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
            invalid(field, e.message)
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
    };
    let job = NewJob {
        submit,
        lease_ttl_ms: ttl,
        idempotency_key: None,
        request_hash: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&canonical)),
    };
    Ok((drill, job))
}

/// The operator's job template, if it fits a drill of `group`.
fn template(t: &JobSubmit, group: &str) -> Result<JobSubmit, Error> {
    if t.group != group {
        return Err(invalid(
            "job.group",
            format!(
                "the job template is for group `{}`, the drill for `{group}`",
                t.group
            ),
        ));
    }
    let r = &t.retry;
    if !r.retry_on.contains(&RetryOn::LeaseExpired) || r.max_attempts < 2 {
        return Err(invalid(
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
        return Err(invalid(
            "duration_ms",
            format!(
                "must exceed the lease TTL ({ttl} ms), or the lease never runs out and no takeover happens"
            ),
        ));
    }
    if duration_ms > baton_proto::limits::MAX_LEASE_TTL_MS {
        return Err(invalid("duration_ms", "must be at most 3600000 (1 h)"));
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
    default_ttl_ms: u64,
    max_spec_bytes: usize,
    who: &str,
) -> Result<DrillView, Error> {
    let (drill, job) = plan(req, default_ttl_ms, max_spec_bytes, who)?;
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

/// The fault for a heartbeat that renewed `job_id`'s lease, if a drill of
/// that job waits for one. A store failure is logged and means no fault:
/// a drill must never break a renewal.
pub async fn fault_for_heartbeat(
    store: &Store,
    job_id: JobId,
    agent_id: &str,
    token: FencingToken,
) -> Option<Fault> {
    match store
        .drill_fault_for(job_id, agent_id, token, now_ms())
        .await
    {
        Ok(Some(f)) => {
            tracing::info!(
                drill_id = f.drill_id,
                job_id,
                token,
                agent_id,
                method = %f.method,
                duration_ms = f.duration_ms,
                "Drill fault sent to the lease holder"
            );
            Some(f)
        }
        Ok(None) => None,
        Err(e) => {
            tracing::error!(job_id, error = %e, "Cannot look up drills for a heartbeat");
            None
        }
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
