//! Stopping a job on the server: cancel, lease loss and timeout all end here.
//!
//! From a second connection: `KILL QUERY <id>` (the job's statement ends with
//! 1317), a short grace for the job's session code to notice and roll back,
//! then the job connection is closed — it is never reused after a stop. A
//! session still there after that (a procedure that swallows the query kill,
//! as `SLEEP()` inside a procedure does: it returns 1 and the procedure goes
//! on with its next statement) gets `KILL CONNECTION <id>`, which ends the
//! procedure, rolls back its transaction and frees its `GET_LOCK`.
//!
//! Privileges: the kill uses the job's own login, and a user may always kill
//! its own sessions — as long as the session runs as that user. While a
//! `SQL SECURITY DEFINER` procedure of another definer runs, the session runs
//! as the definer: `KILL` then fails with 1095 ("You are not owner of
//! thread") and the session is not even visible in the process list, unless
//! the agent's user has `CONNECTION ADMIN` (MariaDB ≥ 10.5) or `SUPER` (older
//! MariaDB, MySQL), plus `PROCESS` to see it. Grant that to the agent's user
//! when jobs call such procedures. A failed kill is reported
//! (`could not kill the query on the server (KILL QUERY <id>): ...`,
//! `data.killed = false`); the job connection is closed all the same, and
//! such a session ends only when its statement does.

use std::time::Duration;

use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use serde_json::{Value as Json, json};
use tracing::{info, warn};

use super::pool::SideDoor;
use super::session::wait_gone;
use super::{Error, failure};

/// How long the session's own code gets to notice the kill and roll back.
pub const KILL_GRACE: Duration = Duration::from_secs(1);
/// How long a closed session may take to leave the server.
pub const GONE_WITHIN: Duration = Duration::from_secs(2);

/// What the kill did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KillReport {
    /// The job session's `CONNECTION_ID()`.
    pub id: u64,
    /// `KILL QUERY` went through (else why not).
    pub query_killed: Result<(), String>,
    /// `KILL CONNECTION` was needed and went through.
    pub connection_killed: bool,
    /// The session was seen gone from the process list (None: not checked).
    pub gone: Option<bool>,
    /// How the job's own session code ended within the grace: `completed`
    /// (the work finished, e.g. a procedure that swallowed the kill ran to
    /// its end), `stopped` (it saw the stop and rolled back), or the error
    /// it got (normally `MySQL error 1317 ...`); None when it did not end.
    pub session_end: Option<String>,
}

impl KillReport {
    /// For the error text: contains `killed on the server (KILL QUERY <id>)`.
    pub fn text(&self) -> String {
        let mut t = match &self.query_killed {
            Ok(()) => format!("killed on the server (KILL QUERY {})", self.id),
            Err(e) => format!(
                "could not kill the query on the server (KILL QUERY {}): {e}",
                self.id
            ),
        };
        if self.connection_killed {
            t.push_str(&format!(
                "; the session went on, ended with KILL CONNECTION {}",
                self.id
            ));
        }
        if self.gone == Some(false) {
            t.push_str("; the session was still on the server when the agent gave up waiting");
        }
        t
    }

    /// Whether the server stopped the work.
    pub fn killed(&self) -> bool {
        self.query_killed.is_ok() || self.connection_killed
    }

    /// For `data.kill`.
    pub fn json(&self) -> Json {
        json!({
            "connection_id": self.id,
            "statement": format!("KILL QUERY {}", self.id),
            "error": self.query_killed.as_ref().err(),
            "connection_killed": self.connection_killed,
            "session_gone": self.gone,
            "session_end": self.session_end,
        })
    }
}

/// `KILL QUERY <id>` from `side`.
pub async fn kill_query(side: &mut Conn, id: u64) -> Result<(), mysql_async::Error> {
    side.query_drop(format!("KILL QUERY {id}")).await
}

/// `KILL CONNECTION <id>` from `side`.
pub async fn kill_connection(side: &mut Conn, id: u64) -> Result<(), mysql_async::Error> {
    side.query_drop(format!("KILL CONNECTION {id}")).await
}

/// Open the second connection and send `KILL QUERY`.
pub async fn start(door: &SideDoor, id: u64, why: &str) -> (Option<Conn>, KillReport) {
    warn!(
        session = id,
        reason = why,
        "Killing the job's query on the server"
    );
    let mut report = KillReport {
        id,
        query_killed: Err("not tried".into()),
        connection_killed: false,
        gone: None,
        session_end: None,
    };
    let mut side = match door.open().await {
        Ok(c) => c,
        Err(e) => {
            report.query_killed = Err(format!("no second connection: {e}"));
            warn!(session = id, error = %e, "Cannot open a connection to kill the job's query");
            return (None, report);
        }
    };
    report.query_killed = kill_query(&mut side, id)
        .await
        .map_err(|e| failure::classify(&Error::Mysql(e), &[]).message);
    if let Err(e) = &report.query_killed {
        warn!(session = id, error = %e, "KILL QUERY failed");
    }
    (Some(side), report)
}

/// Make sure the (closed) job session is gone; `KILL CONNECTION` when its
/// own code did not end within the grace.
pub async fn finish(side: Option<Conn>, report: &mut KillReport) {
    let Some(mut side) = side else {
        return;
    };
    if report.session_end.is_none() {
        report.connection_killed = match kill_connection(&mut side, report.id).await {
            Ok(()) => true,
            Err(e) => {
                warn!(session = report.id, error = %e, "KILL CONNECTION failed");
                false
            }
        };
    }
    if !report.killed() {
        // Not ours to kill (or see): the process list cannot be trusted.
        return;
    }
    let mut gone = wait_gone(&mut side, report.id, GONE_WITHIN)
        .await
        .unwrap_or(false);
    if !gone && !report.connection_killed {
        report.connection_killed = kill_connection(&mut side, report.id).await.is_ok();
        gone = wait_gone(&mut side, report.id, GONE_WITHIN)
            .await
            .unwrap_or(false);
    }
    report.gone = Some(gone);
    info!(
        session = report.id,
        connection_killed = report.connection_killed,
        gone,
        "Job session stopped on the server"
    );
}
