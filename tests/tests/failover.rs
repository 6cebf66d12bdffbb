//! Failover end to end: real agents killed, frozen and fenced; a real
//! controller killed with SIGKILL and restarted.

use std::path::PathBuf;
use std::time::Duration;

use baton_proto::{AttemptOutcome, JobState};
use baton_tests::cluster::Cluster;
use baton_tests::proc::pid_alive;
use nix::sys::signal::Signal;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

fn sh(script: &str, ttl_ms: u64) -> serde_json::Value {
    json!({
        "group": "default",
        "spec": {"kind": "command", "program": "/bin/sh", "args": ["-c", script]},
        "lease_ttl_ms": ttl_ms,
        "retry": {"max_attempts": 3, "initial_backoff_ms": 0, "jitter": 0.0}
    })
}

fn count_lines(path: &std::path::Path, word: &str) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.trim() == word)
        .count()
}

async fn wait_file(path: &std::path::Path) -> String {
    for _ in 0..2000 {
        if let Ok(s) = std::fs::read_to_string(path)
            && !s.trim().is_empty()
        {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{} never appeared", path.display());
}

/// Submit a job that appends `start` to a marks file, sleeps, appends `end`;
/// wait until it runs and has started. Returns (job id, holder, marks path).
async fn start_marked_job(c: &Cluster, sleep_s: u32, ttl_ms: u64) -> (i64, String, PathBuf) {
    let marks = c.path("marks");
    let job = c
        .api
        .submit(sh(
            &format!(
                "echo start >> {m}; sleep {sleep_s}; echo end >> {m}; echo finished",
                m = marks.display()
            ),
            ttl_ms,
        ))
        .await
        .expect("submit");
    let (_, holder) = c.api.wait_running(job.id, WAIT).await.expect("running");
    wait_file(&marks).await;
    (job.id, holder, marks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_holder_hands_the_job_to_another_agent() {
    let mut c = Cluster::start(3).await.expect("cluster");
    c.wait_agents_online().await.expect("online");
    let (job_id, holder, marks) = start_marked_job(&c, 5, 2000).await;
    // The agent records the command's process group right after spawning it;
    // on a loaded machine the command can write its mark first. Kill only
    // once the record is on disk, as a real crash after start would find it.
    let running = c.agent(&holder).dir.join("state").join("running");
    let end = std::time::Instant::now() + WAIT;
    while std::fs::read_dir(&running).map_or(0, |d| d.count()) == 0 {
        assert!(std::time::Instant::now() < end, "no process group recorded");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    c.agent(&holder).proc().kill9();
    c.api
        .wait_for(job_id, WAIT, "re-granted", |j| {
            j.lease_agent.as_deref().is_some_and(|a| a != holder)
        })
        .await
        .expect("takeover");
    // The command died with its agent (parent-death signal and group
    // keeper: tests/tests/process_safety.rs), so the old attempt never
    // reaches "end"; the restart (as systemd would) finds nothing left.
    c.agent(&holder).restart().expect("restart");
    let done = c.api.wait_terminal(job_id, WAIT).await.expect("terminal");
    assert_eq!(done.state, JobState::Succeeded, "{}", c.logs());
    assert_eq!(done.attempts.len(), 2, "{:#?}", done.attempts);
    assert_eq!(done.attempts[0].agent_id, holder);
    assert_eq!(done.attempts[0].outcome, Some(AttemptOutcome::LeaseExpired));
    assert_ne!(done.attempts[1].agent_id, holder);
    assert_eq!(done.attempts[1].outcome, Some(AttemptOutcome::Succeeded));
    assert!(done.attempts[1].token > done.attempts[0].token);
    let result = done.result.expect("result");
    assert_eq!(result.exit_code, Some(0));
    assert_eq!(result.stdout, "finished\n");
    assert_eq!(count_lines(&marks, "start"), 2);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(count_lines(&marks, "end"), 1, "{}", c.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_token_gets_409_and_the_old_agent_kills_its_child() {
    let mut c = Cluster::start(2).await.expect("cluster");
    c.wait_agents_online().await.expect("online");
    let pidfile = c.path("child.pid");
    let job = c
        .api
        .submit(sh(
            &format!("echo $$ > {}; exec sleep 30", pidfile.display()),
            15_000,
        ))
        .await
        .expect("submit");
    let (running, holder) = c.api.wait_running(job.id, WAIT).await.expect("running");
    let pid: i32 = wait_file(&pidfile).await.trim().parse().expect("pid");
    assert!(pid_alive(pid));
    let token = running.attempts.last().expect("attempt").token;
    // Someone hands the job back behind the holder's back (as a confused
    // duplicate of the agent would): the lease moves on to the other agent.
    let secret = c.agent(&holder).secret().expect("secret");
    let as_holder = c.api.as_agent(&holder, &secret);
    let r = as_holder
        .post(
            &format!("/v1/jobs/{}/release", job.id),
            json!({"token": token}),
        )
        .await
        .expect("release");
    assert_eq!(r.status, 200, "{:?}", r.body);
    let _ = std::fs::remove_file(&pidfile);
    // The old token is now stale for every call.
    for call in ["heartbeat", "complete", "release"] {
        let body = if call == "complete" {
            json!({"token": token, "completion": {"outcome": "succeeded"}})
        } else {
            json!({"token": token})
        };
        let r = as_holder
            .post(&format!("/v1/jobs/{}/{call}", job.id), body)
            .await
            .expect("call");
        assert_eq!(r.status, 409, "{call}: {:?}", r.body);
        assert_eq!(
            r.error().expect("json error").error.code,
            baton_proto::ErrorCode::LeaseLost
        );
    }
    // The real holder learns it on its next heartbeat (TTL/3 = 5 s) and kills its child.
    for _ in 0..1000 {
        if !pid_alive(pid) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!pid_alive(pid), "old child still running\n{}", c.logs());
    assert!(
        c.agent(&holder).log_text().contains("Lease lost"),
        "{}",
        c.logs()
    );
    let j = c.api.job(job.id).await.expect("job");
    assert!(j.attempts.len() >= 2);
    assert_eq!(j.attempts[0].outcome, Some(AttemptOutcome::Released));
    assert!(
        j.attempts
            .iter()
            .all(|a| a.outcome != Some(AttemptOutcome::Succeeded)),
        "no success may be reported by the old holder"
    );
    c.api.cancel(job.id).await.expect("cancel");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_holder_never_reports_and_the_job_ends_exactly_once() {
    let mut c = Cluster::start(2).await.expect("cluster");
    c.wait_agents_online().await.expect("online");
    let (job_id, holder, marks) = start_marked_job(&c, 6, 2000).await;
    c.agent(&holder)
        .proc()
        .signal(Signal::SIGSTOP)
        .expect("stop");
    // Past the TTL another agent takes the job.
    let taken = c
        .api
        .wait_for(job_id, WAIT, "re-granted", |j| {
            j.lease_agent.as_deref().is_some_and(|a| a != holder)
        })
        .await
        .expect("takeover");
    assert_eq!(
        taken.attempts[0].outcome,
        Some(AttemptOutcome::LeaseExpired)
    );
    c.agent(&holder)
        .proc()
        .signal(Signal::SIGCONT)
        .expect("cont");
    let done = c.api.wait_terminal(job_id, WAIT).await.expect("terminal");
    assert_eq!(done.state, JobState::Succeeded, "{}", c.logs());
    assert_eq!(done.attempts.len(), 2);
    assert_ne!(done.attempts[1].agent_id, holder);
    // Give the thawed agent time to misbehave, then count effects.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(count_lines(&marks, "end"), 1, "{}", c.logs());
    let log = c.agent(&holder).log_text();
    assert!(log.contains("Lease lost"), "{log}");
    let j = c.api.job(job_id).await.expect("job");
    assert_eq!(j.attempts.len(), 2);
    assert_eq!(j.attempts[0].outcome, Some(AttemptOutcome::LeaseExpired));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_kill9_loses_nothing_and_the_outbox_delivers() {
    let mut c = Cluster::start(2).await.expect("cluster");
    c.wait_agents_online().await.expect("online");
    let running = c
        .api
        .submit(sh("sleep 1; echo survived", 15_000))
        .await
        .expect("submit");
    let (_, holder) = c.api.wait_running(running.id, WAIT).await.expect("running");
    // More work than slots: some stay queued across the crash.
    let mut queued = Vec::new();
    for i in 0..4 {
        queued.push(
            c.api
                .submit(sh(&format!("sleep 1; echo q{i}"), 15_000))
                .await
                .expect("submit")
                .id,
        );
    }
    c.controller.kill9();
    // The running job finishes while the controller is down: its completion waits in the outbox.
    let mut parked = false;
    for _ in 0..500 {
        if c.agent(&holder).outbox_len() > 0 {
            parked = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(parked, "no completion parked in the outbox\n{}", c.logs());
    c.controller.restart().await.expect("restart");
    let done = c
        .api
        .wait_terminal(running.id, WAIT)
        .await
        .expect("terminal");
    assert_eq!(done.state, JobState::Succeeded, "{}", c.logs());
    assert_eq!(
        done.attempts.len(),
        1,
        "delivered from the outbox, not re-run"
    );
    assert_eq!(done.result.expect("result").stdout, "survived\n");
    for id in queued {
        let j = c.api.wait_terminal(id, WAIT).await.expect("terminal");
        assert_eq!(j.state, JobState::Succeeded, "{}", c.logs());
    }
    // The controller records a completion before its answer reaches the
    // agent, which only then clears the outbox file: wait for that.
    let end = std::time::Instant::now() + WAIT;
    while c.agent(&holder).outbox_len() > 0 {
        assert!(
            std::time::Instant::now() < end,
            "delivered completions left in the outbox\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Completions the agent made durable (in its outbox log) while the
/// controller was down survive a SIGKILL of the agent too: the restarted
/// agent delivers them; none is lost, none re-run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_kill9_keeps_the_completions_in_its_outbox() {
    let mut c = Cluster::start_with(1, "", |o| o.slots = 4)
        .await
        .expect("cluster");
    c.wait_agents_online().await.expect("online");
    let mut jobs = Vec::new();
    for i in 0..4 {
        let job = c
            .api
            .submit(sh(&format!("sleep 1; echo p{i}"), 15_000))
            .await
            .expect("submit");
        jobs.push(job.id);
    }
    for &id in &jobs {
        c.api.wait_running(id, WAIT).await.expect("running");
    }
    let agent = c.agents[0].opts.id.clone();
    c.controller.kill9();
    let end = std::time::Instant::now() + WAIT;
    while c.agent(&agent).outbox_len() < jobs.len() {
        assert!(
            std::time::Instant::now() < end,
            "completions never all parked in the outbox\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    c.agent(&agent).proc().kill9();
    assert_eq!(c.agent(&agent).outbox_len(), jobs.len(), "kept on disk");
    c.controller.restart().await.expect("restart");
    c.agent(&agent).restart().expect("agent restart");
    for (i, &id) in jobs.iter().enumerate() {
        let done = c.api.wait_terminal(id, WAIT).await.expect("terminal");
        assert_eq!(done.state, JobState::Succeeded, "{}", c.logs());
        assert_eq!(
            done.attempts.len(),
            1,
            "delivered, not re-run\n{}",
            c.logs()
        );
        assert_eq!(done.result.expect("result").stdout, format!("p{i}\n"));
    }
    let end = std::time::Instant::now() + WAIT;
    while c.agent(&agent).outbox_len() > 0 {
        assert!(
            std::time::Instant::now() < end,
            "delivered completions left in the outbox\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_jobs_survive_controller_kill9() {
    let mut c = Cluster::start(0).await.expect("cluster");
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(
            c.api
                .submit(sh(&format!("echo {i}"), 15_000))
                .await
                .expect("submit")
                .id,
        );
    }
    c.controller.restart().await.expect("restart");
    for id in &ids {
        let j = c.api.job(*id).await.expect("job survived");
        assert_eq!(j.state, JobState::Queued);
    }
    // And they run once agents show up.
    c.add_agent(baton_tests::proc::AgentOpts::new("late"))
        .await
        .expect("agent");
    for id in ids {
        let j = c.api.wait_terminal(id, WAIT).await.expect("terminal");
        assert_eq!(j.state, JobState::Succeeded);
    }
}

/// A grant answered to the held poll of a frozen agent (the only poll, so
/// the submit hands the job to it, lease lifecycle point 7) waits in the
/// socket while the lease runs out; another agent takes the job over, and
/// the thawed agent, reading the grant past its deadline on its own
/// monotonic clock, drops it without starting: the work runs once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_handed_to_a_frozen_poll_never_starts_there() {
    let mut c = Cluster::start(1).await.expect("cluster");
    c.wait_agents_online().await.expect("online");
    // Its poll is held now (it re-polls at once after each answer).
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.agent("agent-1")
        .proc()
        .signal(Signal::SIGSTOP)
        .expect("stop");
    let marks = c.path("marks");
    let script = format!(
        "echo start >> {m}; sleep 1; echo end >> {m}",
        m = marks.display()
    );
    let job = c.api.submit(sh(&script, 2000)).await.expect("submit");
    // Granted to the frozen agent's held poll, never started there.
    let granted = c
        .api
        .wait_for(job.id, Duration::from_secs(5), "granted", |j| {
            j.lease_agent.as_deref() == Some("agent-1")
        })
        .await
        .expect("handed to the frozen poll");
    assert_eq!(granted.attempts.len(), 1);
    assert_eq!(granted.attempts[0].running_at, None);
    c.add_agent(baton_tests::proc::AgentOpts::new("agent-2"))
        .await
        .expect("agent-2");
    let taken = c
        .api
        .wait_for(job.id, WAIT, "re-granted", |j| {
            j.lease_agent.as_deref() == Some("agent-2")
        })
        .await
        .expect("takeover");
    assert_eq!(
        taken.attempts[0].outcome,
        Some(AttemptOutcome::LeaseExpired)
    );
    c.agent("agent-1")
        .proc()
        .signal(Signal::SIGCONT)
        .expect("cont");
    let done = c.api.wait_terminal(job.id, WAIT).await.expect("terminal");
    assert_eq!(done.state, JobState::Succeeded, "{}", c.logs());
    // Give the thawed agent time to misbehave, then count effects.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(count_lines(&marks, "start"), 1, "{}", c.logs());
    assert_eq!(count_lines(&marks, "end"), 1, "{}", c.logs());
    let log = c.agent("agent-1").log_text();
    assert!(
        log.contains("the lease ran out before the job started"),
        "{log}"
    );
    let j = c.api.job(job.id).await.expect("job");
    assert_eq!(j.attempts.len(), 2, "{j:?}");
    assert_eq!(j.attempts[0].agent_id, "agent-1");
    assert_eq!(j.attempts[0].running_at, None, "never started on agent-1");
    assert_eq!(j.attempts[1].agent_id, "agent-2");
}

/// `baton_dispatch_polls_parked` from `/metrics`.
async fn polls_parked(api: &baton_tests::api::Api) -> u64 {
    let text = api.metrics().await.expect("metrics");
    text.lines()
        .find_map(|l| l.strip_prefix("baton_dispatch_polls_parked "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no baton_dispatch_polls_parked in\n{text}"))
}

async fn wait_parked(api: &baton_tests::api::Api, n: u64, within: Duration) {
    let end = std::time::Instant::now() + within;
    loop {
        let now = polls_parked(api).await;
        if now == n {
            return;
        }
        assert!(
            std::time::Instant::now() < end,
            "{now} polls parked after {within:?}, want {n}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An agent killed while its poll is held: the controller sees the
/// connection close at once (hyper reads the held request's connection for
/// it) and drops the poll, so a job submitted next is never handed to the
/// dead agent, over plain HTTP and over TLS.
async fn a_killed_agents_held_poll_is_dropped_at_once(tls: bool) {
    use baton_tests::pki::Pki;
    use baton_tests::proc::{Agent, AgentOpts, Controller};
    baton_tests::init_crypto();
    let tmp = tempfile::tempdir().expect("tmp");
    let pki = Pki::generate(&tmp.path().join("pki")).expect("pki");
    let dir = tmp.path().join("controller");
    let ctl = if tls {
        Controller::start_tls(&dir, &pki, false).await
    } else {
        Controller::start(&dir, "").await
    }
    .expect("controller");
    let api = ctl.api();
    let agent = |id: &str| {
        let mut o = AgentOpts::new(id);
        if tls {
            o.extra = format!("[tls]\nca_file = \"{}\"\n", pki.ca.display());
        }
        o
    };
    let mut opts = agent("agent-1");
    opts.enrollment_token = Some(api.enrollment_token(&opts.groups).await.expect("token"));
    let mut one = Agent::start(tmp.path(), &ctl.url(), opts).expect("agent-1");
    // Its poll is held (25 s) and parked for a hand-off.
    wait_parked(&api, 1, WAIT).await;
    one.proc().kill9();
    // Well inside the hold: only the connection's close can end it.
    wait_parked(&api, 0, Duration::from_secs(5)).await;
    let job = api.submit(sh("echo ran", 10_000)).await.expect("submit");
    let queued = api.job(job.id).await.expect("job");
    assert_eq!(queued.state, JobState::Queued, "{queued:?}");
    assert!(queued.attempts.is_empty(), "{queued:?}");
    let mut opts = agent("agent-2");
    opts.enrollment_token = Some(api.enrollment_token(&opts.groups).await.expect("token"));
    let _two = Agent::start(tmp.path(), &ctl.url(), opts).expect("agent-2");
    let done = api.wait_terminal(job.id, WAIT).await.expect("terminal");
    assert_eq!(done.state, JobState::Succeeded, "{done:?}");
    assert_eq!(done.attempts.len(), 1, "{done:?}");
    assert_eq!(done.attempts[0].agent_id, "agent-2");
}

#[tokio::test]
async fn a_killed_agents_held_poll_is_dropped_at_once_over_http() {
    a_killed_agents_held_poll_is_dropped_at_once(false).await;
}

#[tokio::test]
async fn a_killed_agents_held_poll_is_dropped_at_once_over_tls() {
    a_killed_agents_held_poll_is_dropped_at_once(true).await;
}
