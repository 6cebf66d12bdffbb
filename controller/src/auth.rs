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
//! Known credentials are kept in an [`AuthCache`] (SHA-256 of the token →
//! caller), so an agent's long polls do not each cost a store lookup. It is
//! bounded ([`CACHE_ENTRIES`]), an entry is trusted for [`CACHE_TTL`] at most
//! (a backstop for changes made by another process), and every store path
//! that changes a credential (agent revocation, re-enrollment, operator token
//! revocation) invalidates it before it answers: a revoked credential is
//! refused on its next call. Unknown tokens are never cached. An epoch
//! counter keeps a lookup that raced an invalidation from putting the stale
//! caller back.

use std::marker::PhantomData;
use std::time::Instant;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use baton_proto::auth::{AGENT_SECRET_PREFIX, OPERATOR_PREFIX, Role};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::api::{ApiError, AppState};
pub use crate::store::credentials::{AuthCache, CACHE_ENTRIES, CACHE_TTL, CacheKey, Principal};
use crate::store::identity::OperatorPrincipal;
use crate::store::{Store, now_ms};

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
    let outcome = match resolve(&s, req.headers()).await {
        Ok(o) => o,
        Err(e) => return axum::response::IntoResponse::into_response(e),
    };
    let permit = match outcome {
        AuthOutcome::Known(_) => None,
        // Probes stay answerable during a flood.
        _ if matches!(req.uri().path(), "/healthz" | "/readyz") => None,
        AuthOutcome::Anonymous | AuthOutcome::Refused(_) => {
            let ip = req
                .extensions()
                .get::<crate::listener::PeerAddr>()
                .map(|p| p.0.ip());
            match s.limits.admit(ip) {
                Ok(p) => Some(p),
                Err(busy) => return crate::api::limits::busy_response(busy, ip),
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
            Some(p) => AuthOutcome::Known(p),
            None => AuthOutcome::Refused("unknown or revoked token"),
        },
    })
}

/// The caller `token` belongs to: from the cache, else from the store (and
/// then cached). `None` for an unknown, revoked or malformed token.
async fn lookup(store: &Store, token: &str) -> crate::store::Result<Option<Principal>> {
    let is_operator = token.starts_with(OPERATOR_PREFIX);
    if !is_operator && !token.starts_with(AGENT_SECRET_PREFIX) {
        return Ok(None);
    }
    let key: CacheKey = Sha256::digest(token.as_bytes()).into();
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
mod tests {
    use super::*;
    use crate::store::identity::AgentPrincipal;

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

    use crate::store::testutil::store;

    fn key(token: &str) -> CacheKey {
        Sha256::digest(token.as_bytes()).into()
    }

    /// Enroll `id` for `groups` with a fresh secret; returns the secret.
    async fn enroll(s: &Store, id: &str, groups: &[&str]) -> String {
        let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        let enr = new_secret("enr_");
        s.create_enrollment_token(
            &new_id("e_"),
            &hash_secret(&enr),
            &groups,
            "",
            "test",
            i64::MAX,
            0,
        )
        .await
        .expect("enrollment token");
        let secret = new_secret(AGENT_SECRET_PREFIX);
        s.enroll(&hash_secret(&enr), id, &hash_secret(&secret), "test", 0)
            .await
            .expect("enroll");
        secret
    }

    fn agent_id(p: Option<Principal>) -> Option<String> {
        match p {
            Some(Principal::Agent(a)) => Some(a.id),
            _ => None,
        }
    }

    #[tokio::test]
    async fn a_revoked_agent_is_refused_at_once_even_when_cached() {
        let (s, _d) = store().await;
        let secret = enroll(&s, "a1", &["db"]).await;
        let first = lookup(&s, &secret).await.expect("lookup");
        assert_eq!(agent_id(first), Some("a1".into()));
        // Cached now: the next call is answered from memory.
        assert!(s.auth_cache().get(&key(&secret), Instant::now()).is_some());
        assert_eq!(
            agent_id(lookup(&s, &secret).await.expect("lookup")),
            Some("a1".into())
        );
        s.revoke_agent("a1", 10).await.expect("revoke");
        assert!(s.auth_cache().get(&key(&secret), Instant::now()).is_none());
        assert!(lookup(&s, &secret).await.expect("lookup").is_none());
        // A refusal is not cached either.
        assert!(s.auth_cache().is_empty());
    }

    #[tokio::test]
    async fn re_enrollment_replaces_the_cached_secret_and_groups() {
        let (s, _d) = store().await;
        let old = enroll(&s, "a1", &["db"]).await;
        assert!(lookup(&s, &old).await.expect("lookup").is_some());
        s.revoke_agent("a1", 10).await.expect("revoke");
        let new = enroll(&s, "a1", &["web"]).await;
        assert!(lookup(&s, &old).await.expect("lookup").is_none());
        match lookup(&s, &new).await.expect("lookup") {
            Some(Principal::Agent(a)) => assert_eq!(a.allowed_groups, vec!["web".to_string()]),
            other => panic!("new secret refused: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_revoked_operator_token_is_refused_at_once_even_when_cached() {
        let (s, _d) = store().await;
        let admin = new_secret(OPERATOR_PREFIX);
        let viewer = new_secret(OPERATOR_PREFIX);
        s.create_operator_token("t1", "root", Role::Admin, &hash_secret(&admin), "init", 0)
            .await
            .expect("create");
        s.create_operator_token("t2", "ro", Role::Viewer, &hash_secret(&viewer), "init", 0)
            .await
            .expect("create");
        for t in [&admin, &viewer] {
            assert!(matches!(
                lookup(&s, t).await.expect("lookup"),
                Some(Principal::Operator(_))
            ));
        }
        assert_eq!(s.auth_cache().len(), 2);
        s.revoke_operator_token("t1", 10).await.expect("revoke");
        assert!(lookup(&s, &admin).await.expect("lookup").is_none());
        // The other token stays cached and accepted.
        assert!(s.auth_cache().get(&key(&viewer), Instant::now()).is_some());
        match lookup(&s, &viewer).await.expect("lookup") {
            Some(Principal::Operator(o)) => {
                assert_eq!((o.name.as_str(), o.role), ("ro", Role::Viewer))
            }
            other => panic!("viewer refused: {other:?}"),
        }
    }

    #[tokio::test]
    async fn unknown_and_malformed_tokens_are_not_cached() {
        let (s, _d) = store().await;
        for t in [
            new_secret(OPERATOR_PREFIX),
            new_secret(AGENT_SECRET_PREFIX),
            "not-a-baton-token".to_string(),
        ] {
            assert!(lookup(&s, &t).await.expect("lookup").is_none());
        }
        assert!(s.auth_cache().is_empty());
    }

    fn agent(id: &str) -> Principal {
        Principal::Agent(AgentPrincipal {
            id: id.into(),
            allowed_groups: vec![],
        })
    }

    #[test]
    fn a_lookup_that_raced_an_invalidation_is_not_cached() {
        let c = AuthCache::default();
        let now = Instant::now();
        let epoch = c.epoch();
        // The store said "a1" before its revocation committed...
        c.forget_agent("a1");
        // ... so that answer must not come back.
        c.insert(key("x"), agent("a1"), epoch, now);
        assert!(c.get(&key("x"), now).is_none());
        c.insert(key("x"), agent("a1"), c.epoch(), now);
        assert!(c.get(&key("x"), now).is_some());
    }

    #[test]
    fn entries_expire_and_the_cache_is_bounded() {
        let c = AuthCache::default();
        let now = Instant::now();
        c.insert(key("x"), agent("a1"), c.epoch(), now);
        assert!(c.get(&key("x"), now + CACHE_TTL / 2).is_some());
        assert!(c.get(&key("x"), now + CACHE_TTL).is_none());
        assert_eq!(c.hits_and_misses(), (1, 1));
        for i in 0..CACHE_ENTRIES + 10 {
            c.insert(key(&i.to_string()), agent("a"), c.epoch(), now);
        }
        assert_eq!(c.len(), CACHE_ENTRIES);
        // Stale entries make room for new ones.
        let later = now + CACHE_TTL;
        c.insert(key("new"), agent("b"), c.epoch(), later);
        assert_eq!(c.len(), 1);
        assert!(c.get(&key("new"), later).is_some());
        c.clear();
        assert!(c.is_empty());
    }
}
