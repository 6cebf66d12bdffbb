//! HTTP transport to the controller: the only module that knows reqwest and HTTP.
//!
//! Typed calls for the agent side of the protocol (poll, heartbeat, complete,
//! release). Answers are sorted into three kinds of failure the layers above
//! act on: the lease is lost ([`Error::LeaseLost`]), the controller refused the
//! call ([`Error::Rejected`]), or it could not be reached ([`Error::Unavailable`]).

use std::time::Duration;

use baton_proto::{
    AGENT_ID_HEADER, CompleteRequest, CompleteResponse, ErrorBody, ErrorCode, HeartbeatRequest,
    HeartbeatResponse, JobId, PollRequest, PollResponse, ReleaseRequest, ReleaseResponse,
};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::Secret;

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
    /// Any other refusal (4xx except 408/429): the call will not succeed as it is.
    #[error("rejected by the controller with status {status}: {body}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// The error code, when the body had one.
        code: Option<ErrorCode>,
        /// The message of the body, or the raw body.
        body: String,
    },
    /// The controller could not be reached or failed (connect error, timeout, 5xx, 408, 429).
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
    /// 401 or 403: the agent's credentials are wrong; an operator must act.
    pub fn is_auth(&self) -> bool {
        matches!(
            self,
            Error::Rejected {
                status: 401 | 403,
                ..
            }
        )
    }
}

/// Check a controller base URL: http or https with a host. Returns it without a trailing slash.
pub fn check_base_url(url: &str) -> Result<String, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("{url:?} must start with http:// or https://"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("{url:?} has no host"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(format!("{url:?} must not have a query or fragment"));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// The controller client for one agent.
#[derive(Debug, Clone)]
pub struct Transport {
    client: reqwest::Client,
    base: String,
    agent_id: String,
}

impl Transport {
    /// A client for `base_url` (already checked), sending the agent id and token on every call.
    pub fn new(base_url: &str, agent_id: &str, token: &Secret) -> Result<Self, Error> {
        let base = check_base_url(base_url).map_err(Error::Setup)?;
        let mut headers = HeaderMap::new();
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
            .map_err(|_| Error::Setup("the agent token is not a valid header value".into()))?;
        auth.set_sensitive(true);
        headers.insert(AUTHORIZATION, auth);
        headers.insert(
            AGENT_ID_HEADER,
            HeaderValue::from_str(agent_id)
                .map_err(|_| Error::Setup("the agent id is not a valid header value".into()))?,
        );
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(concat!("baton-agent/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| Error::Setup(e.to_string()))?;
        Ok(Transport {
            client,
            base,
            agent_id: agent_id.to_owned(),
        })
    }

    /// The base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `POST /v1/agents/{id}/poll`, allowed to take the hold plus a margin.
    pub async fn poll(&self, req: &PollRequest, hold: Duration) -> Result<PollResponse, Error> {
        let url = format!("{}/v1/agents/{}/poll", self.base, self.agent_id);
        self.call(&url, req, hold + POLL_MARGIN).await
    }

    /// `POST /v1/jobs/{id}/heartbeat`.
    pub async fn heartbeat(
        &self,
        job_id: JobId,
        req: &HeartbeatRequest,
        timeout: Duration,
    ) -> Result<HeartbeatResponse, Error> {
        let url = format!("{}/v1/jobs/{job_id}/heartbeat", self.base);
        self.call(&url, req, timeout).await
    }

    /// `POST /v1/jobs/{id}/complete`.
    pub async fn complete(
        &self,
        job_id: JobId,
        req: &CompleteRequest,
        timeout: Duration,
    ) -> Result<CompleteResponse, Error> {
        let url = format!("{}/v1/jobs/{job_id}/complete", self.base);
        self.call(&url, req, timeout).await
    }

    /// `POST /v1/jobs/{id}/release`.
    pub async fn release(
        &self,
        job_id: JobId,
        req: &ReleaseRequest,
        timeout: Duration,
    ) -> Result<ReleaseResponse, Error> {
        let url = format!("{}/v1/jobs/{job_id}/release", self.base);
        self.call(&url, req, timeout).await
    }

    async fn call<B: Serialize, R: DeserializeOwned>(
        &self,
        url: &str,
        body: &B,
        timeout: Duration,
    ) -> Result<R, Error> {
        let resp = self
            .client
            .post(url)
            .json(body)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| Error::Unavailable(describe(&e)))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| Error::Unavailable(describe(&e)))?;
        if (200..300).contains(&status) {
            return serde_json::from_slice(&bytes).map_err(|e| Error::Protocol(e.to_string()));
        }
        Err(classify(status, &bytes))
    }
}

/// Sort a non-2xx answer.
fn classify(status: u16, body: &[u8]) -> Error {
    let parsed = serde_json::from_slice::<ErrorBody>(body).ok();
    let code = parsed.as_ref().map(|b| b.error.code);
    let text = match &parsed {
        Some(b) => b.error.message.clone(),
        None => String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned(),
    };
    match (status, code) {
        (409, Some(ErrorCode::LeaseLost)) => Error::LeaseLost(text),
        (408 | 429, _) | (500.., _) => Error::Unavailable(format!("status {status}: {text}")),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        assert_eq!(
            check_base_url("http://127.0.0.1:8420/").as_deref(),
            Ok("http://127.0.0.1:8420")
        );
        assert!(check_base_url("https://ctl.example/baton").is_ok());
        assert!(check_base_url("ftp://x").is_err());
        assert!(check_base_url("127.0.0.1:8420").is_err());
        assert!(check_base_url("http://x/?a=1").is_err());
    }

    #[test]
    fn errors_are_sorted() {
        let body =
            serde_json::to_vec(&ErrorBody::new(ErrorCode::LeaseLost, "stale", None)).expect("json");
        assert!(matches!(classify(409, &body), Error::LeaseLost(m) if m == "stale"));
        let conflict =
            serde_json::to_vec(&ErrorBody::new(ErrorCode::Conflict, "x", None)).expect("json");
        assert!(matches!(
            classify(409, &conflict),
            Error::Rejected {
                status: 409,
                code: Some(ErrorCode::Conflict),
                ..
            }
        ));
        assert!(classify(401, b"nope").is_auth());
        assert!(classify(403, b"").is_auth());
        assert!(matches!(classify(503, b"down"), Error::Unavailable(_)));
        assert!(matches!(classify(429, b""), Error::Unavailable(_)));
        assert!(matches!(
            classify(404, b""),
            Error::Rejected { status: 404, .. }
        ));
    }
}
