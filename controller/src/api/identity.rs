//! Identity endpoints: enrollment, enrollment tokens, operator tokens, agent
//! revocation, whoami and the audit log.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use baton_proto::ErrorBody;
use baton_proto::auth::{
    AGENT_SECRET_PREFIX, AgentRevoked, AuditList, ENROLLMENT_PREFIX, EnrollRequest, EnrollResponse,
    EnrollmentTokenCreate, EnrollmentTokenCreated, EnrollmentTokenList, EnrollmentTokenView,
    OPERATOR_PREFIX, OperatorTokenCreate, OperatorTokenCreated, OperatorTokenList,
    OperatorTokenView, WhoAmI,
};
use baton_proto::valid_name;
use serde::Deserialize;

use super::audit::AuditActor;
use super::auth::{Admin, Viewer};
use super::limits::EnrollGate;
use super::{ApiError, AppState, JsonBody, NamePath, QueryParams};
use crate::credentials::{hash_secret, new_id, new_secret};
use crate::store::now_ms;

/// Longest an enrollment token may live.
const MAX_ENROLLMENT_TTL_MS: u64 = 30 * 24 * 3600 * 1000;

/// `POST /v1/agents/enroll`: spend an enrollment token, create the agent.
/// The per-address rate limit ([`EnrollGate`]) is checked before the body
/// is read; the route's body limit is small (`api::SMALL_BODY_BYTES`).
#[utoipa::path(
    post,
    operation_id = "enroll_agent",
    path = "/v1/agents/enroll",
    tag = "identity",
    request_body = EnrollRequest,
    responses(
        (status = 200, description = "The agent and its secret (shown once)", body = EnrollResponse),
        (status = 401, description = "`unauthorized`: unknown, spent, expired or revoked enrollment token", body = ErrorBody),
        (status = 409, description = "`conflict`: an active agent has this id (revoke it first)", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many enrollment attempts from this address", body = ErrorBody)
    )
)]
pub async fn enroll(
    State(s): State<AppState>,
    _gate: EnrollGate,
    JsonBody(req): JsonBody<EnrollRequest>,
) -> Result<Response, ApiError> {
    if !valid_name(&req.agent_id) {
        return Err(ApiError::bad_request(
            "must be 1-128 characters of A-Z a-z 0-9 _ . -",
            Some("agent_id".into()),
        ));
    }
    if !req.token.starts_with(ENROLLMENT_PREFIX) {
        return Err(ApiError::unauthorized("not an enrollment token"));
    }
    let secret = new_secret(AGENT_SECRET_PREFIX);
    let groups = s
        .store
        .enroll(
            &hash_secret(&req.token),
            &req.agent_id,
            &hash_secret(&secret),
            &req.version,
            now_ms(),
        )
        .await?;
    s.placement.changed();
    tracing::info!(agent_id = %req.agent_id, hostname = %req.hostname, groups = ?groups, "Agent enrolled");
    let mut resp = Json(EnrollResponse {
        agent_id: req.agent_id.clone(),
        secret,
        groups,
        fleet: s.store.fleet_id().to_owned(),
    })
    .into_response();
    resp.extensions_mut()
        .insert(AuditActor(format!("agent:{}", req.agent_id)));
    Ok(resp)
}

/// `POST /v1/agents/{id}/revoke`: refuse the agent's calls from now on and
/// end its leases at once.
#[utoipa::path(
    post,
    operation_id = "revoke_agent",
    path = "/v1/agents/{id}/revoke",
    tag = "identity",
    params(("id" = String, Path, description = "Agent id", pattern = r"^[A-Za-z0-9_.\-]{1,128}$", example = "db-01")),
    responses(
        (status = 200, description = "Revoked; its leases ended", body = AgentRevoked),
        (status = 404, description = "`not_found`: no such agent", body = ErrorBody)
    ),
    security(("operator_token" = ["admin"]))
)]
pub async fn revoke_agent(
    State(s): State<AppState>,
    admin: Admin,
    NamePath(id): NamePath,
) -> Result<Json<AgentRevoked>, ApiError> {
    let r = s.jobs.revoke_agent(&id, &admin.who.name, now_ms()).await?;
    s.placement.changed();
    Ok(Json(AgentRevoked {
        agent_id: id,
        revoked_at: crate::store::rows_ts(r.revoked_at),
        jobs_requeued: r.jobs,
    }))
}

/// `POST /v1/enrollment-tokens`.
#[utoipa::path(
    post,
    operation_id = "create_enrollment_token",
    path = "/v1/enrollment-tokens",
    tag = "identity",
    request_body = EnrollmentTokenCreate,
    responses(
        (status = 201, description = "The token (shown once)", body = EnrollmentTokenCreated)
    ),
    security(("operator_token" = ["admin"]))
)]
pub async fn create_enrollment_token(
    State(s): State<AppState>,
    admin: Admin,
    JsonBody(req): JsonBody<EnrollmentTokenCreate>,
) -> Result<(StatusCode, Json<EnrollmentTokenCreated>), ApiError> {
    crate::validate::groups(&req.groups)?;
    if req.expires_in_ms == 0 || req.expires_in_ms > MAX_ENROLLMENT_TTL_MS {
        return Err(ApiError::bad_request(
            "must be between 1 ms and 30 days",
            Some("expires_in_ms".into()),
        ));
    }
    if req.note.len() > 1024 {
        return Err(ApiError::bad_request(
            "at most 1024 bytes",
            Some("note".into()),
        ));
    }
    let token = new_secret(ENROLLMENT_PREFIX);
    let now = now_ms();
    let view = s
        .store
        .create_enrollment_token(
            &new_id("e_"),
            &hash_secret(&token),
            &req.groups,
            &req.note,
            &format!("token:{}", admin.who.name),
            now + req.expires_in_ms as i64,
            now,
        )
        .await?;
    tracing::info!(id = %view.id, groups = ?view.groups, by = %admin.who.name, "Enrollment token created");
    Ok((
        StatusCode::CREATED,
        Json(EnrollmentTokenCreated { view, token }),
    ))
}

/// `GET /v1/enrollment-tokens`.
#[utoipa::path(
    get,
    operation_id = "list_enrollment_tokens",
    path = "/v1/enrollment-tokens",
    tag = "identity",
    responses((status = 200, description = "OK", body = EnrollmentTokenList)),
    security(("operator_token" = ["admin"]))
)]
pub async fn list_enrollment_tokens(
    State(s): State<AppState>,
    _admin: Admin,
) -> Result<Json<EnrollmentTokenList>, ApiError> {
    Ok(Json(EnrollmentTokenList {
        tokens: s.store.list_enrollment_tokens(now_ms()).await?,
    }))
}

/// `POST /v1/enrollment-tokens/{id}/revoke`.
#[utoipa::path(
    post,
    operation_id = "revoke_enrollment_token",
    path = "/v1/enrollment-tokens/{id}/revoke",
    tag = "identity",
    params(("id" = String, Path, description = "Enrollment token id", pattern = r"^[A-Za-z0-9_.\-]{1,128}$", example = "db-01")),
    responses(
        (status = 200, description = "Revoked", body = EnrollmentTokenView),
        (status = 404, description = "`not_found`: no such enrollment token", body = ErrorBody)
    ),
    security(("operator_token" = ["admin"]))
)]
pub async fn revoke_enrollment_token(
    State(s): State<AppState>,
    _admin: Admin,
    NamePath(id): NamePath,
) -> Result<Json<EnrollmentTokenView>, ApiError> {
    Ok(Json(s.store.revoke_enrollment_token(&id, now_ms()).await?))
}

/// `POST /v1/tokens`.
#[utoipa::path(
    post,
    operation_id = "create_operator_token",
    path = "/v1/tokens",
    tag = "identity",
    request_body = OperatorTokenCreate,
    responses(
        (status = 201, description = "The token (shown once)", body = OperatorTokenCreated),
        (status = 409, description = "`conflict`: an active token has this name", body = ErrorBody)
    ),
    security(("operator_token" = ["admin"]))
)]
pub async fn create_operator_token(
    State(s): State<AppState>,
    admin: Admin,
    JsonBody(req): JsonBody<OperatorTokenCreate>,
) -> Result<(StatusCode, Json<OperatorTokenCreated>), ApiError> {
    if !valid_name(&req.name) {
        return Err(ApiError::bad_request(
            "must be 1-128 characters of A-Z a-z 0-9 _ . -",
            Some("name".into()),
        ));
    }
    let token = new_secret(OPERATOR_PREFIX);
    let view = s
        .store
        .create_operator_token(
            &new_id("t_"),
            &req.name,
            req.role,
            &hash_secret(&token),
            &format!("token:{}", admin.who.name),
            now_ms(),
        )
        .await?;
    tracing::info!(id = %view.id, name = %view.name, role = %view.role, by = %admin.who.name, "Operator token created");
    Ok((
        StatusCode::CREATED,
        Json(OperatorTokenCreated { view, token }),
    ))
}

/// `GET /v1/tokens`.
#[utoipa::path(
    get,
    operation_id = "list_operator_tokens",
    path = "/v1/tokens",
    tag = "identity",
    responses((status = 200, description = "OK", body = OperatorTokenList)),
    security(("operator_token" = ["admin"]))
)]
pub async fn list_operator_tokens(
    State(s): State<AppState>,
    _admin: Admin,
) -> Result<Json<OperatorTokenList>, ApiError> {
    Ok(Json(OperatorTokenList {
        tokens: s.store.list_operator_tokens().await?,
    }))
}

/// `POST /v1/tokens/{id}/revoke`.
#[utoipa::path(
    post,
    operation_id = "revoke_operator_token",
    path = "/v1/tokens/{id}/revoke",
    tag = "identity",
    params(("id" = String, Path, description = "Operator token id", pattern = r"^[A-Za-z0-9_.\-]{1,128}$", example = "db-01")),
    responses(
        (status = 200, description = "Revoked", body = OperatorTokenView),
        (status = 404, description = "`not_found`: no such token", body = ErrorBody)
    ),
    security(("operator_token" = ["admin"]))
)]
pub async fn revoke_operator_token(
    State(s): State<AppState>,
    admin: Admin,
    NamePath(id): NamePath,
) -> Result<Json<OperatorTokenView>, ApiError> {
    let v = s.store.revoke_operator_token(&id, now_ms()).await?;
    tracing::warn!(id = %v.id, name = %v.name, by = %admin.who.name, "Operator token revoked");
    Ok(Json(v))
}

/// `GET /v1/whoami`.
#[utoipa::path(
    get,
    operation_id = "whoami",
    path = "/v1/whoami",
    tag = "identity",
    responses((status = 200, description = "The calling token", body = WhoAmI)),
    security(("operator_token" = ["viewer"]))
)]
pub async fn whoami(v: Viewer) -> Json<WhoAmI> {
    Json(WhoAmI {
        name: v.who.name,
        token_id: v.who.token_id,
        role: v.who.role,
    })
}

/// Query of `GET /v1/audit`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only entries of this actor (`operator:NAME`, `agent:ID`, `anonymous`).
    actor: Option<String>,
    /// Only entries with a smaller id (the next page).
    #[param(minimum = 1)]
    before: Option<i64>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// `GET /v1/audit`.
#[utoipa::path(
    get,
    operation_id = "list_audit",
    path = "/v1/audit",
    tag = "identity",
    params(AuditQuery),
    responses((status = 200, description = "Newest first", body = AuditList)),
    security(("operator_token" = ["admin"]))
)]
pub async fn audit_log(
    State(s): State<AppState>,
    _admin: Admin,
    QueryParams(q): QueryParams<AuditQuery>,
) -> Result<Json<AuditList>, ApiError> {
    let limit = super::page_limit(q.limit)?;
    if q.before.is_some_and(|b| b < 1) {
        return Err(ApiError::bad_request(
            "must be a positive entry id",
            Some("before".into()),
        ));
    }
    let mut list = s
        .store
        .list_audit(q.actor.as_deref(), q.before, limit)
        .await?;
    // Rows written before targets were bounded may hold long paths.
    for e in &mut list.entries {
        if e.target.len() > super::audit::MAX_TARGET {
            e.target = super::clip(&e.target, super::audit::MAX_TARGET);
        }
        if e.action.len() > super::audit::MAX_TARGET {
            e.action = super::clip(&e.action, super::audit::MAX_TARGET);
        }
    }
    Ok(Json(list))
}
