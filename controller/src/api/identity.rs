//! Identity endpoints: enrollment, enrollment tokens, operator tokens, agent
//! revocation, whoami and the audit log.

use std::time::Instant;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use baton_proto::auth::{
    AGENT_SECRET_PREFIX, AgentRevoked, AuditList, ENROLLMENT_PREFIX, EnrollRequest, EnrollResponse,
    EnrollmentTokenCreate, EnrollmentTokenCreated, EnrollmentTokenList, EnrollmentTokenView,
    OPERATOR_PREFIX, OperatorTokenCreate, OperatorTokenCreated, OperatorTokenList,
    OperatorTokenView, WhoAmI,
};
use baton_proto::{ErrorCode, valid_name};
use serde::Deserialize;

use super::audit::AuditActor;
use super::{ApiError, AppState, JsonBody};
use crate::auth::{Admin, Viewer, hash_secret, new_id, new_secret};
use crate::listener::PeerAddr;
use crate::store::now_ms;

/// Longest an enrollment token may live.
const MAX_ENROLLMENT_TTL_MS: u64 = 30 * 24 * 3600 * 1000;

/// `POST /v1/agents/enroll`: spend an enrollment token, create the agent.
pub async fn enroll(
    State(s): State<AppState>,
    peer: Option<axum::Extension<PeerAddr>>,
    JsonBody(req): JsonBody<EnrollRequest>,
) -> Result<Response, ApiError> {
    if let Some(axum::Extension(PeerAddr(addr))) = peer
        && let Err(wait) = s.enroll_limit.check(addr.ip(), Instant::now())
    {
        let secs = wait.as_secs().max(1);
        let mut resp = ApiError::new(
            ErrorCode::RateLimited,
            format!(
                "too many enrollment attempts from {}; retry in {secs} s",
                addr.ip()
            ),
            None,
        )
        .into_response();
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, v);
        }
        return Ok(resp);
    }
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
pub async fn revoke_agent(
    State(s): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<AgentRevoked>, ApiError> {
    let r = s.store.revoke_agent(&id, now_ms()).await?;
    for g in &r.groups {
        s.wakers.wake(g);
    }
    tracing::warn!(agent_id = %id, by = %admin.who.name, jobs = ?r.jobs, "Agent revoked");
    Ok(Json(AgentRevoked {
        agent_id: id,
        revoked_at: crate::store::rows_ts(r.revoked_at),
        jobs_requeued: r.jobs,
    }))
}

/// `POST /v1/enrollment-tokens`.
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
pub async fn list_enrollment_tokens(
    State(s): State<AppState>,
    _admin: Admin,
) -> Result<Json<EnrollmentTokenList>, ApiError> {
    Ok(Json(EnrollmentTokenList {
        tokens: s.store.list_enrollment_tokens(now_ms()).await?,
    }))
}

/// `POST /v1/enrollment-tokens/{id}/revoke`.
pub async fn revoke_enrollment_token(
    State(s): State<AppState>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<EnrollmentTokenView>, ApiError> {
    Ok(Json(s.store.revoke_enrollment_token(&id, now_ms()).await?))
}

/// `POST /v1/tokens`.
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
pub async fn list_operator_tokens(
    State(s): State<AppState>,
    _admin: Admin,
) -> Result<Json<OperatorTokenList>, ApiError> {
    Ok(Json(OperatorTokenList {
        tokens: s.store.list_operator_tokens().await?,
    }))
}

/// `POST /v1/tokens/{id}/revoke`.
pub async fn revoke_operator_token(
    State(s): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<OperatorTokenView>, ApiError> {
    let v = s.store.revoke_operator_token(&id, now_ms()).await?;
    tracing::warn!(id = %v.id, name = %v.name, by = %admin.who.name, "Operator token revoked");
    Ok(Json(v))
}

/// `GET /v1/whoami`.
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
pub struct AuditQuery {
    actor: Option<String>,
    before: Option<i64>,
    limit: Option<u32>,
}

/// `GET /v1/audit`.
pub async fn audit_log(
    State(s): State<AppState>,
    _admin: Admin,
    q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AuditList>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text(), None))?;
    Ok(Json(
        s.store
            .list_audit(q.actor.as_deref(), q.before, q.limit.unwrap_or(100))
            .await?,
    ))
}
