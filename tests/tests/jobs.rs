//! Jobs end to end: output and exit codes, cancel, retry, idempotency, bad
//! input, authentication, graceful agent shutdown, config validation.

use std::time::Duration;

use baton_proto::{AttemptOutcome, ErrorCode, JobState};
use baton_tests::cluster::Cluster;
use baton_tests::proc::{bin, pid_alive};
use nix::sys::signal::Signal;
use reqwest::Method;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

fn sh(script: &str) -> serde_json::Value {
    json!({
        "group": "default",
        "spec": {"kind": "command", "program": "/bin/sh", "args": ["-c", script]},
        "retry": {"max_attempts": 1},
        "allow_unplaced": true
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_job_reports_output_and_exit_code() {
    let c = Cluster::start(1).await.expect("cluster");
    let ok = c
        .api
        .submit(sh("echo hello; echo oops >&2"))
        .await
        .expect("submit");
    let bad = c
        .api
        .submit(sh("echo partial; exit 3"))
        .await
        .expect("submit");
    let ok = c.api.wait_terminal(ok.id, WAIT).await.expect("terminal");
    assert_eq!(ok.state, JobState::Succeeded, "{}", c.logs());
    let r = ok.result.expect("result");
    assert_eq!(r.exit_code, Some(0));
    assert_eq!(r.stdout, "hello\n");
    assert_eq!(r.stderr, "oops\n");
    assert_eq!(ok.attempts.len(), 1);
    assert_eq!(ok.attempts[0].agent_id, "agent-1");
    let bad = c.api.wait_terminal(bad.id, WAIT).await.expect("terminal");
    assert_eq!(bad.state, JobState::Failed);
    let r = bad.result.expect("result");
    assert_eq!(r.exit_code, Some(3));
    assert_eq!(r.stdout, "partial\n");
    assert_eq!(bad.attempts[0].outcome, Some(AttemptOutcome::Failed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_retry_with_backoff_until_attempts_run_out() {
    let c = Cluster::start(1).await.expect("cluster");
    let mut job = sh("exit 1");
    job["retry"] = json!({"max_attempts": 3, "initial_backoff_ms": 50, "jitter": 0.5});
    let j = c.api.submit(job).await.expect("submit");
    let j = c.api.wait_terminal(j.id, WAIT).await.expect("terminal");
    assert_eq!(j.state, JobState::Failed);
    assert_eq!(j.attempts.len(), 3);
    assert_eq!(j.attempts_spent, 3);
    let tokens: Vec<i64> = j.attempts.iter().map(|a| a.token).collect();
    assert!(tokens.windows(2).all(|w| w[1] > w[0]), "{tokens:?}");
    // Retry gives a fresh budget.
    let again = c
        .api
        .raw(Method::POST, &format!("/v1/jobs/{}/retry", j.id), None, &[])
        .await
        .expect("retry");
    assert_eq!(again.status, 200);
    let j = c.api.wait_terminal(j.id, WAIT).await.expect("terminal");
    assert_eq!(j.attempts.len(), 6);
    // A not-allow-listed program fails at once, without retry.
    let mut job = sh("true");
    job["spec"]["program"] = json!("/usr/bin/env");
    job["retry"] = json!({"max_attempts": 5});
    let j = c.api.submit(job).await.expect("submit");
    let j = c.api.wait_terminal(j.id, WAIT).await.expect("terminal");
    assert_eq!(j.state, JobState::Failed);
    assert_eq!(j.attempts.len(), 1);
    assert!(
        j.error.unwrap_or_default().contains("allow"),
        "error names the allow-list"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_the_running_child_process() {
    let c = Cluster::start(1).await.expect("cluster");
    let pidfile = c.path("pid");
    let mut job = sh(&format!("echo $$ > {}; exec sleep 60", pidfile.display()));
    job["lease_ttl_ms"] = json!(3000);
    let j = c.api.submit(job).await.expect("submit");
    c.api.wait_running(j.id, WAIT).await.expect("running");
    let pid: i32 = loop {
        if let Ok(s) = std::fs::read_to_string(&pidfile)
            && let Ok(p) = s.trim().parse()
        {
            break p;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let v = c.api.cancel(j.id).await.expect("cancel");
    assert!(v.cancel_requested);
    let done = c.api.wait_terminal(j.id, WAIT).await.expect("terminal");
    assert_eq!(done.state, JobState::Cancelled, "{}", c.logs());
    assert_eq!(done.attempts[0].outcome, Some(AttemptOutcome::Cancelled));
    assert!(!pid_alive(pid), "child survived the cancel");
    // A queued job cancels at once; a terminal one is a conflict.
    let again = c
        .api
        .raw(
            Method::POST,
            &format!("/v1/jobs/{}/cancel", j.id),
            None,
            &[],
        )
        .await
        .expect("cancel");
    assert_eq!(again.status, 409);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_returns_the_same_job() {
    let c = Cluster::start(0).await.expect("cluster");
    let body = serde_json::to_vec(&sh("echo once")).expect("json");
    let a = c
        .api
        .raw(
            Method::POST,
            "/v1/jobs",
            Some(body.clone()),
            &[("Idempotency-Key", "nightly-42")],
        )
        .await
        .expect("first");
    assert_eq!(a.status, 201);
    let b = c
        .api
        .raw(
            Method::POST,
            "/v1/jobs",
            Some(body),
            &[("Idempotency-Key", "nightly-42")],
        )
        .await
        .expect("second");
    assert_eq!(b.status, 200);
    assert_eq!(a.body["id"], b.body["id"]);
    let other = serde_json::to_vec(&sh("echo twice")).expect("json");
    let c2 = c
        .api
        .raw(
            Method::POST,
            "/v1/jobs",
            Some(other),
            &[("Idempotency-Key", "nightly-42")],
        )
        .await
        .expect("third");
    assert_eq!(c2.status, 409);
    assert_eq!(
        c2.error().expect("error").error.code,
        ErrorCode::IdempotencyConflict
    );
    let list = c
        .api
        .raw(Method::GET, "/v1/jobs?state=queued", None, &[])
        .await
        .expect("list");
    assert_eq!(list.body["jobs"].as_array().map(Vec::len), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_json_error_naming_the_field() {
    let c = Cluster::start(0).await.expect("cluster");
    let post = |body: Vec<u8>| {
        let api = c.api.clone();
        async move {
            api.raw(Method::POST, "/v1/jobs", Some(body), &[])
                .await
                .expect("post")
        }
    };
    let r = post(b"{\"group\": \"default\", \"spec\": ".to_vec()).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error().expect("json").error.code, ErrorCode::BadRequest);
    let r = post(br#"{"group":"default","spec":{"kind":"format_disk"}}"#.to_vec()).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.error().expect("json").error.field.as_deref(),
        Some("spec.kind")
    );
    let r = post(br#"{"group":"default","spec":{"kind":"command"}}"#.to_vec()).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.error().expect("json").error.field.as_deref(),
        Some("spec.program")
    );
    let r = post(br#"{"spec":{"kind":"noop"}}"#.to_vec()).await;
    assert_eq!(
        r.error().expect("json").error.field.as_deref(),
        Some("group")
    );
    let r =
        post(br#"{"group":"default","spec":{"kind":"noop"},"lease_ttl_ms":500}"#.to_vec()).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.error().expect("json").error.field.as_deref(),
        Some("lease_ttl_ms")
    );
    let big = format!(
        r#"{{"group":"default","spec":{{"kind":"command","program":"/bin/echo","args":["{}"]}}}}"#,
        "x".repeat(5 << 20) // default limit: 4 MiB
    );
    // The controller answers 413 from the Content-Length and closes without
    // reading the body, so the client may still be writing when the
    // connection closes (a broken pipe instead of the answer): try again
    // until the answer is read.
    let mut tries = 0;
    let r = loop {
        match c
            .api
            .raw(
                Method::POST,
                "/v1/jobs",
                Some(big.clone().into_bytes()),
                &[],
            )
            .await
        {
            Ok(r) => break r,
            Err(e) if tries < 10 => {
                tries += 1;
                eprintln!("big post: {e:#}; again");
            }
            Err(e) => panic!("big post never answered: {e:#}"),
        }
    };
    assert_eq!(r.status, 413);
    assert_eq!(
        r.error().expect("json").error.code,
        ErrorCode::PayloadTooLarge
    );
    let r = c
        .api
        .raw(Method::GET, "/v1/jobs/not-a-number", None, &[])
        .await
        .expect("get");
    assert_eq!(r.status, 400);
    assert_eq!(r.error().expect("json").error.field.as_deref(), Some("id"));
    let r = c
        .api
        .raw(Method::GET, "/v1/jobs/999999", None, &[])
        .await
        .expect("get");
    assert_eq!(r.status, 404);
    assert!(r.error().is_some());
    // Authentication.
    let anon = c.api.with_token("");
    let r = anon
        .raw(Method::GET, "/v1/jobs", None, &[])
        .await
        .expect("anon");
    assert_eq!(r.status, 401);
    assert_eq!(r.error().expect("json").error.code, ErrorCode::Unauthorized);
    let wrong = c.api.with_token("not-a-real-token-at-all");
    let r = wrong
        .raw(Method::GET, "/v1/agents", None, &[])
        .await
        .expect("wrong");
    assert_eq!(r.status, 401);
    // (The full role matrix lives in tests/security.rs.)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_then_releases_what_is_left() {
    let mut c = Cluster::start(1).await.expect("cluster");
    c.wait_agents_online().await.expect("online");
    // The harness gives agents a 5 s grace: this job outlives it.
    let long = c.api.submit(sh("sleep 30")).await.expect("submit");
    c.api.wait_running(long.id, WAIT).await.expect("running");
    let agent = c.agent("agent-1");
    let code = agent.terminate(Duration::from_secs(30)).expect("exit");
    assert_eq!(code, Some(0), "{}", agent.log_text());
    let j = c.api.job(long.id).await.expect("job");
    assert_eq!(j.state, JobState::Queued, "released, back in the queue");
    assert_eq!(j.attempts[0].outcome, Some(AttemptOutcome::Released));
    assert_eq!(j.attempts_spent, 0, "a release spends no attempt");
    c.api.cancel(long.id).await.expect("cancel");

    // A job that fits in the grace period finishes and is reported.
    let agent = c.agent("agent-1");
    agent.restart().expect("restart");
    let short = c
        .api
        .submit(sh("sleep 1; echo drained"))
        .await
        .expect("submit");
    c.api.wait_running(short.id, WAIT).await.expect("running");
    let agent = c.agent("agent-1");
    let code = agent.terminate(Duration::from_secs(30)).expect("exit");
    assert_eq!(code, Some(0));
    let j = c.api.job(short.id).await.expect("job");
    assert_eq!(j.state, JobState::Succeeded, "{}", c.logs());
    assert_eq!(j.result.expect("result").stdout, "drained\n");
}

#[test]
fn validate_names_file_key_and_line_and_exits_78() {
    let dir = tempfile::tempdir().expect("tmp");
    let agent_cfg = dir.path().join("agent.toml");
    std::fs::write(
        &agent_cfg,
        "agent_id = \"a1\"\nstate_dir = \"/tmp/x\"\n\nslots = \"many\"\n",
    )
    .expect("write");
    let out = std::process::Command::new(bin("baton-agent").expect("bin"))
        .args(["--config", agent_cfg.to_str().expect("path"), "validate"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("agent.toml"), "{err}");
    assert!(err.contains("line 4"), "{err}");
    assert!(err.contains("slots"), "{err}");

    let ctl_cfg = dir.path().join("controller.toml");
    std::fs::write(&ctl_cfg, "poll_hold = \"forever\"\n").expect("write");
    let out = std::process::Command::new(bin("baton-controller").expect("bin"))
        .args(["--config", ctl_cfg.to_str().expect("path"), "validate"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("controller.toml, line 1, key `poll_hold`"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_sigterm_answers_held_polls_and_exits_cleanly() {
    let mut c = Cluster::start(2).await.expect("cluster");
    c.wait_agents_online().await.expect("online");
    // Both agents now hold a long-poll (25 s); shutdown must not wait for them.
    let p = c.controller.proc.as_mut().expect("controller");
    p.signal(Signal::SIGTERM).expect("term");
    let code = p
        .wait_exit(Duration::from_secs(10))
        .expect("exited while polls were held");
    assert_eq!(code, Some(0), "{}", c.controller.log_text());
    assert!(c.controller.log_text().contains("Controller stopped"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_may_set_only_the_variables_in_allow_env() {
    let c = Cluster::start_with(1, "", |o| o.extra = "allow_env = [\"GREETING\"]\n".into())
        .await
        .expect("cluster");
    let with_env = |env: serde_json::Value| {
        let mut j = sh("echo \"$GREETING\"");
        j["retry"] = json!({"max_attempts": 3});
        j["spec"]["env"] = env;
        j
    };
    let ok = c
        .api
        .submit(with_env(json!({"GREETING": "hello"})))
        .await
        .expect("submit");
    let ok = c.api.wait_terminal(ok.id, WAIT).await.expect("terminal");
    assert_eq!(ok.state, JobState::Succeeded, "{}", c.logs());
    assert_eq!(ok.result.expect("result").stdout, "hello\n");
    // LD_PRELOAD (or any other variable not listed) is refused, for good.
    let bad = c
        .api
        .submit(with_env(
            json!({"GREETING": "hi", "LD_PRELOAD": "/tmp/x.so"}),
        ))
        .await
        .expect("submit");
    let bad = c.api.wait_terminal(bad.id, WAIT).await.expect("terminal");
    assert_eq!(bad.state, JobState::Failed, "{}", c.logs());
    assert_eq!(bad.attempts.len(), 1, "not retried");
    let error = bad.error.unwrap_or_default();
    assert!(
        error.contains("\"LD_PRELOAD\" is not in this agent's [command] allow_env"),
        "{error}"
    );
}
