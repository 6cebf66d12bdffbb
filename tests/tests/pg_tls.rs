//! TLS to PostgreSQL with a pinned CA (`[store] ca_file`, verify-full)
//! against a real server with `ssl = on`, whose `pg_hba.conf` accepts TCP
//! over TLS only (`hostssl`, `hostnossl … reject`) and a password (scram)
//! for the controller's role:
//!
//! - the controller with the server's CA starts, is ready, runs a job, and
//!   its sessions are encrypted;
//! - with another CA it refuses to start, naming the store and `ca_file`
//!   (never the password), and `validate` says the same;
//! - a certificate from the right CA for another host name is refused
//!   (hostname verification).
//!
//! Needs PostgreSQL (a server of the test's own); skips, saying why,
//! without it unless `BATON_TEST_REQUIRE_PG=1`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use baton_proto::JobState;
use baton_tests::pki::DbPki;
use baton_tests::postgres::{self, PgServer};
use baton_tests::proc::{Agent, AgentOpts, Controller, bin};
use serde_json::json;

const PASSWORD: &str = "s3cret-Pw-for-baton";

/// A TLS-only server with role `baton` (password [`PASSWORD`]) owning a
/// fresh database; the PKI; the password file.
struct TlsDb {
    server: PgServer,
    pki: DbPki,
    db: String,
    password_file: PathBuf,
    tmp: tempfile::TempDir,
}

fn tls_db() -> TlsDb {
    let tmp = tempfile::Builder::new()
        .prefix("baton-pgtls-")
        .tempdir()
        .expect("tmp");
    let pki = DbPki::generate(&tmp.path().join("pki")).expect("pki");
    let server = PgServer::start().expect("postgres");
    server
        .enable_tls(&pki.server_cert, &pki.server_key)
        .expect("TLS on");
    server
        .pg
        .sql(
            None,
            &format!("CREATE ROLE baton LOGIN PASSWORD '{PASSWORD}'"),
        )
        .expect("role");
    let db = server.pg.create_database("tls").expect("db");
    server
        .pg
        .sql(None, &format!("ALTER DATABASE {db} OWNER TO baton"))
        .expect("owner");
    let password_file = tmp.path().join("pg.password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).expect("password file");
    TlsDb {
        server,
        pki,
        db,
        password_file,
        tmp,
    }
}

impl TlsDb {
    /// The controller's `[store]` table pinning `ca`.
    fn store_toml(&self, ca: &Path) -> String {
        format!(
            "[store]\nurl = \"postgres://baton@127.0.0.1:{}/{}\"\npassword_file = \"{}\"\nca_file = \"{}\"\n",
            self.server.port,
            self.db,
            self.password_file.display(),
            ca.display()
        )
    }

    /// A config file in a fresh dir under the temp dir, pinning `ca`.
    fn config(&self, name: &str, ca: &Path) -> PathBuf {
        let dir = self.tmp.path().join(name);
        std::fs::create_dir_all(&dir).expect("dir");
        let cfg = dir.join("controller.toml");
        std::fs::write(
            &cfg,
            format!(
                "listen = \"127.0.0.1:0\"\nstate_dir = \"{}\"\nallow_plain_http = true\n{}",
                dir.join("state").display(),
                self.store_toml(ca)
            ),
        )
        .expect("config");
        cfg
    }
}

/// `baton-controller --config cfg [cmd]`, killed after 60 s.
fn run_controller(cfg: &Path, cmd: Option<&str>) -> Output {
    let mut c = Command::new(bin("baton-controller").expect("bin"));
    c.arg("--config").arg(cfg);
    if let Some(cmd) = cmd {
        c.arg(cmd);
    }
    let mut child = c
        .env("BATON_CONTROLLER_LOG", "info,sqlx=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let end = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "the controller kept running with a store it cannot verify:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

/// The controller refuses to start and `validate` fails, both naming the
/// store, `ca_file` and `why`, never the password.
fn assert_refused(t: &TlsDb, name: &str, ca: &Path, why: &[&str]) {
    let cfg = t.config(name, ca);
    for cmd in [None, Some("validate")] {
        let out = run_controller(&cfg, cmd);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let what = cmd.unwrap_or("serve");
        assert!(!out.status.success(), "{what} succeeded: {text}");
        if cmd.is_some() {
            assert_eq!(out.status.code(), Some(78), "validate exits 78: {text}");
        }
        let errors: Vec<&str> = text.lines().filter(|l| l.contains("rror")).collect();
        let line = errors.join("\n");
        assert!(
            line.contains("store")
                && line.contains("ca_file")
                && line.contains(&ca.display().to_string()),
            "{what}: the error names the store and its ca_file: {text}"
        );
        assert!(
            why.iter().any(|w| line.contains(w)),
            "{what}: the error says why ({why:?}): {text}"
        );
        assert!(
            !text.contains(PASSWORD),
            "{what}: the password leaked: {text}"
        );
        println!(
            "pg_tls: {what} with {name}: exit {:?}: {line}",
            out.status.code()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_ca_reaches_a_tls_only_postgres_and_a_wrong_one_is_refused() {
    baton_tests::require_postgres!(own);
    baton_tests::init_crypto();
    let t = tokio::task::block_in_place(tls_db);

    // The harness itself: a plaintext session is refused.
    let plain = postgres::Pg::new(&format!(
        "postgres://postgres@127.0.0.1:{}/postgres?sslmode=disable",
        t.server.port
    ))
    .expect("psql")
    .sql(None, "SELECT 1");
    let err = format!("{:#}", plain.expect_err("plaintext must be refused"));
    assert!(err.contains("no encryption"), "{err}");

    // The right CA: ready, a job runs, every session of `baton` is TLS.
    let dir = t.tmp.path().join("ctl");
    let extra = format!("allow_plain_http = true\n{}", t.store_toml(&t.pki.ca));
    let ctl = Controller::start_env(&dir, "127.0.0.1:0", &extra, None, Vec::new())
        .await
        .expect("the controller starts with the pinned CA");
    let api = ctl.api();
    let mut opts = AgentOpts::new("agent-1");
    opts.enrollment_token = Some(api.enrollment_token(&opts.groups).await.expect("enr"));
    let agent = Agent::start(t.tmp.path(), &ctl.url(), opts).expect("agent");
    api.wait_online(1, Duration::from_secs(60))
        .await
        .expect("online");
    let id = api
        .submit(json!({"group": "default", "spec": {"kind": "noop", "sleep_ms": 10}}))
        .await
        .expect("submit");
    let j = api
        .wait_terminal(id.id, Duration::from_secs(60))
        .await
        .expect("terminal");
    assert_eq!(
        j.state,
        JobState::Succeeded,
        "{j:?}\n{}\n{}",
        ctl.log_text(),
        agent.log_text()
    );
    let sessions = t
        .server
        .pg
        .sql(
            None,
            "SELECT s.ssl, count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
             WHERE a.usename = 'baton' GROUP BY 1 ORDER BY 1",
        )
        .expect("sessions");
    assert!(
        sessions.trim().starts_with("t|") && !sessions.contains("f|"),
        "the controller's sessions are encrypted: {sessions:?}"
    );

    // Another CA: refused at start and by validate.
    tokio::task::block_in_place(|| {
        assert_refused(
            &t,
            "other-ca",
            &t.pki.other_ca,
            &["certificate", "UnknownIssuer"],
        )
    });

    // The right CA, but the server's certificate names another host.
    tokio::task::block_in_place(|| {
        t.server
            .enable_tls(&t.pki.wrong_name_cert, &t.pki.wrong_name_key)
            .expect("swap the certificate");
        assert_refused(&t, "wrong-name", &t.pki.ca, &["NotValidForName", "name"]);
    });
    drop(agent);
    drop(ctl);
}
