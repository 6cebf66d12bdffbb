//! A protocol-level TDS (SQL Server wire protocol) test server, for testing
//! SQL Server clients (tiberius) where no SQL Server can run.
//!
//! It speaks TDS 7.4 over plain TCP (PRELOGIN answers ENCRYPTION "not
//! supported", so the client must use `EncryptionLevel::NotSupported`) and TDS
//! 8.0 strict mode (TLS with ALPN `tds/8.0` before the PRELOGIN), decodes
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
//! Layout: `packet` framing, `login` PRELOGIN/LOGIN7, [`types`] TYPE_INFO
//! and values, [`tokens`] reply tokens, `request` batch/RPC decoding, `procs`
//! RPC checks, [`script`] replies, [`record`] the log, `session` one
//! connection, `tls` strict mode, [`raw`] a raw client for negative tests.

mod login;
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
use tokio_rustls::TlsAcceptor;

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
        TdsServer::spawn(script, None).await
    }

    /// TDS 8.0 strict: TLS with this PEM certificate chain and key (e.g.
    /// [`crate::pki::Pki`]'s `server_cert`/`server_key`), ALPN `tds/8.0`.
    pub async fn start_strict(script: Script, cert: &Path, key: &Path) -> Result<TdsServer> {
        let acceptor = tls::acceptor(cert, key)?;
        TdsServer::spawn(script, Some(acceptor)).await
    }

    async fn spawn(script: Script, tls: Option<TlsAcceptor>) -> Result<TdsServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            log: Default::default(),
            script: std::sync::Mutex::new(script),
        });
        let connections = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(accept_loop(
            listener,
            shared.clone(),
            connections.clone(),
            tls,
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
    tls: Option<TlsAcceptor>,
) {
    // Dropping the set (when this task is aborted) aborts every connection.
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else { continue };
                let conn = connections.fetch_add(1, Ordering::AcqRel) + 1;
                conns.spawn(connection(conn, tcp, shared.clone(), tls.clone()));
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn connection(conn: u64, tcp: TcpStream, shared: Arc<Shared>, tls: Option<TlsAcceptor>) {
    let _ = tcp.set_nodelay(true);
    let io: Box<dyn Io> = match &tls {
        None => Box::new(tcp),
        Some(acceptor) => match tls::accept(acceptor, tcp).await {
            Ok(stream) => Box::new(stream),
            Err(e) => {
                shared.log.push(
                    conn,
                    Request::ProtocolError {
                        message: format!("{e:#}"),
                    },
                );
                return;
            }
        },
    };
    session::serve(conn, io, shared, tls.is_some()).await;
}
