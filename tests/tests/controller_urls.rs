//! Several controller URLs with the real binaries: the agent's
//! `BATON_AGENT_CONTROLLER_URLS` and batonctl's comma-separated `BATON_URL`.
//!
//! Without several controllers on one database (that needs PostgreSQL),
//! two URLs lead to the one controller: "replica A" is a TCP fault proxy in
//! front of it, whose reset kills every connection as a dying replica does,
//! and "replica B" is the controller's own address.

use std::process::Command;
use std::time::Duration;

use baton_proto::{JobState, JobView};
use baton_tests::cluster::Cluster;
use baton_tests::faultproxy::FaultProxy;
use baton_tests::proc::{AgentOpts, bin};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

/// A loopback URL nobody listens on.
fn refused_url() -> String {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_moves_to_another_controller_url_when_its_replica_dies_mid_job() {
    let mut c = Cluster::start(0).await.expect("cluster");
    let proxy = FaultProxy::start(c.controller.addr).await.expect("proxy");
    let mut opts = AgentOpts::new("multi");
    opts.env.push((
        "BATON_AGENT_CONTROLLER_URLS".into(),
        format!("{},{}", proxy.url(), c.controller.url()),
    ));
    c.add_agent(opts).await.expect("agent");
    c.wait_agents_online().await.expect("online");

    let job = c
        .api
        .submit(json!({
            "group": "default",
            "spec": {"kind": "command", "program": "/bin/sh", "args": ["-c", "sleep 3; echo done"]},
            "lease_ttl_ms": 4000,
            "retry": {"max_attempts": 1},
        }))
        .await
        .expect("submit");
    c.api.wait_running(job.id, WAIT).await.expect("running");
    // Replica A dies: its connections (the held poll, the heartbeats) are
    // reset. The lease (4 s) survives only if the heartbeats move to B.
    proxy.reset();
    let end: JobView = c.api.wait_terminal(job.id, WAIT).await.expect("ended");
    assert_eq!(end.state, JobState::Succeeded, "{}", c.logs());
    assert_eq!(end.attempts.len(), 1, "ran once: {:?}", end.attempts);
    assert_eq!(end.result.expect("result").stdout, "done\n");
    let log = c.agent("multi").log_text();
    assert!(log.contains("Switched controller"), "{log}");
    if let Some(line) = log.lines().find(|l| l.contains("Switched controller")) {
        println!("{line}");
    }
    // The agent keeps working through B.
    let next = c
        .api
        .submit(json!({"group": "default", "spec": {"kind": "command", "program": "/bin/true"}}))
        .await
        .expect("submit");
    let next = c.api.wait_terminal(next.id, WAIT).await.expect("ended");
    assert_eq!(next.state, JobState::Succeeded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batonctl_takes_a_comma_separated_baton_url_and_keys_its_submit() {
    let c = Cluster::start(0).await.expect("cluster");
    let urls = format!("{},{}", refused_url(), c.controller.url());
    let out = Command::new(bin("batonctl").expect("bin"))
        .args([
            "-o",
            "json",
            "submit",
            "--allow-unplaced",
            "--program",
            "/bin/true",
        ])
        .env("BATON_URL", &urls)
        .env("BATON_TOKEN", &c.controller.admin_token)
        .output()
        .expect("run batonctl");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("switched to the controller at"), "{stderr}");
    let job: JobView = serde_json::from_slice(&out.stdout).expect("job json");
    let key = job.idempotency_key.expect("an automatic idempotency key");
    assert!(key.starts_with("batonctl-"), "{key}");
}
