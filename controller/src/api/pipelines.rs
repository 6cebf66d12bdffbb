//! Pipelines and their runs over HTTP: `/v1/pipelines` and `/v1/runs`,
//! viewers read, operators write. A refused definition (graph, references,
//! a step's job) is 422 naming the path at fault.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use baton_proto::ErrorBody;
use baton_proto::pipeline::{PipelineList, PipelineSpec, PipelineView, RunList, RunView};
use baton_proto::schedule::RunId;
use serde::Deserialize;

use super::auth::{OperatorRole, Viewer};
use super::operator::{Stamped, stamped};
use super::schedules::same_name;
use super::{ApiError, AppState, JobIdPath, JsonBody, NamePath, QueryParams};
use crate::store::now_ms;

/// `GET /v1/pipelines`.
#[utoipa::path(
    get,
    operation_id = "list_pipelines",
    path = "/v1/pipelines",
    tag = "pipelines",
    responses((status = 200, description = "OK", body = PipelineList, headers(("Baton-Now" = String, description = "The controller's clock when it answered (Unix ms): the view's times are relative to it")))),
    security(("operator_token" = ["viewer"]))
)]
pub async fn list(
    State(s): State<AppState>,
    _v: Viewer,
) -> Result<Stamped<PipelineList>, ApiError> {
    Ok(stamped(s.schedules.pipelines().await?))
}

/// `POST /v1/pipelines`: 201; 409 when the name is taken.
#[utoipa::path(
    post,
    operation_id = "create_pipeline",
    path = "/v1/pipelines",
    tag = "pipelines",
    request_body = PipelineSpec,
    responses(
        (status = 201, description = "Created", body = PipelineView),
        (status = 409, description = "`conflict`: the name is taken", body = ErrorBody),
        (status = 422, description = "`unprocessable`: the graph or a reference is refused (the field names it)", body = ErrorBody)
    ),
    security(("operator_token" = ["operator"]))
)]
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
#[utoipa::path(
    put,
    operation_id = "put_pipeline",
    path = "/v1/pipelines/{id}",
    tag = "pipelines",
    params(("id" = String, Path, description = "Pipeline name", pattern = r"^[A-Za-z0-9_.\-]{1,128}$", example = "db-01")),
    request_body = PipelineSpec,
    responses(
        (status = 200, description = "Replaced", body = PipelineView),
        (status = 201, description = "Created", body = PipelineView),
        (status = 422, description = "`unprocessable`: the graph or a reference is refused, or the body names another pipeline (`name`)", body = ErrorBody)
    ),
    security(("operator_token" = ["operator"]))
)]
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
#[utoipa::path(
    get,
    operation_id = "get_pipeline",
    path = "/v1/pipelines/{id}",
    tag = "pipelines",
    params(("id" = String, Path, description = "Pipeline name", pattern = r"^[A-Za-z0-9_.\-]{1,128}$", example = "db-01")),
    responses(
        (status = 200, description = "OK", body = PipelineView, headers(("Baton-Now" = String, description = "The controller's clock when it answered (Unix ms): the view's times are relative to it"))),
        (status = 404, description = "`not_found`: no such pipeline", body = ErrorBody)
    ),
    security(("operator_token" = ["viewer"]))
)]
pub async fn show(
    State(s): State<AppState>,
    _v: Viewer,
    NamePath(name): NamePath,
) -> Result<Stamped<PipelineView>, ApiError> {
    Ok(stamped(s.schedules.pipeline(&name).await?))
}

/// `DELETE /v1/pipelines/{id}`: 204; 409 while a schedule names it.
#[utoipa::path(
    delete,
    operation_id = "delete_pipeline",
    path = "/v1/pipelines/{id}",
    tag = "pipelines",
    params(("id" = String, Path, description = "Pipeline name", pattern = r"^[A-Za-z0-9_.\-]{1,128}$", example = "db-01")),
    responses(
        (status = 204, description = "No content"),
        (status = 404, description = "`not_found`: no such pipeline", body = ErrorBody),
        (status = 409, description = "`conflict`: a schedule names it", body = ErrorBody)
    ),
    security(("operator_token" = ["operator"]))
)]
pub async fn delete(
    State(s): State<AppState>,
    _op: OperatorRole,
    NamePath(name): NamePath,
) -> Result<StatusCode, ApiError> {
    s.schedules.delete_pipeline(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/pipelines/{id}/runs`: 201 with the run.
#[utoipa::path(
    post,
    operation_id = "run_pipeline",
    path = "/v1/pipelines/{id}/runs",
    tag = "pipelines",
    params(("id" = String, Path, description = "Pipeline name", pattern = r"^[A-Za-z0-9_.\-]{1,128}$", example = "db-01")),
    responses(
        (status = 201, description = "The run, started", body = RunView),
        (status = 404, description = "`not_found`: no such pipeline", body = ErrorBody),
        (status = 422, description = "`unprocessable`: no enrolled agent can run a step", body = ErrorBody)
    ),
    security(("operator_token" = ["operator"]))
)]
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
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunsQuery {
    /// Only runs with a smaller id (the next page).
    #[param(value_type = Option<i64>)]
    before: Option<RunId>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// `GET /v1/pipelines/{id}/runs`: newest first.
#[utoipa::path(
    get,
    operation_id = "list_pipeline_runs",
    path = "/v1/pipelines/{id}/runs",
    tag = "pipelines",
    params(("id" = String, Path, description = "Pipeline name", pattern = r"^[A-Za-z0-9_.\-]{1,128}$", example = "db-01"), RunsQuery),
    responses(
        (status = 200, description = "Newest first", body = RunList, headers(("Baton-Now" = String, description = "The controller's clock when it answered (Unix ms): the view's times are relative to it"))),
        (status = 404, description = "`not_found`: no such pipeline", body = ErrorBody)
    ),
    security(("operator_token" = ["viewer"]))
)]
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
#[utoipa::path(
    get,
    operation_id = "get_run",
    path = "/v1/runs/{id}",
    tag = "pipelines",
    params(("id" = i64, Path, description = "Run id", minimum = 1, example = 42)),
    responses(
        (status = 200, description = "The run with its steps", body = RunView, headers(("Baton-Now" = String, description = "The controller's clock when it answered (Unix ms): the view's times are relative to it"))),
        (status = 404, description = "`not_found`: no such run", body = ErrorBody)
    ),
    security(("operator_token" = ["viewer"]))
)]
pub async fn show_run(
    State(s): State<AppState>,
    _v: Viewer,
    JobIdPath(id): JobIdPath,
) -> Result<Stamped<RunView>, ApiError> {
    Ok(stamped(s.schedules.get_run(id).await?))
}

/// `POST /v1/runs/{id}/cancel`.
#[utoipa::path(
    post,
    operation_id = "cancel_run",
    path = "/v1/runs/{id}/cancel",
    tag = "pipelines",
    params(("id" = i64, Path, description = "Run id", minimum = 1, example = 42)),
    responses(
        (status = 200, description = "OK", body = RunView),
        (status = 404, description = "`not_found`: no such run", body = ErrorBody),
        (status = 409, description = "`conflict`: the run has ended", body = ErrorBody)
    ),
    security(("operator_token" = ["operator"]))
)]
pub async fn cancel_run(
    State(s): State<AppState>,
    _op: OperatorRole,
    JobIdPath(id): JobIdPath,
) -> Result<Json<RunView>, ApiError> {
    Ok(Json(s.schedules.cancel_run(id, now_ms()).await?))
}

/// `POST /v1/runs/{id}/retry`.
#[utoipa::path(
    post,
    operation_id = "retry_run",
    path = "/v1/runs/{id}/retry",
    tag = "pipelines",
    params(("id" = i64, Path, description = "Run id", minimum = 1, example = 42)),
    responses(
        (status = 200, description = "OK", body = RunView),
        (status = 404, description = "`not_found`: no such run", body = ErrorBody),
        (status = 409, description = "`conflict`: only a failed or cancelled run is retried", body = ErrorBody)
    ),
    security(("operator_token" = ["operator"]))
)]
pub async fn retry_run(
    State(s): State<AppState>,
    _op: OperatorRole,
    JobIdPath(id): JobIdPath,
) -> Result<Json<RunView>, ApiError> {
    Ok(Json(s.schedules.retry_run(id, now_ms()).await?))
}
