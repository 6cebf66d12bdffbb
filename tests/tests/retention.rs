//! Retention end to end (issue 13 point 9, point 3's `audit_keep`): a real
//! controller with short `job_keep` / `audit_keep` deletes finished jobs
//! (and their attempts) and old audit rows in the background, counts them
//! in `/metrics`, and keeps what is still running.

use std::time::{Duration, Instant};

use baton_proto::JobState;
use baton_tests::cluster::Cluster;
use reqwest::Method;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

fn metric(text: &str, line_prefix: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(line_prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_jobs_and_old_audit_rows_are_pruned_and_running_jobs_stay() {
    let c = Cluster::start_with(2, "job_keep = \"2s\"\naudit_keep = \"3s\"", |_| {})
        .await
        .expect("cluster");
    c.wait_agents_online().await.expect("online");
    let long = c
        .api
        .submit(json!({"group": "default",
            "spec": {"kind": "command", "program": "/bin/sleep", "args": ["12"]}}))
        .await
        .expect("submit");
    c.api.wait_running(long.id, WAIT).await.expect("running");
    let mut done = Vec::new();
    for i in 0..20 {
        let j = c
            .api
            .submit(json!({"group": "default",
                "spec": {"kind": "command", "program": "/bin/echo", "args": [format!("job {i}")]}}))
            .await
            .expect("submit");
        done.push(j.id);
    }
    for &id in &done {
        let j = c.api.wait_terminal(id, WAIT).await.expect("terminal");
        assert_eq!(j.state, JobState::Succeeded);
    }
    // Gone within keep + a few sweeps.
    let end = Instant::now() + Duration::from_secs(20);
    for &id in &done {
        loop {
            let r = c
                .api
                .raw(Method::GET, &format!("/v1/jobs/{id}"), None, &[])
                .await
                .expect("get");
            if r.status == 404 {
                break;
            }
            assert!(
                Instant::now() < end,
                "job {id} was never pruned\n{}",
                c.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let j = c.api.job(long.id).await.expect("the running job stays");
    assert_eq!(j.state, JobState::Running);
    let m = c.api.metrics().await.expect("metrics");
    assert!(
        metric(&m, "baton_pruned_rows_total{table=\"jobs\"}") >= 20,
        "{m}"
    );
    assert!(
        metric(&m, "baton_pruned_rows_total{table=\"attempts\"}") >= 20,
        "{m}"
    );
    // The audit rows of the submits above (older than 3 s) go too.
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let submits = c
            .api
            .audit_entries()
            .await
            .expect("audit")
            .iter()
            .filter(|e| e["action"] == "POST /v1/jobs")
            .count();
        if submits == 0 {
            break;
        }
        assert!(
            Instant::now() < end,
            "{submits} old audit rows left\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let m = c.api.metrics().await.expect("metrics");
    assert!(
        metric(&m, "baton_pruned_rows_total{table=\"audit\"}") >= 21,
        "{m}"
    );
    // The long job still finishes and is recorded.
    let j = c.api.wait_terminal(long.id, WAIT).await.expect("terminal");
    assert_eq!(j.state, JobState::Succeeded);
}
