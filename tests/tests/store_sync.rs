//! How the SQLite store makes a commit durable, seen from the system calls
//! of a real controller (strace attached to it): with `synchronous=FULL`
//! every acknowledged submit has synced the WAL (the bundled SQLite uses
//! `fsync`; `fdatasync` measured the same on this ext4, so it is not worth a
//! custom build).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use baton_tests::proc::Controller;
use serde_json::json;

/// Every thread of `pid` is traced by `tracer`.
fn all_traced(pid: i32, tracer: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    let mut n = 0;
    for t in tasks.flatten() {
        let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
        let traced = status
            .lines()
            .find_map(|l| l.strip_prefix("TracerPid:"))
            .is_some_and(|v| v.trim() == tracer.to_string());
        if !traced {
            return false;
        }
        n += 1;
    }
    n > 0
}

/// strace on every thread of `pid`, the fds' paths shown (`-y`), into `out`.
fn attach(pid: i32, out: &Path) -> Child {
    let child = Command::new("strace")
        .args(["-f", "-qq", "-y", "-e", "trace=fsync,fdatasync", "-o"])
        .arg(out)
        .args(["-p", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn strace");
    let end = Instant::now() + Duration::from_secs(20);
    while !all_traced(pid, child.id()) {
        assert!(Instant::now() < end, "strace did not attach to {pid}");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

const SUBMITS: usize = 20;

/// Syncs of the WAL while a controller with `extra_config` acknowledged
/// [`SUBMITS`] submits, one after another; and the trace.
async fn wal_syncs(extra_config: &str) -> (usize, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Controller::start(dir.path(), extra_config)
        .await
        .expect("controller");
    let api = c.api();
    let pid = c
        .proc
        .as_ref()
        .and_then(|p| p.pid())
        .expect("controller pid")
        .as_raw();
    let out = dir.path().join("strace.txt");
    let mut strace = attach(pid, &out);
    for i in 0..SUBMITS {
        let job = json!({
            "group": "nobody-polls",
            "spec": {"kind": "noop"},
            "labels": {"n": i.to_string()},
        });
        api.submit(job).await.expect("submit");
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(strace.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("stop strace");
    strace.wait().expect("strace exit");
    let trace = std::fs::read_to_string(&out).expect("trace");
    let syncs = trace
        .lines()
        .filter(|l| {
            (l.contains(" fsync(") || l.contains(" fdatasync(")) && l.contains("baton.db-wal>")
        })
        .count();
    (syncs, trace)
}

/// Whether strace can run here (else the reason was printed).
fn strace_present() -> bool {
    if Command::new("strace").arg("-V").output().is_ok() {
        return true;
    }
    assert!(
        std::env::var_os("BATON_TEST_REQUIRE_STRACE").is_none(),
        "strace is required"
    );
    eprintln!("skipped: strace is not installed (.ci/run installs it)");
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_acknowledged_submit_synced_the_wal() {
    if !strace_present() {
        return;
    }
    let (syncs, trace) = wal_syncs("").await;
    assert!(
        syncs >= SUBMITS,
        "{SUBMITS} acknowledged submits, but only {syncs} syncs of the WAL:\n{trace}"
    );
    // The check can tell: `sync = "normal"` (the documented trade-off)
    // does not sync each commit.
    let (syncs, trace) = wal_syncs("sync = \"normal\"").await;
    assert!(
        syncs < SUBMITS / 2,
        "sync = normal synced the WAL {syncs} times for {SUBMITS} submits:\n{trace}"
    );
}
