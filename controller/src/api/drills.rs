//! Failover drills over HTTP: `POST /v1/drills` (operator), `GET /v1/drills`
//! and `GET /v1/drills/{id}` (viewer), and `POST /v1/jobs/{id}/fault-ack`
//! (the holder). Planning, starting, watching and the heartbeat's fault are
//! the `drills` service's; these handlers parse, call it and map its errors.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use baton_proto::ErrorBody;
use baton_proto::drill::{DrillId, DrillList, DrillStart, DrillView, FaultAck, FaultAckResponse};
use serde::Deserialize;

use super::auth::{AgentCaller, OperatorRole, Viewer};
use super::{ApiError, AppState, JobIdPath, JsonBody, QueryParams};
use crate::drills;
use crate::store::now_ms;

/// `POST /v1/drills`: 201 with the drill.
#[utoipa::path(
    post,
    operation_id = "start_drill",
    path = "/v1/drills",
    tag = "drills",
    request_body = DrillStart,
    responses(
        (status = 201, description = "The drill, started", body = DrillView),
        (status = 422, description = "`unprocessable`: the drill cannot run as asked (the field names why)", body = ErrorBody)
    ),
    security(("operator_token" = ["operator"]))
)]
pub async fn start(
    State(s): State<AppState>,
    op: OperatorRole,
    JsonBody(req): JsonBody<DrillStart>,
) -> Result<Response, ApiError> {
    let limits = drills::Limits {
        default_ttl_ms: s.config.default_lease_ttl.as_millis() as u64,
        max_spec_bytes: s.config.max_spec_bytes,
        allow_controller_crash: s.config.drills.allow_controller_crash,
    };
    let view = drills::start(&s.jobs, &s.shutdown, &req, limits, &op.who.name).await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// Query string of `GET /v1/drills`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// `GET /v1/drills`: newest first (running drills are refreshed first).
#[utoipa::path(
    get,
    operation_id = "list_drills",
    path = "/v1/drills",
    tag = "drills",
    params(ListQuery),
    responses((status = 200, description = "Newest first", body = DrillList)),
    security(("operator_token" = ["viewer"]))
)]
pub async fn list(
    State(s): State<AppState>,
    _v: Viewer,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<Json<DrillList>, ApiError> {
    let limit = super::page_limit(q.limit)?;
    drills::refresh_running(&s.store).await?;
    Ok(Json(s.store.list_drills(limit).await?))
}

/// `GET /v1/drills/{id}`: the drill with its timeline and report.
#[utoipa::path(
    get,
    operation_id = "get_drill",
    path = "/v1/drills/{id}",
    tag = "drills",
    params(("id" = i64, Path, description = "Drill id", minimum = 1, example = 42)),
    responses(
        (status = 200, description = "The drill with its timeline and report", body = DrillView),
        (status = 404, description = "`not_found`: no such drill", body = ErrorBody)
    ),
    security(("operator_token" = ["viewer"]))
)]
pub async fn show(
    State(s): State<AppState>,
    _v: Viewer,
    JobIdPath(id): JobIdPath,
) -> Result<Json<DrillView>, ApiError> {
    // Drill ids follow the same rule as job ids.
    let id: DrillId = id;
    Ok(Json(s.store.refresh_drill(id, now_ms()).await?))
}

/// `POST /v1/jobs/{id}/fault-ack`: the holder simulates the fault from now on.
#[utoipa::path(
    post,
    operation_id = "agent_fault_ack",
    path = "/v1/jobs/{id}/fault-ack",
    tag = "agent",
    params(("id" = i64, Path, description = "Job id", minimum = 1, example = 42)),
    request_body = FaultAck,
    responses(
        (status = 200, description = "OK", body = FaultAckResponse),
        (status = 404, description = "`not_found`: no such drill", body = ErrorBody),
        (status = 409, description = "`lease_lost`: the token is stale", body = ErrorBody)
    ),
    security(("agent_secret" = []))
)]
pub async fn fault_ack(
    State(s): State<AppState>,
    caller: AgentCaller,
    JobIdPath(job_id): JobIdPath,
    JsonBody(req): JsonBody<FaultAck>,
) -> Result<Json<FaultAckResponse>, ApiError> {
    let recorded = drills::fault_ack(&s.store, req.drill_id, job_id, &caller.id, req.token).await?;
    Ok(Json(FaultAckResponse { recorded }))
}
