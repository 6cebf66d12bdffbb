//! `sp_getapplock` and `sp_releaseapplock` as SQL Server 2022 runs them:
//! arguments bound and checked like any procedure's, then validated by the
//! procedure body (messages 15625/15626 with return status -999, errors
//! 1223/1224/1227/1202/3918 from `sys.xp_userlock`), and the lock itself
//! granted, waited for (up to `@LockTimeout` ms, -1 forever, 0 not at all)
//! or refused with -1.

use std::sync::Arc;
use std::time::Duration;

use super::builtin::Builtin;
use super::model::{LockMode, Model};
use super::procs::{Procedure, check_procedure};
use super::record::{Rpc, normalize_name};
use super::script::Reply;
use super::tokens::{Done, ServerMessage, Token};
use super::types::{SqlType, Value};

/// The application lock procedures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SysProc {
    GetAppLock,
    ReleaseAppLock,
}

impl SysProc {
    fn name(self) -> &'static str {
        match self {
            SysProc::GetAppLock => "sp_getapplock",
            SysProc::ReleaseAppLock => "sp_releaseapplock",
        }
    }
}

/// The system procedure an RPC names (`sp_getapplock`, `sys.sp_getapplock`,
/// `master.sys.sp_getapplock`, … bracket quoting and case ignored).
pub(crate) fn sys_proc(rpc: &Rpc) -> Option<SysProc> {
    let n = normalize_name(rpc.name()?);
    let (prefix, last) = n.rsplit_once('.').unwrap_or(("", &n));
    if !matches!(
        prefix,
        "" | "sys" | "dbo" | "master.sys" | "master.dbo" | "master."
    ) {
        return None;
    }
    match last {
        "sp_getapplock" => Some(SysProc::GetAppLock),
        "sp_releaseapplock" => Some(SysProc::ReleaseAppLock),
        _ => None,
    }
}

/// The procedure's declared parameters (SQL Server's signature).
fn declaration(sys: SysProc, called: &str) -> Procedure {
    let p = Procedure::new(called);
    match sys {
        SysProc::GetAppLock => p
            .optional("@Resource", SqlType::NVarChar(Some(255)))
            .param("@LockMode", SqlType::NVarChar(Some(32)))
            .optional("@LockOwner", SqlType::NVarChar(Some(32)))
            .optional("@LockTimeout", SqlType::Int)
            .optional("@DbPrincipal", SqlType::NVarChar(Some(128))),
        SysProc::ReleaseAppLock => p
            .optional("@Resource", SqlType::NVarChar(Some(255)))
            .optional("@LockOwner", SqlType::NVarChar(Some(32)))
            .optional("@DbPrincipal", SqlType::NVarChar(Some(128))),
    }
}

/// Binding checks (201, 8144, 8145, 8114, …) before the body runs.
pub(crate) fn check(sys: SysProc, rpc: &Rpc) -> Option<ServerMessage> {
    let decl = declaration(sys, rpc.name().unwrap_or(sys.name()));
    check_procedure(&[decl], rpc)
}

/// The argument for parameter `name` (position `idx`): `None` when left
/// out, `Some(Value::Null)` for NULL.
fn arg(sys: SysProc, rpc: &Rpc, name: &str) -> Option<Value> {
    if let Some(p) = rpc.param(name) {
        return Some(p.value.clone());
    }
    let decl = declaration(sys, sys.name());
    let idx = decl
        .params
        .iter()
        .position(|p| p.name.eq_ignore_ascii_case(name))?;
    rpc.params
        .get(idx)
        .filter(|p| p.name.is_empty())
        .map(|p| p.value.clone())
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        other => Some(format!("{other:?}")),
    }
}

/// A message of the procedure body (severity 10: sent as INFO).
fn body_message(sys: SysProc, number: i32, line: i32, message: String) -> Token {
    Token::Info(
        ServerMessage::new(number, 0, message)
            .procedure(sys.name())
            .line(line),
    )
}

/// An error raised by `sys.xp_userlock`.
fn xp_error(number: i32, state: u8, message: String) -> ServerMessage {
    ServerMessage::new(number, 16, message)
        .state(state)
        .procedure("sys.xp_userlock")
        .line(1)
}

fn finish(status: i32) -> Reply {
    Reply::tokens(vec![
        Token::DoneInProc(Done::new().more()),
        Token::ReturnStatus(status),
        Token::DoneProc(Done::new()),
    ])
}

fn refuse(info: Token) -> Reply {
    Reply::tokens(vec![
        info,
        Token::DoneInProc(Done::new().more()),
        Token::ReturnStatus(-999),
        Token::DoneProc(Done::new()),
    ])
}

fn owner_kind(v: Option<Value>) -> Result<bool, Option<String>> {
    let t = match v {
        None => Some("Transaction".to_string()),
        Some(v) => text(&v),
    };
    match t.as_deref().map(|s| s.trim_end_matches(' ').to_lowercase()) {
        Some(s) if s == "transaction" => Ok(true),
        Some(s) if s == "session" => Ok(false),
        _ => Err(t),
    }
}

fn not_recognized(sys: SysProc, value: Option<String>, param: &str, line: i32) -> Token {
    body_message(
        sys,
        15625,
        line,
        format!(
            "Option '{}' not recognized for '{param}' parameter.",
            value.as_deref().unwrap_or("(null)")
        ),
    )
}

/// Resource and principal as `xp_userlock` validates them.
fn target(sys: SysProc, rpc: &Rpc) -> Result<(String, String), ServerMessage> {
    let resource = match arg(sys, rpc, "@Resource").as_ref().and_then(text) {
        None => {
            return Err(xp_error(
                1224,
                5,
                "An invalid application lock resource was passed to xp_userlock.".into(),
            ));
        }
        // nvarchar(255): longer values are truncated.
        Some(r) => r.chars().take(255).collect::<String>(),
    };
    let principal = match arg(sys, rpc, "@DbPrincipal") {
        None => "public".to_string(),
        Some(v) => match text(&v) {
            None => {
                return Err(xp_error(
                    1230,
                    1,
                    "An invalid database principal was passed to xp_userlock.".into(),
                ));
            }
            Some(p) => p,
        },
    };
    if !["public", "dbo"].contains(&principal.to_lowercase().as_str()) {
        return Err(xp_error(
            1202,
            1,
            format!("The database-principal '{principal}' does not exist or user is not a member."),
        ));
    }
    Ok((resource, principal))
}

/// Run the procedure for connection `conn`.
pub(crate) fn run(model: &Arc<Model>, conn: u64, sys: SysProc, rpc: &Rpc) -> Builtin {
    match sys {
        SysProc::GetAppLock => get(model, conn, rpc),
        SysProc::ReleaseAppLock => Builtin::Reply(release(model, conn, rpc)),
    }
}

fn get(model: &Arc<Model>, conn: u64, rpc: &Rpc) -> Builtin {
    let sys = SysProc::GetAppLock;
    let mode_text = arg(sys, rpc, "@LockMode").as_ref().and_then(text);
    let Some(mode) = mode_text.as_deref().and_then(LockMode::parse) else {
        return Builtin::Reply(refuse(not_recognized(sys, mode_text, "@LockMode", 26)));
    };
    let transaction = match owner_kind(arg(sys, rpc, "@LockOwner")) {
        Ok(t) => t,
        Err(t) => {
            return Builtin::Reply(refuse(not_recognized(sys, t, "@LockOwner", 39)));
        }
    };
    let timeout = match arg(sys, rpc, "@LockTimeout") {
        Some(Value::Int(t)) => t,
        Some(Value::String(s)) => s.trim().parse().unwrap_or(-1),
        _ => -1,
    };
    let txn = model.txn(conn);
    if transaction && txn.is_none() {
        return Builtin::Reply(refuse(body_message(
            sys,
            15626,
            52,
            "You attempted to acquire a transactional application lock without an active \
             transaction."
                .into(),
        )));
    }
    if timeout < -1 {
        return Builtin::Reply(Reply::proc_error(
            xp_error(
                1227,
                2,
                "An invalid application lock time-out was passed to xp_userlock.".into(),
            ),
            -999,
        ));
    }
    let resource = match target(sys, rpc) {
        Ok((r, _)) => r,
        Err(e) => return Builtin::Reply(Reply::proc_error(e, -999)),
    };
    let owner_txn = if transaction { txn } else { None };
    let timeout = u64::try_from(timeout).ok().map(Duration::from_millis);
    let model = model.clone();
    Builtin::Wait(Box::pin(async move {
        let status = model
            .acquire(conn, owner_txn, &resource, mode, timeout)
            .await;
        finish(status)
    }))
}

fn release(model: &Arc<Model>, conn: u64, rpc: &Rpc) -> Reply {
    let sys = SysProc::ReleaseAppLock;
    let transaction = match owner_kind(arg(sys, rpc, "@LockOwner")) {
        Ok(t) => t,
        Err(t) => return refuse(not_recognized(sys, t, "@LockOwner", 20)),
    };
    let (resource, principal) = match target(sys, rpc) {
        Ok(t) => t,
        Err(e) => return Reply::proc_error(e, -999),
    };
    let txn = model.txn(conn);
    if transaction && txn.is_none() {
        return Reply::proc_error(
            xp_error(
                3918,
                1,
                "The statement or function must be executed in the context of a user \
                 transaction."
                    .into(),
            ),
            -999,
        );
    }
    let owner_txn = if transaction { txn } else { None };
    if !model.unlock(conn, owner_txn, &resource) {
        return Reply::proc_error(
            xp_error(
                1223,
                1,
                format!(
                    "Cannot release the application lock (Database Principal: '{principal}', \
                     Resource: '{resource}') because it is not currently held."
                ),
            ),
            -999,
        );
    }
    finish(0)
}
