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
mod tests;
