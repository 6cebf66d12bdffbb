//! Built-in answers (used when no script rule matches): `SELECT @@SPID`,
//! `SELECT @@TRANCOUNT`, `SET XACT_ABORT`, BEGIN/COMMIT/ROLLBACK with their
//! ENVCHANGE tokens, the run ledger's statements (contract T1, T2, T5) and
//! the application lock procedures ([`super::applock`]).
//!
//! Statements are recognised by their exact text (case and whitespace
//! ignored); anything else is left to the default reply.

use std::sync::Arc;

use chrono::{SubsecRound, Utc};

use super::applock::{self, sys_proc};
use super::model::{LedgerError, LedgerRow, Model, TxnChange};
use super::record::{Request, Rpc};
use super::script::{Reply, ReplyFuture};
use super::tokens::{Column, Done, ServerMessage, Token, cur_cmd};
use super::types::{SqlType, Value};

/// Contract T1: the ledger table's DDL.
pub const LEDGER_DDL: &str = "IF OBJECT_ID(N'dbo.baton_ledger', N'U') IS NULL CREATE TABLE \
     dbo.baton_ledger (fleet nvarchar(64) NOT NULL, job_id bigint NOT NULL, attempt int NOT \
     NULL, token bigint NOT NULL, committed_at datetime2(3) NOT NULL, result nvarchar(max) NOT \
     NULL, CONSTRAINT pk_baton_ledger PRIMARY KEY (fleet, job_id))";

/// Contract T2: the ledger lookup (`@P1` fleet, `@P2` job id).
pub const LEDGER_SELECT: &str = "SELECT attempt, token, CONVERT(nvarchar(33), committed_at, \
     127) AS committed_at, result FROM dbo.baton_ledger WHERE fleet = @P1 AND job_id = @P2";

/// Contract T5: the ledger insert (`@P1` fleet, `@P2` job id, `@P3`
/// attempt, `@P4` token, `@P5` result).
pub const LEDGER_INSERT: &str = "INSERT INTO dbo.baton_ledger (fleet, job_id, attempt, token, \
     committed_at, result) VALUES (@P1, @P2, @P3, @P4, SYSUTCDATETIME(), @P5)";

/// A built-in answer: at once, or after a wait (a lock, a read blocked by
/// another session's uncommitted row) that an ATTENTION or a disconnect ends.
pub(crate) enum Builtin {
    Reply(Reply),
    Wait(ReplyFuture),
}

/// Lower-case, whitespace collapsed, no blanks around `(`, `)` and `,`, no
/// trailing `;`.
pub(crate) fn normalize_sql(s: &str) -> String {
    let collapsed = s.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out = String::with_capacity(collapsed.len());
    let chars: Vec<char> = collapsed.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if c == ' ' {
            let prev = i.checked_sub(1).and_then(|j| chars.get(j));
            let next = chars.get(i + 1);
            let tight = |c: Option<&char>| matches!(c, Some('(' | ')' | ','));
            if tight(prev) || tight(next) {
                continue;
            }
        }
        out.extend(c.to_lowercase());
    }
    out.trim_end_matches(';').trim().to_string()
}

/// The built-in answer to `req`, if it has one.
pub(crate) fn answer(model: &Arc<Model>, conn: u64, req: &Request) -> Option<Builtin> {
    match req {
        Request::SqlBatch { text } => batch(model, conn, text).map(Builtin::Reply),
        Request::Rpc(rpc) => match sys_proc(rpc) {
            Some(sys) => Some(applock::run(model, conn, sys, rpc)),
            None if rpc.is_execute_sql() => execute_sql(model, conn, rpc),
            None => None,
        },
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stmt {
    XactAbort(bool),
    Begin,
    Commit,
    Rollback,
    RollbackIfOpen,
    TranCount,
    Spid,
    CreateLedger,
}

fn parse_stmt(s: &str) -> Option<Stmt> {
    Some(match s {
        "set xact_abort on" => Stmt::XactAbort(true),
        "set xact_abort off" => Stmt::XactAbort(false),
        "begin tran" | "begin transaction" => Stmt::Begin,
        "commit" | "commit tran" | "commit transaction" | "commit work" => Stmt::Commit,
        "rollback" | "rollback tran" | "rollback transaction" | "rollback work" => Stmt::Rollback,
        "if @@trancount > 0 rollback"
        | "if @@trancount > 0 rollback tran"
        | "if @@trancount > 0 rollback transaction" => Stmt::RollbackIfOpen,
        "select @@trancount" => Stmt::TranCount,
        "select @@spid" => Stmt::Spid,
        s if s == normalize_sql(LEDGER_DDL) => Stmt::CreateLedger,
        _ => return None,
    })
}

/// A batch made only of recognised statements (separated by `;`).
fn batch(model: &Model, conn: u64, text: &str) -> Option<Reply> {
    let stmts = normalize_sql(text)
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(parse_stmt)
        .collect::<Option<Vec<_>>>()?;
    if stmts.is_empty() {
        return None;
    }
    let mut tokens = Vec::new();
    let last = stmts.len() - 1;
    for (i, stmt) in stmts.into_iter().enumerate() {
        let (mut body, mut done) = statement(model, conn, stmt);
        let failed = done.status & super::tokens::done_status::ERROR != 0;
        if i < last {
            done = done.more();
        }
        tokens.append(&mut body);
        tokens.push(Token::Done(done));
        if failed && model.xact_abort(conn) {
            // XACT_ABORT: an error ends the batch.
            if let Some(Token::Done(d)) = tokens.last_mut() {
                d.status &= !super::tokens::done_status::MORE;
            }
            break;
        }
    }
    Some(Reply::tokens(tokens))
}

fn int_row(name: &str, ty: SqlType, v: i64) -> Vec<Token> {
    vec![
        Token::columns(vec![Column::new(name, ty).not_null()]),
        Token::Row(vec![Value::Int(v)]),
    ]
}

fn selected(rows: u64) -> Done {
    Done::new().count(rows).cmd(cur_cmd::SELECT)
}

fn statement(model: &Model, conn: u64, stmt: Stmt) -> (Vec<Token>, Done) {
    let no_txn = |number: i32, what: &str| {
        let msg = ServerMessage::new(
            number,
            16,
            format!("The {what} TRANSACTION request has no corresponding BEGIN TRANSACTION."),
        );
        (vec![Token::Error(msg)], Done::new().error())
    };
    match stmt {
        Stmt::XactAbort(on) => {
            model.set_xact_abort(conn, on);
            (vec![], Done::new())
        }
        Stmt::Begin => match model.begin(conn) {
            TxnChange::Began(Some(id)) => (vec![Token::EnvBeginTransaction(id)], Done::new()),
            _ => (vec![], Done::new()),
        },
        Stmt::Commit => match model.commit(conn) {
            TxnChange::Committed(Some(id)) => (vec![Token::EnvCommitTransaction(id)], Done::new()),
            TxnChange::NoTransaction => no_txn(3902, "COMMIT"),
            _ => (vec![], Done::new()),
        },
        Stmt::Rollback | Stmt::RollbackIfOpen => match model.rollback(conn) {
            TxnChange::RolledBack(id) => (vec![Token::EnvRollbackTransaction(id)], Done::new()),
            _ if stmt == Stmt::Rollback => no_txn(3903, "ROLLBACK"),
            _ => (vec![], Done::new()),
        },
        Stmt::TranCount => (
            int_row("", SqlType::Int, i64::from(model.trancount(conn))),
            selected(1),
        ),
        Stmt::Spid => (
            int_row("", SqlType::SmallInt, i64::from(super::spid(conn))),
            selected(1),
        ),
        Stmt::CreateLedger => {
            model.create_ledger();
            (vec![], Done::new())
        }
    }
}

/// A statement's tokens as `sp_executesql` returns them.
fn rpc_reply(mut body: Vec<Token>, done: Done) -> Reply {
    body.push(Token::DoneInProc(done.more()));
    body.push(Token::ReturnStatus(0));
    body.push(Token::DoneProc(Done::new()));
    Reply::tokens(body)
}

/// A failed `sp_executesql` statement (`terminated`: SQL Server adds
/// message 3621 for statements that started running).
fn rpc_error(msg: ServerMessage, terminated: bool, cmd: u16) -> Reply {
    let mut t = vec![Token::Error(msg)];
    if terminated {
        t.push(Token::Info(
            ServerMessage::new(3621, 0, "The statement has been terminated.").state(0),
        ));
    }
    t.push(Token::DoneInProc(Done::new().error().more().cmd(cmd)));
    t.push(Token::DoneProc(Done::new().error()));
    Reply::tokens(t)
}

fn execute_sql(model: &Arc<Model>, conn: u64, rpc: &Rpc) -> Option<Builtin> {
    let stmt = normalize_sql(rpc.statement()?);
    match stmt.as_str() {
        "select @@spid" => {
            let body = int_row("", SqlType::SmallInt, i64::from(super::spid(conn)));
            return Some(Builtin::Reply(rpc_reply(body, selected(1))));
        }
        "select @@trancount" => {
            let n = i64::from(model.trancount(conn));
            let body = int_row("", SqlType::Int, n);
            return Some(Builtin::Reply(rpc_reply(body, selected(1))));
        }
        _ => {}
    }
    if stmt == normalize_sql(LEDGER_SELECT) {
        return Some(ledger_select(model, conn, rpc));
    }
    if stmt == normalize_sql(LEDGER_INSERT) {
        return Some(ledger_insert(model, conn, rpc));
    }
    None
}

fn missing_table() -> ServerMessage {
    ServerMessage::new(208, 16, "Invalid object name 'dbo.baton_ledger'.")
}

/// Wait until `f` stops answering `Blocked` (another session's
/// uncommitted row), then reply.
fn blocking<F>(model: &Arc<Model>, f: F) -> Builtin
where
    F: Fn(&Model) -> Option<Reply> + Send + 'static,
{
    if let Some(r) = f(model) {
        return Builtin::Reply(r);
    }
    let model = model.clone();
    Builtin::Wait(Box::pin(async move {
        loop {
            let notified = model.changed.notified();
            if let Some(r) = f(&model) {
                return r;
            }
            notified.await;
        }
    }))
}

fn ledger_select(model: &Arc<Model>, conn: u64, rpc: &Rpc) -> Builtin {
    let args = rpc.args();
    let fleet = args.first().map(|p| p.value.clone()).unwrap_or(Value::Null);
    let job = args.get(1).map(|p| p.value.clone()).unwrap_or(Value::Null);
    blocking(model, move |m| {
        let (Value::String(fleet), Some(job_id)) = (&fleet, int_of(&job)) else {
            // A NULL never equals anything: no row (the table must exist).
            if !m.ledger_exists() {
                return Some(rpc_error(missing_table(), false, cur_cmd::SELECT));
            }
            return Some(rpc_reply(ledger_columns(), selected(0)));
        };
        match m.ledger_get(conn, fleet, job_id) {
            Err(LedgerError::Blocked) => None,
            Err(_) => Some(rpc_error(missing_table(), false, cur_cmd::SELECT)),
            Ok(None) => Some(rpc_reply(ledger_columns(), selected(0))),
            Ok(Some(row)) => {
                let mut body = ledger_columns();
                body.push(Token::Row(vec![
                    Value::Int(i64::from(row.attempt)),
                    Value::Int(row.token),
                    Value::String(style_127(&row)),
                    Value::String(row.result),
                ]));
                Some(rpc_reply(body, selected(1)))
            }
        }
    })
}

/// `CONVERT(nvarchar(33), committed_at, 127)` of a `datetime2(3)`: ISO 8601
/// without a zone designator (the type has none), the fraction left out when
/// the milliseconds are 0 (as SQL Server documents for styles 126/127).
fn style_127(row: &LedgerRow) -> String {
    let t = row.committed_at;
    if t.and_utc().timestamp_subsec_millis() == 0 {
        t.format("%Y-%m-%dT%H:%M:%S").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%S%.3f").to_string()
    }
}

fn ledger_columns() -> Vec<Token> {
    vec![Token::columns(vec![
        Column::new("attempt", SqlType::Int).not_null(),
        Column::new("token", SqlType::BigInt).not_null(),
        Column::new("committed_at", SqlType::NVarChar(Some(33))),
        Column::new("result", SqlType::NVarChar(None)).not_null(),
    ])]
}

fn int_of(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The checks SQL Server makes on the inserted values, in column order.
fn ledger_values(conn: u64, rpc: &Rpc) -> Result<LedgerRow, ServerMessage> {
    let args = rpc.args();
    let cols = ["fleet", "job_id", "attempt", "token", "result"];
    let mut vals = Vec::new();
    for (i, col) in cols.iter().enumerate() {
        let v = args.get(i).map(|p| p.value.clone()).unwrap_or(Value::Null);
        if v.is_null() {
            return Err(ServerMessage::new(
                515,
                16,
                format!(
                    "Cannot insert the value NULL into column '{col}', table \
                     'jobs.dbo.baton_ledger'; column does not allow nulls. INSERT fails."
                ),
            )
            .state(2));
        }
        vals.push(v);
    }
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => format!("{other:?}"),
    };
    let fleet = text(&vals[0]);
    if fleet.encode_utf16().count() > 64 {
        let shown: String = fleet.chars().take(64).collect();
        return Err(ServerMessage::new(
            2628,
            16,
            format!(
                "String or binary data would be truncated in table 'jobs.dbo.baton_ledger', \
                 column 'fleet'. Truncated value: '{shown}'."
            ),
        ));
    }
    let number = |v: &Value, ty: &str| {
        int_of(v).ok_or_else(|| {
            ServerMessage::new(
                8114,
                16,
                format!("Error converting data type nvarchar to {ty}."),
            )
        })
    };
    let job_id = number(&vals[1], "bigint")?;
    let attempt = i32::try_from(number(&vals[2], "int")?).map_err(|_| {
        ServerMessage::new(
            8115,
            16,
            "Arithmetic overflow error converting expression to data type int.",
        )
    })?;
    let token = number(&vals[3], "bigint")?;
    Ok(LedgerRow {
        fleet,
        job_id,
        attempt,
        token,
        committed_at: Utc::now().naive_utc().trunc_subsecs(3),
        result: text(&vals[4]),
        conn,
    })
}

fn ledger_insert(model: &Arc<Model>, conn: u64, rpc: &Rpc) -> Builtin {
    if !model.ledger_exists() {
        return Builtin::Reply(rpc_error(missing_table(), false, cur_cmd::INSERT));
    }
    let row = match ledger_values(conn, rpc) {
        Ok(r) => r,
        Err(e) => return Builtin::Reply(rpc_error(e, true, cur_cmd::INSERT)),
    };
    blocking(model, move |m| match m.ledger_insert(conn, row.clone()) {
        Ok(()) => Some(rpc_reply(vec![], Done::new().count(1).cmd(cur_cmd::INSERT))),
        Err(LedgerError::Blocked) => None,
        Err(LedgerError::Missing) => Some(rpc_error(missing_table(), false, cur_cmd::INSERT)),
        Err(LedgerError::Duplicate) => {
            let msg = ServerMessage::new(
                2627,
                14,
                format!(
                    "Violation of PRIMARY KEY constraint 'pk_baton_ledger'. Cannot insert \
                     duplicate key in object 'dbo.baton_ledger'. The duplicate key value is \
                     ({}, {}).",
                    row.fleet, row.job_id
                ),
            );
            Some(rpc_error(msg, true, cur_cmd::INSERT))
        }
    })
}
