//! A typed client over the v1 API, for tests and the demo.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use baton_proto::{AgentList, ErrorBody, JobId, JobState, JobView};
use reqwest::StatusCode;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{AGENT_TOKEN, OPERATOR_TOKEN};

/// An operator client.
#[derive(Debug, Clone)]
pub struct Api {
    client: reqwest::Client,
    /// Base URL.
    pub url: String,
    token: String,
}

/// A raw answer: status and JSON body.
#[derive(Debug)]
pub struct Raw {
    /// HTTP status.
    pub status: StatusCode,
    /// Body as JSON (Null when empty or not JSON).
    pub body: serde_json::Value,
}

impl Raw {
    /// The error body, if the answer is one.
    pub fn error(&self) -> Option<ErrorBody> {
        serde_json::from_value(self.body.clone()).ok()
    }
}

impl Api {
    /// A client with the harness operator token.
    pub fn new(url: &str) -> Api {
        Api::with_token(url, OPERATOR_TOKEN)
    }

    /// A client with any bearer token.
    pub fn with_token(url: &str, token: &str) -> Api {
        Api {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap_or_default(),
            url: url.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
        }
    }

    /// Send anything; never fails on HTTP status.
    pub async fn raw(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Result<Raw> {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let resp = req.send().await.context("send")?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        Ok(Raw { status, body })
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&impl Serialize>,
        headers: &[(&str, &str)],
    ) -> Result<T> {
        let body = body.map(serde_json::to_vec).transpose()?;
        let raw = self.raw(method, path, body, headers).await?;
        if !raw.status.is_success() {
            bail!("{path}: {} {}", raw.status, raw.body);
        }
        serde_json::from_value(raw.body).context("decode")
    }

    /// Submit a job given as JSON.
    pub async fn submit(&self, job: serde_json::Value) -> Result<JobView> {
        self.call(reqwest::Method::POST, "/v1/jobs", Some(&job), &[])
            .await
    }

    /// A job with attempts.
    pub async fn job(&self, id: JobId) -> Result<JobView> {
        self.call(
            reqwest::Method::GET,
            &format!("/v1/jobs/{id}"),
            None::<&()>,
            &[],
        )
        .await
    }

    /// Cancel.
    pub async fn cancel(&self, id: JobId) -> Result<JobView> {
        self.call(
            reqwest::Method::POST,
            &format!("/v1/jobs/{id}/cancel"),
            None::<&()>,
            &[],
        )
        .await
    }

    /// Agents.
    pub async fn agents(&self) -> Result<AgentList> {
        self.call(reqwest::Method::GET, "/v1/agents", None::<&()>, &[])
            .await
    }

    /// Poll the job until `pred` holds (or fail after `timeout`).
    pub async fn wait_for(
        &self,
        id: JobId,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&JobView) -> bool,
    ) -> Result<JobView> {
        let end = Instant::now() + timeout;
        loop {
            if let Ok(j) = self.job(id).await {
                if pred(&j) {
                    return Ok(j);
                }
                if Instant::now() > end {
                    bail!("job {id} never became {what}; last: {j:?}");
                }
            } else if Instant::now() > end {
                bail!("job {id}: controller unreachable waiting for {what}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Wait until the job is terminal.
    pub async fn wait_terminal(&self, id: JobId, timeout: Duration) -> Result<JobView> {
        self.wait_for(id, timeout, "terminal", |j| j.state.is_terminal())
            .await
    }

    /// Wait until the job is running, returning the holder's id.
    pub async fn wait_running(&self, id: JobId, timeout: Duration) -> Result<(JobView, String)> {
        let j = self
            .wait_for(id, timeout, "running", |j| {
                j.state == JobState::Running && j.lease_agent.is_some()
            })
            .await?;
        let holder = j.lease_agent.clone().unwrap_or_default();
        Ok((j, holder))
    }

    /// An agent-credential client speaking as `agent_id` (for protocol tests).
    pub fn as_agent(&self, agent_id: &str) -> AgentApi {
        AgentApi {
            api: Api::with_token(&self.url, AGENT_TOKEN),
            agent_id: agent_id.to_owned(),
        }
    }
}

/// Agent-side calls made by the test itself.
#[derive(Debug, Clone)]
pub struct AgentApi {
    api: Api,
    agent_id: String,
}

impl AgentApi {
    /// POST a JSON body to an agent endpoint, as this agent.
    pub async fn post(&self, path: &str, body: serde_json::Value) -> Result<Raw> {
        self.api
            .raw(
                reqwest::Method::POST,
                path,
                Some(serde_json::to_vec(&body)?),
                &[(baton_proto::AGENT_ID_HEADER, &self.agent_id)],
            )
            .await
    }
}
