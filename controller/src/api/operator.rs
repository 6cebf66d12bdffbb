//! Operator endpoints: submit, list, get, cancel, retry jobs; list agents.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use baton_proto::{
    AgentDrain, AgentList, ErrorCode, JobId, JobList, JobState, JobSubmit, JobView, valid_name,
};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::auth::{OperatorRole, Viewer};
use super::{ApiError, AppState, JobIdPath, JsonBody, NamePath, QueryParams};
use crate::placement::Fleet;
use crate::store::jobs::{JobFilter, NewJob};
use crate::store::now_ms;
use crate::validate;

/// `POST /v1/jobs`: 201 with the job, or 200 with the earlier job for a repeated `Idempotency-Key`.
pub async fn submit(
    State(s): State<AppState>,
    _op: OperatorRole,
    headers: HeaderMap,
    JsonBody(job): JsonBody<JobSubmit>,
) -> Result<Response, ApiError> {
    let ttl = validate::submission(
        &job,
        s.config.default_lease_ttl.as_millis() as u64,
        s.config.max_spec_bytes,
    )?;
    s.placement
        .check(&s.store, s.presence.durable_epoch(), |f| placed(f, &job))
        .await?
        .map_err(|e| unprocessable(e, ""))?;
    let key = idempotency_key(&headers)?;
    let canonical = serde_json::to_vec(&job).unwrap_or_default();
    let request_hash = hex::encode(Sha256::digest(&canonical));
    let done = s
        .jobs
        .submit(
            NewJob {
                submit: job,
                lease_ttl_ms: ttl,
                idempotency_key: key,
                request_hash,
            },
            now_ms(),
        )
        .await?;
    if done.created {
        Ok((StatusCode::CREATED, Json(done.job)).into_response())
    } else {
        Ok((StatusCode::OK, Json(done.job)).into_response())
    }
}

/// After the pure checks: whether an enrolled agent can run `job`
/// (`group`, `spec.connection`), then its procedure call checked by the
/// engines the group's agents advertise for its connection (kind-independent
/// checks only when none is known).
pub(crate) fn placed(fleet: &Fleet, job: &JobSubmit) -> Result<(), validate::Error> {
    let engines = fleet.place(job)?;
    validate::call(&job.spec, &engines)
}

/// A placement or value refusal as 422, its field under `prefix`.
pub(crate) fn unprocessable(e: validate::Error, prefix: &str) -> ApiError {
    ApiError::new(
        ErrorCode::Unprocessable,
        e.message,
        Some(format!("{prefix}{}", e.field)),
    )
}

/// The `Idempotency-Key` header, if sent (1-256 visible ASCII characters).
pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    match headers.get(baton_proto::IDEMPOTENCY_KEY_HEADER) {
        None => Ok(None),
        Some(v) => {
            let k = v.to_str().ok().filter(|k| !k.is_empty() && k.len() <= 256);
            Ok(Some(
                k.ok_or_else(|| {
                    ApiError::bad_request(
                        "must be 1-256 visible ASCII characters",
                        Some(baton_proto::IDEMPOTENCY_KEY_HEADER.into()),
                    )
                })?
                .to_owned(),
            ))
        }
    }
}

/// Query string of `GET /v1/jobs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    state: Option<String>,
    group: Option<String>,
    kind: Option<String>,
    label: Option<String>,
    schedule: Option<String>,
    before: Option<JobId>,
    limit: Option<u32>,
}

/// `GET /v1/jobs`.
pub async fn list(
    State(s): State<AppState>,
    _op: Viewer,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<Stamped<JobList>, ApiError> {
    let limit = super::page_limit(q.limit)?;
    if q.before.is_some_and(|b| b < 1) {
        return Err(ApiError::bad_request(
            "must be a positive job id",
            Some("before".into()),
        ));
    }
    let state = match q.state.as_deref() {
        None => None,
        Some(v) => Some(JobState::parse(v).ok_or_else(|| {
            ApiError::bad_request(format!("unknown state `{v}`"), Some("state".into()))
        })?),
    };
    if let Some(k) = q.kind.as_deref()
        && baton_proto::JobKind::parse(k).is_none()
    {
        return Err(ApiError::bad_request(
            format!("unknown kind `{k}`"),
            Some("kind".into()),
        ));
    }
    if let Some(g) = q.group.as_deref()
        && !valid_name(g)
    {
        return Err(ApiError::bad_request("invalid group", Some("group".into())));
    }
    let label = match q.label.as_deref() {
        None => None,
        Some(l) => {
            let (k, v) = l.split_once('=').ok_or_else(|| {
                ApiError::bad_request("label filter is key=value", Some("label".into()))
            })?;
            Some((k.to_owned(), v.to_owned()))
        }
    };
    let list = s
        .store
        .list_jobs(&JobFilter {
            state,
            group: q.group,
            kind: q.kind,
            label,
            schedule: q.schedule,
            before: q.before,
            limit,
        })
        .await?;
    Ok(stamped(list))
}

/// `GET /v1/jobs/{id}`: the job with every attempt.
pub async fn get_job(
    State(s): State<AppState>,
    _op: Viewer,
    JobIdPath(id): JobIdPath,
) -> Result<Stamped<JobView>, ApiError> {
    let mut job = s.store.get_job(id).await?;
    bound_data(&mut job);
    if job.state == JobState::Queued {
        job.blocked_reason = s
            .store
            .blocked_reason(
                &job,
                now_ms(),
                s.config.agent_offline_after.as_millis() as i64,
            )
            .await?;
    }
    Ok(stamped(job))
}

/// Results stored before `result.data` was bounded may nest deeper than
/// [`validate::MAX_DATA_DEPTH`]: such data is replaced by a note, so that no
/// client parsing the job hits a recursion limit.
pub(crate) fn bound_data(job: &mut JobView) {
    let results = job
        .result
        .iter_mut()
        .chain(job.attempts.iter_mut().filter_map(|a| a.result.as_mut()));
    for r in results {
        if r.data
            .as_ref()
            .is_some_and(|d| !validate::nesting_at_most(d, validate::MAX_DATA_DEPTH))
        {
            r.data = Some(serde_json::json!({
                "omitted": format!(
                    "result.data nests deeper than {} levels",
                    validate::MAX_DATA_DEPTH
                )
            }));
        }
    }
}

/// `POST /v1/jobs/{id}/cancel`.
pub async fn cancel(
    State(s): State<AppState>,
    _op: OperatorRole,
    JobIdPath(id): JobIdPath,
) -> Result<Json<JobView>, ApiError> {
    let mut job = s.jobs.cancel(id, now_ms()).await?;
    bound_data(&mut job);
    tracing::info!(job_id = id, state = %job.state, "Job cancel requested");
    Ok(Json(job))
}

/// `POST /v1/jobs/{id}/retry`.
pub async fn retry(
    State(s): State<AppState>,
    _op: OperatorRole,
    JobIdPath(id): JobIdPath,
) -> Result<Json<JobView>, ApiError> {
    let mut job = s.jobs.retry(id, now_ms()).await?;
    bound_data(&mut job);
    Ok(Json(job))
}

/// `GET /v1/agents`.
pub async fn agents(
    State(s): State<AppState>,
    _op: Viewer,
) -> Result<Stamped<AgentList>, ApiError> {
    let agents = s
        .store
        .list_agents(now_ms(), s.config.agent_offline_after.as_millis() as i64)
        .await?;
    Ok(stamped(AgentList { agents }))
}

/// A view with the controller's clock in [`baton_proto::NOW_HEADER`].
pub type Stamped<T> = ([(&'static str, String); 1], Json<T>);

/// `view`, stamped with the controller's now (what its times are relative to).
pub fn stamped<T>(view: T) -> Stamped<T> {
    (
        [(baton_proto::NOW_HEADER, now_ms().to_string())],
        Json(view),
    )
}

/// `POST /v1/agents/{id}/drain`: no new work for the agent from now on; the
/// jobs it runs go on to their end.
pub async fn drain_agent(
    State(s): State<AppState>,
    op: OperatorRole,
    NamePath(id): NamePath,
) -> Result<Json<AgentDrain>, ApiError> {
    set_drain(&s, &op, id, true).await
}

/// `POST /v1/agents/{id}/resume`: lift a drain.
pub async fn resume_agent(
    State(s): State<AppState>,
    op: OperatorRole,
    NamePath(id): NamePath,
) -> Result<Json<AgentDrain>, ApiError> {
    set_drain(&s, &op, id, false).await
}

async fn set_drain(
    s: &AppState,
    op: &OperatorRole,
    id: String,
    drain: bool,
) -> Result<Json<AgentDrain>, ApiError> {
    // Held polls of the agent re-check their drain state; on resume they
    // look for work at once (the jobs service wakes its groups).
    let state = s.jobs.set_drain(&id, drain, &op.who.name, now_ms()).await?;
    Ok(Json(AgentDrain {
        agent_id: id,
        draining: state.drained_at.is_some(),
        drained_at: state.drained_at.map(crate::store::rows_ts),
        running: state.running,
    }))
}

#[cfg(test)]
mod tests;
