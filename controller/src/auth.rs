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

use std::marker::PhantomData;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use baton_proto::auth::{AGENT_SECRET_PREFIX, OPERATOR_PREFIX, Role};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::api::{ApiError, AppState};
use crate::store::identity::{AgentPrincipal, OperatorPrincipal};
use crate::store::now_ms;

/// SHA-256 of a secret, hex-encoded (what the store keeps).
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A new 256-bit secret with a kind prefix, e.g. `baton_op_<64 hex>`.
pub fn new_secret(prefix: &str) -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    format!("{prefix}{}", hex::encode(b))
}

/// A short random id for tokens (`t_…`, `e_…`).
pub fn new_id(prefix: &str) -> String {
    let mut b = [0u8; 6];
    rand::rng().fill_bytes(&mut b);
    format!("{prefix}{}", hex::encode(b))
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub enum Principal {
    /// An operator token.
    Operator(OperatorPrincipal),
    /// An agent secret.
    Agent(AgentPrincipal),
}

impl Principal {
    /// How the audit log names the caller.
    pub fn actor(&self) -> String {
        match self {
            Principal::Operator(o) => format!("token:{}", o.name),
            Principal::Agent(a) => format!("agent:{}", a.id),
        }
    }

    /// How the audit log names the role.
    pub fn role_name(&self) -> &'static str {
        match self {
            Principal::Operator(o) => o.role.as_str(),
            Principal::Agent(_) => "agent",
        }
    }
}

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

/// Whether the connection presented a client certificate that verified
/// against the configured client CA (set by the listener).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientCertVerified(pub bool);

/// Middleware: authenticate once, leave the outcome for the extractors.
pub async fn authenticate(State(s): State<AppState>, mut req: Request, next: Next) -> Response {
    let outcome = match bearer(req.headers()) {
        None => AuthOutcome::Anonymous,
        Some(Err(why)) => AuthOutcome::Refused(why),
        Some(Ok(token)) => match lookup(&s, token).await {
            Ok(Some(p)) => AuthOutcome::Known(p),
            Ok(None) => AuthOutcome::Refused("unknown or revoked token"),
            Err(e) => return axum::response::IntoResponse::into_response(e),
        },
    };
    req.extensions_mut().insert(outcome);
    next.run(req).await
}

async fn lookup(s: &AppState, token: &str) -> Result<Option<Principal>, ApiError> {
    let hash = hash_secret(token);
    if token.starts_with(OPERATOR_PREFIX) {
        Ok(s.store
            .operator_by_hash(&hash, now_ms())
            .await?
            .map(Principal::Operator))
    } else if token.starts_with(AGENT_SECRET_PREFIX) {
        Ok(s.store.agent_by_hash(&hash).await?.map(Principal::Agent))
    } else {
        Ok(None)
    }
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

fn outcome(parts: &Parts) -> AuthOutcome {
    parts
        .extensions
        .get::<AuthOutcome>()
        .cloned()
        .unwrap_or(AuthOutcome::Anonymous)
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

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        match outcome(parts) {
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
        let agent = match outcome(parts) {
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
mod tests {
    use super::*;

    #[test]
    fn secrets_are_prefixed_random_and_hashed() {
        let a = new_secret(OPERATOR_PREFIX);
        let b = new_secret(OPERATOR_PREFIX);
        assert!(a.starts_with(OPERATOR_PREFIX));
        assert_eq!(a.len(), OPERATOR_PREFIX.len() + 64);
        assert_ne!(a, b);
        assert_eq!(hash_secret(&a).len(), 64);
        assert_ne!(hash_secret(&a), hash_secret(&b));
        assert_eq!(
            hash_secret("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn bearer_parsing() {
        let mut h = axum::http::HeaderMap::new();
        assert!(bearer(&h).is_none());
        h.insert("authorization", "Bearer abc".parse().expect("hv"));
        assert_eq!(bearer(&h), Some(Ok("abc")));
        h.insert("authorization", "Basic abc".parse().expect("hv"));
        assert!(matches!(bearer(&h), Some(Err(_))));
    }
}
