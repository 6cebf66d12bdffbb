//! A scripted stand-in for the controller's agent API (tests only).
//!
//! It serves real HTTP (or HTTPS, with [`Fake::start_tls`]) on a loopback
//! port, enrolls agents, checks their bearer secret, hands out queued grants,
//! answers heartbeats and completions as the test scripts it, and records
//! every call.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use baton_proto::auth::{EnrollRequest, EnrollResponse};
use baton_proto::lease::BatchCompleteResult;
use baton_proto::{
    AbandonRequest, CompleteRequest, ErrorBody, ErrorCode, Grant, HeartbeatRequest, JobId,
    JobState, LeaseRef, PollRequest, ReleaseRequest,
};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};

/// How heartbeats are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Heartbeat {
    /// 200, with this `cancel_requested`.
    #[default]
    Ok,
    /// 200 with `cancel_requested: true`.
    Cancel,
    /// 503.
    Unavailable,
    /// 409 `lease_lost`.
    LeaseLost,
    /// 403 `forbidden`.
    Forbidden,
}

/// How enrollments are answered.
#[derive(Debug, Clone, Default)]
pub enum Enroll {
    /// 200 with the id asked for, a fresh secret, and these groups.
    #[default]
    Grant,
    /// This refusal.
    Refuse(StatusCode, ErrorCode, &'static str),
}

/// What the fake does and what it saw.
#[derive(Debug, Default)]
pub struct Script {
    /// Grants handed out on the next polls.
    pub grants: VecDeque<Grant>,
    /// Heartbeat answers.
    pub heartbeat: Heartbeat,
    /// Answer this many completions with 503 first.
    pub complete_unavailable: u32,
    /// Answer completions with 409 `lease_lost`.
    pub complete_lease_lost: bool,
    /// Polls seen.
    pub polls: Vec<PollRequest>,
    /// Heartbeats seen.
    pub heartbeats: Vec<(JobId, HeartbeatRequest)>,
    /// Completion attempts seen (including refused ones).
    pub complete_attempts: u32,
    /// Completions accepted.
    pub completes: Vec<(JobId, CompleteRequest)>,
    /// Releases seen.
    pub releases: Vec<(JobId, ReleaseRequest)>,
    /// `(Authorization, X-Baton-Agent)` of the last call.
    pub last_auth: Option<(String, String)>,
    /// `(Authorization, X-Baton-Agent)` of every poll.
    pub poll_auth: Vec<(String, String)>,
    /// Enrollment answers.
    pub enroll: Enroll,
    /// Groups granted at enrollment.
    pub enroll_groups: Vec<String>,
    /// Answer this many enrollments with 429 and `Retry-After: 1` first.
    pub enroll_rate_limited: u32,
    /// Enrollments seen, with their `Authorization` header (must be empty).
    pub enrolls: Vec<(EnrollRequest, String)>,
    /// When set (a successful enrollment sets it), agent calls need
    /// `Authorization: Bearer <secret>`; others get 401.
    pub secret: Option<String>,
    /// Answer every agent call with 401 (a revoked agent).
    pub revoked: bool,
    /// Agent calls refused with 401.
    pub unauthorized: u32,
    /// Answer completions with 403 `forbidden`.
    pub complete_forbidden: bool,
    /// Answer this many polls with 429 and `Retry-After: 1` first.
    pub poll_rate_limited: u32,
    /// TLS handshakes that failed (HTTPS only).
    pub tls_failures: Vec<String>,
    /// Answer this many lease abandons with 503 first.
    pub abandon_unavailable: u32,
    /// Lease abandon calls seen (including refused ones).
    pub abandon_attempts: u32,
    /// Lease abandons accepted (each lease answered `ended`).
    pub abandons: Vec<AbandonRequest>,
    /// Jobs an operator cancelled: a poll naming one of their leases is
    /// answered at once with its cancel notice.
    pub cancel_jobs: Vec<JobId>,
    /// Hold an empty poll for the whole `wait_ms` (by default at most 50 ms).
    pub hold_polls: bool,
    /// Answer this many polls with 503 `store_unavailable` first.
    pub poll_unavailable: u32,
    /// Refuse polls that carry completions with 400, as a controller
    /// older than the field does.
    pub refuse_poll_completions: bool,
    /// Polls refused for carrying completions.
    pub refused_polls: u32,
    /// Completions that rode a poll (also in `completes` when accepted).
    pub ridden: Vec<JobId>,
}

/// A running fake controller.
#[derive(Debug, Clone)]
pub struct Fake {
    /// Base URL.
    pub url: String,
    script: Arc<Mutex<Script>>,
    /// Set by [`Fake::start_killable`]: [`Fake::kill`] cancels it.
    kill: Option<tokio_util::sync::CancellationToken>,
}

type Shared = Arc<Mutex<Script>>;

fn lock(s: &Shared) -> MutexGuard<'_, Script> {
    s.lock().unwrap_or_else(PoisonError::into_inner)
}

fn header(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// Record the credentials of an agent call; `Some(401)` when they are refused.
fn check_auth(s: &Shared, headers: &HeaderMap) -> Option<(StatusCode, Json<Value>)> {
    let auth = (
        header(headers, "authorization"),
        header(headers, baton_proto::AGENT_ID_HEADER),
    );
    let mut script = lock(s);
    script.last_auth = Some(auth.clone());
    let refused = script.revoked
        || script
            .secret
            .as_ref()
            .is_some_and(|secret| auth.0 != format!("Bearer {secret}"));
    if refused {
        script.unauthorized += 1;
        return Some(error(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized));
    }
    None
}

fn error(status: StatusCode, code: ErrorCode) -> (StatusCode, Json<Value>) {
    let body = ErrorBody::new(code, "scripted", None);
    (status, Json(json!(body)))
}

fn rate_limited() -> Response {
    let mut resp = error(StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimited).into_response();
    resp.headers_mut()
        .insert("retry-after", HeaderValue::from_static("1"));
    resp
}

async fn enroll(
    State(s): State<Shared>,
    headers: HeaderMap,
    Json(req): Json<EnrollRequest>,
) -> Response {
    let mut script = lock(&s);
    script
        .enrolls
        .push((req.clone(), header(&headers, "authorization")));
    if script.enroll_rate_limited > 0 {
        script.enroll_rate_limited -= 1;
        return rate_limited();
    }
    match script.enroll.clone() {
        Enroll::Grant => {
            let secret = format!("baton_agt_fake-secret-{}", script.enrolls.len());
            script.secret = Some(secret.clone());
            let resp = EnrollResponse {
                agent_id: req.agent_id,
                secret,
                groups: script.enroll_groups.clone(),
                fleet: "fake".into(),
            };
            (StatusCode::OK, Json(json!(resp))).into_response()
        }
        Enroll::Refuse(status, code, message) => {
            (status, Json(json!(ErrorBody::new(code, message, None)))).into_response()
        }
    }
}

async fn poll(
    State(s): State<Shared>,
    headers: HeaderMap,
    Json(req): Json<PollRequest>,
) -> Response {
    if let Some(refused) = check_auth(&s, &headers) {
        return refused.into_response();
    }
    {
        let mut script = lock(&s);
        let auth = script.last_auth.clone().unwrap_or_default();
        script.poll_auth.push(auth);
        if script.poll_rate_limited > 0 {
            script.poll_rate_limited -= 1;
            return rate_limited();
        }
        if script.poll_unavailable > 0 {
            script.poll_unavailable -= 1;
            script.polls.push(req);
            return error(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::StoreUnavailable)
                .into_response();
        }
    }
    let completed = match ride(&s, &req) {
        Ok(c) => c,
        Err(refused) => return *refused,
    };
    let cap = if lock(&s).hold_polls { u64::MAX } else { 50 };
    let wait = Duration::from_millis(req.wait_ms.unwrap_or(0).min(cap));
    let cancels: Vec<LeaseRef> = {
        let script = lock(&s);
        req.leases
            .iter()
            .filter(|l| script.cancel_jobs.contains(&l.job_id))
            .copied()
            .collect()
    };
    if !cancels.is_empty() {
        lock(&s).polls.push(req);
        return (
            StatusCode::OK,
            Json(json!({ "grants": [], "cancels": cancels, "completed": completed })),
        )
            .into_response();
    }
    let grants: Vec<Grant> = {
        let mut script = lock(&s);
        let n = (req.free_slots as usize).min(script.grants.len());
        script.polls.push(req);
        script.grants.drain(..n).collect()
    };
    // A poll carrying completions is answered at once here (the controller
    // holds it like any other; the agent handles both).
    if grants.is_empty() && completed.is_empty() {
        tokio::time::sleep(wait).await;
    }
    (
        StatusCode::OK,
        Json(json!({ "grants": grants, "completed": completed })),
    )
        .into_response()
}

/// The completions a poll carries, answered as the completion route would
/// (a 503 there fails the whole poll).
fn ride(s: &Shared, req: &PollRequest) -> Result<Vec<BatchCompleteResult>, Box<Response>> {
    let mut script = lock(s);
    if req.completions.is_empty() {
        return Ok(Vec::new());
    }
    if script.refuse_poll_completions {
        script.refused_polls += 1;
        let body = ErrorBody::new(ErrorCode::BadRequest, "unknown field `completions`", None);
        return Err(Box::new(
            (StatusCode::BAD_REQUEST, Json(json!(body))).into_response(),
        ));
    }
    let mut out = Vec::new();
    for item in &req.completions {
        let job_id = item.job_id;
        out.push(
            match record_completion(&mut script, job_id, item.request()) {
                Ok(()) => {
                    script.ridden.push(job_id);
                    BatchCompleteResult::Recorded {
                        job_id,
                        state: JobState::Succeeded,
                        duplicate: false,
                    }
                }
                Err((StatusCode::SERVICE_UNAVAILABLE, code)) => {
                    return Err(Box::new(
                        error(StatusCode::SERVICE_UNAVAILABLE, code).into_response(),
                    ));
                }
                Err((_, code)) => BatchCompleteResult::Refused {
                    job_id,
                    code,
                    message: "refused".into(),
                },
            },
        );
    }
    Ok(out)
}

async fn heartbeat(
    State(s): State<Shared>,
    Path(job_id): Path<JobId>,
    headers: HeaderMap,
    Json(req): Json<HeartbeatRequest>,
) -> (StatusCode, Json<Value>) {
    if let Some(refused) = check_auth(&s, &headers) {
        return refused;
    }
    let mut script = lock(&s);
    script.heartbeats.push((job_id, req));
    match script.heartbeat {
        Heartbeat::Ok | Heartbeat::Cancel => (
            StatusCode::OK,
            Json(json!({
                "lease_ttl_ms": 600,
                "cancel_requested": script.heartbeat == Heartbeat::Cancel,
            })),
        ),
        Heartbeat::Unavailable => error(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::NotReady),
        Heartbeat::LeaseLost => error(StatusCode::CONFLICT, ErrorCode::LeaseLost),
        Heartbeat::Forbidden => error(StatusCode::FORBIDDEN, ErrorCode::Forbidden),
    }
}

async fn complete(
    State(s): State<Shared>,
    Path(job_id): Path<JobId>,
    headers: HeaderMap,
    Json(req): Json<CompleteRequest>,
) -> (StatusCode, Json<Value>) {
    if let Some(refused) = check_auth(&s, &headers) {
        return refused;
    }
    match record_completion(&mut lock(&s), job_id, req) {
        Ok(()) => (
            StatusCode::OK,
            Json(json!({ "state": JobState::Succeeded })),
        ),
        Err((status, code)) => error(status, code),
    }
}

/// One completion, as the script says: recorded, or refused with a status
/// and code (the completion route's answer; a poll carrying it fails on a
/// 503 and refuses the item otherwise).
fn record_completion(
    script: &mut Script,
    job_id: JobId,
    req: CompleteRequest,
) -> Result<(), (StatusCode, ErrorCode)> {
    script.complete_attempts += 1;
    if script.complete_forbidden {
        return Err((StatusCode::FORBIDDEN, ErrorCode::Forbidden));
    }
    if script.complete_unavailable > 0 {
        script.complete_unavailable -= 1;
        return Err((StatusCode::SERVICE_UNAVAILABLE, ErrorCode::NotReady));
    }
    if script.complete_lease_lost {
        return Err((StatusCode::CONFLICT, ErrorCode::LeaseLost));
    }
    script.completes.push((job_id, req));
    Ok(())
}

async fn abandon(
    State(s): State<Shared>,
    headers: HeaderMap,
    Json(req): Json<AbandonRequest>,
) -> (StatusCode, Json<Value>) {
    if let Some(refused) = check_auth(&s, &headers) {
        return refused;
    }
    let mut script = lock(&s);
    script.abandon_attempts += 1;
    if script.abandon_unavailable > 0 {
        script.abandon_unavailable -= 1;
        return error(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::NotReady);
    }
    let results: Vec<Value> = req
        .leases
        .iter()
        .map(|l| json!({"job_id": l.job_id, "token": l.token, "outcome": "ended", "state": "queued"}))
        .collect();
    script.abandons.push(req);
    (StatusCode::OK, Json(json!({ "results": results })))
}

async fn release(
    State(s): State<Shared>,
    Path(job_id): Path<JobId>,
    headers: HeaderMap,
    Json(req): Json<ReleaseRequest>,
) -> (StatusCode, Json<Value>) {
    if let Some(refused) = check_auth(&s, &headers) {
        return refused;
    }
    lock(&s).releases.push((job_id, req));
    (StatusCode::OK, Json(json!({ "state": JobState::Queued })))
}

/// Accepts TLS connections for axum; failed handshakes are recorded and skipped.
struct TlsListener {
    tcp: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    script: Shared,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            let handshake = self.acceptor.accept(tcp);
            match tokio::time::timeout(Duration::from_secs(5), handshake).await {
                Ok(Ok(tls)) => return (tls, addr),
                Ok(Err(e)) => lock(&self.script).tls_failures.push(e.to_string()),
                Err(_) => lock(&self.script)
                    .tls_failures
                    .push("handshake timed out".into()),
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

impl Fake {
    fn app(script: &Shared) -> Router {
        Router::new()
            .route("/v1/agents/enroll", post(enroll))
            .route("/v1/agents/{id}/poll", post(poll))
            .route("/v1/jobs/{id}/heartbeat", post(heartbeat))
            .route("/v1/jobs/{id}/complete", post(complete))
            .route("/v1/jobs/{id}/release", post(release))
            .route("/v1/agents/{id}/leases/abandon", post(abandon))
            .with_state(script.clone())
    }

    /// Start on a free loopback port, plain HTTP.
    pub async fn start() -> Fake {
        crate::install_crypto_provider();
        let script: Shared = Arc::default();
        let app = Self::app(&script);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Fake {
            url: format!("http://{addr}"),
            script,
            kill: None,
        }
    }

    /// Start on a free loopback port behind a relay that [`Fake::kill`]
    /// stops as a dying process would: open connections (a held poll) are
    /// closed mid-call, and new ones are refused.
    pub async fn start_killable() -> Fake {
        let inner = Fake::start().await;
        let target = inner.url.trim_start_matches("http://").to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let kill = tokio_util::sync::CancellationToken::new();
        let stop = kill.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = stop.cancelled() => return,
                    a = listener.accept() => a,
                };
                let Ok((mut client, _)) = accepted else {
                    continue;
                };
                let stop = stop.clone();
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        () = stop.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    }
                });
            }
        });
        Fake {
            url: format!("http://{addr}"),
            script: inner.script,
            kill: Some(kill),
        }
    }

    /// Kill a fake started with [`Fake::start_killable`]: its connections
    /// close, its port refuses.
    pub fn kill(&self) {
        if let Some(k) = &self.kill {
            k.cancel();
        }
    }

    /// Start on a free loopback port, HTTPS with `tls` (`https://127.0.0.1:port`).
    pub async fn start_tls(tls: Arc<rustls::ServerConfig>) -> Fake {
        crate::install_crypto_provider();
        let script: Shared = Arc::default();
        let app = Self::app(&script);
        let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = tcp.local_addr().expect("addr");
        let listener = TlsListener {
            tcp,
            acceptor: tokio_rustls::TlsAcceptor::from(tls),
            script: script.clone(),
        };
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Fake {
            url: format!("https://{addr}"),
            script,
            kill: None,
        }
    }

    /// The script, to change it or read what was seen.
    pub fn script(&self) -> MutexGuard<'_, Script> {
        lock(&self.script)
    }

    /// Wait up to `limit` for `cond` to hold.
    pub async fn until(&self, limit: Duration, cond: impl Fn(&Script) -> bool) -> bool {
        let start = std::time::Instant::now();
        loop {
            if cond(&self.script()) {
                return true;
            }
            if start.elapsed() > limit {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
