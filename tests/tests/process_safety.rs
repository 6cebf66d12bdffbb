//! Process safety of the daemons, with real processes and real signals:
//! SIGHUP never stops the controller or the agent, and a job's command (its
//! whole process group, grandchildren included) dies with a SIGKILLed agent.

use std::time::{Duration, Instant};

use baton_proto::JobState;
use baton_tests::cluster::Cluster;
use baton_tests::proc::wait_pids;
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

/// Pids of the live (not zombie) processes whose process group is `pgid`.
fn group_members(pgid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // Fields after "(comm)": state ppid pgrp …
            let Some((_, rest)) = stat.rsplit_once(')') else {
                return false;
            };
            let f: Vec<&str> = rest.split_whitespace().collect();
            f.len() > 2 && f[0] != "Z" && f[2].parse::<i32>().ok() == Some(pgid)
        })
        .collect()
}

/// The pids written to `path` so far, one per line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_keeps_the_controller_and_the_agent_running() {
    let mut c = Cluster::start(1).await.expect("cluster");
    c.wait_agents_online().await.expect("online");
    for _ in 0..3 {
        c.controller
            .proc
            .as_ref()
            .expect("controller")
            .signal(Signal::SIGHUP)
            .expect("hup controller");
        c.agents[0]
            .proc()
            .signal(Signal::SIGHUP)
            .expect("hup agent");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        c.controller.proc.as_mut().expect("controller").running(),
        "the controller died on SIGHUP\n{}",
        c.logs()
    );
    assert!(
        c.agents[0].proc().running(),
        "the agent died on SIGHUP\n{}",
        c.logs()
    );
    // Both still work: a job submitted after the signals completes.
    let job = c
        .api
        .submit(sh("echo after-hup", 5_000))
        .await
        .expect("submit");
    let done = c.api.wait_terminal(job.id, WAIT).await.expect("terminal");
    assert_eq!(done.state, JobState::Succeeded, "{}", c.logs());
    assert_eq!(done.result.expect("result").stdout, "after-hup\n");
    for (who, log) in [
        ("controller", c.controller.log_text()),
        ("agent", c.agents[0].log_text()),
    ] {
        assert_eq!(
            log.matches("Received SIGHUP; reloaded").count(),
            3,
            "{who} did not log each SIGHUP:\n{log}"
        );
    }
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_agents_command_group_dies_with_it() {
    let mut c = Cluster::start(2).await.expect("cluster");
    c.wait_agents_online().await.expect("online");
    let pids = c.path("pids");
    // A child in the background and one in the foreground, both in the
    // command's process group, the shell their leader.
    let job = c
        .api
        .submit(sh(
            &format!(
                "echo $$ >> {}; sleep 30 & sleep 30; echo finished",
                pids.display()
            ),
            3_000,
        ))
        .await
        .expect("submit");
    let (_, holder) = c.api.wait_running(job.id, WAIT).await.expect("running");
    let first = wait_pids(&pids, 1).await[0];
    // Both sleeps started (leader + 2 children).
    let end = Instant::now() + WAIT;
    while group_members(first).len() < 3 {
        assert!(Instant::now() < end, "the command's children never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let killed_at = Instant::now();
    c.agent(&holder).proc().kill9();
    loop {
        let left = group_members(first);
        if left.is_empty() {
            break;
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(2),
            "processes of the dead agent's command still run 2 s after its SIGKILL: {left:?}\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The takeover's run is the only one running.
    let view = c
        .api
        .wait_for(job.id, WAIT, "re-granted", |j| {
            j.lease_agent.as_deref().is_some_and(|a| a != holder)
        })
        .await
        .expect("takeover");
    let all = wait_pids(&pids, 2).await;
    assert_eq!(all.len(), 2, "two runs started: {all:?}");
    let second = all[1];
    let end = Instant::now() + WAIT;
    while group_members(second).len() < 3 {
        assert!(Instant::now() < end, "the takeover's run never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(group_members(first).is_empty(), "the first run came back");
    assert_eq!(view.attempts.len(), 2, "{:#?}", view.attempts);
    c.api.cancel(job.id).await.expect("cancel");
    let done = c.api.wait_terminal(job.id, WAIT).await.expect("terminal");
    assert_eq!(done.state, JobState::Cancelled);
    let log = c.agent(&holder).log_text();
    assert!(
        log.contains("group keeper: the agent is gone; killed 1 command process group"),
        "{log}"
    );
}
