//! Drain: `batonctl agents drain ID` stops an agent taking new work while the
//! jobs it runs finish; `resume` lifts it. Real controller, agents and batonctl.

use std::process::{Command, Output};
use std::time::Duration;

use baton_proto::{AttemptOutcome, JobState};
use baton_tests::cluster::Cluster;
use baton_tests::proc::bin;
use reqwest::Method;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

fn ctl(url: &str, token: &str, args: &[&str]) -> Output {
    Command::new(bin("batonctl").expect("bin"))
        .args(args)
        .env("BATON_URL", url)
        .env("BATON_TOKEN", token)
        .output()
        .expect("run batonctl")
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "batonctl failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn sh(script: &str) -> serde_json::Value {
    json!({
        "group": "default",
        "spec": {"kind": "command", "program": "/bin/sh", "args": ["-c", script]},
        "retry": {"max_attempts": 1}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_agent_finishes_its_job_takes_nothing_new_until_resumed() {
    let mut c = Cluster::start_with(2, "", |o| o.slots = 2)
        .await
        .expect("cluster");
    c.wait_agents_online().await.expect("online");
    let url = c.controller.url();
    let admin = c.controller.admin_token.clone();

    let long = c
        .api
        .submit(sh("sleep 3; echo finished"))
        .await
        .expect("submit");
    let (_, holder) = c.api.wait_running(long.id, WAIT).await.expect("running");
    let other = if holder == "agent-1" {
        "agent-2"
    } else {
        "agent-1"
    };

    // Operators drain; viewers cannot.
    let viewer = c
        .api
        .operator_token("watcher", "viewer")
        .await
        .expect("viewer");
    let refused = c
        .api
        .with_token(&viewer)
        .raw(
            Method::POST,
            &format!("/v1/agents/{holder}/drain"),
            None,
            &[],
        )
        .await
        .expect("raw");
    assert_eq!(refused.status, 403);
    let out = stdout(&ctl(&url, &admin, &["agents", "drain", &holder]));
    assert_eq!(
        out.trim(),
        format!(
            "Agent {holder}: drained, takes no new work; still running job {}",
            long.id
        )
    );
    let list = stdout(&ctl(&url, &admin, &["agents"]));
    let row = list
        .lines()
        .find(|l| l.starts_with(holder.as_str()))
        .expect("holder row");
    assert_eq!(row.split_whitespace().nth(1), Some("draining"), "{list}");
    let unknown = ctl(&url, &admin, &["agents", "drain", "nobody"]);
    assert!(!unknown.status.success());

    // New work goes to the other agent, although the drained one has a free slot.
    let mut short = Vec::new();
    for i in 0..3 {
        short.push(
            c.api
                .submit(sh(&format!("echo short{i}")))
                .await
                .expect("submit")
                .id,
        );
    }
    for id in &short {
        let j = c.api.wait_terminal(*id, WAIT).await.expect("terminal");
        assert_eq!(j.state, JobState::Succeeded, "{}", c.logs());
        assert_eq!(j.attempts.len(), 1);
        assert_eq!(
            j.attempts[0].agent_id, other,
            "job {id} went to a drained agent"
        );
    }

    // The running job finishes on the drained agent and is reported.
    let done = c.api.wait_terminal(long.id, WAIT).await.expect("terminal");
    assert_eq!(done.state, JobState::Succeeded, "{}", c.logs());
    assert_eq!(done.attempts.len(), 1);
    assert_eq!(done.attempts[0].agent_id, holder);
    assert_eq!(done.attempts[0].outcome, Some(AttemptOutcome::Succeeded));
    assert_eq!(done.result.expect("result").stdout, "finished\n");
    assert!(
        c.agent(&holder)
            .log_text()
            .contains("Drained by an operator: taking no new work"),
        "{}",
        c.agent(&holder).log_text()
    );

    // With every agent drained a job waits, and says why.
    stdout(&ctl(&url, &admin, &["agents", "drain", other]));
    let waiting = c.api.submit(sh("echo resumed")).await.expect("submit");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let j = c.api.job(waiting.id).await.expect("job");
    assert_eq!(j.state, JobState::Queued);
    assert!(j.attempts.is_empty());
    let reason = j.blocked_reason.expect("blocked reason");
    assert!(reason.contains("is drained (agent-1, agent-2)"), "{reason}");

    // Resume: the held poll of the resumed agent picks the job up.
    let out = stdout(&ctl(&url, &admin, &["agents", "resume", &holder]));
    assert_eq!(
        out.trim(),
        format!("Agent {holder}: resumed, takes new work")
    );
    let j = c
        .api
        .wait_terminal(waiting.id, WAIT)
        .await
        .expect("terminal");
    assert_eq!(j.state, JobState::Succeeded, "{}", c.logs());
    assert_eq!(j.attempts[0].agent_id, holder);
    let agents = c.api.agents().await.expect("agents");
    let drained: Vec<(&str, bool)> = agents
        .agents
        .iter()
        .map(|a| (a.id.as_str(), a.drained_at.is_some()))
        .collect();
    assert!(drained.contains(&(holder.as_str(), false)), "{drained:?}");
    assert!(drained.contains(&(other, true)), "{drained:?}");
}
