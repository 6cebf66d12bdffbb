//! Output that is not UTF-8, or larger than a bound, with real processes: a
//! job that finished is reported once, never dropped and run again.

use std::time::Duration;

use base64::Engine as _;
use baton_proto::{JobState, JobView, OutputEncoding};
use baton_tests::cluster::Cluster;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

fn sh(script: &str) -> serde_json::Value {
    json!({
        "group": "default",
        "spec": {"kind": "command", "program": "/bin/sh", "args": ["-c", script]},
        "lease_ttl_ms": 5_000,
        "retry": {"max_attempts": 3, "initial_backoff_ms": 0, "jitter": 0.0}
    })
}

fn b64(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("valid base64")
}

/// Submit, wait, and check it succeeded at the first attempt.
async fn run_once(c: &Cluster, script: &str) -> JobView {
    let job = c.api.submit(sh(script)).await.expect("submit");
    let done = c.api.wait_terminal(job.id, WAIT).await.expect("terminal");
    assert_eq!(done.state, JobState::Succeeded, "{:#?}\n{}", done, c.logs());
    assert_eq!(
        done.attempts.len(),
        1,
        "ran more than once: {:#?}",
        done.attempts
    );
    done
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_that_is_not_utf8_completes_in_one_attempt_and_is_kept_whole() {
    let c = Cluster::start(1).await.expect("cluster");
    c.wait_agents_online().await.expect("online");
    // The issue's reproduction: 400,000 bytes of 0xFF on stdout.
    let done = run_once(&c, r"head -c 400000 /dev/zero | tr '\000' '\377'").await;
    let r = done.result.expect("result");
    assert_eq!(r.stdout_encoding, Some(OutputEncoding::Base64));
    assert!(!r.truncated);
    assert_eq!(b64(&r.stdout), vec![0xFF; 400_000]);

    // Random bytes on stderr, kept byte for byte (a copy goes to a file).
    let copy = c.path("random");
    let script = format!(
        "head -c 300000 /dev/urandom | tee {} >&2; echo fine",
        copy.display()
    );
    let r = run_once(&c, &script).await.result.expect("result");
    assert_eq!(r.stdout, "fine\n");
    assert_eq!(r.stdout_encoding, None);
    assert_eq!(r.stderr_encoding, Some(OutputEncoding::Base64));
    assert_eq!(b64(&r.stderr), std::fs::read(&copy).expect("copy"));

    // More than the capture bound (1 MiB): cut so the text sent fits it.
    let r = run_once(&c, r"head -c 3000000 /dev/zero | tr '\000' '\376'")
        .await
        .result
        .expect("result");
    assert!(r.truncated);
    assert!(r.stdout.len() <= 1 << 20, "{}", r.stdout.len());
    assert_eq!(b64(&r.stdout), vec![0xFE; (1 << 20) / 4 * 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_refused_for_size_is_cut_down_and_sent_again() {
    // The controller takes less output than the agent captures (1 MiB).
    let c = Cluster::start_with(1, "max_output_bytes = 65536\n", |_| {})
        .await
        .expect("cluster");
    c.wait_agents_online().await.expect("online");
    let done = run_once(&c, r"head -c 200000 /dev/zero | tr '\000' 'a'").await;
    let r = done.result.expect("result");
    assert!(r.truncated);
    assert_eq!(r.stdout, "a".repeat(4096));
    let error = done.attempts[0].error.clone().unwrap_or_default();
    assert!(
        error.contains("refused the full result as too large"),
        "{error:?}\n{}",
        c.logs()
    );
    assert!(
        c.agents[0]
            .log_text()
            .contains("Completion refused as too large; sending it again cut down"),
        "{}",
        c.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_of_a_job_writing_bytes_that_are_not_utf8_stay_within_the_tail_bound() {
    // The agent's tail as large as the controller takes (16 KiB, its default).
    let c = Cluster::start_with(1, "", |o| o.extra = "log_tail_bytes = 16384\n".into())
        .await
        .expect("cluster");
    c.wait_agents_online().await.expect("online");
    // Runs past several heartbeats (TTL 2 s: every ~0.7 s) with a log tail of
    // 0xFF bytes, each one 3 bytes once made text.
    let mut job = sh(r"head -c 100000 /dev/zero | tr '\000' '\377'; sleep 4");
    job["lease_ttl_ms"] = json!(2_000);
    let job = c.api.submit(job).await.expect("submit");
    let done = c.api.wait_terminal(job.id, WAIT).await.expect("terminal");
    assert_eq!(done.state, JobState::Succeeded, "{:#?}\n{}", done, c.logs());
    assert_eq!(done.attempts.len(), 1, "{:#?}", done.attempts);
    let log = c.agents[0].log_text();
    assert!(!log.contains("Heartbeat refused as too large"), "{log}");
}
