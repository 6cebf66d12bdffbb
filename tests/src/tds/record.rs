//! What the server saw: the decoded requests of every connection, in order.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Result, bail};

use super::types::{SqlType, Value};

/// `sp_executesql`, the procedure id tiberius uses for `query`/`execute`.
pub const SP_EXECUTESQL: u16 = 10;

/// A LOGIN7 as decoded (the password de-obfuscated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    pub user: String,
    pub password: String,
    pub database: String,
    pub app_name: String,
    pub host_name: String,
    pub server_name: String,
    pub packet_size: u32,
    pub tds_version: u32,
    /// Whether the server accepted it.
    pub accepted: bool,
}

/// How an RPC names its procedure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcRef {
    /// A procedure name, exactly as sent (quoting included).
    Name(String),
    /// A well-known procedure id (`0xFFFF` + id), e.g. [`SP_EXECUTESQL`].
    Id(u16),
}

/// One RPC parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    /// As sent (`@P1`, `@id`, or tiberius's `stmt`/`params` for sp_executesql).
    pub name: String,
    pub ty: SqlType,
    pub value: Value,
    /// Status bit 0x01 (`fByRefValue`): an OUTPUT parameter.
    pub output: bool,
}

/// An RPC request.
#[derive(Debug, Clone, PartialEq)]
pub struct Rpc {
    pub proc: ProcRef,
    pub option_flags: u16,
    pub params: Vec<Param>,
}

impl Rpc {
    /// The procedure name for a named RPC.
    pub fn name(&self) -> Option<&str> {
        match &self.proc {
            ProcRef::Name(n) => Some(n),
            ProcRef::Id(_) => None,
        }
    }

    /// `sp_executesql`, by id 10 or by name.
    pub fn is_execute_sql(&self) -> bool {
        match &self.proc {
            ProcRef::Id(id) => *id == SP_EXECUTESQL,
            ProcRef::Name(n) => normalize_name(n).ends_with("sp_executesql"),
        }
    }

    /// The statement of an `sp_executesql` call.
    pub fn statement(&self) -> Option<&str> {
        if !self.is_execute_sql() {
            return None;
        }
        self.params.first().and_then(|p| p.value.as_str())
    }

    /// The parameter declaration list of an `sp_executesql` call.
    pub fn declarations(&self) -> Option<&str> {
        if !self.is_execute_sql() {
            return None;
        }
        self.params.get(1).and_then(|p| p.value.as_str())
    }

    /// The caller's parameters: all of them for a procedure, those after the
    /// statement and the declarations for `sp_executesql`.
    pub fn args(&self) -> &[Param] {
        if self.is_execute_sql() {
            self.params.get(2..).unwrap_or(&[])
        } else {
            &self.params
        }
    }

    /// A parameter by name (case-insensitive).
    pub fn param(&self, name: &str) -> Option<&Param> {
        self.params
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
    }
}

/// A procedure name without bracket quoting, lower-case: `[dbo].[Run]` →
/// `dbo.run`.
pub fn normalize_name(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '[' && *c != ']')
        .collect::<String>()
        .to_lowercase()
}

/// Something the server saw on a connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Login(Login),
    SqlBatch {
        text: String,
    },
    Rpc(Rpc),
    /// An ATTENTION (cancel) from the client.
    Attention,
    /// The client closed the connection (not recorded when the server closes
    /// it: after a refused login, a protocol error or [`super::Reply::close`]).
    Disconnect,
    /// The client sent something SQL Server would refuse at the protocol
    /// level; the server closed the connection.
    ProtocolError {
        message: String,
    },
    /// The test's script produced a reply that cannot be encoded.
    ScriptError {
        message: String,
    },
    /// The session ended (after the client disconnected and its last
    /// request ran to its end, or the server closed it): its open
    /// transaction rolled back, its session-owned locks released.
    SessionEnded {
        rolled_back: bool,
        released_locks: Vec<String>,
    },
}

impl Request {
    /// The SQL of a batch, or the statement of an `sp_executesql` RPC.
    pub fn sql(&self) -> Option<&str> {
        match self {
            Request::SqlBatch { text } => Some(text),
            Request::Rpc(rpc) => rpc.statement(),
            _ => None,
        }
    }

    pub fn as_rpc(&self) -> Option<&Rpc> {
        match self {
            Request::Rpc(rpc) => Some(rpc),
            _ => None,
        }
    }

    pub fn as_login(&self) -> Option<&Login> {
        match self {
            Request::Login(l) => Some(l),
            _ => None,
        }
    }
}

/// A recorded request with the connection it came on (numbered from 1).
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub conn: u64,
    pub request: Request,
    /// The transaction descriptor of a batch's or RPC's ALL_HEADERS (the 8
    /// bytes as a little-endian u64; 0 outside a transaction, and for other
    /// entries).
    pub descriptor: u64,
}

/// The server's append-only log, shared by all connections; dynamic
/// responders get it in [`super::Ctx`] (e.g. to wait for a lock holder's
/// disconnect).
#[derive(Debug, Clone, Default)]
pub struct Log {
    entries: Arc<Mutex<Vec<Entry>>>,
    changed: Arc<tokio::sync::Notify>,
}

impl Log {
    pub(crate) fn push(&self, conn: u64, request: Request) {
        self.push_with(conn, request, 0);
    }

    pub(crate) fn push_with(&self, conn: u64, request: Request, descriptor: u64) {
        if let Ok(mut e) = self.entries.lock() {
            e.push(Entry {
                conn,
                request,
                descriptor,
            });
        }
        self.changed.notify_waiters();
    }

    /// Everything recorded so far.
    pub fn entries(&self) -> Vec<Entry> {
        self.entries.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// Wait until `pred` holds for the log, at most `timeout`.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        pred: impl Fn(&[Entry]) -> bool,
    ) -> Result<Vec<Entry>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            let entries = self.entries();
            if pred(&entries) {
                return Ok(entries);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                bail!("condition not met within {timeout:?}; log: {entries:#?}");
            }
        }
    }
}
