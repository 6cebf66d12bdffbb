//! One client connection: PRELOGIN → LOGIN7 → requests, each answered from
//! the script while ATTENTION and disconnects are watched for.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Result, bail};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use super::applock;
use super::builtin::{self, Builtin};
use super::login::{ENCRYPT_NOT_SUP, ENCRYPT_ON, parse_login7, parse_prelogin, prelogin_reply};
use super::model::{Model, TxnChange};
use super::packet::{
    ATTENTION, DEFAULT_PACKET_SIZE, LOGIN7, Message, MessageReader, MessageWriter, PRELOGIN, RPC,
    SQL_BATCH,
};
use super::procs::{check_execute_sql, check_procedure};
use super::record::{Log, Request, normalize_name};
use super::request::{parse_rpc, parse_sql_batch};
use super::script::{Ctx, Reply, Responder, Script, Step};
use super::tokens::{self, Done, Encoder, ServerMessage, Token, done_status};

/// A connection's byte stream (TCP, or TLS over TCP).
pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// State shared by the server and its connections.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) log: Log,
    pub(crate) script: Mutex<Script>,
    pub(crate) model: Arc<Model>,
}

enum Incoming {
    Message(Message),
    Eof,
    Error(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    PreLogin,
    Login,
    LoggedIn,
}

enum Flow {
    Continue,
    Close,
}

enum Wait {
    Elapsed,
    Attention,
    Closed,
}

/// How a played reply ended.
struct Outcome {
    flow: Flow,
    /// The request ran to its end (not cut short by an ATTENTION, a hang
    /// ended by a disconnect, or a scripted close).
    completed: bool,
    /// An ERROR of class 11 or more was part of the reply.
    errored: bool,
}

type Writer = MessageWriter<tokio::io::WriteHalf<Box<dyn Io>>>;

struct Session {
    conn: u64,
    shared: Arc<Shared>,
    writer: Writer,
    size: Arc<AtomicU32>,
    rx: mpsc::Receiver<Incoming>,
    strict: bool,
    state: State,
}

/// Serve one connection until it closes.
/// `prelogin_done`: the PRELOGIN (and the TLS negotiated in it) already
/// happened in `tls::negotiate`; the next message is the LOGIN7.
pub(crate) async fn serve(
    conn: u64,
    io: Box<dyn Io>,
    shared: Arc<Shared>,
    strict: bool,
    prelogin_done: bool,
) {
    let (rd, wr) = tokio::io::split(io);
    let size = Arc::new(AtomicU32::new(DEFAULT_PACKET_SIZE));
    let (tx, rx) = mpsc::channel(8);
    let mut reader = MessageReader::new(rd, size.clone());
    let reader_task = tokio::spawn(async move {
        loop {
            let item = match reader.next().await {
                Ok(Some(m)) => Incoming::Message(m),
                Ok(None) => Incoming::Eof,
                Err(e) => Incoming::Error(format!("{e:#}")),
            };
            let last = !matches!(item, Incoming::Message(_));
            if tx.send(item).await.is_err() || last {
                break;
            }
        }
    });
    let spid = 50 + (conn % 1000) as u16;
    let mut session = Session {
        conn,
        shared,
        writer: MessageWriter::new(wr, size.clone(), spid),
        size,
        rx,
        strict,
        state: if prelogin_done {
            State::Login
        } else {
            State::PreLogin
        },
    };
    session.run().await;
    session.writer.shutdown().await;
    reader_task.abort();
    if session.state == State::LoggedIn {
        // The session ends: its transaction rolls back, its locks go.
        let (rolled_back, released_locks) = session.shared.model.end_session(conn);
        session.log(Request::SessionEnded {
            rolled_back,
            released_locks,
        });
    }
}

impl Session {
    fn log(&self, request: Request) {
        self.shared.log.push(self.conn, request);
    }

    async fn run(&mut self) {
        loop {
            let msg = match self.rx.recv().await {
                Some(Incoming::Message(m)) => m,
                Some(Incoming::Eof) | None => {
                    self.log(Request::Disconnect);
                    return;
                }
                Some(Incoming::Error(message)) => {
                    self.log(Request::ProtocolError { message });
                    return;
                }
            };
            match self.handle(msg).await {
                Ok(Flow::Continue) => {}
                Ok(Flow::Close) => return,
                Err(e) => {
                    self.log(Request::ProtocolError {
                        message: format!("{e:#}"),
                    });
                    return;
                }
            }
        }
    }

    /// Send `buf` (and clear it); a failed write means the client is gone.
    async fn send(&mut self, buf: &mut Vec<u8>, eom: bool) -> Flow {
        let res = self.writer.send(buf, eom).await;
        buf.clear();
        match res {
            Ok(()) => Flow::Continue,
            Err(_) => {
                self.log(Request::Disconnect);
                Flow::Close
            }
        }
    }

    async fn handle(&mut self, msg: Message) -> Result<Flow> {
        match (self.state, msg.ty) {
            (State::PreLogin, PRELOGIN) => {
                let pre = parse_prelogin(&msg.payload)?;
                // Plain: encryption not supported. TDS 8.0 strict: TLS is
                // already up and the option is ignored by the client.
                let encryption = if self.strict {
                    ENCRYPT_ON
                } else {
                    ENCRYPT_NOT_SUP
                };
                let own = self
                    .shared
                    .script
                    .lock()
                    .ok()
                    .and_then(|s| s.instance.clone());
                let valid = match own {
                    Some(name) => pre.instance.eq_ignore_ascii_case(&name),
                    None => {
                        pre.instance.is_empty() || pre.instance.eq_ignore_ascii_case("MSSQLSERVER")
                    }
                };
                self.state = State::Login;
                Ok(self
                    .send(&mut prelogin_reply(encryption, valid), true)
                    .await)
            }
            (State::Login, LOGIN7) => self.login(&msg.payload).await,
            (State::LoggedIn, SQL_BATCH) => {
                let (text, descriptor) = parse_sql_batch(&msg.payload)?;
                self.request(Request::SqlBatch { text }, descriptor, None)
                    .await
            }
            (State::LoggedIn, RPC) => {
                let (rpc, descriptor) = parse_rpc(&msg.payload)?;
                let refusal = if let Some(sys) = applock::sys_proc(&rpc) {
                    applock::check(sys, &rpc)
                } else if rpc.is_execute_sql() {
                    check_execute_sql(&rpc)
                } else {
                    let procs = self.script()?.procedures.clone();
                    check_procedure(&procs, &rpc)
                };
                self.request(Request::Rpc(rpc), descriptor, refusal).await
            }
            (State::LoggedIn, ATTENTION) => {
                // Nothing in flight: still acknowledged, as SQL Server does.
                self.log(Request::Attention);
                Ok(self.ack_attention(None).await)
            }
            (state, ty) => bail!("unexpected packet type 0x{ty:02X} in state {state:?}"),
        }
    }

    fn script(&self) -> Result<std::sync::MutexGuard<'_, Script>> {
        self.shared
            .script
            .lock()
            .map_err(|_| anyhow::anyhow!("script lock poisoned"))
    }

    async fn login(&mut self, payload: &[u8]) -> Result<Flow> {
        let parsed = parse_login7(payload)?;
        let mut login = parsed.login;
        let (credentials, databases) = {
            let script = self.script()?;
            (script.credentials.clone(), script.databases.clone())
        };
        let failed = |user: &str| {
            ServerMessage::new(18456, 14, format!("Login failed for user '{user}'.")).line(1)
        };
        let database = if login.database.is_empty() {
            "master".to_string()
        } else {
            login.database.clone()
        };
        let mut errors = Vec::new();
        if parsed.integrated {
            errors.push(ServerMessage::new(
                18452,
                14,
                "Login failed. The login is from an untrusted domain and cannot be used with \
                 Integrated authentication.",
            ));
        } else if parsed.feature_ext
            || credentials
                .as_ref()
                .is_some_and(|(u, p)| *u != login.user || *p != login.password)
        {
            // FeatureExt (federated authentication) is not supported either.
            errors.push(failed(&login.user));
        } else if databases
            .as_ref()
            .is_some_and(|dbs| !dbs.iter().any(|d| d.eq_ignore_ascii_case(&database)))
        {
            errors.push(ServerMessage::new(
                4060,
                11,
                format!(
                    "Cannot open database \"{database}\" requested by the login. The login failed."
                ),
            ));
            errors.push(failed(&login.user));
        }
        login.accepted = errors.is_empty();
        let packet_size = if login.packet_size == 0 {
            DEFAULT_PACKET_SIZE
        } else {
            login.packet_size
        };
        self.log(Request::Login(login));
        let mut out = Vec::new();
        let mut enc = Encoder::new(None);
        if !errors.is_empty() {
            for e in errors {
                enc.encode(&mut out, &Token::Error(e))?;
            }
            enc.encode(&mut out, &Token::Done(Done::new().error()))?;
            // SQL Server closes the connection after a failed login.
            self.send(&mut out, true).await;
            return Ok(Flow::Close);
        }
        enc.encode(
            &mut out,
            &Token::EnvDatabase {
                new: database.clone(),
                old: "master".into(),
            },
        )?;
        let changed = format!("Changed database context to '{database}'.");
        enc.encode(
            &mut out,
            &Token::Info(ServerMessage::new(5701, 0, changed).state(2)),
        )?;
        tokens::env_collation(&mut out);
        tokens::login_ack(&mut out)?;
        tokens::env_packet_size(&mut out, packet_size, DEFAULT_PACKET_SIZE)?;
        enc.encode(&mut out, &Token::done())?;
        // The client may use the new size as soon as it reads the reply.
        self.size.store(packet_size, Ordering::Release);
        self.state = State::LoggedIn;
        Ok(self.send(&mut out, true).await)
    }

    /// Record a request and play its reply: a refusal from the RPC checks,
    /// else the script's responder, else the built-in answer, else the
    /// default. A completed call of a declared procedure is an effect.
    async fn request(
        &mut self,
        req: Request,
        descriptor: u64,
        refusal: Option<ServerMessage>,
    ) -> Result<Flow> {
        self.shared
            .log
            .push_with(self.conn, req.clone(), descriptor);
        let declared = self.declared(&req)?;
        let outcome = self.respond(&req, descriptor, refusal).await?;
        if outcome.completed
            && !outcome.errored
            && let (Some(name), Some(rpc)) = (declared, req.as_rpc())
        {
            self.shared
                .model
                .effect(self.conn, &name, rpc.params.clone());
        }
        Ok(outcome.flow)
    }

    /// The procedure name of an RPC to a declared procedure.
    fn declared(&self, req: &Request) -> Result<Option<String>> {
        let Some(name) = req.as_rpc().and_then(|r| r.name()) else {
            return Ok(None);
        };
        let script = self.script()?;
        Ok(script
            .procedures
            .iter()
            .any(|p| p.matches(name))
            .then(|| name.to_string()))
    }

    async fn respond(
        &mut self,
        req: &Request,
        descriptor: u64,
        refusal: Option<ServerMessage>,
    ) -> Result<Outcome> {
        let responder = match refusal {
            Some(msg) => Some(Responder::Fixed(Reply::tokens(vec![
                Token::Error(msg),
                Token::DoneProc(Done::new().error()),
            ]))),
            None => self.script()?.pick(req),
        };
        let reply = match responder {
            Some(Responder::Fixed(r)) => r,
            Some(Responder::Dynamic(f)) => {
                let mut fut = f(Ctx {
                    conn: self.conn,
                    request: req.clone(),
                    log: self.shared.log.clone(),
                    trancount: self.shared.model.trancount(self.conn),
                    descriptor,
                });
                let waited = tokio::select! {
                    r = &mut fut => Ok(r),
                    w = wait(&mut self.rx, None) => Err(w?),
                };
                match waited {
                    Ok(r) => r,
                    Err(Wait::Closed) => {
                        // The client is gone; the request still runs to its end.
                        self.log(Request::Disconnect);
                        let reply = fut.await;
                        return self.play(reply, req, true).await;
                    }
                    Err(w) => return self.interrupted(w).await,
                }
            }
            None => match builtin::answer(&self.shared.model, self.conn, req) {
                Some(Builtin::Reply(r)) => r,
                Some(Builtin::Wait(fut)) => {
                    // A wait (for a lock, a row) ends at an ATTENTION or a
                    // disconnect.
                    let waited = tokio::select! {
                        r = fut => Ok(r),
                        w = wait(&mut self.rx, None) => Err(w?),
                    };
                    match waited {
                        Ok(r) => r,
                        Err(w) => return self.interrupted(w).await,
                    }
                }
                None if matches!(req, Request::Rpc(_)) => Reply::proc_return(0),
                None => Reply::done(),
            },
        };
        self.play(reply, req, false).await
    }

    /// With XACT_ABORT on (or for a deadlock victim, always), an error ends
    /// the open transaction: the descriptor rolled back.
    fn abort_transaction(&self, number: i32) -> Option<u64> {
        let model = &self.shared.model;
        model.txn(self.conn)?;
        if !model.xact_abort(self.conn) && number != 1205 {
            return None;
        }
        match model.rollback(self.conn) {
            TxnChange::RolledBack(id) => Some(id),
            _ => None,
        }
    }

    /// Play a reply's steps. `detached`: the client is gone, so nothing is
    /// sent, but sleeps elapse and closures run, as SQL Server finishes a
    /// request whose client disconnected.
    async fn play(&mut self, reply: Reply, req: &Request, mut detached: bool) -> Result<Outcome> {
        let mut buf = Vec::new();
        let mut enc = Encoder::new(Some(req));
        let mut errored = false;
        let end = |flow, completed, errored| Outcome {
            flow,
            completed,
            errored,
        };
        // A procedure must leave @@TRANCOUNT as it found it (error 266).
        let proc_name = req
            .as_rpc()
            .filter(|r| applock::sys_proc(r).is_none())
            .and_then(|r| r.name())
            .map(|n| {
                let n = normalize_name(n);
                n.rsplit('.').next().unwrap_or(&n).to_string()
            });
        let count_before = self.shared.model.trancount(self.conn);
        for step in reply.steps {
            let pause = match step {
                Step::Tokens(tokens) => {
                    for t in &tokens {
                        let mut mismatch = None;
                        if let (Token::DoneProc(d), Some(name)) = (t, &proc_name) {
                            let now = self.shared.model.trancount(self.conn);
                            if d.status & done_status::MORE == 0 && now != count_before {
                                mismatch = Some(trancount_mismatch(name, count_before, now));
                            }
                        }
                        if let Some((error, done)) = &mismatch {
                            enc.encode(&mut buf, error)?;
                            enc.encode(&mut buf, done)?;
                            continue;
                        }
                        if let Err(e) = enc.encode(&mut buf, t) {
                            self.log(Request::ScriptError {
                                message: format!("{e:#}"),
                            });
                            return Ok(end(Flow::Close, false, errored));
                        }
                        if let Token::Error(m) = t
                            && m.class >= 11
                        {
                            errored = true;
                            if let Some(id) = self.abort_transaction(m.number) {
                                enc.encode(&mut buf, &Token::EnvRollbackTransaction(id))?;
                            }
                        }
                    }
                    continue;
                }
                Step::Run(f) => {
                    f();
                    continue;
                }
                Step::Commit | Step::Rollback => {
                    let model = &self.shared.model;
                    let (token, number) = if matches!(step, Step::Commit) {
                        match model.commit(self.conn) {
                            TxnChange::Committed(Some(id)) => {
                                (Some(Token::EnvCommitTransaction(id)), None)
                            }
                            TxnChange::NoTransaction => (None, Some((3902, "COMMIT"))),
                            _ => (None, None),
                        }
                    } else {
                        match model.rollback(self.conn) {
                            TxnChange::RolledBack(id) => {
                                (Some(Token::EnvRollbackTransaction(id)), None)
                            }
                            _ => (None, Some((3903, "ROLLBACK"))),
                        }
                    };
                    if let Some(t) = token {
                        enc.encode(&mut buf, &t)?;
                    }
                    if let Some((number, what)) = number {
                        errored = true;
                        let msg = format!(
                            "The {what} TRANSACTION request has no corresponding BEGIN \
                             TRANSACTION."
                        );
                        enc.encode(&mut buf, &Token::Error(ServerMessage::new(number, 16, msg)))?;
                    }
                    continue;
                }
                Step::Sleep(d) => Some(d),
                Step::HangUntilAttention => None,
                Step::Close => {
                    if !detached {
                        self.send(&mut buf, false).await;
                    }
                    return Ok(end(Flow::Close, false, errored));
                }
            };
            let deadline = pause.map(|d| tokio::time::Instant::now() + d);
            if !detached && let Flow::Close = self.send(&mut buf, false).await {
                detached = true;
            }
            if !detached {
                match wait(&mut self.rx, pause).await? {
                    Wait::Elapsed => continue,
                    Wait::Attention => {
                        let flow = self.interrupted(Wait::Attention).await?.flow;
                        return Ok(end(flow, false, errored));
                    }
                    Wait::Closed => {
                        self.log(Request::Disconnect);
                        detached = true;
                    }
                }
            }
            buf.clear();
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                // A hang ends with its client.
                None => return Ok(end(Flow::Close, false, errored)),
            }
        }
        if detached {
            return Ok(end(Flow::Close, true, errored));
        }
        let flow = self.send(&mut buf, true).await;
        Ok(end(flow, true, errored))
    }

    async fn interrupted(&mut self, w: Wait) -> Result<Outcome> {
        let flow = match w {
            Wait::Elapsed => Flow::Continue,
            Wait::Attention => {
                self.log(Request::Attention);
                // XACT_ABORT: a cancelled request rolls its transaction back.
                let rolled_back = if self.shared.model.xact_abort(self.conn) {
                    match self.shared.model.rollback(self.conn) {
                        TxnChange::RolledBack(id) => Some(id),
                        _ => None,
                    }
                } else {
                    None
                };
                self.ack_attention(rolled_back).await
            }
            Wait::Closed => {
                self.log(Request::Disconnect);
                Flow::Close
            }
        };
        Ok(Outcome {
            flow,
            completed: false,
            errored: false,
        })
    }

    /// DONE with DONE_ATTN ends the (cancelled) reply, after the ENVCHANGE
    /// of a transaction it rolled back.
    async fn ack_attention(&mut self, rolled_back: Option<u64>) -> Flow {
        let mut out = Vec::new();
        if let Some(id) = rolled_back {
            let mut enc = Encoder::new(None);
            if enc
                .encode(&mut out, &Token::EnvRollbackTransaction(id))
                .is_err()
            {
                out.clear();
            }
        }
        tokens::done(&mut out, 0xFD, &Done::new().attn());
        self.send(&mut out, true).await
    }
}

/// Error 266 and the failed DONEPROC that replace a procedure's final
/// DONEPROC when it changed `@@TRANCOUNT` (it committed, rolled back or
/// began a transaction without ending it).
fn trancount_mismatch(proc: &str, before: u32, now: u32) -> (Token, Token) {
    let msg = ServerMessage::new(
        266,
        16,
        format!(
            "Transaction count after EXECUTE indicates a mismatching number of BEGIN and \
             COMMIT statements. Previous count = {before}, current count = {now}."
        ),
    )
    .state(2)
    .procedure(proc)
    .line(0);
    (Token::Error(msg), Token::DoneProc(Done::new().error()))
}

/// Wait for `pause` (forever if `None`) while watching the client: an
/// ATTENTION or a disconnect ends the wait; another request is a protocol
/// error (no MARS: one request at a time).
async fn wait(rx: &mut mpsc::Receiver<Incoming>, pause: Option<Duration>) -> Result<Wait> {
    let sleep = async {
        match pause {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = sleep => Ok(Wait::Elapsed),
        m = rx.recv() => match m {
            Some(Incoming::Message(m)) if m.ty == ATTENTION => Ok(Wait::Attention),
            Some(Incoming::Message(m)) => {
                bail!("request of type 0x{:02X} while a reply is in progress", m.ty)
            }
            Some(Incoming::Eof) | None => Ok(Wait::Closed),
            Some(Incoming::Error(e)) => bail!(e),
        },
    }
}
