//! `POST /v1/jobs/batch`: many submissions in one request, created all or
//! none in one transaction (one commit, one wake-up per group).
//!
//! Each job is validated as for `POST /v1/jobs` (400 or 422 alike); a failure
//! names the field as `jobs[3].spec.sleep_ms`; placement (422
//! `jobs[3].spec.connection`) is
//! checked per job, and `allow_unplaced` is per job too. `Idempotency-Key`
//! works as for a single submit, keyed on the whole body: the same body again answers 200 with the same
//! jobs, another body with the same key is `409 idempotency_conflict`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use baton_proto::ErrorBody;
use baton_proto::job::{JobBatch, JobBatchSubmit, MAX_BATCH_JOBS};
use sha2::{Digest, Sha256};

use super::auth::OperatorRole;
use super::operator::{idempotency_key, placed, unprocessable};
use super::{ApiError, AppState, JsonBody};
use crate::store::jobs::{NewBatch, NewJob};
use crate::store::now_ms;
use crate::validate;

/// `POST /v1/jobs/batch`: 201 with the jobs in order, or 200 with the jobs of
/// an earlier batch with the same `Idempotency-Key`.
#[utoipa::path(
    post,
    operation_id = "submit_job_batch",
    path = "/v1/jobs/batch",
    tag = "jobs",
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retried submit safe: the same key and body answer 200 with the earlier result; the same key with another body is 409 `idempotency_conflict`. 1-256 visible ASCII characters.", min_length = 1, max_length = 256)),
    request_body = JobBatchSubmit,
    responses(
        (status = 201, description = "Every job, in order, on disk", body = JobBatch),
        (status = 200, description = "The jobs of an earlier batch with this `Idempotency-Key`", body = JobBatch),
        (status = 409, description = "`idempotency_conflict`: the key was used with another body", body = ErrorBody),
        (status = 422, description = "`unprocessable`: a job is valid by this document but refused by a rule it cannot state, as for `POST /v1/jobs` (`jobs[3].spec.connection`: no enrolled agent can run it; `jobs[3].spec.params[1].name` given twice)", body = ErrorBody)
    ),
    security(("operator_token" = ["operator"]))
)]
pub async fn submit_batch(
    State(s): State<AppState>,
    _op: OperatorRole,
    headers: HeaderMap,
    JsonBody(batch): JsonBody<JobBatchSubmit>,
) -> Result<Response, ApiError> {
    if batch.jobs.is_empty() || batch.jobs.len() > MAX_BATCH_JOBS {
        return Err(ApiError::bad_request(
            format!("must hold 1 to {MAX_BATCH_JOBS} jobs"),
            Some("jobs".into()),
        ));
    }
    let key = idempotency_key(&headers)?;
    let default_ttl = s.config.default_lease_ttl.as_millis() as u64;
    let mut canonical = b"batch\n".to_vec();
    canonical.extend(serde_json::to_vec(&batch).unwrap_or_default());
    let request_hash = hex::encode(Sha256::digest(&canonical));
    let mut jobs = Vec::with_capacity(batch.jobs.len());
    for (i, job) in batch.jobs.into_iter().enumerate() {
        let ttl =
            validate::submission(&job, default_ttl, s.config.max_spec_bytes).map_err(|e| {
                ApiError::from(validate::Error {
                    field: format!("jobs[{i}].{}", e.field),
                    ..e
                })
            })?;
        let one = serde_json::to_vec(&job).unwrap_or_default();
        jobs.push(NewJob {
            submit: job,
            lease_ttl_ms: ttl,
            idempotency_key: None,
            request_hash: hex::encode(Sha256::digest(&one)),
            audit: None,
        });
    }
    s.placement
        .check(&s.store, s.presence.durable_epoch(), |f| {
            jobs.iter().enumerate().try_for_each(|(i, job)| {
                placed(f, &job.submit).map_err(|e| unprocessable(e, &format!("jobs[{i}].")))
            })
        })
        .await??;
    let done = s
        .jobs
        .submit_batch(
            NewBatch {
                jobs,
                idempotency_key: key,
                request_hash,
            },
            now_ms(),
        )
        .await?;
    let status = if done.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(JobBatch { jobs: done.jobs })).into_response())
}

#[cfg(test)]
mod tests;
