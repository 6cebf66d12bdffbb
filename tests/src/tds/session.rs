//! One client connection: PRELOGIN → LOGIN7 → requests, each answered from
//! the script while ATTENTION and disconnects are watched for.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Result, bail};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use super::login::{ENCRYPT_NOT_SUP, ENCRYPT_ON, parse_login7, parse_prelogin, prelogin_reply};
use super::packet::{
    ATTENTION, DEFAULT_PACKET_SIZE, LOGIN7, Message, MessageReader, MessageWriter, PRELOGIN, RPC,
    SQL_BATCH,
};
use super::procs::{check_execute_sql, check_procedure};
use super::record::{Log, Request};
use super::request::{parse_rpc, parse_sql_batch};
use super::script::{Ctx, Reply, Responder, Script, Step};
use super::tokens::{self, Done, Encoder, ServerMessage, Token};

/// A connection's byte stream (TCP, or TLS over TCP).
pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// State shared by the server and its connections.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) log: Log,
    pub(crate) script: Mutex<Script>,
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
pub(crate) async fn serve(conn: u64, io: Box<dyn Io>, shared: Arc<Shared>, strict: bool) {
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
        state: State::PreLogin,
    };
    session.run().await;
    session.writer.shutdown().await;
    reader_task.abort();
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
                let valid =
                    pre.instance.is_empty() || pre.instance.eq_ignore_ascii_case("MSSQLSERVER");
                self.state = State::Login;
                Ok(self
                    .send(&mut prelogin_reply(encryption, valid), true)
                    .await)
            }
            (State::Login, LOGIN7) => self.login(&msg.payload).await,
            (State::LoggedIn, SQL_BATCH) => {
                let text = parse_sql_batch(&msg.payload)?;
                self.request(Request::SqlBatch { text }, None).await
            }
            (State::LoggedIn, RPC) => {
                let rpc = parse_rpc(&msg.payload)?;
                let refusal = if rpc.is_execute_sql() {
                    check_execute_sql(&rpc)
                } else {
                    let procs = self.script()?.procedures.clone();
                    check_procedure(&procs, &rpc)
                };
                self.request(Request::Rpc(rpc), refusal).await
            }
            (State::LoggedIn, ATTENTION) => {
                // Nothing in flight: still acknowledged, as SQL Server does.
                self.log(Request::Attention);
                Ok(self.ack_attention().await)
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
    /// else the script's responder, else the default.
    async fn request(&mut self, req: Request, refusal: Option<ServerMessage>) -> Result<Flow> {
        self.log(req.clone());
        let responder = match refusal {
            Some(msg) => Responder::Fixed(Reply::tokens(vec![
                Token::Error(msg),
                Token::DoneProc(Done::new().error()),
            ])),
            None => match self.script()?.pick(&req) {
                Some(r) => r,
                None if matches!(req, Request::Rpc(_)) => Responder::Fixed(Reply::proc_return(0)),
                None => Responder::Fixed(Reply::done()),
            },
        };
        let reply = match responder {
            Responder::Fixed(r) => r,
            Responder::Dynamic(f) => {
                let fut = f(Ctx {
                    conn: self.conn,
                    request: req.clone(),
                    log: self.shared.log.clone(),
                });
                let outcome = tokio::select! {
                    r = fut => Ok(r),
                    w = wait(&mut self.rx, None) => Err(w?),
                };
                match outcome {
                    Ok(r) => r,
                    Err(w) => return self.interrupted(w).await,
                }
            }
        };
        self.play(reply, &req).await
    }

    async fn play(&mut self, reply: Reply, req: &Request) -> Result<Flow> {
        let mut buf = Vec::new();
        let mut enc = Encoder::new(Some(req));
        for step in reply.steps {
            let pause = match step {
                Step::Tokens(tokens) => {
                    for t in &tokens {
                        if let Err(e) = enc.encode(&mut buf, t) {
                            self.log(Request::ScriptError {
                                message: format!("{e:#}"),
                            });
                            return Ok(Flow::Close);
                        }
                    }
                    continue;
                }
                Step::Sleep(d) => Some(d),
                Step::HangUntilAttention => None,
                Step::Close => {
                    self.send(&mut buf, false).await;
                    return Ok(Flow::Close);
                }
            };
            if let Flow::Close = self.send(&mut buf, false).await {
                return Ok(Flow::Close);
            }
            match wait(&mut self.rx, pause).await? {
                Wait::Elapsed => {}
                w => return self.interrupted(w).await,
            }
        }
        Ok(self.send(&mut buf, true).await)
    }

    async fn interrupted(&mut self, w: Wait) -> Result<Flow> {
        match w {
            Wait::Elapsed => Ok(Flow::Continue),
            Wait::Attention => {
                self.log(Request::Attention);
                Ok(self.ack_attention().await)
            }
            Wait::Closed => {
                self.log(Request::Disconnect);
                Ok(Flow::Close)
            }
        }
    }

    /// DONE with DONE_ATTN ends the (cancelled) reply.
    async fn ack_attention(&mut self) -> Flow {
        let mut out = Vec::new();
        tokens::done(&mut out, 0xFD, &Done::new().attn());
        self.send(&mut out, true).await
    }
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
