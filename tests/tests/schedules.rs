//! Schedules end to end: real controller and agent processes, per-second
//! crons, the controller killed with SIGKILL while it fires, and the
//! exactly-once evidence read from its SQLite store after it stopped.

use std::collections::BTreeMap;
use std::time::Duration;

use baton_proto::JobState;
use baton_proto::schedule::{OccurrenceState, OccurrenceTrigger, OccurrenceView};
use baton_tests::api::Api;
use baton_tests::cluster::Cluster;
use baton_tests::sched_store;
use chrono::{DateTime, Utc};
use nix::sys::signal::Signal;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

/// A schedule of noop jobs (one attempt) to group `default`, in UTC, with
/// the keys of `extra` added.
fn noop_schedule(name: &str, cron: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut s = json!({
        "name": name,
        "group": "default",
        "cron": cron,
        "tz": "UTC",
        "job": {"spec": {"kind": "noop", "sleep_ms": 0}, "retry": {"max_attempts": 1}},
    });
    if let (Some(s), Some(e)) = (s.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    s
}

/// Unix milliseconds.
fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

async fn sleep_until_ms(at: i64) {
    let d = at - ms(Utc::now());
    if d > 0 {
        tokio::time::sleep(Duration::from_millis(d as u64)).await;
    }
}

/// The fired occurrences of a history.
fn fired(h: &[OccurrenceView]) -> Vec<&OccurrenceView> {
    h.iter()
        .filter(|o| o.state == OccurrenceState::Fired)
        .collect()
}

/// Wait until the schedule has fired at least `n` occurrences; its history.
async fn wait_fired(api: &Api, name: &str, n: usize) -> Vec<OccurrenceView> {
    api.wait_history(name, WAIT, &format!("fired {n}"), |h| fired(h).len() >= n)
        .await
        .expect("fired")
}

/// Every nominal time (Unix ms) of a history with its row, ranges expanded
/// on a `period_ms` grid. Panics on two rows for one nominal time.
fn by_nominal(h: &[OccurrenceView], period_ms: i64) -> BTreeMap<i64, &OccurrenceView> {
    let mut m = BTreeMap::new();
    for o in h {
        let first = ms(o.nominal_at);
        let last = o.last_nominal_at.map_or(first, ms);
        assert_eq!(
            (last - first) / period_ms + 1,
            i64::from(o.count),
            "range row inconsistent with its count: {o:?}"
        );
        let mut n = first;
        while n <= last {
            assert!(m.insert(n, o).is_none(), "two rows for nominal {n}: {h:#?}");
            n += period_ms;
        }
    }
    m
}

/// A cluster of one agent with `slots` slots.
async fn cluster(slots: u32) -> Cluster {
    let c = Cluster::start_with(1, "", move |o| o.slots = slots)
        .await
        .expect("cluster");
    c.wait_agents_online().await.expect("online");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_appear_and_pause_stops_them() {
    let c = cluster(4).await;
    for (name, catchup) in [("tick-none", "none"), ("tick-latest", "latest")] {
        c.api
            .create_schedule(noop_schedule(
                name,
                "* * * * * *",
                json!({"catchup": catchup}),
            ))
            .await
            .expect("create");
    }
    // Runs appear, and their jobs run.
    for name in ["tick-none", "tick-latest"] {
        let h = wait_fired(&c.api, name, 3).await;
        let job = h.iter().find_map(|o| o.job_id).expect("a job");
        let j = c.api.wait_terminal(job, WAIT).await.expect("terminal");
        assert_eq!(j.state, JobState::Succeeded, "{}", c.logs());
    }
    let mut last_before = BTreeMap::new();
    for name in ["tick-none", "tick-latest"] {
        let v = c.api.schedule_op(name, "pause").await.expect("pause");
        assert!(v.paused, "{v:#?}");
        let h = c.api.history(name).await.expect("history");
        last_before.insert(name, (fired(&h).len(), newest_fired(&h)));
    }
    // Paused: nothing fires for 4 occurrences.
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    for name in ["tick-none", "tick-latest"] {
        let h = c.api.history(name).await.expect("history");
        assert_eq!(
            fired(&h).len(),
            last_before[name].0,
            "{name} fired while paused: {h:#?}"
        );
        assert!(c.api.schedule(name).await.expect("view").paused);
    }
    let mut resumed = BTreeMap::new();
    for name in ["tick-none", "tick-latest"] {
        let before = Utc::now();
        let v = c.api.schedule_op(name, "resume").await.expect("resume");
        assert!(!v.paused);
        resumed.insert(name, (ms(before), ms(Utc::now())));
    }
    for name in ["tick-none", "tick-latest"] {
        let (r0, r1) = resumed[name];
        let h = c
            .api
            .wait_history(name, WAIT, "fired again after resume", |h| {
                h.iter().any(|o| {
                    o.state == OccurrenceState::Fired
                        && o.trigger == OccurrenceTrigger::Schedule
                        && ms(o.nominal_at) > r1
                })
            })
            .await
            .expect("fired after resume");
        let occ = by_nominal(&h, 1000);
        let last = last_before[name].1;
        // What passed while paused: missed, "the schedule was paused" -
        // except the newest, which is on time at resume (the plan's
        // 10 s rule) and may fire.
        let span: Vec<(i64, &OccurrenceView)> =
            occ.range(last + 1..=r1).map(|(n, o)| (*n, *o)).collect();
        let fired_in: Vec<i64> = span
            .iter()
            .filter(|(_, o)| o.state == OccurrenceState::Fired)
            .map(|(n, _)| *n)
            .collect();
        assert!(fired_in.len() <= 1, "{name} fired while paused: {h:#?}");
        if let Some(n) = fired_in.first() {
            assert!(
                *n > r0 - 2_000,
                "{name}: only the newest may fire at resume: {h:#?}"
            );
        }
        let missed: Vec<&(i64, &OccurrenceView)> =
            span.iter().filter(|(n, _)| *n < r0 - 1_000).collect();
        assert!(missed.len() >= 3, "{name}: {h:#?}");
        for (_, o) in missed {
            let reason = o.reason.clone().unwrap_or_default();
            assert!(
                o.state == OccurrenceState::Missed && reason.contains("paused"),
                "{name}: passed while paused, missed with the reason: {o:#?}"
            );
        }
        if name == "tick-none" {
            assert!(
                h.iter().all(|o| o.trigger != OccurrenceTrigger::Catchup),
                "catchup none never catches up: {h:#?}"
            );
        }
    }
}

/// The newest fired occurrence's nominal time (Unix ms).
fn newest_fired(h: &[OccurrenceView]) -> i64 {
    fired(h)
        .iter()
        .map(|o| ms(o.nominal_at))
        .max()
        .expect("a fired occurrence")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_firing_keeps_one_job_per_nominal_time() {
    let mut c = cluster(8).await;
    c.api
        .create_schedule(noop_schedule("every-second", "* * * * * *", json!({})))
        .await
        .expect("create");
    wait_fired(&c.api, "every-second", 2).await;
    let kills = 8;
    for i in 0..kills {
        // Half the kills land just after a whole second, when the timer
        // fires; the others anywhere.
        let wait_ms = rand::random_range(2_000..5_000);
        let now = ms(Utc::now());
        let at = if i % 2 == 0 {
            (now + wait_ms) / 1000 * 1000 + rand::random_range(0..25)
        } else {
            now + wait_ms
        };
        sleep_until_ms(at).await;
        c.controller.kill9();
        tokio::time::sleep(Duration::from_millis(rand::random_range(500..2_500))).await;
        c.controller
            .restart()
            .await
            .unwrap_or_else(|e| panic!("restart {i}: {e:#}\n{}", c.logs()));
    }
    let restarted = Utc::now();
    c.api
        .wait_history("every-second", WAIT, "fired after the last restart", |h| {
            h.iter()
                .any(|o| o.state == OccurrenceState::Fired && o.nominal_at > restarted)
        })
        .await
        .expect("fires after the restarts");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let proc = c.controller.proc.as_mut().expect("running");
    proc.signal(Signal::SIGTERM).expect("sigterm");
    proc.wait_exit(WAIT).expect("exit");
    let db = sched_store::open(&sched_store::db_path(&c.controller.state_dir))
        .await
        .expect("open store");
    let ev = sched_store::check_exactly_once(&db, "every-second", 1000)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", c.controller.log_text()));
    println!("{kills} kills: {ev:?}");
    assert!(ev.nominals >= 30, "{ev:?}");
    // Enough firings to have exercised the kills (under CI load a run
    // fired 9 of 63 nominal times; the rest were skipped or missed while
    // the controller was down, which the exactly-once check covers).
    assert!(
        ev.by_state.get("fired").copied().unwrap_or(0) >= 5,
        "{ev:?}"
    );
    assert!(
        ev.by_state.get("missed").copied().unwrap_or(0) >= 1,
        "the controller was down for whole seconds: {ev:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catchup_after_downtime_follows_the_policy() {
    // The period is longer than the plan's on-time allowance (10 s), so
    // that the newest occurrence that passed while the controller was down
    // is missed, not late.
    const P: i64 = 15_000;
    let mut c = cluster(8).await;
    let names = ["down-latest", "down-all", "down-none"];
    for (name, policy) in names.iter().zip(["latest", "all", "none"]) {
        c.api
            .create_schedule(noop_schedule(
                name,
                "*/15 * * * * *",
                json!({"catchup": policy}),
            ))
            .await
            .expect("create");
    }
    // Kill right after all three fired the same occurrence X.
    let x = loop {
        let h = wait_fired(&c.api, names[0], 1).await;
        let x = newest_fired(&h);
        let mut all = true;
        for n in &names[1..] {
            let h = c.api.history(n).await.expect("history");
            all &= fired(&h).iter().any(|o| ms(o.nominal_at) == x);
        }
        if all && ms(Utc::now()) < x + 2_000 {
            break x;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    c.controller.kill9();
    // Down for 3 occurrences, back 11 s after the last of them.
    let down: Vec<i64> = (1..=3).map(|k| x + k * P).collect();
    let back = x + 3 * P + 11_000;
    sleep_until_ms(back).await;
    c.controller.restart().await.expect("restart");
    let ready = ms(Utc::now());
    assert!(
        ready < x + 4 * P - 200,
        "the controller took {} ms to restart: cannot tell the next occurrence from the downtime",
        ready - back
    );
    for name in names {
        let h = c
            .api
            .wait_history(name, WAIT, "settled after the downtime", |h| {
                let occ = by_nominal(h, P);
                down.iter().all(|n| {
                    occ.get(n)
                        .is_some_and(|o| o.state != OccurrenceState::Pending)
                })
            })
            .await
            .expect("history");
        let occ = by_nominal(&h, P);
        let d: Vec<&OccurrenceView> = down.iter().map(|n| occ[n]).collect();
        let missed = |o: &&OccurrenceView| {
            o.state == OccurrenceState::Missed
                && o.reason
                    .as_deref()
                    .is_some_and(|r| r.contains("not running"))
        };
        let caught = |o: &&OccurrenceView| {
            o.state == OccurrenceState::Fired && o.trigger == OccurrenceTrigger::Catchup
        };
        match name {
            "down-latest" => {
                assert!(d[..2].iter().all(missed), "{name}: {d:#?}");
                assert!(caught(&d[2]), "{name}: {d:#?}");
            }
            "down-none" => {
                assert!(d.iter().all(missed), "{name}: {d:#?}");
                assert!(!h.iter().any(|o| caught(&o)), "{h:#?}");
            }
            _ => {
                assert!(d.iter().all(caught), "{name}: {d:#?}");
                let mut jobs = Vec::new();
                for o in &d {
                    let id = o.job_id.expect("job");
                    jobs.push(c.api.wait_terminal(id, WAIT).await.expect("terminal"));
                }
                assert!(jobs.windows(2).all(|w| w[0].id < w[1].id), "{jobs:#?}");
                let started: Vec<DateTime<Utc>> =
                    jobs.iter().map(|j| j.attempts[0].started_at).collect();
                assert!(started.windows(2).all(|w| w[0] <= w[1]), "{jobs:#?}");
                assert!(jobs.iter().all(|j| j.state == JobState::Succeeded));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlap_skip_never_runs_two_at_once() {
    let c = Cluster::start(2).await.expect("cluster");
    c.wait_agents_online().await.expect("online");
    let mut s = noop_schedule("slow", "* * * * * *", json!({"overlap": "skip"}));
    s["job"]["spec"]["sleep_ms"] = json!(3_500);
    c.api.create_schedule(s).await.expect("create");
    c.api
        .wait_history("slow", WAIT, "3 runs and 4 skips", |h| {
            let skipped: u32 = h
                .iter()
                .filter(|o| o.state == OccurrenceState::Skipped)
                .map(|o| o.count)
                .sum();
            fired(h).len() >= 3 && skipped >= 4
        })
        .await
        .expect("runs and skips");
    c.api.schedule_op("slow", "pause").await.expect("pause");
    let h = c.api.history("slow").await.expect("history");
    let mut jobs = Vec::new();
    for o in fired(&h) {
        let id = o.job_id.expect("job");
        jobs.push(c.api.wait_terminal(id, WAIT).await.expect("terminal"));
    }
    jobs.sort_by_key(|j| j.id);
    assert!(
        jobs.iter().all(|j| j.state == JobState::Succeeded),
        "{jobs:#?}"
    );
    // Never two of its jobs at once: each starts after the previous ended,
    // and was made after the previous one finished.
    for w in jobs.windows(2) {
        let prev_end = w[0]
            .attempts
            .last()
            .and_then(|a| a.ended_at)
            .expect("ended");
        assert!(w[1].attempts[0].started_at >= prev_end, "{:#?}", w);
        assert!(
            w[1].created_at >= w[0].finished_at.expect("finished"),
            "{w:#?}"
        );
    }
    // Every skip happened while a run was going, and its reason names it.
    let occ = by_nominal(&h, 1000);
    let mut skips = 0;
    for (n, o) in &occ {
        if o.state != OccurrenceState::Skipped {
            continue;
        }
        skips += 1;
        let running = jobs
            .iter()
            .rfind(|j| ms(j.created_at) <= *n && j.finished_at.is_none_or(|f| *n <= ms(f)))
            .unwrap_or_else(|| panic!("skip at {n} while nothing ran: {h:#?}\n{jobs:#?}"));
        let reason = o.reason.clone().unwrap_or_default();
        assert!(
            reason.contains(&running.id.to_string()),
            "skip reason names job {}: {reason}",
            running.id
        );
    }
    assert!(skips >= 4, "{h:#?}");
}

fn batonctl(c: &Cluster, args: &[&str]) -> String {
    let out = std::process::Command::new(baton_tests::proc::bin("batonctl").expect("bin"))
        .args(args)
        .env("BATON_URL", c.controller.url())
        .env("BATON_TOKEN", &c.controller.admin_token)
        .output()
        .expect("run batonctl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "batonctl {args:?}: {text}{err}");
    text
}

const PIPELINES_TOML: &str = r#"
[[pipeline]]
name = "nightly-dump"
group = "default"
timeout = "2h"

[[pipeline.step]]
name = "dump"
kind = "noop"

[[pipeline.step]]
name = "verify"
depends_on = ["dump"]
same_agent_as = "dump"
program = "/bin/echo"
args = ["${steps.dump.job_id}"]
"#;

const SCHEDULES_TOML: &str = r#"
[[schedule]]
name = "nightly"
cron = "30 2 * * *"
tz = "Europe/Berlin"
pipeline = "nightly-dump"

[[schedule]]
name = "hourly-noop"
group = "default"
every = "1h"
overlap = "buffer_one"
catchup = "none"
catchup_window = "2h"
jitter = "5m"
alert_after = "3h"

[schedule.job]
kind = "noop"
sleep_ms = 10
retry = { max_attempts = 2 }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_twice_changes_nothing_the_second_time() {
    let c = Cluster::start(0).await.expect("cluster");
    let dir = c.path("conf");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("pipelines.toml"), PIPELINES_TOML).expect("write");
    std::fs::write(dir.join("schedules.toml"), SCHEDULES_TOML).expect("write");
    let d = dir.to_str().expect("utf-8");
    let first = batonctl(&c, &["apply", "-f", d]);
    for what in [
        "pipeline nightly-dump: created",
        "schedule nightly: created",
        "schedule hourly-noop: created",
    ] {
        assert!(first.contains(what), "{first}");
    }
    let updated = |c: &Cluster| {
        let api = c.api.clone();
        async move {
            let p: baton_proto::pipeline::PipelineView = api
                .get_json("/v1/pipelines/nightly-dump")
                .await
                .expect("get");
            let a = api.schedule("nightly").await.expect("get");
            let b = api.schedule("hourly-noop").await.expect("get");
            (p.updated_at, a.updated_at, b.updated_at)
        }
    };
    let before = updated(&c).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = batonctl(&c, &["apply", "-f", d]);
    assert!(second.contains("Nothing changed"), "{second}");
    assert!(
        !second.contains("created") && !second.contains("updated:"),
        "{second}"
    );
    let json = batonctl(&c, &["-o", "json", "apply", "-f", d]);
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    let ops: Vec<&str> = v["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .filter_map(|a| a["op"].as_str())
        .collect();
    assert_eq!(ops, ["unchanged"; 3], "{json}");
    assert_eq!(updated(&c).await, before, "nothing was written");
    // A changed file is applied, and shows what changed.
    let changed = SCHEDULES_TOML.replace("30 2 * * *", "45 2 * * *");
    std::fs::write(dir.join("schedules.toml"), changed).expect("write");
    let third = batonctl(&c, &["apply", "-f", d]);
    assert!(third.contains("schedule nightly: updated"), "{third}");
    assert!(third.contains("45 2 * * *"), "{third}");
    let after = updated(&c).await;
    assert_eq!((after.0, after.2), (before.0, before.2));
    assert!(after.1 > before.1, "{after:?} {before:?}");
}
