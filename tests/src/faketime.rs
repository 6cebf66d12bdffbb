//! A steppable wall clock for one process, with libfaketime (Debian package
//! `faketime`): the process runs with `LD_PRELOAD=libfaketime.so.1` and reads
//! its offset from a file at every clock call, so rewriting the file steps
//! its wall clock (`CLOCK_REALTIME`) at once. The monotonic clock is left
//! alone (`FAKETIME_DONT_FAKE_MONOTONIC=1`), as a real step would leave it.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use baton_proto::JobView;
use baton_proto::pipeline::RunView;
use chrono::{DateTime, Utc};

/// Where Debian's `faketime` package puts the library.
pub const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// The offset file of one faked process (or several sharing it).
#[derive(Debug, Clone)]
pub struct FakeClock {
    file: PathBuf,
}

impl FakeClock {
    /// Why a faked clock cannot be had here, if it cannot (for a test's skip message).
    pub fn unavailable() -> Option<String> {
        (!Path::new(LIBFAKETIME).exists()).then(|| {
            format!("{LIBFAKETIME} is absent (apt-get install faketime; .ci/run installs it)")
        })
    }

    /// A clock with offset 0, its offset file at `file`. Sweeps what
    /// SIGKILLed faked processes left behind (see [`sweep_leftovers`]).
    pub fn new(file: &Path) -> Result<FakeClock> {
        sweep_leftovers(Path::new("/dev/shm"));
        let c = FakeClock {
            file: file.to_path_buf(),
        };
        c.set_offset_s(0)?;
        Ok(c)
    }

    /// The environment a process needs to run on this clock.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("LD_PRELOAD", LIBFAKETIME.to_owned()),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_owned()),
            ("FAKETIME_NO_CACHE", "1".to_owned()),
            ("FAKETIME_TIMESTAMP_FILE", self.file.display().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// Set the wall clock to real time + `secs` (a step when it changes).
    /// The file is replaced by a rename, so a reader never sees it half written.
    pub fn set_offset_s(&self, secs: i64) -> Result<()> {
        let tmp = self.file.with_extension("tmp");
        fs::write(&tmp, format!("{secs:+}\n")).context("write faketime offset")?;
        fs::rename(&tmp, &self.file).context("rename faketime offset")?;
        Ok(())
    }
}

/// Remove the shared-memory segment and semaphore libfaketime creates per
/// process (`faketime_shm_<pid>`, `sem.faketime_sem_<pid>` in `dir`) whose
/// process is gone: it removes them at a clean exit only, and the tests
/// SIGKILL controllers. A leftover whose pid is reused makes libfaketime
/// fail in the new process.
pub fn sweep_leftovers(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let pid = name
            .strip_prefix("faketime_shm_")
            .or_else(|| name.strip_prefix("sem.faketime_sem_"))
            .and_then(|p| p.parse::<i32>().ok());
        if let Some(pid) = pid
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// A cluster of `agents` whose controller runs on a faked clock (offset 0
/// for now), each agent tweaked by `tweak`, once every agent has stored its
/// identity (a controller restart before that would lose the enrollment's
/// answer); or None, the reason printed, where libfaketime is absent.
pub async fn cluster(
    agents: usize,
    tweak: impl Fn(&mut crate::proc::AgentOpts),
) -> Option<(crate::cluster::Cluster, FakeClock, tempfile::TempDir)> {
    if let Some(why) = FakeClock::unavailable() {
        eprintln!("SKIPPED: {why}");
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = FakeClock::new(&dir.path().join("faketime.rc")).expect("clock");
    let c = crate::cluster::Cluster::start_env(agents, "", clock.env(), tweak)
        .await
        .expect("cluster");
    c.wait_agents_online().await.expect("online");
    let end = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while c.agents.iter().any(|a| a.secret().is_err()) {
        assert!(
            std::time::Instant::now() < end,
            "agents never stored their identity"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Some((c, clock, dir))
}

/// Times of a job as a reader with the real clock sees them: nothing in
/// the future or an hour old, no attempt ending before it started or
/// lasting longer than the test.
pub fn assert_sane_times(j: &JobView) {
    let now = Utc::now();
    let fresh = |what: &str, t: chrono::DateTime<Utc>| {
        let age = (now - t).num_milliseconds();
        assert!(
            (-2_000..300_000).contains(&age),
            "job {}: {what} is {age} ms old: {j:#?}",
            j.id
        );
    };
    fresh("created_at", j.created_at);
    fresh("updated_at", j.updated_at);
    if let Some(f) = j.finished_at {
        fresh("finished_at", f);
        assert!(f >= j.created_at, "finished before created: {j:#?}");
    }
    for a in &j.attempts {
        fresh("attempt started_at", a.started_at);
        let end = a.ended_at.unwrap_or(now);
        let ms = (end - a.started_at).num_milliseconds();
        assert!(
            (0..120_000).contains(&ms),
            "job {} attempt {} lasted {ms} ms: {j:#?}",
            j.id,
            a.number
        );
    }
}

/// Times of a pipeline run as a reader with the real clock sees them, as
/// [`assert_sane_times`] checks a job's: the run's and each step's.
pub fn assert_sane_run(r: &RunView) {
    let now = Utc::now();
    let fresh = |what: &str, t: DateTime<Utc>| {
        let age = (now - t).num_milliseconds();
        assert!(
            (-2_000..300_000).contains(&age),
            "run {}: {what} is {age} ms old: {r:#?}",
            r.id
        );
    };
    fresh("created_at", r.created_at);
    if let Some(f) = r.finished_at {
        fresh("finished_at", f);
        assert!(f >= r.created_at, "finished before created: {r:#?}");
    }
    for s in &r.steps {
        if let Some(q) = s.queued_at {
            fresh("a step's queued_at", q);
            assert!(
                q >= r.created_at,
                "step {} queued before the run: {r:#?}",
                s.name
            );
            if let Some(f) = s.finished_at {
                fresh("a step's finished_at", f);
                assert!(f >= q, "step {} ended before it was queued: {r:#?}", s.name);
            }
        }
    }
}
