//! Operator endpoints: submit, list, get, cancel, retry jobs; list agents.

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use baton_proto::ErrorBody;
use baton_proto::{
    AgentDrain, AgentList, ErrorCode, JobId, JobList, JobState, JobSubmit, JobView, valid_name,
};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::audit::{AuditPending, AuditWritten};
use super::auth::{OperatorRole, Viewer};
use super::{ApiError, AppState, JobIdPath, JsonBody, NamePath, QueryParams};
use crate::placement::Fleet;
use crate::store::jobs::{JobFilter, NewJob};
use crate::store::now_ms;
use crate::validate;

/// `POST /v1/jobs`: 201 with the job, or 200 with the earlier job for a repeated `Idempotency-Key`.
#[utoipa::path(
    post,
    operation_id = "submit_job",
    path = "/v1/jobs",
    tag = "jobs",
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retried submit safe: the same key and body answer 200 with the earlier result; the same key with another body is 409 `idempotency_conflict`. 1-256 visible ASCII characters.", min_length = 1, max_length = 256)),
    request_body = JobSubmit,
    responses(
        (status = 201, description = "The job, on disk", body = JobView),
        (status = 200, description = "The earlier job of this `Idempotency-Key`", body = JobView),
        (status = 409, description = "`idempotency_conflict`: the key was used with another body", body = ErrorBody),
        (status = 422, description = "`unprocessable`: valid by this document but refused by a rule it cannot state (the field names it): no enrolled agent can run the job; a procedure parameter name given twice (`spec.params[1].name`) or a `sql_type` off the allow-list; a value the connection's engine cannot take; a size in bytes (a label value, `spec.query`, the spec past `max_spec_bytes`); a restore or upload path or key template", body = ErrorBody)
    ),
    security(("operator_token" = ["operator"]))
)]
pub async fn submit(
    State(s): State<AppState>,
    _op: OperatorRole,
    headers: HeaderMap,
    pending: Option<Extension<AuditPending>>,
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
                audit: pending.map(|Extension(p)| p.with_status(StatusCode::CREATED.as_u16())),
            },
            now_ms(),
        )
        .await?;
    if done.created {
        let mut resp = (StatusCode::CREATED, Json(done.job)).into_response();
        if done.audited {
            resp.extensions_mut().insert(AuditWritten);
        }
        Ok(resp)
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
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only jobs in this state.
    #[param(value_type = Option<baton_proto::JobState>)]
    state: Option<String>,
    /// Only jobs of this worker group.
    #[param(pattern = r"^[A-Za-z0-9_.\-]{1,128}$")]
    group: Option<String>,
    /// Only jobs of this kind.
    #[param(value_type = Option<baton_proto::JobKind>)]
    kind: Option<String>,
    /// Only jobs with this label, as `key=value`.
    #[param(pattern = "=")]
    label: Option<String>,
    /// Only jobs fired by this schedule.
    schedule: Option<String>,
    /// Only jobs with a smaller id (the next page).
    #[param(value_type = Option<i64>, minimum = 1)]
    before: Option<JobId>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// `GET /v1/jobs`.
#[utoipa::path(
    get,
    operation_id = "list_jobs",
    path = "/v1/jobs",
    tag = "jobs",
    params(ListQuery),
    responses((status = 200, description = "Newest first", body = JobList, headers(("Baton-Now" = String, description = "The controller's clock when it answered (Unix ms): the view's times are relative to it")))),
    security(("operator_token" = ["viewer"]))
)]
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
#[utoipa::path(
    get,
    operation_id = "get_job",
    path = "/v1/jobs/{id}",
    tag = "jobs",
    params(("id" = i64, Path, description = "Job id", minimum = 1, example = 42)),
    responses(
        (status = 200, description = "The job with every attempt", body = JobView, headers(("Baton-Now" = String, description = "The controller's clock when it answered (Unix ms): the view's times are relative to it"))),
        (status = 404, description = "`not_found`: no such job", body = ErrorBody)
    ),
    security(("operator_token" = ["viewer"]))
)]
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
#[utoipa::path(
    post,
    operation_id = "cancel_job",
    path = "/v1/jobs/{id}/cancel",
    tag = "jobs",
    params(("id" = i64, Path, description = "Job id", minimum = 1, example = 42)),
    responses(
        (status = 200, description = "Cancelled, or cancel requested while it runs", body = JobView),
        (status = 404, description = "`not_found`: no such job", body = ErrorBody),
        (status = 409, description = "`conflict`: the job has ended", body = ErrorBody)
    ),
    security(("operator_token" = ["operator"]))
)]
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
#[utoipa::path(
    post,
    operation_id = "retry_job",
    path = "/v1/jobs/{id}/retry",
    tag = "jobs",
    params(("id" = i64, Path, description = "Job id", minimum = 1, example = 42)),
    responses(
        (status = 200, description = "Queued again with a fresh attempt budget", body = JobView),
        (status = 404, description = "`not_found`: no such job", body = ErrorBody),
        (status = 409, description = "`conflict`: only failed or cancelled jobs are retried", body = ErrorBody)
    ),
    security(("operator_token" = ["operator"]))
)]
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
#[utoipa::path(
    get,
    operation_id = "list_agents",
    path = "/v1/agents",
    tag = "agents",
    responses((status = 200, description = "OK", body = AgentList, headers(("Baton-Now" = String, description = "The controller's clock when it answered (Unix ms): the view's times are relative to it")))),
    security(("operator_token" = ["viewer"]))
)]
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
#[utoipa::path(
    post,
    operation_id = "drain_agent",
    path = "/v1/agents/{id}/drain",
    tag = "agents",
    params(("id" = String, Path, description = "Agent id", pattern = r"^[A-Za-z0-9_.\-]{1,128}$", example = "db-01")),
    responses(
        (status = 200, description = "Drained: no new work", body = AgentDrain),
        (status = 404, description = "`not_found`: no such agent", body = ErrorBody)
    ),
    security(("operator_token" = ["operator"]))
)]
pub async fn drain_agent(
    State(s): State<AppState>,
    op: OperatorRole,
    NamePath(id): NamePath,
) -> Result<Json<AgentDrain>, ApiError> {
    set_drain(&s, &op, id, true).await
}

/// `POST /v1/agents/{id}/resume`: lift a drain.
#[utoipa::path(
    post,
    operation_id = "resume_agent",
    path = "/v1/agents/{id}/resume",
    tag = "agents",
    params(("id" = String, Path, description = "Agent id", pattern = r"^[A-Za-z0-9_.\-]{1,128}$", example = "db-01")),
    responses(
        (status = 200, description = "The drain is lifted", body = AgentDrain),
        (status = 404, description = "`not_found`: no such agent", body = ErrorBody)
    ),
    security(("operator_token" = ["operator"]))
)]
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
