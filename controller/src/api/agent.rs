//! Agent endpoints: long-poll, heartbeat, complete (one job, or a batch per
//! agent), release, and a restarted agent's abandon of its previous run's
//! leases.

use baton_proto::ErrorBody;
use std::time::Instant;

use axum::Json;
use axum::extract::State;
use baton_proto::lease::{
    AbandonOutcome, AbandonRequest, AbandonResponse, AbandonResult, BatchCompleteItem,
    BatchCompleteRequest, BatchCompleteResponse, BatchCompleteResult,
};
use baton_proto::{
    CompleteRequest, CompleteResponse, ErrorCode, HeartbeatRequest, HeartbeatResponse, PollRequest,
    PollResponse, ReleaseRequest, ReleaseResponse,
};
use futures_util::future::join_all;
use tokio_util::sync::CancellationToken;

use super::auth::AgentCaller;
use super::{ApiError, AppState, JobIdPath, JsonBody, NamePath};
use crate::dispatch::{Dispatcher, Poll, long_poll};
use crate::drills;
use crate::jobs::log_refusal;
use crate::store::now_ms;

/// `POST /v1/agents/{id}/poll`: hold until a job is granted or the hold
/// runs out (`dispatch::long_poll`). The completions it carries are
/// recorded as by `POST /v1/agents/{id}/complete`, beside its first look
/// for work; the poll is held as any other, and its answer carries their
/// results.
#[utoipa::path(
    post,
    operation_id = "agent_poll",
    path = "/v1/agents/{id}/poll",
    tag = "agent",
    params(("id" = String, Path, description = "The calling agent's id (the secret's agent)", pattern = r"^[A-Za-z0-9_.\-]{1,128}$", example = "db-01")),
    request_body = PollRequest,
    responses(
        (status = 200, description = "A grant, or none when the hold ran out", body = PollResponse),
        (status = 403, description = "`forbidden`: another agent's id, or a group the enrollment did not grant", body = ErrorBody)
    ),
    security(("agent_secret" = []))
)]
pub async fn poll(
    State(s): State<AppState>,
    caller: AgentCaller,
    NamePath(id): NamePath,
    JsonBody(req): JsonBody<PollRequest>,
) -> Result<Json<PollResponse>, ApiError> {
    let started = Instant::now();
    let received = now_ms();
    check_poll(&caller, &id, &req)?;
    // The rare awaits are boxed: this future is held for the whole poll
    // (one per agent), and inline they would size it for their states too.
    if let Some(ms) = req.failover_ms {
        Box::pin(drills::agent_failover(&s.store, &caller.id, ms)).await;
    }
    let dispatcher = Dispatcher {
        jobs: &s.jobs,
        presence: &s.presence,
        reaper_kick: &s.reaper_kick,
        ready: &s.ready,
        shutdown: &s.shutdown,
    };
    // A poll carrying completions is held like any other: they are
    // recorded meanwhile, and the answer carries their results with the
    // work it brings (one round trip per job, not two). Their store
    // operations are queued before the poll's first look, so a grant or a
    // submit's hand-off to this poll shares their commit. A refused one
    // cuts the hold short: the agent must hear of it now (to cut down a
    // too-large result, or retry before its lease runs out).
    let cut = CancellationToken::new();
    let poll = Poll {
        agent_id: &id,
        req: &req,
        max_hold: s.config.poll_hold,
        started,
        received,
        cut: Some(&cut),
    };
    if req.completions.is_empty() {
        return Ok(Json(long_poll(dispatcher, poll).await?));
    }
    let max = s.config.max_output_bytes;
    let completions = async {
        let done = join_all(
            req.completions
                .iter()
                .map(|item| complete_item(&s, &caller.id, max, item, received)),
        )
        .await;
        if done
            .iter()
            .any(|r| matches!(r, BatchCompleteResult::Refused { .. }))
        {
            cut.cancel();
        }
        done
    };
    // `completions` is polled first (`biased`): their operations are
    // queued before `long_poll` looks or parks.
    let (completed, answer) =
        Box::pin(async { tokio::join!(biased; completions, long_poll(dispatcher, poll)) }).await;
    let mut answer = answer?;
    answer.completed = completed;
    Ok(Json(answer))
}

/// Refuse a poll in another agent's name, for a group the enrollment did not
/// grant, or with more than the limits allow.
fn check_poll(caller: &AgentCaller, id: &str, req: &PollRequest) -> Result<(), ApiError> {
    if id != caller.id {
        return Err(ApiError::forbidden(format!(
            "agent `{}` cannot poll as `{id}`",
            caller.id
        )));
    }
    crate::validate::groups(&req.groups)?;
    if let Some((i, g)) = req
        .groups
        .iter()
        .enumerate()
        .find(|(_, g)| !caller.allowed_groups.contains(g))
    {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "agent `{id}` was enrolled for groups {:?}, not `{g}`",
                caller.allowed_groups
            ),
            Some(format!("groups[{i}]")),
        ));
    }
    if req.free_slots > 1024 {
        return Err(ApiError::bad_request(
            "at most 1024",
            Some("free_slots".into()),
        ));
    }
    if req.leases.len() > 1024 {
        return Err(ApiError::bad_request("at most 1024", Some("leases".into())));
    }
    if req.completions.len() > BatchCompleteRequest::MAX {
        return Err(ApiError::bad_request(
            format!("at most {}", BatchCompleteRequest::MAX),
            Some("completions".into()),
        ));
    }
    Ok(())
}

/// `POST /v1/jobs/{id}/heartbeat`.
#[utoipa::path(
    post,
    operation_id = "agent_heartbeat",
    path = "/v1/jobs/{id}/heartbeat",
    tag = "agent",
    params(("id" = i64, Path, description = "Job id", minimum = 1, example = 42)),
    request_body = HeartbeatRequest,
    responses(
        (status = 200, description = "Lease renewed", body = HeartbeatResponse),
        (status = 404, description = "`not_found`: no such job", body = ErrorBody),
        (status = 409, description = "`lease_lost`: the token is stale; stop the work and never report it", body = ErrorBody)
    ),
    security(("agent_secret" = []))
)]
pub async fn heartbeat(
    State(s): State<AppState>,
    caller: AgentCaller,
    JobIdPath(job_id): JobIdPath,
    JsonBody(req): JsonBody<HeartbeatRequest>,
) -> Result<Json<HeartbeatResponse>, ApiError> {
    if req.log_tail.len() > s.config.max_log_tail_bytes {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "at most {} bytes per heartbeat",
                s.config.max_log_tail_bytes
            ),
            Some("log_tail".into()),
        ));
    }
    if req
        .progress
        .as_ref()
        .is_some_and(|p| p.message.len() > s.config.max_log_tail_bytes)
    {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("at most {} bytes", s.config.max_log_tail_bytes),
            Some("progress.message".into()),
        ));
    }
    let (ttl, cancel) = s
        .store
        .heartbeat(job_id, &caller.id, &req, now_ms())
        .await
        .inspect_err(|e| log_refusal(job_id, req.token, &caller.id, "heartbeat", e))?;
    if let Some(ms) = req.failover_ms {
        drills::agent_failover(&s.store, &caller.id, ms).await;
    }
    // A failover drill of this job asks the holder for its fault here.
    let allow_crash = s.config.drills.allow_controller_crash;
    let fault =
        match drills::fault_for_heartbeat(&s.store, job_id, &caller.id, req.token, allow_crash)
            .await
        {
            drills::HeartbeatFault::None => None,
            drills::HeartbeatFault::Agent(f) => Some(f),
            drills::HeartbeatFault::CrashController(drill_id) => drills::crash_now(drill_id),
        };
    Ok(Json(HeartbeatResponse {
        lease_ttl_ms: ttl,
        cancel_requested: cancel,
        fault,
    }))
}

/// `POST /v1/jobs/{id}/complete`.
#[utoipa::path(
    post,
    operation_id = "agent_complete",
    path = "/v1/jobs/{id}/complete",
    tag = "agent",
    params(("id" = i64, Path, description = "Job id", minimum = 1, example = 42)),
    request_body = CompleteRequest,
    responses(
        (status = 200, description = "Recorded (or recognised as a duplicate)", body = CompleteResponse),
        (status = 404, description = "`not_found`: no such job", body = ErrorBody),
        (status = 409, description = "`lease_lost`: the token is stale", body = ErrorBody)
    ),
    security(("agent_secret" = []))
)]
pub async fn complete(
    State(s): State<AppState>,
    caller: AgentCaller,
    JobIdPath(job_id): JobIdPath,
    JsonBody(req): JsonBody<CompleteRequest>,
) -> Result<Json<CompleteResponse>, ApiError> {
    check_output(s.config.max_output_bytes, &req.result)?;
    let (state, duplicate) = s.jobs.complete(job_id, &caller.id, &req, now_ms()).await?;
    Ok(Json(CompleteResponse { state, duplicate }))
}

/// Refuse a completion whose captured output is over the bound, or whose
/// `result.data` nests deeper than [`crate::validate::MAX_DATA_DEPTH`]
/// (clients parsing it — batonctl — must never hit a recursion limit).
fn check_output(max: usize, result: &baton_proto::JobResult) -> Result<(), ApiError> {
    if let Some(data) = &result.data
        && !crate::validate::nesting_at_most(data, crate::validate::MAX_DATA_DEPTH)
    {
        return Err(ApiError::bad_request(
            format!(
                "nests deeper than {} levels of arrays and objects",
                crate::validate::MAX_DATA_DEPTH
            ),
            Some("result.data".into()),
        ));
    }
    for (field, text) in [
        ("result.stdout", &result.stdout),
        ("result.stderr", &result.stderr),
    ] {
        if text.len() > max {
            return Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("captured output is bounded to {max} bytes per stream"),
                Some(field.into()),
            ));
        }
    }
    Ok(())
}

/// `POST /v1/agents/{id}/complete`: several completions of the caller's jobs.
/// Each item is checked and recorded as `POST /v1/jobs/{job_id}/complete`
/// would; they go to the store together (one group commit). One result per
/// item, in order; a refused item does not fail the others.
#[utoipa::path(
    post,
    operation_id = "agent_complete_batch",
    path = "/v1/agents/{id}/complete",
    tag = "agent",
    params(("id" = String, Path, description = "The calling agent's id", pattern = r"^[A-Za-z0-9_.\-]{1,128}$", example = "db-01")),
    request_body = BatchCompleteRequest,
    responses(
        (status = 200, description = "One result per completion, in order", body = BatchCompleteResponse),
        (status = 403, description = "`forbidden`: another agent's id", body = ErrorBody)
    ),
    security(("agent_secret" = []))
)]
pub async fn complete_batch(
    State(s): State<AppState>,
    caller: AgentCaller,
    NamePath(id): NamePath,
    JsonBody(req): JsonBody<BatchCompleteRequest>,
) -> Result<Json<BatchCompleteResponse>, ApiError> {
    if id != caller.id {
        return Err(ApiError::forbidden(format!(
            "agent `{}` cannot complete as `{id}`",
            caller.id
        )));
    }
    let n = req.completions.len();
    if n == 0 || n > BatchCompleteRequest::MAX {
        return Err(ApiError::bad_request(
            format!("1 to {} completions", BatchCompleteRequest::MAX),
            Some("completions".into()),
        ));
    }
    let max = s.config.max_output_bytes;
    let now = now_ms();
    let results = join_all(
        req.completions
            .iter()
            .map(|item| complete_item(&s, &caller.id, max, item, now)),
    )
    .await;
    Ok(Json(BatchCompleteResponse { results }))
}

async fn complete_item(
    s: &AppState,
    agent_id: &str,
    max: usize,
    item: &BatchCompleteItem,
    now: i64,
) -> BatchCompleteResult {
    let job_id = item.job_id;
    let refused = |e: ApiError| BatchCompleteResult::Refused {
        job_id,
        code: e.0.error.code,
        message: e.0.error.message,
    };
    if let Err(e) = check_output(max, &item.result) {
        return refused(e);
    }
    let req = item.request();
    match s.jobs.complete(job_id, agent_id, &req, now).await {
        Ok((state, duplicate)) => BatchCompleteResult::Recorded {
            job_id,
            state,
            duplicate,
        },
        Err(e) => refused(ApiError::from(e)),
    }
}

/// `POST /v1/jobs/{id}/release`.
#[utoipa::path(
    post,
    operation_id = "agent_release",
    path = "/v1/jobs/{id}/release",
    tag = "agent",
    params(("id" = i64, Path, description = "Job id", minimum = 1, example = 42)),
    request_body = ReleaseRequest,
    responses(
        (status = 200, description = "Handed back without spending an attempt", body = ReleaseResponse),
        (status = 404, description = "`not_found`: no such job", body = ErrorBody),
        (status = 409, description = "`lease_lost`: the token is stale", body = ErrorBody)
    ),
    security(("agent_secret" = []))
)]
pub async fn release(
    State(s): State<AppState>,
    caller: AgentCaller,
    JobIdPath(job_id): JobIdPath,
    JsonBody(req): JsonBody<ReleaseRequest>,
) -> Result<Json<ReleaseResponse>, ApiError> {
    let state = s
        .jobs
        .release(job_id, &caller.id, req.token, &req.reason, now_ms())
        .await?;
    Ok(Json(ReleaseResponse { state }))
}

/// `POST /v1/agents/{id}/leases/abandon`: a restarted agent ends the leases
/// its previous run held. Only the caller's own current leases end (as
/// `agent_restarted`, jobs requeued at once); the others are answered
/// `not_current`. One result per lease, in order.
#[utoipa::path(
    post,
    operation_id = "agent_abandon",
    path = "/v1/agents/{id}/leases/abandon",
    tag = "agent",
    params(("id" = String, Path, description = "The calling agent's id", pattern = r"^[A-Za-z0-9_.\-]{1,128}$", example = "db-01")),
    request_body = AbandonRequest,
    responses(
        (status = 200, description = "One result per lease, in order", body = AbandonResponse),
        (status = 403, description = "`forbidden`: another agent's id", body = ErrorBody)
    ),
    security(("agent_secret" = []))
)]
pub async fn abandon(
    State(s): State<AppState>,
    caller: AgentCaller,
    NamePath(id): NamePath,
    JsonBody(req): JsonBody<AbandonRequest>,
) -> Result<Json<AbandonResponse>, ApiError> {
    if id != caller.id {
        return Err(ApiError::forbidden(format!(
            "agent `{}` cannot abandon leases as `{id}`",
            caller.id
        )));
    }
    let n = req.leases.len();
    if n == 0 || n > AbandonRequest::MAX {
        return Err(ApiError::bad_request(
            format!("1 to {} leases", AbandonRequest::MAX),
            Some("leases".into()),
        ));
    }
    let done = s.jobs.abandon(&caller.id, &req.leases, now_ms()).await?;
    let results = done
        .results
        .into_iter()
        .map(|(lease, state)| AbandonResult {
            job_id: lease.job_id,
            token: lease.token,
            outcome: if state.is_some() {
                AbandonOutcome::Ended
            } else {
                AbandonOutcome::NotCurrent
            },
            state,
        })
        .collect();
    Ok(Json(AbandonResponse { results }))
}
