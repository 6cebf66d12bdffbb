//! A typed client over the v1 API, for tests and the demo.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use baton_proto::pipeline::{PipelineView, RunState, RunView};
use baton_proto::schedule::{OccurrenceList, OccurrenceView, RunId, ScheduleView};
use baton_proto::{AgentList, ErrorBody, JobId, JobState, JobView};
use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::StatusCode;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// An operator client.
#[derive(Debug, Clone)]
pub struct Api {
    client: reqwest::Client,
    /// Base URL.
    pub url: String,
    token: String,
    ca: Option<std::path::PathBuf>,
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
    /// A client with any bearer token; `ca` pins the CA for HTTPS.
    pub fn connect(url: &str, token: &str, ca: Option<&std::path::Path>) -> Api {
        let mut b = reqwest::Client::builder().timeout(Duration::from_secs(60));
        if let Some(ca) = ca {
            let pem = std::fs::read(ca).unwrap_or_default();
            if let Ok(certs) = reqwest::Certificate::from_pem_bundle(&pem) {
                b = b.tls_certs_only(certs);
            }
        }
        Api {
            client: b.build().unwrap_or_default(),
            url: url.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            ca: ca.map(std::path::Path::to_path_buf),
        }
    }

    /// The same controller with another bearer token.
    pub fn with_token(&self, token: &str) -> Api {
        Api::connect(&self.url, token, self.ca.as_deref())
    }

    /// The same client and connection pool with another bearer token (many
    /// simulated agents sharing one client; [`Api::with_token`] builds a new one).
    pub fn sharing(&self, token: &str) -> Api {
        Api {
            client: self.client.clone(),
            url: self.url.clone(),
            token: token.to_owned(),
            ca: self.ca.clone(),
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

    /// Submit a job given as JSON. Unless the job says otherwise it is sent
    /// with `allow_unplaced`: most tests submit before their agents have
    /// enrolled or advertised their connections, and test dispatch, not
    /// placement (tests/tests/submit_checks.rs and the controller's
    /// `api::operator` tests do).
    pub async fn submit(&self, mut job: serde_json::Value) -> Result<JobView> {
        if let Some(o) = job.as_object_mut() {
            o.entry("allow_unplaced")
                .or_insert(serde_json::Value::Bool(true));
        }
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

    /// Wait until at least `n` agents are online and have polled (their
    /// advertised kinds are stored: an enrollment alone makes an agent look
    /// online, with nothing advertised yet); the error says how many came.
    pub async fn wait_online(&self, n: usize, timeout: Duration) -> Result<()> {
        let end = Instant::now() + timeout;
        loop {
            let online = self
                .agents()
                .await
                .map(|l| {
                    l.agents
                        .iter()
                        .filter(|a| a.online && !a.capabilities.kinds.is_empty())
                        .count()
                })
                .unwrap_or(0);
            if online >= n {
                return Ok(());
            }
            if Instant::now() > end {
                bail!("only {online}/{n} agents came online");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
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

    /// An agent-credential client: `secret` speaking as `agent_id` (protocol tests).
    pub fn as_agent(&self, agent_id: &str, secret: &str) -> AgentApi {
        AgentApi {
            api: self.with_token(secret),
            agent_id: agent_id.to_owned(),
        }
    }

    /// A single-use enrollment token for `groups`.
    pub async fn enrollment_token(&self, groups: &[String]) -> Result<String> {
        let v: serde_json::Value = self
            .call(
                reqwest::Method::POST,
                "/v1/enrollment-tokens",
                Some(&serde_json::json!({"groups": groups, "expires_in_ms": 3_600_000})),
                &[],
            )
            .await?;
        v["token"]
            .as_str()
            .map(str::to_owned)
            .context("no token in the answer")
    }

    /// Start a failover drill (`POST /v1/drills`), raw: tests check refusals too.
    pub async fn drill_start(&self, body: serde_json::Value) -> Result<Raw> {
        self.raw(
            reqwest::Method::POST,
            "/v1/drills",
            Some(serde_json::to_vec(&body)?),
            &[],
        )
        .await
    }

    /// A drill with its report and timeline.
    pub async fn drill(
        &self,
        id: baton_proto::drill::DrillId,
    ) -> Result<baton_proto::drill::DrillView> {
        self.call(
            reqwest::Method::GET,
            &format!("/v1/drills/{id}"),
            None::<&()>,
            &[],
        )
        .await
    }

    /// Every drill, newest first.
    pub async fn drills(&self) -> Result<baton_proto::drill::DrillList> {
        self.call(reqwest::Method::GET, "/v1/drills", None::<&()>, &[])
            .await
    }

    /// Poll the drill until it has its verdict (or fail after `timeout`).
    pub async fn wait_drill(
        &self,
        id: baton_proto::drill::DrillId,
        timeout: Duration,
    ) -> Result<baton_proto::drill::DrillView> {
        let end = Instant::now() + timeout;
        loop {
            let d = self.drill(id).await?;
            if d.state != baton_proto::drill::DrillState::Running {
                return Ok(d);
            }
            if Instant::now() > end {
                bail!("drill {id} got no verdict in {timeout:?}; last: {d:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `GET /metrics` as text (status checked).
    pub async fn metrics(&self) -> Result<String> {
        let resp = self
            .client
            .get(format!("{}/metrics", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .context("send")?;
        if !resp.status().is_success() {
            bail!("/metrics: {}", resp.status());
        }
        Ok(resp.text().await?)
    }

    /// The newest 1,000 audit entries (`GET /v1/audit`, status checked).
    pub async fn audit_entries(&self) -> Result<Vec<serde_json::Value>> {
        let r = self
            .raw(reqwest::Method::GET, "/v1/audit?limit=1000", None, &[])
            .await?;
        if !r.status.is_success() {
            bail!("/v1/audit: {} {}", r.status, r.body);
        }
        r.body["entries"]
            .as_array()
            .cloned()
            .with_context(|| format!("/v1/audit: no entries in {}", r.body))
    }

    /// A new operator token with `role`; returns the secret.
    pub async fn operator_token(&self, name: &str, role: &str) -> Result<String> {
        let v: serde_json::Value = self
            .call(
                reqwest::Method::POST,
                "/v1/tokens",
                Some(&serde_json::json!({"name": name, "role": role})),
                &[],
            )
            .await?;
        v["token"]
            .as_str()
            .map(str::to_owned)
            .context("no token in the answer")
    }
}

/// Schedules and pipelines (`/v1/schedules`, `/v1/pipelines`, `/v1/runs`).
impl Api {
    /// GET a JSON answer (status checked).
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.call(reqwest::Method::GET, path, None::<&()>, &[])
            .await
    }

    /// POST a JSON body (or none) and decode the answer (status checked).
    pub async fn post_json<T: DeserializeOwned>(
        &self,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<T> {
        self.call(reqwest::Method::POST, path, body, &[]).await
    }

    /// Create a schedule given as JSON (a `ScheduleSpec`).
    pub async fn create_schedule(&self, spec: serde_json::Value) -> Result<ScheduleView> {
        self.post_json("/v1/schedules", Some(&spec)).await
    }

    /// One schedule.
    pub async fn schedule(&self, name: &str) -> Result<ScheduleView> {
        self.get_json(&format!("/v1/schedules/{name}")).await
    }

    /// `POST /v1/schedules/{name}/{op}` for `pause` and `resume`.
    pub async fn schedule_op(&self, name: &str, op: &str) -> Result<ScheduleView> {
        self.post_json(&format!("/v1/schedules/{name}/{op}"), None)
            .await
    }

    /// Every occurrence the schedule's history holds, newest first (all pages).
    pub async fn history(&self, name: &str) -> Result<Vec<OccurrenceView>> {
        let mut out = Vec::new();
        let mut before: Option<DateTime<Utc>> = None;
        loop {
            let mut path = format!("/v1/schedules/{name}/history?limit=1000");
            if let Some(b) = before {
                path.push_str("&before=");
                path.push_str(&b.to_rfc3339_opts(SecondsFormat::Millis, true));
            }
            let page: OccurrenceList = self.get_json(&path).await?;
            let empty = page.occurrences.is_empty();
            out.extend(page.occurrences);
            match page.next_before {
                Some(b) if !empty && Some(b) != before => before = Some(b),
                _ => return Ok(out),
            }
        }
    }

    /// Poll the schedule's history until `pred` holds (or fail after `timeout`).
    pub async fn wait_history(
        &self,
        name: &str,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&[OccurrenceView]) -> bool,
    ) -> Result<Vec<OccurrenceView>> {
        let end = Instant::now() + timeout;
        loop {
            let h = self.history(name).await;
            if let Ok(h) = &h
                && pred(h)
            {
                return Ok(h.clone());
            }
            if Instant::now() > end {
                bail!("schedule {name}: never {what}; last history: {h:#?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Create a pipeline given as JSON (a `PipelineSpec`).
    pub async fn create_pipeline(&self, spec: serde_json::Value) -> Result<PipelineView> {
        self.post_json("/v1/pipelines", Some(&spec)).await
    }

    /// Start a run of the pipeline.
    pub async fn start_run(&self, pipeline: &str) -> Result<RunView> {
        self.post_json(&format!("/v1/pipelines/{pipeline}/runs"), None)
            .await
    }

    /// A run with its steps.
    pub async fn run(&self, id: RunId) -> Result<RunView> {
        self.get_json(&format!("/v1/runs/{id}")).await
    }

    /// `POST /v1/runs/{id}/{op}` for `cancel` and `retry`.
    pub async fn run_op(&self, id: RunId, op: &str) -> Result<RunView> {
        self.post_json(&format!("/v1/runs/{id}/{op}"), None).await
    }

    /// Poll the run until it has ended (or fail after `timeout`).
    pub async fn wait_run_ended(&self, id: RunId, timeout: Duration) -> Result<RunView> {
        let end = Instant::now() + timeout;
        loop {
            let r = self.run(id).await;
            if let Ok(r) = &r
                && r.state != RunState::Running
            {
                return Ok(r.clone());
            }
            if Instant::now() > end {
                bail!("run {id} never ended; last: {r:#?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
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
