//! SQL Server jobs through the whole stack: the real controller and agent
//! binaries, an agent connection `main` (`kind = "mssql"`) to the TDS test
//! server, jobs submitted over the API, and both ends asserted: what SQL
//! Server received (names, parameter types and values, ATTENTIONs, locks,
//! transactions, backups) and what the job recorded.
//!
//! The wire contract the agent follows and the server models is written in
//! the TDS server's docs (`baton_tests::tds`). The same scenarios against a
//! real SQL Server: `tests/tests/mssql_real.rs`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use baton_proto::{AttemptOutcome, JobState, JobView};
use baton_tests::cluster::Cluster;
use baton_tests::mssql::{
    self, PASSWORD, PLAIN, USER, applock_resource, calls, data, files, is_call, procedure_job, with,
};
use baton_tests::tds::*;
use serde_json::{Value as Json, json};

const WAIT: Duration = Duration::from_secs(60);

/// A TDS server, a cluster whose agents have connection `main` to it, and
/// the temp dir with the password file (and backups).
struct Fx {
    c: Cluster,
    server: TdsServer,
    dir: tempfile::TempDir,
}

impl Fx {
    fn backups(&self) -> PathBuf {
        self.dir.path().join("backups")
    }
}

/// The script every test starts from: the agents' SQL login.
fn script() -> Script {
    Script::new().login(USER, PASSWORD)
}

/// `n` agents with `main` on a plain (unencrypted) TDS server.
async fn fixture(n: usize, script: Script) -> Fx {
    baton_tests::init_crypto();
    let server = TdsServer::start(script).await.expect("tds server");
    fixture_on(n, server, PLAIN).await
}

/// `n` agents with `main` on `server`, `extras` added to the connection.
async fn fixture_on(n: usize, server: TdsServer, extras: &str) -> Fx {
    baton_tests::init_crypto();
    let dir = tempfile::Builder::new()
        .prefix("baton-mssql-e2e-")
        .tempdir()
        .expect("tmp");
    let pw = dir.path().join("main.password");
    mssql::write_password_file(&pw, PASSWORD).expect("password file");
    let backups = dir.path().join("backups");
    std::fs::create_dir_all(&backups).expect("backups dir");
    let extras = format!(
        "{extras}backup_dir = {}\n",
        mssql::toml_str(&backups.display().to_string())
    );
    let conn = mssql::tds_connection_toml("main", &server, &pw, &extras);
    let c = mssql::cluster(n, &conn).await.expect("cluster");
    Fx { c, server, dir }
}

async fn submit_and_wait(fx: &Fx, job: Json) -> JobView {
    mssql::run_job(&fx.c, job, WAIT).await
}

fn arg<'a>(rpc: &'a Rpc, name: &str) -> &'a Param {
    rpc.param(name)
        .unwrap_or_else(|| panic!("no {name} in {rpc:#?}"))
}

fn resource(rpc: &Rpc) -> String {
    applock_resource(rpc).unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn procedure_in_out_params_and_return_status_reach_sql_server_and_the_job() {
    let fx = fixture(
        1,
        script()
            .procedure(
                Procedure::new("dbo.usp_transfer")
                    .param("@account", SqlType::Int)
                    .param("@amount", SqlType::decimal(10, 2))
                    .param("@note", SqlType::NVarChar(Some(100)))
                    .output("@new_balance", SqlType::Int)
                    .output("@counter", SqlType::BigInt),
            )
            .on(
                Match::proc("dbo.usp_transfer"),
                Reply::tokens(vec![
                    Token::columns(vec![
                        Column::new("entry_id", SqlType::BigInt),
                        Column::new("memo", SqlType::NVarChar(Some(50))),
                    ]),
                    Token::Row(vec![Value::Int(9001), Value::from("rent for März")]),
                    Token::DoneInProc(Done::new().more().count(1)),
                    Token::ReturnStatus(7),
                    Token::return_value("@new_balance", SqlType::Int, 30i32),
                    Token::return_value("@counter", SqlType::BigInt, 50i64),
                    Token::DoneProc(Done::new()),
                ]),
            ),
    )
    .await;
    let done = submit_and_wait(&fx, mssql::transfer_job("main")).await;
    mssql::assert_succeeded(&fx.c, &done);

    // What SQL Server received: the bracket-quoted name, every parameter
    // named, typed and valued as the job said, OUT ones flagged by-ref.
    let got = calls(&fx.server, "dbo.usp_transfer");
    assert_eq!(got.len(), 1, "{:#?}", fx.server.log());
    let (conn, rpc) = &got[0];
    assert_eq!(rpc.name(), Some("[dbo].[usp_transfer]"));
    let names: Vec<&str> = rpc.params.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        ["@account", "@amount", "@note", "@new_balance", "@counter"]
    );
    let account = arg(rpc, "@account");
    assert_eq!(
        (account.ty, &account.value, account.output),
        (SqlType::Int, &Value::Int(42), false)
    );
    let amount = arg(rpc, "@amount");
    assert!(
        matches!(
            amount.ty,
            SqlType::Decimal { scale: 2, .. } | SqlType::Numeric { scale: 2, .. }
        ),
        "{amount:?}"
    );
    assert_eq!(amount.value, Value::decimal(1250, 2));
    let note = arg(rpc, "@note");
    assert!(matches!(note.ty, SqlType::NVarChar(_)), "{note:?}");
    assert_eq!(note.value, Value::from("rent for März"));
    let balance = arg(rpc, "@new_balance");
    assert!(balance.output && balance.value.is_null(), "{balance:?}");
    assert_eq!(balance.ty, SqlType::Int, "a typed NULL: sql_type int");
    let counter = arg(rpc, "@counter");
    assert_eq!(
        (counter.ty, &counter.value, counter.output),
        (SqlType::BigInt, &Value::Int(5), true)
    );

    // The session around it: @@SPID, the job's applock, released after.
    let session: Vec<Request> = fx
        .server
        .log()
        .into_iter()
        .filter(|e| e.conn == *conn)
        .map(|e| e.request)
        .collect();
    let pos = |f: &dyn Fn(&Request) -> bool| session.iter().position(f);
    let spid = pos(&|r| r.sql().is_some_and(|s| s.contains("@@SPID")));
    let get = pos(&|r| {
        r.as_rpc()
            .and_then(Rpc::name)
            .is_some_and(|n| normalize_name(n).ends_with("sp_getapplock"))
    });
    let work = pos(&|r| r.as_rpc().is_some_and(|x| x.name() == rpc.name()));
    let release = pos(&|r| {
        r.as_rpc()
            .and_then(Rpc::name)
            .is_some_and(|n| normalize_name(n).ends_with("sp_releaseapplock"))
    });
    assert!(
        spid < get && get < work && work < release && spid.is_some(),
        "{session:#?}"
    );
    let Some(Request::Rpc(lock)) = get.map(|i| &session[i]) else {
        panic!("no sp_getapplock");
    };
    let res = resource(lock);
    assert!(
        res.starts_with("baton:") && res.ends_with(&format!(":job:{}", done.id)),
        "{res}"
    );
    assert_eq!(
        arg(lock, "@LockOwner").value,
        Value::from("Session"),
        "{lock:#?}"
    );

    // What the job recorded.
    let d = data(&done);
    assert_eq!(d["return_status"], 7, "{d:#}");
    assert_eq!(d["out"]["new_balance"], 30, "{d:#}");
    assert_eq!(d["out"]["counter"], 50, "{d:#}");
    assert_eq!(d["result_sets"][0]["columns"], json!(["entry_id", "memo"]));
    assert_eq!(
        d["result_sets"][0]["rows"],
        json!([[9001, "rent for März"]])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_raised_by_the_procedure_keeps_its_fields_and_is_not_retried() {
    let raised = ServerMessage::new(50000, 16, "order 7 is locked by an audit")
        .state(3)
        .procedure("usp_close_order")
        .line(12);
    let fx = fixture(
        1,
        script()
            .procedure(Procedure::new("dbo.usp_close_order").param("@order_id", SqlType::Int))
            .on(
                Match::proc("dbo.usp_close_order"),
                Reply::proc_error(raised, -6),
            ),
    )
    .await;
    let done = submit_and_wait(
        &fx,
        procedure_job(
            "main",
            "dbo.usp_close_order",
            json!([{"name": "order_id", "value": {"type": "int", "value": 7}, "sql_type": "int"}]),
        ),
    )
    .await;
    assert_eq!(done.state, JobState::Failed, "{done:#?}\n{}", fx.c.logs());
    assert_eq!(done.attempts.len(), 1, "50000 is not retryable: {done:#?}");
    assert_eq!(done.attempts[0].outcome, Some(AttemptOutcome::Failed));
    let err = done.error.clone().unwrap_or_default();
    assert!(
        err.contains("50000") && err.contains("order 7 is locked by an audit"),
        "{err}"
    );
    let e = &data(&done)["error"];
    assert_eq!(
        (
            &e["number"],
            &e["class"],
            &e["state"],
            &e["procedure"],
            &e["line"]
        ),
        (
            &json!(50000),
            &json!(16),
            &json!(3),
            &json!("usp_close_order"),
            &json!(12)
        ),
        "{:#}",
        data(&done)
    );
    assert_eq!(e["message"], "order 7 is locked by an audit");
    assert_eq!(calls(&fx.server, "dbo.usp_close_order").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadlock_victim_is_retried_and_the_second_attempt_succeeds() {
    let deadlock = ServerMessage::new(
        1205,
        13,
        "Transaction (Process ID 52) was deadlocked on lock resources with another process \
         and has been chosen as the deadlock victim. Rerun the transaction.",
    )
    .state(51)
    .procedure("usp_post")
    .line(9);
    let fx = fixture(
        1,
        script()
            .procedure(Procedure::new("dbo.usp_post"))
            .on_times(
                1,
                Match::proc("dbo.usp_post"),
                Reply::tokens(vec![
                    Token::Error(deadlock),
                    Token::DoneProc(Done::new().error()),
                ]),
            )
            .on(Match::proc("dbo.usp_post"), Reply::proc_return(0)),
    )
    .await;
    let done = submit_and_wait(&fx, procedure_job("main", "dbo.usp_post", json!([]))).await;
    mssql::assert_succeeded(&fx.c, &done);
    assert_eq!(done.attempts.len(), 2, "{done:#?}");
    assert_eq!(done.attempts[0].outcome, Some(AttemptOutcome::Failed));
    assert!(
        done.attempts[0]
            .error
            .clone()
            .unwrap_or_default()
            .contains("1205"),
        "{:#?}",
        done.attempts[0]
    );
    assert_eq!(done.attempts[1].outcome, Some(AttemptOutcome::Succeeded));
    assert_eq!(calls(&fx.server, "dbo.usp_post").len(), 2);
    assert_eq!(data(&done)["return_status"], 0, "{:#}", data(&done));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_mid_procedure_sends_an_attention_and_the_job_records_it() {
    let fx = fixture(
        1,
        script()
            .procedure(Procedure::new("dbo.usp_rebuild"))
            .on(Match::proc("dbo.usp_rebuild"), Reply::hang()),
    )
    .await;
    let job =
        fx.c.api
            .submit(with(
                procedure_job("main", "dbo.usp_rebuild", json!([])),
                json!({"lease_ttl_ms": 5000}),
            ))
            .await
            .expect("submit");
    let log = fx
        .server
        .wait_for(WAIT, |log| {
            log.iter().any(|e| is_call(e, "dbo.usp_rebuild"))
        })
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", fx.c.logs()));
    let conn = log
        .iter()
        .find(|e| is_call(e, "dbo.usp_rebuild"))
        .map(|e| e.conn)
        .unwrap_or_default();
    fx.c.api.cancel(job.id).await.expect("cancel");
    let done =
        fx.c.api
            .wait_terminal(job.id, WAIT)
            .await
            .expect("terminal");
    assert_eq!(
        done.state,
        JobState::Cancelled,
        "{done:#?}\n{}",
        fx.c.logs()
    );
    assert_eq!(done.attempts[0].outcome, Some(AttemptOutcome::Cancelled));
    let err = done.attempts[0].error.clone().unwrap_or_default();
    assert!(
        err.contains("attention sent") && err.contains(", acknowledged"),
        "the server acknowledged the ATTENTION: {err}"
    );
    let cancel = &data(&done)["cancel"];
    assert_eq!(
        (&cancel["attention_sent"], &cancel["acknowledged"]),
        (&json!(true), &json!(true)),
        "{done:#?}"
    );

    // The server got the ATTENTION on the procedure's session, after the
    // call, and then the agent dropped that connection.
    let log = fx
        .server
        .wait_for(WAIT, |log| {
            log.iter()
                .any(|e| e.conn == conn && e.request == Request::Disconnect)
        })
        .await
        .expect("the agent drops the cancelled session");
    let session: Vec<&Request> = log
        .iter()
        .filter(|e| e.conn == conn)
        .map(|e| &e.request)
        .collect();
    let call = session
        .iter()
        .position(|r| r.as_rpc().and_then(Rpc::name) == Some("[dbo].[usp_rebuild]"));
    let attention = session.iter().position(|r| **r == Request::Attention);
    assert!(
        call.is_some() && attention > call,
        "ATTENTION after the call: {session:#?}"
    );
    assert!(
        fx.server.effects("dbo.usp_rebuild").is_empty(),
        "a cancelled call has no effect"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_holder_the_takeover_waits_for_the_lingering_session_and_the_work_happens_once()
 {
    // The first call runs for 6 s on the server; later calls return at once.
    let mut fx = fixture(
        2,
        script()
            .procedure(Procedure::new("dbo.usp_settle").param("@batch", SqlType::BigInt))
            .on_times(
                1,
                Match::proc("dbo.usp_settle"),
                Reply::proc_return(0).delay(Duration::from_secs(6)),
            ),
    )
    .await;
    let job = fx
        .c
        .api
        .submit(with(
            procedure_job(
                "main",
                "dbo.usp_settle",
                json!([{"name": "batch", "value": {"type": "int", "value": 77}, "sql_type": "bigint"}]),
            ),
            json!({"lease_ttl_ms": 2000, "exactly_once": true}),
        ))
        .await
        .expect("submit");
    let (_, holder) = fx.c.api.wait_running(job.id, WAIT).await.expect("running");
    let log = fx
        .server
        .wait_for(WAIT, |log| log.iter().any(|e| is_call(e, "dbo.usp_settle")))
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", fx.c.logs()));
    let zombie = log
        .iter()
        .find(|e| is_call(e, "dbo.usp_settle"))
        .map(|e| e.conn)
        .unwrap_or_default();
    fx.c.agent(&holder).proc().kill9();

    let mut saw_wait = false;
    let done = mssql::watch_until_terminal(&fx.c, job.id, WAIT, |j| {
        saw_wait |= mssql::takeover_waited_for_lock(j);
    })
    .await;
    mssql::assert_succeeded(&fx.c, &done);
    assert_eq!(done.attempts.len(), 2, "{done:#?}");
    assert_eq!(done.attempts[0].outcome, Some(AttemptOutcome::LeaseExpired));
    assert_ne!(done.attempts[1].agent_id, holder);

    // The killed agent's session lingered: it ended (rolled back, lock
    // released) only after its request ran to its end.
    let log = fx.server.log();
    let ended = log.iter().position(|e| {
        e.conn == zombie
            && matches!(
                &e.request,
                Request::SessionEnded {
                    rolled_back: true,
                    ..
                }
            )
    });
    assert!(
        ended.is_some(),
        "the zombie session ended rolled back: {log:#?}"
    );

    // The takeover's sp_getapplock waited for it: no two holds of the job's
    // lock overlap, the zombie's ended with its session, the new one was
    // granted after that, and the new holder asked more than once (each
    // request times out after a second) or reported the wait.
    let lock = |r: &Rpc| {
        r.name()
            .is_some_and(|n| normalize_name(n).ends_with("sp_getapplock"))
            && resource(r).ends_with(&format!(":job:{}", job.id))
    };
    let holds: Vec<LockGrant> = fx
        .server
        .applocks()
        .into_iter()
        .filter(|g| g.resource.ends_with(&format!(":job:{}", job.id)))
        .collect();
    assert_eq!(holds.len(), 2, "{holds:#?}");
    assert!(!holds[0].overlaps(&holds[1]), "{holds:#?}");
    assert_eq!(holds[0].conn, zombie);
    assert_eq!(holds[0].released_by, Some(LockRelease::SessionEnd));
    assert_ne!(holds[1].conn, zombie);
    assert!(
        holds[0]
            .released_at
            .is_some_and(|r| holds[1].granted_at >= r),
        "{holds:#?}"
    );
    let takeover_requests = log
        .iter()
        .filter(|e| e.conn == holds[1].conn && e.request.as_rpc().is_some_and(lock))
        .count();
    assert!(
        saw_wait || takeover_requests >= 2 || holds[1].waited,
        "the takeover waited for the lock: {takeover_requests} requests, {holds:#?}"
    );

    // The work happened once: the zombie's call rolled back with its
    // session, the takeover's committed with one ledger row.
    let effects = fx.server.effects("dbo.usp_settle");
    let committed: Vec<&Effect> = effects
        .iter()
        .filter(|e| e.state == EffectState::Committed)
        .collect();
    assert_eq!(committed.len(), 1, "{effects:#?}");
    assert_eq!(committed[0].conn, holds[1].conn);
    assert!(
        effects
            .iter()
            .any(|e| e.conn == zombie && e.state == EffectState::RolledBack),
        "{effects:#?}"
    );
    let rows: Vec<LedgerRow> = fx
        .server
        .ledger_rows()
        .into_iter()
        .filter(|r| r.job_id == job.id)
        .collect();
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(i64::from(rows[0].attempt), 2);
    assert_eq!(rows[0].conn, holds[1].conn);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_negotiated_in_prelogin_works_with_the_pinned_ca_and_another_ca_is_refused() {
    baton_tests::init_crypto();
    let certs = tempfile::tempdir().expect("tmp");
    let pki = baton_tests::pki::Pki::generate(certs.path()).expect("pki");
    let server = TdsServer::start_tls(
        script().on(
            Match::batch("SELECT DB_NAME() AS db"),
            Reply::tokens(vec![
                Token::columns(vec![Column::new("db", SqlType::NVarChar(Some(128)))]),
                Token::row(["jobs"]),
                Token::done_rows(1),
            ]),
        ),
        &pki.server_cert,
        &pki.server_key,
    )
    .await
    .expect("tls server");
    let dir = tempfile::tempdir().expect("tmp");
    let pw = dir.path().join("pw");
    mssql::write_password_file(&pw, PASSWORD).expect("password file");
    let ca = |p: &Path| format!("ca_file = {}\n", mssql::toml_str(&p.display().to_string()));
    // `main`: encryption required, the test CA pinned; `wrong`: the default
    // mode (required) with a CA that did not sign the server's certificate.
    let conns = format!(
        "{}\n{}",
        mssql::tds_connection_toml(
            "main",
            &server,
            &pw,
            &format!("encrypt = \"required\"\n{}", ca(&pki.ca))
        ),
        mssql::tds_connection_toml("wrong", &server, &pw, &ca(&pki.other_ca)),
    );
    let c = mssql::cluster(1, &conns).await.expect("cluster");

    let j = c
        .api
        .submit(mssql::sql_job("main", "SELECT DB_NAME() AS db"))
        .await
        .expect("submit");
    let done = c.api.wait_terminal(j.id, WAIT).await.expect("terminal");
    mssql::assert_succeeded(&c, &done);
    assert_eq!(
        data(&done)["result_sets"][0]["rows"],
        json!([["jobs"]]),
        "{:#}",
        data(&done)
    );
    assert!(
        server
            .logins()
            .iter()
            .any(|l| l.accepted && l.user == USER && l.password == PASSWORD),
        "the login travelled inside TLS: {:#?}",
        server.logins()
    );

    let before = server.logins().len();
    let j = c
        .api
        .submit(with(
            mssql::sql_job("wrong", "SELECT DB_NAME() AS db"),
            json!({"retry": {"max_attempts": 5}}),
        ))
        .await
        .expect("submit");
    let done = c.api.wait_terminal(j.id, WAIT).await.expect("terminal");
    assert_eq!(done.state, JobState::Failed, "{done:#?}\n{}", c.logs());
    assert_eq!(
        done.attempts.len(),
        1,
        "a certificate failure is not retried: {done:#?}"
    );
    let err = done.error.clone().unwrap_or_default().to_lowercase();
    assert!(err.contains("tls") || err.contains("certificate"), "{err}");
    assert_eq!(
        server.logins().len(),
        before,
        "no login was sent to a server that failed verification"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_reports_progress_to_100_is_verified_and_lands_with_its_manifest() {
    let backups = BackupModel::new()
        .database("shop")
        .progress(Duration::from_secs(4), 4)
        .verify_time(Duration::from_secs(2))
        .size(256 * 1024);
    let fx = fixture(1, backups.install(script())).await;
    // A 3 s lease: heartbeats (which carry the progress) every second.
    let job =
        fx.c.api
            .submit(with(
                mssql::dump_job("main", "shop"),
                json!({"lease_ttl_ms": 3000}),
            ))
            .await
            .expect("submit");
    let mut seen: Vec<(f32, String)> = Vec::new();
    let done = mssql::watch_until_terminal(&fx.c, job.id, WAIT, |j| {
        if let Some(p) = j.attempts.last().and_then(|a| a.progress.clone())
            && let Some(pct) = p.percent
            && seen
                .last()
                .is_none_or(|(q, m)| *q != pct || *m != p.message)
        {
            seen.push((pct, p.message));
        }
    })
    .await;
    mssql::assert_succeeded(&fx.c, &done);

    // Progress through the API: from the DMV while it ran, 100 % at the end.
    assert!(
        seen.windows(2).all(|w| w[0].0 <= w[1].0),
        "progress never goes back: {seen:?}"
    );
    assert!(
        seen.iter()
            .any(|(p, m)| *p > 0.0 && *p < 100.0 && m.contains("shop")),
        "progress while the backup ran: {seen:?}"
    );
    assert!(
        seen.iter().any(|(p, _)| *p == 100.0),
        "progress reached 100 %: {seen:?}"
    );

    // What SQL Server ran: one COPY_ONLY backup WITH CHECKSUM of `shop` to a
    // `.bak.partial` path the agent built, polled from a second session,
    // then RESTORE VERIFYONLY of that file.
    let calls = backups.calls();
    assert_eq!(calls.len(), 1, "{calls:#?}");
    let call = &calls[0];
    assert_eq!(call.database, "shop");
    assert_eq!(call.outcome, BackupOutcome::Succeeded);
    for opt in ["CHECKSUM", "COPY_ONLY", "INIT", "STATS"] {
        assert!(call.has_option(opt), "{opt}: {:?}", call.options);
    }
    assert!(!call.has_option("COMPRESSION"), "{:?}", call.options);
    let target = fx.backups().join("main").join("shop");
    let partial = PathBuf::from(&call.path);
    assert_eq!(partial.parent(), Some(target.as_path()), "{}", call.path);
    assert!(call.path.ends_with(".bak.partial"), "{}", call.path);
    assert_eq!(
        call.info_numbers().last(),
        Some(&3014),
        "{:?}",
        call.messages
    );
    let all_polls = backups.polls();
    let polls: Vec<&PollCall> = all_polls
        .iter()
        .filter(|p| p.session_id == i64::from(call.spid) && p.percent.is_some())
        .collect();
    assert!(!polls.is_empty(), "{all_polls:#?}");
    assert!(polls.iter().all(|p| p.conn != call.conn), "{polls:#?}");
    assert!(
        polls.windows(2).all(|w| w[0].percent <= w[1].percent),
        "{polls:#?}"
    );
    let verifies = backups.verifies();
    assert_eq!(verifies.len(), 1, "{verifies:#?}");
    assert_eq!(verifies[0].path, call.path);
    assert_eq!(verifies[0].outcome, BackupOutcome::Succeeded);
    assert!(
        call.finished.is_some_and(|f| verifies[0].started >= f),
        "verify after the backup: {call:#?} {verifies:#?}"
    );

    // The files: the renamed backup and its manifest, no partial.
    let bak_name = partial
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".partial"))
        .expect("name")
        .to_owned();
    let stem = bak_name.strip_suffix(".bak").expect("stem");
    let manifest_name = format!("{stem}.manifest.json");
    assert_eq!(
        files(&target),
        {
            let mut v = vec![bak_name.clone(), manifest_name.clone()];
            v.sort();
            v
        },
        "only the backup and its manifest"
    );
    let bak = target.join(&bak_name);
    let sha = mssql::sha256_hex(&bak).expect("sha256");
    assert_eq!(
        Some(&sha),
        call.sha256.as_ref(),
        "the file SQL Server wrote"
    );
    let manifest: Json =
        serde_json::from_slice(&std::fs::read(target.join(&manifest_name)).expect("manifest"))
            .expect("manifest json");
    assert_eq!(manifest["database"], "shop", "{manifest:#}");
    assert_eq!(manifest["sha256"], sha.as_str(), "{manifest:#}");
    assert_eq!(manifest["size_bytes"], 256 * 1024, "{manifest:#}");
    assert_eq!(manifest["verify"]["ok"], true, "{manifest:#}");
    assert_eq!(
        (&manifest["copy_only"], &manifest["checksum"]),
        (&json!(true), &json!(true))
    );
    assert_eq!(data(&done)["sha256"], sha.as_str(), "{:#}", data(&done));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_sql_server_cannot_write_fails_with_its_message_and_leaves_no_file() {
    let backups = BackupModel::new()
        .database("shop")
        .fail(BackupFailure::AccessDenied);
    let fx = fixture(1, backups.install(script())).await;
    let done = submit_and_wait(&fx, mssql::dump_job("main", "shop")).await;
    assert_eq!(done.state, JobState::Failed, "{done:#?}\n{}", fx.c.logs());
    assert_eq!(done.attempts.len(), 1, "3201 is not retryable: {done:#?}");
    let err = done.error.clone().unwrap_or_default();
    assert!(
        err.contains("3201") && err.contains("Cannot open backup device"),
        "SQL Server's message: {err}"
    );
    let calls = backups.calls();
    assert_eq!(calls.len(), 1, "{calls:#?}");
    assert!(
        matches!(
            &calls[0].outcome,
            BackupOutcome::Failed { number: 3201, .. }
        ),
        "{calls:#?}"
    );
    assert!(backups.verifies().is_empty(), "nothing to verify");
    let target = fx.backups().join("main").join("shop");
    assert!(
        files(&target).is_empty(),
        "no .bak or .partial: {:?}",
        files(&target)
    );
}
