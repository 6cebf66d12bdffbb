//! A protocol-level TDS (SQL Server wire protocol) test server, for testing
//! SQL Server clients (tiberius) where no SQL Server can run.
//!
//! It speaks TDS 7.4 over plain TCP (PRELOGIN answers ENCRYPTION "not
//! supported", so the client must use `EncryptionLevel::NotSupported`), TDS
//! 7.4 with TLS negotiated in PRELOGIN ([`TdsServer::start_tls`], for
//! `EncryptionLevel::Required`) and TDS 8.0 strict mode (TLS with ALPN
//! `tds/8.0` before the PRELOGIN), decodes
//! LOGIN7, SQL batches and RPCs (named procedures and `sp_executesql`, proc id
//! 10, with parameters decoded by type), and answers from a [`Script`]:
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use baton_tests::tds::*;
//! let script = Script::new()
//!     .login("baton", "s3cret")
//!     .procedure(Procedure::new("dbo.usp_run").param("@id", SqlType::Int).output("@out", SqlType::Int))
//!     .on(
//!         Match::proc("dbo.usp_run"),
//!         Reply::tokens(vec![
//!             Token::return_value("@out", SqlType::Int, 42),
//!             Token::ReturnStatus(0),
//!             Token::DoneProc(Done::new()),
//!         ]),
//!     )
//!     .on(Match::sql("WAITFOR"), Reply::hang());
//! let server = TdsServer::start(script).await?;
//! // … connect tiberius to server.addr() …
//! let rpc = server.requests().iter().find_map(|r| r.as_rpc().cloned());
//! # Ok(()) }
//! ```
//!
//! Everything received is recorded ([`TdsServer::requests`], [`TdsServer::log`]
//! with connection numbers): logins (password de-obfuscated), batches, RPCs,
//! ATTENTIONs, disconnects, protocol errors. What SQL Server refuses is
//! refused: malformed packets and messages close the connection (recorded as
//! [`Request::ProtocolError`]); a wrong login gets error 18456; an RPC whose
//! arguments do not bind to `sp_executesql`'s declarations or to a declared
//! [`Procedure`] gets SQL Server's error (201, 214, 2812, 8114, 8144, 8145,
//! 8162, 8178, …) instead of the scripted reply.
//!
//! # Built-in models (SQL Server 2022's behaviour)
//!
//! Requests no script rule matches (rules stay first, so a test can
//! override any of these) get built-in answers, following the agent's wire
//! contract (`SELECT @@SPID`, `sp_getapplock`/`sp_releaseapplock`,
//! transactions, the run ledger):
//!
//! - **Sessions**: `SELECT @@SPID` answers [`spid`]. A session ends when its
//!   client disconnects *and* its current request has run to its end (sleeps
//!   elapse, [`Step::Run`] closures run, tokens go nowhere; a hang just
//!   ends), or when the server closes it: its open transaction rolls back
//!   and its locks are released, logged as [`Request::SessionEnded`].
//! - **Application locks**: `sp_getapplock` / `sp_releaseapplock` bound and
//!   checked like SQL Server (named or positional arguments, 201/8144/8145),
//!   validated by the procedure body (15625/15626 with status -999; errors
//!   1223, 1224, 1227, 1202, 3918), all five modes with SQL Server's
//!   compatibility, Session and Transaction owners, re-acquisition counts,
//!   waits of `@LockTimeout` ms (-1 forever, 0 none; status 0, 1 or -1)
//!   that an ATTENTION or a disconnect ends. [`TdsServer::applocks`] is the
//!   history of every hold ([`LockGrant`]), for no-overlap proofs;
//!   [`TdsServer::hold_applock`] / [`Script::hold_applock`] hold one from
//!   outside.
//! - **Transactions**: batches of `SET XACT_ABORT ON|OFF`, `BEGIN TRAN`,
//!   `COMMIT`, `ROLLBACK`, `IF @@TRANCOUNT > 0 ROLLBACK`, `SELECT
//!   @@TRANCOUNT` (`;`-separated) answer with ENVCHANGE 8/9/10 and an
//!   8-byte descriptor, which tiberius then sends in ALL_HEADERS
//!   ([`Entry::descriptor`]). COMMIT/ROLLBACK without a transaction: 3902 /
//!   3903. With XACT_ABORT on, any ERROR of class ≥ 11 in a reply (scripted
//!   or built-in) and any ATTENTION roll the transaction back (ENVCHANGE 10
//!   in that reply); a deadlock victim (1205) always.
//! - **Ledger** (`dbo.baton_ledger`): created by [`LEDGER_DDL`] or
//!   [`Script::ledger_table`] / [`Script::ledger_row`]; [`LEDGER_SELECT`]
//!   sees committed rows and the session's own; another session's
//!   uncommitted row of the key blocks it (read committed); [`LEDGER_INSERT`]
//!   is pending until COMMIT (or committed at once outside a transaction);
//!   duplicate key 2627, NULL 515, missing table 208.
//!   [`TdsServer::ledger_rows`] lists the committed rows.
//! - **Effects**: every RPC to a declared [`Procedure`] whose reply completes
//!   without an ERROR (class ≥ 11) or an ATTENTION is an [`Effect`]:
//!   pending in the session's transaction (committed or rolled back with
//!   it), else committed at once ([`TdsServer::effects`]).
//!
//! Layout: `packet` framing, `login` PRELOGIN/LOGIN7, [`types`] TYPE_INFO
//! and values, [`tokens`] reply tokens, `request` batch/RPC decoding, `procs`
//! RPC checks, [`script`] replies, [`record`] the log, `session` one
//! connection, [`model`] the built-in state, `builtin` and `applock` the
//! built-in answers, [`backup`] the native backup model, `tls` the two TLS
//! modes, [`raw`] a raw client for negative tests.

mod applock;
pub mod backup;
mod builtin;
mod login;
pub mod model;
mod packet;
mod procs;
pub mod raw;
pub mod record;
mod request;
pub mod script;
mod session;
mod tls;
pub mod tokens;
pub mod types;
mod wire;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Result;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

pub use backup::{
    BackupCall, BackupFailure, BackupModel, BackupOutcome, PollCall, VerifyCall, VerifyFailure,
};
pub use builtin::{LEDGER_DDL, LEDGER_INSERT, LEDGER_SELECT};
pub use model::{Effect, EffectState, LedgerRow, LockGrant, LockMode, LockOwner, LockRelease};
pub use procs::{ProcParam, Procedure};
pub use record::{Entry, Log, Login, Param, ProcRef, Request, Rpc, SP_EXECUTESQL, normalize_name};
pub use script::{Ctx, Match, Reply, ReplyFuture, Responder, Script, Step};
pub use tokens::{Column, Done, ServerMessage, Token, cur_cmd, done_status};
pub use types::{SqlType, Value};

use session::{Io, Shared};

/// The session id (`@@SPID`) the server gives connection `conn` (numbered
/// from 1): `50 + conn`, as user sessions on SQL Server start above 50.
pub fn spid(conn: u64) -> i16 {
    i16::try_from(50 + conn).unwrap_or(i16::MAX)
}

/// A running TDS test server on `127.0.0.1`; stops when dropped.
#[derive(Debug)]
pub struct TdsServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    connections: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl TdsServer {
    /// Plain TDS 7.4 (no TLS): clients must not ask for encryption.
    pub async fn start(script: Script) -> Result<TdsServer> {
        TdsServer::spawn(script, tls::Mode::Plain).await
    }

    /// TDS 8.0 strict: TLS with this PEM certificate chain and key (e.g.
    /// [`crate::pki::Pki`]'s `server_cert`/`server_key`), ALPN `tds/8.0`.
    pub async fn start_strict(script: Script, cert: &Path, key: &Path) -> Result<TdsServer> {
        let acceptor = tls::acceptor(cert, key)?;
        TdsServer::spawn(script, tls::Mode::Strict(acceptor)).await
    }

    /// TDS 7.4 with TLS negotiated in PRELOGIN, as SQL Server with "Force
    /// Encryption" (what tiberius's `EncryptionLevel::Required`/`On`/`Off`
    /// connect to): the TLS handshake travels inside PRELOGIN packets, then
    /// the whole session runs over TLS. A client that does not support
    /// encryption is disconnected after the PRELOGIN reply.
    pub async fn start_tls(script: Script, cert: &Path, key: &Path) -> Result<TdsServer> {
        let acceptor = tls::prelogin_acceptor(cert, key)?;
        TdsServer::spawn(script, tls::Mode::Prelogin(acceptor)).await
    }

    async fn spawn(script: Script, mode: tls::Mode) -> Result<TdsServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let model = Arc::new(model::Model::default());
        if let Some(rows) = &script.ledger {
            model.create_ledger();
            for row in rows {
                model.seed_ledger(row.clone());
            }
        }
        for resource in &script.held_applocks {
            model.hold_outside(resource);
        }
        let shared = Arc::new(Shared {
            log: Default::default(),
            script: std::sync::Mutex::new(script),
            model,
        });
        let connections = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(accept_loop(
            listener,
            shared.clone(),
            connections.clone(),
            mode,
        ));
        Ok(TdsServer {
            addr,
            shared,
            connections,
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Acquire)
    }

    /// Everything recorded, with connection numbers (from 1).
    pub fn log(&self) -> Vec<Entry> {
        self.shared.log.entries()
    }

    /// Everything recorded, all connections interleaved in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.log().into_iter().map(|e| e.request).collect()
    }

    /// The RPCs recorded so far.
    pub fn rpcs(&self) -> Vec<Rpc> {
        self.requests()
            .into_iter()
            .filter_map(|r| match r {
                Request::Rpc(rpc) => Some(rpc),
                _ => None,
            })
            .collect()
    }

    /// The logins recorded so far, accepted or not.
    pub fn logins(&self) -> Vec<Login> {
        self.requests()
            .into_iter()
            .filter_map(|r| match r {
                Request::Login(l) => Some(l),
                _ => None,
            })
            .collect()
    }

    /// Protocol errors recorded so far: `(connection, message)`.
    pub fn protocol_errors(&self) -> Vec<(u64, String)> {
        self.log()
            .into_iter()
            .filter_map(|e| match e.request {
                Request::ProtocolError { message } => Some((e.conn, message)),
                _ => None,
            })
            .collect()
    }

    /// Wait until `pred` holds for the log (ATTENTIONs and disconnects arrive
    /// asynchronously), at most `timeout`.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        pred: impl Fn(&[Entry]) -> bool,
    ) -> Result<Vec<Entry>> {
        self.shared.log.wait_for(timeout, pred).await
    }

    /// Every application lock hold so far (granted by `sp_getapplock`, or
    /// [`TdsServer::hold_applock`]), in grant order, with its release.
    pub fn applocks(&self) -> Vec<LockGrant> {
        self.shared.model.lock_history()
    }

    /// Hold an exclusive application lock on `resource` from outside (as
    /// connection 0, e.g. a session of another host); false if it cannot be
    /// granted now.
    pub fn hold_applock(&self, resource: &str) -> bool {
        self.shared.model.hold_outside(resource)
    }

    /// Release a lock held by [`TdsServer::hold_applock`] (or
    /// [`Script::hold_applock`]); false if none was held.
    pub fn release_applock(&self, resource: &str) -> bool {
        self.shared.model.release_outside(resource)
    }

    /// The committed rows of `dbo.baton_ledger` (empty without the table).
    pub fn ledger_rows(&self) -> Vec<LedgerRow> {
        self.shared.model.ledger_rows()
    }

    /// Whether `dbo.baton_ledger` exists.
    pub fn ledger_exists(&self) -> bool {
        self.shared.model.ledger_exists()
    }

    /// The effects of procedure `proc` (case and bracket quoting ignored,
    /// `dbo.` optional): every completed RPC to it, with its state.
    pub fn effects(&self, proc: &str) -> Vec<Effect> {
        self.shared.model.effects(Some(proc))
    }

    /// The effects of every declared procedure.
    pub fn all_effects(&self) -> Vec<Effect> {
        self.shared.model.effects(None)
    }

    /// `@@TRANCOUNT` of connection `conn` now.
    pub fn trancount(&self, conn: u64) -> u32 {
        self.shared.model.trancount(conn)
    }

    /// Wait until `pred` holds for the server (locks, ledger, effects, log),
    /// at most `timeout`.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        pred: impl Fn(&TdsServer) -> bool,
    ) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.shared.model.changed.notified();
            if pred(self) {
                return Ok(());
            }
            let tick = tokio::time::Instant::now() + Duration::from_millis(20);
            if tokio::time::timeout_at(deadline.min(tick), changed)
                .await
                .is_err()
                && tokio::time::Instant::now() >= deadline
            {
                anyhow::bail!("condition not met within {timeout:?}");
            }
        }
    }

    /// Add a rule while running; it takes precedence over the existing ones.
    pub fn on(&self, matcher: Match, responder: impl Into<Responder>) {
        if let Ok(mut script) = self.shared.script.lock() {
            let rule = script::Rule {
                matcher,
                responder: responder.into(),
                times: None,
            };
            script.rules.insert(0, rule);
        }
    }
}

impl Drop for TdsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    connections: Arc<AtomicU64>,
    mode: tls::Mode,
) {
    // Dropping the set (when this task is aborted) aborts every connection.
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else { continue };
                let conn = connections.fetch_add(1, Ordering::AcqRel) + 1;
                conns.spawn(connection(conn, tcp, shared.clone(), mode.clone()));
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn connection(conn: u64, tcp: TcpStream, shared: Arc<Shared>, mode: tls::Mode) {
    let _ = tcp.set_nodelay(true);
    let refused = |e: anyhow::Error| {
        shared.log.push(
            conn,
            Request::ProtocolError {
                message: format!("{e:#}"),
            },
        );
    };
    let (io, strict, prelogin_done): (Box<dyn Io>, bool, bool) = match &mode {
        tls::Mode::Plain => (Box::new(tcp), false, false),
        tls::Mode::Strict(acceptor) => match tls::accept(acceptor, tcp).await {
            Ok(stream) => (Box::new(stream), true, false),
            Err(e) => return refused(e),
        },
        tls::Mode::Prelogin(acceptor) => {
            let instance = shared.script.lock().ok().and_then(|s| s.instance.clone());
            let spid = u16::try_from(spid(conn)).unwrap_or(u16::MAX);
            match tls::negotiate(acceptor, tcp, spid, instance).await {
                Ok(stream) => (Box::new(stream), false, true),
                Err(e) => return refused(e),
            }
        }
    };
    session::serve(conn, io, shared, strict, prelogin_done).await;
}
