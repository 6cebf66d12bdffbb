//! A restarted agent ends its dead predecessor's leases at once, with real
//! processes: the agent records each lease it holds under its state dir;
//! after a kill -9 and a restart with the same identity and state dir it
//! reports them (`POST /v1/agents/{id}/leases/abandon`), the controller ends
//! the attempt `agent_restarted` and requeues the job long before the lease
//! TTL. The API case checks the call's rules: only the caller's own current
//! lease ends, anything else is answered `not_current`, a second report is
//! harmless.

use std::time::{Duration, Instant};

use baton_proto::{AttemptOutcome, JobState};
use baton_tests::cluster::Cluster;
use baton_tests::proc::{pid_alive, wait_pids};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);
/// The lease TTL of the jobs here: long, so that only the restart report
/// (not the expiry) can requeue them in the bound below.
const TTL_MS: u64 = 60_000;
/// Correctness bound for restart → re-grant: well under the TTL.
const REGRANT_BOUND: Duration = Duration::from_secs(20);

fn sh(script: &str) -> serde_json::Value {
    json!({
        "group": "default",
        "spec": {"kind": "command", "program": "/bin/sh", "args": ["-c", script]},
        "lease_ttl_ms": TTL_MS,
        "retry": {"max_attempts": 3, "initial_backoff_ms": 0, "jitter": 0.0}
    })
}

/// The pids written to `path` so far, one per line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_ends_its_killed_predecessors_lease_at_once() {
    let mut c = Cluster::start(1).await.expect("cluster");
    c.wait_agents_online().await.expect("online");
    let pids = c.path("pids");
    let job = c
        .api
        .submit(sh(&format!(
            "echo $$ >> {}; exec sleep 300",
            pids.display()
        )))
        .await
        .expect("submit");
    let (_, holder) = c.api.wait_running(job.id, WAIT).await.expect("running");
    let first = wait_pids(&pids, 1).await[0];

    c.agent(&holder).proc().kill9();
    let restarted = Instant::now();
    c.agent(&holder).restart().expect("restart");
    let view = c
        .api
        .wait_for(job.id, WAIT, "re-granted", |j| {
            j.state == JobState::Running && j.attempts.len() == 2
        })
        .await
        .expect("re-granted");
    let took = restarted.elapsed();
    eprintln!(
        "restart -> re-grant: {} ms (lease TTL {TTL_MS} ms)",
        took.as_millis()
    );
    assert!(
        took < REGRANT_BOUND,
        "re-granted {took:?} after the restart; the lease TTL is {TTL_MS} ms\n{}",
        c.logs()
    );
    let (old, new) = (&view.attempts[0], &view.attempts[1]);
    assert_eq!(
        old.outcome,
        Some(AttemptOutcome::AgentRestarted),
        "{view:#?}"
    );
    assert_eq!(view.attempts_spent, 1, "an attempt is spent");
    assert!(new.token > old.token);
    // Never twice at once: the old attempt ended before the new one began.
    let ended = old.ended_at.expect("old attempt ended");
    assert!(ended <= new.started_at, "{view:#?}");
    assert!(new.ended_at.is_none());
    // The old command is gone; the new run is the only one.
    let all = wait_pids(&pids, 2).await;
    assert_eq!(all.len(), 2, "runs started: {all:?}");
    assert!(!pid_alive(first), "the killed agent's command still runs");
    assert!(pid_alive(all[1]), "the new run is not running");
    // The answer to the report may be logged just after the re-grant.
    let end = Instant::now() + WAIT;
    loop {
        let log = c.agent(&holder).log_text();
        if log.contains("Lease of the previous run ended at the controller") {
            break;
        }
        assert!(Instant::now() < end, "{log}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let m = c.api.metrics().await.expect("metrics");
    assert!(
        m.contains("baton_agent_restart_lease_ends_total 1\n"),
        "{m}"
    );
    assert!(m.contains("baton_lease_expirations_total 0\n"), "{m}");

    c.api.cancel(job.id).await.expect("cancel");
    let done = c.api.wait_terminal(job.id, WAIT).await.expect("terminal");
    assert_eq!(done.state, JobState::Cancelled);
    assert_eq!(done.attempts.len(), 2, "{:#?}", done.attempts);
}

/// The agent's secret, once its identity file is written (enrollment
/// counts it online just before it saves the file).
async fn secret(c: &mut Cluster, id: &str) -> String {
    let end = Instant::now() + WAIT;
    loop {
        match c.agent(id).secret() {
            Ok(s) => return s,
            Err(e) => assert!(Instant::now() < end, "no secret for {id}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandon_ends_only_the_callers_current_lease() {
    let mut c = Cluster::start(2).await.expect("cluster");
    c.wait_agents_online().await.expect("online");
    let job = c.api.submit(sh("exec sleep 300")).await.expect("submit");
    let (view, holder) = c.api.wait_running(job.id, WAIT).await.expect("running");
    let token = view.attempts[0].token;
    let other = if holder == "agent-1" {
        "agent-2"
    } else {
        "agent-1"
    };
    let my_secret = secret(&mut c, &holder).await;
    let their_secret = secret(&mut c, other).await;
    let me = c.api.as_agent(&holder, &my_secret);
    let them = c.api.as_agent(other, &their_secret);
    let lease = |t: i64| json!({"leases": [{"job_id": job.id, "token": t}]});
    let path = format!("/v1/agents/{holder}/leases/abandon");

    // Another agent cannot speak for the holder, nor end its lease as itself.
    let r = them.post(&path, lease(token)).await.expect("post");
    assert_eq!(r.status, 403, "{}", r.body);
    let r = them
        .post(&format!("/v1/agents/{other}/leases/abandon"), lease(token))
        .await
        .expect("post");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["results"][0]["outcome"], "not_current", "{}", r.body);
    // No leases, or a token that is not current: refused / nothing changes.
    let r = me.post(&path, json!({"leases": []})).await.expect("post");
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.body["error"]["field"], "leases", "{}", r.body);
    let r = me.post(&path, lease(token + 5)).await.expect("post");
    assert_eq!(r.body["results"][0]["outcome"], "not_current", "{}", r.body);
    let v = c.api.job(job.id).await.expect("job");
    assert_eq!((v.state, v.attempts_spent), (JobState::Running, 0));

    // The holder's current lease ends at once; the job is queued again.
    let r = me.post(&path, lease(token)).await.expect("post");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["results"][0]["outcome"], "ended", "{}", r.body);
    assert_eq!(r.body["results"][0]["state"], "queued", "{}", r.body);
    let v = c.api.job(job.id).await.expect("job");
    assert_eq!(v.attempts[0].outcome, Some(AttemptOutcome::AgentRestarted));
    assert_eq!(v.attempts_spent, 1);
    // Reported twice: harmless.
    let r = me.post(&path, lease(token)).await.expect("post");
    assert_eq!(r.body["results"][0]["outcome"], "not_current", "{}", r.body);
    let v = c.api.job(job.id).await.expect("job");
    assert_eq!(v.attempts_spent, 1);
    // Every report is in the audit log, refusals included.
    let entries = c.api.audit_entries().await.expect("audit");
    let reports: Vec<_> = entries
        .iter()
        .filter(|e| e["action"] == "POST /v1/agents/{id}/leases/abandon")
        .collect();
    assert_eq!(reports.len(), 6, "{entries:?}");
    assert!(reports.iter().any(|e| e["status"] == 403), "{reports:?}");
    c.api.cancel(job.id).await.expect("cancel");
    c.api.wait_terminal(job.id, WAIT).await.expect("terminal");
}
