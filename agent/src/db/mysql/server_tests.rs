//! The executors against a real MariaDB/MySQL server.
//!
//! Needs `BATON_TEST_MYSQL_SOCKET`: the path of a server's Unix socket where
//! `root` logs in without a password (`scripts/mariadb start DIR` prints it).
//! Without it these tests skip with the reason (`db::test_server`; they fail
//! instead under `scripts/test`, which sets `BATON_TEST_REQUIRE_MYSQL=1`). Each test works in a database of
//! its own (random name), dropped at the end, and uses random job ids, since
//! `GET_LOCK` names are server-wide.

use std::sync::Arc;
use std::time::{Duration, Instant};

use baton_proto::{
    Completion, JobSpec, ParamMode, ParamValue, ProcedureParam, ProcedureSpec, SqlSpec,
};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder};
use serde_json::{Value as Json, json};

use super::*;
use crate::config::mysql::{DumpSettings, Endpoint, MysqlConnection, PasswordSource};
use crate::executor::{Cancel, CancelReason, ProgressHandle};

const ENV: &str = "BATON_TEST_MYSQL_SOCKET";

fn socket() -> String {
    match std::env::var(ENV) {
        Ok(s) if !s.is_empty() => s,
        _ => panic!(
            "{ENV} is not set: the MySQL executor tests need a MariaDB/MySQL server. Start one \
             with `scripts/mariadb start DIR` and export {ENV}=<its socket> (root must log in \
             over the socket without a password)"
        ),
    }
}

async fn admin(database: Option<&str>) -> Conn {
    let opts = OptsBuilder::default()
        .socket(Some(socket()))
        .user(Some("root"))
        .db_name(database.map(str::to_owned));
    Conn::new(opts)
        .await
        .unwrap_or_else(|e| panic!("cannot log in as root over {ENV}={}: {e}", socket()))
}

/// A database of the test's own, dropped when the test ends (even on panic).
pub(super) struct TestDb {
    name: String,
    admin: Conn,
    dir: tempfile::TempDir,
}

impl TestDb {
    pub(super) async fn new() -> TestDb {
        let name = format!("baton_t_{:016x}", rand::random::<u64>());
        let mut root = admin(None).await;
        root.query_drop(format!("CREATE DATABASE `{name}`"))
            .await
            .expect("create database");
        drop(root);
        TestDb {
            admin: admin(Some(&name)).await,
            name,
            dir: tempfile::tempdir().expect("tmp"),
        }
    }

    pub(super) fn connection(&self, create_ledger: bool) -> MysqlConnection {
        let pw = self.dir.path().join("password");
        std::fs::write(&pw, "").expect("password file");
        MysqlConnection {
            name: "main".into(),
            endpoint: Endpoint::Socket(socket().into()),
            user: "root".into(),
            password: PasswordSource::File(pw),
            database: Some(self.name.clone()),
            pool_size: 2,
            connect_timeout: Duration::from_secs(5),
            tls: None,
            create_ledger,
            dump: DumpSettings::default(),
        }
    }

    fn pools(&self, create_ledger: bool) -> Arc<Pools> {
        Arc::new(Pools::new([self.connection(create_ledger)]))
    }

    pub(super) async fn exec(&mut self, sql: &str) {
        self.admin
            .query_drop(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    async fn count(&mut self, sql: &str) -> i64 {
        self.admin
            .query_first::<i64, _>(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .unwrap_or_default()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                let mut root = admin(None).await;
                let _ = root
                    .query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
                    .await;
                let _ = root.disconnect().await;
            });
        })
        .join();
    }
}

pub(super) fn job_id() -> i64 {
    i64::from(rand::random::<u32>()) + 1
}

pub(super) fn job(job_id: i64, spec: JobSpec) -> Job {
    Job {
        job_id,
        token: 1,
        attempt: 1,
        retry_codes: vec![1213, 1205],
        spec,
        timeout: None,
        cancel: Cancel::new(),
        progress: ProgressHandle::new(4096),
    }
}

fn call(procedure: &str, params: Vec<ProcedureParam>, exactly_once: bool) -> JobSpec {
    JobSpec::Procedure(ProcedureSpec {
        connection: "main".into(),
        procedure: procedure.into(),
        params,
        exactly_once,
        session: Default::default(),
    })
}

fn batch(sql: &str, exactly_once: bool) -> JobSpec {
    JobSpec::Sql(SqlSpec {
        connection: "main".into(),
        sql: sql.into(),
        exactly_once,
        session: Default::default(),
    })
}

fn param(name: &str, mode: ParamMode, value: ParamValue) -> ProcedureParam {
    ProcedureParam {
        name: name.into(),
        mode,
        value: Some(value),
        sql_type: None,
    }
}

fn data(out: &Outcome) -> &Json {
    out.result.data.as_ref().expect("data")
}

/// Wait until `cond` holds (polling), or fail with `what`.
async fn wait_for<F, Fut>(what: &str, within: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = Instant::now() + within;
    while !cond().await {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn procedure_with_in_out_inout_and_two_result_sets() {
    if !crate::db::test_server::available() {
        return;
    }
    let mut db = TestDb::new().await;
    db.exec(
        "CREATE PROCEDURE p(IN a INT, OUT b DECIMAL(10,2), INOUT c VARCHAR(20), IN d DATE, \
         IN e VARBINARY(8)) \
         BEGIN \
           SELECT a AS a, d AS d, e AS e, 'x' AS s; \
           SELECT 1 AS n UNION ALL SELECT 2; \
           SET b = a * 1.5; \
           SET c = CONCAT(c, '!'); \
         END",
    )
    .await;
    let exec = MysqlExecutor::procedure(db.pools(true));
    let out = exec
        .execute(job(
            job_id(),
            call(
                &format!("{}.p", db.name),
                vec![
                    param("a", ParamMode::In, ParamValue::Int(3)),
                    param("b", ParamMode::Out, ParamValue::Decimal("0".into())),
                    param("c", ParamMode::InOut, ParamValue::String("hi".into())),
                    param("d", ParamMode::In, ParamValue::Date("2024-02-29".into())),
                    param("e", ParamMode::In, ParamValue::Bytes("AP8B".into())),
                ],
                false,
            ),
        ))
        .await;
    assert_eq!(out.completion, Completion::Succeeded, "{out:?}");
    let d = data(&out);
    let sets = d["result_sets"].as_array().expect("sets");
    assert_eq!(sets.len(), 2, "{d}");
    assert_eq!(sets[0]["columns"], json!(["a", "d", "e", "s"]));
    assert_eq!(sets[0]["rows"], json!([[3, "2024-02-29", "AP8B", "x"]]));
    assert_eq!(sets[0]["types"][2], "bytes");
    assert_eq!(sets[1]["rows"], json!([[1], [2]]));
    assert_eq!(d["out"], json!({"b": "4.50", "c": "hi!"}));
    assert_eq!(d["truncated"], false);
}

#[tokio::test]
async fn sql_batch_captures_sets_counts_and_warnings() {
    if !crate::db::test_server::available() {
        return;
    }
    let db = TestDb::new().await;
    let exec = MysqlExecutor::sql(db.pools(true)).with_limits(Limits {
        max_rows: 2,
        ..Limits::default()
    });
    let out = exec
        .execute(job(
            job_id(),
            batch(
                "CREATE TABLE t (x INT, d DATETIME(6)); \
                 INSERT INTO t VALUES (1, '2024-01-02 03:04:05.5'), (2, NULL), (3, NULL); \
                 SELECT x, d FROM t ORDER BY x; \
                 UPDATE t SET x = x + 10 WHERE x < 3; \
                 SELECT CAST('12.5x' AS DECIMAL(5,2)) AS w",
                false,
            ),
        ))
        .await;
    assert_eq!(out.completion, Completion::Succeeded, "{out:?}");
    let d = data(&out);
    assert_eq!(
        d["result_sets"][0]["rows"],
        json!([[1, "2024-01-02 03:04:05.500000"], [2, null]])
    );
    assert_eq!(d["result_sets"][0]["truncated"], true);
    assert_eq!(d["result_sets"][1]["rows"], json!([["12.50"]]));
    assert_eq!(d["affected_rows"], 5, "{d}");
    assert_eq!(d["warnings"][0]["code"], 1292, "{d}");
    assert!(out.result.truncated);
}

#[tokio::test]
async fn signal_keeps_code_and_state_and_is_not_retryable() {
    if !crate::db::test_server::available() {
        return;
    }
    let mut db = TestDb::new().await;
    db.exec(
        "CREATE PROCEDURE fail5001() \
         SIGNAL SQLSTATE '45000' SET MYSQL_ERRNO = 5001, MESSAGE_TEXT = 'custom failure'",
    )
    .await;
    db.exec(
        "CREATE PROCEDURE deadlock() \
         SIGNAL SQLSTATE '40001' SET MYSQL_ERRNO = 1213, MESSAGE_TEXT = 'Deadlock found'",
    )
    .await;
    let exec = MysqlExecutor::procedure(db.pools(true));
    let out = exec
        .execute(job(job_id(), call("fail5001", Vec::new(), false)))
        .await;
    assert_eq!(out.completion, Completion::Failed { retryable: false });
    assert_eq!(
        out.error.as_deref(),
        Some("MySQL error 5001 (45000): custom failure")
    );
    assert_eq!(
        data(&out)["error"],
        json!({"code": 5001, "sqlstate": "45000", "message": "custom failure"})
    );

    let out = exec
        .execute(job(job_id(), call("deadlock", Vec::new(), false)))
        .await;
    assert_eq!(out.completion, Completion::Failed { retryable: true });
    assert_eq!(data(&out)["error"]["code"], 1213);
    assert_eq!(data(&out)["error"]["sqlstate"], "40001");
    // Retryable only because the grant's policy says so.
    let mut j = job(job_id(), call("deadlock", Vec::new(), false));
    j.retry_codes = vec![1205];
    assert_eq!(
        exec.execute(j).await.completion,
        Completion::Failed { retryable: false }
    );
    // Invalid names never reach the server and never retry.
    let out = exec
        .execute(job(
            job_id(),
            call("p`; DROP DATABASE x; --", Vec::new(), false),
        ))
        .await;
    assert_eq!(out.completion, Completion::Failed { retryable: false });
}

async fn sleeping_session(db: &mut TestDb) -> Option<i64> {
    let sql = format!(
        "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = '{}' AND ID <> CONNECTION_ID() \
         AND INFO LIKE '%SLEEP(30)%'",
        db.name
    );
    db.admin
        .query_first::<i64, _>(sql)
        .await
        .expect("processlist")
}

#[tokio::test]
async fn cancel_kills_the_query_on_the_server() {
    if !crate::db::test_server::available() {
        return;
    }
    let mut db = TestDb::new().await;
    db.exec("CREATE PROCEDURE slow() BEGIN DO SLEEP(30); END")
        .await;
    let exec = MysqlExecutor::procedure(db.pools(true));
    let j = job(job_id(), call("slow", Vec::new(), false));
    let cancel = j.cancel.clone();
    let task = tokio::spawn(async move { exec.execute(j).await });
    let mut session = None;
    let end = Instant::now() + Duration::from_secs(10);
    while session.is_none() {
        assert!(Instant::now() < end, "the procedure never started sleeping");
        tokio::time::sleep(Duration::from_millis(50)).await;
        session = sleeping_session(&mut db).await;
    }
    let session = session.unwrap_or_default();
    let started = Instant::now();
    cancel.cancel(CancelReason::Cancelled);
    let out = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("stops quickly")
        .expect("no panic");
    assert!(started.elapsed() < Duration::from_secs(8));
    assert_eq!(out.completion, Completion::Cancelled);
    let error = out.error.clone().unwrap_or_default();
    assert!(
        error.contains(&format!("killed on the server (KILL QUERY {session})")),
        "{error}"
    );
    assert_eq!(data(&out)["killed"], true);
    assert_eq!(data(&out)["kill"]["connection_id"], session);
    let gone = format!("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = {session}");
    assert_eq!(
        db.count(&gone).await,
        0,
        "the job session is still on the server"
    );
}

#[tokio::test]
async fn timeout_kills_and_rolls_back_an_exactly_once_job() {
    if !crate::db::test_server::available() {
        return;
    }
    let mut db = TestDb::new().await;
    db.exec("CREATE TABLE effects (x INT) ENGINE=InnoDB").await;
    // SLEEP swallows KILL QUERY inside a procedure, which then goes on: the
    // INSERT runs, but its transaction never commits.
    db.exec("CREATE PROCEDURE slow_then_write() BEGIN DO SLEEP(30); INSERT INTO effects VALUES (1); END")
        .await;
    let exec = MysqlExecutor::procedure(db.pools(true));
    let mut j = job(job_id(), call("slow_then_write", Vec::new(), true));
    j.timeout = Some(Duration::from_millis(700));
    let out = tokio::time::timeout(Duration::from_secs(15), exec.execute(j))
        .await
        .expect("stops");
    assert_eq!(out.completion, Completion::TimedOut, "{out:?}");
    assert!(
        out.error
            .as_deref()
            .unwrap_or_default()
            .contains("killed on the server (KILL QUERY "),
        "{:?}",
        out.error
    );
    assert_eq!(data(&out)["killed"], true);
    assert_eq!(db.count("SELECT COUNT(*) FROM effects").await, 0);
    assert_eq!(db.count("SELECT COUNT(*) FROM baton_ledger").await, 0);
    assert!(sleeping_session(&mut db).await.is_none());
}

#[tokio::test]
async fn a_held_database_lock_makes_the_job_wait() {
    if !crate::db::test_server::available() {
        return;
    }
    let db = TestDb::new().await;
    let id = job_id();
    let mut holder = admin(None).await;
    let got: Option<i64> = holder
        .exec_first("SELECT GET_LOCK(?, 0)", (format!("baton:job:{id}"),))
        .await
        .expect("get_lock");
    assert_eq!(got, Some(1));

    let exec = MysqlExecutor::sql(db.pools(true));
    let j = job(id, batch("SELECT 42 AS answer", false));
    let progress = j.progress.clone();
    let task = tokio::spawn(async move { exec.execute(j).await });
    let waiting = format!("waiting for the database lock baton:job:{id} held by another session");
    wait_for("the lock-wait progress", Duration::from_secs(10), || {
        let said = progress.snapshot().0.map(|p| p.message);
        let waiting = waiting.clone();
        async move { said.as_deref() == Some(waiting.as_str()) }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !task.is_finished(),
        "the job ran while another session held the lock"
    );

    holder
        .exec_drop("DO RELEASE_LOCK(?)", (format!("baton:job:{id}"),))
        .await
        .expect("release");
    let out = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("proceeds once released")
        .expect("no panic");
    assert_eq!(out.completion, Completion::Succeeded, "{out:?}");
    assert_eq!(data(&out)["result_sets"][0]["rows"], json!([[42]]));

    // A cancel ends the wait too.
    let _: Option<i64> = holder
        .exec_first("SELECT GET_LOCK(?, 0)", (format!("baton:job:{id}"),))
        .await
        .expect("get_lock");
    let exec = MysqlExecutor::sql(db.pools(true));
    let j = job(id, batch("SELECT 1", false));
    let (cancel, progress) = (j.cancel.clone(), j.progress.clone());
    let task = tokio::spawn(async move { exec.execute(j).await });
    wait_for("the lock wait", Duration::from_secs(10), || {
        let waiting = progress
            .snapshot()
            .0
            .is_some_and(|p| p.message.starts_with("waiting"));
        async move { waiting }
    })
    .await;
    cancel.cancel(CancelReason::Cancelled);
    let out = tokio::time::timeout(Duration::from_secs(8), task)
        .await
        .expect("stops")
        .expect("no panic");
    assert_eq!(out.completion, Completion::Cancelled);
    let _ = holder.disconnect().await;
}

#[tokio::test]
async fn a_committed_ledger_row_is_replayed_without_running() {
    if !crate::db::test_server::available() {
        return;
    }
    let mut db = TestDb::new().await;
    db.exec("CREATE TABLE effects (x INT) ENGINE=InnoDB").await;
    db.exec(
        "CREATE PROCEDURE work(IN v INT) \
         BEGIN INSERT INTO effects VALUES (v); SELECT COUNT(*) AS n FROM effects; END",
    )
    .await;
    db.exec(
        "CREATE PROCEDURE work_then_fail() \
         BEGIN INSERT INTO effects VALUES (99); \
         SIGNAL SQLSTATE '45000' SET MYSQL_ERRNO = 5002, MESSAGE_TEXT = 'late failure'; END",
    )
    .await;
    let exec = MysqlExecutor::procedure(db.pools(true));
    let id = job_id();
    let spec = call(
        "work",
        vec![param("v", ParamMode::In, ParamValue::Int(7))],
        true,
    );
    let first = exec.execute(job(id, spec.clone())).await;
    assert_eq!(first.completion, Completion::Succeeded, "{first:?}");
    assert_eq!(data(&first)["ledger"], "committed");
    assert_eq!(data(&first)["result_sets"][0]["rows"], json!([[1]]));
    assert_eq!(db.count("SELECT COUNT(*) FROM effects").await, 1);

    let mut again = job(id, spec);
    again.attempt = 2;
    again.token = 2;
    let second = exec.execute(again).await;
    assert_eq!(second.completion, Completion::Succeeded, "{second:?}");
    let d = data(&second);
    assert_eq!(d["ledger"], "replayed");
    assert_eq!(d["replayed_from"]["attempt"], 1);
    assert_eq!(d["replayed_from"]["token"], 1);
    assert_eq!(d["result_sets"], data(&first)["result_sets"]);
    assert_eq!(
        db.count("SELECT COUNT(*) FROM effects").await,
        1,
        "ran again"
    );

    // A failure rolls the work back and leaves no ledger row.
    let fid = job_id();
    let out = exec
        .execute(job(fid, call("work_then_fail", Vec::new(), true)))
        .await;
    assert_eq!(out.completion, Completion::Failed { retryable: false });
    assert_eq!(db.count("SELECT COUNT(*) FROM effects").await, 1);
    assert_eq!(
        db.count(&format!(
            "SELECT COUNT(*) FROM baton_ledger WHERE job_id = {fid}"
        ))
        .await,
        0
    );

    // A batch too.
    let sql = MysqlExecutor::sql(db.pools(true));
    let out = sql
        .execute(job(job_id(), batch("INSERT INTO effects VALUES (5)", true)))
        .await;
    assert_eq!(out.completion, Completion::Succeeded, "{out:?}");
    assert_eq!(data(&out)["affected_rows"], 1);
    assert_eq!(db.count("SELECT COUNT(*) FROM effects").await, 2);
}

#[tokio::test]
async fn a_missing_ledger_is_an_error_naming_the_ddl_when_creation_is_off() {
    if !crate::db::test_server::available() {
        return;
    }
    let db = TestDb::new().await;
    let exec = MysqlExecutor::sql(db.pools(false));
    let out = exec.execute(job(job_id(), batch("SELECT 1", true))).await;
    assert_eq!(out.completion, Completion::Failed { retryable: false });
    let error = out.error.unwrap_or_default();
    assert!(error.contains("create_ledger is off"), "{error}");
    assert!(
        error.contains(&format!(
            "CREATE TABLE IF NOT EXISTS `{}`.`baton_ledger`",
            db.name
        )),
        "{error}"
    );
}

#[tokio::test]
async fn a_job_that_commits_itself_is_flagged() {
    if !crate::db::test_server::available() {
        return;
    }
    let db = TestDb::new().await;
    let exec = MysqlExecutor::sql(db.pools(true));
    let out = exec
        .execute(job(
            job_id(),
            batch("CREATE TABLE made_by_ddl (x INT)", true),
        ))
        .await;
    assert_eq!(out.completion, Completion::Succeeded, "{out:?}");
    assert_eq!(data(&out)["ledger"], "committed");
    assert!(data(&out)["ledger_warning"].is_string(), "{}", data(&out));
}

#[tokio::test]
async fn a_changed_password_takes_a_new_pool() {
    if !crate::db::test_server::available() {
        return;
    }
    let db = TestDb::new().await;
    let exec = MysqlExecutor::sql(db.pools(true));
    let out = exec.execute(job(job_id(), batch("SELECT 1", false))).await;
    assert_eq!(out.completion, Completion::Succeeded, "{out:?}");
    let file = db.dir.path().join("password");
    std::fs::write(&file, "not-the-password\n").expect("write");
    let out = exec.execute(job(job_id(), batch("SELECT 1", false))).await;
    assert_eq!(
        out.completion,
        Completion::Failed { retryable: false },
        "{out:?}"
    );
    assert_eq!(data(&out)["error"]["code"], 1045, "{out:?}");
    std::fs::write(&file, "").expect("write");
    let out = exec.execute(job(job_id(), batch("SELECT 1", false))).await;
    assert_eq!(out.completion, Completion::Succeeded, "{out:?}");
}

#[tokio::test]
async fn at_most_pool_size_jobs_hold_a_connection() {
    if !crate::db::test_server::available() {
        return;
    }
    let db = TestDb::new().await;
    let exec = Arc::new(MysqlExecutor::sql(db.pools(true)));
    let started = Instant::now();
    let tasks: Vec<_> = (0..3)
        .map(|_| {
            let exec = exec.clone();
            tokio::spawn(async move {
                exec.execute(job(job_id(), batch("DO SLEEP(0.6)", false)))
                    .await
            })
        })
        .collect();
    for t in tasks {
        let out = t.await.expect("no panic");
        assert_eq!(out.completion, Completion::Succeeded, "{out:?}");
    }
    // pool_size = 2: the third job waited for a slot.
    assert!(started.elapsed() >= Duration::from_millis(1200));
}

#[tokio::test]
async fn a_refused_kill_is_reported() {
    if !crate::db::test_server::available() {
        return;
    }
    let mut db = TestDb::new().await;
    let suffix = format!("{:08x}", rand::random::<u32>());
    let (owner, runner) = (format!("bt_own_{suffix}"), format!("bt_run_{suffix}"));
    for user in [&owner, &runner] {
        db.exec(&format!(
            "CREATE USER '{user}'@'localhost' IDENTIFIED BY 'pw'"
        ))
        .await;
    }
    db.exec(&format!(
        "GRANT ALL ON `{}`.* TO '{owner}'@'localhost'",
        db.name
    ))
    .await;
    db.exec(&format!(
        "GRANT EXECUTE ON `{}`.* TO '{runner}'@'localhost'",
        db.name
    ))
    .await;
    // While it runs, the session runs as its definer: the runner cannot kill it.
    db.exec(&format!(
        "CREATE DEFINER = '{owner}'@'localhost' PROCEDURE as_owner() SQL SECURITY DEFINER \
         DO SLEEP(3)"
    ))
    .await;
    let pw = db.dir.path().join("runner-password");
    std::fs::write(&pw, "pw").expect("password file");
    let mut conn = db.connection(true);
    conn.user = runner.clone();
    conn.password = PasswordSource::File(pw);
    let exec = MysqlExecutor::procedure(Arc::new(Pools::new([conn])));
    let j = job(job_id(), call("as_owner", Vec::new(), false));
    let cancel = j.cancel.clone();
    let task = tokio::spawn(async move { exec.execute(j).await });
    let sql = format!(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = '{}' \
         AND ID <> CONNECTION_ID() AND INFO LIKE '%SLEEP(3)%'",
        db.name
    );
    let end = Instant::now() + Duration::from_secs(10);
    while db.count(&sql).await == 0 {
        assert!(!task.is_finished(), "the job ended early: {:?}", task.await);
        assert!(Instant::now() < end, "the procedure never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cancel.cancel(CancelReason::Cancelled);
    let out = task.await.expect("no panic");
    assert_eq!(out.completion, Completion::Cancelled);
    let error = out.error.clone().unwrap_or_default();
    assert!(
        error.contains("could not kill the query on the server (KILL QUERY ")
            && error.contains("MySQL error 1095"),
        "{error}"
    );
    assert_eq!(data(&out)["killed"], false);
    for user in [&owner, &runner] {
        db.exec(&format!("DROP USER '{user}'@'localhost'")).await;
    }
}

mod settings;
mod temporal;
