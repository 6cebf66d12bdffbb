//! The agent's only `unsafe` code: a parent-death signal for the processes it
//! starts (commands, the dump tool and client), so a leader dies with the agent
//! even when the agent is SIGKILLed. The rest of the leader's process group
//! (grandchildren) is killed by the [`super::keeper`]; the start-up cleanup of
//! leftovers ([`super::groups`]) is the last line.
//!
//! Linux only. `PR_SET_PDEATHSIG` fires when the *thread* that forked the child
//! ends, not the process: it is set only when the spawning thread is the main
//! thread (the agent's runtime is single-threaded, so that is where jobs are
//! spawned). A child spawned from another thread (a pool thread that may end
//! while idle) does without it, and the keeper still covers its group.

use tokio::process::Command;

/// Make the child started by `cmd` get SIGKILL when this thread ends (Linux,
/// main thread only; elsewhere nothing is set).
#[cfg(target_os = "linux")]
pub fn die_with_agent(cmd: &mut Command) {
    use nix::sys::signal::Signal;
    use nix::unistd::{Pid, getpid, getppid, gettid};
    if gettid() != getpid() {
        return;
    }
    let parent: Pid = getpid();
    // SAFETY: the closure runs in the forked child before exec, where only
    // async-signal-safe calls are allowed. It makes two raw syscalls through
    // nix (prctl(PR_SET_PDEATHSIG), getppid) and builds an io::Error from an
    // errno value: no allocation, no lock, no access to the parent's memory
    // beyond the copied `parent` pid.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
                .map_err(|e| std::io::Error::from_raw_os_error(e as i32))?;
            // The agent may have died between fork and prctl: then the signal
            // never comes, so do not start at all.
            if getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(nix::libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// No parent-death signal on this platform.
#[cfg(not(target_os = "linux"))]
pub fn die_with_agent(_cmd: &mut Command) {}
