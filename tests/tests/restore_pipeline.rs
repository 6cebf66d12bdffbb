//! `restore` end to end: real controller and agent processes and a real
//! MariaDB. A pipeline dumps a database (with its restore check, so the
//! manifest holds table figures) and restores the file into a new database
//! on the agent that wrote it (`${steps.dump.result.file}`,
//! `same_agent_as`); a second run is refused because that database exists.

use std::time::Duration;

use baton_proto::JobView;
use baton_proto::pipeline::{RunState, RunView, StepRunView, StepState};
use baton_tests::cluster::Cluster;
use baton_tests::mariadb;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(120);

fn step<'a>(r: &'a RunView, name: &str) -> &'a StepRunView {
    r.steps
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no step {name} in {r:#?}"))
}

fn data(j: &JobView) -> Value {
    j.result
        .as_ref()
        .and_then(|r| r.data.clone())
        .unwrap_or(Value::Null)
}

/// Drops the restored database at the end, even on panic.
struct DropDb(&'static mariadb::MariaDb, String);

impl Drop for DropDb {
    fn drop(&mut self) {
        let _ = self
            .0
            .sql(None, &format!("DROP DATABASE IF EXISTS `{}`", self.1));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dump_is_restored_on_its_agent_and_a_second_restore_is_refused() {
    baton_tests::require_mariadb!();
    let mdb = mariadb::server().await.expect(mariadb::INSTALL_HINT);
    let db = mdb.create_database("rst").expect("database");
    let copy = format!("{db}_c");
    let _cleanup = [DropDb(mdb, db.clone()), DropDb(mdb, copy.clone())];
    mdb.sql(
        Some(&db),
        "CREATE TABLE orders (id INT PRIMARY KEY, amount DECIMAL(10,2), note TEXT);
         INSERT INTO orders SELECT seq, seq / 7, CONCAT('order ', seq) FROM seq_1_to_2000;",
    )
    .expect("setup sql");
    let (user, password) = mdb.create_user(&db, &["ALL"]).expect("user");
    mdb.grant(&user, &["SELECT"], "mysql.proc").expect("grant");
    mdb.grant(
        &user,
        &["ALL"],
        &format!("`{}`.*", copy.replace('_', "\\_")),
    )
    .expect("grant on the copy");
    mdb.grant(&user, &["ALL"], "`baton\\_verify\\_%`.*")
        .expect("grant for the restore check");
    let secrets = tempfile::Builder::new()
        .prefix("baton-e2e-restore-")
        .tempdir()
        .expect("tmp");
    let pw = secrets.path().join("main.password");
    mariadb::write_password_file(&pw, &password).expect("password file");
    let conn = mdb.connection_toml("main", &db, &user, &pw);
    let dumps = secrets.path().join("dumps");
    let c = Cluster::start_with(2, "", move |o| {
        o.extra = format!("{conn}dump_dir = \"{}\"\n", dumps.join(&o.id).display());
    })
    .await
    .expect("cluster");
    c.wait_agents_online().await.expect("online");
    c.api
        .create_pipeline(json!({
            "name": "dump-restore",
            "group": "default",
            "timeout_ms": 240_000,
            "steps": [
                {"name": "dump",
                 "job": {"spec": {"kind": "dump", "connection": "main", "database": db,
                                  "verify": true},
                         "retry": {"max_attempts": 1}}},
                {"name": "restore", "depends_on": ["dump"], "same_agent_as": "dump",
                 "job": {"spec": {"kind": "restore", "connection": "main",
                                  "source": {"file": "${steps.dump.result.file}"},
                                  "database": copy},
                         "retry": {"max_attempts": 1}}},
            ],
        }))
        .await
        .expect("create");

    let run = c.api.start_run("dump-restore").await.expect("run");
    let r = c.api.wait_run_ended(run.id, WAIT).await.expect("ended");
    assert_eq!(r.state, RunState::Succeeded, "{r:#?}\n{}", c.logs());
    let (dump, restore) = (step(&r, "dump"), step(&r, "restore"));
    assert_eq!(
        restore.agent, dump.agent,
        "the restore ran where the file is"
    );
    let dj = c.api.job(dump.job_id.expect("job")).await.expect("job");
    let rj = c.api.job(restore.job_id.expect("job")).await.expect("job");
    let (dd, rd) = (data(&dj), data(&rj));
    assert_eq!(rd["source"]["file"], dd["path"], "{rd:#}");
    assert_eq!(rd["source"]["sha256"], dd["sha256"]);
    assert_eq!(rd["tables_compared"], 1, "{rd:#}");
    assert_eq!(rd["mismatches"], json!([]));
    assert_eq!(
        rd["tables"], dd["verify"]["tables"],
        "the manifest's figures"
    );
    assert_eq!(rd["tables"][0]["rows"], 2000);
    let sums = |name: &str| {
        mdb.sql(
            None,
            &format!("CHECKSUM TABLE `{name}`.orders; SELECT COUNT(*) FROM `{name}`.orders"),
        )
        .expect("checksum")
        .lines()
        .map(|l| l.split('\t').next_back().unwrap_or("").to_owned())
        .collect::<Vec<_>>()
    };
    assert_eq!(sums(&copy), sums(&db), "the server's own figures agree");

    // Again: the copy exists and the step does not ask to replace it.
    let again = c.api.start_run("dump-restore").await.expect("run");
    let r = c.api.wait_run_ended(again.id, WAIT).await.expect("ended");
    assert_eq!(r.state, RunState::Failed, "{r:#?}");
    let restore = step(&r, "restore");
    assert_eq!(restore.state, StepState::Failed);
    let rj = c.api.job(restore.job_id.expect("job")).await.expect("job");
    let error = rj.error.clone().unwrap_or_default();
    assert!(error.contains("already exists"), "{error}");
    assert_eq!(rj.attempts.len(), 1, "a refusal is not retried");
    assert_eq!(sums(&copy), sums(&db), "the copy is untouched");
}
