//! Logs end to end: a real controller and agent, `log_format = "json"` (one
//! JSON object per line) and the default text. One grep of a job's id finds
//! its lines in both logs; every agent line of a run, from its grant to the
//! delivery of its completion, carries the job through the `job` span; the
//! controller's request lines carry the route template, status and caller.
//! A bad `log_format` is a config error naming file, key and line (exit 78).

use std::time::Duration;

use baton_proto::JobState;
use baton_tests::cluster::Cluster;
use baton_tests::proc::bin;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

/// Debug lines of the request span and of the agent's job code, info elsewhere.
const CONTROLLER_LOG: &str = "info,sqlx=warn,baton_controller::api::trace=debug";
const AGENT_LOG: &str = "info,baton_agent::runner=debug,baton_agent::lease=debug,\
                         baton_agent::delivery=debug,baton_agent::executor=debug";

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A command job that runs long enough for its lease to be renewed (a 3 s
/// lease is renewed about every second).
fn slow_job() -> Value {
    json!({
        "group": "default",
        "spec": {"kind": "command", "program": "/bin/sh", "args": ["-c", "sleep 2.5; echo done"]},
        "retry": {"max_attempts": 1},
        "lease_ttl_ms": 3000
    })
}

/// Every line of a JSON log, parsed; a line that is not JSON fails the test.
fn json_lines(log: &str, who: &str) -> Vec<Value> {
    log.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{who} line is not JSON ({e}): {l}\n{log}"))
        })
        .collect()
}

/// The lines `grep` of `"job_id":<id>` finds (not `"job_id":<id>7`).
fn grep_job(log: &str, id: i64) -> Vec<&str> {
    let needle = format!("\"job_id\":{id}");
    log.lines()
        .filter(|l| {
            l.match_indices(&needle).any(|(i, m)| {
                !l[i + m.len()..]
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_digit())
            })
        })
        .collect()
}

fn message(line: &Value) -> &str {
    line["fields"]["message"].as_str().unwrap_or_default()
}

/// The job the line was logged in (its `job` span), if any.
fn span_job(line: &Value) -> Option<i64> {
    line["spans"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == "job")?
        .get("job_id")?
        .as_i64()
}

/// Wait until `log()` holds `needle`.
async fn wait_log(log: impl Fn() -> String, needle: &str) -> String {
    let end = std::time::Instant::now() + WAIT;
    loop {
        let text = log();
        if text.contains(needle) {
            return text;
        }
        assert!(
            std::time::Instant::now() < end,
            "never logged {needle:?}\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_name_the_job_in_both_daemons_and_every_line_parses() {
    let c = Cluster::start_env(
        1,
        "log_format = \"json\"\n",
        env(&[("BATON_CONTROLLER_LOG", CONTROLLER_LOG)]),
        |o| {
            o.env = env(&[
                ("BATON_AGENT_LOG_FORMAT", "json"),
                ("BATON_AGENT_LOG", AGENT_LOG),
            ])
        },
    )
    .await
    .expect("cluster");
    c.wait_agents_online().await.expect("online");
    let job = c.api.submit(slow_job()).await.expect("submit");
    let done = c.api.wait_terminal(job.id, WAIT).await.expect("terminal");
    assert_eq!(done.state, JobState::Succeeded, "{}", c.logs());
    let agent_log = wait_log(|| c.agents[0].log_text(), "Completion delivered").await;
    // A known caller refused: one INFO line naming the route, status and caller.
    let missing = c
        .api
        .raw(reqwest::Method::GET, "/v1/jobs/999999", None, &[])
        .await
        .expect("get");
    assert_eq!(missing.status.as_u16(), 404);
    let ctl_log = wait_log(|| c.controller.log_text(), "\"status\":404").await;

    // Every line of both logs is JSON.
    let ctl = json_lines(&ctl_log, "controller");
    let agent = json_lines(&agent_log, "agent");

    // One grep of the id finds the job in both logs.
    let in_controller = ["Job submitted", "Lease granted", "Job completion recorded"];
    grep_finds(&ctl_log, job.id, &in_controller, "controller");
    let in_agent = [
        "Lease granted",
        "Lease renewed",
        "Job finished",
        "Completion delivered",
    ];
    grep_finds(&agent_log, job.id, &in_agent, "agent");
    run_is_in_its_span(&agent, &agent_log, job.id);
    requests_are_named(&ctl, &ctl_log);
}

/// `grep` of the job id finds a line with each of `wanted` in `log`.
fn grep_finds(log: &str, id: i64, wanted: &[&str], who: &str) {
    let found = grep_job(log, id);
    for w in wanted {
        assert!(
            found.iter().any(|l| l.contains(w)),
            "{who}: no {w:?} line found by the job id\n{log}"
        );
    }
}

/// Every agent line from the grant to the delivery is inside the job's span.
fn run_is_in_its_span(agent: &[Value], log: &str, id: i64) {
    let start = agent
        .iter()
        .position(|l| message(l) == "Lease granted")
        .expect("granted");
    let end = agent
        .iter()
        .rposition(|l| message(l) == "Completion delivered")
        .expect("delivered");
    assert!(end > start + 2, "{log}");
    for line in &agent[start..=end] {
        assert_eq!(
            span_job(line),
            Some(id),
            "line outside the job span: {line}"
        );
        // The span's fields are on the line; the event does not repeat them.
        assert!(line["fields"].get("job_id").is_none(), "{line}");
    }
    let span = &agent[start]["span"];
    assert_eq!(span["name"], "job", "{span}");
    assert_eq!(span["attempt"], 1, "{span}");
    assert_eq!(span["kind"], "command", "{span}");
    assert!(span["token"].as_i64().is_some(), "{span}");
}

/// The controller's request lines: route template, status, caller, level.
fn requests_are_named(ctl: &[Value], log: &str) {
    let answered = |route: &str, status: u16| {
        ctl.iter()
            .filter(|l| message(l) == "Request answered")
            .find(|l| l["span"]["route"] == route && l["span"]["status"] == status)
            .unwrap_or_else(|| panic!("no {route} {status} line\n{log}"))
    };
    let operator = |line: &Value| {
        line["span"]["actor"]
            .as_str()
            .is_some_and(|a| a.starts_with("token:"))
    };
    let submit = answered("/v1/jobs", 201);
    assert_eq!(submit["span"]["method"], "POST", "{submit}");
    assert_eq!(submit["level"], "DEBUG", "{submit}");
    assert!(operator(submit), "{submit}");
    assert!(submit["span"]["latency_ms"].as_f64().is_some(), "{submit}");
    let poll = answered("/v1/agents/{id}/poll", 200);
    assert_eq!(poll["span"]["actor"], "agent:agent-1", "{poll}");
    assert_eq!(poll["level"], "DEBUG", "{poll}");
    let refused = answered("/v1/jobs/{id}", 404);
    assert_eq!(refused["level"], "INFO", "{refused}");
    assert_eq!(refused["span"]["method"], "GET", "{refused}");
    assert!(operator(refused), "{refused}");
    // The concrete path (a caller's choice) is not the route.
    assert!(!log.contains("\"route\":\"/v1/jobs/999999\""), "{log}");
    // A handler's line inside a request carries the request span too.
    let submitted = ctl
        .iter()
        .find(|l| message(l) == "Job submitted")
        .expect("submitted");
    assert_eq!(submitted["span"]["route"], "/v1/jobs", "{submitted}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_name_the_job_on_its_lines() {
    let c = Cluster::start(1).await.expect("cluster");
    c.wait_agents_online().await.expect("online");
    let job = c
        .api
        .submit(json!({"group": "default", "spec": {"kind": "noop"}}))
        .await
        .expect("submit");
    let done = c.api.wait_terminal(job.id, WAIT).await.expect("terminal");
    assert_eq!(done.state, JobState::Succeeded, "{}", c.logs());
    let log = wait_log(|| c.agents[0].log_text(), "Completion delivered").await;
    let named = format!("job{{job_id={} ", job.id);
    for wanted in ["Lease granted", "Job finished", "Completion delivered"] {
        let line = log
            .lines()
            .find(|l| l.contains(wanted))
            .unwrap_or_else(|| panic!("no {wanted:?}\n{log}"));
        assert!(line.contains(&named), "{line}");
        assert!(line.contains("kind=noop"), "{line}");
        assert!(!line.starts_with('{'), "text, not JSON: {line}");
    }
    let ctl = c.controller.log_text();
    assert!(
        ctl.lines()
            .any(|l| l.contains("Job submitted") && l.contains(&format!("job_id={} ", job.id))),
        "{ctl}"
    );
}

#[test]
fn a_bad_log_format_is_a_config_error_naming_file_key_and_line() {
    let dir = tempfile::tempdir().expect("tmp");
    let agent_cfg = dir.path().join("agent.toml");
    std::fs::write(
        &agent_cfg,
        "agent_id = \"a1\"\nstate_dir = \"/tmp/x\"\nlog_format = \"xml\"\n",
    )
    .expect("write");
    let ctl_cfg = dir.path().join("controller.toml");
    std::fs::write(&ctl_cfg, "allow_plain_http = true\nlog_format = \"xml\"\n").expect("write");
    for (name, cfg, line, var) in [
        ("baton-agent", &agent_cfg, 3, "BATON_AGENT_LOG_FORMAT"),
        (
            "baton-controller",
            &ctl_cfg,
            2,
            "BATON_CONTROLLER_LOG_FORMAT",
        ),
    ] {
        let out = std::process::Command::new(bin(name).expect("bin"))
            .args(["--config", cfg.to_str().expect("path"), "validate"])
            .env_remove(var)
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(78), "{name}");
        let err = String::from_utf8_lossy(&out.stderr);
        let place = format!("{}, line {line}, key `log_format`", cfg.display());
        assert!(err.contains(&place), "{name}: {err}");
        assert!(err.contains("`text`") && err.contains("`json`"), "{err}");

        // The environment variable is checked the same way, and named.
        std::fs::write(
            cfg,
            std::fs::read_to_string(cfg)
                .expect("read")
                .replace("xml", "json"),
        )
        .expect("write");
        let out = std::process::Command::new(bin(name).expect("bin"))
            .args(["--config", cfg.to_str().expect("path"), "validate"])
            .env(var, "yaml")
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(78), "{name}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("environment variable {var}"))
                && err.contains("key `log_format`"),
            "{name}: {err}"
        );
    }
}
