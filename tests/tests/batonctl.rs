//! `batonctl` against a real controller and agent.

use std::process::{Command, Output};

use baton_proto::{AgentList, JobList, JobState, JobView};
use baton_tests::cluster::Cluster;
use baton_tests::proc::bin;

fn ctl(url: &str, token: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(bin("batonctl").expect("bin"));
    cmd.args(args)
        .env("BATON_URL", url)
        .env_remove("BATON_TOKEN");
    if let Some(t) = token {
        cmd.env("BATON_TOKEN", t);
    }
    cmd.output().expect("run batonctl")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batonctl_submits_waits_lists_gets_and_shows_agents() {
    let c = Cluster::start(1).await.expect("cluster");
    c.wait_agents_online().await.expect("online");
    let url = c.controller.url();
    let tok = Some(c.controller.admin_token.as_str());

    let out = ctl(
        &url,
        tok,
        &[
            "submit",
            "--program",
            "/bin/echo",
            "--label",
            "team=dba",
            "--wait",
            "--",
            "hello",
            "baton",
        ],
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("hello baton"), "{stdout}");
    let id: i64 = stdout
        .split_whitespace()
        .skip_while(|w| *w != "job")
        .nth(1)
        .and_then(|w| w.parse().ok())
        .expect("job id in output");

    let out = ctl(&url, tok, &["-o", "json", "get", &id.to_string()]);
    assert_eq!(out.status.code(), Some(0));
    let job: JobView = serde_json::from_slice(&out.stdout).expect("job json");
    assert_eq!(job.state, JobState::Succeeded);
    assert_eq!(job.labels.get("team").map(String::as_str), Some("dba"));
    assert_eq!(job.result.expect("result").stdout, "hello baton\n");

    let out = ctl(&url, tok, &["get", &id.to_string()]);
    let t = text(&out.stdout);
    assert!(t.contains("succeeded") && t.contains("agent-1"), "{t}");

    let out = ctl(&url, tok, &["-o", "json", "list", "--label", "team=dba"]);
    let list: JobList = serde_json::from_slice(&out.stdout).expect("list json");
    assert_eq!(list.jobs.iter().map(|j| j.id).collect::<Vec<_>>(), vec![id]);

    let out = ctl(&url, tok, &["-o", "json", "agents"]);
    let agents: AgentList = serde_json::from_slice(&out.stdout).expect("agents json");
    assert_eq!(agents.agents.len(), 1);
    assert!(agents.agents[0].online);
    let out = ctl(&url, tok, &["agents"]);
    assert!(text(&out.stdout).contains("agent-1"));

    // A failing job: --wait exits 1.
    let out = ctl(
        &url,
        tok,
        &[
            "submit",
            "--program",
            "/bin/false",
            "--max-attempts",
            "1",
            "--wait",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));

    // API errors: exit 1 with the JSON error's message; no token: refused.
    let out = ctl(&url, tok, &["cancel", "999999"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("error:"),
        "{}",
        text(&out.stderr)
    );
    let out = ctl(&url, Some("wrong-token-wrong-token"), &["list"]);
    assert_eq!(out.status.code(), Some(1));
    let out = ctl(&url, None, &["list"]);
    assert_ne!(out.status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batonctl_manages_tokens_enrollment_agents_and_reads_the_audit() {
    let c = Cluster::start(0).await.expect("cluster");
    let url = c.controller.url();
    let admin = Some(c.controller.admin_token.as_str());

    let out = ctl(
        &url,
        admin,
        &["tokens", "create", "--name", "ci", "--role", "viewer"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let viewer = text(&out.stdout).trim().to_owned();
    assert!(viewer.starts_with("baton_op_"), "only the secret on stdout");
    let out = ctl(&url, Some(&viewer), &["whoami"]);
    assert_eq!(text(&out.stdout).trim(), "ci (viewer)");
    let out = ctl(&url, Some(&viewer), &["tokens", "list"]);
    assert_eq!(out.status.code(), Some(1), "a viewer may not list tokens");

    let out = ctl(
        &url,
        admin,
        &["enroll", "create", "--group", "default", "--expires", "1h"],
    );
    assert_eq!(out.status.code(), Some(0));
    let token = text(&out.stdout).trim().to_owned();
    assert!(token.starts_with("baton_enr_"));
    // A real agent enrolls with it from the command line.
    let state = c.path("enrolled-agent");
    let token_file = c.path("enroll.token");
    baton_tests::mariadb::write_private_file(&token_file, &token).expect("write");
    let cfg = c.path("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            "agent_id = \"cli-agent\"\ncontroller_url = \"{url}\"\nstate_dir = \"{}\"\n",
            state.display()
        ),
    )
    .expect("write");
    let out = Command::new(bin("baton-agent").expect("bin"))
        .args([
            "--config",
            cfg.to_str().expect("path"),
            "enroll",
            "--token-file",
        ])
        .arg(&token_file)
        .output()
        .expect("enroll");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("Enrolled as cli-agent"));
    assert!(
        !text(&out.stdout).contains("baton_agt_"),
        "the secret is never printed"
    );
    let out = ctl(&url, admin, &["enroll", "list"]);
    assert!(text(&out.stdout).contains("used"), "{}", text(&out.stdout));

    let out = ctl(&url, admin, &["agents", "revoke", "cli-agent"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = ctl(&url, admin, &["-o", "json", "agents"]);
    let agents: AgentList = serde_json::from_slice(&out.stdout).expect("json");
    assert!(agents.agents[0].revoked_at.is_some());

    let out = ctl(&url, admin, &["audit", "--limit", "50"]);
    let t = text(&out.stdout);
    assert!(t.contains("POST /v1/agents/{id}/revoke"), "{t}");
    assert!(t.contains("agent:cli-agent"), "{t}");
}
