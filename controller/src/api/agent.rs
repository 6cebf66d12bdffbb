//! Agent endpoints: long-poll, heartbeat, complete (one job, or a batch per
//! agent), release.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use baton_proto::lease::{
    BatchCompleteItem, BatchCompleteRequest, BatchCompleteResponse, BatchCompleteResult,
};
use baton_proto::{
    CompleteRequest, CompleteResponse, ErrorCode, HeartbeatRequest, HeartbeatResponse, JobId,
    PollRequest, PollResponse, ReleaseRequest, ReleaseResponse,
};
use futures_util::future::{join_all, select_all};

use super::{ApiError, AppState, JobIdPath, JsonBody, NamePath};
use crate::auth::AgentCaller;
use crate::presence::Known;
use crate::store::agents::AgentSeen;
use crate::store::{GrantRequest, now_ms};

/// `POST /v1/agents/{id}/poll`: hold until a job is granted or the hold runs out.
pub async fn poll(
    State(s): State<AppState>,
    caller: AgentCaller,
    NamePath(id): NamePath,
    JsonBody(req): JsonBody<PollRequest>,
) -> Result<Json<PollResponse>, ApiError> {
    let started = Instant::now();
    let received = now_ms();
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
    if !s.ready.load(Ordering::Acquire) {
        return Err(ApiError::new(ErrorCode::NotReady, "shutting down", None));
    }
    let groups: Vec<_> = req.groups.iter().map(|g| s.wakers.get(g)).collect();
    let generations = |groups: &[std::sync::Arc<crate::dispatch::Group>]| -> Vec<u64> {
        groups.iter().map(|g| g.generation()).collect()
    };
    // Presence lives in memory (`presence`): the row is written only when
    // something durable changed.
    let epoch = s
        .presence
        .polled(
            &s.store,
            &AgentSeen {
                id: &id,
                groups: &req.groups,
                capabilities: &req.capabilities,
                version: &req.version,
                os: &req.os,
                free_slots: req.free_slots,
                metrics: req.metrics.as_ref(),
            },
            &generations(&groups),
            received,
        )
        .await?
        .epoch;
    let hold = req
        .wait_ms
        .map(Duration::from_millis)
        .unwrap_or(s.config.poll_hold)
        .min(s.config.poll_hold);
    let deadline = coalesced(started, hold);
    let connections: Vec<String> = req
        .capabilities
        .connections
        .iter()
        .map(|c| c.name.clone())
        .collect();
    let mut drained_at_start = None;
    loop {
        // Register for wake-ups before looking, so nothing slips between;
        // then read the generations: a wake-up after this read either shows
        // in them or fires a registered waiter.
        let mut waits: Vec<_> = groups
            .iter()
            .map(|g| Box::pin(g.notify.notified()))
            .collect();
        for w in &mut waits {
            w.as_mut().enable();
        }
        let gens = generations(&groups);
        // Nothing happened in the agent's groups since its last look: its
        // answer still holds (no drain read, maybe no grant).
        let known = s.presence.known(&id, epoch, &gens);
        let drained = match &known {
            Some(k) => k.drained,
            None => s.store.agent_drained(&id).await?,
        };
        let drained_at_start = *drained_at_start.get_or_insert(drained);
        if drained {
            if known.is_none() {
                s.presence.remember(
                    &id,
                    epoch,
                    Known {
                        generations: gens,
                        drained: true,
                        idle: None,
                    },
                );
            }
            // Drained: no new work. A poll that began drained is held (a
            // presence heartbeat) until its deadline or a wake-up — a resume
            // wakes the agent's groups; one that saw the drain arrive answers
            // at once, so the agent learns of it.
            if !drained_at_start
                || Instant::now() >= deadline
                || !s.ready.load(Ordering::Acquire)
                || s.shutdown.is_cancelled()
            {
                return Ok(Json(PollResponse {
                    grants: Vec::new(),
                    retry_after_ms: None,
                    drain: true,
                }));
            }
            tokio::select! {
                _ = select_all(waits) => {}
                _ = tokio::time::sleep_until(deadline.into()) => {}
                _ = s.shutdown.cancelled() => {}
            }
            continue;
        }
        // `held` is read before `now`: the hold handed to the agent is never
        // longer than the controller's own (monotonic, so no wall-clock step
        // can lengthen it), and the agent's first deadline never later
        // than the lease's (lease lifecycle point 4).
        let held = started.elapsed();
        let now = now_ms();
        let mut next_ready_at = known.as_ref().and_then(|k| k.idle.flatten());
        let skip = req.free_slots == 0 || known.is_some_and(|k| k.nothing_to_grant(now));
        if !skip {
            let granted = s
                .store
                .grant(
                    &GrantRequest {
                        agent_id: &id,
                        groups: &req.groups,
                        kinds: &req.capabilities.kinds,
                        connections: &connections,
                        max: req.free_slots,
                    },
                    now,
                )
                .await?;
            for g in &granted.woken {
                s.wakers.wake(g);
            }
            if !granted.grants.is_empty() {
                s.reaper_kick.notify_one();
                let held_ms = u64::try_from(held.as_millis()).unwrap_or(u64::MAX);
                let grants = granted
                    .grants
                    .into_iter()
                    .map(|mut g| {
                        g.held_ms = held_ms;
                        tracing::info!(job_id = g.job_id, token = g.token, attempt = g.attempt, agent_id = %id, "Lease granted");
                        g
                    })
                    .collect();
                return Ok(Json(PollResponse {
                    grants,
                    retry_after_ms: None,
                    drain: false,
                }));
            }
            next_ready_at = granted.next_ready_at;
            // Found nothing: until a wake-up in its groups (or the backoff
            // of a matching job ends), the agent's next looks would too.
            s.presence.remember(
                &id,
                epoch,
                Known {
                    generations: gens,
                    drained: false,
                    idle: Some(next_ready_at),
                },
            );
        }
        if req.free_slots == 0
            || Instant::now() >= deadline
            || !s.ready.load(Ordering::Acquire)
            || s.shutdown.is_cancelled()
        {
            return Ok(Json(PollResponse {
                grants: Vec::new(),
                retry_after_ms: None,
                drain: false,
            }));
        }
        let mut until = deadline;
        if let Some(ready_at) = next_ready_at {
            let wait = Duration::from_millis((ready_at - now_ms()).max(0) as u64);
            until = until.min(Instant::now() + wait);
        }
        tokio::select! {
            _ = select_all(waits) => {}
            _ = tokio::time::sleep_until(until.into()) => {}
            _ = s.shutdown.cancelled() => {}
        }
    }
}

/// Idle polls' answers are aligned to ticks of this length (process-wide),
/// so that one timer wake-up answers every poll ending in the same tick and
/// the agents' next polls arrive together: with 10,000 idle agents that
/// halved the controller's CPU, which went mostly to waking threads once
/// per poll. A work-giving wake-up still answers at once.
pub const HOLD_TICK: Duration = Duration::from_millis(500);

/// Holds shorter than this are not aligned (tests, impatient agents).
const COALESCE_FROM: Duration = Duration::from_secs(5);

/// When a poll that began at `started` and may be held `hold` ends if
/// nothing comes: `started + hold` rounded down to a [`HOLD_TICK`] boundary
/// (never longer than asked, at most one tick shorter).
fn coalesced(started: Instant, hold: Duration) -> Instant {
    static ORIGIN: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);
    let deadline = started + hold;
    if hold < COALESCE_FROM {
        return deadline;
    }
    let since = deadline.saturating_duration_since(*ORIGIN);
    let tick = HOLD_TICK.as_nanos();
    let floored = since.as_nanos() / tick * tick;
    let aligned = *ORIGIN + Duration::from_nanos(u64::try_from(floored).unwrap_or(u64::MAX));
    aligned.max(deadline - HOLD_TICK)
}

/// `POST /v1/jobs/{id}/heartbeat`.
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
    let tail = req.log_tail.as_str();
    let (ttl, cancel) = s
        .store
        .heartbeat(
            job_id,
            &caller.id,
            req.token,
            req.progress.as_ref(),
            tail,
            now_ms(),
        )
        .await
        .inspect_err(|e| log_refusal(job_id, req.token, &caller.id, "heartbeat", e))?;
    // A failover drill of this job asks the holder for its fault here.
    let fault = super::drills::fault_for_heartbeat(&s, job_id, &caller.id, req.token).await;
    Ok(Json(HeartbeatResponse {
        lease_ttl_ms: ttl,
        cancel_requested: cancel,
        fault,
    }))
}

/// `POST /v1/jobs/{id}/complete`.
pub async fn complete(
    State(s): State<AppState>,
    caller: AgentCaller,
    JobIdPath(job_id): JobIdPath,
    JsonBody(req): JsonBody<CompleteRequest>,
) -> Result<Json<CompleteResponse>, ApiError> {
    check_output(s.config.max_output_bytes, &req.result)?;
    let (state, duplicate) = record_completion(&s, &caller.id, job_id, &req, now_ms()).await?;
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
    match record_completion(s, agent_id, job_id, &req, now).await {
        Ok((state, duplicate)) => BatchCompleteResult::Recorded {
            job_id,
            state,
            duplicate,
        },
        Err(e) => refused(ApiError::from(e)),
    }
}

/// Record one completion: wake the group when the job went back to the
/// queue, log it, and log a stale-lease refusal.
async fn record_completion(
    s: &AppState,
    agent_id: &str,
    job_id: JobId,
    req: &CompleteRequest,
    now: i64,
) -> Result<(baton_proto::JobState, bool), crate::store::Error> {
    let (state, duplicate, group) = s
        .store
        .complete(job_id, agent_id, req, now)
        .await
        .inspect_err(|e| log_refusal(job_id, req.token, agent_id, "complete", e))?;
    if state == baton_proto::JobState::Queued {
        s.wakers.wake(&group);
    }
    if !duplicate {
        tracing::info!(job_id, token = req.token, agent_id = %agent_id, %state, "Job completion recorded");
    }
    Ok((state, duplicate))
}

/// `POST /v1/jobs/{id}/release`.
pub async fn release(
    State(s): State<AppState>,
    caller: AgentCaller,
    JobIdPath(job_id): JobIdPath,
    JsonBody(req): JsonBody<ReleaseRequest>,
) -> Result<Json<ReleaseResponse>, ApiError> {
    let (state, group) = s
        .store
        .release(job_id, &caller.id, req.token, &req.reason, now_ms())
        .await
        .inspect_err(|e| log_refusal(job_id, req.token, &caller.id, "release", e))?;
    s.wakers.wake(&group);
    tracing::info!(job_id, token = req.token, agent_id = %caller.id, reason = %req.reason, "Job released");
    Ok(Json(ReleaseResponse { state }))
}

fn log_refusal(job_id: JobId, token: i64, agent: &str, call: &str, e: &crate::store::Error) {
    if matches!(e, crate::store::Error::LeaseLost(_)) {
        tracing::info!(job_id, token, agent_id = %agent, call, reason = %e, "Stale lease refused");
    }
}

#[cfg(test)]
mod tests;
