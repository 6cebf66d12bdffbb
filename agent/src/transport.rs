//! HTTP transport to the controller: the only module that knows reqwest and HTTP.
//!
//! Typed calls for the agent side of the protocol (enroll, poll, heartbeat,
//! complete — one job or a batch —, release). Answers are sorted into the kinds of failure the layers
//! above act on: the lease is lost ([`Error::LeaseLost`]), the agent's
//! credentials are refused ([`Error::Unauthorized`]), the call is about a job
//! the agent does not hold ([`Error::Forbidden`]), the controller refused the
//! call ([`Error::Rejected`]), asked to slow down ([`Error::RateLimited`]), or
//! could not be reached ([`Error::Unavailable`]).
//!
//! One HTTP client is built at start with the `[tls]` settings (a pinned CA
//! replaces the system roots; a client certificate for mutual TLS) and shared
//! by every call; [`Transport::authenticated`] adds the agent's credentials.
//!
//! Several controllers (`controller_urls`): a call goes to the one that last
//! answered and fails over to the others on connection errors, TLS errors,
//! timeouts and 5xx ([`route`]); a 4xx is an answer.
//!
//! Every call passes the drill [`Gate`] first (shared by all clones): during a
//! simulated freeze a call waits until the freeze ends, during a simulated
//! partition it fails at once, and calls in flight when either begins are
//! dropped ([`Error::Unavailable`]), as a real outage would lose them.

use std::time::Duration;

use std::sync::Arc;

use baton_proto::auth::{EnrollRequest, EnrollResponse};
use baton_proto::drill::{FaultAck, FaultAckResponse};
use baton_proto::lease::{
    AbandonRequest, AbandonResponse, BatchCompleteRequest, BatchCompleteResponse,
};
use baton_proto::{
    AGENT_ID_HEADER, CompleteRequest, CompleteResponse, ErrorBody, ErrorCode, HeartbeatRequest,
    HeartbeatResponse, JobId, PollRequest, PollResponse, ReleaseRequest, ReleaseResponse,
};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, RETRY_AFTER};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{debug, warn};

pub use crate::config::{check_base_url, plain_http_remote};
use crate::fault::{CallKind, Gate, Pass};
use crate::secret::Secret;
use crate::tls::TlsConfig;
pub use route::Route;

/// Extra time a poll may take beyond the hold the agent asked for.
const POLL_MARGIN: Duration = Duration::from_secs(10);
/// Upper bound for calls other than poll.
pub const MAX_CALL_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What went wrong with a call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `409 lease_lost`: the fencing token is stale; stop the work, never report it.
    #[error("lease lost: {0}")]
    LeaseLost(String),
    /// `401`: the agent's credentials (or the enrollment token) were refused.
    #[error("credentials refused: {0}")]
    Unauthorized(String),
    /// `403`: the call is about a job the agent does not hold.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// `429`: slow down; retry after the delay the controller asked for.
    #[error("rate limited: {message}")]
    RateLimited {
        /// From `Retry-After` (seconds), when given.
        retry_after: Option<Duration>,
        /// The message of the body.
        message: String,
    },
    /// Any other refusal (4xx except 408): the call will not succeed as it is.
    #[error("rejected by the controller with status {status}: {body}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// The error code, when the body had one.
        code: Option<ErrorCode>,
        /// The message of the body, or the raw body.
        body: String,
    },
    /// The controller could not be reached or failed (connect error, TLS error, timeout, 5xx, 408).
    #[error("controller unavailable: {0}")]
    Unavailable(String),
    /// A 2xx answer whose body is not what the protocol says.
    #[error("unexpected answer from the controller: {0}")]
    Protocol(String),
    /// The client could not be built (bad URL, bad header value).
    #[error("cannot set up the HTTP client: {0}")]
    Setup(String),
}

impl Error {
    /// 401: the agent's credentials are refused (revoked or unknown); an operator must act.
    pub fn is_auth(&self) -> bool {
        matches!(self, Error::Unauthorized(_))
    }

    /// 413 (or the `payload_too_large` code): what was sent is over a bound.
    pub fn is_too_large(&self) -> bool {
        matches!(
            self,
            Error::Rejected { status: 413, .. }
                | Error::Rejected {
                    code: Some(ErrorCode::PayloadTooLarge),
                    ..
                }
        )
    }
}

/// The agent's credentials, as headers.
#[derive(Debug, Clone)]
struct Credentials {
    agent_id: String,
    headers: HeaderMap,
}

/// The controller client: one HTTP client (connection pool, TLS settings),
/// without credentials until [`Transport::authenticated`].
#[derive(Debug, Clone)]
pub struct Transport {
    client: reqwest::Client,
    route: Arc<Route>,
    creds: Option<Credentials>,
    gate: Arc<Gate>,
}

impl Transport {
    /// A client for `base_url` with the `[tls]` settings. Logs a WARN when the
    /// controller is reached over plain HTTP on another host.
    pub fn new(base_url: &str, tls: &TlsConfig) -> Result<Self, Error> {
        Self::with_urls(&[base_url.to_owned()], tls)
    }

    /// A client for several controllers (replicas on one database) with the
    /// `[tls]` settings: calls fail over between them ([`route`]).
    pub fn with_urls(base_urls: &[String], tls: &TlsConfig) -> Result<Self, Error> {
        if base_urls.is_empty() {
            return Err(Error::Setup("no controller URL".into()));
        }
        let mut bases = Vec::with_capacity(base_urls.len());
        for url in base_urls {
            let base = check_base_url(url).map_err(Error::Setup)?;
            if plain_http_remote(&base) {
                warn!(controller = %base, "Talking to the controller over plain HTTP");
            }
            bases.push(base);
        }
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("baton-agent/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_idle_timeout(Duration::from_secs(60));
        if let Some(ca) = &tls.ca {
            // Only this CA: the system roots are not trusted for the controller.
            let certs = ca
                .certs_der()
                .map(reqwest::Certificate::from_der)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| {
                    Error::Setup(format!("CA file {}: {}", ca.path().display(), describe(&e)))
                })?;
            builder = builder.tls_certs_only(certs);
        }
        if let Some(client) = &tls.client {
            let identity = reqwest::Identity::from_pem(client.pem()).map_err(|e| {
                Error::Setup(format!(
                    "client certificate {}: {}",
                    client.cert_path().display(),
                    describe(&e)
                ))
            })?;
            builder = builder.identity(identity);
        }
        let client = builder.build().map_err(|e| Error::Setup(describe(&e)))?;
        Ok(Transport {
            client,
            route: Arc::new(Route::new(bases)),
            creds: None,
            gate: Arc::new(Gate::default()),
        })
    }

    /// The same client (and connections), sending `X-Baton-Agent: agent_id` and
    /// `Authorization: Bearer <secret>` on every agent call.
    pub fn authenticated(&self, agent_id: &str, secret: &Secret) -> Result<Self, Error> {
        let mut headers = HeaderMap::new();
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", secret.expose()))
            .map_err(|_| Error::Setup("the agent secret is not a valid header value".into()))?;
        auth.set_sensitive(true);
        headers.insert(AUTHORIZATION, auth);
        headers.insert(
            AGENT_ID_HEADER,
            HeaderValue::from_str(agent_id)
                .map_err(|_| Error::Setup("the agent id is not a valid header value".into()))?,
        );
        Ok(Transport {
            client: self.client.clone(),
            route: self.route.clone(),
            creds: Some(Credentials {
                agent_id: agent_id.to_owned(),
                headers,
            }),
            gate: self.gate.clone(),
        })
    }

    /// The base URL calls go to first now (the last one that answered).
    pub fn base_url(&self) -> &str {
        self.route.preferred()
    }

    /// The controllers and what is known about them (shared by all clones).
    pub fn route(&self) -> &Arc<Route> {
        &self.route
    }

    /// The drill gate every call of this transport (and its clones) passes.
    pub fn gate(&self) -> &Arc<Gate> {
        &self.gate
    }

    /// `POST /v1/agents/enroll`: no credentials, the enrollment token is in the body.
    pub async fn enroll(&self, req: &EnrollRequest) -> Result<EnrollResponse, Error> {
        let url = "/v1/agents/enroll";
        self.send(url, req, MAX_CALL_TIMEOUT, HeaderMap::new())
            .await
    }

    /// `POST /v1/agents/{id}/poll`, allowed to take the hold plus a margin.
    pub async fn poll(&self, req: &PollRequest, hold: Duration) -> Result<PollResponse, Error> {
        let agent_id = self.creds()?.agent_id.as_str();
        let url = format!("/v1/agents/{agent_id}/poll");
        let headers = self.creds()?.headers.clone();
        let pending = self
            .route
            .pending_failover()
            .filter(|_| req.failover_ms.is_none());
        let answer = match pending {
            Some((_, ms)) => {
                let req = PollRequest {
                    failover_ms: Some(ms),
                    ..req.clone()
                };
                self.send_as(CallKind::Poll, &url, &req, hold + POLL_MARGIN, headers)
                    .await
            }
            None => {
                self.send_as(CallKind::Poll, &url, req, hold + POLL_MARGIN, headers)
                    .await
            }
        };
        self.reported(pending, answer.is_ok());
        answer
    }

    /// A failover measurement went out with a call: once answered, it is not sent again.
    fn reported(&self, pending: Option<(u64, u64)>, answered: bool) {
        if let (Some((seq, _)), true) = (pending, answered) {
            self.route.reported(seq);
        }
    }

    /// `POST /v1/jobs/{id}/heartbeat`.
    pub async fn heartbeat(
        &self,
        job_id: JobId,
        req: &HeartbeatRequest,
        timeout: Duration,
    ) -> Result<HeartbeatResponse, Error> {
        let url = format!("/v1/jobs/{job_id}/heartbeat");
        let pending = self
            .route
            .pending_failover()
            .filter(|_| req.failover_ms.is_none());
        let answer = match pending {
            Some((_, ms)) => {
                let req = HeartbeatRequest {
                    failover_ms: Some(ms),
                    ..req.clone()
                };
                self.call(&url, &req, timeout).await
            }
            None => self.call(&url, req, timeout).await,
        };
        self.reported(pending, answer.is_ok());
        answer
    }

    /// `POST /v1/jobs/{id}/complete`.
    pub async fn complete(
        &self,
        job_id: JobId,
        req: &CompleteRequest,
        timeout: Duration,
    ) -> Result<CompleteResponse, Error> {
        let url = format!("/v1/jobs/{job_id}/complete");
        self.call(&url, req, timeout).await
    }

    /// `POST /v1/agents/{id}/complete`: several completions, one result each.
    pub async fn complete_batch(
        &self,
        req: &BatchCompleteRequest,
        timeout: Duration,
    ) -> Result<BatchCompleteResponse, Error> {
        let agent_id = self.creds()?.agent_id.as_str();
        let url = format!("/v1/agents/{agent_id}/complete");
        self.call(&url, req, timeout).await
    }

    /// `POST /v1/agents/{id}/leases/abandon`: end the leases the previous run
    /// of this agent held (a restart), one result each.
    pub async fn abandon(
        &self,
        req: &AbandonRequest,
        timeout: Duration,
    ) -> Result<AbandonResponse, Error> {
        let agent_id = self.creds()?.agent_id.as_str();
        let url = format!("/v1/agents/{agent_id}/leases/abandon");
        self.call(&url, req, timeout).await
    }

    /// `POST /v1/jobs/{id}/release`.
    pub async fn release(
        &self,
        job_id: JobId,
        req: &ReleaseRequest,
        timeout: Duration,
    ) -> Result<ReleaseResponse, Error> {
        let url = format!("/v1/jobs/{job_id}/release");
        self.call(&url, req, timeout).await
    }

    /// `POST /v1/jobs/{id}/fault-ack`: a drill's fault is simulated from now on.
    pub async fn fault_ack(
        &self,
        job_id: JobId,
        req: &FaultAck,
        timeout: Duration,
    ) -> Result<FaultAckResponse, Error> {
        let url = format!("/v1/jobs/{job_id}/fault-ack");
        self.call(&url, req, timeout).await
    }

    fn creds(&self) -> Result<&Credentials, Error> {
        self.creds
            .as_ref()
            .ok_or_else(|| Error::Setup("agent call without credentials".into()))
    }

    /// An agent call: with the agent's credentials.
    async fn call<B: Serialize, R: DeserializeOwned>(
        &self,
        url: &str,
        body: &B,
        timeout: Duration,
    ) -> Result<R, Error> {
        let headers = self.creds()?.headers.clone();
        self.send(url, body, timeout, headers).await
    }

    async fn send<B: Serialize, R: DeserializeOwned>(
        &self,
        url: &str,
        body: &B,
        timeout: Duration,
        headers: HeaderMap,
    ) -> Result<R, Error> {
        self.send_as(CallKind::Other, url, body, timeout, headers)
            .await
    }

    /// Send a call of `kind` through the drill gate (an outage that stops it
    /// refuses it before, or drops it in flight) to the controllers in the
    /// route's order, until one answers ([`route`]).
    async fn send_as<B: Serialize, R: DeserializeOwned>(
        &self,
        kind: CallKind,
        path: &str,
        body: &B,
        timeout: Duration,
        headers: HeaderMap,
    ) -> Result<R, Error> {
        if let Pass::Refused(why) = self.gate.before_call(kind, timeout).await {
            return Err(Error::Unavailable(why));
        }
        let mut outage = self.gate.watch();
        let mut delays = crate::backoff::delays(route::FAILOVER_MIN, route::FAILOVER_CAP);
        let several = self.route.bases().len() > 1;
        let mut failures: Vec<(usize, Error)> = Vec::new();
        for (i, idx) in self.route.order().enumerate() {
            // The first move to another controller is at once; later ones back off.
            let wait = (i >= 2).then(|| delays.next().unwrap_or(route::FAILOVER_CAP));
            let base = self.route.base(idx);
            let exchange = async {
                if let Some(wait) = wait {
                    tokio::time::sleep(wait).await;
                }
                self.exchange(base, path, body, timeout, headers.clone())
                    .await
            };
            let answer = tokio::select! {
                r = exchange => r,
                o = Gate::engaged(&mut outage, kind) => {
                    return Err(Error::Unavailable(format!("connection lost (drill: {})", o.method)));
                }
            };
            let err = match answer {
                Ok((status, retry_after, bytes)) if !fails_over(status) => {
                    self.route.answered(idx);
                    if (200..300).contains(&status) {
                        return serde_json::from_slice(&bytes)
                            .map_err(|e| Error::Protocol(e.to_string()));
                    }
                    return Err(classify(status, &bytes, retry_after));
                }
                Ok((status, retry_after, bytes)) => classify(status, &bytes, retry_after),
                Err(e) => e,
            };
            self.route.failed(idx);
            if several {
                debug!(controller = %base, error = %err, "Controller call failed; trying the next");
            }
            failures.push((idx, err));
        }
        Err(self.all_failed(failures))
    }

    /// One HTTP exchange with the controller at `base`: status, `Retry-After`, body.
    async fn exchange<B: Serialize>(
        &self,
        base: &str,
        path: &str,
        body: &B,
        timeout: Duration,
        headers: HeaderMap,
    ) -> Result<(u16, Option<Duration>, Vec<u8>), Error> {
        let resp = self
            .client
            .post(format!("{base}{path}"))
            .headers(headers)
            .json(body)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| unavailable(base, &e))?;
        let status = resp.status().as_u16();
        let retry_after = retry_after(resp.headers());
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| unavailable(base, &e))?
            .to_vec();
        Ok((status, retry_after, bytes))
    }

    /// The error of a call no controller answered: the one failure as it is,
    /// or every controller's failure in one [`Error::Unavailable`].
    fn all_failed(&self, mut failures: Vec<(usize, Error)>) -> Error {
        if failures.len() <= 1 {
            return failures
                .pop()
                .map_or_else(|| Error::Setup("no controller URL".into()), |(_, e)| e);
        }
        let each: Vec<String> = failures
            .iter()
            .map(|(idx, e)| format!("{}: {e}", self.route.base(*idx)))
            .collect();
        Error::Unavailable(format!(
            "all {} controllers failed: {}",
            failures.len(),
            each.join("; ")
        ))
    }
}

/// Whether an HTTP status is a failure the next controller may not have
/// (408, 5xx: the replica, or its database connection, is in trouble).
fn fails_over(status: u16) -> bool {
    status == 408 || status >= 500
}

/// [`Error::Unavailable`] with the causes, and a hint when the cause is a
/// scheme or TLS mismatch (`baton_proto::tls_hint`).
fn unavailable(base: &str, e: &reqwest::Error) -> Error {
    use baton_proto::tls_hint::{Target, diagnose};
    let mut message = describe(e);
    let url = reqwest::Url::parse(base).ok();
    let https = url.as_ref().is_some_and(|u| u.scheme() == "https");
    if let (Some(m), Some(url)) = (diagnose(e, https), url) {
        let to = Target {
            host: url.host_str().unwrap_or_default(),
            port: url.port_or_known_default().unwrap_or_default(),
        };
        message.push_str(" (hint: ");
        message.push_str(&m.hint(to, PIN));
        message.push(')');
    }
    Error::Unavailable(message)
}

/// How the agent pins the controller's CA (for the hints).
const PIN: &str = "`[tls] ca_file` in the agent's config (or BATON_AGENT_TLS_CA_FILE)";

/// `Retry-After` in seconds (the HTTP-date form is not used by the controller).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Sort a non-2xx answer.
fn classify(status: u16, body: &[u8], retry_after: Option<Duration>) -> Error {
    let parsed = serde_json::from_slice::<ErrorBody>(body).ok();
    let code = parsed.as_ref().map(|b| b.error.code);
    let text = match &parsed {
        Some(b) => b.error.message.clone(),
        None => String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned(),
    };
    sort(status, code, text, retry_after)
}

impl Error {
    /// The error a call refused with `code` would have given: one item of a
    /// batch answer is sorted exactly like a whole answer.
    pub fn refused(code: ErrorCode, message: String) -> Error {
        sort(code.status(), Some(code), message, None)
    }
}

fn sort(
    status: u16,
    code: Option<ErrorCode>,
    text: String,
    retry_after: Option<Duration>,
) -> Error {
    match (status, code) {
        (409, Some(ErrorCode::LeaseLost)) => Error::LeaseLost(text),
        (401, _) => Error::Unauthorized(text),
        (403, _) => Error::Forbidden(text),
        (429, _) => Error::RateLimited {
            retry_after,
            message: text,
        },
        (408, _) | (500.., _) => Error::Unavailable(format!("status {status}: {text}")),
        _ => Error::Rejected {
            status,
            code,
            body: text,
        },
    }
}

/// An error message with its causes (reqwest hides the useful part in the source chain).
fn describe(e: &reqwest::Error) -> String {
    let mut out = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "cannot connect".to_owned()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

pub mod route;

#[cfg(test)]
mod tests;
