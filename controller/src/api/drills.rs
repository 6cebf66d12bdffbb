//! Failover drills: `POST /v1/drills` (operator), `GET /v1/drills` and
//! `GET /v1/drills/{id}` (viewer), the fault directive added to the holder's
//! heartbeat answer, and `POST /v1/jobs/{id}/fault-ack` (the holder).
//!
//! A drill creates its own job (label `drill=<id>`): the operator's template
//! (which must be of the drill's group and retry on `lease_expired`) or the
//! built-in probe, a `noop` job sleeping two lease TTLs, retried at once. The
//! first heartbeat of that job is answered with the fault; a watcher task
//! refreshes the drill's timeline every [`WATCH_EVERY`] until the verdict.
//! Reads refresh running drills too, so a drill whose watcher died with a
//! controller restart still gets its verdict.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use baton_proto::drill::{
    DrillId, DrillList, DrillStart, DrillState, DrillView, Fault, FaultAck, FaultAckResponse,
};
use baton_proto::{
    ErrorCode, FencingToken, JobId, JobSpec, JobSubmit, NoopSpec, RetryOn, RetryPolicy,
};
use serde::Deserialize;

use super::{ApiError, AppState, JobIdPath, JsonBody, QueryParams};
use crate::auth::{AgentCaller, OperatorRole, Viewer};
use crate::store::drills::NewDrill;
use crate::store::jobs::NewJob;
use crate::store::now_ms;

/// How often a running drill's watcher looks at its job.
pub const WATCH_EVERY: Duration = Duration::from_millis(100);
/// Default RTO target.
pub const DEFAULT_RTO_MS: u64 = 60_000;
/// Largest RTO target (one day; it is stored as a signed 64-bit number).
pub const MAX_RTO_MS: u64 = 86_400_000;

/// `POST /v1/drills`: 201 with the drill.
pub async fn start(
    State(s): State<AppState>,
    op: OperatorRole,
    JsonBody(req): JsonBody<DrillStart>,
) -> Result<Response, ApiError> {
    let default_ttl = s.config.default_lease_ttl.as_millis() as u64;
    let (drill, job) = plan(&req, default_ttl, s.config.max_spec_bytes, &op.who.name)?;
    let view = s.store.create_drill(&drill, job, now_ms()).await?;
    s.wakers.wake(&view.group);
    tracing::info!(
        drill_id = view.id,
        job_id = view.job_id,
        group = %view.group,
        method = %view.method,
        duration_ms = view.duration_ms,
        rto_ms = view.rto_ms,
        by = %op.who.name,
        "Drill started"
    );
    tokio::spawn(watch(s.clone(), view.id));
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// Check a drill request and build its job. Errors name the field.
pub fn plan(
    req: &DrillStart,
    default_ttl_ms: u64,
    max_spec_bytes: usize,
    who: &str,
) -> Result<(NewDrill, NewJob), ApiError> {
    crate::validate::groups(std::slice::from_ref(&req.group))
        .map_err(|e| ApiError::bad_request(e.message, Some("group".into())))?;
    let mut submit = match &req.job {
        Some(t) => {
            if t.group != req.group {
                return Err(ApiError::bad_request(
                    format!(
                        "the job template is for group `{}`, the drill for `{}`",
                        t.group, req.group
                    ),
                    Some("job.group".into()),
                ));
            }
            let r = &t.retry;
            if !r.retry_on.contains(&RetryOn::LeaseExpired) || r.max_attempts < 2 {
                return Err(ApiError::bad_request(
                    "a drill's job must be retried after a lease expiry: retry_on must contain \
                     lease_expired and max_attempts be at least 2",
                    Some("job.retry".into()),
                ));
            }
            t.clone()
        }
        None => JobSubmit {
            group: req.group.clone(),
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
        },
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
            ApiError::bad_request(e.message, Some(field))
        })?;
    if let JobSpec::Noop(n) = &mut submit.spec
        && req.job.is_none()
    {
        // The fault comes with the first heartbeat (after TTL/3); the holder
        // self-fences one TTL later. Two TTLs keep the probe working until then.
        n.sleep_ms = 2 * ttl;
    }
    let duration_ms = req.duration_ms.unwrap_or(2 * ttl);
    if duration_ms <= ttl {
        return Err(ApiError::bad_request(
            format!(
                "must exceed the lease TTL ({ttl} ms), or the lease never runs out and no takeover happens"
            ),
            Some("duration_ms".into()),
        ));
    }
    if duration_ms > baton_proto::limits::MAX_LEASE_TTL_MS {
        return Err(ApiError::bad_request(
            "must be at most 3600000 (1 h)",
            Some("duration_ms".into()),
        ));
    }
    let rto_ms = req.rto_ms.unwrap_or(DEFAULT_RTO_MS);
    if rto_ms == 0 || rto_ms > MAX_RTO_MS {
        return Err(ApiError::bad_request(
            format!("must be between 1 and {MAX_RTO_MS} (1 day)"),
            Some("rto_ms".into()),
        ));
    }
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

/// Refresh a running drill until its verdict (or shutdown).
async fn watch(s: AppState, id: DrillId) {
    loop {
        tokio::select! {
            () = s.shutdown.cancelled() => return,
            () = tokio::time::sleep(WATCH_EVERY) => {}
        }
        match s.store.refresh_drill(id, now_ms()).await {
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

/// Query string of `GET /v1/drills`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    limit: Option<u32>,
}

/// `GET /v1/drills`: newest first (running drills are refreshed first).
pub async fn list(
    State(s): State<AppState>,
    _v: Viewer,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<Json<DrillList>, ApiError> {
    let limit = super::page_limit(q.limit)?;
    refresh_running(&s).await?;
    Ok(Json(s.store.list_drills(limit).await?))
}

/// Refresh every running drill (their watchers may have died with a restart).
pub async fn refresh_running(s: &AppState) -> Result<(), ApiError> {
    for id in s.store.running_drills().await? {
        let v = s.store.refresh_drill(id, now_ms()).await?;
        if v.state != DrillState::Running {
            log_verdict(&v);
        }
    }
    Ok(())
}

/// `GET /v1/drills/{id}`: the drill with its timeline and report.
pub async fn show(
    State(s): State<AppState>,
    _v: Viewer,
    JobIdPath(id): JobIdPath,
) -> Result<Json<DrillView>, ApiError> {
    // Drill ids follow the same rule as job ids.
    let id: DrillId = id;
    Ok(Json(s.store.refresh_drill(id, now_ms()).await?))
}

/// The fault for a heartbeat that renewed `job_id`'s lease, if a drill of
/// that job waits for one. A store failure is logged and means no fault:
/// a drill must never break a renewal.
pub async fn fault_for_heartbeat(
    s: &AppState,
    job_id: JobId,
    agent_id: &str,
    token: FencingToken,
) -> Option<Fault> {
    match s
        .store
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

/// `POST /v1/jobs/{id}/fault-ack`: the holder simulates the fault from now on.
pub async fn fault_ack(
    State(s): State<AppState>,
    caller: AgentCaller,
    JobIdPath(job_id): JobIdPath,
    JsonBody(req): JsonBody<FaultAck>,
) -> Result<Json<FaultAckResponse>, ApiError> {
    let recorded = s
        .store
        .drill_fault_ack(req.drill_id, job_id, &caller.id, req.token, now_ms())
        .await
        .map_err(|e| match e {
            crate::store::Error::Missing(m) => {
                ApiError::new(ErrorCode::NotFound, m, Some("drill_id".into()))
            }
            other => ApiError::from(other),
        })?;
    if recorded {
        tracing::info!(drill_id = req.drill_id, job_id, token = req.token, agent_id = %caller.id, "Drill fault injected");
    }
    Ok(Json(FaultAckResponse { recorded }))
}

#[cfg(test)]
mod tests;
