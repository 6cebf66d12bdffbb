//! The controller's store on a disk that fills up or turns read-only (issue
//! 13 A): every write is refused with 503 `store_unavailable` naming the
//! cause while the disk refuses it, `/readyz` says so, the controller
//! recovers by itself when the disk takes writes again, and nothing it
//! acknowledged is lost — not even across a `kill -9` and restart.
//!
//! The database lives on a small loop-mounted ext4 filesystem (root only;
//! the tests skip with the reason otherwise). A real agent runs the jobs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use baton_proto::{AttemptOutcome, ErrorCode, JobId, JobState};
use baton_tests::api::Api;
use baton_tests::loopfs::LoopFs;
use baton_tests::proc::{Agent, Controller};
use reqwest::Method;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);
const FULL: &[&str] = &["disk full"];
/// `chattr +i` makes SQLite's writes fail with EPERM: SQLITE_READONLY or
/// SQLITE_IOERR_WRITE depending on where it notices.
const UNWRITABLE: &[&str] = &["read-only", "I/O error"];

/// A command job that appends its tag to `marker` (one line per run), with
/// `pad` bytes of argument so that each commit needs new disk space.
fn job(marker: &Path, tag: &str, pad: usize) -> serde_json::Value {
    json!({
        "group": "default",
        "spec": {"kind": "command", "program": "/bin/sh",
                 "args": ["-c", format!("echo {tag} >> {}", marker.display()), "x".repeat(pad)]},
        "retry": {"max_attempts": 3, "initial_backoff_ms": 100}
    })
}

/// What one submit got.
enum Submitted {
    Acked(JobId),
    Refused(String),
}

/// `cause`: the words one of which the refusal must name.
async fn submit(api: &Api, body: &serde_json::Value, cause: &[&str]) -> Submitted {
    let r = api
        .raw(
            Method::POST,
            "/v1/jobs",
            Some(serde_json::to_vec(body).expect("json")),
            &[],
        )
        .await
        .expect("the controller answers");
    match r.status.as_u16() {
        201 => Submitted::Acked(serde_json::from_value(r.body["id"].clone()).expect("id")),
        503 => {
            let e = r.error().expect("a JSON error body");
            assert_eq!(e.error.code, ErrorCode::StoreUnavailable, "{e:?}");
            assert!(
                cause.iter().any(|c| e.error.message.contains(c)),
                "the refusal names the cause {cause:?}: {}",
                e.error.message
            );
            Submitted::Refused(e.error.message)
        }
        s => panic!("unexpected answer {s}: {}", r.body),
    }
}

async fn readyz(api: &Api) -> (u16, serde_json::Value) {
    let r = api
        .raw(Method::GET, "/readyz", None, &[])
        .await
        .expect("readyz answers");
    (r.status.as_u16(), r.body)
}

/// Wait until `/readyz` answers `want`.
async fn wait_readyz(s: &Setup, want: u16) -> serde_json::Value {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = readyz(&s.api).await;
        if status == want {
            return body;
        }
        assert!(
            Instant::now() < end,
            "readyz stayed {status}: {body}\n{}",
            s.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A controller with its database on `fs`, and one agent.
struct Setup {
    tmp: tempfile::TempDir,
    ctl: Controller,
    agent: Agent,
    api: Api,
}

async fn setup(fs: &LoopFs) -> Setup {
    let (tmp, ctl, agent) = baton_tests::loopfs::controller_on(fs, |_| {}).await;
    let api = ctl.api();
    Setup {
        tmp,
        ctl,
        agent,
        api,
    }
}

impl Setup {
    fn logs(&self) -> String {
        format!(
            "== controller ==\n{}\n== agent ==\n{}",
            self.ctl.log_text(),
            self.agent.log_text()
        )
    }

    /// Submit until `refusals` submits were refused (each must name
    /// `cause`); returns the acknowledged ids.
    async fn submit_through_fault(
        &self,
        marker: &Path,
        cause: &[&str],
        refusals: usize,
        pad: usize,
    ) -> Vec<JobId> {
        let mut acked = Vec::new();
        let mut refused = 0;
        let mut i = 0;
        while refused < refusals {
            i += 1;
            assert!(i < 2000, "the disk never refused a write\n{}", self.logs());
            match submit(&self.api, &job(marker, &format!("f{i}"), pad), cause).await {
                Submitted::Acked(id) => acked.push(id),
                Submitted::Refused(_) => refused += 1,
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        acked
    }

    /// Submit every 200 ms until one is accepted again.
    async fn submit_until_accepted(&self, marker: &Path, cause: &[&str]) -> JobId {
        let end = Instant::now() + Duration::from_secs(30);
        for i in 0.. {
            if let Submitted::Acked(id) =
                submit(&self.api, &job(marker, &format!("r{i}"), 0), cause).await
            {
                return id;
            }
            assert!(
                Instant::now() < end,
                "the store never recovered\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        unreachable!()
    }

    /// Every acknowledged job is kept, succeeded, with one successful
    /// attempt and one run; nothing refused was kept. Checked again after a
    /// `kill -9` and restart of the controller.
    async fn check_nothing_lost(&mut self, acked: &[JobId], marker: &Path) {
        for &id in acked {
            let j = self.api.wait_terminal(id, WAIT).await.expect("terminal");
            assert_eq!(
                j.state,
                JobState::Succeeded,
                "job {id}: {j:?}\n{}",
                self.logs()
            );
        }
        self.ctl.restart().await.expect("restart");
        let listed: BTreeSet<JobId> = self
            .api
            .raw(Method::GET, "/v1/jobs?limit=1000", None, &[])
            .await
            .expect("list")
            .body["jobs"]
            .as_array()
            .expect("jobs")
            .iter()
            .filter_map(|j| j["id"].as_i64())
            .collect();
        let want: BTreeSet<JobId> = acked.iter().copied().collect();
        assert_eq!(listed, want, "exactly the acknowledged jobs are stored");
        let runs = std::fs::read_to_string(marker).unwrap_or_default();
        for &id in acked {
            let j = self.api.job(id).await.expect("job after restart");
            assert_eq!(
                j.state,
                JobState::Succeeded,
                "job {id} after restart: {j:?}"
            );
            let ok = j
                .attempts
                .iter()
                .filter(|a| a.outcome == Some(AttemptOutcome::Succeeded))
                .count();
            assert_eq!(ok, 1, "job {id}: {:?}", j.attempts);
        }
        let mut lines: Vec<&str> = runs.lines().collect();
        let total = lines.len();
        lines.sort_unstable();
        lines.dedup();
        assert_eq!(lines.len(), total, "a job ran twice: {runs}");
        assert_eq!(total, acked.len(), "one run per acknowledged job: {runs}");
    }
}

/// A loop filesystem of `mib` MiB with a controller on it and three jobs
/// accepted before any fault; `None` (the test skips) without root.
async fn start(mib: u64, cause: &[&str]) -> Option<(LoopFs, Setup, PathBuf, Vec<JobId>)> {
    let fs = match LoopFs::create(mib) {
        Ok(fs) => fs,
        Err(e) => {
            eprintln!("SKIP: {e}");
            return None;
        }
    };
    let s = setup(&fs).await;
    let marker = s.tmp.path().join("runs.txt");
    let mut acked = Vec::new();
    for i in 0..3 {
        match submit(&s.api, &job(&marker, &format!("b{i}"), 0), cause).await {
            Submitted::Acked(id) => acked.push(id),
            Submitted::Refused(m) => panic!("refused before the fault: {m}"),
        }
    }
    Some((fs, s, marker, acked))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_with_503_and_the_controller_recovers_by_itself() {
    let Some((fs, mut s, marker, mut acked)) = start(24, FULL).await else {
        return;
    };
    let filled = fs.fill().expect("fill");
    assert!(filled > 0);
    // Each job carries 48 KB, so commits soon need space the disk lacks.
    acked.extend(s.submit_through_fault(&marker, FULL, 5, 48 * 1024).await);
    let body = wait_readyz(&s, 503).await;
    assert_eq!(body["error"]["code"], "store_unavailable", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("disk full"),
        "{body}"
    );
    // Still refused while full: nothing is acknowledged that is not on disk.
    assert!(matches!(
        submit(&s.api, &job(&marker, "still", 48 * 1024), FULL).await,
        Submitted::Refused(_)
    ));

    fs.unfill().expect("unfill");
    acked.push(s.submit_until_accepted(&marker, FULL).await);
    wait_readyz(&s, 200).await;
    for i in 0..3 {
        match submit(&s.api, &job(&marker, &format!("a{i}"), 0), FULL).await {
            Submitted::Acked(id) => acked.push(id),
            Submitted::Refused(m) => panic!("refused after recovery: {m}"),
        }
    }
    let log = s.ctl.log_text();
    let errors = log
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("The store cannot commit"))
        .count();
    assert!(
        (1..=2).contains(&errors),
        "one ERROR per change of state, not per request ({errors}):\n{log}"
    );
    assert!(log.contains("The store commits again"), "{log}");
    s.check_nothing_lost(&acked, &marker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_database_refuses_writes_and_nothing_acknowledged_is_lost() {
    let Some((fs, mut s, marker, mut acked)) = start(32, UNWRITABLE).await else {
        return;
    };
    let state = fs.path().join("state");
    let files = ["baton.db", "baton.db-wal"].map(|f| state.join(f));
    for f in &files {
        LoopFs::immutable(f, true).expect("chattr +i");
    }
    acked.extend(s.submit_through_fault(&marker, UNWRITABLE, 5, 0).await);
    let body = wait_readyz(&s, 503).await;
    assert_eq!(body["error"]["code"], "store_unavailable", "{body}");
    for f in &files {
        LoopFs::immutable(f, false).expect("chattr -i");
    }
    acked.push(s.submit_until_accepted(&marker, UNWRITABLE).await);
    wait_readyz(&s, 200).await;
    s.check_nothing_lost(&acked, &marker).await;
}
