//! Process groups of running commands, remembered on disk.
//!
//! Every command runs in its own process group. The group ids are kept in
//! memory (so a forced exit can kill them) and, when a directory is given, as
//! one file per group under `<state_dir>/running/`, holding the leader's start
//! time. If the agent is SIGKILLed (OOM killer, crash) its commands would run
//! on as orphans while another agent re-runs the job; the next start of the
//! agent kills those leftovers (after checking the start time, so a recycled
//! pid is never hit) before it polls for work. Under systemd the unit's
//! control group does the same on restart; this covers the rest.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use tracing::{debug, warn};

use super::keeper::Keeper;

/// A signal for a process group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sig {
    /// SIGTERM.
    Term,
    /// SIGKILL.
    Kill,
}

/// Process groups of the commands running now.
#[derive(Debug, Clone, Default)]
pub struct ProcessGroups {
    live: Arc<Mutex<HashSet<i32>>>,
    dir: Option<PathBuf>,
    keeper: Arc<OnceLock<Keeper>>,
}

impl ProcessGroups {
    /// Groups also remembered as files in `dir` (created if missing).
    pub fn persistent(dir: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        Ok(ProcessGroups {
            live: Arc::default(),
            dir: Some(dir),
            keeper: Arc::default(),
        })
    }

    /// Tell `keeper` (and this set's clones) every group from now on, and the
    /// ones running now. Returns false when a keeper was already attached.
    pub fn attach_keeper(&self, keeper: Keeper) -> bool {
        if self.keeper.set(keeper).is_err() {
            return false;
        }
        if let Some(k) = self.keeper.get() {
            for pgid in self.set().iter() {
                k.watch(*pgid);
            }
        }
        true
    }

    /// The attached keeper's pid.
    pub fn keeper_pid(&self) -> Option<u32> {
        self.keeper.get().and_then(Keeper::pid)
    }

    fn set(&self) -> std::sync::MutexGuard<'_, HashSet<i32>> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Remember a new group (its leader is `pgid`).
    pub fn insert(&self, pgid: i32) {
        self.set().insert(pgid);
        if let Some(k) = self.keeper.get() {
            k.watch(pgid);
        }
        if let Some(dir) = &self.dir {
            let start = start_time(pgid).unwrap_or_default();
            if let Err(e) = std::fs::write(dir.join(pgid.to_string()), start) {
                warn!(pgid, error = %e, "Cannot record a command's process group");
            }
        }
    }

    /// Forget a group (it was killed or has ended).
    pub fn remove(&self, pgid: i32) {
        self.set().remove(&pgid);
        if let Some(k) = self.keeper.get() {
            k.forget(pgid);
        }
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_file(dir.join(pgid.to_string()));
        }
    }

    /// SIGKILL every running command's process group.
    pub fn kill_all(&self) {
        let groups: Vec<i32> = self.set().iter().copied().collect();
        for pgid in groups {
            signal_group(pgid, Sig::Kill);
            self.remove(pgid);
        }
    }

    /// How many commands are running.
    pub fn len(&self) -> usize {
        self.set().len()
    }

    /// Whether none is running.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Kill the groups a previous run of the agent left behind. Returns how many were killed.
    pub fn kill_leftovers(&self) -> usize {
        let Some(dir) = &self.dir else { return 0 };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        let mut killed = 0;
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(pgid) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.parse::<i32>().ok())
                .filter(|p| *p > 1)
            else {
                continue;
            };
            if self.set().contains(&pgid) {
                continue;
            }
            let recorded = std::fs::read_to_string(&path).unwrap_or_default();
            if same_process(pgid, recorded.trim()) {
                warn!(
                    pgid,
                    "Killing a command left running by a previous agent run"
                );
                signal_group(pgid, Sig::Kill);
                killed += 1;
            } else {
                debug!(pgid, "Leftover process group already gone");
            }
            let _ = std::fs::remove_file(&path);
        }
        killed
    }
}

/// Whether `pid` is alive and started at `recorded` (when a start time was recorded).
fn same_process(pid: i32, recorded: &str) -> bool {
    match start_time(pid) {
        Some(now) => recorded.is_empty() || now == recorded,
        None => false,
    }
}

/// The start time of `pid` in clock ticks since boot (Linux `/proc/<pid>/stat` field 22).
fn start_time(pid: i32) -> Option<String> {
    let stat =
        std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')')?.1;
    // rest starts at field 3 (state); field 22 is index 19 here.
    rest.split_whitespace().nth(19).map(str::to_owned)
}

/// Registers a child's process group; SIGKILLs what is left of it when dropped.
#[derive(Debug)]
pub struct GroupGuard {
    pgid: Option<i32>,
    groups: ProcessGroups,
}

impl GroupGuard {
    /// Record the group led by `pid` (the child was spawned with `process_group(0)`).
    pub fn new(groups: &ProcessGroups, pid: Option<u32>) -> Self {
        let pgid = if cfg!(unix) {
            pid.and_then(|p| i32::try_from(p).ok())
        } else {
            None
        };
        if let Some(p) = pgid {
            groups.insert(p);
        }
        GroupGuard {
            pgid,
            groups: groups.clone(),
        }
    }

    /// Signal the whole group.
    pub fn signal(&self, sig: Sig) {
        if let Some(p) = self.pgid {
            signal_group(p, sig);
        }
    }

    /// Whether the group could be recorded (Unix).
    pub fn has_group(&self) -> bool {
        self.pgid.is_some()
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(p) = self.pgid {
            signal_group(p, Sig::Kill);
            self.groups.remove(p);
        }
    }
}

/// Whether `path` is an executable file.
pub fn is_executable(path: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.is_file() && meta.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        meta.is_file()
    }
}

/// Send `sig` to the process group `pgid`.
#[cfg(unix)]
pub fn signal_group(pgid: i32, sig: Sig) {
    use nix::sys::signal::{Signal, killpg};
    use nix::unistd::Pid;
    let sig = match sig {
        Sig::Term => Signal::SIGTERM,
        Sig::Kill => Signal::SIGKILL,
    };
    // ESRCH (the group is already gone) is the usual, harmless error.
    let _ = killpg(Pid::from_raw(pgid), sig);
}

/// Send `sig` to the process group `pgid` (no process groups here).
#[cfg(not(unix))]
pub fn signal_group(_pgid: i32, _sig: Sig) {}

#[cfg(all(test, target_os = "linux"))]
mod tests;
