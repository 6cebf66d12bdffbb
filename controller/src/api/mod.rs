//! The HTTP API (v1): routes, shared state, JSON bodies and JSON errors.
//!
//! - [`auth`]: the authentication middleware and the role and agent extractors.
//! - [`agent`]: poll, heartbeat, complete (one job or a batch), release,
//!   abandon (a restarted agent's previous leases).
//! - [`operator`]: jobs and agents for operators.
//! - [`batch`]: batch submission (`POST /v1/jobs/batch`).
//! - [`identity`]: enrollment, operator tokens, agent revocation, whoami, audit reads.
//! - [`schedules`]: schedules (define, pause, resume, trigger, backfill,
//!   history, next).
//! - [`pipelines`]: pipelines and their runs (define, run, cancel, retry).
//! - [`notifications`]: webhook deliveries (`GET /v1/notifications/deliveries`).
//! - [`drills`]: failover drills (start, list, report) and the holder's fault ack.
//! - [`audit`]: the middleware that records every state-changing call.
//! - [`limits`]: limits for callers without a credential (concurrency,
//!   enrollment rate, audit rows of refused calls).
//! - [`metrics`]: `GET /metrics` in the Prometheus text format.
//! - [`openapi`]: the OpenAPI 3.1 document (`GET /openapi.json`), generated
//!   from the `#[utoipa::path]` annotation next to each handler.
//! - [`trace`]: the request span (method, route, actor, status, latency) and
//!   one line per answer.
//! - this module: [`AppState`], [`ApiError`] (every non-2xx is a JSON
//!   [`ErrorBody`]), [`JsonBody`] (bodies parsed with the failing field named).
//!
//! Handlers parse, call a service (`jobs`, `dispatch`, `drills`) or read the
//! store, and map the service's error to an [`ApiError`] (the `From` impls
//! below). No service sees an `ApiError` or the [`AppState`].

pub mod agent;
pub mod audit;
pub mod auth;
pub mod batch;
pub mod drills;
pub mod identity;
pub mod limits;
pub mod metrics;
pub mod notifications;
pub mod openapi;
pub mod operator;
pub mod pipelines;
pub mod schedules;
pub mod trace;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequest, Request};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use baton_proto::{ErrorBody, ErrorCode};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

use crate::config::Config;
use crate::dispatch;
use crate::jobs;
use crate::jobs::Jobs;
use crate::presence;
use crate::store::{self, Store};

/// State shared by every handler.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// The inside of [`AppState`].
pub struct Inner {
    /// The store (reads; writes that give a group work go through `jobs`).
    pub store: Store,
    /// The jobs service: writes that can give a group work, then its wake-up.
    pub jobs: Jobs,
    /// Schedules and pipelines (definitions, runs; the timer shares it).
    pub schedules: crate::schedules::Schedules,
    /// Limits for callers without a credential.
    pub limits: Arc<limits::Limits>,
    /// The validated config.
    pub config: Config,
    /// Kicks the reaper when a lease is granted.
    pub reaper_kick: Arc<Notify>,
    /// Agent presence in memory (last_seen, free slots; what polls found).
    pub presence: Arc<crate::presence::Presence>,
    /// Placement at submit: the snapshot of groups and connections.
    pub placement: crate::placement::Placement,
    /// Set once the store is open and migrated, cleared on shutdown.
    pub ready: AtomicBool,
    /// The process's shutdown token: held polls answer at once when it fires.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// The store's figures for `/metrics`, read at most once a second.
    pub metrics: metrics::Cache,
    /// Notification deliveries by result (for `/metrics`).
    pub notify_counters: Arc<crate::notify::DeliveryCounters>,
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

/// Body limit of routes whose bodies are a few small fields (enrollment,
/// tokens, drain, cancel, release, …): a stranger's enrollment never needs
/// more, and nothing larger is buffered for them.
pub const SMALL_BODY_BYTES: usize = 16 << 10;

/// A route's own body limit, below `max_body_bytes` (see [`small`]).
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// `route` with the small body limit: a declared `Content-Length` above it
/// is refused before anything is read, a longer chunked body once the limit
/// is passed.
fn small(route: MethodRouter<AppState>) -> MethodRouter<AppState> {
    route
        .layer::<_, std::convert::Infallible>(DefaultBodyLimit::max(SMALL_BODY_BYTES))
        .layer::<_, std::convert::Infallible>(axum::Extension(BodyLimit(SMALL_BODY_BYTES)))
}

/// The router with every v1 route.
pub fn router(state: AppState) -> Router {
    router_with(state, Router::new())
}

/// The router with every v1 route and `pages` (the dashboard, `ui`) behind
/// the same middlewares: authentication (there the session cookie counts
/// on `/ui/…`), the audit of every state-changing call, the request span.
/// `pages` has no fallback of its own.
pub fn router_with(state: AppState, pages: Router<AppState>) -> Router {
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
        .route("/v1/agents/{id}/leases/abandon", post(agent::abandon))
        .route("/v1/jobs/{id}/complete", post(agent::complete))
        .route("/v1/jobs/{id}/release", small(post(agent::release)))
        .route("/v1/jobs", post(operator::submit).get(operator::list))
        .route("/v1/jobs/batch", post(batch::submit_batch))
        .route("/v1/jobs/{id}", get(operator::get_job))
        .route("/v1/jobs/{id}/cancel", small(post(operator::cancel)))
        .route("/v1/jobs/{id}/retry", small(post(operator::retry)))
        .route("/v1/agents", get(operator::agents))
        .route("/v1/agents/enroll", small(post(identity::enroll)))
        .route(
            "/v1/agents/{id}/revoke",
            small(post(identity::revoke_agent)),
        )
        .route("/v1/agents/{id}/drain", small(post(operator::drain_agent)))
        .route(
            "/v1/agents/{id}/resume",
            small(post(operator::resume_agent)),
        )
        .route(
            "/v1/enrollment-tokens",
            small(post(identity::create_enrollment_token)).get(identity::list_enrollment_tokens),
        )
        .route(
            "/v1/enrollment-tokens/{id}/revoke",
            small(post(identity::revoke_enrollment_token)),
        )
        .route(
            "/v1/tokens",
            small(post(identity::create_operator_token)).get(identity::list_operator_tokens),
        )
        .route(
            "/v1/tokens/{id}/revoke",
            small(post(identity::revoke_operator_token)),
        )
        .route("/v1/whoami", get(identity::whoami))
        .route("/v1/audit", get(identity::audit_log))
        .route(
            "/v1/notifications/deliveries",
            get(notifications::deliveries),
        )
        .merge(schedule_routes())
        .route("/v1/drills", post(drills::start).get(drills::list))
        .route("/v1/drills/{id}", get(drills::show))
        .route("/v1/jobs/{id}/fault-ack", small(post(drills::fault_ack)))
        .route("/metrics", get(metrics::serve))
        .merge(pages)
        .route("/openapi.json", get(openapi::serve))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            audit::record,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ));
    routine
        .merge(rest)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(trace::RequestSpan)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Schedules, pipelines and runs (`api::schedules`, `api::pipelines`).
fn schedule_routes() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/schedules",
            post(schedules::create).get(schedules::list),
        )
        .route(
            "/v1/schedules/{id}",
            get(schedules::show)
                .put(schedules::put)
                .delete(schedules::delete),
        )
        .route("/v1/schedules/{id}/pause", small(post(schedules::pause)))
        .route("/v1/schedules/{id}/resume", small(post(schedules::resume)))
        .route(
            "/v1/schedules/{id}/trigger",
            small(post(schedules::trigger)),
        )
        .route(
            "/v1/schedules/{id}/backfill",
            small(post(schedules::backfill)),
        )
        .route("/v1/schedules/{id}/history", get(schedules::history))
        .route("/v1/schedules/{id}/next", get(schedules::next))
        .route(
            "/v1/pipelines",
            post(pipelines::create).get(pipelines::list),
        )
        .route(
            "/v1/pipelines/{id}",
            get(pipelines::show)
                .put(pipelines::put)
                .delete(pipelines::delete),
        )
        .route(
            "/v1/pipelines/{id}/runs",
            post(pipelines::run).get(pipelines::runs),
        )
        .route("/v1/runs/{id}", get(pipelines::show_run))
        .route("/v1/runs/{id}/cancel", small(post(pipelines::cancel_run)))
        .route("/v1/runs/{id}/retry", small(post(pipelines::retry_run)))
}

/// `GET /healthz`: the process is up (no store access).
#[utoipa::path(
    get,
    operation_id = "healthz",
    path = "/healthz",
    tag = "health",
    responses((status = 200, description = "Alive", body = openapi::Status))
)]
async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({"status": "ok"}))
}

/// `GET /readyz`: the store is open, migrated and can commit.
#[utoipa::path(
    get,
    operation_id = "readyz",
    path = "/readyz",
    tag = "health",
    responses(
        (status = 200, description = "Ready", body = openapi::Status),
        (status = 503, description = "`not_ready`: starting, shutting down or the store does not answer; `store_unavailable`: the store cannot commit", body = ErrorBody)
    )
)]
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

async fn method_not_allowed(method: axum::http::Method) -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!("this route does not take {method}"),
        None,
    )
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
            // A connection lost while committing leaves the commit in
            // doubt: say so rather than "nothing was changed".
            store::Error::Unavailable { cause, detail } => ApiError::new(
                ErrorCode::StoreUnavailable,
                if cause == store::health::Cause::Unreachable {
                    format!(
                        "the store cannot commit ({cause}); a write whose connection was lost while committing may have been applied, so retry it with the same Idempotency-Key: {detail}"
                    )
                } else {
                    format!("the store cannot commit ({cause}), nothing was changed: {detail}")
                },
                None,
            ),
            other => {
                tracing::error!(error = %other, "Store failure while serving a request");
                ApiError::new(ErrorCode::Internal, "internal store error", None)
            }
        }
    }
}

impl From<jobs::Error> for ApiError {
    fn from(e: jobs::Error) -> Self {
        match e {
            jobs::Error::Store(e) => e.into(),
        }
    }
}

impl From<dispatch::Error> for ApiError {
    fn from(e: dispatch::Error) -> Self {
        match e {
            dispatch::Error::NotReady => ApiError::new(ErrorCode::NotReady, e.to_string(), None),
            dispatch::Error::Jobs(e) => e.into(),
            dispatch::Error::Presence(presence::Error::Store(e)) => e.into(),
            dispatch::Error::Store(e) => e.into(),
        }
    }
}

impl From<crate::drills::Error> for ApiError {
    fn from(e: crate::drills::Error) -> Self {
        match e {
            crate::drills::Error::Invalid { field, message } => {
                ApiError::bad_request(message, Some(field))
            }
            crate::drills::Error::NotAllowed { field, message }
            | crate::drills::Error::Unfit { field, message } => {
                ApiError::new(ErrorCode::Unprocessable, message, Some(field))
            }
            crate::drills::Error::NoSuchDrill(m) => {
                ApiError::new(ErrorCode::NotFound, m, Some("drill_id".into()))
            }
            crate::drills::Error::Jobs(e) => e.into(),
            crate::drills::Error::Store(e) => e.into(),
        }
    }
}

impl From<crate::schedules::Error> for ApiError {
    fn from(e: crate::schedules::Error) -> Self {
        match e {
            crate::schedules::Error::Invalid { field, message } => {
                ApiError::new(ErrorCode::Unprocessable, message, Some(field))
            }
            crate::schedules::Error::Jobs(e) => e.into(),
            crate::schedules::Error::Store(e) => e.into(),
        }
    }
}

impl From<crate::placement::Error> for ApiError {
    fn from(e: crate::placement::Error) -> Self {
        match e {
            crate::placement::Error::Store(e) => e.into(),
        }
    }
}

/// A refusal the document states is 400 `bad_request`; one by a rule it
/// cannot state (across fields, bytes, `sql_type`, configured limits) is 422
/// `unprocessable`. Both name the field.
impl From<crate::validate::Error> for ApiError {
    fn from(e: crate::validate::Error) -> Self {
        let code = match e.kind {
            crate::validate::Kind::Malformed => ErrorCode::BadRequest,
            crate::validate::Kind::Unprocessable => ErrorCode::Unprocessable,
        };
        ApiError::new(code, e.message, Some(e.field))
    }
}

/// A numeric id as written in a path or query: 1 to 19 ASCII digits, no
/// sign, no leading zero, at most `i64::MAX` (`+1`, `01` and `-1` are not
/// ids).
pub fn parse_id(raw: &str) -> Option<i64> {
    let canonical = !raw.is_empty()
        && raw.len() <= 19
        && raw.bytes().all(|b| b.is_ascii_digit())
        && !raw.starts_with('0');
    canonical.then(|| raw.parse().ok()).flatten()
}

/// The `{id}` segment as text; a segment that is not UTF-8 after
/// percent-decoding is a JSON 400 naming `id`.
async fn raw_id(parts: &mut axum::http::request::Parts) -> Result<String, ApiError> {
    <axum::extract::Path<String> as axum::extract::FromRequestParts<()>>::from_request_parts(
        parts,
        &(),
    )
    .await
    .map(|axum::extract::Path(raw)| raw)
    .map_err(|e| ApiError::bad_request(e.body_text(), Some("id".into())))
}

/// A `{id}` path segment that must be a job id (JSON 400 naming `id` otherwise).
#[derive(Debug, Clone, Copy)]
pub struct JobIdPath(pub baton_proto::JobId);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for JobIdPath {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, ApiError> {
        let raw = raw_id(parts).await?;
        parse_id(&raw).map(JobIdPath).ok_or_else(|| {
            ApiError::bad_request(
                format!(
                    "`{}` is not an id (a positive decimal number)",
                    clip(&raw, 64)
                ),
                Some("id".into()),
            )
        })
    }
}

/// A `{id}` path segment naming an agent, token or enrollment token: 1-128
/// characters of `A-Z a-z 0-9 _ . -` (JSON 400 naming `id` otherwise).
#[derive(Debug, Clone)]
pub struct NamePath(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for NamePath {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, ApiError> {
        let raw = raw_id(parts).await?;
        if baton_proto::valid_name(&raw) {
            Ok(NamePath(raw))
        } else {
            Err(ApiError::bad_request(
                "must be 1-128 characters of A-Z a-z 0-9 _ . -",
                Some("id".into()),
            ))
        }
    }
}

pub use crate::validate::clip;

/// A query string parsed into `T`, errors naming the parameter
/// (`limit: invalid digit found in string`, field `limit`).
#[derive(Debug)]
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(QueryParams)
            .map_err(|e| {
                let path = e.path().to_string();
                let msg = e.into_inner().to_string();
                let field = between(&msg, "unknown field `", "`")
                    .map(str::to_owned)
                    .or_else(|| (path != ".").then_some(path));
                ApiError::bad_request(format!("query: {msg}"), field)
            })
    }
}

/// A page size given as `limit`: 1 to 1000, default 100 (400 naming `limit`).
pub fn page_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    match limit {
        None => Ok(100),
        Some(n @ 1..=1000) => Ok(n),
        Some(_) => Err(ApiError::bad_request(
            "must be between 1 and 1000",
            Some("limit".into()),
        )),
    }
}

/// A JSON body whose parse errors name the failing field; too-large bodies
/// are 413 (a declared `Content-Length` over the route's limit before
/// anything is read), a body that does not arrive within
/// `body_read_timeout` is 408; both close the connection.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = Response;

    async fn from_request(req: Request, s: &AppState) -> Result<Self, Response> {
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or_default();
            if !ct.starts_with("application/json") {
                return Err(ApiError::new(
                    ErrorCode::UnsupportedMediaType,
                    "Content-Type must be application/json",
                    None,
                )
                .into_response());
            }
        }
        let limit = req
            .extensions()
            .get::<BodyLimit>()
            .map_or(s.config.max_body_bytes, |l| l.0);
        let too_large = || {
            limits::closing(
                ApiError::new(
                    ErrorCode::PayloadTooLarge,
                    format!("request body too large: at most {limit} bytes here"),
                    None,
                ),
                None,
            )
        };
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let timeout = s.config.body_read_timeout;
        let read = tokio::time::timeout(timeout, axum::body::Bytes::from_request(req, s)).await;
        let bytes = match read {
            Err(_) => {
                return Err(limits::closing(
                    ApiError::new(
                        ErrorCode::RequestTimeout,
                        format!(
                            "the request body did not arrive within {} ms",
                            timeout.as_millis()
                        ),
                        None,
                    ),
                    None,
                ));
            }
            Ok(Err(r)) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(too_large()),
            Ok(Err(r)) => {
                return Err(limits::closing(
                    ApiError::bad_request(format!("cannot read body: {r}"), None),
                    None,
                ));
            }
            Ok(Ok(b)) => b,
        };
        parse_json(&bytes)
            .map(JsonBody)
            .map_err(IntoResponse::into_response)
    }
}

/// Parse JSON, naming the failing field (`spec.program`) in the error.
///
/// JSON Schema's `integer` admits an integral number written as a float
/// (`1.0`), which serde refuses for integer fields: a body refused over a
/// float (or by an untagged enum, whose error names none) is parsed once
/// more with its integral floats written as integers
/// ([`integral_floats_as_integers`]) when it has any, so the common case
/// parses once.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    match parse_json_once(bytes) {
        // Any refusal but broken JSON: an integral float may be behind it,
        // also where serde names no float (an untagged enum's "did not
        // match any variant").
        Err(e) if !e.0.error.message.starts_with("malformed JSON") => {
            let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(bytes) else {
                return Err(e);
            };
            if !integral_floats_as_integers(&mut v) {
                return Err(e);
            }
            match serde_json::to_vec(&v) {
                Ok(again) => parse_json_once(&again),
                Err(_) => Err(e),
            }
        }
        other => other,
    }
}

/// Write every integral float in `v` (`1.0`, `-3e2`) as an integer when it
/// fits an `i64` or `u64`; true when one was.
pub fn integral_floats_as_integers(v: &mut serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            let whole = f.is_finite() && f.fract() == 0.0;
            let int = if whole && f >= -(2f64.powi(63)) && f < 2f64.powi(63) {
                Some(serde_json::Number::from(f as i64))
            } else if whole && f >= 0.0 && f < 2f64.powi(64) {
                Some(serde_json::Number::from(f as u64))
            } else {
                None
            };
            int.map(|i| *n = i).is_some()
        }
        // Every element is visited (no short circuit): `|=`, not `||`.
        Value::Array(items) => {
            let mut changed = false;
            for i in items {
                changed |= integral_floats_as_integers(i);
            }
            changed
        }
        Value::Object(fields) => {
            let mut changed = false;
            for i in fields.values_mut() {
                changed |= integral_floats_as_integers(i);
            }
            changed
        }
        _ => false,
    }
}

fn parse_json_once<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = inner.to_string();
        let well_formed = || serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok();
        if (inner.is_syntax() || inner.is_eof()) && !well_formed() {
            return ApiError::bad_request(format!("malformed JSON: {msg}"), None);
        }
        if inner.is_syntax() {
            // serde_json reports a number or list where a name (an enum)
            // belongs as "expected value": the JSON is fine, the type is not.
            let field = (path != ".").then_some(path);
            return ApiError::bad_request(
                "invalid type: expected one of the names this field allows, as a string",
                field,
            );
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
        if let Some((inside, message)) = baton_proto::spec_errors::refine(bytes, &field) {
            return ApiError::bad_request(message, Some(inside));
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
mod tests;
