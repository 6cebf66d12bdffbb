//! The outbox: completions made durable before they are sent.
//!
//! Completions that are written together share one file,
//! `<state_dir>/outbox/<job_id>-<token>.json` named after the first of them:
//! one completion is a JSON object, several are a JSON array of them. A file
//! is written through a temp file, fdatasync, rename and fsync of the
//! directory, so a file in the outbox is always complete JSON. Each
//! completion in it is removed once the controller has answered it for good
//! ([`Outbox::remove_many`] counts them per file); the file goes with the last
//! one. Files left over from an earlier run are delivered at start; a
//! completion answered before a crash may so be sent twice, which the
//! controller answers as a duplicate (or a lost lease) — never run twice.
//!
//! Why files hold batches: a file per job cost ext4 an inode allocation per
//! job, which under create/unlink churn scans past the recently deleted inodes
//! and was the agent's largest CPU cost in the throughput benchmark. For the
//! same reason removed files are recycled rather than unlinked: renamed to
//! `.spare-<job>-<token>` (at most [`MAX_SPARES`]), and the next write
//! truncates, fills and syncs a spare before renaming it into place. Spares
//! start with a dot: never listed, never replayed; a spare holds the bytes of
//! answered completions until reused (the directory is 0700). Removal is not
//! fsynced: a removal lost in a crash only brings back answered completions,
//! which are delivered again as above.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use baton_proto::{CompleteRequest, FencingToken, JobId};
use serde::{Deserialize, Serialize};

/// Outbox failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file system call failed.
    #[error("outbox {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file is not a valid entry.
    #[error("outbox {path}: not a valid completion: {source}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One completion waiting for delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// The job it completes.
    pub job_id: JobId,
    /// The body of `POST /v1/jobs/{job_id}/complete`.
    pub request: CompleteRequest,
}

impl Entry {
    /// The token of the grant it completes.
    pub fn token(&self) -> FencingToken {
        self.request.token
    }

    /// The job and the token: which completion this is.
    pub fn key(&self) -> Key {
        (self.job_id, self.request.token)
    }

    /// The name of a file that starts with this entry.
    pub fn file_name(&self) -> String {
        format!("{}-{}.json", self.job_id, self.request.token)
    }
}

/// A completion's job and token.
pub type Key = (JobId, FencingToken);

/// Most recycled files kept for reuse.
pub const MAX_SPARES: usize = 256;

const SPARE_PREFIX: &str = ".spare-";

/// The outbox directory.
#[derive(Debug, Clone)]
pub struct Outbox {
    dir: PathBuf,
    /// Recycled files, ready to be overwritten.
    spares: Arc<Mutex<Vec<PathBuf>>>,
    /// Completions not answered yet, per file written or read.
    live: Arc<Mutex<HashMap<PathBuf, HashSet<Key>>>>,
}

impl Outbox {
    /// Open (creating it 0700 if missing) `<state_dir>/outbox`.
    pub fn open(state_dir: &Path) -> Result<Self, Error> {
        let dir = state_dir.join("outbox");
        crate::config::create_private_dir(&dir).map_err(io(&dir))?;
        let mut spares = Vec::new();
        for item in fs::read_dir(&dir).map_err(io(&dir))? {
            let item = item.map_err(io(&dir))?;
            let name = item.file_name().to_string_lossy().into_owned();
            if name.starts_with(SPARE_PREFIX) && spares.len() < MAX_SPARES {
                spares.push(item.path());
            } else if name.starts_with(SPARE_PREFIX)
                || (name.starts_with('.') && name.ends_with(".tmp"))
            {
                // A temp file is a crash between create and rename: its
                // completions were never durable, so never acknowledged either.
                let _ = fs::remove_file(item.path());
            }
        }
        Ok(Outbox {
            dir,
            spares: Arc::new(Mutex::new(spares)),
            live: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, HashSet<Key>>> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn spares(&self) -> std::sync::MutexGuard<'_, Vec<PathBuf>> {
        self.spares.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Write and sync `json` under a temporary (dot) name: a recycled file
    /// when one is left, else a new temp file. Returns that name.
    fn stage(&self, name: &str, json: &[u8]) -> Result<PathBuf, Error> {
        while let Some(spare) = self.spares().pop() {
            let opened = fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(&spare);
            if let Ok(mut file) = opened {
                file.write_all(json).map_err(io(&spare))?;
                file.sync_data().map_err(io(&spare))?;
                return Ok(spare);
            }
        }
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let mut file = File::create(&tmp).map_err(io(&tmp))?;
        file.write_all(json).map_err(io(&tmp))?;
        file.sync_data().map_err(io(&tmp))?;
        Ok(tmp)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Write `entry` durably; returns its path.
    pub fn write(&self, entry: &Entry) -> Result<PathBuf, Error> {
        self.write_many(std::slice::from_ref(entry))
            .pop()
            .unwrap_or_else(|| {
                Err(Error::Io {
                    path: self.dir.clone(),
                    source: std::io::Error::other("no result for the entry"),
                })
            })
    }

    /// Write several entries durably into one file (one fdatasync, one
    /// directory fsync). One result per entry, in order: the file's path for
    /// each, or the same error for each.
    pub fn write_many(&self, entries: &[Entry]) -> Vec<Result<PathBuf, Error>> {
        let Some(first) = entries.first() else {
            return Vec::new();
        };
        match self.write_file(first, entries) {
            Ok(path) => entries.iter().map(|_| Ok(path.clone())).collect(),
            Err(e) => {
                let msg = e.to_string();
                let path = match &e {
                    Error::Io { path, .. } | Error::Corrupt { path, .. } => path.clone(),
                };
                let mut out = vec![Err(e)];
                out.extend((1..entries.len()).map(|_| {
                    Err(Error::Io {
                        path: path.clone(),
                        source: std::io::Error::other(msg.clone()),
                    })
                }));
                out
            }
        }
    }

    fn write_file(&self, first: &Entry, entries: &[Entry]) -> Result<PathBuf, Error> {
        let name = first.file_name();
        let path = self.dir.join(&name);
        let json = match entries {
            [one] => serde_json::to_vec_pretty(one),
            many => serde_json::to_vec_pretty(many),
        }
        .map_err(|source| Error::Corrupt {
            path: path.clone(),
            source,
        })?;
        let tmp = self.stage(&name, &json)?;
        fs::rename(&tmp, &path).map_err(io(&path))?;
        self.live()
            .insert(path.clone(), entries.iter().map(Entry::key).collect());
        self.sync_dir()?;
        Ok(path)
    }

    /// Remove answered (delivered or dropped) entries, each given by its
    /// file and key; a file goes when its last waiting entry does. A file
    /// this outbox never wrote nor read goes at once.
    pub fn remove_many(&self, answered: &[(PathBuf, Key)]) -> Result<(), Error> {
        let mut done = Vec::new();
        {
            let mut live = self.live();
            for (path, key) in answered {
                let empty = match live.get_mut(path) {
                    Some(waiting) => {
                        waiting.remove(key);
                        waiting.is_empty()
                    }
                    None => true,
                };
                if empty {
                    live.remove(path);
                    if !done.contains(&path) {
                        done.push(path);
                    }
                }
            }
        }
        for path in done {
            self.take_out(path)?;
        }
        Ok(())
    }

    /// Whether the entry `key` of `path` still waits for an answer (false
    /// once answered, or for a file this outbox never wrote nor read).
    pub fn is_waiting(&self, path: &Path, key: Key) -> bool {
        self.live().get(path).is_some_and(|w| w.contains(&key))
    }

    /// Remove one answered entry.
    pub fn remove(&self, path: &Path, key: Key) -> Result<(), Error> {
        self.remove_many(&[(path.to_path_buf(), key)])
    }

    /// Take one file out of the outbox: recycled as a spare while there is
    /// room, else unlinked. Already gone is fine.
    fn take_out(&self, path: &Path) -> Result<(), Error> {
        let recycle = self.spares().len() < MAX_SPARES;
        // No `.json` in a spare's name: nothing that counts outbox entries sees it.
        if recycle && let Some(name) = path.file_stem() {
            let spare = self
                .dir
                .join(format!("{SPARE_PREFIX}{}", name.to_string_lossy()));
            match fs::rename(path, &spare) {
                Ok(()) => {
                    self.spares().push(spare);
                    return Ok(());
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(_) => {}
            }
        }
        match fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(path)(e)),
        }
    }

    /// Read the entries of one file; each counts as waiting until removed.
    pub fn read(&self, path: &Path) -> Result<Vec<Entry>, Error> {
        let bytes = fs::read(path).map_err(io(path))?;
        let corrupt = |source| Error::Corrupt {
            path: path.to_path_buf(),
            source,
        };
        let entries = if bytes.trim_ascii_start().starts_with(b"[") {
            serde_json::from_slice::<Vec<Entry>>(&bytes).map_err(corrupt)?
        } else {
            vec![serde_json::from_slice::<Entry>(&bytes).map_err(corrupt)?]
        };
        // Read again (a retry, or a file this run wrote): the entries
        // answered since stay answered.
        self.live()
            .entry(path.to_path_buf())
            .or_insert_with(|| entries.iter().map(Entry::key).collect());
        Ok(entries)
    }

    /// Files of waiting entries, oldest job first. Temp files are not
    /// listed (stale ones were removed at open).
    pub fn pending(&self) -> Result<Vec<PathBuf>, Error> {
        let mut out = Vec::new();
        for item in fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let item = item.map_err(io(&self.dir))?;
            let name = item.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') && name.ends_with(".json") {
                out.push(item.path());
            }
        }
        out.sort_by_key(|p| sort_key(p));
        Ok(out)
    }

    /// Move a file that cannot be read aside (`.bad`) so it is not retried forever.
    pub fn quarantine(&self, path: &Path) -> Result<PathBuf, Error> {
        self.live().remove(path);
        let bad = path.with_extension("json.bad");
        fs::rename(path, &bad).map_err(io(path))?;
        self.sync_dir()?;
        Ok(bad)
    }

    fn sync_dir(&self) -> Result<(), Error> {
        #[cfg(unix)]
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))?;
        Ok(())
    }
}

/// `(job_id, token)` parsed from a file name, for a stable order.
fn sort_key(path: &Path) -> (i64, i64, String) {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut parts = stem
        .splitn(2, '-')
        .map(|p| p.parse::<i64>().unwrap_or(i64::MAX));
    let job = parts.next().unwrap_or(i64::MAX);
    let token = parts.next().unwrap_or(i64::MAX);
    (job, token, stem)
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_proto::{Completion, JobResult};

    fn entry(job_id: JobId, token: FencingToken) -> Entry {
        Entry {
            job_id,
            request: CompleteRequest {
                token,
                completion: Completion::Failed { retryable: true },
                result: JobResult {
                    exit_code: Some(3),
                    stdout: "out é\n".into(),
                    stderr: "/w==".into(),
                    stderr_encoding: Some(baton_proto::OutputEncoding::Base64),
                    truncated: true,
                    ..JobResult::default()
                },
                error: Some("exited with status 3".into()),
            },
        }
    }

    #[test]
    fn write_read_remove_round_trip() {
        let state = tempfile::tempdir().expect("tempdir");
        let outbox = Outbox::open(state.path()).expect("open");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(outbox.dir())
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        let e = entry(12, 3);
        let path = outbox.write(&e).expect("write");
        assert_eq!(path, outbox.dir().join("12-3.json"));
        assert_eq!(outbox.read(&path).expect("read"), vec![e.clone()]);
        // One completion is a plain object, as written by earlier versions.
        let value: serde_json::Value =
            serde_json::from_slice(&fs::read(&path).expect("read")).expect("json");
        assert_eq!(value["job_id"], 12);
        assert_eq!(outbox.pending().expect("list"), vec![path.clone()]);
        assert!(outbox.is_waiting(&path, e.key()));
        outbox.remove(&path, e.key()).expect("remove");
        assert!(!outbox.is_waiting(&path, e.key()));
        assert!(outbox.pending().expect("list").is_empty());
        outbox
            .remove(&path, e.key())
            .expect("removing twice is fine");
    }

    #[test]
    fn files_are_complete_json_and_no_temp_is_left() {
        let state = tempfile::tempdir().expect("tempdir");
        let outbox = Outbox::open(state.path()).expect("open");
        for (job, token) in [(2, 1), (10, 4), (2, 2)] {
            outbox.write(&entry(job, token)).expect("write");
        }
        let names: Vec<String> = fs::read_dir(outbox.dir())
            .expect("dir")
            .map(|i| i.expect("item").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
        assert!(names.iter().all(|n| !n.ends_with(".tmp")));
        for path in outbox.pending().expect("list") {
            let value: serde_json::Value =
                serde_json::from_slice(&fs::read(&path).expect("read")).expect("complete JSON");
            assert_eq!(value["request"]["completion"]["outcome"], "failed");
        }
        let order: Vec<_> = outbox
            .pending()
            .expect("list")
            .iter()
            .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
            .collect();
        assert_eq!(order, ["2-1.json", "2-2.json", "10-4.json"]);
    }

    #[test]
    fn many_are_written_into_one_file_that_goes_with_the_last_answer() {
        let state = tempfile::tempdir().expect("tempdir");
        let outbox = Outbox::open(state.path()).expect("open");
        let entries = [entry(7, 1), entry(3, 2), entry(7, 2)];
        let paths: Vec<PathBuf> = outbox
            .write_many(&entries)
            .into_iter()
            .map(|r| r.expect("written"))
            .collect();
        let file = outbox.dir().join("7-1.json");
        assert_eq!(paths, vec![file.clone(); 3]);
        assert_eq!(outbox.read(&file).expect("read"), entries);
        let value: serde_json::Value =
            serde_json::from_slice(&fs::read(&file).expect("read")).expect("json");
        assert_eq!(value[1]["job_id"], 3, "a JSON array of completions");
        let names: Vec<String> = fs::read_dir(outbox.dir())
            .expect("dir")
            .map(|i| i.expect("item").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["7-1.json"]);
        // Two answered: the file stays for the third.
        outbox
            .remove_many(&[(file.clone(), (7, 2)), (file.clone(), (7, 1))])
            .expect("remove");
        assert_eq!(outbox.pending().expect("list"), vec![file.clone()]);
        assert!(!outbox.is_waiting(&file, (7, 1)));
        assert!(outbox.is_waiting(&file, (3, 2)));
        // Read again (a retry): the answered ones stay answered.
        assert_eq!(outbox.read(&file).expect("read").len(), 3);
        assert!(!outbox.is_waiting(&file, (7, 2)));
        // A duplicate answer does not count for the one still waiting.
        outbox.remove(&file, (7, 2)).expect("again");
        assert_eq!(outbox.pending().expect("list"), vec![file.clone()]);
        outbox.remove(&file, (3, 2)).expect("last");
        assert!(outbox.pending().expect("list").is_empty());
        outbox
            .remove_many(&[(file.clone(), (3, 2))])
            .expect("removing again is fine");
        assert!(outbox.write_many(&[]).is_empty());
    }

    #[test]
    fn a_file_left_by_an_earlier_run_waits_for_all_its_entries() {
        let state = tempfile::tempdir().expect("tempdir");
        let file = {
            let outbox = Outbox::open(state.path()).expect("open");
            outbox.write_many(&[entry(1, 1), entry(2, 1)])[0]
                .as_ref()
                .expect("written")
                .clone()
        };
        let outbox = Outbox::open(state.path()).expect("reopen");
        assert!(!outbox.is_waiting(&file, (1, 1)), "not read yet");
        assert_eq!(outbox.read(&file).expect("read").len(), 2);
        outbox.remove(&file, (1, 1)).expect("first");
        assert!(file.exists());
        outbox.remove(&file, (2, 1)).expect("second");
        assert!(!file.exists());
    }

    #[cfg(unix)]
    #[test]
    fn removed_files_are_recycled_never_listed_and_adopted_at_open() {
        use std::os::unix::fs::MetadataExt;
        let state = tempfile::tempdir().expect("tempdir");
        let outbox = Outbox::open(state.path()).expect("open");
        let first = outbox.write(&entry(1, 1)).expect("write");
        let ino = fs::metadata(&first).expect("meta").ino();
        outbox.remove(&first, (1, 1)).expect("remove");
        assert!(!first.exists());
        let spare = outbox.dir().join(".spare-1-1");
        assert!(spare.exists());
        assert!(outbox.pending().expect("list").is_empty());
        // A longer entry is written over the spare's old bytes: complete JSON.
        let mut long = entry(2, 5);
        long.request.result.stdout = "y".repeat(5000);
        let second = outbox.write(&long).expect("write");
        assert_eq!(fs::metadata(&second).expect("meta").ino(), ino);
        assert!(!spare.exists());
        assert_eq!(outbox.read(&second).expect("read"), vec![long]);
        // A shorter one too (the old tail is truncated).
        outbox.remove(&second, (2, 5)).expect("remove");
        let third = outbox.write(&entry(3, 1)).expect("write");
        assert_eq!(outbox.read(&third).expect("read"), vec![entry(3, 1)]);
        // Spares left by an earlier run are adopted.
        outbox.remove(&third, (3, 1)).expect("remove");
        let reopened = Outbox::open(state.path()).expect("reopen");
        let fourth = reopened.write(&entry(4, 1)).expect("write");
        assert_eq!(fs::metadata(&fourth).expect("meta").ino(), ino);
        assert_eq!(reopened.pending().expect("list"), vec![fourth]);
    }

    #[test]
    fn stale_temp_files_are_cleaned_and_bad_files_quarantined() {
        let state = tempfile::tempdir().expect("tempdir");
        let dir = Outbox::open(state.path())
            .expect("open")
            .dir()
            .to_path_buf();
        let tmp = dir.join(".5-1.json.tmp");
        fs::write(&tmp, b"{\"job_id\": 5, \"req").expect("write");
        let bad = dir.join("6-1.json");
        fs::write(&bad, b"not json").expect("write");
        let outbox = Outbox::open(state.path()).expect("reopen");
        assert!(!tmp.exists(), "removed at open");
        assert_eq!(outbox.pending().expect("list"), vec![bad.clone()]);
        assert!(matches!(outbox.read(&bad), Err(Error::Corrupt { .. })));
        let moved = outbox.quarantine(&bad).expect("quarantine");
        assert!(moved.exists());
        assert!(outbox.pending().expect("list").is_empty());
    }
}
