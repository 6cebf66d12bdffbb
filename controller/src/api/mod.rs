//! The HTTP API (v1): routes, shared state, JSON bodies and JSON errors.
//!
//! - [`agent`]: poll, heartbeat, complete (one job or a batch), release.
//! - [`operator`]: jobs and agents for operators.
//! - [`batch`]: batch submission (`POST /v1/jobs/batch`).
//! - [`identity`]: enrollment, operator tokens, agent revocation, whoami, audit reads.
//! - [`drills`]: failover drills (start, list, report) and the holder's fault ack.
//! - [`audit`]: the middleware that records every state-changing call.
//! - [`ratelimit`]: per-address token buckets (enrollment).
//! - this module: [`AppState`], [`ApiError`] (every non-2xx is a JSON
//!   [`ErrorBody`]), [`JsonBody`] (bodies parsed with the failing field named).

pub mod agent;
pub mod audit;
pub mod batch;
pub mod drills;
pub mod identity;
pub mod operator;
pub mod ratelimit;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequest, Request};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use baton_proto::{ErrorBody, ErrorCode};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

use crate::config::Config;
use crate::dispatch::Wakers;
use crate::store::{self, Store};

/// State shared by every handler.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// The inside of [`AppState`].
pub struct Inner {
    /// The store.
    pub store: Store,
    /// Enrollment attempts per source address.
    pub enroll_limit: ratelimit::RateLimiter,
    /// The validated config.
    pub config: Config,
    /// Per-group wake-ups for pollers.
    pub wakers: Arc<Wakers>,
    /// Kicks the reaper when a lease is granted.
    pub reaper_kick: Arc<Notify>,
    /// Agent presence in memory (last_seen, free slots; what polls found).
    pub presence: Arc<crate::presence::Presence>,
    /// Set once the store is open and migrated, cleared on shutdown.
    pub ready: AtomicBool,
    /// The process's shutdown token: held polls answer at once when it fires.
    pub shutdown: tokio_util::sync::CancellationToken,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// Wrap the parts.
    pub fn new(inner: Inner) -> Self {
        AppState(Arc::new(inner))
    }
}

/// The router with every v1 route.
pub fn router(state: AppState) -> Router {
    let limit = state.config.max_body_bytes;
    // The agents' routine calls skip the middlewares: their extractor
    // authenticates, they are not audited, and a held long-poll (one per
    // agent) then keeps no middleware future alive.
    let routine = Router::new()
        .route("/v1/agents/{id}/poll", post(agent::poll))
        .route("/v1/jobs/{id}/heartbeat", post(agent::heartbeat));
    let rest = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/v1/agents/{id}/complete", post(agent::complete_batch))
        .route("/v1/jobs/{id}/complete", post(agent::complete))
        .route("/v1/jobs/{id}/release", post(agent::release))
        .route("/v1/jobs", post(operator::submit).get(operator::list))
        .route("/v1/jobs/batch", post(batch::submit_batch))
        .route("/v1/jobs/{id}", get(operator::get_job))
        .route("/v1/jobs/{id}/cancel", post(operator::cancel))
        .route("/v1/jobs/{id}/retry", post(operator::retry))
        .route("/v1/agents", get(operator::agents))
        .route("/v1/agents/enroll", post(identity::enroll))
        .route("/v1/agents/{id}/revoke", post(identity::revoke_agent))
        .route("/v1/agents/{id}/drain", post(operator::drain_agent))
        .route("/v1/agents/{id}/resume", post(operator::resume_agent))
        .route(
            "/v1/enrollment-tokens",
            post(identity::create_enrollment_token).get(identity::list_enrollment_tokens),
        )
        .route(
            "/v1/enrollment-tokens/{id}/revoke",
            post(identity::revoke_enrollment_token),
        )
        .route(
            "/v1/tokens",
            post(identity::create_operator_token).get(identity::list_operator_tokens),
        )
        .route(
            "/v1/tokens/{id}/revoke",
            post(identity::revoke_operator_token),
        )
        .route("/v1/whoami", get(identity::whoami))
        .route("/v1/audit", get(identity::audit_log))
        .route("/v1/drills", post(drills::start).get(drills::list))
        .route("/v1/drills/{id}", get(drills::show))
        .route("/v1/jobs/{id}/fault-ack", post(drills::fault_ack))
        .route("/metrics", get(crate::metrics::serve))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            audit::record,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::auth::authenticate,
        ));
    routine
        .merge(rest)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({"status": "ok"}))
}

async fn readyz(axum::extract::State(s): axum::extract::State<AppState>) -> Response {
    if !s.ready.load(Ordering::Acquire) {
        return ApiError::new(ErrorCode::NotReady, "starting or shutting down", None)
            .into_response();
    }
    if let Some((cause, detail)) = s.store.write_failure() {
        return ApiError::new(
            ErrorCode::StoreUnavailable,
            format!("the store cannot commit ({cause}): {detail}"),
            None,
        )
        .into_response();
    }
    match s.store.ping().await {
        Ok(()) => axum::Json(serde_json::json!({"status": "ready"})).into_response(),
        Err(e) => ApiError::new(ErrorCode::NotReady, format!("store: {e}"), None).into_response(),
    }
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such route", None)
}

/// An API error: a code, a message and maybe the field at fault.
#[derive(Debug, Clone)]
pub struct ApiError(pub ErrorBody);

impl ApiError {
    /// Build one.
    pub fn new(code: ErrorCode, message: impl Into<String>, field: Option<String>) -> Self {
        ApiError(ErrorBody::new(code, message, field))
    }
    /// 400 naming a field.
    pub fn bad_request(message: impl Into<String>, field: Option<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message, field)
    }
    /// 401.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, message, None)
    }
    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message, None)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.0.error.code;
        let status = StatusCode::from_u16(code.status()).unwrap_or(StatusCode::BAD_REQUEST);
        let mut resp = (status, axum::Json(self.0)).into_response();
        resp.extensions_mut().insert(code);
        resp
    }
}

impl From<store::Error> for ApiError {
    fn from(e: store::Error) -> Self {
        match e {
            store::Error::NotFound(_) | store::Error::Missing(_) => {
                ApiError::new(ErrorCode::NotFound, e.to_string(), None)
            }
            store::Error::Unauthorized(m) => ApiError::new(ErrorCode::Unauthorized, m, None),
            store::Error::Forbidden(m) => ApiError::new(ErrorCode::Forbidden, m, None),
            store::Error::LeaseLost(_) => {
                ApiError::new(ErrorCode::LeaseLost, e.to_string(), Some("token".into()))
            }
            store::Error::Conflict(_) => ApiError::new(ErrorCode::Conflict, e.to_string(), None),
            store::Error::IdempotencyConflict(_) => ApiError::new(
                ErrorCode::IdempotencyConflict,
                e.to_string(),
                Some(baton_proto::IDEMPOTENCY_KEY_HEADER.into()),
            ),
            // Logged once per change of state by the store's health.
            store::Error::Unavailable { cause, detail } => ApiError::new(
                ErrorCode::StoreUnavailable,
                format!("the store cannot commit ({cause}), nothing was changed: {detail}"),
                None,
            ),
            other => {
                tracing::error!(error = %other, "Store failure while serving a request");
                ApiError::new(ErrorCode::Internal, "internal store error", None)
            }
        }
    }
}

impl From<crate::validate::Error> for ApiError {
    fn from(e: crate::validate::Error) -> Self {
        ApiError::bad_request(e.message, Some(e.field))
    }
}

/// A `{id}` path segment that must be a job id (JSON 400 otherwise).
#[derive(Debug, Clone, Copy)]
pub struct JobIdPath(pub baton_proto::JobId);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for JobIdPath {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|e| ApiError::bad_request(e.body_text(), Some("id".into())))?;
        raw.parse().map(JobIdPath).map_err(|_| {
            ApiError::bad_request(format!("`{raw}` is not a job id"), Some("id".into()))
        })
    }
}

/// A JSON body whose parse errors name the failing field; too-large bodies are 413.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or_default();
            if !ct.starts_with("application/json") {
                return Err(ApiError::new(
                    ErrorCode::UnsupportedMediaType,
                    "Content-Type must be application/json",
                    None,
                ));
            }
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|r| {
                if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(ErrorCode::PayloadTooLarge, "request body too large", None)
                } else {
                    ApiError::bad_request(format!("cannot read body: {r}"), None)
                }
            })?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Parse JSON, naming the failing field (`spec.program`) in the error.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = inner.to_string();
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::bad_request(format!("malformed JSON: {msg}"), None);
        }
        let mut field = if path == "." { String::new() } else { path };
        let join = |field: &str, name: &str| {
            if field == name || field.ends_with(&format!(".{name}")) {
                field.to_owned()
            } else if field.is_empty() {
                name.to_owned()
            } else {
                format!("{field}.{name}")
            }
        };
        if let Some(name) = between(&msg, "missing field `", "`") {
            field = join(&field, name);
        } else if let Some(name) = between(&msg, "unknown field `", "`") {
            field = join(&field, name);
        } else if (msg.starts_with("unknown variant") && field.ends_with("spec"))
            || msg.contains("missing field `kind`")
        {
            field = join(&field, "kind");
        }
        ApiError::bad_request(msg, (!field.is_empty()).then_some(field))
    })
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let i = s.find(start)? + start.len();
    let j = s[i..].find(end)? + i;
    Some(&s[i..j])
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_proto::JobSubmit;

    fn field(body: &str) -> Option<String> {
        parse_json::<JobSubmit>(body.as_bytes())
            .expect_err("must fail")
            .0
            .error
            .field
    }

    #[test]
    fn json_errors_name_fields() {
        assert_eq!(
            field(r#"{"spec":{"kind":"noop"}}"#).as_deref(),
            Some("group")
        );
        assert_eq!(
            field(r#"{"group":"g","spec":{"kind":"command"}}"#).as_deref(),
            Some("spec.program")
        );
        assert_eq!(
            field(r#"{"group":"g","spec":{"kind":"rm"}}"#).as_deref(),
            Some("spec.kind")
        );
        assert_eq!(
            field(r#"{"group":"g","spec":{"kind":"noop"},"retry":{"max_attempts":"x"}}"#)
                .as_deref(),
            Some("retry.max_attempts")
        );
        assert_eq!(
            field(r#"{"group":"g","spec":{"kind":"noop"},"x":1}"#).as_deref(),
            Some("x")
        );
        assert_eq!(field("{not json"), None);
    }
}
