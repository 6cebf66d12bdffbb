//! Pipelines and their runs over HTTP: `/v1/pipelines` and `/v1/runs`,
//! viewers read, operators write. A refused definition (graph, references,
//! a step's job) is 422 naming the path at fault.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use baton_proto::pipeline::{PipelineList, PipelineSpec, PipelineView, RunList, RunView};
use baton_proto::schedule::RunId;
use serde::Deserialize;

use super::auth::{OperatorRole, Viewer};
use super::operator::{Stamped, stamped};
use super::schedules::same_name;
use super::{ApiError, AppState, JobIdPath, JsonBody, NamePath, QueryParams};
use crate::store::now_ms;

/// `GET /v1/pipelines`.
pub async fn list(
    State(s): State<AppState>,
    _v: Viewer,
) -> Result<Stamped<PipelineList>, ApiError> {
    Ok(stamped(s.schedules.pipelines().await?))
}

/// `POST /v1/pipelines`: 201; 409 when the name is taken.
pub async fn create(
    State(s): State<AppState>,
    _op: OperatorRole,
    JsonBody(spec): JsonBody<PipelineSpec>,
) -> Result<Response, ApiError> {
    let (view, _) = s.schedules.put_pipeline(spec, true, now_ms()).await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// `PUT /v1/pipelines/{id}`: replace (200) or create (201); runs already
/// started keep the definition they started with.
pub async fn put(
    State(s): State<AppState>,
    _op: OperatorRole,
    NamePath(name): NamePath,
    JsonBody(spec): JsonBody<PipelineSpec>,
) -> Result<Response, ApiError> {
    same_name(&name, &spec.name)?;
    let (view, created) = s.schedules.put_pipeline(spec, false, now_ms()).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)).into_response())
}

/// `GET /v1/pipelines/{id}`.
pub async fn show(
    State(s): State<AppState>,
    _v: Viewer,
    NamePath(name): NamePath,
) -> Result<Stamped<PipelineView>, ApiError> {
    Ok(stamped(s.schedules.pipeline(&name).await?))
}

/// `DELETE /v1/pipelines/{id}`: 204; 409 while a schedule names it.
pub async fn delete(
    State(s): State<AppState>,
    _op: OperatorRole,
    NamePath(name): NamePath,
) -> Result<StatusCode, ApiError> {
    s.schedules.delete_pipeline(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/pipelines/{id}/runs`: 201 with the run.
pub async fn run(
    State(s): State<AppState>,
    _op: OperatorRole,
    NamePath(name): NamePath,
) -> Result<Response, ApiError> {
    let run = s.schedules.run(&name, now_ms()).await?;
    Ok((StatusCode::CREATED, Json(run)).into_response())
}

/// Query string of `GET /v1/pipelines/{id}/runs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunsQuery {
    before: Option<RunId>,
    limit: Option<u32>,
}

/// `GET /v1/pipelines/{id}/runs`: newest first.
pub async fn runs(
    State(s): State<AppState>,
    _v: Viewer,
    NamePath(name): NamePath,
    QueryParams(q): QueryParams<RunsQuery>,
) -> Result<Stamped<RunList>, ApiError> {
    let limit = super::page_limit(q.limit)?;
    Ok(stamped(s.schedules.runs(&name, q.before, limit).await?))
}

/// `GET /v1/runs/{id}`: the run with its steps.
pub async fn show_run(
    State(s): State<AppState>,
    _v: Viewer,
    JobIdPath(id): JobIdPath,
) -> Result<Stamped<RunView>, ApiError> {
    Ok(stamped(s.schedules.get_run(id).await?))
}

/// `POST /v1/runs/{id}/cancel`.
pub async fn cancel_run(
    State(s): State<AppState>,
    _op: OperatorRole,
    JobIdPath(id): JobIdPath,
) -> Result<Json<RunView>, ApiError> {
    Ok(Json(s.schedules.cancel_run(id, now_ms()).await?))
}

/// `POST /v1/runs/{id}/retry`.
pub async fn retry_run(
    State(s): State<AppState>,
    _op: OperatorRole,
    JobIdPath(id): JobIdPath,
) -> Result<Json<RunView>, ApiError> {
    Ok(Json(s.schedules.retry_run(id, now_ms()).await?))
}
