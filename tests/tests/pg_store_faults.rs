//! The database host's disk fills up or turns read-only under a controller
//! on PostgreSQL (issue 17; `store_faults.rs` is the same for SQLite):
//! PostgreSQL's whole directory (data, WAL) is on a small loop-mounted ext4.
//! While the disk refuses writes every submit is answered 503
//! `store_unavailable` (never a 2xx that is then lost, never a 500) and
//! `/readyz` says so; once the operator frees space (and restarts
//! PostgreSQL if it stopped after a PANIC) or repairs the filesystem and
//! restarts PostgreSQL, the same controller process recovers by itself:
//! ready again, submits accepted, every acknowledged job run exactly once.
//!
//! Root (mount) and PostgreSQL are needed; the tests skip, saying why,
//! without them (PostgreSQL: unless `BATON_TEST_REQUIRE_PG=1`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use baton_proto::{AttemptOutcome, ErrorCode, IDEMPOTENCY_KEY_HEADER, JobId, JobState};
use baton_tests::api::Api;
use baton_tests::ha::{HaCluster, HaOpts};
use baton_tests::loopfs::LoopFs;
use baton_tests::postgres::PgServer;
use reqwest::Method;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(90);

/// A command job appending `tag` to `marker`, with `pad` random hex
/// characters of argument (poorly compressible) so that each commit needs
/// new space.
fn job(marker: &Path, tag: &str, pad: usize) -> Value {
    let mut filler = String::with_capacity(pad);
    while filler.len() < pad {
        filler.push_str(&format!("{:016x}", rand::random::<u64>()));
    }
    json!({
        "group": "default",
        "spec": {"kind": "command", "program": "/bin/sh",
                 "args": ["-c", format!("echo {tag} >> {}", marker.display()), filler]},
        "retry": {"max_attempts": 3, "initial_backoff_ms": 100}
    })
}

/// One submit: acknowledged (the id), or refused with 503
/// `store_unavailable` (the message). Anything else fails the test.
async fn submit(api: &Api, marker: &Path, tag: &str, pad: usize) -> Result<JobId, String> {
    let body = serde_json::to_vec(&job(marker, tag, pad)).expect("json");
    let r = api
        .raw(
            Method::POST,
            "/v1/jobs",
            Some(body),
            &[(IDEMPOTENCY_KEY_HEADER, tag)],
        )
        .await
        .expect("the controller answers");
    match r.status.as_u16() {
        200 | 201 => Ok(r.body["id"].as_i64().expect("id")),
        503 => {
            let e = r.error().expect("a JSON error body");
            assert_eq!(e.error.code, ErrorCode::StoreUnavailable, "{e:?}");
            Err(e.error.message)
        }
        s => panic!("submit {tag}: unexpected answer {s}: {}", r.body),
    }
}

async fn readyz(api: &Api) -> (u16, Value) {
    let r = api
        .raw(Method::GET, "/readyz", None, &[])
        .await
        .expect("readyz answers");
    (r.status.as_u16(), r.body)
}

/// Submits in a loop (one every 20 ms) until stopped: what was
/// acknowledged, and the refusals' messages.
struct Load {
    stop: Arc<AtomicBool>,
    refused: Arc<AtomicUsize>,
    acked_n: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<(BTreeMap<String, JobId>, Vec<String>)>,
}

impl Load {
    fn start(api: Api, marker: PathBuf, pad: Arc<AtomicUsize>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let refused = Arc::new(AtomicUsize::new(0));
        let acked_n = Arc::new(AtomicUsize::new(0));
        let (s, r, a) = (stop.clone(), refused.clone(), acked_n.clone());
        let task = tokio::spawn(async move {
            let (mut acked, mut messages) = (BTreeMap::new(), Vec::new());
            for i in 0.. {
                if s.load(Ordering::Acquire) {
                    break;
                }
                let tag = format!("load-{i}");
                match submit(&api, &marker, &tag, pad.load(Ordering::Acquire)).await {
                    Ok(id) => {
                        acked.insert(tag, id);
                        a.fetch_add(1, Ordering::AcqRel);
                    }
                    Err(m) => {
                        messages.push(m);
                        r.fetch_add(1, Ordering::AcqRel);
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (acked, messages)
        });
        Load {
            stop,
            refused,
            acked_n,
            task,
        }
    }

    async fn wait(&self, what: &str, n: usize, counter: &AtomicUsize, logs: impl Fn() -> String) {
        let end = Instant::now() + WAIT;
        while counter.load(Ordering::Acquire) < n {
            assert!(
                !self.task.is_finished(),
                "the load stopped (its panic is above)"
            );
            assert!(Instant::now() < end, "never {n} {what}\n{}", logs());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn finish(self) -> (BTreeMap<String, JobId>, Vec<String>) {
        self.stop.store(true, Ordering::Release);
        self.task.await.expect("load task")
    }
}

/// A loop filesystem with PostgreSQL on it, one controller and one agent.
struct Setup {
    c: HaCluster,
    pg: PgServer,
    fs: LoopFs,
    marker: PathBuf,
}

/// Where PostgreSQL's files go on the loop filesystem.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OnLoop {
    /// The whole cluster (data, WAL, log).
    Everything,
    /// Only its WAL (`pg_wal` a symlink there): a full disk is then a WAL
    /// that cannot grow, which PostgreSQL answers with a PANIC.
    Wal,
}

async fn setup(mib: u64, on_loop: OnLoop) -> Option<Setup> {
    if let Some(reason) = baton_tests::postgres::own_server_skip_reason() {
        println!("{reason}");
        return None;
    }
    let fs = match LoopFs::create(mib) {
        Ok(fs) => fs,
        Err(e) => {
            println!("skipped: {e:#}");
            return None;
        }
    };
    // The mount point's parent is a 0700 temp dir: `postgres` must pass.
    let parent = fs.path().parent().expect("parent");
    let mode = <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755);
    std::fs::set_permissions(parent, mode).expect("chmod");
    let pg = tokio::task::block_in_place(|| match on_loop {
        OnLoop::Everything => PgServer::start_in(&fs.path().join("pg")),
        OnLoop::Wal => PgServer::start().and_then(|pg| {
            pg.move_wal(&fs.path().join("pg_wal"))?;
            Ok(pg)
        }),
    })
    .expect("postgres");
    // Leases outlive the outage (repairing the filesystem and restarting
    // PostgreSQL takes tens of seconds): a completion that cannot be recorded
    // before its lease ends is run again by design, which is not what these
    // tests look at.
    let opts = HaOpts {
        controller_extra: "default_lease_ttl = \"2m\"".into(),
        ..HaOpts::default()
    };
    let c = HaCluster::start_in(&pg.pg, 1, 1, opts, |_| {})
        .await
        .expect("controller");
    c.wait_agents_online().await.expect("online");
    let marker = c.path("runs.txt");
    Some(Setup { c, pg, fs, marker })
}

impl Setup {
    fn logs(&self) -> String {
        format!("{}\n== postgres ==\n{}", self.c.logs(), self.pg.log_text())
    }

    async fn wait_readyz(&self, want: u16) -> Value {
        let api = self.c.api(0);
        let end = Instant::now() + WAIT;
        loop {
            let (status, body) = readyz(&api).await;
            if status == want {
                return body;
            }
            assert!(
                Instant::now() < end,
                "readyz stayed {status}: {body}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Submit every 200 ms until one is accepted again; its id.
    async fn submit_until_accepted(&self) -> (String, JobId) {
        let api = self.c.api(0);
        let end = Instant::now() + WAIT;
        for i in 0.. {
            let tag = format!("recover-{i}");
            if let Ok(id) = submit(&api, &self.marker, &tag, 0).await {
                return (tag, id);
            }
            assert!(
                Instant::now() < end,
                "the controller never recovered\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        unreachable!()
    }

    /// Every acknowledged job exists and succeeded once; every stored job
    /// (a refused submit whose commit was in doubt may exist) ran once.
    async fn check(&self, acked: &BTreeMap<String, JobId>) {
        let api = self.c.api(0);
        for (tag, &id) in acked {
            let j = api.wait_terminal(id, WAIT).await.expect("terminal");
            assert_eq!(
                j.state,
                JobState::Succeeded,
                "{tag}: {j:?}\n{}",
                self.logs()
            );
        }
        let r = api
            .raw(Method::GET, "/v1/jobs?limit=1000", None, &[])
            .await
            .expect("list");
        let stored: BTreeSet<JobId> = r.body["jobs"]
            .as_array()
            .expect("jobs")
            .iter()
            .filter_map(|j| j["id"].as_i64())
            .collect();
        let want: BTreeSet<JobId> = acked.values().copied().collect();
        assert!(
            want.is_subset(&stored),
            "acknowledged jobs lost: {:?}",
            want.difference(&stored).collect::<Vec<_>>()
        );
        for &id in &stored {
            let j = api.wait_terminal(id, WAIT).await.expect("terminal");
            let ok = j
                .attempts
                .iter()
                .filter(|a| a.outcome == Some(AttemptOutcome::Succeeded))
                .count();
            assert!(j.state == JobState::Succeeded && ok == 1, "job {id}: {j:?}");
        }
        let runs = std::fs::read_to_string(&self.marker).unwrap_or_default();
        let mut lines: Vec<&str> = runs.lines().collect();
        let total = lines.len();
        lines.sort_unstable();
        let mut twice = Vec::new();
        for w in lines.windows(2) {
            if w[0] == w[1] {
                let id = acked.get(w[0]).copied().unwrap_or_default();
                let j = api.job(id).await.map(|j| format!("{:?}", j.attempts));
                let agent: Vec<String> = self.c.agents[0]
                    .log_text()
                    .lines()
                    .filter(|l| l.contains(&format!("job_id={id}")))
                    .map(str::to_owned)
                    .collect();
                twice.push(format!("{} (job {id}): {j:?}\n{}", w[0], agent.join("\n")));
            }
        }
        lines.dedup();
        assert!(
            twice.is_empty(),
            "jobs ran twice:\n{}\n{}",
            twice.join("\n"),
            self.logs()
        );
        assert_eq!(total, stored.len(), "one run per stored job: {runs}");
        println!(
            "pg_store_faults: {} acknowledged, {} stored, {total} runs",
            want.len(),
            stored.len()
        );
    }

    /// The controller process that started is still the one serving.
    fn controller_pid(&self) -> Option<nix::unistd::Pid> {
        self.c.controllers[0].proc.as_ref().and_then(|p| p.pid())
    }
}

/// Refusals seen, readyz 503, then the repair, then recovery and the check.
async fn through_fault(
    s: &mut Setup,
    load: Load,
    cause: &[&str],
    repair: impl FnOnce(&Setup) -> bool,
) {
    let pid = s.controller_pid();
    load.wait("refusals", 5, &load.refused.clone(), || s.logs())
        .await;
    let body = s.wait_readyz(503).await;
    assert_eq!(body["error"]["code"], "store_unavailable", "{body}");
    let (mut acked, messages) = load.finish().await;
    let named = messages
        .iter()
        .filter(|m| cause.iter().any(|c| m.contains(c)))
        .count();
    println!(
        "pg_store_faults: {} refusals ({named} naming {cause:?}), first: {:?}",
        messages.len(),
        messages.first()
    );
    assert!(
        named > 0,
        "a refusal names the cause {cause:?}: {messages:?}"
    );
    // A lost connection leaves a commit in doubt: the answer says so.
    for m in messages
        .iter()
        .filter(|m| m.contains("(database unreachable)"))
    {
        assert!(m.contains("Idempotency-Key"), "{m}");
    }
    let restarted = repair(s);
    let (tag, id) = s.submit_until_accepted().await;
    acked.insert(tag, id);
    s.wait_readyz(200).await;
    for i in 0..3 {
        let tag = format!("after-{i}");
        let id = submit(&s.c.api(0), &s.marker, &tag, 0)
            .await
            .unwrap_or_else(|m| panic!("refused after recovery: {m}"));
        acked.insert(tag, id);
    }
    assert!(
        s.c.controllers[0]
            .proc
            .as_mut()
            .is_some_and(|p| p.running())
            && s.controller_pid() == pid,
        "the controller recovered by itself, never restarted"
    );
    println!("pg_store_faults: PostgreSQL had to be started again: {restarted}");
    s.check(&acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_on_the_database_host_refuses_submits_and_the_controller_recovers_by_itself() {
    let Some(mut s) = setup(160, OnLoop::Everything).await else {
        return;
    };
    let pad = Arc::new(AtomicUsize::new(0));
    let load = Load::start(s.c.api(0), s.marker.clone(), pad.clone());
    load.wait("acks", 5, &load.acked_n.clone(), || s.logs())
        .await;
    let filled = tokio::task::block_in_place(|| s.fs.fill()).expect("fill");
    assert!(filled > 0);
    // Each job now carries 64 KB: commits soon need space the disk lacks.
    pad.store(64 * 1024, Ordering::Release);
    through_fault(&mut s, load, &["disk full", "unreachable"], |s| {
        s.fs.unfill().expect("free the space");
        // After a PANIC (WAL could not be written) PostgreSQL's crash
        // recovery may have failed on the full disk: the operator starts it.
        let down = !s.pg.is_running();
        if down {
            s.pg.start_again().expect("start PostgreSQL again");
        }
        down
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_disk_on_the_database_host_refuses_submits_and_the_controller_recovers_by_itself()
 {
    let Some(mut s) = setup(160, OnLoop::Everything).await else {
        return;
    };
    let pad = Arc::new(AtomicUsize::new(1024));
    let load = Load::start(s.c.api(0), s.marker.clone(), pad);
    load.wait("acks", 5, &load.acked_n.clone(), || s.logs())
        .await;
    s.fs.fail_read_only().expect("read-only");
    through_fault(
        &mut s,
        load,
        &["read-only", "I/O error", "unreachable"],
        |s| {
            // PostgreSQL PANICs when it cannot write its WAL; the operator
            // stops what is left of it, repairs the filesystem, starts it.
            let _ = s.pg.stop();
            s.fs.repair().expect("repair the filesystem");
            s.pg.start_again().expect("start PostgreSQL again");
            true
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_wal_disk_panics_postgres_and_the_controller_recovers_once_it_is_started_again() {
    let Some(mut s) = setup(64, OnLoop::Wal).await else {
        return;
    };
    let pad = Arc::new(AtomicUsize::new(0));
    let load = Load::start(s.c.api(0), s.marker.clone(), pad.clone());
    load.wait("acks", 5, &load.acked_n.clone(), || s.logs())
        .await;
    let filled = tokio::task::block_in_place(|| s.fs.fill()).expect("fill");
    assert!(filled > 0);
    // The WAL's current segment fills, the next cannot be made: PANIC.
    pad.store(64 * 1024, Ordering::Release);
    through_fault(&mut s, load, &["disk full", "unreachable"], |s| {
        s.fs.unfill().expect("free the space");
        let down = !s.pg.is_running();
        if down {
            s.pg.start_again().expect("start PostgreSQL again");
        }
        down
    })
    .await;
    assert!(
        s.pg.log_text().contains("PANIC"),
        "the WAL could not grow: PostgreSQL PANICked\n{}",
        s.pg.log_text()
    );
}
