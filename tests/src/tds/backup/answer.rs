//! The backup model's answers: which requests each rule takes, and the
//! reply (with its progress steps) each gets.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::super::builtin::normalize_sql;
use super::super::record::{Param, Request};
use super::super::script::{Ctx, Reply, Step};
use super::super::tokens::{Column, Done, ServerMessage, Token, cur_cmd};
use super::super::types::{SqlType, Value};
use super::media::{self, Verdict};
use super::sql::{self, Opt, SelectStmt};
use super::{
    BackupCall, BackupFailure, BackupModel, BackupOutcome, Op, OpGuard, PollCall, VerifyCall,
    VerifyFailure,
};

/// Contract B1.
pub(crate) const SERVER_INFO: &str = "SELECT CAST(SERVERPROPERTY('ProductVersion') AS \
     nvarchar(128)) AS product_version, CAST(SERVERPROPERTY('Edition') AS nvarchar(128)) AS \
     edition, @@VERSION AS banner";

const PAGE: u64 = 8192;

fn text(req: &Request) -> &str {
    req.sql().unwrap_or_default()
}

fn is_rpc(req: &Request) -> bool {
    req.as_rpc().is_some()
}

fn args(req: &Request) -> &[Param] {
    req.as_rpc().map(|r| r.args()).unwrap_or(&[])
}

fn select_on(req: &Request, table: &str) -> Option<SelectStmt> {
    sql::parse_select(req.sql()?).filter(|s| s.table == table)
}

/// A `SELECT` on `table` filtered by `column` (`WHERE column = ...`).
fn select_where(req: &Request, table: &str, column: &str) -> Option<SelectStmt> {
    select_on(req, table).filter(|s| s.filter_column == column)
}

/// The statement's columns typed by `ty`; a column it does not know is
/// refused as SQL Server does (207).
fn typed_columns(
    stmt: &SelectStmt,
    rpc: bool,
    ty: impl Fn(&str) -> Option<SqlType>,
) -> Result<Vec<Column>, Reply> {
    stmt.columns
        .iter()
        .map(|c| match ty(c) {
            Some(t) => Ok(Column::new(c.clone(), t)),
            None => Err(refuse(rpc, &[invalid_column(c)])),
        })
        .collect()
}

pub(super) fn is_server_info(req: &Request) -> bool {
    req.sql()
        .is_some_and(|s| normalize_sql(s).contains("serverproperty("))
}

pub(super) fn is_databases(req: &Request) -> bool {
    select_on(req, "sys.databases").is_some()
}

pub(super) fn is_requests(req: &Request) -> bool {
    select_on(req, "sys.dm_exec_requests").is_some()
}

pub(super) fn is_backup(req: &Request) -> bool {
    req.sql().is_some_and(sql::is_backup)
}

pub(super) fn is_verify(req: &Request) -> bool {
    req.sql().is_some_and(sql::is_verify)
}

/// The tokens ending a successful statement: a batch's DONE, or
/// `sp_executesql`'s DONEINPROC, RETURNSTATUS 0, DONEPROC.
fn end_ok(rpc: bool, done: Done) -> Vec<Token> {
    if rpc {
        vec![
            Token::DoneInProc(done.more()),
            Token::ReturnStatus(0),
            Token::DoneProc(Done::new()),
        ]
    } else {
        vec![Token::Done(done)]
    }
}

fn end_error(rpc: bool) -> Vec<Token> {
    if rpc {
        vec![
            Token::DoneInProc(Done::new().error().more()),
            Token::DoneProc(Done::new().error()),
        ]
    } else {
        vec![Token::Done(Done::new().error())]
    }
}

fn errors(msgs: &[ServerMessage]) -> Vec<Token> {
    msgs.iter().cloned().map(Token::Error).collect()
}

fn refuse(rpc: bool, msgs: &[ServerMessage]) -> Reply {
    let mut t = errors(msgs);
    t.extend(end_error(rpc));
    Reply::tokens(t)
}

fn result(rpc: bool, columns: Vec<Column>, rows: Vec<Vec<Value>>) -> Reply {
    let done = Done::new().count(rows.len() as u64).cmd(cur_cmd::SELECT);
    let mut t = vec![Token::ColMetaData(columns)];
    t.extend(rows.into_iter().map(Token::Row));
    t.extend(end_ok(rpc, done));
    Reply::tokens(t)
}

fn unmodelled(req: &Request) -> Reply {
    let msg = ServerMessage::new(
        50000,
        16,
        format!(
            "TDS test server: BackupModel does not model this statement: {}",
            text(req)
        ),
    );
    refuse(is_rpc(req), &[msg])
}

fn info(number: i32, message: String) -> ServerMessage {
    ServerMessage::new(number, 0, message)
}

fn invalid_column(c: &str) -> ServerMessage {
    ServerMessage::new(207, 16, format!("Invalid column name '{c}'."))
}

/// B1: version, edition, banner.
pub(super) fn server_info(m: &BackupModel, ctx: &Ctx) -> Reply {
    let req = &ctx.request;
    if normalize_sql(text(req)) != normalize_sql(SERVER_INFO) {
        return unmodelled(req);
    }
    let row = {
        let s = m.lock();
        vec![
            Value::String(s.version.clone()),
            Value::String(s.edition.clone()),
            Value::String(s.banner.clone()),
        ]
    };
    let columns = vec![
        Column::new("product_version", SqlType::NVarChar(Some(128))),
        Column::new("edition", SqlType::NVarChar(Some(128))),
        Column::new("banner", SqlType::NVarChar(Some(300))),
    ];
    result(is_rpc(req), columns, vec![row])
}

/// B2: `sys.databases` by name.
pub(super) fn databases(m: &BackupModel, ctx: &Ctx) -> Reply {
    let req = &ctx.request;
    let rpc = is_rpc(req);
    let Some(stmt) = select_where(req, "sys.databases", "name") else {
        return unmodelled(req);
    };
    let name = match stmt.filter.text(args(req)) {
        Ok(n) => n,
        Err(e) => return refuse(rpc, &[e]),
    };
    let columns = match typed_columns(&stmt, rpc, |c| match c {
        "name" => Some(SqlType::NVarChar(Some(128))),
        "database_id" => Some(SqlType::Int),
        "state_desc" | "recovery_model_desc" => Some(SqlType::NVarChar(Some(60))),
        _ => None,
    }) {
        Ok(c) => c,
        Err(refused) => return refused,
    };
    let s = m.lock();
    let rows = s
        .databases
        .iter()
        .enumerate()
        .filter(|(_, d)| d.name.eq_ignore_ascii_case(&name))
        .map(|(i, d)| {
            stmt.columns
                .iter()
                .map(|c| match c.as_str() {
                    "name" => Value::String(d.name.clone()),
                    "database_id" => Value::Int(5 + i as i64),
                    "state_desc" => Value::String(d.state_desc.clone()),
                    _ => Value::String(d.recovery_model.clone()),
                })
                .collect()
        })
        .collect();
    result(rpc, columns, rows)
}

/// B4: `sys.dm_exec_requests` for one session; the poll is recorded.
pub(super) fn requests(m: &BackupModel, ctx: &Ctx) -> Reply {
    let req = &ctx.request;
    let rpc = is_rpc(req);
    let Some(stmt) = select_where(req, "sys.dm_exec_requests", "session_id") else {
        return unmodelled(req);
    };
    let session_id = match stmt.filter.resolve(args(req)) {
        Ok(v) => v.as_i64().unwrap_or(-1),
        Err(e) => return refuse(rpc, &[e]),
    };
    let columns = match typed_columns(&stmt, rpc, |c| match c {
        "percent_complete" => Some(SqlType::Real),
        "session_id" => Some(SqlType::SmallInt),
        "command" => Some(SqlType::NVarChar(Some(32))),
        "status" => Some(SqlType::NVarChar(Some(30))),
        "estimated_completion_time" => Some(SqlType::BigInt),
        _ => None,
    }) {
        Ok(c) => c.into_iter().map(Column::not_null).collect(),
        Err(refused) => return refused,
    };
    let row = {
        let mut s = m.lock();
        let found = s
            .running
            .iter()
            .find(|r| i64::from(super::super::spid(r.conn)) == session_id)
            .map(|r| (r.op, r.percent));
        let row = found.map(|(op, percent)| {
            stmt.columns
                .iter()
                .map(|c| match c.as_str() {
                    "percent_complete" => Value::Float(f64::from(percent as f32)),
                    "session_id" => Value::Int(session_id),
                    "command" => Value::String(
                        match op {
                            Op::Backup(_) => "BACKUP DATABASE",
                            // SQL Server truncates it to 16 characters.
                            Op::Verify(_) => "RESTORE VERIFYON",
                        }
                        .into(),
                    ),
                    "status" => Value::String("suspended".into()),
                    _ => Value::Int(0),
                })
                .collect::<Vec<_>>()
        });
        s.polls.push(PollCall {
            conn: ctx.conn,
            session_id,
            percent: found.map(|(_, p)| f64::from(p as f32)),
            at: Utc::now(),
        });
        row
    };
    m.changed();
    result(rpc, columns, row.into_iter().collect())
}

/// How a progress run ends.
enum Finish {
    /// Messages and tokens after the last step; the closure runs first.
    Success {
        run: Box<dyn Fn() + Send + Sync>,
        tokens: Vec<Token>,
    },
    /// Errors after the last step.
    Failure(Vec<ServerMessage>),
}

/// An operation's progress: `last` of `steps` equal steps over `total`
/// (INFO 3211 at each `stats` percent boundary), `on_step(i)` run at each.
struct Plan {
    conn: u64,
    op: Op,
    total: Duration,
    steps: u32,
    last: u32,
    stats: Option<u32>,
    rpc: bool,
    on_step: Option<Arc<dyn Fn(u32) + Send + Sync>>,
}

/// The steps of a [`Plan`], then its end. The operation counts as running
/// from now; if the reply is dropped before its end ran (ATTENTION), it
/// ends cancelled.
fn progress(m: &BackupModel, plan: Plan, finish: Finish) -> Reply {
    let Plan {
        conn,
        op,
        total,
        steps,
        last,
        stats,
        rpc,
        on_step,
    } = plan;
    m.start(conn, op);
    let guard = Arc::new(OpGuard {
        model: m.clone(),
        conn,
        op,
    });
    let interval = total / steps;
    let mut out = Vec::new();
    let mut prev = 0u32;
    for i in 1..=last {
        let percent = 100.0 * f64::from(i) / f64::from(steps);
        let whole = percent.floor() as u32;
        out.push(Step::Sleep(interval));
        let msg = stats
            .filter(|s| whole / s > prev / s)
            .map(|_| info(3211, format!("{whole} percent processed.")));
        if let Some(msg) = &msg {
            out.push(Step::Tokens(vec![Token::Info(msg.clone())]));
        }
        let g = guard.clone();
        let hook = on_step.clone();
        out.push(Step::Run(Arc::new(move || {
            if let Some(f) = &hook {
                f(i);
            }
            g.model.step(g.conn, g.op, percent, msg.clone());
        })));
        prev = whole;
    }
    match finish {
        Finish::Success { run, tokens } => {
            // At 100 % until the end (the log tail, the backup history).
            out.push(Step::Sleep(interval));
            let g = guard;
            out.push(Step::Run(Arc::new(move || {
                let _hold = &g;
                run();
            })));
            out.push(Step::Tokens(tokens));
        }
        Finish::Failure(msgs) => {
            let g = guard;
            let first = msgs.first().cloned();
            let sent = msgs.clone();
            out.push(Step::Run(Arc::new(move || {
                let outcome = match &first {
                    Some(e) => BackupOutcome::Failed {
                        number: e.number,
                        message: e.message.clone(),
                    },
                    None => BackupOutcome::Succeeded,
                };
                g.model.end(g.conn, g.op, outcome, sent.clone());
            })));
            let mut t = errors(&msgs);
            t.extend(end_error(rpc));
            out.push(Step::Tokens(t));
        }
    }
    Reply { steps: out }
}

fn failed(msgs: &[ServerMessage]) -> BackupOutcome {
    msgs.first()
        .map_or(BackupOutcome::Cancelled, |e| BackupOutcome::Failed {
            number: e.number,
            message: e.message.clone(),
        })
}

fn cannot_open(path: &str, e: &std::io::Error, reading: bool) -> ServerMessage {
    let (code, text) = media::os_error(e, reading);
    ServerMessage::new(
        3201,
        16,
        format!("Cannot open backup device '{path}'. Operating system error {code}({text})."),
    )
}

/// B3: `BACKUP DATABASE`.
pub(super) fn backup(m: &BackupModel, ctx: &Ctx) -> Reply {
    let req = &ctx.request;
    let rpc = is_rpc(req);
    let args = args(req);
    let stmt = match sql::parse_backup(text(req)) {
        Ok(s) => s,
        Err(e) => return refuse(rpc, &[e]),
    };
    if stmt.disks.len() != 1 {
        return unmodelled(req);
    }
    let (database, path) = match (stmt.database.text(args), stmt.disks[0].text(args)) {
        (Ok(d), Ok(p)) => (d, p),
        (Err(e), _) | (_, Err(e)) => return refuse(rpc, &[e]),
    };
    let stats = sql::stats(&stmt.options, args);
    let compression = stmt.options.iter().any(|o| o.name == "COMPRESSION");
    let conn = ctx.conn;
    let (idx, set, db, cfg) = {
        let mut s = m.lock();
        s.sets += 1;
        s.calls.push(BackupCall {
            conn,
            spid: super::super::spid(conn),
            database: database.clone(),
            path: path.clone(),
            options: stmt.options.iter().map(Opt::display).collect(),
            statement: text(req).to_string(),
            started: Utc::now(),
            finished: None,
            outcome: BackupOutcome::Running,
            messages: Vec::new(),
            bytes: 0,
            sha256: None,
        });
        let db = s
            .databases
            .iter()
            .find(|d| d.name.eq_ignore_ascii_case(&database))
            .cloned();
        (s.calls.len() - 1, s.sets, db, s.settings())
    };
    let (failure, size, total, steps) = (cfg.failure, cfg.size, cfg.progress, cfg.steps);
    let (edition, partial) = (cfg.edition, cfg.partial);
    let op = Op::Backup(idx);
    let terminating = ServerMessage::new(3013, 16, "BACKUP DATABASE is terminating abnormally.");
    let fail_now = |first: ServerMessage| {
        let msgs = [first, terminating.clone()];
        m.end(conn, op, failed(&msgs), msgs.to_vec());
        refuse(rpc, &msgs)
    };
    let Some(db) = db else {
        return fail_now(
            ServerMessage::new(
                911,
                16,
                format!(
                    "Database '{database}' does not exist. Make sure that the name is entered \
                     correctly."
                ),
            )
            .state(11),
        );
    };
    match db.state_desc.to_uppercase().as_str() {
        "ONLINE" => {}
        "RESTORING" => {
            return fail_now(ServerMessage::new(
                927,
                14,
                format!(
                    "Database '{}' cannot be opened. It is in the middle of a restore.",
                    db.name
                ),
            ));
        }
        _ => {
            return fail_now(ServerMessage::new(
                942,
                14,
                format!(
                    "Database '{}' cannot be opened because it is offline.",
                    db.name
                ),
            ));
        }
    }
    if compression && edition.to_lowercase().contains("express") {
        return fail_now(ServerMessage::new(
            1844,
            16,
            format!("BACKUP DATABASE WITH COMPRESSION is not supported on {edition}."),
        ));
    }
    if failure == Some(BackupFailure::AccessDenied) {
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        return fail_now(cannot_open(&path, &denied, false));
    }
    if let Err(e) = media::probe_writable(std::path::Path::new(&path)) {
        return fail_now(cannot_open(&path, &e, false));
    }
    let content = Arc::new(media::content(&db.name, set, size));
    // With partial files, the device is created now and filled as the
    // backup goes, so an interrupted backup leaves its partial file.
    let on_step: Option<Arc<dyn Fn(u32) + Send + Sync>> = if partial {
        if let Err(e) = std::fs::write(&path, b"") {
            return fail_now(cannot_open(&path, &e, false));
        }
        let (content, path) = (content.clone(), path.clone());
        Some(Arc::new(move |i: u32| {
            let upto = content.len() * i as usize / steps as usize;
            let _ = std::fs::write(&path, &content[..upto.min(content.len() - 1)]);
        }))
    } else {
        None
    };
    let plan = |last: u32| Plan {
        conn,
        op,
        total,
        steps,
        last,
        stats,
        rpc,
        on_step: on_step.clone(),
    };
    if failure == Some(BackupFailure::DiskFull) {
        let full = ServerMessage::new(
            3202,
            16,
            format!("Write on '{path}' failed: 112(There is not enough space on the disk.)"),
        );
        let finish = Finish::Failure(vec![full, terminating]);
        return progress(m, plan((steps / 2).max(1)), finish);
    }

    let data_pages = size.div_ceil(PAGE).max(1);
    let log_pages = 2;
    let pages = data_pages + log_pages;
    let secs = (total + total / steps).as_secs_f64().max(0.001);
    let mb_per_sec = (pages * PAGE) as f64 / 1_048_576.0 / secs;
    let done_msgs = vec![
        info(
            4035,
            format!(
                "Processed {data_pages} pages for database '{0}', file '{0}' on file 1.",
                db.name
            ),
        ),
        info(
            4035,
            format!(
                "Processed {log_pages} pages for database '{0}', file '{0}_log' on file 1.",
                db.name
            ),
        ),
        info(
            3014,
            format!(
                "BACKUP DATABASE successfully processed {pages} pages in {secs:.3} seconds \
                 ({mb_per_sec:.3} MB/sec)."
            ),
        ),
    ];
    let mut tokens: Vec<Token> = done_msgs.iter().cloned().map(Token::Info).collect();
    tokens.extend(end_ok(rpc, Done::new()));
    let model = m.clone();
    let run = Box::new(move || {
        let bytes = content.as_slice();
        let outcome = match std::fs::write(&path, bytes) {
            Ok(()) => {
                model.written(idx, bytes.len() as u64, media::sha256_hex(bytes));
                BackupOutcome::Succeeded
            }
            Err(e) => BackupOutcome::Failed {
                number: 3202,
                message: format!("Write on '{path}' failed: {e}"),
            },
        };
        model.end(conn, op, outcome, done_msgs.clone());
    });
    let finish = Finish::Success { run, tokens };
    progress(m, plan(steps), finish)
}

/// B5: `RESTORE VERIFYONLY`.
pub(super) fn verify(m: &BackupModel, ctx: &Ctx) -> Reply {
    let req = &ctx.request;
    let rpc = is_rpc(req);
    let args = args(req);
    let stmt = match sql::parse_verify(text(req)) {
        Ok(s) => s,
        Err(e) => return refuse(rpc, &[e]),
    };
    if stmt.disks.len() != 1 {
        return unmodelled(req);
    }
    let path = match stmt.disks[0].text(args) {
        Ok(p) => p,
        Err(e) => return refuse(rpc, &[e]),
    };
    let stats = sql::stats(&stmt.options, args);
    let conn = ctx.conn;
    let (idx, failure, total, steps) = {
        let mut s = m.lock();
        s.verifies.push(VerifyCall {
            conn,
            spid: super::super::spid(conn),
            path: path.clone(),
            options: stmt.options.iter().map(Opt::display).collect(),
            statement: text(req).to_string(),
            started: Utc::now(),
            finished: None,
            outcome: BackupOutcome::Running,
            messages: Vec::new(),
        });
        let cfg = s.settings();
        (
            s.verifies.len() - 1,
            cfg.verify_failure,
            cfg.verify_time,
            cfg.steps,
        )
    };
    let op = Op::Verify(idx);
    let plan = || Plan {
        conn,
        op,
        total,
        steps,
        last: steps,
        stats,
        rpc,
        on_step: None,
    };
    let terminating = ServerMessage::new(3013, 16, "VERIFY DATABASE is terminating abnormally.");
    let damaged = ServerMessage::new(3189, 16, "Damage to the backup set was detected.");
    let fail_later = |first: ServerMessage| {
        let finish = Finish::Failure(vec![first, terminating.clone()]);
        progress(m, plan(), finish)
    };
    if failure == Some(VerifyFailure::Damaged) {
        return fail_later(damaged);
    }
    let verdict = match std::fs::read(&path) {
        Ok(bytes) => media::inspect(&bytes),
        Err(e) => {
            let msgs = [cannot_open(&path, &e, true), terminating.clone()];
            m.end(conn, op, failed(&msgs), msgs.to_vec());
            return refuse(rpc, &msgs);
        }
    };
    match verdict {
        Verdict::NotABackup => {
            let msgs = [
                ServerMessage::new(
                    3241,
                    16,
                    format!(
                        "The media family on device '{path}' is incorrectly formed. SQL Server \
                         cannot process this media family."
                    ),
                ),
                terminating,
            ];
            m.end(conn, op, failed(&msgs), msgs.to_vec());
            refuse(rpc, &msgs)
        }
        Verdict::Damaged => fail_later(damaged),
        Verdict::Valid { .. } => {
            let valid = info(3262, "The backup set on file 1 is valid.".into());
            let mut tokens = vec![Token::Info(valid.clone())];
            tokens.extend(end_ok(rpc, Done::new()));
            let model = m.clone();
            let run = Box::new(move || {
                model.end(conn, op, BackupOutcome::Succeeded, vec![valid.clone()]);
            });
            progress(m, plan(), Finish::Success { run, tokens })
        }
    }
}
