//! A small ext4 filesystem in a loop-mounted image file, for tests of what
//! a daemon does when its disk fills up or turns read-only.
//!
//! Needs root (`mount`); [`LoopFs::create`] says why it cannot instead of
//! failing, so a test can skip with the reason.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// A mounted loop filesystem; unmounted and removed on drop.
#[derive(Debug)]
pub struct LoopFs {
    _tmp: tempfile::TempDir,
    image: PathBuf,
    mount: PathBuf,
}

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd.output().with_context(|| format!("{cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl LoopFs {
    /// Make and mount a `size_mib` ext4 filesystem. `Err` says why it
    /// cannot be done here (not root, no loop devices, no mkfs.ext4).
    pub fn create(size_mib: u64) -> Result<LoopFs> {
        Self::make(size_mib, None)
    }

    /// Like [`LoopFs::create`], mounted over the existing directory `at`
    /// (what a daemon already uses; it sees the new filesystem from then on).
    pub fn create_at(size_mib: u64, at: &Path) -> Result<LoopFs> {
        Self::make(size_mib, Some(at))
    }

    fn make(size_mib: u64, at: Option<&Path>) -> Result<LoopFs> {
        let tmp = tempfile::Builder::new().prefix("baton-loopfs-").tempdir()?;
        let image = tmp.path().join("fs.img");
        let mount = match at {
            Some(at) => at.to_path_buf(),
            None => {
                let mount = tmp.path().join("mnt");
                fs::create_dir(&mount)?;
                mount
            }
        };
        fs::File::create(&image)?.set_len(size_mib * 1024 * 1024)?;
        // No reserved blocks: root (the daemon under test) fills it as
        // anyone would.
        run(Command::new("mkfs.ext4")
            .args(["-q", "-m", "0"])
            .arg(&image))?;
        // errors=remount-ro: an error makes it read-only at once
        // (`LoopFs::fail_read_only`), as many hosts mount their disks.
        run(Command::new("mount")
            .args(["-o", "loop,errors=remount-ro"])
            .arg(&image)
            .arg(&mount))
        .context("mounting a loop filesystem needs root and a loop device")?;
        Ok(LoopFs {
            _tmp: tmp,
            image,
            mount,
        })
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.mount
    }

    /// Fill every free block with `<mount>/filler`; returns the bytes written.
    pub fn fill(&self) -> Result<u64> {
        let mut f = fs::File::create(self.mount.join("filler"))?;
        let chunk = vec![0xa5u8; 64 * 1024];
        let mut written = 0u64;
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => break,
                Err(e) => return Err(e.into()),
            }
        }
        // The last partial blocks.
        for size in [4096usize, 512, 1] {
            while f.write(&chunk[..size]).map(|n| n > 0).unwrap_or(false) {
                written += size as u64;
            }
        }
        let _ = f.sync_all();
        Ok(written)
    }

    /// Free what [`LoopFs::fill`] took.
    pub fn unfill(&self) -> Result<()> {
        fs::remove_file(self.mount.join("filler"))?;
        Ok(())
    }

    /// Turn the filesystem read-only under the processes writing to it, as
    /// the kernel does after an I/O error: `mount -o remount,ro` when
    /// nothing holds a file open for writing, else (a database does) an
    /// ext4 error raised through `/sys/fs/ext4/<dev>/trigger_fs_error`
    /// (`errors=remount-ro`): every write fails with EROFS from then on.
    /// Undo with [`LoopFs::repair`].
    pub fn fail_read_only(&self) -> Result<()> {
        if run(Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&self.mount))
        .is_ok()
        {
            return Ok(());
        }
        let out = Command::new("findmnt")
            .args(["-no", "SOURCE"])
            .arg(&self.mount)
            .output()
            .context("findmnt")?;
        let source = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let dev = Path::new(&source)
            .file_name()
            .with_context(|| format!("no block device behind {}", self.mount.display()))?;
        let trigger = Path::new("/sys/fs/ext4").join(dev).join("trigger_fs_error");
        fs::write(&trigger, "1").with_context(|| format!("write {}", trigger.display()))?;
        Ok(())
    }

    /// After [`LoopFs::fail_read_only`]: what an operator does once nothing
    /// uses the filesystem any more (its users stopped): unmount, `e2fsck
    /// -fy`, mount read-write again (an ext4 that went read-only on an error
    /// refuses `remount,rw`).
    pub fn repair(&self) -> Result<()> {
        run(Command::new("umount").arg(&self.mount)).context("unmount (still in use?)")?;
        let fsck = Command::new("e2fsck")
            .args(["-f", "-y"])
            .arg(&self.image)
            .output()
            .context("e2fsck")?;
        // 0: clean, 1: errors corrected.
        if !matches!(fsck.status.code(), Some(0 | 1)) {
            bail!("e2fsck: {}", String::from_utf8_lossy(&fsck.stdout));
        }
        run(Command::new("mount")
            .args(["-o", "loop,errors=remount-ro"])
            .arg(&self.image)
            .arg(&self.mount))
    }

    /// Set or clear the immutable attribute (`chattr +i` / `-i`) on `path`:
    /// writes to it then fail with EPERM, even through open files.
    pub fn immutable(path: &Path, on: bool) -> Result<()> {
        run(Command::new("chattr")
            .arg(if on { "+i" } else { "-i" })
            .arg(path))
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
        let _ = fs::remove_file(&self.image);
    }
}

/// A controller with its state dir (database included) under `fs` and one
/// online agent (`agent-1`, tweaked by `tweak`), in a fresh temp dir kept
/// alive by the first value.
pub async fn controller_on(
    fs: &LoopFs,
    tweak: impl FnOnce(&mut crate::proc::AgentOpts),
) -> (
    tempfile::TempDir,
    crate::proc::Controller,
    crate::proc::Agent,
) {
    crate::init_crypto();
    let tmp = tempfile::Builder::new()
        .prefix("baton-e2e-")
        .tempdir()
        .expect("tmp");
    let ctl = crate::proc::Controller::start_with_state(
        &tmp.path().join("controller"),
        &fs.path().join("state"),
        "127.0.0.1:0",
        "allow_plain_http = true",
        None,
    )
    .await
    .expect("controller");
    let api = ctl.api();
    let mut opts = crate::proc::AgentOpts::new("agent-1");
    tweak(&mut opts);
    opts.enrollment_token = Some(api.enrollment_token(&opts.groups).await.expect("enr"));
    let agent = crate::proc::Agent::start(tmp.path(), &ctl.url(), opts).expect("agent");
    api.wait_online(1, std::time::Duration::from_secs(60))
        .await
        .expect("online");
    (tmp, ctl, agent)
}
