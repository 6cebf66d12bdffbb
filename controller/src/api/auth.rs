//! Who is calling, and may they do this.
//!
//! Every request passes [`authenticate`] (a middleware): the bearer token is
//! hashed (SHA-256; secrets are 256-bit random values, so a slow password hash
//! would only cost time on every poll) and looked up among active operator
//! tokens and agent secrets — the store holds nothing but hashes. The result
//! is put in the request's extensions; handlers then demand a role through
//! [`Authed`] (`Viewer`, `OperatorRole`, `Admin`) or an agent through
//! [`AgentCaller`]. After the handler, state-changing calls are written to the
//! audit log (see `api::audit`).
//!
//! Known credentials are kept in the store's
//! [`AuthCache`](crate::credentials::AuthCache) (SHA-256 of the token →
//! caller), so an agent's long polls do not each cost a store lookup. Every store path that changes a
//! credential (agent revocation, re-enrollment, operator token revocation)
//! invalidates it before it answers: a revoked credential is refused on its
//! next call. Unknown tokens are never cached.

use std::marker::PhantomData;
use std::time::Instant;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use baton_proto::auth::{AGENT_SECRET_PREFIX, OPERATOR_PREFIX, Role};

use super::{ApiError, AppState};
use crate::credentials::{OperatorPrincipal, Principal};
use crate::listener::{ClientCertVerified, PeerAddr};
use crate::store::{Store, now_ms};

/// What authentication concluded; stored in the request extensions.
#[derive(Debug, Clone)]
pub enum AuthOutcome {
    /// No Authorization header.
    Anonymous,
    /// A known, active credential.
    Known(Principal),
    /// A header that is malformed, unknown or revoked.
    Refused(&'static str),
}

/// Middleware: authenticate once, leave the outcome for the extractors.
///
/// The lookup runs in its own (boxed) future: what stays alive while the
/// request runs is only `next`'s future. The agents' long-poll and heartbeat
/// routes are outside this middleware: their extractor authenticates
/// ([`AgentCaller`]), so a held poll keeps no middleware future at all.
///
/// A request without a known credential is admitted only within the
/// limits of `api::limits` (per address and overall), before its handler
/// runs or its body is read; its slot is held until the answer is made.
pub async fn authenticate(State(s): State<AppState>, mut req: Request, next: Next) -> Response {
    let on_ui = req.uri().path().starts_with(UI_PREFIX);
    let resolved = match session_cookie(req.headers()).filter(|_| on_ui) {
        Some(id) if bearer(req.headers()).is_none() => Box::pin(session(&s.store, id)).await,
        _ => resolve(&s, req.headers()).await,
    };
    let outcome = match resolved {
        Ok(o) => o,
        Err(e) => return axum::response::IntoResponse::into_response(e),
    };
    let permit = match outcome {
        AuthOutcome::Known(_) => None,
        // Probes stay answerable during a flood.
        _ if matches!(req.uri().path(), "/healthz" | "/readyz") => None,
        AuthOutcome::Anonymous | AuthOutcome::Refused(_) => {
            let ip = req.extensions().get::<PeerAddr>().map(|p| p.0.ip());
            match s.limits.admit(ip) {
                Ok(p) => Some(p),
                Err(busy) => return super::limits::busy_response(busy, ip),
            }
        }
    };
    drop(s);
    req.extensions_mut().insert(outcome);
    let resp = next.run(req).await;
    drop(permit);
    resp
}

/// Who the request's bearer token names.
async fn resolve(s: &AppState, headers: &axum::http::HeaderMap) -> Result<AuthOutcome, ApiError> {
    Ok(match bearer(headers) {
        None => AuthOutcome::Anonymous,
        Some(Err(why)) => AuthOutcome::Refused(why),
        Some(Ok(token)) => match Box::pin(lookup(&s.store, token)).await? {
            Some(p) => {
                crate::api::trace::identified(&p.actor());
                AuthOutcome::Known(p)
            }
            None => AuthOutcome::Refused("unknown or revoked token"),
        },
    })
}

/// Paths under which the dashboard's session cookie stands for its
/// operator token (`ui`); everywhere else only a bearer token does.
pub const UI_PREFIX: &str = "/ui/";

/// The dashboard's session cookie (HttpOnly, SameSite=Strict; `ui::session`).
pub const SESSION_COOKIE: &str = "baton_session";

/// The value of the session cookie, when the request carries one.
pub fn session_cookie(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value)
        .filter(|v| !v.is_empty())
}

/// Who a dashboard session (its id, from the cookie) belongs to: the
/// operator token it signed in with, while the session lasts and the token
/// is active. Looked up in the store every time (several controllers share
/// the sessions; sign-out and revocation take effect at once).
async fn session(store: &Store, id: &str) -> Result<AuthOutcome, ApiError> {
    let hash = crate::credentials::hash_secret(id);
    Ok(match store.session_by_hash(&hash, now_ms()).await? {
        Some(o) => {
            let p = Principal::Operator(o);
            crate::api::trace::identified(&p.actor());
            AuthOutcome::Known(p)
        }
        None => AuthOutcome::Refused("the session has ended; sign in again"),
    })
}

/// The caller `token` belongs to: from the cache, else from the store (and
/// then cached). `None` for an unknown, revoked or malformed token.
async fn lookup(store: &Store, token: &str) -> crate::store::Result<Option<Principal>> {
    let is_operator = token.starts_with(OPERATOR_PREFIX);
    if !is_operator && !token.starts_with(AGENT_SECRET_PREFIX) {
        return Ok(None);
    }
    let key = crate::credentials::cache_key(token);
    let cache = store.auth_cache();
    let now = Instant::now();
    if let Some(p) = cache.get(&key, now) {
        return Ok(Some(p));
    }
    // Read the epoch BEFORE the store: an invalidation after this point
    // makes `insert` drop what the lookup found.
    let epoch = cache.epoch();
    let hash = hex::encode(key);
    let found = if is_operator {
        store
            .operator_by_hash(&hash, now_ms())
            .await?
            .map(Principal::Operator)
    } else {
        store.agent_by_hash(&hash).await?.map(Principal::Agent)
    };
    if let Some(p) = &found {
        cache.insert(key, p.clone(), epoch, now);
    }
    Ok(found)
}

fn bearer(headers: &axum::http::HeaderMap) -> Option<Result<&str, &'static str>> {
    let value = headers.get(axum::http::header::AUTHORIZATION)?;
    let Ok(value) = value.to_str() else {
        return Some(Err("malformed Authorization header"));
    };
    Some(
        value
            .strip_prefix("Bearer ")
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or("Authorization must be `Bearer <token>`"),
    )
}

/// The middleware's outcome, or — on a route outside it — resolved now
/// (and kept for the rest of the request).
async fn outcome(parts: &mut Parts, s: &AppState) -> Result<AuthOutcome, ApiError> {
    if let Some(o) = parts.extensions.get::<AuthOutcome>() {
        return Ok(o.clone());
    }
    let o = resolve(s, &parts.headers).await?;
    parts.extensions.insert(o.clone());
    Ok(o)
}

/// A role an endpoint demands.
pub trait RoleReq {
    /// The least role allowed.
    const ROLE: Role;
}

/// Read-only endpoints.
#[derive(Debug)]
pub struct ViewerReq;
impl RoleReq for ViewerReq {
    const ROLE: Role = Role::Viewer;
}
/// Job-changing endpoints.
#[derive(Debug)]
pub struct OperatorReq;
impl RoleReq for OperatorReq {
    const ROLE: Role = Role::Operator;
}
/// Token, enrollment, revocation and audit endpoints.
#[derive(Debug)]
pub struct AdminReq;
impl RoleReq for AdminReq {
    const ROLE: Role = Role::Admin;
}

/// An operator token holding at least role `R::ROLE`.
#[derive(Debug)]
pub struct Authed<R> {
    /// The caller.
    pub who: OperatorPrincipal,
    _role: PhantomData<R>,
}

/// Any operator token.
pub type Viewer = Authed<ViewerReq>;
/// An operator or admin token.
pub type OperatorRole = Authed<OperatorReq>;
/// An admin token.
pub type Admin = Authed<AdminReq>;

impl<R: RoleReq> FromRequestParts<AppState> for Authed<R> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, ApiError> {
        match outcome(parts, s).await? {
            AuthOutcome::Known(Principal::Operator(o)) if o.role.allows(R::ROLE) => Ok(Authed {
                who: o,
                _role: PhantomData,
            }),
            AuthOutcome::Known(Principal::Operator(o)) => Err(ApiError::forbidden(format!(
                "role {} may not do this; {} is needed",
                o.role,
                R::ROLE
            ))),
            AuthOutcome::Known(Principal::Agent(_)) => Err(ApiError::forbidden(
                "agent credentials cannot call operator endpoints",
            )),
            AuthOutcome::Anonymous => Err(ApiError::unauthorized(
                "missing Authorization: Bearer token",
            )),
            AuthOutcome::Refused(why) => Err(ApiError::unauthorized(why)),
        }
    }
}

/// An authenticated agent (and, when mTLS is required, over a verified client certificate).
#[derive(Debug, Clone)]
pub struct AgentCaller {
    /// Agent id.
    pub id: String,
    /// Groups its enrollment granted.
    pub allowed_groups: Vec<String>,
}

impl FromRequestParts<AppState> for AgentCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, ApiError> {
        let agent = match outcome(parts, s).await? {
            AuthOutcome::Known(Principal::Agent(a)) => a,
            AuthOutcome::Known(Principal::Operator(_)) => {
                return Err(ApiError::forbidden(
                    "operator credentials cannot call agent endpoints",
                ));
            }
            AuthOutcome::Anonymous => {
                return Err(ApiError::unauthorized(
                    "missing Authorization: Bearer token",
                ));
            }
            AuthOutcome::Refused(why) => return Err(ApiError::unauthorized(why)),
        };
        if s.config
            .tls
            .as_ref()
            .is_some_and(|t| t.require_agent_client_cert)
        {
            let verified = parts
                .extensions
                .get::<ClientCertVerified>()
                .is_some_and(|c| c.0);
            if !verified {
                return Err(ApiError::unauthorized(
                    "agents must present a client certificate signed by the configured client CA",
                ));
            }
        }
        if let Some(claimed) = parts
            .headers
            .get(baton_proto::AGENT_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            && claimed != agent.id
        {
            return Err(ApiError::forbidden(format!(
                "header {} says `{claimed}` but the secret belongs to `{}`",
                baton_proto::AGENT_ID_HEADER,
                agent.id
            )));
        }
        Ok(AgentCaller {
            id: agent.id,
            allowed_groups: agent.allowed_groups,
        })
    }
}

#[cfg(test)]
mod tests;
