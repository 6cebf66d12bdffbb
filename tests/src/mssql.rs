//! SQL Server helpers for the end-to-end tests: the agent's
//! `[connections.<name>]` table for a TDS test server ([`tds_connection_toml`])
//! or for a real SQL Server given as an ADO connection string ([`Ado`]),
//! job bodies ([`procedure_job`], [`sql_job`], [`dump_job`], [`with`]) and a
//! cluster whose agents all have the connection ([`cluster`]).
//!
//! Secrets follow the agent's rules: the password is written to a 0600 file
//! ([`write_password_file`]) that the config names; it never appears inline.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use baton_proto::{JobId, JobState, JobView};
use serde_json::{Value, json};

use crate::cluster::Cluster;
use crate::tds::{Entry, Request, Rpc, TdsServer, normalize_name};

pub use crate::mariadb::write_password_file;

/// The SQL login the e2e tests' TDS servers accept ([`crate::tds::Script::login`]).
pub const USER: &str = "baton";

/// Its password.
pub const PASSWORD: &str = "Bat0n-e2e-p\u{e4}ss";

/// TOML for an unencrypted session (TDS 7.4 without TLS), what the plain
/// [`TdsServer::start`] speaks.
pub const PLAIN: &str = "encrypt = \"off\"\n";

/// A TOML basic string (JSON string escapes are valid TOML).
pub fn toml_str(s: &str) -> String {
    Value::from(s).to_string()
}

/// A TOML key: bare when it can be, quoted otherwise.
fn toml_key(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
    {
        s.to_owned()
    } else {
        toml_str(s)
    }
}

/// `[connections.<name>]` with `kind = "mssql"`, host, port, user and
/// `password_file`; `extras` (TOML lines: `encrypt`, `ca_file`,
/// `backup_dir`, …) are appended.
pub fn connection_toml(
    name: &str,
    host: &str,
    port: u16,
    user: &str,
    password_file: &Path,
    extras: &str,
) -> String {
    let mut s = format!(
        "[connections.{}]\nkind = \"mssql\"\nhost = {}\nport = {port}\nuser = {}\npassword_file = {}\n",
        toml_key(name),
        toml_str(host),
        toml_str(user),
        toml_str(&password_file.display().to_string()),
    );
    s.push_str(extras);
    if !s.ends_with('\n') {
        s.push('\n');
    }
    s
}

/// [`connection_toml`] for a TDS test server on `127.0.0.1` as [`USER`];
/// `extras` must say how to encrypt (e.g. [`PLAIN`]).
pub fn tds_connection_toml(
    name: &str,
    server: &TdsServer,
    password_file: &Path,
    extras: &str,
) -> String {
    connection_toml(
        name,
        "127.0.0.1",
        server.port(),
        USER,
        password_file,
        extras,
    )
}

/// A controller and `n` agents in group `default` whose config has
/// `connections` appended, all online.
pub async fn cluster(n: usize, connections: &str) -> Result<Cluster> {
    let conn = connections.to_owned();
    let c = Cluster::start_with(n, "", move |o| o.extra = conn.clone()).await?;
    c.wait_agents_online().await?;
    Ok(c)
}

/// A `procedure` job on `connection` in group `default`: three attempts, a
/// 50 ms backoff without jitter.
pub fn procedure_job(connection: &str, procedure: &str, params: Value) -> Value {
    job(json!({
        "kind": "procedure", "connection": connection, "procedure": procedure, "params": params,
    }))
}

/// The `dbo.usp_transfer` job both SQL Server suites run: typed IN values
/// (int, decimal(10,2), a string), an OUT int and an INOUT bigint.
pub fn transfer_job(connection: &str) -> Value {
    procedure_job(
        connection,
        "dbo.usp_transfer",
        json!([
            {"name": "account", "value": {"type": "int", "value": 42}, "sql_type": "int"},
            {"name": "amount", "value": {"type": "decimal", "value": "12.50"}, "sql_type": "decimal(10,2)"},
            {"name": "note", "value": {"type": "string", "value": "rent for März"}},
            {"name": "new_balance", "mode": "out", "value": {"type": "null"}, "sql_type": "int"},
            {"name": "counter", "mode": "in_out", "value": {"type": "int", "value": 5}, "sql_type": "bigint"}
        ]),
    )
}

/// A `sql` job (a batch) on `connection`, like [`procedure_job`].
pub fn sql_job(connection: &str, sql: &str) -> Value {
    job(json!({"kind": "sql", "connection": connection, "sql": sql}))
}

/// A `dump` job (native backup on SQL Server) of `database`, like [`procedure_job`].
pub fn dump_job(connection: &str, database: &str) -> Value {
    job(json!({"kind": "dump", "connection": connection, "database": database}))
}

fn job(spec: Value) -> Value {
    json!({
        "group": "default",
        "spec": spec,
        "retry": {"max_attempts": 3, "initial_backoff_ms": 50, "jitter": 0.0},
    })
}

/// `job` with `extra`'s keys set: `exactly_once` goes into the spec, `retry`
/// keys are merged into the retry policy, anything else (`lease_ttl_ms`,
/// `timeout_ms`, …) is set on the submission.
pub fn with(mut job: Value, extra: Value) -> Value {
    if let Some(e) = extra.as_object() {
        for (k, v) in e {
            match (k.as_str(), v.as_object()) {
                ("exactly_once", _) => job["spec"]["exactly_once"] = v.clone(),
                ("retry", Some(r)) => {
                    for (rk, rv) in r {
                        job["retry"][rk] = rv.clone();
                    }
                }
                _ => job[k] = v.clone(),
            }
        }
    }
    job
}

/// Submit `job` and wait up to `wait` for its end; panics (with the
/// cluster's logs) when it does not end.
pub async fn run_job(c: &Cluster, job: Value, wait: Duration) -> JobView {
    let j = c
        .api
        .submit(job)
        .await
        .unwrap_or_else(|e| panic!("submit: {e:#}"));
    c.api
        .wait_terminal(j.id, wait)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", c.logs()))
}

/// Poll job `id` every 50 ms until it ends, showing each view to `see`;
/// panics (with the cluster's logs) after `wait`.
pub async fn watch_until_terminal(
    c: &Cluster,
    id: JobId,
    wait: Duration,
    mut see: impl FnMut(&JobView),
) -> JobView {
    let end = Instant::now() + wait;
    loop {
        let j = c
            .api
            .job(id)
            .await
            .unwrap_or_else(|e| panic!("job {id}: {e:#}"));
        see(&j);
        if j.state.is_terminal() {
            return j;
        }
        assert!(Instant::now() < end, "job {id} did not end\n{}", c.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether a later attempt (the takeover) said it waits for the database lock.
pub fn takeover_waited_for_lock(j: &JobView) -> bool {
    j.attempts.iter().skip(1).any(|a| {
        a.progress
            .as_ref()
            .is_some_and(|p| p.message.contains("lock"))
    })
}

/// Panics unless `done` succeeded, showing it and the cluster's logs.
pub fn assert_succeeded(c: &Cluster, done: &JobView) {
    assert_eq!(done.state, JobState::Succeeded, "{done:#?}\n{}", c.logs());
}

/// The job's `result.data` (Null when there is none).
pub fn data(j: &JobView) -> Value {
    j.result
        .as_ref()
        .and_then(|r| r.data.clone())
        .unwrap_or(Value::Null)
}

/// The RPCs `server` received for procedure `proc` (compared with
/// [`normalize_name`]: `dbo.usp_x` finds `[dbo].[usp_x]`), with their
/// connections, in arrival order.
pub fn calls(server: &TdsServer, proc: &str) -> Vec<(u64, Rpc)> {
    let want = normalize_name(proc);
    server
        .log()
        .into_iter()
        .filter_map(|e| match e.request {
            Request::Rpc(r) if r.name().is_some_and(|n| normalize_name(n) == want) => {
                Some((e.conn, r))
            }
            _ => None,
        })
        .collect()
}

/// Whether a log entry is an RPC to `proc` (as in [`calls`]).
pub fn is_call(e: &Entry, proc: &str) -> bool {
    let want = normalize_name(proc);
    e.request
        .as_rpc()
        .and_then(Rpc::name)
        .is_some_and(|n| normalize_name(n) == want)
}

/// The `@Resource` of an `sp_getapplock`/`sp_releaseapplock` call.
pub fn applock_resource(rpc: &Rpc) -> Option<&str> {
    rpc.param("@Resource").and_then(|p| p.value.as_str())
}

/// The names of the entries of `dir`, sorted (empty when it does not exist).
pub fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The hex SHA-256 of a file (as `sha256sum` prints it).
pub fn sha256_hex(path: &Path) -> Result<String> {
    use sha2::Digest;
    let bytes = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    Ok(hex::encode(sha2::Sha256::digest(bytes)))
}

/// The settings of an ADO.NET connection string that the agent's config
/// needs, e.g. `server=tcp:db1,1433;user=sa;password=...;TrustServerCertificate=true`
/// (keys case-insensitive; `server` / `data source` / `address`, `user` /
/// `user id` / `uid`, `password` / `pwd`, `database` / `initial catalog`,
/// `encrypt` = `true|false|strict|mandatory|optional|yes|no`,
/// `TrustServerCertificate`). Values may be quoted with `'` or `"`, or
/// wrapped in `{}`.
#[derive(Clone, PartialEq, Eq)]
pub struct Ado {
    /// Host name or address.
    pub host: String,
    /// TCP port (default 1433).
    pub port: u16,
    /// Named instance (`server=host\instance`), resolved by the SQL Browser.
    pub instance: Option<String>,
    /// SQL login.
    pub user: String,
    /// Its password.
    pub password: String,
    /// Default database.
    pub database: Option<String>,
    /// The agent's `encrypt` mode: `strict`, `required` or `off`.
    pub encrypt: &'static str,
    /// `TrustServerCertificate=true`.
    pub trust_server_certificate: bool,
}

impl std::fmt::Debug for Ado {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ado")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("instance", &self.instance)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("database", &self.database)
            .field("encrypt", &self.encrypt)
            .field("trust_server_certificate", &self.trust_server_certificate)
            .finish()
    }
}

fn unquote(v: &str) -> &str {
    let v = v.trim();
    for (open, close) in [('\'', '\''), ('"', '"'), ('{', '}')] {
        if let Some(inner) = v.strip_prefix(open).and_then(|s| s.strip_suffix(close)) {
            return inner;
        }
    }
    v
}

fn truthy(v: &str) -> Result<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "yes" => Ok(true),
        "false" | "no" => Ok(false),
        other => bail!("not a boolean: {other:?}"),
    }
}

impl Ado {
    /// Parse an ADO connection string.
    pub fn parse(s: &str) -> Result<Ado> {
        let mut server = None;
        let mut user = None;
        let mut password = None;
        let mut database = None;
        let mut encrypt = "required";
        let mut trust = false;
        for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').with_context(|| {
                format!(
                    "`{}` is not key=value",
                    part.split('=').next().unwrap_or("")
                )
            })?;
            let v = unquote(v).to_owned();
            match k.trim().to_ascii_lowercase().as_str() {
                "server" | "data source" | "address" | "addr" | "network address" => {
                    server = Some(v)
                }
                "user" | "user id" | "uid" => user = Some(v),
                "password" | "pwd" => password = Some(v),
                "database" | "initial catalog" => database = Some(v),
                "encrypt" => {
                    encrypt = match v.to_ascii_lowercase().as_str() {
                        "strict" => "strict",
                        "true" | "yes" | "mandatory" => "required",
                        "false" | "no" | "optional" => "off",
                        other => bail!("encrypt: unknown value {other:?}"),
                    }
                }
                "trustservercertificate" | "trust server certificate" => {
                    trust = truthy(&v).context("TrustServerCertificate")?
                }
                _ => {}
            }
        }
        let server = server.context("no server= in the connection string")?;
        let server = server.strip_prefix("tcp:").unwrap_or(&server);
        let (rest, port) = match server.rsplit_once(',') {
            Some((h, p)) => (
                h,
                p.trim()
                    .parse::<u16>()
                    .with_context(|| format!("bad port {p:?}"))?,
            ),
            None => (server, 1433),
        };
        let (host, instance) = match rest.split_once('\\') {
            Some((h, i)) => (h, Some(i.to_owned())),
            None => (rest, None),
        };
        let host = match host.trim() {
            "." | "(local)" | "localhost" => "127.0.0.1",
            h => h,
        };
        if host.is_empty() {
            bail!("empty host in server=");
        }
        Ok(Ado {
            host: host.to_owned(),
            port,
            instance,
            user: user.context("no user= in the connection string")?,
            password: password.context("no password= in the connection string")?,
            database,
            encrypt,
            trust_server_certificate: trust,
        })
    }

    /// The agent's `[connections.<name>]` for this server (the password in
    /// `password_file`, which the caller writes with [`write_password_file`]),
    /// with `extras` appended. `database` overrides the string's database.
    pub fn connection_toml(
        &self,
        name: &str,
        password_file: &Path,
        database: Option<&str>,
        extras: &str,
    ) -> String {
        let mut s = format!(
            "[connections.{}]\nkind = \"mssql\"\nhost = {}\n",
            toml_key(name),
            toml_str(&self.host)
        );
        match &self.instance {
            Some(i) => s.push_str(&format!("instance = {}\n", toml_str(i))),
            None => s.push_str(&format!("port = {}\n", self.port)),
        }
        s.push_str(&format!(
            "user = {}\npassword_file = {}\nencrypt = \"{}\"\n",
            toml_str(&self.user),
            toml_str(&password_file.display().to_string()),
            self.encrypt
        ));
        if self.encrypt != "off" && self.trust_server_certificate {
            s.push_str("trust_server_certificate = true\n");
        }
        if let Some(db) = database.or(self.database.as_deref()) {
            s.push_str(&format!("database = {}\n", toml_str(db)));
        }
        s.push_str(extras);
        if !s.ends_with('\n') {
            s.push('\n');
        }
        s
    }
}

#[cfg(test)]
mod tests;
