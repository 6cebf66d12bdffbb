//! The HTTP side of `batonctl`: one client, the operator routes, and the
//! errors that decide the exit code.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result};
use baton_proto::{ErrorBody, ErrorDetail, IDEMPOTENCY_KEY_HEADER, JobId, JobSubmit};
use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

/// A mistake of the operator found before anything was sent (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Build a [`UsageError`] wrapped in `anyhow`.
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    UsageError(message.into()).into()
}

/// The controller answered with a non-2xx status.
#[derive(Debug, thiserror::Error)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// The parsed error body, when the body was one.
    pub detail: Option<ErrorDetail>,
    /// The raw body (first bytes), for bodies that are not an error body.
    pub body: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.detail {
            Some(d) => {
                f.write_str(&d.message)?;
                if let Some(field) = &d.field {
                    write!(f, " (field: {field})")?;
                }
                Ok(())
            }
            None => {
                write!(f, "HTTP {}", self.status)?;
                let body = self.body.trim();
                if !body.is_empty() {
                    let snippet: String = body.chars().take(200).collect();
                    write!(f, ": {snippet}")?;
                }
                Ok(())
            }
        }
    }
}

impl ApiError {
    /// Parse an error answer.
    pub fn from_response(status: StatusCode, body: &str) -> ApiError {
        let detail = serde_json::from_str::<ErrorBody>(body)
            .ok()
            .map(|b| b.error);
        ApiError {
            status,
            detail,
            body: body.chars().take(1000).collect(),
        }
    }

    /// A hint for the operator on credential errors.
    pub fn hint(&self) -> Option<&'static str> {
        match self.status {
            StatusCode::UNAUTHORIZED => {
                Some("the operator token is unknown or revoked (check BATON_TOKEN or --token-file)")
            }
            StatusCode::FORBIDDEN => {
                Some("the token's role does not allow this; `batonctl whoami` shows it")
            }
            _ => None,
        }
    }

    /// Whether retrying the same request later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self.status,
            StatusCode::TOO_MANY_REQUESTS
                | StatusCode::BAD_GATEWAY
                | StatusCode::SERVICE_UNAVAILABLE
                | StatusCode::GATEWAY_TIMEOUT
        )
    }
}

/// The controller could not be reached, or the answer could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{context}")]
pub struct TransportError {
    context: String,
    #[source]
    source: reqwest::Error,
    /// What to change when the scheme or the TLS trust does not match.
    hint: Option<String>,
}

/// How batonctl pins a CA (for the hints).
const PIN: &str = "BATON_CA_FILE or --ca-file";

impl TransportError {
    /// A transport error reaching `base`, with a hint when its cause is a
    /// scheme or TLS mismatch (found in the source chain).
    pub fn new(context: String, source: reqwest::Error, base: &Url) -> TransportError {
        use baton_proto::tls_hint::{Target, diagnose};
        let hint = diagnose(&source, base.scheme() == "https").map(|m| {
            let to = Target {
                host: base.host_str().unwrap_or_default(),
                port: base.port_or_known_default().unwrap_or_default(),
            };
            m.hint(to, PIN)
        });
        TransportError {
            context,
            source,
            hint,
        }
    }

    /// The hint for the operator, when there is one.
    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    /// Whether the request certainly never reached a controller: the
    /// connection (or its TLS handshake) failed.
    pub fn nothing_sent(&self) -> bool {
        self.source.is_connect() || self.hint.is_some()
    }

    /// Whether retrying later may succeed: yes for a transport failure,
    /// unless the scheme or the TLS trust does not match (that needs a fix).
    pub fn is_transient(&self) -> bool {
        !self.source.is_builder() && self.hint.is_none()
    }
}

/// Whether an error from [`Api`] is worth retrying (controller restarting, overloaded).
pub fn is_transient(err: &anyhow::Error) -> bool {
    if let Some(e) = err.downcast_ref::<ApiError>() {
        return e.is_transient();
    }
    if let Some(e) = err.downcast_ref::<TransportError>() {
        return e.is_transient();
    }
    false
}

/// Query parameters of `GET /v1/jobs`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub state: Option<String>,
    pub group: Option<String>,
    pub kind: Option<String>,
    pub label: Option<(String, String)>,
    pub limit: Option<u32>,
    pub before: Option<JobId>,
}

impl ListQuery {
    /// The query pairs, in a stable order (the label as `label=k=v`).
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(s) = &self.state {
            out.push(("state", s.clone()));
        }
        if let Some(g) = &self.group {
            out.push(("group", g.clone()));
        }
        if let Some(k) = &self.kind {
            out.push(("kind", k.clone()));
        }
        if let Some((k, v)) = &self.label {
            out.push(("label", format!("{k}={v}")));
        }
        if let Some(l) = self.limit {
            out.push(("limit", l.to_string()));
        }
        if let Some(b) = self.before {
            out.push(("before", b.to_string()));
        }
        out
    }
}

/// A 2xx answer: its status, its JSON body (`Null` when empty) and the body as sent.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
    pub text: String,
    /// The controller's clock when it answered ([`baton_proto::NOW_HEADER`]).
    pub now: Option<DateTime<Utc>>,
}

impl Answer {
    /// What the view's times are shown relative to: the controller's clock
    /// when it sent one, else this machine's.
    pub fn now(&self) -> DateTime<Utc> {
        self.now.unwrap_or_else(Utc::now)
    }

    /// The body as the controller sent it (field order kept), pretty-printed.
    pub fn pretty(&self) -> String {
        if self.body.is_null() {
            "null".to_owned()
        } else {
            reindent(&self.text)
        }
    }
}

/// Pretty-print valid JSON text without reordering object keys (2-space indent).
pub fn reindent(json: &str) -> String {
    let mut out = String::with_capacity(json.len() * 2);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut chars = json.chars().peekable();
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        for _ in 0..depth {
            out.push_str("  ");
        }
    };
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                while chars.peek().is_some_and(|n| n.is_whitespace()) {
                    chars.next();
                }
                if chars.peek() == Some(&close) {
                    chars.next();
                    out.push(c);
                    out.push(close);
                } else {
                    out.push(c);
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(',');
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

/// The PEM certificates of `--ca-file` (at least one).
pub fn read_ca_file(path: &Path) -> Result<Vec<reqwest::Certificate>> {
    let pem = std::fs::read(path)
        .map_err(|e| usage(format!("cannot read --ca-file {}: {e}", path.display())))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
        usage(format!(
            "--ca-file {}: not a PEM certificate: {e}",
            path.display()
        ))
    })?;
    if certs.is_empty() {
        return Err(usage(format!(
            "--ca-file {}: no PEM certificate found",
            path.display()
        )));
    }
    Ok(certs)
}

/// Percent-encode one path segment (an id given by the operator).
pub fn segment(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Query parameters of `GET /v1/audit`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AuditQuery {
    pub limit: Option<u32>,
    pub before: Option<i64>,
    pub actor: Option<String>,
}

impl AuditQuery {
    /// The query pairs, in a stable order.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(l) = self.limit {
            out.push(("limit", l.to_string()));
        }
        if let Some(b) = self.before {
            out.push(("before", b.to_string()));
        }
        if let Some(a) = &self.actor {
            out.push(("actor", a.clone()));
        }
        out
    }
}

/// The wait before the `n`-th move to another controller after the first
/// (which is at once): 100 ms doubling, capped at 1 s, plus up to as much
/// again at random, so several batonctl runs do not move in lock step.
pub fn failover_wait(n: usize) -> Duration {
    let base = Duration::from_millis(100)
        .saturating_mul(1 << n.min(4))
        .min(Duration::from_secs(1));
    base + base.mul_f64(rand::random::<f64>())
}

/// One request of [`Api::send`], as sent to each controller it tries.
struct Call<'a> {
    method: Method,
    path: &'a str,
    query: &'a [(&'a str, String)],
    body: Option<&'a Value>,
    idempotency_key: Option<&'a str>,
    auth: bool,
}

/// The operator API of one controller, or of several replicas on one
/// database (`--url` repeated, or `BATON_URL` comma-separated): a call goes
/// to the one that answered last and moves on to the next when the call
/// failed in a way another replica may not ([`Api::may_fail_over`]).
pub struct Api {
    http: reqwest::Client,
    bases: Vec<Url>,
    /// Index of the base tried first: the last one that answered.
    preferred: AtomicUsize,
    token: String,
}

/// Parse and check the controller URL.
pub fn parse_base_url(raw: &str) -> Result<Url> {
    let url = Url::parse(raw.trim()).map_err(|e| usage(format!("invalid --url `{raw}`: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(usage(format!(
            "invalid --url `{raw}`: the scheme must be http or https"
        )));
    }
    if url.cannot_be_a_base() || url.host_str().is_none() {
        return Err(usage(format!("invalid --url `{raw}`: no host")));
    }
    Ok(url)
}

/// `base` + `path`, keeping any path prefix of `base` (`http://h/baton` + `/v1/jobs`).
pub fn join_url(base: &Url, path: &str, query: &[(&str, String)]) -> Url {
    let mut url = base.clone();
    let prefix = base.path().trim_end_matches('/');
    url.set_path(&format!("{prefix}/{}", path.trim_start_matches('/')));
    url.set_query(None);
    url.set_fragment(None);
    if !query.is_empty() {
        let mut pairs = url.query_pairs_mut();
        for (k, v) in query {
            pairs.append_pair(k, v);
        }
    }
    url
}

impl Api {
    /// Build a client for `base`. With `ca_file`, the CA certificates it holds are
    /// the only roots trusted (pinned): the built-in and system roots are not used.
    #[cfg(test)]
    pub fn new(base: Url, token: String, ca_file: Option<&Path>) -> Result<Api> {
        Self::with_bases(vec![base], token, ca_file)
    }

    /// Build a client for several controllers (at least one), as `Api::new`.
    pub fn with_bases(bases: Vec<Url>, token: String, ca_file: Option<&Path>) -> Result<Api> {
        if bases.is_empty() {
            return Err(usage("no controller URL (--url)"));
        }
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("batonctl/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60));
        if let Some(path) = ca_file {
            builder = builder.tls_certs_only(read_ca_file(path)?);
        }
        let http = builder.build().context("cannot build the HTTP client")?;
        Ok(Api {
            http,
            bases,
            preferred: AtomicUsize::new(0),
            token,
        })
    }

    /// Whether several controllers are configured.
    pub fn several(&self) -> bool {
        self.bases.len() > 1
    }

    /// The controller tried first now (the last one that answered).
    #[cfg(test)]
    pub fn base(&self) -> &Url {
        &self.bases[self.preferred.load(Ordering::Relaxed) % self.bases.len()]
    }

    /// Whether a call that failed with `err` may be sent to the next
    /// controller: when nothing was sent (the connection or the TLS handshake
    /// failed), or when the call is safe to repeat (`GET`, `PUT`, `DELETE`, or
    /// a `POST` with an idempotency key) and the controller failed (5xx) or
    /// the exchange broke off (timeout, reset).
    pub fn may_fail_over(err: &anyhow::Error, method: &Method, idempotency_key: bool) -> bool {
        let repeatable = idempotency_key
            || matches!(
                *method,
                Method::GET | Method::HEAD | Method::PUT | Method::DELETE
            );
        if let Some(e) = err.downcast_ref::<TransportError>() {
            return e.nothing_sent() || (repeatable && !e.source.is_builder());
        }
        if let Some(e) = err.downcast_ref::<ApiError>() {
            return repeatable && e.status.is_server_error();
        }
        false
    }

    /// Send one request to the controllers in turn (the preferred one first;
    /// the first move at once, later ones after [`failover_wait`]) until one
    /// answers or the failure may not be repeated elsewhere; a non-2xx
    /// answer becomes an [`ApiError`].
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        idempotency_key: Option<&str>,
        auth: bool,
    ) -> Result<Answer> {
        let call = Call {
            method: method.clone(),
            path,
            query,
            body,
            idempotency_key,
            auth,
        };
        let n = self.bases.len();
        let start = self.preferred.load(Ordering::Relaxed) % n;
        let mut failed: Vec<String> = Vec::new();
        for i in 0..n {
            let idx = (start + i) % n;
            let base = &self.bases[idx];
            if i >= 2 {
                tokio::time::sleep(failover_wait(i - 2)).await;
            }
            let result = self.send_to(base, &call).await;
            let err = match result {
                Ok(answer) => {
                    self.answered(idx);
                    return Ok(answer);
                }
                Err(e) => e,
            };
            let next = i + 1 < n && Self::may_fail_over(&err, &method, idempotency_key.is_some());
            if !next {
                if err.downcast_ref::<ApiError>().is_some() {
                    self.answered(idx);
                }
                if failed.is_empty() {
                    return Err(err);
                }
                return Err(err.context(format!(
                    "no controller answered ({}; {base}: the last)",
                    failed.join("; ")
                )));
            }
            failed.push(format!("{base}: {err}"));
        }
        Err(usage("no controller URL (--url)"))
    }

    /// `idx` answered: it is tried first from now on.
    fn answered(&self, idx: usize) {
        let was = self.preferred.swap(idx, Ordering::Relaxed);
        if was != idx {
            eprintln!(
                "note: switched to the controller at {} ({} did not answer)",
                self.bases[idx], self.bases[was]
            );
        }
    }

    /// One request to the controller at `base`.
    async fn send_to(&self, base: &Url, call: &Call<'_>) -> Result<Answer> {
        let Call {
            method,
            path,
            query,
            body,
            idempotency_key,
            auth,
        } = call;
        let url = join_url(base, path, query);
        let mut req = self
            .http
            .request(method.clone(), url.clone())
            .header(reqwest::header::ACCEPT, "application/json");
        if *auth {
            req = req.bearer_auth(&self.token);
        }
        if let Some(key) = idempotency_key {
            req = req.header(IDEMPOTENCY_KEY_HEADER, *key);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.map_err(|source| {
            let context = format!("cannot reach the controller at {base}");
            TransportError::new(context, source, base)
        })?;
        let status = resp.status();
        let now = resp
            .headers()
            .get(baton_proto::NOW_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i64>().ok())
            .and_then(DateTime::from_timestamp_millis);
        let text = resp.text().await.map_err(|source| {
            let context = format!("cannot read the answer to {method} {}", url.path());
            TransportError::new(context, source, base)
        })?;
        if !status.is_success() {
            return Err(ApiError::from_response(status, &text).into());
        }
        let body = if text.trim().is_empty() {
            Value::Null
        } else {
            parse_answer(&text).with_context(|| {
                format!(
                    "the controller answered {method} {} with invalid JSON",
                    url.path()
                )
            })?
        };
        Ok(Answer {
            status,
            body,
            text,
            now,
        })
    }

    /// `POST /v1/jobs`.
    pub async fn submit(&self, job: &JobSubmit, idempotency_key: Option<&str>) -> Result<Answer> {
        let body = serde_json::to_value(job).context("cannot encode the job")?;
        self.send(
            Method::POST,
            "/v1/jobs",
            &[],
            Some(&body),
            idempotency_key,
            true,
        )
        .await
    }

    /// `GET /v1/jobs?...`.
    pub async fn list(&self, query: &ListQuery) -> Result<Answer> {
        self.send(Method::GET, "/v1/jobs", &query.pairs(), None, None, true)
            .await
    }

    /// `GET /v1/jobs/{id}`.
    pub async fn get(&self, id: JobId) -> Result<Answer> {
        self.send(
            Method::GET,
            &format!("/v1/jobs/{id}"),
            &[],
            None,
            None,
            true,
        )
        .await
    }

    /// `POST /v1/jobs/{id}/cancel` or `/retry`.
    pub async fn action(&self, id: JobId, action: &str) -> Result<Answer> {
        self.send(
            Method::POST,
            &format!("/v1/jobs/{id}/{action}"),
            &[],
            None,
            None,
            true,
        )
        .await
    }

    /// `GET /v1/agents`.
    pub async fn agents(&self) -> Result<Answer> {
        self.get_json("/v1/agents", &[]).await
    }

    /// An authenticated `GET`.
    pub async fn get_json(&self, path: &str, query: &[(&str, String)]) -> Result<Answer> {
        self.send(Method::GET, path, query, None, None, true).await
    }

    /// An authenticated `POST`, with a JSON body when given.
    pub async fn post_json<T: serde::Serialize>(
        &self,
        path: &str,
        body: Option<&T>,
    ) -> Result<Answer> {
        let body = body
            .map(serde_json::to_value)
            .transpose()
            .context("cannot encode the request")?;
        self.send(Method::POST, path, &[], body.as_ref(), None, true)
            .await
    }

    /// An authenticated `PUT` with a JSON body.
    pub async fn put_json<T: serde::Serialize>(&self, path: &str, body: &T) -> Result<Answer> {
        let body = serde_json::to_value(body).context("cannot encode the request")?;
        self.send(Method::PUT, path, &[], Some(&body), None, true)
            .await
    }

    /// An authenticated `DELETE`.
    pub async fn delete(&self, path: &str) -> Result<Answer> {
        self.send(Method::DELETE, path, &[], None, None, true).await
    }

    /// `GET /healthz` or `/readyz` (no credentials): the status of the first
    /// controller (the preferred one first) that answers, or the transport
    /// error of the last one.
    pub async fn probe(&self, path: &str) -> Result<(StatusCode, String)> {
        let n = self.bases.len();
        let start = self.preferred.load(Ordering::Relaxed) % n;
        let mut last = None;
        for i in 0..n {
            let idx = (start + i) % n;
            let base = &self.bases[idx];
            match self.http.get(join_url(base, path, &[])).send().await {
                Ok(resp) => {
                    self.answered(idx);
                    let status = resp.status();
                    let text = resp.text().await.unwrap_or_default();
                    return Ok((status, text));
                }
                Err(source) => {
                    let context = format!("cannot reach the controller at {base}");
                    last = Some(TransportError::new(context, source, base));
                }
            }
        }
        Err(last.map_or_else(|| usage("no controller URL (--url)"), Into::into))
    }
}

/// Deepest nesting batonctl reads as is; deeper values (an old job's
/// `result.data`) are shown as [`TOO_DEEP`] instead of failing the command.
const MAX_SHOWN_DEPTH: usize = 64;
/// What stands in for a value nested deeper than [`MAX_SHOWN_DEPTH`].
const TOO_DEEP: &str = "\"(nested too deep to show)\"";

/// Parse an answer; if it nests past serde_json's recursion limit, parse it
/// again with the deepest values replaced (see [`prune_deep_json`]).
fn parse_answer(text: &str) -> serde_json::Result<Value> {
    match serde_json::from_str(text) {
        Err(e) if e.to_string().contains("recursion limit") => {
            serde_json::from_str(&prune_deep_json(text, MAX_SHOWN_DEPTH))
        }
        other => other,
    }
}

/// `text` (JSON) with every array or object nested deeper than `max`
/// replaced by [`TOO_DEEP`]. A byte scan (no recursion): strings are copied
/// as they are; every cut is at an ASCII bracket, so on a char boundary.
pub fn prune_deep_json(text: &str, max: usize) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len().min(1 << 20));
    let (mut depth, mut i, mut copied) = (0usize, 0usize, 0usize);
    let mut in_str = false;
    while i < b.len() {
        match (in_str, b[i]) {
            (true, b'\\') => i += 1,
            (true, b'"') | (false, b'"') => in_str = !in_str,
            (false, b'[' | b'{') if depth == max => {
                out.push_str(&text[copied..i]);
                out.push_str(TOO_DEEP);
                i = skip_value(b, i);
                copied = i;
                continue;
            }
            (false, b'[' | b'{') => depth += 1,
            (false, b']' | b'}') => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    out.push_str(&text[copied.min(text.len())..]);
    out
}

/// The index just past the array or object opening at `start`.
fn skip_value(b: &[u8], start: usize) -> usize {
    let (mut depth, mut i, mut in_str) = (0usize, start, false);
    while i < b.len() {
        match (in_str, b[i]) {
            (true, b'\\') => i += 1,
            (true, b'"') | (false, b'"') => in_str = !in_str,
            (false, b'[' | b'{') => depth += 1,
            (false, b']' | b'}') => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    b.len()
}

#[cfg(test)]
mod failover_tests;

#[cfg(test)]
mod tls_tests;

#[cfg(test)]
mod tests;
