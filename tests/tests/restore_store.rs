//! `restore` from an object store and the restore drill, end to end: real
//! controller and agent processes, the real MariaDB, a real S3-compatible
//! server (moto, `scripts/s3server`). The object is put there by a real dump
//! → upload pipeline; tampering is done through the server with a reference
//! client (boto3): the object's bytes replaced, its `sha256` metadata kept.
//!
//! - an object restored by key (figures equal to the dump's manifest, the
//!   download removed); over an existing database without `replace` refused
//!   before any download (a key that does not exist is never looked at); a
//!   tampered object refused before the database is created;
//! - `batonctl pipeline create --template restore-drill` (with a schedule):
//!   the drill passes and drops its scratch database; against a tampered
//!   object it fails, still drops the scratch database, and a webhook
//!   receiver gets `pipeline_failed`.
//!
//! - the server SIGSTOPped in the middle of a restore's download: the
//!   attempt times out with the database untouched; after SIGCONT the retry
//!   restores.
//! - the same with no job timeout and the store's `read_timeout = "2s"`: the
//!   attempt fails at once, its error naming the store and the stall, the
//!   database untouched; after SIGCONT the retry restores.
//!
//! The fixture (a dumped and uploaded database, the cluster with the store)
//! is `baton_tests::restore_fixture`, shared with `restore_drill_clock.rs`.
//!
//! Not here: a byte flipped in transit by a faulty proxy (tests/src/faultproxy
//! forwards, delays, black-holes and resets; it does not rewrite bytes). What
//! the agent checks is the same either way: the downloaded bytes' sha256
//! against the manifest's.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use baton_proto::pipeline::{RunState, StepState};
use baton_proto::{AttemptOutcome, JobState};
use baton_tests::restore_fixture::{BLOBS, Fixture, Setup, WAIT, data, step};
use baton_tests::s3::BUCKET;
use baton_tests::webhook::Receiver;
use serde_json::{Value, json};

const SECRET: &str = "restore-drill-webhook-secret-0123";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_is_restored_and_a_tampered_one_is_refused_before_the_database() {
    baton_tests::require_s3!();
    baton_tests::require_mariadb!();
    let f = Fixture::start("").await;
    let (c1, c2) = (format!("{}_c1", f.db), format!("{}_c2", f.db));

    let j = f
        .restore(json!({"store": "offsite", "key": f.store_key()}), &c1)
        .await;
    assert_eq!(j.state, JobState::Succeeded, "{j:#?}\n{}", f.c.logs());
    let d = data(&j);
    assert_eq!(d["source"]["store"], "offsite", "{d:#}");
    assert_eq!(d["source"]["key"], f.key.as_str());
    assert_eq!(d["source"]["sha256"], f.sha256.as_str());
    assert_eq!(d["tables_compared"], 1, "{d:#}");
    assert_eq!(d["mismatches"], json!([]));
    assert_eq!(d["tables"][0]["rows"], 500);
    assert_eq!(
        f.mdb
            .sql(None, &format!("SELECT COUNT(*) FROM `{c1}`.orders"))
            .expect("count")
            .trim(),
        "500"
    );
    assert!(f.leftovers().is_empty(), "{:?}", f.leftovers());

    // The target exists and replace is not set: refused before the store is
    // asked (the key does not even exist).
    let j = f
        .restore(
            json!({"store": "offsite", "key": "main/nosuch/x.sql.zst"}),
            &c1,
        )
        .await;
    assert_eq!(j.state, JobState::Failed, "{j:#?}");
    let error = j.error.clone().unwrap_or_default();
    assert!(error.contains("already exists"), "{error}");
    assert_eq!(j.attempts.len(), 1, "a refusal is not retried");

    // A tampered object: refused after the download, before the database.
    f.tamper();
    let j = f
        .restore(json!({"store": "offsite", "key": f.store_key()}), &c2)
        .await;
    assert_eq!(j.state, JobState::Failed, "{j:#?}");
    let error = j.error.clone().unwrap_or_default();
    assert!(
        error.contains("does not match its manifest") && error.contains("download"),
        "{error}"
    );
    assert_eq!(j.attempts.len(), 1, "a mismatch is not retried");
    assert!(!f.database_exists(&c2), "nothing touched the database");
    assert!(f.leftovers().is_empty(), "{:?}", f.leftovers());
}

/// The server SIGSTOPped while a restore downloads its object (a fault
/// proxy paces the body so that the stop lands in the middle): the request
/// hangs (the store's `read_timeout` is longer than the job's timeout
/// here), the attempt ends `timed_out` at the job's timeout, and nothing
/// touched the database (it does not exist while the server is stopped).
/// SIGCONT, and the retry downloads the object again, verifies it and
/// restores it; no download is left behind by either attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_stopped_mid_download_times_the_restore_out_and_the_retry_restores() {
    baton_tests::require_s3!();
    baton_tests::require_mariadb!();
    let f = Fixture::start_with(Setup {
        controller_extra: "",
        tables: BLOBS,
        verify: false,
        proxy: true,
        store: "read_timeout = \"1h\"\n",
    })
    .await;
    let proxy = f.proxy.as_ref().expect("proxy");
    let listing = f.s3.list(BUCKET).expect("list");
    let size = listing
        .objects
        .iter()
        .find(|o| o.key == f.key)
        .expect("object")
        .size;
    let c1 = format!("{}_c1", f.db);
    // About 8 MB/s: the download takes seconds, the stop comes at its start.
    proxy.delay(Duration::from_millis(2));
    let before = proxy.stats().to_client;
    let job =
        f.c.api
            .submit(json!({
                "group": "default",
                "spec": {"kind": "restore", "connection": "main", "database": c1,
                         "source": {"store": "offsite", "key": f.store_key()}},
                "timeout_ms": 90_000,
                "retry": {"max_attempts": 2, "initial_backoff_ms": 1000, "retry_on": ["timeout"]},
            }))
            .await
            .expect("submit");
    f.wait_downloading().await;
    f.s3.freeze().expect("SIGSTOP");
    let first = f.first_outcome(job.id).await;
    assert_eq!(first.0, AttemptOutcome::TimedOut, "{:#?}", first.1);
    let got = proxy.stats().to_client - before;
    assert!(
        got < size,
        "the download was cut short by the stop: {got} of {size} bytes"
    );
    assert!(
        !f.database_exists(&c1),
        "nothing touched the database before the sha256 was checked"
    );

    f.s3.thaw().expect("SIGCONT");
    proxy.pass();
    let done = f.c.api.wait_terminal(job.id, WAIT).await.expect("ended");
    assert_eq!(done.state, JobState::Succeeded, "{done:#?}\n{}", f.c.logs());
    assert_eq!(done.attempts.len(), 2, "{done:#?}");
    let d = data(&done);
    assert_eq!(d["source"]["sha256"], f.sha256.as_str(), "{d:#}");
    assert_eq!(d["mismatches"], json!([]), "{d:#}");
    assert_eq!(d["tables"][0]["rows"], 24576, "{d:#}");
    assert_eq!(
        f.mdb
            .sql(None, &format!("SELECT COUNT(*) FROM `{c1}`.blobs"))
            .expect("count")
            .trim(),
        "24576"
    );
    assert!(f.leftovers().is_empty(), "{:?}", f.leftovers());
}

/// Requests the receiver got for `event`, waiting up to `WAIT` for one.
async fn wait_event(rx: &Receiver, event: &str) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let got: Vec<Value> = rx
            .received()
            .iter()
            .filter(|r| r.header("x-baton-event") == Some(event))
            .filter_map(|r| serde_json::from_slice(&r.body).ok())
            .collect();
        if !got.is_empty() || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn secret_file(dir: &Path) -> PathBuf {
    let path = dir.join("hook.secret");
    std::fs::write(&path, format!("{SECRET}\n")).expect("secret");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_drill_passes_and_a_tampered_one_fails_drops_scratch_and_notifies() {
    baton_tests::require_s3!();
    baton_tests::require_mariadb!();
    let rx = Receiver::start(&[]).await.expect("receiver");
    let hook_dir = tempfile::tempdir().expect("dir");
    let config = format!(
        "[notifications]\n[[notifications.webhooks]]\nname = \"ops\"\nurl = \"{}\"\n\
         secret_file = \"{}\"\nevents = [\"pipeline_failed\"]\n",
        rx.url("/ops"),
        secret_file(hook_dir.path()).display()
    );
    let f = Fixture::start(&config).await;
    let name = format!("drill-{}", f.db);
    let scratch = format!("baton_drill_{}", name.replace('-', "_"));

    let out = f.create_drill(&name, "0 4 * * 0");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("Pipeline {name} created (2 steps")),
        "{stdout}"
    );
    assert!(stdout.contains(&scratch), "{stdout}");
    let s = f.c.api.schedule(&name).await.expect("schedule");
    assert_eq!(s.spec.pipeline.as_deref(), Some(name.as_str()));

    // The drill passes: the newest object restored into scratch, compared,
    // the scratch database dropped.
    let out = f.ctl(&["pipeline", "run", &name, "--wait"]);
    assert!(
        out.status.success(),
        "{}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        f.c.logs()
    );
    let runs: Value =
        f.c.api
            .get_json(&format!("/v1/pipelines/{name}/runs"))
            .await
            .expect("runs");
    let id = runs["runs"][0]["id"].as_i64().expect("run id");
    let r = f.c.api.run(id).await.expect("run");
    assert_eq!(r.state, RunState::Succeeded, "{r:#?}");
    let rj =
        f.c.api
            .job(step(&r, "restore").job_id.expect("job"))
            .await
            .expect("job");
    let d = data(&rj);
    assert_eq!(d["database"], scratch.as_str(), "{d:#}");
    assert_eq!(d["source"]["key"], f.key.as_str(), "the newest object");
    assert_eq!(d["tables_compared"], 1, "{d:#}");
    assert_eq!(step(&r, "drop_scratch").state, StepState::Succeeded);
    assert!(!f.database_exists(&scratch), "scratch dropped");
    assert!(
        wait_event_now(&rx, "pipeline_failed").is_empty(),
        "no failure"
    );

    // Against a tampered object: the restore fails, scratch is dropped
    // anyway, the run fails and the webhook is told.
    f.tamper();
    let run = f.c.api.start_run(&name).await.expect("run");
    let r = f.c.api.wait_run_ended(run.id, WAIT).await.expect("ended");
    assert_eq!(r.state, RunState::Failed, "{r:#?}\n{}", f.c.logs());
    assert_eq!(step(&r, "restore").state, StepState::Failed);
    assert_eq!(
        step(&r, "drop_scratch").state,
        StepState::Succeeded,
        "{r:#?}"
    );
    let rj =
        f.c.api
            .job(step(&r, "restore").job_id.expect("job"))
            .await
            .expect("job");
    let error = rj.error.clone().unwrap_or_default();
    assert!(error.contains("does not match its manifest"), "{error}");
    assert!(!f.database_exists(&scratch), "scratch dropped");
    assert!(f.leftovers().is_empty(), "{:?}", f.leftovers());
    let events = wait_event(&rx, "pipeline_failed").await;
    assert_eq!(events.len(), 1, "{events:#?}");
    let body = events[0].to_string();
    assert!(body.contains(&name), "{body}");
}

/// Requests for `event` so far.
fn wait_event_now(rx: &Receiver, event: &str) -> Vec<String> {
    rx.received()
        .iter()
        .filter(|r| r.header("x-baton-event") == Some(event))
        .map(|r| r.path.clone())
        .collect()
}

/// Issue 19: the server SIGSTOPped mid-download as above, but the job has
/// no timeout: the store's `read_timeout` (2 s) sees the stall, and the
/// attempt fails (not `timed_out`) with an error naming the store, the
/// request and the stall, before anything touched the database. SIGCONT,
/// and the retry (the job's policy) restores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_download_fails_the_attempt_naming_the_store_and_the_retry_restores() {
    baton_tests::require_s3!();
    baton_tests::require_mariadb!();
    let f = Fixture::start_with(Setup {
        controller_extra: "",
        tables: BLOBS,
        verify: false,
        proxy: true,
        store: "read_timeout = \"2s\"\n",
    })
    .await;
    let proxy = f.proxy.as_ref().expect("proxy");
    let c1 = format!("{}_c1", f.db);
    // About 8 MB/s: the download takes seconds, the stop comes at its start.
    proxy.delay(Duration::from_millis(2));
    let job =
        f.c.api
            .submit(json!({
                "group": "default",
                "spec": {"kind": "restore", "connection": "main", "database": c1,
                         "source": {"store": "offsite", "key": f.store_key()}},
                "retry": {"max_attempts": 2, "initial_backoff_ms": 3000},
            }))
            .await
            .expect("submit");
    f.wait_downloading().await;
    f.s3.freeze().expect("SIGSTOP");
    let (outcome, j) = f.first_outcome(job.id).await;
    let database_then = f.database_exists(&c1);
    f.s3.thaw().expect("SIGCONT");
    proxy.pass();
    assert_eq!(outcome, AttemptOutcome::Failed, "{j:#?}");
    let error = j.attempts[0].error.clone().unwrap_or_default();
    assert!(
        error.contains("store offsite")
            && error.contains("GetObject")
            && error.contains("stalled: the server sent nothing for 2s"),
        "{error}"
    );
    assert!(
        !database_then,
        "nothing touched the database before the sha256 was checked"
    );
    let logs = f.c.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("Store request stalled") && l.contains("offsite")),
        "{logs}"
    );

    let done = f.c.api.wait_terminal(job.id, WAIT).await.expect("ended");
    assert_eq!(done.state, JobState::Succeeded, "{done:#?}\n{}", f.c.logs());
    assert_eq!(done.attempts.len(), 2, "{done:#?}");
    let d = data(&done);
    assert_eq!(d["source"]["sha256"], f.sha256.as_str(), "{d:#}");
    assert_eq!(d["tables"][0]["rows"], 24576, "{d:#}");
    assert_eq!(
        f.mdb
            .sql(None, &format!("SELECT COUNT(*) FROM `{c1}`.blobs"))
            .expect("count")
            .trim(),
        "24576"
    );
    assert!(f.leftovers().is_empty(), "{:?}", f.leftovers());
}
