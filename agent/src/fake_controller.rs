//! A scripted stand-in for the controller's agent API (tests only).
//!
//! It serves real HTTP on a loopback port, hands out queued grants, answers
//! heartbeats and completions as the test scripts it, and records every call.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use baton_proto::{
    CompleteRequest, ErrorBody, ErrorCode, Grant, HeartbeatRequest, JobId, JobState, PollRequest,
    ReleaseRequest,
};
use serde_json::{Value, json};

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
}

/// A running fake controller.
#[derive(Debug, Clone)]
pub struct Fake {
    /// Base URL.
    pub url: String,
    script: Arc<Mutex<Script>>,
}

type Shared = Arc<Mutex<Script>>;

fn lock(s: &Shared) -> MutexGuard<'_, Script> {
    s.lock().unwrap_or_else(PoisonError::into_inner)
}

fn record_auth(s: &Shared, headers: &HeaderMap) {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    lock(s).last_auth = Some((get("authorization"), get(baton_proto::AGENT_ID_HEADER)));
}

fn error(status: StatusCode, code: ErrorCode) -> (StatusCode, Json<Value>) {
    let body = ErrorBody::new(code, "scripted", None);
    (status, Json(json!(body)))
}

async fn poll(
    State(s): State<Shared>,
    headers: HeaderMap,
    Json(req): Json<PollRequest>,
) -> (StatusCode, Json<Value>) {
    record_auth(&s, &headers);
    let wait = Duration::from_millis(req.wait_ms.unwrap_or(0).min(50));
    let grants: Vec<Grant> = {
        let mut script = lock(&s);
        let n = (req.free_slots as usize).min(script.grants.len());
        script.polls.push(req);
        script.grants.drain(..n).collect()
    };
    if grants.is_empty() {
        tokio::time::sleep(wait).await;
    }
    (StatusCode::OK, Json(json!({ "grants": grants })))
}

async fn heartbeat(
    State(s): State<Shared>,
    Path(job_id): Path<JobId>,
    Json(req): Json<HeartbeatRequest>,
) -> (StatusCode, Json<Value>) {
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
    }
}

async fn complete(
    State(s): State<Shared>,
    Path(job_id): Path<JobId>,
    Json(req): Json<CompleteRequest>,
) -> (StatusCode, Json<Value>) {
    let mut script = lock(&s);
    script.complete_attempts += 1;
    if script.complete_unavailable > 0 {
        script.complete_unavailable -= 1;
        return error(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::NotReady);
    }
    if script.complete_lease_lost {
        return error(StatusCode::CONFLICT, ErrorCode::LeaseLost);
    }
    script.completes.push((job_id, req));
    (
        StatusCode::OK,
        Json(json!({ "state": JobState::Succeeded })),
    )
}

async fn release(
    State(s): State<Shared>,
    Path(job_id): Path<JobId>,
    Json(req): Json<ReleaseRequest>,
) -> (StatusCode, Json<Value>) {
    lock(&s).releases.push((job_id, req));
    (StatusCode::OK, Json(json!({ "state": JobState::Queued })))
}

impl Fake {
    /// Start on a free loopback port.
    pub async fn start() -> Fake {
        crate::install_crypto_provider();
        let script: Shared = Arc::default();
        let app = Router::new()
            .route("/v1/agents/{id}/poll", post(poll))
            .route("/v1/jobs/{id}/heartbeat", post(heartbeat))
            .route("/v1/jobs/{id}/complete", post(complete))
            .route("/v1/jobs/{id}/release", post(release))
            .with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Fake {
            url: format!("http://{addr}"),
            script,
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
