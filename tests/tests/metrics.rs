//! `/metrics` of a real controller after real jobs (issue 18 point 5): the
//! values match what ran, `promtool check metrics` accepts the output, and
//! the Grafana dashboard (packaging/grafana/baton.json) uses only metrics
//! the controller serves.
//!
//! promtool comes from Debian's `prometheus` package (.ci/run installs it);
//! without it the promtool check is skipped with a reason, unless
//! `BATON_TEST_REQUIRE_PROMTOOL=1` (set by scripts/test).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use baton_proto::JobState;
use baton_tests::cluster::Cluster;
use baton_tests::ha::HaCluster;
use baton_tests::postgres;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

/// Every sample of a Prometheus text exposition: `name{labels}` (as
/// printed) → value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (key, v) = l.rsplit_once(' ').unwrap_or_else(|| panic!("bad line {l}"));
            let v = match v {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("bad value in {l}")),
            };
            (key.to_owned(), v)
        })
        .collect()
}

/// The value of one sample; panics with the whole text when it is missing.
fn value(m: &BTreeMap<String, f64>, key: &str, text: &str) -> f64 {
    *m.get(key)
        .unwrap_or_else(|| panic!("no sample {key} in\n{text}"))
}

fn sh(script: &str) -> serde_json::Value {
    json!({
        "group": "default",
        "spec": {"kind": "command", "program": "/bin/sh", "args": ["-c", script]},
        "retry": {"max_attempts": 1}
    })
}

/// Run `jobs` jobs that succeed and one that fails; returns the last one's id.
async fn run_jobs(c: &Cluster, jobs: usize) {
    let mut ids = Vec::new();
    for _ in 0..jobs {
        ids.push(c.api.submit(sh("exit 0")).await.expect("submit").id);
    }
    let failing = c.api.submit(sh("exit 3")).await.expect("submit").id;
    for id in &ids {
        let j = c.api.wait_terminal(*id, WAIT).await.expect("done");
        assert_eq!(j.state, JobState::Succeeded, "{j:#?}");
    }
    let j = c.api.wait_terminal(failing, WAIT).await.expect("done");
    assert_eq!(j.state, JobState::Failed, "{j:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_real_jobs_did_and_pass_promtool() {
    const JOBS: usize = 6;
    let c = Cluster::start(2).await.expect("cluster");
    c.wait_agents_online().await.expect("online");
    run_jobs(&c, JOBS).await;
    let text = c.api.metrics().await.expect("metrics");
    let m = samples(&text);
    let v = |k: &str| value(&m, k, &text);
    let n = JOBS as f64;

    // Jobs by group and state (the store), attempts by outcome (counted
    // as they ended).
    assert_eq!(
        v("baton_jobs_finished_last_hour{group=\"default\",state=\"succeeded\"}"),
        n
    );
    assert_eq!(
        v("baton_jobs_finished_last_hour{group=\"default\",state=\"failed\"}"),
        1.0
    );
    assert_eq!(v("baton_jobs{group=\"default\",state=\"running\"}"), 0.0);
    assert_eq!(v("baton_jobs{group=\"default\",state=\"queued\"}"), 0.0);
    assert_eq!(
        v("baton_jobs_queued_oldest_age_seconds{group=\"default\"}"),
        0.0
    );
    assert_eq!(v("baton_attempts_total{outcome=\"succeeded\"}"), n);
    assert_eq!(v("baton_attempts_total{outcome=\"failed\"}"), 1.0);
    assert_eq!(v("baton_attempts_total{outcome=\"lease_expired\"}"), 0.0);
    // One dispatch per job granted; a granted poll holds one or more.
    assert_eq!(v("baton_dispatch_latency_seconds_count"), n + 1.0);
    assert_eq!(
        v("baton_dispatch_latency_seconds_bucket{le=\"+Inf\"}"),
        n + 1.0
    );
    eprintln!(
        "dispatch latency mean {:.1} ms over {} grants; group-commit batch mean {:.1} ms",
        1000.0 * v("baton_dispatch_latency_seconds_sum") / (n + 1.0),
        n + 1.0,
        1000.0 * v("baton_group_commit_seconds_sum") / v("baton_group_commit_seconds_count"),
    );
    let polls = v("baton_dispatch_poll_held_seconds_count");
    assert!((1.0..=n + 1.0).contains(&polls), "{polls}");
    // The first job found both agents holding a poll: it was handed to one
    // in the submit's transaction, or a wake-up woke one (a job wakes as
    // many polls as it can use, not every held one).
    let (woken, wasted, handoffs) = (
        v("baton_dispatch_polls_woken_total"),
        v("baton_dispatch_wakes_wasted_total"),
        v("baton_dispatch_handoffs_total"),
    );
    assert!(
        woken + handoffs >= 1.0 && wasted <= woken && handoffs <= n + 1.0,
        "{woken} woken, {wasted} wasted, {handoffs} handed off"
    );
    // Both agents polled lately.
    assert_eq!(v("baton_agents{group=\"default\",state=\"online\"}"), 2.0);
    assert_eq!(v("baton_agents{group=\"default\",state=\"draining\"}"), 0.0);
    // The group-commit histograms saw every batch the counters did.
    assert_eq!(
        v("baton_group_commit_batch_ops_sum"),
        v("baton_group_commit_ops_total")
    );
    assert_eq!(
        v("baton_group_commit_seconds_count"),
        v("baton_group_commit_batches_total")
    );
    assert!(v("baton_group_commit_batches_total") > 0.0);
    assert_eq!(
        v("baton_notification_deliveries_total{result=\"delivered\"}"),
        0.0
    );
    // The process: started within the last hour, holds memory and files.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64();
    let start = v("process_start_time_seconds");
    assert!(
        start <= now + 1.0 && start > now - 3600.0,
        "{start} vs {now}"
    );
    assert!(v("process_resident_memory_bytes") > 1e6);
    assert!(v("process_open_fds") >= 3.0);
    assert!(v("process_cpu_seconds_total") >= 0.0);

    promtool_check(&text);
}

/// On PostgreSQL with two replicas: both report the same fleet-wide
/// figures from the store; each counts the grants it made, the
/// transactions it ran and its grouped statements.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_postgresql_replicas_report_the_fleet_alike_and_count_their_own_work() {
    baton_tests::require_postgres!();
    let pg = postgres::shared().await.expect(postgres::INSTALL_HINT);
    let c = HaCluster::start(2, 2, pg).await.expect("cluster");
    c.wait_agents_online().await.expect("online");
    let api = c.api(0);
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(api.submit(sh("exit 0")).await.expect("submit").id);
    }
    for id in ids {
        let j = api.wait_terminal(id, WAIT).await.expect("done");
        assert_eq!(j.state, JobState::Succeeded, "{j:#?}\n{}", c.logs());
    }
    let (mut grants, mut batches, mut texts) = (0.0, 0.0, Vec::new());
    for i in 0..2 {
        let text = c.api(i).metrics().await.expect("metrics");
        let m = samples(&text);
        let v = |k: &str| value(&m, k, &text);
        assert_eq!(
            v("baton_jobs_finished_last_hour{group=\"default\",state=\"succeeded\"}"),
            4.0
        );
        assert_eq!(v("baton_agents{group=\"default\",state=\"online\"}"), 2.0);
        assert!(v("baton_store_transaction_seconds_count") > 0.0, "{text}");
        assert_eq!(
            v("baton_group_commit_seconds_count"),
            v("baton_group_commit_batches_total")
        );
        assert_eq!(
            v("baton_group_commit_batch_ops_sum"),
            v("baton_group_commit_ops_total")
        );
        grants += v("baton_dispatch_latency_seconds_count");
        batches += v("baton_group_commit_batches_total");
        texts.push(text);
    }
    assert_eq!(grants, 4.0, "grants over both replicas\n{texts:#?}");
    // The successes were grouped statements on one replica or the other.
    assert!(batches > 0.0, "{texts:#?}");
    promtool_check(&texts[0]);
}

/// Schedules: every firing's lateness is observed, fired occurrences are
/// counted, and a schedule without a success within its `alert_after` is
/// stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedule_lateness_occurrences_and_staleness_are_measured() {
    let c = Cluster::start(1).await.expect("cluster");
    c.wait_agents_online().await.expect("online");
    c.api
        .create_schedule(json!({
            "name": "every-second", "group": "default", "cron": "* * * * * *", "tz": "UTC",
            "job": {"spec": {"kind": "noop", "sleep_ms": 0}, "retry": {"max_attempts": 1}},
        }))
        .await
        .expect("create");
    // Never due in the test, so never a success: stale after 1 s.
    c.api
        .create_schedule(json!({
            "name": "yearly", "group": "default", "cron": "0 0 1 1 *", "tz": "UTC",
            "alert_after_ms": 1000,
            "job": {"spec": {"kind": "noop", "sleep_ms": 0}},
        }))
        .await
        .expect("create");
    let end = Instant::now() + WAIT;
    let (text, m) = loop {
        let text = c.api.metrics().await.expect("metrics");
        let m = samples(&text);
        let fired = m
            .get("baton_schedule_occurrences_total{state=\"fired\"}")
            .copied()
            .unwrap_or(0.0);
        if fired >= 3.0 && m.get("baton_schedules_stale") == Some(&1.0) {
            break (text, m);
        }
        assert!(Instant::now() < end, "{text}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let v = |k: &str| value(&m, k, &text);
    // Every firing so far is observed (this process fired them all; the
    // store's count was read up to a second earlier).
    let observed = v("baton_schedule_lateness_seconds_count");
    eprintln!(
        "schedule lateness mean {:.1} ms over {observed} firings",
        1000.0 * v("baton_schedule_lateness_seconds_sum") / observed
    );
    assert!(
        observed >= v("baton_schedule_occurrences_total{state=\"fired\"}"),
        "{text}"
    );
    // Fired on time: the timer sleeps until the nominal time.
    let on_time = v("baton_schedule_lateness_seconds_bucket{le=\"1\"}");
    assert!(on_time >= 1.0, "{text}");
    assert_eq!(v("baton_schedules{state=\"active\"}"), 2.0);
}

/// The store's figures are read at most once a second: a job submitted
/// right after a scrape shows in a later one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_figures_are_cached_for_a_second_then_read_again() {
    let c = Cluster::start(0).await.expect("cluster");
    let first = c.api.metrics().await.expect("metrics");
    let scraped = Instant::now();
    assert!(!first.contains("group=\"parked\""), "{first}");
    let mut job = sh("exit 0");
    job["group"] = json!("parked");
    c.api.submit(job).await.expect("submit");
    let again = c.api.metrics().await.expect("metrics");
    if scraped.elapsed() < Duration::from_millis(800) {
        assert!(!again.contains("group=\"parked\""), "not cached:\n{again}");
    }
    // Whatever was read so far, the next read is at least this long after
    // the submit.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let end = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let t = c.api.metrics().await.expect("metrics");
        if t.contains("group=\"parked\"") {
            break t;
        }
        assert!(Instant::now() < end, "never read again:\n{t}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let m = samples(&text);
    assert_eq!(
        value(&m, "baton_jobs{group=\"parked\",state=\"queued\"}", &text),
        1.0
    );
    let age = value(
        &m,
        "baton_jobs_queued_oldest_age_seconds{group=\"parked\"}",
        &text,
    );
    assert!((1.0..60.0).contains(&age), "{age}");
}

/// Every metric the dashboard queries is in the controller's output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grafana_dashboard_uses_only_served_metrics() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/grafana/baton.json");
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read dashboard"))
            .expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    collect_exprs(&dash, &mut exprs);
    assert!(exprs.len() >= 10, "{exprs:?}");
    let used: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    assert!(used.len() >= 10, "{used:?}");

    let c = Cluster::start(1).await.expect("cluster");
    c.wait_agents_online().await.expect("online");
    run_jobs(&c, 1).await;
    let text = c.api.metrics().await.expect("metrics");
    let served: BTreeSet<String> = samples(&text)
        .keys()
        .map(|k| k.split('{').next().unwrap_or(k).to_owned())
        .collect();
    let missing: Vec<_> = used.difference(&served).collect();
    assert!(missing.is_empty(), "not served: {missing:?}\n{text}");

    // The queries parse as PromQL (`promtool check rules`), with Grafana's
    // variables given values.
    let rules: Vec<_> = exprs
        .iter()
        .filter(|e| !e.starts_with("label_values("))
        .enumerate()
        .map(|(i, e)| {
            let e = e
                .replace("$__rate_interval", "5m")
                .replace("$instance", ".*")
                .replace("$group", ".*");
            json!({"record": format!("baton:dashboard_{i}"), "expr": e})
        })
        .collect();
    let file = c.path("dashboard-rules.yml");
    let yaml = json!({"groups": [{"name": "dashboard", "rules": rules}]});
    // JSON is YAML.
    std::fs::write(&file, yaml.to_string()).expect("write rules");
    promtool(&["check", "rules", &file.display().to_string()], None);
}

/// Every `expr` (and variable `definition`) in a Grafana dashboard.
fn collect_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(o) => {
            for (k, v) in o {
                match (k.as_str(), v) {
                    ("expr" | "definition", serde_json::Value::String(e)) => out.push(e.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

/// The metric names a PromQL expression names (`baton_…`, `process_…`).
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b = expr.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
        if word(b[i]) && (i == 0 || !word(b[i - 1])) {
            let start = i;
            while i < b.len() && word(b[i]) {
                i += 1;
            }
            let w = &expr[start..i];
            if w.starts_with("baton_") || w.starts_with("process_") {
                out.push(w.to_owned());
            }
        } else {
            i += 1;
        }
    }
    out
}

/// `promtool check metrics` on `text`.
fn promtool_check(text: &str) {
    promtool(&["check", "metrics"], Some(text));
}

/// Run promtool with `args` (and `stdin`); it must succeed and, reading
/// metrics, say nothing. Skipped with a reason when promtool is absent,
/// unless `BATON_TEST_REQUIRE_PROMTOOL=1`.
fn promtool(args: &[&str], stdin: Option<&str>) {
    let child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            assert!(
                std::env::var("BATON_TEST_REQUIRE_PROMTOOL").as_deref() != Ok("1"),
                "promtool is required (BATON_TEST_REQUIRE_PROMTOOL=1) but cannot run: {e}"
            );
            eprintln!("SKIP promtool check: promtool not found ({e}); apt-get install prometheus");
            return;
        }
    };
    let input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        let mut input = input;
        input.write_all(text.as_bytes()).expect("write to promtool");
    }
    let out = child.wait_with_output().expect("promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let quiet = stdin.is_none() || said.trim().is_empty();
    assert!(
        out.status.success() && quiet,
        "promtool {args:?}: {}\n{said}\n{}",
        out.status,
        stdin.unwrap_or_default()
    );
}
