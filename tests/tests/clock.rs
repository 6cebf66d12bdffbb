//! The controller's wall clock stepping ±1 h (libfaketime on the controller
//! only; agents and the test keep the real clock): no second copy of a job,
//! no mass expiry of healthy leases, a dead agent's lease still ends within
//! its TTL, also across a controller restart, and job views keep sane times.
//! Skipped, with the reason printed, where libfaketime is absent.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use baton_proto::{AttemptOutcome, JobState};
use baton_tests::cluster::Cluster;
use baton_tests::faketime::{FakeClock, assert_sane_times};
use baton_tests::proc::bin;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);
const TTL_MS: u64 = 5_000;
const HOUR_S: i64 = 3_600;
/// How long after its holder died a lease may still be seen held: the TTL
/// plus a second of slack for the reaper and the test's 25 ms polling, and
/// another second for a loaded 2-core machine. The old behaviour was ~1 h.
const TAKEOVER_BOUND: Duration = Duration::from_millis(TTL_MS + 3_000);

/// A cluster whose controller runs on a faked clock (`faketime::cluster`).
async fn faked_cluster(agents: usize) -> Option<(Cluster, FakeClock, tempfile::TempDir)> {
    baton_tests::faketime::cluster(agents, |_| {}).await
}

/// Submit a job that appends `start` to its marks file, sleeps `secs`,
/// appends `end`; wait until it has started. Returns (id, holder, marks).
async fn marked_job(c: &Cluster, name: &str, secs: u32) -> (i64, String, PathBuf) {
    let marks = c.path(&format!("marks-{name}"));
    let script = format!(
        "echo start >> {m}; sleep {secs}; echo end >> {m}",
        m = marks.display()
    );
    let job = c
        .api
        .submit(json!({
            "group": "default",
            "spec": {"kind": "command", "program": "/bin/sh", "args": ["-c", script]},
            "lease_ttl_ms": TTL_MS,
            "retry": {"max_attempts": 3, "initial_backoff_ms": 0, "jitter": 0.0}
        }))
        .await
        .expect("submit");
    let (_, holder) = c.api.wait_running(job.id, WAIT).await.expect("running");
    let end = Instant::now() + WAIT;
    while count(&marks, "start") == 0 {
        assert!(Instant::now() < end, "job {} never started", job.id);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (job.id, holder, marks)
}

fn count(path: &Path, word: &str) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.trim() == word)
        .count()
}

/// Wait until the holder has recorded its command's process group, so a
/// SIGKILL finds it as a real crash after start would (see failover.rs).
async fn wait_recorded(c: &mut Cluster, holder: &str) {
    let running = c.agent(holder).dir.join("state").join("running");
    let end = Instant::now() + WAIT;
    while std::fs::read_dir(&running).map_or(0, |d| d.count()) == 0 {
        assert!(Instant::now() < end, "no process group recorded");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `batonctl ARGS` against the cluster's controller: its output, whose
/// relative times must all be seconds ago (nothing "in …", no minutes or
/// hours: every job here is younger than a minute).
fn batonctl(c: &Cluster, args: &[&str]) -> String {
    let out = Command::new(bin("batonctl").expect("batonctl"))
        .args(args)
        .env("BATON_URL", c.controller.url())
        .env("BATON_TOKEN", &c.controller.admin_token)
        .output()
        .expect("batonctl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(!text.contains("(in ") && !text.contains(" in "), "{text}");
    for line in text.lines() {
        if let Some((_, rel)) = line.split_once(" (")
            && rel.ends_with(" ago)")
        {
            assert!(
                rel.ends_with("s ago)") && !rel.contains('m') && !rel.contains('h'),
                "{line}\n{text}"
            );
        }
        for w in line.split("  ").filter(|w| w.trim().ends_with(" ago")) {
            assert!(
                !w.contains('m') && !w.contains('h'),
                "`{w}` in {line}\n{text}"
            );
        }
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forward_step_neither_runs_a_job_twice_nor_expires_healthy_leases() {
    let Some((c, clock, _dir)) = faked_cluster(3).await else {
        return;
    };
    // Two jobs running across the step, at TTL 5 s.
    let (a, _, marks_a) = marked_job(&c, "a", 12).await;
    let (b, _, marks_b) = marked_job(&c, "b", 12).await;
    // The third agent's poll is held now; the step lands during that hold.
    tokio::time::sleep(Duration::from_secs(1)).await;
    clock.set_offset_s(HOUR_S).expect("step");
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Granted from the poll held across the step.
    let (c_id, _, marks_c) = marked_job(&c, "c", 8).await;
    for (id, marks) in [(a, &marks_a), (b, &marks_b), (c_id, &marks_c)] {
        let done = c.api.wait_terminal(id, WAIT).await.expect("terminal");
        assert_eq!(done.state, JobState::Succeeded, "{}", c.logs());
        assert_eq!(done.attempts.len(), 1, "{:#?}\n{}", done.attempts, c.logs());
        assert_eq!(count(marks, "start"), 1, "job {id} ran twice");
        assert_eq!(count(marks, "end"), 1, "job {id}");
        assert_sane_times(&done);
    }
    let log = c.controller.log_text();
    assert!(!log.contains("Lease expired"), "{log}");
    assert!(log.contains("Wall clock stepped away"), "{log}");
    // The step shows in the metrics until a restart adopts it.
    let metrics = c.api.metrics().await.expect("metrics");
    let skew: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("baton_clock_skew_seconds "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no clock skew in\n{metrics}"));
    assert!((3_599.0..3_601.0).contains(&skew), "skew {skew}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backward_step_does_not_keep_a_dead_agents_lease() {
    let Some((mut c, clock, _dir)) = faked_cluster(2).await else {
        return;
    };
    let (id, holder, marks) = marked_job(&c, "a", 4).await;
    wait_recorded(&mut c, &holder).await;
    c.agent(&holder).proc().kill9();
    let killed = Instant::now();
    // Right after the kill: no heartbeat of the holder after the step.
    clock.set_offset_s(-HOUR_S).expect("step");
    let taken = c
        .api
        .wait_for(id, TAKEOVER_BOUND + WAIT, "re-granted", |j| {
            j.lease_agent.as_deref().is_some_and(|a| a != holder)
        })
        .await
        .expect("takeover");
    let after = killed.elapsed();
    eprintln!("Dead holder's job re-granted {after:?} after the kill (TTL {TTL_MS} ms)");
    assert!(
        after < TAKEOVER_BOUND,
        "the dead holder's lease was held {after:?} after the kill (TTL {TTL_MS} ms)"
    );
    assert_eq!(taken.attempts.len(), 2, "{:#?}", taken.attempts);
    // Restarted, the holder kills the command its killed run left behind.
    c.agent(&holder).restart().expect("restart");
    let done = c.api.wait_terminal(id, WAIT).await.expect("terminal");
    assert_eq!(done.state, JobState::Succeeded, "{}", c.logs());
    assert_eq!(done.attempts[0].outcome, Some(AttemptOutcome::LeaseExpired));
    assert!(count(&marks, "start") >= 2);
    assert_sane_times(&done);
}

/// Two jobs run (TTL 5 s); one holder is SIGKILLed; the controller's clock
/// steps by `step_s` and the controller is killed and restarted. The
/// healthy lease must survive; the dead one must end within ~TTL.
async fn step_then_restart(step_s: i64) {
    let Some((mut c, clock, _dir)) = faked_cluster(3).await else {
        return;
    };
    let (a, _, marks_a) = marked_job(&c, "a", 15).await;
    let (b, dead, _) = marked_job(&c, "b", 15).await;
    wait_recorded(&mut c, &dead).await;
    c.agent(&dead).proc().kill9();
    clock.set_offset_s(step_s).expect("step");
    c.controller.restart().await.expect("restart");
    let ready = Instant::now();
    c.api
        .wait_for(b, TAKEOVER_BOUND + WAIT, "re-granted", |j| {
            j.lease_agent.as_deref().is_some_and(|x| x != dead)
        })
        .await
        .expect("takeover");
    let after = ready.elapsed();
    eprintln!("Step {step_s} s: dead holder's job re-granted {after:?} after the restart");
    assert!(
        after < TAKEOVER_BOUND,
        "the dead holder's lease was held {after:?} after the restart (TTL {TTL_MS} ms)"
    );
    let done = c.api.wait_terminal(a, WAIT).await.expect("terminal");
    assert_eq!(done.state, JobState::Succeeded, "{}", c.logs());
    assert_eq!(done.attempts.len(), 1, "{:#?}\n{}", done.attempts, c.logs());
    assert_eq!(count(&marks_a, "start"), 1, "job {a} ran twice");
    c.agent(&dead).restart().expect("restart the dead agent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forward_step_across_a_controller_restart_keeps_healthy_leases() {
    step_then_restart(HOUR_S).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backward_step_across_a_controller_restart_ends_dead_leases_in_time() {
    step_then_restart(-HOUR_S).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batonctl_get_shows_sane_durations_after_a_backward_step() {
    let Some((c, clock, _dir)) = faked_cluster(1).await else {
        return;
    };
    let (id, _, _) = marked_job(&c, "a", 3).await;
    clock.set_offset_s(-HOUR_S).expect("step");
    let done = c.api.wait_terminal(id, WAIT).await.expect("terminal");
    assert_eq!(done.state, JobState::Succeeded, "{}", c.logs());
    assert_sane_times(&done);
    let a = &done.attempts[0];
    let ran = (a.ended_at.expect("ended") - a.started_at).num_milliseconds();
    assert!(ran >= 2_500, "a 3 s job shown as {ran} ms");
    let text = batonctl(&c, &["get", &id.to_string()]);
    // The attempt's duration is the ~3 s it ran.
    let row = text
        .lines()
        .find(|l| l.trim_start().starts_with("1 ") && l.contains("agent-1"))
        .unwrap_or_else(|| panic!("no attempt row:\n{text}"));
    let words: Vec<&str> = row.split_whitespace().collect();
    // #, AGENT, TOKEN, STARTED ("Ns ago"), DURATION, OUTCOME.
    assert_eq!(words.get(6).copied(), Some("succeeded"), "{row}");
    let duration = words[5];
    assert!(
        duration.starts_with('3') || duration.starts_with('4'),
        "duration {duration}: {row}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batonctl_shows_times_on_the_controllers_clock() {
    let Some((mut c, clock, _dir)) = faked_cluster(1).await else {
        return;
    };
    // Restarted an hour ahead: the controller's clock is now an hour ahead
    // of batonctl's.
    clock.set_offset_s(HOUR_S).expect("step");
    c.controller.restart().await.expect("restart");
    c.wait_agents_online().await.expect("online");
    let (id, _, _) = marked_job(&c, "a", 1).await;
    c.api.wait_terminal(id, WAIT).await.expect("terminal");
    batonctl(&c, &["get", &id.to_string()]);
    batonctl(&c, &["list"]);
    batonctl(&c, &["agents"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backward_step_during_a_held_poll_does_not_fence_its_grant() {
    let Some((c, clock, _dir)) = faked_cluster(1).await else {
        return;
    };
    // The agent's poll has been held longer than a TTL when the job comes;
    // the hold handed back must still be the real one (a wall-clock hold
    // read 0 here, and the agent fenced its fresh lease at once).
    tokio::time::sleep(Duration::from_millis(TTL_MS + 1_000)).await;
    clock.set_offset_s(-HOUR_S).expect("step");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (id, _, marks) = marked_job(&c, "a", 2).await;
    let done = c.api.wait_terminal(id, WAIT).await.expect("terminal");
    assert_eq!(done.state, JobState::Succeeded, "{}", c.logs());
    assert_eq!(done.attempts.len(), 1, "{:#?}\n{}", done.attempts, c.logs());
    assert_eq!(count(&marks, "start"), 1);
    assert_sane_times(&done);
}
