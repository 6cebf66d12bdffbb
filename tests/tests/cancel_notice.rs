//! A cancel reaches the running job through the holder's held poll, not the
//! next heartbeat (issue 16, point 11): with a 90 s lease TTL the first
//! heartbeat goes out 30 s after the grant, so a job that ends `cancelled`
//! within 20 s of `batonctl cancel` learnt it from the poll. Real controller,
//! agent and batonctl; the job is a real `sleep` process. A cancel committed
//! while the holder was away, just before the controller was killed, still
//! reaches the job by the holder's first poll to the restarted controller.

use std::process::Command;
use std::time::{Duration, Instant};

use baton_proto::{AttemptOutcome, JobId, JobState};
use baton_tests::cluster::Cluster;
use baton_tests::proc::bin;
use nix::sys::signal::Signal;
use serde_json::json;

const TTL_MS: u64 = 90_000;
/// Well under the first heartbeat (TTL/3 = 30 s): a correctness bound.
const BOUND: Duration = Duration::from_secs(20);
const WAIT: Duration = Duration::from_secs(60);

/// Submit a `sleep 600` job at the [`TTL_MS`] lease and wait until it runs.
async fn running_sleep(c: &Cluster) -> JobId {
    let j = c
        .api
        .submit(json!({"group": "default", "lease_ttl_ms": TTL_MS,
                       "spec": {"kind": "command", "program": "/bin/sleep", "args": ["600"]}}))
        .await
        .expect("submit");
    c.api.wait_running(j.id, WAIT).await.expect("running");
    j.id
}

/// One agent with `slots`; `running` sleep jobs started; the first one is
/// cancelled with batonctl and must end `cancelled` within [`BOUND`].
async fn cancel_one_of(slots: u32, running: usize) {
    let c = Cluster::start_with(1, "", |o| o.slots = slots)
        .await
        .expect("cluster");
    c.wait_agents_online().await.expect("online");
    let mut ids = Vec::new();
    for _ in 0..running {
        ids.push(running_sleep(&c).await);
    }
    // Let the agent's next poll (for work, or for notices only) be held.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let target = ids[0];
    let asked = Instant::now();
    let out = Command::new(bin("batonctl").expect("bin"))
        .args(["cancel", &target.to_string()])
        .env("BATON_URL", c.controller.url())
        .env("BATON_TOKEN", &c.controller.admin_token)
        .output()
        .expect("run batonctl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let done = c.api.wait_terminal(target, WAIT).await.expect("terminal");
    let took = asked.elapsed();
    assert_eq!(done.state, JobState::Cancelled, "{done:#?}\n{}", c.logs());
    assert_eq!(
        done.attempts.last().and_then(|a| a.outcome),
        Some(AttemptOutcome::Cancelled),
        "{done:#?}"
    );
    assert!(
        took < BOUND,
        "cancel took {took:?}, not under {BOUND:?}: it waited for a heartbeat\n{}",
        c.logs()
    );
    let log = c.agents[0].log_text();
    assert!(log.contains("Cancel requested, stopping job"), "{log}");
    // The other jobs are untouched.
    for &other in &ids[1..] {
        let v = c.api.job(other).await.expect("job");
        assert_eq!(v.state, JobState::Running, "{v:#?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_reaches_a_job_while_every_slot_is_busy() {
    cancel_one_of(1, 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_reaches_a_job_while_a_slot_is_free() {
    cancel_one_of(2, 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_reaches_one_of_several_running_jobs() {
    cancel_one_of(2, 2).await;
}

/// The cancel marks of a controller live in its memory; a restarted one
/// marks, at start, every agent holding a cancelled running lease. The
/// agent is SIGSTOPped (its held poll answered empty while it sleeps, so no
/// poll is held when the cancel commits), the job is cancelled, the
/// controller is killed with `kill -9` and restarted, then the agent
/// continues: its first poll to the new controller must carry the notice,
/// well before its first heartbeat (30 s after the grant at a 90 s TTL).
#[tokio::test(flavor = "multi_thread")]
async fn a_cancel_committed_before_a_controller_restart_reaches_the_job_by_the_next_poll() {
    let mut c = Cluster::start_with(1, "poll_hold = \"1s\"\n", |o| o.slots = 1)
        .await
        .expect("cluster");
    c.wait_agents_online().await.expect("online");
    let id = running_sleep(&c).await;
    let granted = Instant::now();
    c.agents[0].proc().signal(Signal::SIGSTOP).expect("SIGSTOP");
    // The stopped agent's held poll is answered (empty) after the 1 s hold.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let v = c.api.cancel(id).await.expect("cancel");
    assert_eq!(v.state, JobState::Running, "{v:#?}");
    c.controller.restart().await.expect("restart");
    c.agents[0].proc().signal(Signal::SIGCONT).expect("SIGCONT");
    let resumed = Instant::now();
    let done = c.api.wait_terminal(id, WAIT).await.expect("terminal");
    let took = resumed.elapsed();
    assert_eq!(done.state, JobState::Cancelled, "{done:#?}\n{}", c.logs());
    // The first heartbeat goes out TTL/3 after the grant, which came a
    // little before `granted`: 5 s of margin.
    let before_heartbeat = Duration::from_millis(TTL_MS / 3) - Duration::from_secs(5);
    assert!(
        granted.elapsed() < before_heartbeat && took < Duration::from_secs(15),
        "the cancel took {took:?} after the agent resumed ({:?} after the grant): it waited for a heartbeat\n{}",
        granted.elapsed(),
        c.logs()
    );
    let log = c.controller.log_text();
    assert!(
        log.contains("Agents holding cancelled jobs marked"),
        "{log}"
    );
    assert!(log.contains("Cancel notice sent to the holder"), "{log}");
}
