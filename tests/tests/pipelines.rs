//! Pipelines end to end: real controller and agent processes, a real
//! MariaDB for the dump, step outputs passed by reference, conditions,
//! placement on the agent that holds a file, and retry of a failed run.

use std::path::{Path, PathBuf};
use std::time::Duration;

use baton_proto::pipeline::{RunState, RunView, StepRunView, StepState};
use baton_proto::{JobState, JobView};
use baton_tests::cluster::Cluster;
use baton_tests::mariadb;
use reqwest::Method;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(90);

fn step<'a>(r: &'a RunView, name: &str) -> &'a StepRunView {
    r.steps
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no step {name} in {r:#?}"))
}

fn sh(script: &str) -> Value {
    json!({
        "spec": {"kind": "command", "program": "/bin/sh", "args": ["-c", script]},
        "retry": {"max_attempts": 1},
    })
}

fn noop() -> Value {
    json!({"spec": {"kind": "noop"}, "retry": {"max_attempts": 1}})
}

fn count_lines(path: &Path, word: &str) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.trim() == word)
        .count()
}

/// Two agents with connection `main` to a fresh MariaDB database, each
/// dumping to its own directory, `sha256sum` allow-listed.
struct DumpFixture {
    c: Cluster,
    db: String,
    dumps: PathBuf,
    _secrets: tempfile::TempDir,
}

async fn dump_fixture() -> DumpFixture {
    let mdb = mariadb::server().await.expect(mariadb::INSTALL_HINT);
    let db = mdb.create_database("pipe").expect("database");
    mdb.sql(
        Some(&db),
        "CREATE TABLE orders (id INT PRIMARY KEY, amount DECIMAL(10,2));
         INSERT INTO orders VALUES (1, 10.50), (2, 99.99);",
    )
    .expect("setup sql");
    let (user, password) = mdb.create_user(&db, &["ALL"]).expect("user");
    mdb.grant(&user, &["SELECT"], "mysql.proc").expect("grant");
    let secrets = tempfile::Builder::new()
        .prefix("baton-e2e-secrets-")
        .tempdir()
        .expect("tmp");
    let pw = secrets.path().join("main.password");
    mariadb::write_password_file(&pw, &password).expect("password file");
    let dumps = secrets.path().join("dumps");
    let conn = mdb.connection_toml("main", &db, &user, &pw);
    let dumps_of = dumps.clone();
    let c = Cluster::start_with(2, "", move |o| {
        o.extra = format!("{conn}dump_dir = \"{}\"\n", dumps_of.join(&o.id).display());
        o.allow.push("/usr/bin/sha256sum".into());
    })
    .await
    .expect("cluster");
    c.wait_agents_online().await.expect("online");
    DumpFixture {
        c,
        db,
        dumps,
        _secrets: secrets,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dump_then_a_command_on_its_agent_reads_the_file_by_reference() {
    baton_tests::require_mariadb!();
    let f = dump_fixture().await;
    let c = &f.c;
    let mut spec = json!({
        "name": "dump-check",
        "group": "default",
        "timeout_ms": 120_000,
        "steps": [
            {"name": "dump",
             "job": {"spec": {"kind": "dump", "connection": "main", "database": f.db},
                     "retry": {"max_attempts": 1}}},
            {"name": "check", "depends_on": ["dump"], "same_agent_as": "dump",
             "job": {"spec": {"kind": "command", "program": "/usr/bin/sha256sum",
                              "args": ["${steps.dump.result.file}"]},
                     "retry": {"max_attempts": 1}}},
        ],
    });
    // A reference to an unknown step is refused when the pipeline is defined.
    spec["steps"][1]["job"]["spec"]["args"][0] = json!("${steps.dmup.result.file}");
    let bad = c
        .api
        .raw(
            Method::POST,
            "/v1/pipelines",
            Some(serde_json::to_vec(&spec).expect("json")),
            &[],
        )
        .await
        .expect("post");
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert!(bad.body.to_string().contains("dmup"), "{}", bad.body);
    spec["steps"][1]["job"]["spec"]["args"][0] = json!("${steps.dump.result.file}");
    c.api.create_pipeline(spec).await.expect("create");
    // Two runs at once, one slot per agent: their dumps may land on either
    // agent, and each check must follow its own dump.
    let a = c.api.start_run("dump-check").await.expect("run");
    let b = c.api.start_run("dump-check").await.expect("run");
    let mut dump_agents = Vec::new();
    for id in [a.id, b.id] {
        let r = c.api.wait_run_ended(id, WAIT).await.expect("ended");
        assert_eq!(r.state, RunState::Succeeded, "{r:#?}\n{}", c.logs());
        let (dump, check) = (step(&r, "dump"), step(&r, "check"));
        assert_eq!(dump.state, StepState::Succeeded);
        assert_eq!(check.state, StepState::Succeeded);
        let agent = dump.agent.clone().expect("dump agent");
        assert_eq!(check.agent.as_deref(), Some(agent.as_str()), "{r:#?}");
        let dj = c.api.job(dump.job_id.expect("job")).await.expect("job");
        let cj = c.api.job(check.job_id.expect("job")).await.expect("job");
        assert_eq!(cj.attempts[0].agent_id, agent, "{cj:#?}");
        let data = dj
            .result
            .as_ref()
            .and_then(|r| r.data.clone())
            .expect("data");
        let path = data["path"].as_str().expect("path").to_owned();
        assert!(
            Path::new(&path).starts_with(f.dumps.join(&agent)),
            "{path} is in {agent}'s dump dir"
        );
        let sha = data["sha256"].as_str().expect("sha256");
        assert_eq!(stdout(&cj), format!("{sha}  {path}\n"), "{cj:#?}");
        dump_agents.push(agent);
    }
    println!("dumps ran on {dump_agents:?}");
}

fn stdout(j: &JobView) -> String {
    j.result
        .as_ref()
        .map(|r| r.stdout.clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_step_runs_its_failure_step_and_skips_the_others() {
    let c = Cluster::start(1).await.expect("cluster");
    c.wait_agents_online().await.expect("online");
    let notify = json!({
        "spec": {"kind": "command", "program": "/bin/echo", "args": ["build failed"]},
        "retry": {"max_attempts": 1},
    });
    c.api
        .create_pipeline(json!({
            "name": "ci",
            "group": "default",
            "steps": [
                {"name": "build", "job": {"spec": {"kind": "command", "program": "/bin/false"},
                                          "retry": {"max_attempts": 1}}},
                {"name": "notify", "depends_on": ["build"], "on": "failure", "job": notify},
                {"name": "deploy", "depends_on": ["build"], "job": noop()},
                {"name": "announce", "depends_on": ["deploy"], "job": noop()},
                {"name": "cleanup", "depends_on": ["build"], "on": "always", "job": noop()},
            ],
        }))
        .await
        .expect("create");
    let r = c.api.start_run("ci").await.expect("run");
    let r = c.api.wait_run_ended(r.id, WAIT).await.expect("ended");
    assert_eq!(r.state, RunState::Failed, "{r:#?}");
    assert_eq!(step(&r, "build").state, StepState::Failed, "{r:#?}");
    assert_eq!(step(&r, "notify").state, StepState::Succeeded, "{r:#?}");
    assert_eq!(step(&r, "cleanup").state, StepState::Succeeded, "{r:#?}");
    for s in ["deploy", "announce"] {
        assert_eq!(step(&r, s).state, StepState::Skipped, "{r:#?}");
        assert_eq!(
            step(&r, s).job_id,
            None,
            "a skipped step made no job: {r:#?}"
        );
    }
    let n = c
        .api
        .job(step(&r, "notify").job_id.expect("job"))
        .await
        .expect("job");
    assert_eq!(stdout(&n), "build failed\n");
    let b = c
        .api
        .job(step(&r, "build").job_id.expect("job"))
        .await
        .expect("job");
    assert_eq!(b.state, JobState::Failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_of_a_failed_run_reruns_only_failed_and_unrun_steps() {
    let c = Cluster::start(1).await.expect("cluster");
    c.wait_agents_online().await.expect("online");
    let marks = c.path("marks");
    let flag = c.path("flag");
    let m = marks.display();
    c.api
        .create_pipeline(json!({
            "name": "flaky",
            "group": "default",
            "steps": [
                {"name": "prepare", "job": sh(&format!("echo prepare >> {m}"))},
                {"name": "flaky", "depends_on": ["prepare"],
                 "job": sh(&format!("echo flaky >> {m}; test -e {}", flag.display()))},
                {"name": "publish", "depends_on": ["flaky"],
                 "job": sh(&format!("echo publish >> {m}"))},
            ],
        }))
        .await
        .expect("create");
    let r = c.api.start_run("flaky").await.expect("run");
    let first = c.api.wait_run_ended(r.id, WAIT).await.expect("ended");
    assert_eq!(first.state, RunState::Failed, "{first:#?}");
    assert_eq!(step(&first, "prepare").state, StepState::Succeeded);
    assert_eq!(step(&first, "flaky").state, StepState::Failed);
    assert_eq!(step(&first, "publish").state, StepState::Skipped);
    assert_eq!(first.attempt, 1);
    std::fs::write(&flag, "").expect("flag");
    let again = c.api.run_op(r.id, "retry").await.expect("retry");
    assert_eq!(again.id, r.id);
    assert_eq!(again.attempt, 2, "{again:#?}");
    let second = c.api.wait_run_ended(r.id, WAIT).await.expect("ended");
    assert_eq!(
        second.state,
        RunState::Succeeded,
        "{second:#?}\n{}",
        c.logs()
    );
    assert!(second.steps.iter().all(|s| s.state == StepState::Succeeded));
    assert_eq!(
        step(&second, "prepare").job_id,
        step(&first, "prepare").job_id,
        "the succeeded step keeps its job"
    );
    assert_ne!(step(&second, "flaky").job_id, step(&first, "flaky").job_id);
    assert!(step(&second, "publish").job_id.is_some());
    assert_eq!(count_lines(&marks, "prepare"), 1, "prepare ran once");
    assert_eq!(count_lines(&marks, "flaky"), 2);
    assert_eq!(count_lines(&marks, "publish"), 1);
    // A succeeded run is not retried.
    let refused = c
        .api
        .raw(Method::POST, &format!("/v1/runs/{}/retry", r.id), None, &[])
        .await
        .expect("post");
    assert!(refused.status.is_client_error(), "{}", refused.status);
}
