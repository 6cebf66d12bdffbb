//! The test's script: which reply each request gets, plus login and
//! procedure declarations.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::SubsecRound;

use super::model::LedgerRow;
use super::procs::Procedure;
use super::record::{Log, Request, normalize_name};
use super::tokens::{Done, ServerMessage, Token};

/// Which requests a rule answers.
#[derive(Clone)]
pub enum Match {
    /// Every SQL batch and RPC.
    Any,
    /// A SQL batch, or an `sp_executesql` statement, containing the text
    /// (case-insensitive).
    Sql(String),
    /// Only SQL batches containing the text (case-insensitive).
    Batch(String),
    /// An RPC to this procedure: case-insensitive, bracket quoting ignored, so
    /// `dbo.usp_x` matches `[dbo].[usp_x]`.
    Proc(String),
    /// An RPC by procedure id (10 is `sp_executesql`).
    ProcId(u16),
    /// Any predicate.
    When(Arc<dyn Fn(&Request) -> bool + Send + Sync>),
}

impl Match {
    pub fn sql(text: impl Into<String>) -> Match {
        Match::Sql(text.into())
    }

    pub fn batch(text: impl Into<String>) -> Match {
        Match::Batch(text.into())
    }

    pub fn proc(name: impl Into<String>) -> Match {
        Match::Proc(name.into())
    }

    pub fn when(f: impl Fn(&Request) -> bool + Send + Sync + 'static) -> Match {
        Match::When(Arc::new(f))
    }

    pub(crate) fn matches(&self, req: &Request) -> bool {
        let contains =
            |hay: &str, needle: &str| hay.to_lowercase().contains(&needle.to_lowercase());
        match self {
            Match::Any => true,
            Match::Sql(t) => req.sql().is_some_and(|s| contains(s, t)),
            Match::Batch(t) => matches!(req, Request::SqlBatch { text } if contains(text, t)),
            Match::Proc(name) => req
                .as_rpc()
                .and_then(|r| r.name())
                .is_some_and(|n| normalize_name(n) == normalize_name(name)),
            Match::ProcId(id) => req
                .as_rpc()
                .is_some_and(|r| r.proc == super::record::ProcRef::Id(*id)),
            Match::When(f) => f(req),
        }
    }
}

impl fmt::Debug for Match {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Match::Any => write!(f, "Any"),
            Match::Sql(t) => write!(f, "Sql({t:?})"),
            Match::Batch(t) => write!(f, "Batch({t:?})"),
            Match::Proc(n) => write!(f, "Proc({n:?})"),
            Match::ProcId(i) => write!(f, "ProcId({i})"),
            Match::When(_) => write!(f, "When(..)"),
        }
    }
}

/// One step of a reply.
#[derive(Clone)]
pub enum Step {
    /// Tokens appended to the reply.
    Tokens(Vec<Token>),
    /// Send what is buffered (without ending the message), then wait. An
    /// ATTENTION during the wait ends the reply with DONE(ATTN).
    Sleep(Duration),
    /// Send what is buffered, then wait for an ATTENTION (answered with
    /// DONE(ATTN)) or the client's disconnect.
    HangUntilAttention,
    /// Close the connection without finishing the reply.
    Close,
    /// Run a closure at this point of the reply (e.g. write a file or update
    /// shared state). Skipped when an ATTENTION cut the reply short before
    /// it; run when the client disconnected (the server finishes a request
    /// whose client is gone, as SQL Server does).
    Run(Arc<dyn Fn() + Send + Sync>),
    /// The request's own `COMMIT` (e.g. a procedure that commits by
    /// itself): one level of the session's transaction; the outermost sends
    /// ENVCHANGE 9. Without a transaction: error 3902. A procedure whose
    /// final DONEPROC finds `@@TRANCOUNT` changed also gets error 266, as on
    /// SQL Server.
    Commit,
    /// The request's own `ROLLBACK`: the whole transaction, ENVCHANGE 10;
    /// error 3903 without one.
    Rollback,
}

impl fmt::Debug for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Tokens(t) => f.debug_tuple("Tokens").field(t).finish(),
            Step::Sleep(d) => f.debug_tuple("Sleep").field(d).finish(),
            Step::HangUntilAttention => write!(f, "HangUntilAttention"),
            Step::Close => write!(f, "Close"),
            Step::Run(_) => write!(f, "Run(..)"),
            Step::Commit => write!(f, "Commit"),
            Step::Rollback => write!(f, "Rollback"),
        }
    }
}

/// A scripted reply: steps played in order; the message ends after the last.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    pub steps: Vec<Step>,
}

impl Reply {
    /// These tokens, sent at once.
    pub fn tokens(tokens: Vec<Token>) -> Reply {
        Reply {
            steps: vec![Step::Tokens(tokens)],
        }
    }

    /// A final DONE (what SQL Server sends for a batch without results).
    pub fn done() -> Reply {
        Reply::tokens(vec![Token::done()])
    }

    /// A finished procedure: RETURNSTATUS then a final DONEPROC.
    pub fn proc_return(status: i32) -> Reply {
        Reply::tokens(vec![
            Token::ReturnStatus(status),
            Token::DoneProc(Done::new()),
        ])
    }

    /// A failing batch: ERROR then DONE(ERROR).
    pub fn error(msg: ServerMessage) -> Reply {
        Reply::tokens(vec![Token::Error(msg), Token::Done(Done::new().error())])
    }

    /// A failing procedure (RAISERROR/THROW inside it): ERROR, DONEINPROC(ERROR),
    /// RETURNSTATUS, DONEPROC(ERROR).
    pub fn proc_error(msg: ServerMessage, status: i32) -> Reply {
        Reply::tokens(vec![
            Token::Error(msg),
            Token::DoneInProc(Done::new().error().more()),
            Token::ReturnStatus(status),
            Token::DoneProc(Done::new().error()),
        ])
    }

    /// Wait for an ATTENTION or a disconnect; nothing else is sent.
    pub fn hang() -> Reply {
        Reply {
            steps: vec![Step::HangUntilAttention],
        }
    }

    /// Close the connection instead of answering.
    pub fn close() -> Reply {
        Reply {
            steps: vec![Step::Close],
        }
    }

    /// Wait `d` before everything else.
    pub fn delay(mut self, d: Duration) -> Reply {
        self.steps.insert(0, Step::Sleep(d));
        self
    }

    /// Append tokens.
    pub fn then(mut self, tokens: Vec<Token>) -> Reply {
        self.steps.push(Step::Tokens(tokens));
        self
    }

    /// Append a pause (buffered tokens are sent first).
    pub fn then_sleep(mut self, d: Duration) -> Reply {
        self.steps.push(Step::Sleep(d));
        self
    }

    /// Append the request's own COMMIT ([`Step::Commit`]), e.g.
    /// `Reply::default().then_commit().then(vec![Token::ReturnStatus(0),
    /// Token::DoneProc(Done::new())])` for a procedure that commits by itself.
    pub fn then_commit(mut self) -> Reply {
        self.steps.push(Step::Commit);
        self
    }

    /// Append the request's own ROLLBACK ([`Step::Rollback`]).
    pub fn then_rollback(mut self) -> Reply {
        self.steps.push(Step::Rollback);
        self
    }

    /// Append a closure run at this point of the reply; skipped if an
    /// ATTENTION ended the reply before it.
    pub fn then_run(mut self, f: impl Fn() + Send + Sync + 'static) -> Reply {
        self.steps.push(Step::Run(Arc::new(f)));
        self
    }
}

/// What a dynamic responder gets: the connection number, the request and
/// the server's log.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub conn: u64,
    pub request: Request,
    pub log: Log,
    /// The session's `@@TRANCOUNT` when the request arrived (e.g. BACKUP
    /// refuses to run inside a user transaction).
    pub trancount: u32,
    /// The transaction descriptor the request carried (0: none).
    pub descriptor: u64,
}

/// A future producing a reply.
pub type ReplyFuture = Pin<Box<dyn Future<Output = Reply> + Send>>;

/// A fixed reply or one computed per request (possibly waiting, e.g. to model
/// a lock; an ATTENTION or disconnect while it waits is honoured).
#[derive(Clone)]
pub enum Responder {
    Fixed(Reply),
    Dynamic(Arc<dyn Fn(Ctx) -> ReplyFuture + Send + Sync>),
}

impl fmt::Debug for Responder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Responder::Fixed(r) => f.debug_tuple("Fixed").field(r).finish(),
            Responder::Dynamic(_) => write!(f, "Dynamic(..)"),
        }
    }
}

impl From<Reply> for Responder {
    fn from(r: Reply) -> Responder {
        Responder::Fixed(r)
    }
}

impl Responder {
    /// A reply computed by an async closure.
    pub fn dynamic<F, Fut>(f: F) -> Responder
    where
        F: Fn(Ctx) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Reply> + Send + 'static,
    {
        Responder::Dynamic(Arc::new(move |ctx| Box::pin(f(ctx))))
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub(crate) matcher: Match,
    pub(crate) responder: Responder,
    /// Uses left; `None` is unlimited.
    pub(crate) times: Option<usize>,
}

/// Everything a [`super::TdsServer`] answers with.
///
/// Rules are tried in order; the first matching one with uses left answers.
/// Without a match a batch gets a final DONE, an RPC RETURNSTATUS 0 plus a
/// final DONEPROC.
#[derive(Debug, Clone, Default)]
pub struct Script {
    pub(crate) credentials: Option<(String, String)>,
    pub(crate) databases: Option<Vec<String>>,
    /// Named instance this server is (`None`: the default instance).
    pub(crate) instance: Option<String>,
    pub(crate) procedures: Vec<Procedure>,
    pub(crate) rules: Vec<Rule>,
    /// `Some`: `dbo.baton_ledger` exists from the start, with these rows.
    pub(crate) ledger: Option<Vec<LedgerRow>>,
    pub(crate) held_applocks: Vec<String>,
}

impl Script {
    pub fn new() -> Script {
        Script::default()
    }

    /// Only this SQL login is accepted; others get error 18456.
    pub fn login(mut self, user: &str, password: &str) -> Script {
        self.credentials = Some((user.to_string(), password.to_string()));
        self
    }

    /// Only these databases exist; another gets error 4060 at login.
    pub fn databases(mut self, names: &[&str]) -> Script {
        self.databases = Some(names.iter().map(|s| s.to_string()).collect());
        self
    }

    /// This server is the named instance `name`: PRELOGIN INSTOPT must name it
    /// (case-insensitively); the default instance is refused, and vice versa.
    pub fn instance(mut self, name: &str) -> Script {
        self.instance = Some(name.to_string());
        self
    }

    /// Declare a procedure: its parameters are checked like SQL Server does,
    /// and RPCs to undeclared names fail with 2812.
    pub fn procedure(mut self, p: Procedure) -> Script {
        self.procedures.push(p);
        self
    }

    /// `dbo.baton_ledger` exists from the start (else the T1 batch creates
    /// it).
    pub fn ledger_table(mut self) -> Script {
        self.ledger.get_or_insert_with(Vec::new);
        self
    }

    /// A committed ledger row present from the start (creates the table):
    /// an earlier attempt's commit.
    pub fn ledger_row(
        mut self,
        fleet: &str,
        job_id: i64,
        attempt: i32,
        token: i64,
        result: &str,
    ) -> Script {
        self.ledger.get_or_insert_with(Vec::new).push(LedgerRow {
            fleet: fleet.to_string(),
            job_id,
            attempt,
            token,
            committed_at: chrono::Utc::now().naive_utc().trunc_subsecs(3),
            result: result.to_string(),
            conn: 0,
        });
        self
    }

    /// An exclusive application lock on `resource` held from the start by
    /// an outside session (connection 0), until
    /// [`super::TdsServer::release_applock`].
    pub fn hold_applock(mut self, resource: &str) -> Script {
        self.held_applocks.push(resource.to_string());
        self
    }

    /// Answer matching requests with `responder`, every time.
    pub fn on(mut self, matcher: Match, responder: impl Into<Responder>) -> Script {
        self.rules.push(Rule {
            matcher,
            responder: responder.into(),
            times: None,
        });
        self
    }

    /// Answer the next `n` matching requests with `responder`; later ones fall
    /// through to the following rules.
    pub fn on_times(mut self, n: usize, matcher: Match, responder: impl Into<Responder>) -> Script {
        self.rules.push(Rule {
            matcher,
            responder: responder.into(),
            times: Some(n),
        });
        self
    }

    /// The responder for `req`, consuming one use of its rule.
    pub(crate) fn pick(&mut self, req: &Request) -> Option<Responder> {
        let rule = self
            .rules
            .iter_mut()
            .find(|r| r.times != Some(0) && r.matcher.matches(req))?;
        if let Some(n) = rule.times.as_mut() {
            *n -= 1;
        }
        Some(rule.responder.clone())
    }
}
