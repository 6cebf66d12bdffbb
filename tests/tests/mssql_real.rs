//! The SQL Server scenarios of `mssql_e2e.rs` against a REAL SQL Server,
//! through the real controller and agent binaries. Gated on an environment
//! variable: without `BATON_TEST_MSSQL_URL` every test prints that it was
//! skipped and returns (no SQL Server can be installed on the CI machines).
//!
//! # Running it
//!
//! 1. Start a SQL Server 2022 somewhere reachable, e.g. with Docker on another
//!    machine (or this one):
//!
//!    ```text
//!    docker run -d --name baton-mssql -p 1433:1433 \
//!      -e ACCEPT_EULA=Y -e 'MSSQL_SA_PASSWORD=Baton-e2e-2022!' \
//!      mcr.microsoft.com/mssql/server:2022-latest
//!    ```
//!
//! 2. Point the tests at it with an ADO.NET connection string (parsed by
//!    `tiberius::Config::from_ado_string` for the test's own sessions and by
//!    `baton_tests::mssql::Ado` for the agent's config; the password is
//!    written to a 0600 file the agent's config names):
//!
//!    ```text
//!    export BATON_TEST_MSSQL_URL='server=tcp:db-host,1433;user=sa;password=Baton-e2e-2022!;TrustServerCertificate=true'
//!    cargo build --workspace --bins
//!    cargo test -p baton-tests --test mssql_real -- --nocapture
//!    ```
//!
//!    With encryption on and no `TrustServerCertificate=true`, set
//!    `BATON_TEST_MSSQL_CA_FILE` to the CA that signed the server's
//!    certificate (the agent's `ca_file`).
//!
//!    The login needs `CREATE DATABASE` (each test creates and drops its own
//!    scratch database `baton_e2e_<random>`) and `VIEW SERVER STATE` (the
//!    tests watch `sys.dm_exec_requests`); `sa` has both.
//!
//! 3. Backups (`dump` jobs) and restores need SQL Server to write into a directory the
//!    agent (this machine) reads at the same path, i.e. SQL Server running on
//!    this host (a Docker bind mount at the same path works:
//!    `-v /srv/baton-backups:/srv/baton-backups`). Set
//!    `BATON_TEST_MSSQL_BACKUP_DIR=/srv/baton-backups`; without it the backup
//!    tests are skipped. The tests pre-create `<dir>/<connection>/<database>/`
//!    writable by everyone for the success case, and read-only (0555) for the
//!    access-denied case, which therefore needs SQL Server to run as another,
//!    non-root user (the Linux packages' `mssql`; the Docker image's
//!    `mssql` user, uid 10001, qualifies).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use baton_proto::{AttemptOutcome, JobState, JobView};
use baton_tests::cluster::Cluster;
use baton_tests::mssql::{self, Ado, data, dump_job, files, procedure_job, with};
use serde_json::json;
use tiberius::{Client, Config};
use tokio::net::TcpStream;
use tokio_util::compat::TokioAsyncWriteCompatExt;

const URL_ENV: &str = "BATON_TEST_MSSQL_URL";
const BACKUP_ENV: &str = "BATON_TEST_MSSQL_BACKUP_DIR";
const CA_ENV: &str = "BATON_TEST_MSSQL_CA_FILE";
const WAIT: Duration = Duration::from_secs(120);

pub mod tds_common;

type Sql = tds_common::Conn;

/// The connection string, or `None` after printing that `test` is skipped.
fn url(test: &str) -> Option<String> {
    match std::env::var(URL_ENV) {
        Ok(u) if !u.trim().is_empty() => Some(u),
        _ => {
            eprintln!("skipped {test}: set {URL_ENV} to run it against a real SQL Server");
            None
        }
    }
}

/// A session as the URL's login, in `database` (default: the URL's).
async fn connect(url: &str, database: Option<&str>) -> Sql {
    use tiberius::SqlBrowser;
    let mut config = Config::from_ado_string(url).expect("BATON_TEST_MSSQL_URL");
    if let Some(db) = database {
        config.database(db);
    }
    let ado = Ado::parse(url).expect("BATON_TEST_MSSQL_URL");
    if !ado.trust_server_certificate
        && let Ok(ca) = std::env::var(CA_ENV)
        && !ca.trim().is_empty()
    {
        config.trust_cert_ca(ca);
    }
    let tcp = TcpStream::connect_named(&config)
        .await
        .expect("reach SQL Server");
    tcp.set_nodelay(true).expect("nodelay");
    Client::connect(config, tcp.compat_write())
        .await
        .expect("log in to SQL Server")
}

/// Run a batch, discarding results.
async fn exec(client: &mut Sql, sql: &str) {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_results()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// The first column of the first row, as i64 (write `CAST(… AS bigint)`).
async fn scalar(client: &mut Sql, sql: &str) -> i64 {
    let row = tds_common::one_row(client, sql).await;
    row.get::<i64, _>(0)
        .unwrap_or_else(|| panic!("{sql}: NULL"))
}

/// A scratch database `baton_e2e_<random>`, dropped when this is dropped
/// (from a thread of its own, so a failing test cleans up too).
struct Scratch {
    url: String,
    name: String,
}

impl Scratch {
    async fn create(url: &str, setup: &[&str]) -> Scratch {
        let name = format!("baton_e2e_{:08x}", rand::random::<u32>());
        let mut master = connect(url, Some("master")).await;
        exec(&mut master, &format!("CREATE DATABASE [{name}]")).await;
        let scratch = Scratch {
            url: url.to_owned(),
            name,
        };
        let mut db = scratch.session().await;
        for batch in setup {
            exec(&mut db, batch).await;
        }
        scratch
    }

    async fn session(&self) -> Sql {
        connect(&self.url, Some(&self.name)).await
    }

    async fn count(&self, sql: &str) -> i64 {
        scalar(&mut self.session().await, sql).await
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let mut master = connect(&url, Some("master")).await;
                exec(
                    &mut master,
                    &format!(
                        "IF DB_ID(N'{name}') IS NOT NULL BEGIN \
                         ALTER DATABASE [{name}] SET SINGLE_USER WITH ROLLBACK IMMEDIATE; \
                         DROP DATABASE [{name}]; END"
                    ),
                )
                .await;
            });
        })
        .join();
        if dropped.is_err() {
            eprintln!("could not drop scratch database {}", self.name);
        }
    }
}

/// How the agent trusts the server's certificate: nothing to add without
/// encryption or with `TrustServerCertificate=true`, else `ca_file` from
/// `BATON_TEST_MSSQL_CA_FILE` (the CA that signed the server's certificate).
fn trust(ado: &Ado) -> String {
    if ado.encrypt == "off" || ado.trust_server_certificate {
        return String::new();
    }
    match std::env::var(CA_ENV) {
        Ok(ca) if !ca.trim().is_empty() => format!("ca_file = {}\n", mssql::toml_str(&ca)),
        _ => panic!(
            "{URL_ENV} asks for encryption: add TrustServerCertificate=true to it, or set \
             {CA_ENV} to the CA file that signed the server's certificate"
        ),
    }
}

/// A cluster of `n` agents whose connection `main` is the scratch database.
struct Fx {
    c: Cluster,
    db: Scratch,
    _secrets: tempfile::TempDir,
}

async fn fixture(url: &str, n: usize, setup: &[&str], extras: &str) -> Fx {
    baton_tests::init_crypto();
    let db = Scratch::create(url, setup).await;
    let ado = Ado::parse(url).expect("BATON_TEST_MSSQL_URL");
    let secrets = tempfile::Builder::new()
        .prefix("baton-mssql-real-")
        .tempdir()
        .expect("tmp");
    let pw = secrets.path().join("main.password");
    mssql::write_password_file(&pw, &ado.password).expect("password file");
    let conn = ado.connection_toml(
        "main",
        &pw,
        Some(&db.name),
        &format!("{}{extras}", trust(&ado)),
    );
    let c = mssql::cluster(n, &conn).await.expect("cluster");
    Fx {
        c,
        db,
        _secrets: secrets,
    }
}

async fn run(fx: &Fx, job: serde_json::Value) -> JobView {
    mssql::run_job(&fx.c, job, WAIT).await
}

/// Requests of other sessions in the scratch database waiting in `WAITFOR`.
fn waiting_sql(db: &str) -> String {
    format!(
        "SELECT CAST(COUNT(*) AS bigint) FROM sys.dm_exec_requests \
         WHERE database_id = DB_ID(N'{db}') AND wait_type = N'WAITFOR' AND session_id <> @@SPID"
    )
}

async fn wait_count(fx: &Fx, sql: &str, want: i64) {
    let end = Instant::now() + WAIT;
    loop {
        if fx.db.count(sql).await == want {
            return;
        }
        assert!(
            Instant::now() < end,
            "{sql} never gave {want}\n{}",
            fx.c.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const TRANSFER: &str = "CREATE PROCEDURE dbo.usp_transfer @account int, @amount decimal(10,2), \
     @note nvarchar(100), @new_balance int OUTPUT, @counter bigint OUTPUT AS BEGIN \
     SET NOCOUNT ON; \
     UPDATE dbo.accounts SET balance = balance + @amount WHERE id = @account; \
     SELECT @new_balance = CAST(balance AS int) FROM dbo.accounts WHERE id = @account; \
     SET @counter = @counter * 10; \
     SELECT CAST(9001 AS bigint) AS entry_id, @note AS memo; \
     RETURN 7; END";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_procedure_in_out_params_and_return_status() {
    let Some(url) = url("real_procedure_in_out_params_and_return_status") else {
        return;
    };
    let fx = fixture(
        &url,
        1,
        &[
            "CREATE TABLE dbo.accounts (id int PRIMARY KEY, balance decimal(10,2) NOT NULL); \
             INSERT dbo.accounts VALUES (42, 17.50)",
            TRANSFER,
        ],
        "",
    )
    .await;
    let done = run(&fx, mssql::transfer_job("main")).await;
    mssql::assert_succeeded(&fx.c, &done);
    let d = data(&done);
    assert_eq!(d["return_status"], 7, "{d:#}");
    assert_eq!(d["out"]["new_balance"], 30, "{d:#}");
    assert_eq!(d["out"]["counter"], 50, "{d:#}");
    assert_eq!(d["result_sets"][0]["columns"], json!(["entry_id", "memo"]));
    assert_eq!(
        d["result_sets"][0]["rows"],
        json!([[9001, "rent for März"]])
    );
    assert_eq!(
        fx.db
            .count("SELECT CAST(balance * 100 AS bigint) FROM dbo.accounts WHERE id = 42")
            .await,
        3000,
        "the procedure ran once with the bound amount"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_thrown_error_keeps_its_fields_and_is_not_retried() {
    let Some(url) = url("real_thrown_error_keeps_its_fields_and_is_not_retried") else {
        return;
    };
    let fx = fixture(
        &url,
        1,
        &[
            "CREATE TABLE dbo.tries (order_id int NOT NULL)",
            "CREATE PROCEDURE dbo.usp_close_order @order_id int AS BEGIN \
             INSERT dbo.tries VALUES (@order_id); \
             THROW 50000, N'order 7 is locked by an audit', 3; END",
        ],
        "",
    )
    .await;
    let done = run(
        &fx,
        procedure_job(
            "main",
            "dbo.usp_close_order",
            json!([{"name": "order_id", "value": {"type": "int", "value": 7}, "sql_type": "int"}]),
        ),
    )
    .await;
    assert_eq!(done.state, JobState::Failed, "{done:#?}");
    assert_eq!(done.attempts.len(), 1, "{done:#?}");
    let e = &data(&done)["error"];
    assert_eq!(e["number"], 50000, "{e:#}");
    assert_eq!(e["class"], 16, "{e:#}");
    assert_eq!(e["state"], 3, "{e:#}");
    assert!(
        e["procedure"]
            .as_str()
            .is_some_and(|p| p.contains("usp_close_order")),
        "{e:#}"
    );
    assert!(e["line"].as_i64().is_some_and(|l| l > 0), "{e:#}");
    assert!(
        done.error
            .clone()
            .unwrap_or_default()
            .contains("order 7 is locked by an audit")
    );
    assert_eq!(
        fx.db
            .count("SELECT CAST(COUNT(*) AS bigint) FROM dbo.tries")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_deadlock_victim_is_retried() {
    let Some(url) = url("real_deadlock_victim_is_retried") else {
        return;
    };
    // The first call locks row 1, waits, then wants row 2, which the test's
    // session (DEADLOCK_PRIORITY HIGH) holds while it wants row 1: SQL
    // Server picks the agent's session as the victim (1205). The second
    // call does nothing.
    let fx = fixture(
        &url,
        1,
        &[
            "CREATE TABLE dbo.dl (id int PRIMARY KEY, v int NOT NULL); \
             INSERT dbo.dl VALUES (1, 0), (2, 0); \
             CREATE TABLE dbo.calls (n int IDENTITY PRIMARY KEY)",
            "CREATE PROCEDURE dbo.usp_post AS BEGIN SET NOCOUNT ON; \
             INSERT dbo.calls DEFAULT VALUES; \
             IF (SELECT COUNT(*) FROM dbo.calls) = 1 BEGIN \
               BEGIN TRANSACTION; \
               UPDATE dbo.dl SET v = v + 1 WHERE id = 1; \
               WAITFOR DELAY '00:00:03'; \
               UPDATE dbo.dl SET v = v + 1 WHERE id = 2; \
               COMMIT; END; \
             RETURN 0; END",
        ],
        "",
    )
    .await;
    let mut other = fx.db.session().await;
    exec(
        &mut other,
        "SET DEADLOCK_PRIORITY HIGH; BEGIN TRANSACTION; UPDATE dbo.dl SET v = v + 10 WHERE id = 2",
    )
    .await;
    let job =
        fx.c.api
            .submit(procedure_job("main", "dbo.usp_post", json!([])))
            .await
            .expect("submit");
    // The agent's session is inside WAITFOR holding row 1.
    wait_count(&fx, &waiting_sql(&fx.db.name), 1).await;
    exec(
        &mut other,
        "UPDATE dbo.dl SET v = v + 10 WHERE id = 1; COMMIT",
    )
    .await;
    let done =
        fx.c.api
            .wait_terminal(job.id, WAIT)
            .await
            .expect("terminal");
    mssql::assert_succeeded(&fx.c, &done);
    assert_eq!(done.attempts.len(), 2, "{done:#?}");
    assert!(
        done.attempts[0]
            .error
            .clone()
            .unwrap_or_default()
            .contains("1205"),
        "{:#?}",
        done.attempts[0]
    );
    assert_eq!(
        fx.db
            .count("SELECT CAST(COUNT(*) AS bigint) FROM dbo.calls")
            .await,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_cancel_mid_procedure_stops_the_request() {
    let Some(url) = url("real_cancel_mid_procedure_stops_the_request") else {
        return;
    };
    let fx = fixture(
        &url,
        1,
        &["CREATE PROCEDURE dbo.usp_rebuild AS WAITFOR DELAY '00:05:00'"],
        "",
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
    let waiting = waiting_sql(&fx.db.name);
    wait_count(&fx, &waiting, 1).await;
    fx.c.api.cancel(job.id).await.expect("cancel");
    let done =
        fx.c.api
            .wait_terminal(job.id, WAIT)
            .await
            .expect("terminal");
    assert_eq!(done.state, JobState::Cancelled, "{done:#?}");
    assert_eq!(done.attempts[0].outcome, Some(AttemptOutcome::Cancelled));
    let err = done.attempts[0].error.clone().unwrap_or_default();
    assert!(err.to_lowercase().contains("attention"), "{err}");
    assert_eq!(data(&done)["cancel"]["attention_sent"], true, "{done:#?}");
    wait_count(&fx, &waiting, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_sigkill_takeover_waits_for_the_applock_and_the_work_happens_once() {
    let Some(url) = url("real_sigkill_takeover_waits_for_the_applock_and_the_work_happens_once")
    else {
        return;
    };
    let mut fx = fixture(
        &url,
        2,
        &[
            "CREATE TABLE dbo.effects (id int IDENTITY PRIMARY KEY, job bigint NOT NULL)",
            "CREATE PROCEDURE dbo.usp_settle @job bigint, @secs int AS BEGIN SET NOCOUNT ON; \
             INSERT dbo.effects (job) VALUES (@job); \
             DECLARE @d datetime = DATEADD(second, @secs, CAST('00:00:00' AS datetime)); \
             WAITFOR DELAY @d; END",
        ],
        "",
    )
    .await;
    let job =
        fx.c.api
            .submit(with(
                procedure_job(
                    "main",
                    "dbo.usp_settle",
                    json!([
                        {"name": "job", "value": {"type": "int", "value": 1}, "sql_type": "bigint"},
                        {"name": "secs", "value": {"type": "int", "value": 6}, "sql_type": "int"}
                    ]),
                ),
                json!({"lease_ttl_ms": 2000, "exactly_once": true}),
            ))
            .await
            .expect("submit");
    let (_, holder) = fx.c.api.wait_running(job.id, WAIT).await.expect("running");
    wait_count(&fx, &waiting_sql(&fx.db.name), 1).await;
    fx.c.agent(&holder).proc().kill9();
    let mut saw_wait = false;
    let done = mssql::watch_until_terminal(&fx.c, job.id, WAIT, |j| {
        saw_wait |= mssql::takeover_waited_for_lock(j);
    })
    .await;
    mssql::assert_succeeded(&fx.c, &done);
    assert_eq!(done.attempts[0].outcome, Some(AttemptOutcome::LeaseExpired));
    assert_ne!(
        done.attempts.last().map(|a| a.agent_id.as_str()),
        Some(holder.as_str())
    );
    // Whether SQL Server lets an orphaned request run to its end (then the
    // takeover waits for the lock) or stops it at the disconnect, the work
    // must happen once; the wait is reported, not asserted.
    eprintln!("the takeover reported waiting for the applock: {saw_wait}");
    assert_eq!(
        fx.db
            .count("SELECT CAST(COUNT(*) AS bigint) FROM dbo.effects")
            .await,
        1,
        "the killed session's work was rolled back, the new one committed"
    );
    assert_eq!(
        fx.db
            .count(&format!(
                "SELECT CAST(COUNT(*) AS bigint) FROM dbo.baton_ledger WHERE job_id = {}",
                job.id
            ))
            .await,
        1
    );
}

/// The backup dir shared with SQL Server, or `None` after printing why `test` is skipped.
fn backup_dir(test: &str) -> Option<PathBuf> {
    match std::env::var(BACKUP_ENV) {
        Ok(d) if !d.trim().is_empty() => Some(PathBuf::from(d)),
        _ => {
            eprintln!(
                "skipped {test}: set {BACKUP_ENV} to a directory SQL Server writes and this host reads"
            );
            None
        }
    }
}

/// `<dir>/<connection>/<database>/` with `mode`.
fn target_dir(dir: &Path, connection: &str, db: &str, mode: u32) -> PathBuf {
    let t = dir.join(connection).join(db);
    std::fs::create_dir_all(&t).expect("backup target dir");
    std::fs::set_permissions(&t, std::fs::Permissions::from_mode(mode)).expect("chmod");
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_backup_is_verified_and_lands_with_a_manifest() {
    let test = "real_backup_is_verified_and_lands_with_a_manifest";
    let Some(url) = url(test) else { return };
    let Some(dir) = backup_dir(test) else { return };
    let extras = format!(
        "backup_dir = {}\n",
        mssql::toml_str(&dir.display().to_string())
    );
    let fx = fixture(
        &url,
        1,
        &["CREATE TABLE dbo.t (id int PRIMARY KEY); INSERT dbo.t VALUES (1), (2)"],
        &extras,
    )
    .await;
    let target = target_dir(&dir, "main", &fx.db.name, 0o777);
    let done = run(&fx, dump_job("main", &fx.db.name)).await;
    mssql::assert_succeeded(&fx.c, &done);
    let names = files(&target);
    assert!(
        names.iter().any(|n| n.ends_with(".bak"))
            && names.iter().any(|n| n.ends_with(".manifest.json"))
            && !names.iter().any(|n| n.ends_with(".partial")),
        "{names:?}"
    );
    let d = data(&done);
    assert_eq!(d["verify"]["ok"], true, "{d:#}");
    assert_eq!(
        fx.db
            .count(&format!(
                "SELECT CAST(COUNT(*) AS bigint) FROM msdb.dbo.backupset \
                 WHERE database_name = N'{}' AND is_copy_only = 1 AND has_backup_checksums = 1",
                fx.db.name
            ))
            .await,
        1,
        "one COPY_ONLY backup WITH CHECKSUM"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_backup_is_restored_under_a_new_name_and_not_over_it() {
    let test = "real_backup_is_restored_under_a_new_name_and_not_over_it";
    let Some(url) = url(test) else { return };
    let Some(dir) = backup_dir(test) else { return };
    let extras = format!(
        "backup_dir = {}\n",
        mssql::toml_str(&dir.display().to_string())
    );
    let fx = fixture(
        &url,
        1,
        &["CREATE TABLE dbo.t (id int PRIMARY KEY); INSERT dbo.t VALUES (1), (2), (3)"],
        &extras,
    )
    .await;
    target_dir(&dir, "main", &fx.db.name, 0o777);
    let done = run(&fx, dump_job("main", &fx.db.name)).await;
    mssql::assert_succeeded(&fx.c, &done);
    let file = data(&done)["path"].as_str().expect("path").to_owned();
    // Dropped at the end like the scratch database.
    let copy = Scratch {
        url: url.clone(),
        name: format!("{}_copy", fx.db.name),
    };
    let restore = json!({
        "group": "default",
        "spec": {"kind": "restore", "connection": "main", "source": {"file": file},
                 "database": copy.name},
        "retry": {"max_attempts": 1},
    });
    let done = run(&fx, restore.clone()).await;
    mssql::assert_succeeded(&fx.c, &done);
    let d = data(&done);
    assert_eq!(
        d["tables"],
        json!([{"name": "dbo.t", "rows": 3, "checksum": null}]),
        "{d:#}"
    );
    assert_eq!(
        copy.count("SELECT CAST(COUNT(*) AS bigint) FROM dbo.t")
            .await,
        3
    );
    let again = run(&fx, restore).await;
    assert_eq!(again.state, JobState::Failed, "{again:#?}");
    let err = again.error.clone().unwrap_or_default();
    assert!(err.contains("already exists"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_backup_to_a_denied_directory_fails_with_sql_servers_message() {
    let test = "real_backup_to_a_denied_directory_fails_with_sql_servers_message";
    let Some(url) = url(test) else { return };
    let Some(dir) = backup_dir(test) else { return };
    let extras = format!(
        "backup_dir = {}\n",
        mssql::toml_str(&dir.display().to_string())
    );
    let fx = fixture(&url, 1, &[], &extras).await;
    let target = target_dir(&dir, "main", &fx.db.name, 0o555);
    let done = run(&fx, dump_job("main", &fx.db.name)).await;
    let _ = std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755));
    assert_eq!(done.state, JobState::Failed, "{done:#?}");
    let err = done.error.clone().unwrap_or_default();
    assert!(
        err.contains("3201") || err.contains("3013"),
        "SQL Server's message: {err}"
    );
    assert!(files(&target).is_empty(), "{:?}", files(&target));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_server_certificate_from_another_ca_is_refused() {
    let Some(url) = url("real_server_certificate_from_another_ca_is_refused") else {
        return;
    };
    baton_tests::init_crypto();
    let ado = Ado::parse(&url).expect("BATON_TEST_MSSQL_URL");
    let secrets = tempfile::tempdir().expect("tmp");
    let pki = baton_tests::pki::Pki::generate(secrets.path()).expect("pki");
    let pw = secrets.path().join("pw");
    mssql::write_password_file(&pw, &ado.password).expect("password file");
    let ado = Ado {
        encrypt: "required",
        trust_server_certificate: false,
        ..ado
    };
    let extras = format!(
        "ca_file = {}\n",
        mssql::toml_str(&pki.other_ca.display().to_string())
    );
    let c = mssql::cluster(
        1,
        &ado.connection_toml("main", &pw, Some("master"), &extras),
    )
    .await
    .expect("cluster");
    let j = c
        .api
        .submit(with(
            mssql::sql_job("main", "SELECT 1"),
            json!({"retry": {"max_attempts": 5}}),
        ))
        .await
        .expect("submit");
    let done = c.api.wait_terminal(j.id, WAIT).await.expect("terminal");
    assert_eq!(done.state, JobState::Failed, "{done:#?}");
    assert_eq!(
        done.attempts.len(),
        1,
        "a certificate failure is not retried"
    );
    let err = done.error.clone().unwrap_or_default().to_lowercase();
    assert!(err.contains("tls") || err.contains("certificate"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_session_settings_reach_the_procedure() {
    let Some(url) = url("real_session_settings_reach_the_procedure") else {
        return;
    };
    let fx = fixture(
        &url,
        1,
        &[
            "CREATE PROCEDURE dbo.usp_settings @day nvarchar(10) OUTPUT, @lock_timeout int OUTPUT, \
           @language nvarchar(128) OUTPUT, @datefirst int OUTPUT AS BEGIN \
           SET @day = CONVERT(nvarchar(10), CONVERT(datetime, '26/11/2026'), 23); \
           SET @lock_timeout = @@LOCK_TIMEOUT; SET @language = @@LANGUAGE; \
           SET @datefirst = @@DATEFIRST; END",
        ],
        "",
    )
    .await;
    let out = |name: &str, ty: &str| json!({"name": name, "mode": "out", "sql_type": ty});
    let mut job = procedure_job(
        "main",
        "dbo.usp_settings",
        json!([
            out("day", "nvarchar(10)"),
            out("lock_timeout", "int"),
            out("language", "nvarchar(128)"),
            out("datefirst", "int")
        ]),
    );
    // us_english alone would mean mdy and DATEFIRST 7: the explicit settings
    // win because the agent sets the language first.
    job["spec"]["session"] = json!({"DATEFORMAT": "dmy", "LOCK_TIMEOUT": 5000,
        "LANGUAGE": "us_english", "DATEFIRST": 1});
    let done = run(&fx, job).await;
    mssql::assert_succeeded(&fx.c, &done);
    let d = data(&done);
    assert_eq!(
        d["out"],
        json!({"day": "2026-11-26", "lock_timeout": 5000, "language": "us_english",
               "datefirst": 1}),
        "{d:#}"
    );
}
