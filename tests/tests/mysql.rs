//! MySQL/MariaDB jobs through the whole stack: controller → agent → a real
//! MariaDB → the result on the job.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use baton_proto::{AttemptOutcome, JobState, JobView};
use baton_tests::cluster::Cluster;
use baton_tests::mariadb::{self, MariaDb};
use nix::sys::signal::Signal;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

/// A database with a user that has ALL on it, and a cluster of `n` agents
/// that all have connection `main` to it.
struct Fixture {
    c: Cluster,
    db: String,
    mdb: &'static MariaDb,
    dumps: PathBuf,
    _secrets: tempfile::TempDir,
}

async fn fixture(n: usize, setup_sql: &str) -> Fixture {
    fixture_with(n, setup_sql, &["ALL"], true, "").await
}

/// Like [`fixture`], with the user's `grants` on its database, the dump and
/// restore-check grants only when `dump_grants`, and `conn_extra` appended to
/// the connection's table.
async fn fixture_with(
    n: usize,
    setup_sql: &str,
    grants: &[&str],
    dump_grants: bool,
    conn_extra: &str,
) -> Fixture {
    let mdb = mariadb::server().await.expect(mariadb::INSTALL_HINT);
    let db = mdb.create_database("e2e").expect("database");
    if !setup_sql.is_empty() {
        // Statements end with `//` so procedure bodies may contain `;`.
        mdb.sql(Some(&db), &format!("DELIMITER //\n{setup_sql}\n//"))
            .expect("setup sql");
    }
    let (user, password) = mdb.create_user(&db, grants).expect("user");
    if dump_grants {
        // Dumping routines defined by another user (root here) needs mysql.proc.
        mdb.grant(&user, &["SELECT"], "mysql.proc").expect("grant");
        // The restore check works in scratch databases `baton_verify_*`, and
        // re-creates objects whose DEFINER is another user (SET USER).
        mdb.grant(&user, &["ALL"], "`baton\\_verify\\_%`.*")
            .expect("grant");
        mdb.grant(&user, &["SET USER"], "*.*").expect("grant");
    }
    let secrets_dir = tempfile::Builder::new()
        .prefix("baton-e2e-secrets-")
        .tempdir()
        .expect("tmp");
    let secrets = secrets_dir.path().to_path_buf();
    let pw = secrets.join("main.password");
    mariadb::write_password_file(&pw, &password).expect("password file");
    let dumps = secrets.join("dumps");
    let conn = format!(
        "{}dump_dir = \"{}\"\n{conn_extra}",
        mdb.connection_toml("main", &db, &user, &pw),
        dumps.display()
    );
    let c = Cluster::start_with(n, "", move |o| {
        o.extra = conn.clone();
    })
    .await
    .expect("cluster");
    c.wait_agents_online().await.expect("online");
    Fixture {
        c,
        db,
        mdb,
        dumps,
        _secrets: secrets_dir,
    }
}

fn procedure(name: &str, params: Value, extra: Value) -> Value {
    let mut job = json!({
        "group": "default",
        "spec": {"kind": "procedure", "connection": "main", "procedure": name, "params": params},
        "retry": {"max_attempts": 3, "initial_backoff_ms": 50, "jitter": 0.0},
    });
    if let (Some(j), Some(e)) = (job.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            if k == "exactly_once" {
                j["spec"]["exactly_once"] = v.clone();
            } else {
                j.insert(k.clone(), v.clone());
            }
        }
    }
    job
}

fn data(j: &JobView) -> Value {
    j.result
        .as_ref()
        .and_then(|r| r.data.clone())
        .unwrap_or(Value::Null)
}

fn count(mdb: &MariaDb, db: &str, sql: &str) -> i64 {
    mdb.sql(Some(db), sql)
        .expect("count")
        .trim()
        .parse()
        .expect("number")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn procedure_out_params_and_result_sets_land_on_the_job() {
    baton_tests::require_mariadb!();
    let f = fixture(
        1,
        "CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(20), price DECIMAL(8,2))
         //
         INSERT INTO items VALUES (1, 'bolt', 0.25), (2, 'nut', 0.10), (3, NULL, 9.99)
         //
         CREATE PROCEDURE report(IN min_price DECIMAL(8,2), OUT n INT, INOUT scale INT)
         BEGIN
           SELECT id, name, price FROM items WHERE price >= min_price ORDER BY id;
           SELECT COUNT(*) AS total FROM items;
           SELECT COUNT(*) INTO n FROM items WHERE price >= min_price;
           SET scale = scale * 10;
         END",
    )
    .await;
    let job =
        f.c.api
            .submit(procedure(
                "report",
                json!([
                    {"name": "min_price", "value": {"type": "decimal", "value": "0.20"}},
                    {"name": "n", "mode": "out", "value": {"type": "int", "value": 0}},
                    {"name": "scale", "mode": "in_out", "value": {"type": "int", "value": 7}}
                ]),
                json!({}),
            ))
            .await
            .expect("submit");
    let done = f.c.api.wait_terminal(job.id, WAIT).await.expect("terminal");
    assert_eq!(done.state, JobState::Succeeded, "{done:#?}\n{}", f.c.logs());
    let d = data(&done);
    let sets = d["result_sets"].as_array().expect("result sets");
    assert_eq!(sets.len(), 2, "{d:#}");
    assert_eq!(sets[0]["columns"], json!(["id", "name", "price"]));
    assert_eq!(sets[0]["rows"].as_array().map(Vec::len), Some(2), "{d:#}");
    assert_eq!(sets[0]["rows"][0][1], "bolt");
    assert_eq!(sets[0]["rows"][1][0], 3);
    assert_eq!(sets[0]["rows"][1][1], Value::Null);
    assert_eq!(sets[1]["rows"][0][0], 3);
    assert_eq!(d["out"]["n"], 2, "{d:#}");
    assert_eq!(d["out"]["scale"], 70, "{d:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_keep_code_and_sqlstate_and_only_retry_codes_retry() {
    baton_tests::require_mariadb!();
    let f = fixture(
        1,
        "CREATE TABLE tries (n INT)
         //
         CREATE PROCEDURE refuse() BEGIN
           INSERT INTO tries VALUES (1);
           SIGNAL SQLSTATE '45000' SET MYSQL_ERRNO = 5001, MESSAGE_TEXT = 'no such customer';
         END
         //
         CREATE PROCEDURE deadlock() BEGIN
           SIGNAL SQLSTATE '40001' SET MYSQL_ERRNO = 1213, MESSAGE_TEXT = 'Deadlock found';
         END",
    )
    .await;
    let refused =
        f.c.api
            .submit(procedure("refuse", json!([]), json!({})))
            .await
            .expect("submit");
    let done =
        f.c.api
            .wait_terminal(refused.id, WAIT)
            .await
            .expect("terminal");
    assert_eq!(done.state, JobState::Failed);
    assert_eq!(done.attempts.len(), 1, "5001 is not a retry code");
    let err = done.error.clone().unwrap_or_default();
    assert!(err.contains("5001") && err.contains("45000"), "{err}");
    assert!(err.contains("no such customer"), "{err}");
    assert_eq!(data(&done)["error"]["code"], 5001, "{:#}", data(&done));
    assert_eq!(data(&done)["error"]["sqlstate"], "45000");

    let dl =
        f.c.api
            .submit(procedure("deadlock", json!([]), json!({})))
            .await
            .expect("submit");
    let done = f.c.api.wait_terminal(dl.id, WAIT).await.expect("terminal");
    assert_eq!(done.state, JobState::Failed);
    assert_eq!(
        done.attempts.len(),
        3,
        "1213 retries until attempts run out"
    );
    assert!(done.error.unwrap_or_default().contains("1213"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_during_a_long_procedure_kills_the_query_on_the_server() {
    baton_tests::require_mariadb!();
    // SQL SECURITY INVOKER: the session runs as the agent's user, which may kill
    // its own queries (a DEFINER procedure of another user needs CONNECTION ADMIN).
    let f = fixture(
        1,
        "CREATE PROCEDURE slow() SQL SECURITY INVOKER BEGIN DO SLEEP(60); END",
    )
    .await;
    let job =
        f.c.api
            .submit(procedure("slow", json!([]), json!({"lease_ttl_ms": 5000})))
            .await
            .expect("submit");
    f.c.api.wait_running(job.id, WAIT).await.expect("running");
    let sleeping = |mdb: &MariaDb| {
        mdb.sql(
            None,
            &format!(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = '{}' AND INFO LIKE '%SLEEP(60)%'",
                f.db
            ),
        )
        .expect("processlist")
        .trim()
        .to_owned()
    };
    let end = Instant::now() + WAIT;
    while sleeping(f.mdb) != "1" {
        assert!(
            Instant::now() < end,
            "the procedure never started on the server"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    f.c.api.cancel(job.id).await.expect("cancel");
    let done = f.c.api.wait_terminal(job.id, WAIT).await.expect("terminal");
    assert_eq!(done.state, JobState::Cancelled, "{}", f.c.logs());
    assert_eq!(done.attempts[0].outcome, Some(AttemptOutcome::Cancelled));
    assert!(
        done.attempts[0]
            .error
            .clone()
            .unwrap_or_default()
            .contains("KILL QUERY"),
        "{:#?}",
        done.attempts[0]
    );
    assert_eq!(
        sleeping(f.mdb),
        "0",
        "the query is gone from the server: {}",
        f.mdb
            .sql(
                None,
                "SELECT ID, USER, DB, COMMAND, STATE, INFO FROM information_schema.PROCESSLIST"
            )
            .unwrap_or_default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_procedure_the_new_holder_waits_on_the_db_lock_and_the_work_happens_once() {
    baton_tests::require_mariadb!();
    let mut f = fixture(
        2,
        "CREATE TABLE effects (id INT AUTO_INCREMENT PRIMARY KEY, job BIGINT)
         //
         CREATE PROCEDURE work(IN j BIGINT, IN secs INT)
         BEGIN INSERT INTO effects (job) VALUES (j); DO SLEEP(secs); END",
    )
    .await;
    let job =
        f.c.api
            .submit(procedure(
                "work",
                json!([
                    {"name": "j", "value": {"type": "int", "value": 1}},
                    {"name": "secs", "value": {"type": "int", "value": 5}}
                ]),
                json!({"lease_ttl_ms": 2000, "exactly_once": true}),
            ))
            .await
            .expect("submit");
    let (_, holder) = f.c.api.wait_running(job.id, WAIT).await.expect("running");
    let end = Instant::now() + WAIT;
    while f
        .mdb
        .sql(None, &format!("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = '{}' AND INFO LIKE '%SLEEP%'", f.db))
        .expect("processlist")
        .trim()
        != "1"
    {
        assert!(Instant::now() < end);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    f.c.agent(&holder).proc().kill9();
    // The other agent takes over after the TTL, but the zombie session still
    // sleeps with GET_LOCK held: the new holder must wait, and say so.
    let mut saw_wait = false;
    let end = Instant::now() + WAIT;
    let done = loop {
        let j = f.c.api.job(job.id).await.expect("job");
        if j.attempts.len() >= 2
            && j.attempts[1]
                .progress
                .as_ref()
                .is_some_and(|p| p.message.contains("lock"))
        {
            saw_wait = true;
        }
        if j.state.is_terminal() {
            break j;
        }
        assert!(Instant::now() < end, "{}", f.c.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(done.state, JobState::Succeeded, "{}", f.c.logs());
    assert_eq!(done.attempts[0].outcome, Some(AttemptOutcome::LeaseExpired));
    assert!(
        saw_wait,
        "the new holder reported waiting for the database lock"
    );
    assert_eq!(
        count(f.mdb, &f.db, "SELECT COUNT(*) FROM effects"),
        1,
        "the work happened once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_reports_a_committed_result_instead_of_running_again() {
    baton_tests::require_mariadb!();
    let mut f = fixture(
        2,
        "CREATE TABLE effects (id INT AUTO_INCREMENT PRIMARY KEY, job BIGINT)
         //
         CREATE PROCEDURE work(IN j BIGINT, IN secs INT)
         BEGIN INSERT INTO effects (job) VALUES (j); DO SLEEP(secs); SELECT 'did it' AS what; END",
    )
    .await;
    let job =
        f.c.api
            .submit(procedure(
                "work",
                json!([
                    {"name": "j", "value": {"type": "int", "value": 7}},
                    {"name": "secs", "value": {"type": "int", "value": 2}}
                ]),
                json!({"lease_ttl_ms": 6000, "exactly_once": true}),
            ))
            .await
            .expect("submit");
    let (_, holder) = f.c.api.wait_running(job.id, WAIT).await.expect("running");
    // Freeze the controller so the holder cannot report, let it commit, then kill it.
    f.c.controller
        .proc
        .as_ref()
        .expect("controller")
        .signal(Signal::SIGSTOP)
        .expect("stop");
    let end = Instant::now() + WAIT;
    loop {
        let n = f
            .mdb
            .sql(
                Some(&f.db),
                &format!(
                    "SELECT COUNT(*) FROM baton_ledger WHERE job_id = {}",
                    job.id
                ),
            )
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        if n == "1" {
            break;
        }
        assert!(Instant::now() < end, "no ledger row\n{}", f.c.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    f.c.agent(&holder).proc().kill9();
    // Not SIGCONT: the holder may have sent its completion (lease still
    // valid) into the stopped controller's socket before it died, and a
    // resumed controller would rightly record it. Killing the controller too
    // loses what only sat in its socket: the holder's report never arrives.
    f.c.controller.restart().await.expect("restart");
    let done = f.c.api.wait_terminal(job.id, WAIT).await.expect("terminal");
    assert_eq!(done.state, JobState::Succeeded, "{}", f.c.logs());
    assert_eq!(done.attempts.len(), 2);
    assert_eq!(done.attempts[0].outcome, Some(AttemptOutcome::LeaseExpired));
    assert_ne!(done.attempts[1].agent_id, holder);
    let d = data(&done);
    assert_eq!(d["ledger"], "replayed", "{d:#}");
    assert_eq!(
        count(f.mdb, &f.db, "SELECT COUNT(*) FROM effects"),
        1,
        "not run again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_for_a_connection_no_agent_has_says_so() {
    baton_tests::require_mariadb!();
    let f = fixture(1, "").await;
    // The reason comes from the online agents' advertised connections: until
    // the agent's first poll it would rightly say that no agent is online.
    f.c.wait_agents_online().await.expect("agent online");
    let job =
        f.c.api
            .submit(json!({"group": "default",
            "spec": {"kind": "sql", "connection": "elsewhere", "sql": "SELECT 1"}}))
            .await
            .expect("submit");
    let j = f.c.api.job(job.id).await.expect("job");
    assert_eq!(j.state, JobState::Queued);
    let reason = j.blocked_reason.unwrap_or_default();
    assert!(
        reason.contains("connection `elsewhere`"),
        "blocked reason names the connection: {reason:?}"
    );
    let ok = f
        .c
        .api
        .submit(json!({"group": "default",
            "spec": {"kind": "sql", "connection": "main",
                     "sql": "CREATE TABLE t (x INT); INSERT INTO t VALUES (1), (2); SELECT SUM(x) AS s FROM t"}}))
        .await
        .expect("submit");
    let done = f.c.api.wait_terminal(ok.id, WAIT).await.expect("terminal");
    assert_eq!(done.state, JobState::Succeeded, "{done:#?}");
    let d = data(&done);
    let sets = d["result_sets"].as_array().expect("sets");
    let last = sets.last().expect("a set");
    assert_eq!(
        last["rows"][0][0].to_string().trim_matches('"'),
        "3",
        "{d:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dump_with_verify_passes_and_leaves_a_checked_file() {
    baton_tests::require_mariadb!();
    let f = fixture(
        1,
        "CREATE TABLE orders (id INT PRIMARY KEY, amount DECIMAL(10,2), note BLOB) //
         INSERT INTO orders VALUES (1, 10.50, x'00ff'), (2, 99.99, NULL) //
         CREATE VIEW big_orders AS SELECT id FROM orders WHERE amount > 50 //
         CREATE TRIGGER orders_bi BEFORE INSERT ON orders FOR EACH ROW SET NEW.amount = ABS(NEW.amount) //
         CREATE PROCEDURE total() SELECT SUM(amount) FROM orders",
    )
    .await;
    let job =
        f.c.api
            .submit(json!({"group": "default",
            "spec": {"kind": "dump", "connection": "main", "database": f.db, "verify": true}}))
            .await
            .expect("submit");
    let done = f.c.api.wait_terminal(job.id, WAIT).await.expect("terminal");
    assert_eq!(done.state, JobState::Succeeded, "{done:#?}\n{}", f.c.logs());
    let files: Vec<PathBuf> = walk(&f.dumps);
    let dump = files
        .iter()
        .find(|p| p.to_string_lossy().ends_with(".sql.zst"))
        .expect("a finished dump file");
    assert!(
        files
            .iter()
            .any(|p| p.to_string_lossy().ends_with(".manifest.json"))
    );
    assert!(
        !files
            .iter()
            .any(|p| p.to_string_lossy().ends_with(".partial"))
    );
    let t = std::process::Command::new("zstd")
        .arg("-tq")
        .arg(dump)
        .status()
        .expect("zstd");
    assert!(t.success(), "zstd -t");
    let d = data(&done);
    assert_eq!(d["verify"]["ok"], true, "{d:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dump_without_privileges_fails_and_leaves_nothing_that_looks_complete() {
    baton_tests::require_mariadb!();
    let f = fixture_with(
        1,
        "CREATE TABLE t (x INT) // CREATE PROCEDURE p() SELECT 1",
        &["SELECT"],
        false,
        "",
    )
    .await;
    let (c, db, dumps) = (&f.c, &f.db, &f.dumps);
    let job = c
        .api
        .submit(json!({"group": "default",
            "spec": {"kind": "dump", "connection": "main", "database": db}}))
        .await
        .expect("submit");
    let done = c.api.wait_terminal(job.id, WAIT).await.expect("terminal");
    assert_eq!(done.state, JobState::Failed, "{}", c.logs());
    assert!(
        done.error.clone().unwrap_or_default().len() > 10,
        "the tool's message is on the job"
    );
    let left: Vec<PathBuf> = walk(dumps)
        .into_iter()
        .filter(|p| {
            let s = p.to_string_lossy();
            s.ends_with(".sql.zst") || s.ends_with(".partial")
        })
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agents_partial_dump_is_removed_and_the_takeover_finishes() {
    baton_tests::require_mariadb!();
    // A dump tool that hangs on its first run (the one the agent is killed
    // in), then dumps normally.
    let tools = tempfile::tempdir().expect("tmp");
    let tool = tools.path().join("slowdump");
    let marker = tools.path().join("first-run");
    std::fs::write(
        &tool,
        format!(
            "#!/bin/sh\ncase \"$1\" in --version|-V) exec mariadb-dump \"$@\";; esac\n\
             [ -e {m} ] || {{ touch {m}; sleep 60; }}\nexec mariadb-dump \"$@\"\n",
            m = marker.display()
        ),
    )
    .expect("tool");
    std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let mut f = fixture_with(
        1,
        "CREATE TABLE t (x INT) // INSERT INTO t VALUES (1)",
        &["ALL"],
        true,
        &format!("dump_tool = \"{}\"\n", tool.display()),
    )
    .await;
    let job =
        f.c.api
            .submit(json!({"group": "default", "lease_ttl_ms": 3000,
            "retry": {"max_attempts": 3, "initial_backoff_ms": 10},
            "spec": {"kind": "dump", "connection": "main", "database": f.db}}))
            .await
            .expect("submit");
    let end = Instant::now() + WAIT;
    let partial = loop {
        if let Some(p) = walk(&f.dumps)
            .into_iter()
            .find(|p| p.to_string_lossy().ends_with(".partial"))
            && marker.exists()
        {
            break p;
        }
        assert!(Instant::now() < end, "{}", f.c.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    f.c.agents[0].proc().kill9();
    assert!(partial.exists(), "the killed run's partial is still there");
    f.c.agents[0].restart().expect("restart");
    let end = Instant::now() + Duration::from_secs(20);
    while partial.exists() {
        assert!(
            Instant::now() < end,
            "the restarted agent left {}\n{}",
            partial.display(),
            f.c.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let done = f.c.api.wait_terminal(job.id, WAIT).await.expect("terminal");
    assert_eq!(done.state, JobState::Succeeded, "{done:#?}\n{}", f.c.logs());
    let files: Vec<String> = walk(&f.dumps)
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|p| p.contains(".sql.zst"))
        .collect();
    assert_eq!(
        files.iter().filter(|p| p.ends_with(".sql.zst")).count(),
        1,
        "{files:?}"
    );
    assert!(!files.iter().any(|p| p.ends_with(".partial")), "{files:?}");
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dump_that_does_not_fit_is_refused_before_it_starts() {
    baton_tests::require_mariadb!();
    // Keep a petabyte free after the dump: no disk here can.
    let f = fixture_with(
        1,
        "CREATE TABLE t (x INT) // INSERT INTO t VALUES (1)",
        &["ALL"],
        true,
        "dump_reserve_mb = 1000000000\n",
    )
    .await;
    let (c, db, dumps) = (&f.c, &f.db, &f.dumps);
    let job = c
        .api
        .submit(json!({"group": "default", "retry": {"max_attempts": 3},
            "spec": {"kind": "dump", "connection": "main", "database": db}}))
        .await
        .expect("submit");
    let done = c.api.wait_terminal(job.id, WAIT).await.expect("terminal");
    assert_eq!(done.state, JobState::Failed, "{}", c.logs());
    assert_eq!(
        done.attempts.len(),
        1,
        "not retried: it would not fit next time either"
    );
    let err = done.error.unwrap_or_default();
    assert!(err.to_lowercase().contains("free"), "{err}");
    assert!(
        err.contains("dump_reserve_mb (1000000000 MiB)"),
        "the refusal names the configured reserve: {err}"
    );
    let written: Vec<PathBuf> = walk(dumps)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".sql.zst"))
        .collect();
    assert!(written.is_empty(), "nothing was written: {written:?}");
    assert!(
        !c.agents[0].log_text().contains("Dump started"),
        "the tool never ran"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_verify_the_database_server_certificate() {
    baton_tests::require_mariadb!();
    let mdb = mariadb::server().await.expect(mariadb::INSTALL_HINT);
    let (ca, other_ca) = mdb.tls_cas();
    let db = mdb.create_database("e2etls").expect("database");
    let (user, password) = mdb.create_user(&db, &["ALL"]).expect("user");
    let dir = tempfile::tempdir().expect("tmp");
    let pw = dir.path().join("pw");
    mariadb::write_password_file(&pw, &password).expect("pw");
    let base = mdb.connection_toml("good", &db, &user, &pw);
    let bad = mdb.connection_toml("bad", &db, &user, &pw);
    let conns = format!(
        "{base}[connections.good.tls]\nca_file = \"{}\"\nverify = \"full\"\n\n{bad}[connections.bad.tls]\nca_file = \"{}\"\n",
        ca.display(),
        other_ca.display()
    );
    let c = Cluster::start_with(1, "", move |o| o.extra = conns.clone())
        .await
        .expect("cluster");
    let sql = |conn: &str| {
        json!({"group": "default", "retry": {"max_attempts": 2, "initial_backoff_ms": 10},
            "spec": {"kind": "sql", "connection": conn,
                     "sql": "SHOW SESSION STATUS LIKE 'Ssl_cipher'"}})
    };
    let good = c.api.submit(sql("good")).await.expect("submit");
    let done = c.api.wait_terminal(good.id, WAIT).await.expect("terminal");
    assert_eq!(done.state, JobState::Succeeded, "{done:#?}\n{}", c.logs());
    let d = data(&done);
    let cipher = d["result_sets"][0]["rows"][0][1]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!cipher.is_empty(), "the session is encrypted: {d:#}");
    let bad = c.api.submit(sql("bad")).await.expect("submit");
    let done = c.api.wait_terminal(bad.id, WAIT).await.expect("terminal");
    assert_eq!(
        done.state,
        JobState::Failed,
        "a server certificate from another CA is refused"
    );
    assert_eq!(
        done.attempts.len(),
        1,
        "a TLS failure is not retried: {:?}",
        done.error
    );
}
