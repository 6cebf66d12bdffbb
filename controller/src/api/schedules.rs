//! Schedules over HTTP, under `/v1/schedules` with the roles of jobs:
//! viewers read, operators write. Handlers parse, call the schedules
//! service and map its errors (a refused definition is 422 naming the
//! field).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use baton_proto::ErrorBody;
use baton_proto::schedule::{
    BackfillRequest, FireReport, NextList, OccurrenceList, ScheduleList, ScheduleSpec, ScheduleView,
};
use baton_proto::{ErrorCode, valid_name};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::auth::{OperatorRole, Viewer};
use super::operator::{Stamped, stamped};
use super::{ApiError, AppState, JsonBody, NamePath, QueryParams};
use crate::store::now_ms;

/// `GET /v1/schedules`.
#[utoipa::path(
    get,
    operation_id = "list_schedules",
    path = "/v1/schedules",
    tag = "schedules",
    responses((status = 200, description = "OK", body = ScheduleList, headers(("Baton-Now" = String, description = "The controller's clock when it answered (Unix ms): the view's times are relative to it")))),
    security(("operator_token" = ["viewer"]))
)]
pub async fn list(
    State(s): State<AppState>,
    _v: Viewer,
) -> Result<Stamped<ScheduleList>, ApiError> {
    Ok(stamped(s.schedules.list(now_ms()).await?))
}

/// `POST /v1/schedules`: 201 with the schedule; 409 when the name is taken.
#[utoipa::path(
    post,
    operation_id = "create_schedule",
    path = "/v1/schedules",
    tag = "schedules",
    request_body = ScheduleSpec,
    responses(
        (status = 201, description = "Created", body = ScheduleView),
        (status = 409, description = "`conflict`: the name is taken", body = ErrorBody),
        (status = 422, description = "`unprocessable`: the trigger or job template is refused (the field names it)", body = ErrorBody)
    ),
    security(("operator_token" = ["operator"]))
)]
pub async fn create(
    State(s): State<AppState>,
    _op: OperatorRole,
    JsonBody(spec): JsonBody<ScheduleSpec>,
) -> Result<Response, ApiError> {
    let (view, _) = s.schedules.put(spec, true, now_ms()).await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// `PUT /v1/schedules/{id}`: replace (200) or create (201). The body's
/// name must be the path's; `paused` applies when it creates (pause and
/// resume change it after).
#[utoipa::path(
    put,
    operation_id = "put_schedule",
    path = "/v1/schedules/{id}",
    tag = "schedules",
    params(("id" = String, Path, description = "Schedule name", pattern = r"^[A-Za-z0-9_.\-]{1,128}$", example = "db-01")),
    request_body = ScheduleSpec,
    responses(
        (status = 200, description = "Replaced", body = ScheduleView),
        (status = 201, description = "Created", body = ScheduleView),
        (status = 422, description = "`unprocessable`: the trigger or template is refused, or the body names another schedule (`name`)", body = ErrorBody)
    ),
    security(("operator_token" = ["operator"]))
)]
pub async fn put(
    State(s): State<AppState>,
    _op: OperatorRole,
    NamePath(name): NamePath,
    JsonBody(spec): JsonBody<ScheduleSpec>,
) -> Result<Response, ApiError> {
    same_name(&name, &spec.name)?;
    let (view, created) = s.schedules.put(spec, false, now_ms()).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)).into_response())
}

/// The path's name and the body's must agree.
pub(crate) fn same_name(path: &str, body: &str) -> Result<(), ApiError> {
    if path == body {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorCode::Unprocessable,
        format!("`{body}` is not the name in the path (`{path}`)"),
        Some("name".into()),
    ))
}

/// `GET /v1/schedules/{id}`.
#[utoipa::path(
    get,
    operation_id = "get_schedule",
    path = "/v1/schedules/{id}",
    tag = "schedules",
    params(("id" = String, Path, description = "Schedule name", pattern = r"^[A-Za-z0-9_.\-]{1,128}$", example = "db-01")),
    responses(
        (status = 200, description = "OK", body = ScheduleView, headers(("Baton-Now" = String, description = "The controller's clock when it answered (Unix ms): the view's times are relative to it"))),
        (status = 404, description = "`not_found`: no such schedule", body = ErrorBody)
    ),
    security(("operator_token" = ["viewer"]))
)]
pub async fn show(
    State(s): State<AppState>,
    _v: Viewer,
    NamePath(name): NamePath,
) -> Result<Stamped<ScheduleView>, ApiError> {
    Ok(stamped(s.schedules.get(&name, now_ms()).await?))
}

/// `DELETE /v1/schedules/{id}`: 204.
#[utoipa::path(
    delete,
    operation_id = "delete_schedule",
    path = "/v1/schedules/{id}",
    tag = "schedules",
    params(("id" = String, Path, description = "Schedule name", pattern = r"^[A-Za-z0-9_.\-]{1,128}$", example = "db-01")),
    responses(
        (status = 204, description = "No content"),
        (status = 404, description = "`not_found`: no such schedule", body = ErrorBody)
    ),
    security(("operator_token" = ["operator"]))
)]
pub async fn delete(
    State(s): State<AppState>,
    _op: OperatorRole,
    NamePath(name): NamePath,
) -> Result<StatusCode, ApiError> {
    s.schedules.delete(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/schedules/{id}/pause`.
#[utoipa::path(
    post,
    operation_id = "pause_schedule",
    path = "/v1/schedules/{id}/pause",
    tag = "schedules",
    params(("id" = String, Path, description = "Schedule name", pattern = r"^[A-Za-z0-9_.\-]{1,128}$", example = "db-01")),
    responses(
        (status = 200, description = "Paused", body = ScheduleView),
        (status = 404, description = "`not_found`: no such schedule", body = ErrorBody)
    ),
    security(("operator_token" = ["operator"]))
)]
pub async fn pause(
    State(s): State<AppState>,
    _op: OperatorRole,
    NamePath(name): NamePath,
) -> Result<Json<ScheduleView>, ApiError> {
    Ok(Json(s.schedules.set_paused(&name, true, now_ms()).await?))
}

/// `POST /v1/schedules/{id}/resume`.
#[utoipa::path(
    post,
    operation_id = "resume_schedule",
    path = "/v1/schedules/{id}/resume",
    tag = "schedules",
    params(("id" = String, Path, description = "Schedule name", pattern = r"^[A-Za-z0-9_.\-]{1,128}$", example = "db-01")),
    responses(
        (status = 200, description = "Resumed", body = ScheduleView),
        (status = 404, description = "`not_found`: no such schedule", body = ErrorBody)
    ),
    security(("operator_token" = ["operator"]))
)]
pub async fn resume(
    State(s): State<AppState>,
    _op: OperatorRole,
    NamePath(name): NamePath,
) -> Result<Json<ScheduleView>, ApiError> {
    Ok(Json(s.schedules.set_paused(&name, false, now_ms()).await?))
}

/// `POST /v1/schedules/{id}/trigger`: one occurrence now.
#[utoipa::path(
    post,
    operation_id = "trigger_schedule",
    path = "/v1/schedules/{id}/trigger",
    tag = "schedules",
    params(("id" = String, Path, description = "Schedule name", pattern = r"^[A-Za-z0-9_.\-]{1,128}$", example = "db-01")),
    responses(
        (status = 200, description = "One occurrence now", body = FireReport),
        (status = 404, description = "`not_found`: no such schedule", body = ErrorBody)
    ),
    security(("operator_token" = ["operator"]))
)]
pub async fn trigger(
    State(s): State<AppState>,
    _op: OperatorRole,
    NamePath(name): NamePath,
) -> Result<Json<FireReport>, ApiError> {
    Ok(Json(s.schedules.trigger_now(&name, now_ms()).await?))
}

/// `POST /v1/schedules/{id}/backfill`.
#[utoipa::path(
    post,
    operation_id = "backfill_schedule",
    path = "/v1/schedules/{id}/backfill",
    tag = "schedules",
    params(("id" = String, Path, description = "Schedule name", pattern = r"^[A-Za-z0-9_.\-]{1,128}$", example = "db-01")),
    request_body = BackfillRequest,
    responses(
        (status = 200, description = "The occurrences fired", body = FireReport),
        (status = 404, description = "`not_found`: no such schedule", body = ErrorBody),
        (status = 422, description = "`unprocessable`: the span is refused (the field names it)", body = ErrorBody)
    ),
    security(("operator_token" = ["operator"]))
)]
pub async fn backfill(
    State(s): State<AppState>,
    _op: OperatorRole,
    NamePath(name): NamePath,
    JsonBody(req): JsonBody<BackfillRequest>,
) -> Result<Json<FireReport>, ApiError> {
    Ok(Json(s.schedules.backfill(&name, &req, now_ms()).await?))
}

/// Query string of `GET /v1/schedules/{id}/history`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Only occurrences nominally before this time (RFC 3339).
    before: Option<DateTime<Utc>>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// `GET /v1/schedules/{id}/history`: newest first.
#[utoipa::path(
    get,
    operation_id = "schedule_history",
    path = "/v1/schedules/{id}/history",
    tag = "schedules",
    params(("id" = String, Path, description = "Schedule name", pattern = r"^[A-Za-z0-9_.\-]{1,128}$", example = "db-01"), HistoryQuery),
    responses(
        (status = 200, description = "Newest first", body = OccurrenceList, headers(("Baton-Now" = String, description = "The controller's clock when it answered (Unix ms): the view's times are relative to it"))),
        (status = 404, description = "`not_found`: no such schedule", body = ErrorBody)
    ),
    security(("operator_token" = ["viewer"]))
)]
pub async fn history(
    State(s): State<AppState>,
    _v: Viewer,
    NamePath(name): NamePath,
    QueryParams(q): QueryParams<HistoryQuery>,
) -> Result<Stamped<OccurrenceList>, ApiError> {
    let limit = super::page_limit(q.limit)?;
    let before = q.before.map(|b| b.timestamp_millis());
    Ok(stamped(s.schedules.history(&name, before, limit).await?))
}

/// Query string of `GET /v1/schedules/{id}/next`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NextQuery {
    /// How many occurrences, 1 to 1000 (default 5).
    #[param(minimum = 1, maximum = 1000)]
    count: Option<u32>,
}

/// `GET /v1/schedules/{id}/next`: upcoming occurrences (default 5).
#[utoipa::path(
    get,
    operation_id = "schedule_next",
    path = "/v1/schedules/{id}/next",
    tag = "schedules",
    params(("id" = String, Path, description = "Schedule name", pattern = r"^[A-Za-z0-9_.\-]{1,128}$", example = "db-01"), NextQuery),
    responses(
        (status = 200, description = "Upcoming occurrences", body = NextList, headers(("Baton-Now" = String, description = "The controller's clock when it answered (Unix ms): the view's times are relative to it"))),
        (status = 404, description = "`not_found`: no such schedule", body = ErrorBody)
    ),
    security(("operator_token" = ["viewer"]))
)]
pub async fn next(
    State(s): State<AppState>,
    _v: Viewer,
    NamePath(name): NamePath,
    QueryParams(q): QueryParams<NextQuery>,
) -> Result<Stamped<NextList>, ApiError> {
    let count = q.count.unwrap_or(5);
    if count == 0 || count as usize > crate::schedules::MAX_NEXT {
        return Err(ApiError::bad_request(
            format!("must be 1 to {}", crate::schedules::MAX_NEXT),
            Some("count".into()),
        ));
    }
    debug_assert!(valid_name(&name));
    Ok(stamped(
        s.schedules.next(&name, count as usize, now_ms()).await?,
    ))
}
