//! Failover drills over HTTP: `POST /v1/drills` (operator), `GET /v1/drills`
//! and `GET /v1/drills/{id}` (viewer), and `POST /v1/jobs/{id}/fault-ack`
//! (the holder). Planning, starting, watching and the heartbeat's fault are
//! the `drills` service's; these handlers parse, call it and map its errors.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use baton_proto::drill::{DrillId, DrillList, DrillStart, DrillView, FaultAck, FaultAckResponse};
use serde::Deserialize;

use super::auth::{AgentCaller, OperatorRole, Viewer};
use super::{ApiError, AppState, JobIdPath, JsonBody, QueryParams};
use crate::drills;
use crate::store::now_ms;

/// `POST /v1/drills`: 201 with the drill.
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
    drills::refresh_running(&s.store).await?;
    Ok(Json(s.store.list_drills(limit).await?))
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

/// `POST /v1/jobs/{id}/fault-ack`: the holder simulates the fault from now on.
pub async fn fault_ack(
    State(s): State<AppState>,
    caller: AgentCaller,
    JobIdPath(job_id): JobIdPath,
    JsonBody(req): JsonBody<FaultAck>,
) -> Result<Json<FaultAckResponse>, ApiError> {
    let recorded = drills::fault_ack(&s.store, req.drill_id, job_id, &caller.id, req.token).await?;
    Ok(Json(FaultAckResponse { recorded }))
}
