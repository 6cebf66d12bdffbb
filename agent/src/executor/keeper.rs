//! The group keeper: a small helper process (the agent binary started again
//! with [`KEEPER_ARG`]) that kills the process groups of running commands when
//! the agent is gone, however it went (SIGKILL and the OOM killer included).
//!
//! The agent tells it each group it starts and ends (`+<pgid>` / `-<pgid>`, one
//! line each) on the keeper's stdin, a pipe only the agent holds. When the
//! agent dies the kernel closes that pipe; the keeper reads end-of-file, sends
//! SIGKILL to every group still listed and exits. A parent-death signal on each
//! group leader ([`super::deathsig`]) covers the moment between a spawn and its
//! `+` line; the start-up cleanup of leftovers ([`super::groups`]) stays the
//! last line. The keeper runs in its own process group and ignores SIGTERM,
//! SIGINT and SIGHUP, so a terminal's Ctrl-C or a stop of the agent does not
//! end it before the agent.

use std::collections::HashSet;
use std::io::{BufRead, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, PoisonError};

use tracing::{info, warn};

/// The first argument that makes `baton-agent` run as the group keeper.
pub const KEEPER_ARG: &str = "__baton-group-keeper";

/// Keeper failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The keeper process could not be started.
    #[error("cannot start the group keeper: {0}")]
    Spawn(#[source] std::io::Error),
}

/// The agent's handle on its keeper process.
#[derive(Debug)]
pub struct Keeper {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    proc: Option<(Child, ChildStdin)>,
    groups: HashSet<i32>,
}

impl Keeper {
    /// Start the keeper (this executable, `/proc/self/exe` on Linux).
    pub fn start() -> Result<Keeper, Error> {
        let proc = spawn().map_err(Error::Spawn)?;
        info!(pid = proc.0.id(), "Group keeper started");
        Ok(Keeper {
            state: Mutex::new(State {
                proc: Some(proc),
                groups: HashSet::new(),
            }),
        })
    }

    /// The keeper's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.lock().proc.as_ref().map(|(c, _)| c.id())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A group was started.
    pub fn watch(&self, pgid: i32) {
        let mut state = self.lock();
        state.groups.insert(pgid);
        state.send(&format!("+{pgid}\n"));
    }

    /// A group ended (or was killed).
    pub fn forget(&self, pgid: i32) {
        let mut state = self.lock();
        state.groups.remove(&pgid);
        state.send(&format!("-{pgid}\n"));
    }
}

impl State {
    /// Send a line; if the keeper is gone, start a new one and tell it every
    /// group running now.
    fn send(&mut self, line: &str) {
        if let Some((_, stdin)) = &mut self.proc
            && stdin.write_all(line.as_bytes()).is_ok()
        {
            return;
        }
        if let Some((mut old, _)) = self.proc.take() {
            let _ = old.kill();
            let _ = old.wait();
        }
        let mut proc = match spawn() {
            Ok(p) => p,
            Err(e) => {
                warn!(error = %e, "Group keeper is gone and cannot be restarted: commands may outlive a crash of the agent");
                return;
            }
        };
        let all: String = self.groups.iter().map(|g| format!("+{g}\n")).collect();
        if proc.1.write_all(all.as_bytes()).is_ok() {
            warn!(
                pid = proc.0.id(),
                groups = self.groups.len(),
                "Group keeper was gone; restarted"
            );
            self.proc = Some(proc);
        }
    }
}

fn spawn() -> std::io::Result<(Child, ChildStdin)> {
    let exe = if cfg!(target_os = "linux") {
        // Still the right file when the binary was replaced by an upgrade.
        std::path::PathBuf::from("/proc/self/exe")
    } else {
        std::env::current_exe()?
    };
    let mut cmd = Command::new(exe);
    cmd.arg(KEEPER_ARG)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::null());
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    let mut child = cmd.spawn()?;
    let stdin = child
        .stdin
        .take()
        .ok_or_else(|| std::io::Error::other("no stdin pipe"))?;
    Ok((child, stdin))
}

/// The keeper's main: read `+pgid`/`-pgid` lines until the agent is gone, then
/// SIGKILL the groups still listed. Returns the number of groups killed.
pub fn run() -> usize {
    let _signals = ignore_stop_signals();
    let mut groups = HashSet::new();
    let pgid = |s: &str| s.parse::<i32>().ok().filter(|p| *p > 1);
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if let Some(p) = line.strip_prefix('+').and_then(pgid) {
            groups.insert(p);
        } else if let Some(p) = line.strip_prefix('-').and_then(pgid) {
            groups.remove(&p);
        }
    }
    for &pgid in &groups {
        super::groups::signal_group(pgid, super::groups::Sig::Kill);
    }
    if !groups.is_empty() {
        eprintln!(
            "baton-agent group keeper: the agent is gone; killed {} command process group(s): {:?}",
            groups.len(),
            groups
        );
    }
    groups.len()
}

/// Replace the default action (exit) of SIGTERM, SIGINT and SIGHUP: the keeper
/// ends when the agent does. tokio's handlers stay installed for the life of
/// the process; the runtime that registered them is returned to be kept.
fn ignore_stop_signals() -> Option<tokio::runtime::Runtime> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .ok()?;
        {
            let _guard = rt.enter();
            for kind in [
                SignalKind::terminate(),
                SignalKind::interrupt(),
                SignalKind::hangup(),
            ] {
                // Dropping the stream keeps the handler: the signal is ignored.
                let _ = signal(kind);
            }
        }
        Some(rt)
    }
    #[cfg(not(unix))]
    None
}
