//! A model of SQL Server's native backups (contract B1–B5), installed into a
//! [`Script`] as dynamic rules:
//!
//! - B1 the `SERVERPROPERTY` batch (version, edition, `@@VERSION`);
//! - B2 `SELECT state_desc, recovery_model_desc FROM sys.databases WHERE
//!   name = @P1` (the databases configured here; others get no row);
//! - B3 `BACKUP DATABASE @P1 TO DISK = @P2 WITH …`: the options are checked
//!   as SQL Server does (155, 3031), the database must exist (911) and be
//!   online (942), the backup device must be creatable (3201 with OS error 3
//!   or 5: SQL Server creates no directories); then progress plays over a
//!   configured time (INFO 3211 "N percent processed." at each `STATS`
//!   step, the percent the DMV reports moving with it), the file is written
//!   at the path (deterministic, self-checksummed content) and INFO 4035,
//!   4035, 3014 end the reply. An ATTENTION stops it: no file, outcome
//!   [`BackupOutcome::Cancelled`], the DMV row gone (with
//!   [`BackupModel::partial_files`] the file is filled as it goes and the
//!   partial one stays). A client that disconnects does not stop it (SQL
//!   Server finishes the request). Failures are configurable
//!   ([`BackupFailure`]), also at run time;
//! - B4 `SELECT percent_complete FROM sys.dm_exec_requests WHERE session_id
//!   = @P1` from any connection: one REAL row while that session runs a
//!   backup or verify, no row otherwise; every poll is recorded;
//! - B5 `RESTORE VERIFYONLY FROM DISK = @P1 WITH CHECKSUM`: reads the file;
//!   valid backup sets get INFO 3262, a missing file 3201 (OS error 2), a
//!   damaged one 3189, a file that is no backup 3241, each with 3013.
//!   Validity is in the file's content, so a renamed file still verifies.
//!
//! Statements may come as `sp_executesql` (variables bound from its
//! arguments) or as batches with literals; a statement of these shapes the
//! model cannot answer gets error 50000 naming it, never a silent default.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use baton_tests::tds::*;
//! use std::time::Duration;
//! let backups = BackupModel::new()
//!     .database("jobs")
//!     .progress(Duration::from_millis(500), 10);
//! let server = TdsServer::start(backups.install(Script::new())).await?;
//! // … the agent backs up, polls, verifies …
//! let call = backups.calls().pop();
//! # Ok(()) }
//! ```
//!
//! Not modelled: BACKUP inside a user transaction (error 3021 needs the
//! session's transaction state, which rules do not see), striped backups
//! (several `DISK =`), appending backup sets with `NOINIT` (the file is
//! always rewritten as set 1).

mod answer;
mod media;
mod sql;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use super::script::{Match, Responder, Script};
use super::tokens::ServerMessage;

/// A database the server has (`sys.databases`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Database {
    name: String,
    /// `ONLINE`, `OFFLINE`, `RESTORING`, …
    state_desc: String,
    /// `FULL`, `SIMPLE`, `BULK_LOGGED`.
    recovery_model: String,
}

/// How backups fail, when configured to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupFailure {
    /// At once: 3201 "Cannot open backup device … Operating system error
    /// 5(Access is denied.)." then 3013; no file.
    AccessDenied,
    /// Half way: 3202 "Write on … failed: 112(There is not enough space on
    /// the disk.)" then 3013; no file.
    DiskFull,
}

/// How verifies fail, when configured to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyFailure {
    /// 3189 "Damage to the backup set was detected." then 3013, whatever the
    /// file holds.
    Damaged,
}

/// How a backup or verify ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupOutcome {
    Running,
    Succeeded,
    /// The first error sent.
    Failed {
        number: i32,
        message: String,
    },
    /// An ATTENTION stopped it (or its session ended under it).
    Cancelled,
}

/// One `BACKUP DATABASE` the server ran.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupCall {
    pub conn: u64,
    pub spid: i16,
    /// As sent (`@P1`'s value).
    pub database: String,
    /// The backup device path, as sent.
    pub path: String,
    /// The `WITH` options, upper-case, values as written (`STATS = 5`).
    pub options: Vec<String>,
    pub statement: String,
    pub started: DateTime<Utc>,
    pub finished: Option<DateTime<Utc>>,
    pub outcome: BackupOutcome,
    /// INFO and ERROR messages sent so far, in order.
    pub messages: Vec<ServerMessage>,
    /// Bytes written (0 until the file is written).
    pub bytes: u64,
    /// Hex SHA-256 of the file written.
    pub sha256: Option<String>,
}

impl BackupCall {
    /// Whether the statement had this `WITH` option (case-insensitive name).
    pub fn has_option(&self, name: &str) -> bool {
        self.options.iter().any(|o| {
            o.split(' ')
                .next()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
    }

    /// The INFO message numbers sent, in order.
    pub fn info_numbers(&self) -> Vec<i32> {
        self.messages
            .iter()
            .filter(|m| m.class <= 10)
            .map(|m| m.number)
            .collect()
    }
}

/// One `RESTORE VERIFYONLY` the server ran.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyCall {
    pub conn: u64,
    pub spid: i16,
    pub path: String,
    pub options: Vec<String>,
    pub statement: String,
    pub started: DateTime<Utc>,
    pub finished: Option<DateTime<Utc>>,
    pub outcome: BackupOutcome,
    pub messages: Vec<ServerMessage>,
}

/// One `sys.dm_exec_requests` poll.
#[derive(Debug, Clone, PartialEq)]
pub struct PollCall {
    /// The polling connection.
    pub conn: u64,
    /// The session id asked about.
    pub session_id: i64,
    /// The percent returned; `None` when no row was.
    pub percent: Option<f64>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Backup(usize),
    Verify(usize),
}

#[derive(Debug)]
struct Running {
    conn: u64,
    op: Op,
    percent: f64,
    since: Instant,
}

#[derive(Debug)]
struct State {
    version: String,
    edition: String,
    banner: String,
    databases: Vec<Database>,
    progress: Duration,
    steps: u32,
    verify_time: Duration,
    size: u64,
    failure: Option<BackupFailure>,
    verify_failure: Option<VerifyFailure>,
    partial: bool,
    calls: Vec<BackupCall>,
    verifies: Vec<VerifyCall>,
    polls: Vec<PollCall>,
    running: Vec<Running>,
    sets: u64,
}

impl Default for State {
    fn default() -> State {
        State {
            version: "16.0.4135.4".into(),
            edition: "Developer Edition (64-bit)".into(),
            banner: "Microsoft SQL Server 2022 (TDS test server)".into(),
            databases: Vec::new(),
            progress: Duration::from_secs(2),
            steps: 20,
            verify_time: Duration::from_millis(500),
            size: 1 << 20,
            failure: None,
            verify_failure: None,
            partial: false,
            calls: Vec::new(),
            verifies: Vec::new(),
            polls: Vec::new(),
            running: Vec::new(),
            sets: 0,
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    state: Mutex<State>,
    changed: Notify,
}

/// The backup model: configuration, and what happened. Clones share state.
#[derive(Debug, Clone, Default)]
pub struct BackupModel {
    inner: Arc<Inner>,
}

impl BackupModel {
    /// No databases; version 16.0.4135.4, Developer Edition; backups take
    /// 2 s in 20 steps and write 1 MiB; verifies take 0.5 s.
    pub fn new() -> BackupModel {
        BackupModel::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        match self.inner.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn with(self, f: impl FnOnce(&mut State)) -> BackupModel {
        f(&mut self.lock());
        self
    }

    fn changed(&self) {
        self.inner.changed.notify_waiters();
    }

    /// An online database in the FULL recovery model.
    pub fn database(self, name: &str) -> BackupModel {
        self.database_state(name, "ONLINE", "FULL")
    }

    /// A database in this state (`OFFLINE` ones refuse backups with 942).
    pub fn database_state(self, name: &str, state_desc: &str, recovery: &str) -> BackupModel {
        self.with(|s| {
            s.databases.retain(|d| !d.name.eq_ignore_ascii_case(name));
            s.databases.push(Database {
                name: name.to_string(),
                state_desc: state_desc.to_string(),
                recovery_model: recovery.to_string(),
            });
        })
    }

    /// `SERVERPROPERTY('ProductVersion')` and `('Edition')`; an Express
    /// edition refuses `COMPRESSION` (1844).
    pub fn version(self, product_version: &str, edition: &str) -> BackupModel {
        self.with(|s| {
            s.version = product_version.to_string();
            s.edition = edition.to_string();
        })
    }

    /// `@@VERSION`.
    pub fn banner(self, text: &str) -> BackupModel {
        self.with(|s| s.banner = text.to_string())
    }

    /// A backup's data phase takes `total` in `steps` equal steps (at least
    /// one); it then stays at 100 % for one more step before finishing.
    pub fn progress(self, total: Duration, steps: u32) -> BackupModel {
        self.with(|s| {
            s.progress = total;
            s.steps = steps.max(1);
        })
    }

    /// A verify takes `total` (same number of steps as backups).
    pub fn verify_time(self, total: Duration) -> BackupModel {
        self.with(|s| s.verify_time = total)
    }

    /// Backup files are `bytes` long (at least their header and checksum).
    pub fn size(self, bytes: u64) -> BackupModel {
        self.with(|s| s.size = bytes)
    }

    /// Every later backup fails this way.
    pub fn fail(self, failure: BackupFailure) -> BackupModel {
        self.with(|s| s.failure = Some(failure))
    }

    /// Change the backup failure mode while running (`None`: succeed).
    pub fn set_failure(&self, failure: Option<BackupFailure>) {
        self.lock().failure = failure;
    }

    /// Write backup files as the backup goes (created empty at the start,
    /// a share of the content at each step, complete at the end), so an
    /// interrupted or failed backup leaves its partial file behind, for
    /// tests of a client's cleanup. Off by default: no file until the end.
    pub fn partial_files(self, on: bool) -> BackupModel {
        self.with(|s| s.partial = on)
    }

    /// Every later verify fails this way.
    pub fn fail_verify(self, failure: VerifyFailure) -> BackupModel {
        self.with(|s| s.verify_failure = Some(failure))
    }

    /// Change the verify failure mode while running (`None`: check the file).
    pub fn set_verify_failure(&self, failure: Option<VerifyFailure>) {
        self.lock().verify_failure = failure;
    }

    /// `script` with rules answering B1–B5 appended (rules added before
    /// take precedence).
    pub fn install(&self, script: Script) -> Script {
        let rule = |m: &BackupModel, f: fn(&BackupModel, &super::Ctx) -> super::Reply| {
            let m = m.clone();
            Responder::dynamic(move |ctx| {
                let reply = f(&m, &ctx);
                async move { reply }
            })
        };
        script
            .on(
                Match::when(answer::is_server_info),
                rule(self, answer::server_info),
            )
            .on(
                Match::when(answer::is_databases),
                rule(self, answer::databases),
            )
            .on(
                Match::when(answer::is_requests),
                rule(self, answer::requests),
            )
            .on(Match::when(answer::is_backup), rule(self, answer::backup))
            .on(Match::when(answer::is_verify), rule(self, answer::verify))
    }

    /// Every backup run so far (those refused before running included).
    pub fn calls(&self) -> Vec<BackupCall> {
        self.lock().calls.clone()
    }

    /// Every verify run so far.
    pub fn verifies(&self) -> Vec<VerifyCall> {
        self.lock().verifies.clone()
    }

    /// Every `sys.dm_exec_requests` poll so far.
    pub fn polls(&self) -> Vec<PollCall> {
        self.lock().polls.clone()
    }

    /// The percent the DMV reports now for session `spid`, if it runs a
    /// backup or verify.
    pub fn percent(&self, spid: i16) -> Option<f64> {
        let s = self.lock();
        s.running
            .iter()
            .find(|r| super::spid(r.conn) == spid)
            .map(|r| r.percent)
    }

    /// Wait until `pred` holds (it is re-checked at every change), at most
    /// `timeout`.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        pred: impl Fn(&BackupModel) -> bool,
    ) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.inner.changed.notified();
            if pred(self) {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                bail!(
                    "backup model condition not met within {timeout:?}: calls {:#?}, verifies \
                     {:#?}",
                    self.calls(),
                    self.verifies()
                );
            }
        }
    }

    // --- state changes, called by the answers and their reply steps ---

    fn start(&self, conn: u64, op: Op) {
        self.lock().running.push(Running {
            conn,
            op,
            percent: 0.0,
            since: Instant::now(),
        });
        self.changed();
    }

    /// A progress step: the DMV percent, and the message sent with it.
    fn step(&self, conn: u64, op: Op, percent: f64, message: Option<ServerMessage>) {
        {
            let mut s = self.lock();
            if let Some(r) = s.running.iter_mut().find(|r| r.conn == conn && r.op == op) {
                r.percent = percent;
            }
            if let (Some(m), Some(list)) = (message, s.messages(op)) {
                list.push(m);
            }
        }
        self.changed();
    }

    /// End an operation: its outcome, the messages sent with the end, and
    /// the DMV row removed. Returns how long it ran.
    fn end(
        &self,
        conn: u64,
        op: Op,
        outcome: BackupOutcome,
        messages: Vec<ServerMessage>,
    ) -> Duration {
        let ran = {
            let mut s = self.lock();
            let ran = s
                .running
                .iter()
                .find(|r| r.conn == conn && r.op == op)
                .map(|r| r.since.elapsed())
                .unwrap_or_default();
            s.running.retain(|r| !(r.conn == conn && r.op == op));
            if let Some(list) = s.messages(op) {
                list.extend(messages);
            }
            let now = Some(Utc::now());
            match op {
                Op::Backup(i) => {
                    if let Some(c) = s.calls.get_mut(i) {
                        c.outcome = outcome;
                        c.finished = now;
                    }
                }
                Op::Verify(i) => {
                    if let Some(c) = s.verifies.get_mut(i) {
                        c.outcome = outcome;
                        c.finished = now;
                    }
                }
            }
            ran
        };
        self.changed();
        ran
    }

    /// The backup file of call `idx` was written.
    fn written(&self, idx: usize, bytes: u64, sha256: String) {
        if let Some(c) = self.lock().calls.get_mut(idx) {
            c.bytes = bytes;
            c.sha256 = Some(sha256);
        }
    }

    /// The reply ended without finishing the operation (ATTENTION, session
    /// gone): cancelled.
    fn abandon(&self, conn: u64, op: Op) {
        let running = self
            .lock()
            .running
            .iter()
            .any(|r| r.conn == conn && r.op == op);
        if running {
            self.end(conn, op, BackupOutcome::Cancelled, Vec::new());
        }
    }
}

/// The configuration an operation runs with (read when it starts).
#[derive(Debug, Clone)]
struct Settings {
    edition: String,
    progress: Duration,
    steps: u32,
    verify_time: Duration,
    size: u64,
    failure: Option<BackupFailure>,
    verify_failure: Option<VerifyFailure>,
    partial: bool,
}

impl State {
    fn settings(&self) -> Settings {
        Settings {
            edition: self.edition.clone(),
            progress: self.progress,
            steps: self.steps,
            verify_time: self.verify_time,
            size: self.size,
            failure: self.failure,
            verify_failure: self.verify_failure,
            partial: self.partial,
        }
    }

    fn messages(&mut self, op: Op) -> Option<&mut Vec<ServerMessage>> {
        match op {
            Op::Backup(i) => self.calls.get_mut(i).map(|c| &mut c.messages),
            Op::Verify(i) => self.verifies.get_mut(i).map(|c| &mut c.messages),
        }
    }
}

/// Ends an operation as cancelled when the reply carrying it is dropped
/// before its last step ran (the reply's step closures hold it).
struct OpGuard {
    model: BackupModel,
    conn: u64,
    op: Op,
}

impl Drop for OpGuard {
    fn drop(&mut self) {
        self.model.abandon(self.conn, self.op);
    }
}
