//! Retention end to end (issue 13 point 9, point 3's `audit_keep`): a real
//! controller with short `job_keep` / `audit_keep` deletes finished jobs
//! (and their attempts) and old audit rows in the background, counts them
//! in `/metrics`, and keeps what is still running; and (issue 15) prunes
//! a schedule's old occurrences while its totals keep counting them.

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

/// GET `path` as JSON (200 expected).
async fn get_json(c: &Cluster, path: &str) -> serde_json::Value {
    let r = c.api.raw(Method::GET, path, None, &[]).await.expect("get");
    assert!(r.status.is_success(), "{path}: {} {}", r.status, r.body);
    r.body
}

/// Issue 15: a per-second schedule under a 2 s `job_keep`: its old
/// occurrences are pruned (counted in `/metrics`) while its totals keep
/// counting them and its newest occurrence stays; its jobs name it, and
/// `GET /v1/jobs?schedule=` lists only them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedule_occurrences_are_pruned_and_their_totals_kept() {
    let c = Cluster::start_with(1, "job_keep = \"2s\"", |_| {})
        .await
        .expect("cluster");
    c.wait_agents_online().await.expect("online");
    let plain = c
        .api
        .submit(json!({"group": "default", "spec": {"kind": "noop", "sleep_ms": 0}}))
        .await
        .expect("submit");
    let wire = get_json(&c, &format!("/v1/jobs/{}", plain.id)).await;
    assert!(
        wire.get("schedule").is_none(),
        "a submitted job names none: {wire}"
    );
    let schedule = json!({"name": "tick", "group": "default", "cron": "* * * * * *", "tz": "UTC",
        "job": {"spec": {"kind": "noop", "sleep_ms": 0}, "retry": {"max_attempts": 1}}});
    let r = c
        .api
        .raw(
            Method::POST,
            "/v1/schedules",
            Some(serde_json::to_vec(&schedule).expect("json")),
            &[],
        )
        .await
        .expect("create");
    assert!(r.status.is_success(), "{} {}", r.status, r.body);
    let end = Instant::now() + Duration::from_secs(40);
    loop {
        let m = c.api.metrics().await.expect("metrics");
        if metric(&m, "baton_pruned_rows_total{table=\"occurrences\"}") >= 5 {
            break;
        }
        assert!(
            Instant::now() < end,
            "no occurrences pruned\n{m}\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let show = get_json(&c, "/v1/schedules/tick").await;
    let counted: u64 = ["fired", "skipped", "missed", "pending"]
        .iter()
        .map(|s| show["counts"][s].as_u64().unwrap_or(0))
        .sum();
    let history = get_json(&c, "/v1/schedules/tick/history?limit=1000").await;
    let kept: u64 = history["occurrences"]
        .as_array()
        .expect("occurrences")
        .iter()
        .map(|o| o["count"].as_u64().unwrap_or(1))
        .sum();
    assert!(
        kept + 5 <= counted,
        "the totals count pruned rows: {kept} kept, {counted} counted\n{show}"
    );
    assert!(
        show["last"].is_object(),
        "the newest occurrence stays: {show}"
    );

    let listed = get_json(&c, "/v1/jobs?schedule=tick&limit=1000").await;
    let jobs = listed["jobs"].as_array().expect("jobs");
    assert!(!jobs.is_empty(), "{listed}");
    assert!(
        jobs.iter()
            .all(|j| j["schedule"] == "tick" && j["nominal_at"].is_string()),
        "{listed}"
    );
    assert!(jobs.iter().all(|j| j["id"] != plain.id), "{listed}");
    let id = jobs[0]["id"].as_i64().expect("id");
    let job = c.api.job(id).await.expect("job");
    assert_eq!(job.schedule.as_deref(), Some("tick"));
    assert!(job.nominal_at.is_some() && job.run_id.is_none());
}

/// Issue 18 point 5: `baton_lease_expirations_total` counts expiries as
/// they happen, so retention pruning the expired attempt (and its job)
/// does not lower it (it was a count of the stored attempts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_expirations_stay_counted_after_their_attempts_are_pruned() {
    let mut c = Cluster::start_with(2, "job_keep = \"2s\"", |_| {})
        .await
        .expect("cluster");
    c.wait_agents_online().await.expect("online");
    let job = c
        .api
        .submit(json!({"group": "default", "lease_ttl_ms": 2000,
            "retry": {"max_attempts": 2, "retry_on": ["lease_expired"]},
            "spec": {"kind": "noop", "sleep_ms": 3000}}))
        .await
        .expect("submit");
    let (_, holder) = c.api.wait_running(job.id, WAIT).await.expect("running");
    let stop = nix::sys::signal::Signal::SIGSTOP;
    c.agent(&holder).proc().signal(stop).expect("stop");
    let taken = c
        .api
        .wait_for(job.id, WAIT, "re-granted", |j| {
            j.lease_agent.as_deref().is_some_and(|a| a != holder)
        })
        .await
        .expect("takeover");
    let cont = nix::sys::signal::Signal::SIGCONT;
    c.agent(&holder).proc().signal(cont).expect("cont");
    assert_eq!(taken.attempts.len(), 2);
    let done = c.api.wait_terminal(job.id, WAIT).await.expect("terminal");
    assert_eq!(done.state, JobState::Succeeded, "{}", c.logs());
    let expirations = |m: &str| metric(m, "baton_lease_expirations_total ");
    let m = c.api.metrics().await.expect("metrics");
    assert_eq!(expirations(&m), 1, "{m}");
    // Pruned within keep + a few sweeps; the count stays.
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let r = c
            .api
            .raw(Method::GET, &format!("/v1/jobs/{}", job.id), None, &[])
            .await
            .expect("get");
        if r.status == 404 {
            break;
        }
        assert!(Instant::now() < end, "never pruned\n{}", c.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let m = c.api.metrics().await.expect("metrics");
    assert!(
        metric(&m, "baton_pruned_rows_total{table=\"attempts\"}") >= 2,
        "{m}"
    );
    assert_eq!(expirations(&m), 1, "{m}");
}
