//! Tests of the command executor with real processes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use baton_proto::{CommandSpec, Completion};

use super::*;
use crate::executor::{Cancel, ProgressHandle};

fn settings(allow: &[&str]) -> CommandSettings {
    CommandSettings {
        allow: allow.iter().map(|s| s.to_string()).collect(),
        allow_env: vec!["JOB_VAR".into()],
        max_output_bytes: 1 << 20,
        term_grace: Duration::from_millis(300),
        base_env: vec![(
            "PATH".into(),
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
        )],
        search_path: std::env::var_os("PATH"),
    }
}

fn job(program: &str, args: &[&str]) -> Job {
    Job {
        job_id: 7,
        token: 1,
        attempt: 1,
        retry_codes: Vec::new(),
        spec: JobSpec::Command(CommandSpec {
            program: program.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            env: BTreeMap::new(),
            working_dir: None,
        }),
        timeout: None,
        cancel: Cancel::new(),
        progress: ProgressHandle::new(4096),
    }
}

fn sh(script: &str) -> Job {
    job("sh", &["-c", script])
}

/// Whether `pid` is a live process (a zombie counts as dead).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        }
        Err(_) => false,
    }
}

/// Wait until `pid` is gone, up to `limit`.
async fn gone_within(pid: i32, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if !alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    !alive(pid)
}

/// Wait until `path` holds a pid, then return it.
async fn read_pid(path: &std::path::Path) -> i32 {
    for _ in 0..500 {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Ok(pid) = text.trim().parse()
        {
            return pid;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no pid in {}", path.display());
}

#[tokio::test]
async fn captures_both_streams_and_the_tail() {
    let exec = CommandExecutor::new(settings(&["sh"]));
    let j = sh("echo out; echo err >&2");
    let progress = j.progress.clone();
    let out = exec.execute(j).await;
    assert_eq!(out.completion, Completion::Succeeded, "{out:?}");
    assert_eq!(out.result.exit_code, Some(0));
    assert_eq!(out.result.stdout, "out\n");
    assert_eq!(out.result.stderr, "err\n");
    assert!(!out.result.truncated);
    let tail = progress.snapshot().1;
    assert!(tail.contains("out\n") && tail.contains("err\n"), "{tail:?}");
    assert!(exec.process_groups().is_empty());
}

#[tokio::test]
async fn environment_is_cleared_then_filled() {
    // The settings carry only PATH: the test process's own variables must not leak.
    let exec = CommandExecutor::new(settings(&["sh"]));
    let mut j = sh("echo \"$JOB_VAR|${CARGO_PKG_NAME:-none}|${HOME:-none}\"; pwd");
    if let JobSpec::Command(spec) = &mut j.spec {
        spec.env.insert("JOB_VAR".into(), "set".into());
        spec.working_dir = Some("/".into());
    }
    let out = exec.execute(j).await;
    assert_eq!(out.completion, Completion::Succeeded, "{out:?}");
    assert_eq!(out.result.stdout, "set|none|none\n/\n");
}

#[tokio::test]
async fn a_variable_not_in_allow_env_is_refused_before_anything_runs() {
    let exec = CommandExecutor::new(settings(&["sh"]));
    let marker = tempfile::tempdir().expect("tmp");
    let ran = marker.path().join("ran");
    let mut j = sh(&format!("touch {}", ran.display()));
    if let JobSpec::Command(spec) = &mut j.spec {
        spec.env.insert("JOB_VAR".into(), "ok".into());
        spec.env.insert("LD_PRELOAD".into(), "/tmp/evil.so".into());
    }
    let out = exec.execute(j).await;
    assert_eq!(out.completion, Completion::Failed { retryable: false });
    let error = out.error.expect("error");
    assert!(
        error.contains("\"LD_PRELOAD\" is not in this agent's [command] allow_env"),
        "{error}"
    );
    assert!(!ran.exists(), "the program must not run");
}

#[tokio::test]
async fn non_zero_exit_is_a_retryable_failure() {
    let exec = CommandExecutor::new(settings(&["sh"]));
    let out = exec.execute(sh("echo bad >&2; exit 3")).await;
    assert_eq!(out.completion, Completion::Failed { retryable: true });
    assert_eq!(out.result.exit_code, Some(3));
    assert_eq!(out.result.stderr, "bad\n");
    assert_eq!(out.error.as_deref(), Some("exited with status 3"));
}

#[tokio::test]
async fn killed_by_signal_names_the_signal() {
    let exec = CommandExecutor::new(settings(&["sh"]));
    let out = exec.execute(sh("kill -9 $$")).await;
    assert_eq!(out.completion, Completion::Failed { retryable: true });
    assert_eq!(out.result.exit_code, None);
    let error = out.error.unwrap_or_default();
    assert!(error.contains("SIGKILL"), "{error}");
}

#[tokio::test]
async fn output_is_bounded_per_stream() {
    let mut s = settings(&["sh"]);
    s.max_output_bytes = 10;
    let exec = CommandExecutor::new(s);
    let j = sh("i=0; while [ $i -lt 5000 ]; do echo line$i; i=$((i+1)); done; echo small >&2");
    let progress = j.progress.clone();
    let out = exec.execute(j).await;
    assert_eq!(out.completion, Completion::Succeeded, "{out:?}");
    assert_eq!(out.result.stdout, "line0\nline");
    assert_eq!(out.result.stderr, "small\n");
    assert!(out.result.truncated);
    // The tail holds the end of the output, not the beginning.
    let tail = progress.snapshot().1;
    assert!(tail.contains("line4999\n"), "{tail:?}");
    assert!(tail.len() <= 4096);
}

#[tokio::test]
async fn timeout_kills_the_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pidfile = dir.path().join("pid");
    let exec = CommandExecutor::new(settings(&["sh"]));
    let mut j = sh(&format!("echo $$ > {}; exec sleep 30", pidfile.display()));
    j.timeout = Some(Duration::from_millis(300));
    let start = Instant::now();
    let out = exec.execute(j).await;
    assert_eq!(out.completion, Completion::TimedOut, "{out:?}");
    assert!(start.elapsed() < Duration::from_secs(5));
    let pid = read_pid(&pidfile).await;
    assert!(
        gone_within(pid, Duration::from_secs(2)).await,
        "sleep {pid} survived"
    );
    assert!(exec.process_groups().is_empty());
}

#[tokio::test]
async fn cancel_kills_the_whole_group_even_a_term_ignoring_grandchild() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pidfile = dir.path().join("pid");
    let exec = CommandExecutor::new(settings(&["sh"]));
    // The grandchild ignores SIGTERM, so only the SIGKILL after the grace ends it.
    let j = sh(&format!(
        "trap '' TERM; sleep 30 & echo $! > {}; wait",
        pidfile.display()
    ));
    let cancel = j.cancel.clone();
    let task = tokio::spawn(async move { exec.execute(j).await });
    let pid = read_pid(&pidfile).await;
    assert!(alive(pid));
    cancel.cancel(CancelReason::Cancelled);
    let out = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("stops")
        .expect("no panic");
    assert_eq!(out.completion, Completion::Cancelled);
    assert!(
        gone_within(pid, Duration::from_secs(2)).await,
        "grandchild {pid} survived"
    );
}

#[tokio::test]
async fn lease_loss_kills_at_once_without_grace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pidfile = dir.path().join("pid");
    let mut s = settings(&["sh"]);
    s.term_grace = Duration::from_secs(30);
    let exec = CommandExecutor::new(s);
    let j = sh(&format!(
        "trap '' TERM; sleep 30 & echo $! > {}; wait",
        pidfile.display()
    ));
    let cancel = j.cancel.clone();
    let task = tokio::spawn(async move { exec.execute(j).await });
    let pid = read_pid(&pidfile).await;
    let start = Instant::now();
    cancel.cancel(CancelReason::LeaseLost);
    let out = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("stops")
        .expect("no panic");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "waited for the TERM grace"
    );
    assert_eq!(out.completion, Completion::Cancelled);
    assert!(
        gone_within(pid, Duration::from_secs(2)).await,
        "grandchild {pid} survived"
    );
}

#[tokio::test]
async fn stray_background_process_is_killed_when_the_program_ends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pidfile = dir.path().join("pid");
    let exec = CommandExecutor::new(settings(&["sh"]));
    let j = sh(&format!(
        "sleep 30 & echo $! > {}; echo done",
        pidfile.display()
    ));
    let start = Instant::now();
    let out = exec.execute(j).await;
    assert_eq!(out.completion, Completion::Succeeded, "{out:?}");
    assert_eq!(out.result.stdout, "done\n");
    assert!(start.elapsed() < Duration::from_secs(5));
    let pid = read_pid(&pidfile).await;
    assert!(
        gone_within(pid, Duration::from_secs(2)).await,
        "stray {pid} survived"
    );
}

#[tokio::test]
async fn programs_outside_the_allow_list_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = dir.path().join("ran");
    let exec = CommandExecutor::new(settings(&["sh", "/bin/echo"]));
    let touch = format!("touch {}", marker.display());
    for program in ["/bin/sh", "bash", "echo", "/bin/echo/../sh"] {
        let out = exec.execute(job(program, &["-c", &touch])).await;
        assert_eq!(
            out.completion,
            Completion::Failed { retryable: false },
            "{program}"
        );
        let error = out.error.unwrap_or_default();
        assert!(error.contains("allow-list"), "{error}");
    }
    assert!(!marker.exists(), "a refused program ran");
    assert!(exec.resolve("/bin/echo").is_ok());
}

#[tokio::test]
async fn bare_names_resolve_through_path_or_fail() {
    let exec = CommandExecutor::new(settings(&["sh", "baton-no-such-program"]));
    let resolved = exec.resolve("sh").expect("sh is on PATH");
    assert!(resolved.is_absolute() && resolved.ends_with("sh"));
    let out = exec.execute(job("baton-no-such-program", &[])).await;
    assert_eq!(out.completion, Completion::Failed { retryable: false });
    assert!(out.error.unwrap_or_default().contains("not found"));
    assert!(!exec.available() || exec.kind() == JobKind::Command);
    assert!(!CommandExecutor::new(settings(&[])).available());
}

#[tokio::test]
async fn spawn_failure_is_reported() {
    let exec = CommandExecutor::new(settings(&["sh"]));
    let mut j = sh("true");
    if let JobSpec::Command(spec) = &mut j.spec {
        spec.working_dir = Some("/baton/no/such/dir".into());
    }
    let out = exec.execute(j).await;
    assert_eq!(out.completion, Completion::Failed { retryable: false });
    assert!(out.error.unwrap_or_default().contains("cannot start sh"));
}
