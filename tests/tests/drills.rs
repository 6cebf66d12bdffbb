//! Failover drills end to end: a real controller and three real agents; the
//! controller tells the holder of the drill's job to crash, freeze or lose
//! the network, and records the takeover.

use std::process::Command;
use std::time::Duration;

use baton_proto::drill::{DrillEventKind, DrillState, DrillView, ExactlyOnce};
use baton_proto::{AttemptOutcome, JobState, JobView};
use baton_tests::cluster::Cluster;
use baton_tests::proc::bin;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);
const TTL: u64 = 2000;

async fn cluster() -> Cluster {
    let c = Cluster::start(3).await.expect("cluster");
    c.wait_agents_online().await.expect("online");
    c
}

/// Start a drill, expect 201, wait for its verdict.
async fn run_drill(c: &Cluster, method: &str, rto_ms: u64) -> DrillView {
    let raw = c
        .api
        .drill_start(json!({
            "group": "default", "method": method, "lease_ttl_ms": TTL, "rto_ms": rto_ms
        }))
        .await
        .expect("start");
    assert_eq!(raw.status.as_u16(), 201, "{}", raw.body);
    let id = raw.body["id"].as_i64().expect("drill id");
    c.api
        .wait_drill(id, WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()))
}

fn kinds(d: &DrillView) -> Vec<DrillEventKind> {
    d.events.iter().map(|e| e.kind).collect()
}

/// Every event, in order; holder and new holder differ; the faulted lease
/// ended `lease_expired` and only the re-grant's token completed.
async fn assert_failed_over(c: &Cluster, d: &DrillView) -> (String, JobView) {
    use DrillEventKind::*;
    assert_eq!(
        kinds(d),
        vec![
            Started,
            JobGranted,
            FaultSent,
            FaultInjected,
            LeaseExpired,
            JobRegranted,
            JobFinished,
            Verdict
        ],
        "{d:#?}"
    );
    for w in d.events.windows(2) {
        assert!(w[0].at <= w[1].at, "timeline out of order: {d:#?}");
    }
    let r = d.report.as_ref().expect("report");
    let holder = r.holder.clone().expect("holder");
    let new_holder = r.new_holder.clone().expect("new holder");
    assert_ne!(holder, new_holder, "{d:#?}");
    let ev = |k| d.events.iter().find(|e| e.kind == k).expect("event");
    assert_eq!(ev(JobGranted).agent.as_deref(), Some(holder.as_str()));
    assert_eq!(ev(FaultInjected).agent.as_deref(), Some(holder.as_str()));
    assert_eq!(ev(LeaseExpired).agent.as_deref(), Some(holder.as_str()));
    assert_eq!(ev(JobRegranted).agent.as_deref(), Some(new_holder.as_str()));
    let (det, take, total) = (
        r.detection_ms.expect("detection"),
        r.takeover_ms.expect("takeover"),
        r.total_ms.expect("total"),
    );
    assert!(det > 0 && det <= take && take <= total, "{r:?}");
    assert_eq!(r.attempts, 2);
    assert_eq!(r.exactly_once, ExactlyOnce::Proven, "{r:?}");
    let job = c.api.job(d.job_id.expect("job")).await.expect("job");
    let drill_label = d.id.to_string();
    assert_eq!(
        job.labels.get("drill").map(String::as_str),
        Some(drill_label.as_str())
    );
    assert_eq!(job.state, JobState::Succeeded);
    assert_eq!(job.attempts.len(), 2);
    assert_eq!(job.attempts[0].agent_id, holder);
    assert_eq!(job.attempts[0].outcome, Some(AttemptOutcome::LeaseExpired));
    assert_eq!(job.attempts[1].agent_id, new_holder);
    assert_eq!(job.attempts[1].outcome, Some(AttemptOutcome::Succeeded));
    (holder, job)
}

fn agent_log(c: &Cluster, id: &str) -> String {
    c.agents
        .iter()
        .find(|a| a.opts.id == id)
        .map(|a| a.log_text())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_drill_fails_over_and_records_every_event_in_order() {
    let mut c = cluster().await;
    // A job of the same group that the drill must not touch.
    let other = c
        .api
        .submit(json!({"group": "default", "spec": {"kind": "noop", "sleep_ms": 3000}}))
        .await
        .expect("submit");
    c.api.wait_running(other.id, WAIT).await.expect("running");
    let d = run_drill(&c, "crash", 20_000).await;
    assert_eq!(d.state, DrillState::Passed, "{d:#?}\n{}", c.logs());
    let (holder, _) = assert_failed_over(&c, &d).await;
    let log = agent_log(&c, &holder);
    assert!(
        log.contains("Drill fault injected: crash, abandoning the job as if killed"),
        "{log}"
    );
    assert!(log.contains("Fenced job stopped"), "{log}");
    // The process stayed up (a simulated crash) and still polls.
    assert!(c.agent(&holder).proc().running(), "holder process exited");
    let other = c.api.wait_terminal(other.id, WAIT).await.expect("other");
    assert_eq!(other.state, JobState::Succeeded);
    assert_eq!(other.attempts.len(), 1, "the drill touched another job");
    assert!(other.labels.is_empty());

    let m = c.api.metrics().await.expect("metrics");
    assert!(
        m.contains("baton_drills_total{method=\"crash\",result=\"passed\"} 1\n"),
        "{m}"
    );
    assert!(m.contains("baton_lease_expirations_total 1\n"), "{m}");
    assert!(m.contains("baton_takeover_seconds_count 1\n"), "{m}");
}

#[tokio::test(flavor = "multi_thread")]
async fn freeze_drill_holder_self_fences_and_never_completes() {
    let c = cluster().await;
    let d = run_drill(&c, "freeze", 20_000).await;
    assert_eq!(d.state, DrillState::Passed, "{d:#?}\n{}", c.logs());
    let (holder, job) = assert_failed_over(&c, &d).await;
    // Wait past the end of the freeze: the frozen agent talks again, and
    // still no completion of the old token is recorded.
    tokio::time::sleep(Duration::from_millis(d.duration_ms)).await;
    let after = c.api.job(job.id).await.expect("job");
    assert_eq!(after.attempts.len(), 2);
    assert_eq!(
        after.attempts[0].outcome,
        Some(AttemptOutcome::LeaseExpired)
    );
    let log = agent_log(&c, &holder);
    assert!(
        log.contains("Drill fault injected: controller traffic cut"),
        "{log}"
    );
    assert!(log.contains("Lease lost, stopping job"), "{log}");
    assert!(log.contains("Fenced job stopped"), "{log}");
    assert!(
        !log.contains("Job finished"),
        "the frozen holder reported the job: {log}"
    );
    let ctl = c.controller.log_text();
    let new = format!("job_id={} token=2", job.id);
    assert!(
        ctl.lines()
            .any(|l| l.contains("Job completion recorded") && l.contains(&new)),
        "the re-grant's completion is not in the log:\n{ctl}"
    );
    let old = format!("job_id={} token=1", job.id);
    assert!(
        !ctl.lines()
            .any(|l| l.contains("Job completion recorded") && l.contains(&old)),
        "a completion of the old token was recorded:\n{ctl}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn partition_drill_holder_self_fences_and_the_job_moves() {
    let c = cluster().await;
    let d = run_drill(&c, "partition", 20_000).await;
    assert_eq!(d.state, DrillState::Passed, "{d:#?}\n{}", c.logs());
    let (holder, job) = assert_failed_over(&c, &d).await;
    let log = agent_log(&c, &holder);
    assert!(log.contains("drill: partition"), "{log}");
    assert!(log.contains("Lease lost, stopping job"), "{log}");
    assert!(
        !log.contains("Job finished"),
        "the cut-off holder reported the job: {log}"
    );
    tokio::time::sleep(Duration::from_millis(d.duration_ms)).await;
    let after = c.api.job(job.id).await.expect("job");
    assert_eq!(after.attempts.len(), 2);
    assert_eq!(after.attempts[1].outcome, Some(AttemptOutcome::Succeeded));
}

fn ctl(url: &str, token: &str, args: &[&str]) -> std::process::Output {
    Command::new(bin("batonctl").expect("bin"))
        .args(args)
        .env("BATON_URL", url)
        .env("BATON_TOKEN", token)
        .output()
        .expect("run batonctl")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_too_short_rto_fails_with_the_reason_and_batonctl_shows_the_timeline() {
    let c = cluster().await;
    // Refusals name the field; viewers read but cannot start drills.
    let short = c
        .api
        .drill_start(json!({"group": "default", "method": "freeze", "lease_ttl_ms": TTL, "duration_ms": 1000}))
        .await
        .expect("start");
    // Each field is valid; together they are not (the fault must outlast
    // the TTL): 422, as a schema cannot say so.
    assert_eq!(short.status.as_u16(), 422);
    assert_eq!(
        short.error().and_then(|e| e.error.field).as_deref(),
        Some("duration_ms")
    );
    let viewer = c.api.with_token(
        &c.api
            .operator_token("look", "viewer")
            .await
            .expect("viewer"),
    );
    let refused = viewer
        .drill_start(json!({"group": "default", "method": "crash"}))
        .await
        .expect("start");
    assert_eq!(refused.status.as_u16(), 403);

    let d = run_drill(&c, "crash", 100).await;
    assert_eq!(d.state, DrillState::Failed, "{d:#?}");
    let r = d.report.as_ref().expect("report");
    assert!(!r.passed);
    assert!(
        r.reasons
            .iter()
            .any(|w| w.contains("over the RTO of 100 ms")),
        "{r:?}"
    );
    assert_eq!(r.job_state, Some(JobState::Succeeded));
    let listed = viewer.drills().await.expect("list");
    assert_eq!(listed.drills.len(), 1);
    assert_eq!(listed.drills[0].state, DrillState::Failed);

    let url = c.controller.url();
    let out = ctl(
        &url,
        &c.controller.admin_token,
        &["drill", "show", &d.id.to_string()],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!("Drill {}: crash on group default — failed", d.id)),
        "{text}"
    );
    assert!(text.contains("verdict: NOT PASSED"), "{text}");
    assert!(text.contains("over the RTO of 100 ms"), "{text}");
    let timeline: Vec<&str> = text
        .lines()
        .skip_while(|l| *l != "Timeline:")
        .skip(2)
        .collect();
    let order = [
        "started",
        "job_granted",
        "fault_sent",
        "fault_injected",
        "lease_expired",
        "job_regranted",
        "job_finished",
        "verdict",
    ];
    assert_eq!(timeline.len(), order.len(), "{text}");
    for (line, kind) in timeline.iter().zip(order) {
        assert!(line.contains(kind), "expected {kind} in {line:?}\n{text}");
        assert!(line.trim_start().starts_with('+'), "{line:?}");
    }
    let out = ctl(
        &url,
        &c.controller.admin_token,
        &["-o", "json", "drill", "show", &d.id.to_string()],
    );
    let back: DrillView = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(back.id, d.id);
    assert_eq!(back.events.len(), order.len());
    let out = ctl(&url, &c.controller.admin_token, &["drill", "list"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.lines().nth(1).is_some_and(|l| l.contains("failed")),
        "{text}"
    );
}

/// A drill with an operator's job template: an `exactly_once` SQL batch on a
/// real MariaDB. The frozen holder self-fences before it commits; the new
/// holder commits once, and the report proves it from the run ledger.
#[tokio::test(flavor = "multi_thread")]
async fn ledger_job_drill_proves_exactly_once_from_the_run_ledger() {
    baton_tests::require_mariadb!();
    use baton_tests::mariadb;
    let mdb = mariadb::server().await.expect(mariadb::INSTALL_HINT);
    let db = mdb.create_database("drill").expect("database");
    mdb.sql(
        Some(&db),
        "CREATE TABLE effects (id INT AUTO_INCREMENT PRIMARY KEY)",
    )
    .expect("table");
    let (user, password) = mdb.create_user(&db, &["ALL"]).expect("user");
    let secrets = tempfile::Builder::new()
        .prefix("baton-drill-secrets-")
        .tempdir()
        .expect("tmp");
    let pw = secrets.path().join("main.password");
    mariadb::write_password_file(&pw, &password).expect("password file");
    let conn = mdb.connection_toml("main", &db, &user, &pw);
    let c = Cluster::start_with(3, "", move |o| o.extra = conn.clone())
        .await
        .expect("cluster");
    c.wait_agents_online().await.expect("online");
    let raw = c
        .api
        .drill_start(json!({
            "group": "default",
            "method": "freeze",
            "lease_ttl_ms": TTL,
            "rto_ms": 20_000,
            "job": {
                "group": "default",
                "spec": {
                    "kind": "sql",
                    "connection": "main",
                    "sql": "DO SLEEP(4); INSERT INTO effects () VALUES ()",
                    "exactly_once": true
                },
                "retry": {"max_attempts": 3, "initial_backoff_ms": 0, "jitter": 0.0}
            }
        }))
        .await
        .expect("start");
    assert_eq!(raw.status.as_u16(), 201, "{}", raw.body);
    let id = raw.body["id"].as_i64().expect("drill id");
    let d = c
        .api
        .wait_drill(id, WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    assert_eq!(d.state, DrillState::Passed, "{d:#?}\n{}", c.logs());
    assert_failed_over(&c, &d).await;
    let r = d.report.as_ref().expect("report");
    assert!(
        r.exactly_once_evidence
            .contains("run ledger row was committed"),
        "{r:?}"
    );
    // Past the freeze, the effect is still there exactly once.
    tokio::time::sleep(Duration::from_millis(d.duration_ms)).await;
    let n = mdb
        .sql(Some(&db), "SELECT COUNT(*) FROM effects")
        .expect("count");
    assert_eq!(n.trim(), "1", "the effect happened {n} times");
}

/// The controller is killed (-9) right after the fault was injected: the
/// drill's watcher dies with it, and the restarted controller still finishes
/// the drill from its store (reads refresh running drills).
#[tokio::test(flavor = "multi_thread")]
async fn a_drill_survives_a_controller_restart() {
    let mut c = cluster().await;
    let raw = c
        .api
        .drill_start(json!({
            "group": "default", "method": "crash", "lease_ttl_ms": TTL, "rto_ms": 30_000
        }))
        .await
        .expect("start");
    assert_eq!(raw.status.as_u16(), 201, "{}", raw.body);
    let id = raw.body["id"].as_i64().expect("drill id");
    let end = std::time::Instant::now() + WAIT;
    loop {
        let d = c.api.drill(id).await.expect("drill");
        if kinds(&d).contains(&DrillEventKind::FaultInjected) {
            break;
        }
        assert!(std::time::Instant::now() < end, "no fault injected: {d:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.controller.restart().await.expect("restart");
    let d = c
        .api
        .wait_drill(id, WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    assert_eq!(d.state, DrillState::Passed, "{d:#?}\n{}", c.logs());
    assert_failed_over(&c, &d).await;
}
