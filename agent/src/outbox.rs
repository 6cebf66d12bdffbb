//! The outbox: completions made durable before they are sent.
//!
//! One append-only log, `<state_dir>/outbox/log`, holds every completion not
//! answered yet. A record is `<len> <crc32> <json>\n`: the payload's length
//! and CRC-32 (8 hex digits each), then the payload, one JSON object
//! `{"completion": {job_id, request}}` or `{"done": {job_id, token}}`.
//! Completions written together are appended in one write and one fdatasync
//! ([`Outbox::write_many`]); nothing is told they are durable before that
//! sync returned. A completion the controller answered for good gets a
//! `done` record (a tombstone, not synced: a tombstone lost in a crash only
//! brings back an answered completion, delivered again and answered as a
//! duplicate or a lost lease — never run twice).
//!
//! The log is rewritten with only the waiting completions at open and
//! whenever answered ones make up most of a long log (temp file, fdatasync,
//! rename, directory fsync). A record that does not check out (a crash in
//! the middle of a write tears the last one) is skipped: the reader looks
//! for the next record that does; a damaged part before the end is kept
//! aside as `log.damaged` (ERROR). Files of the previous layout (a JSON file
//! per batch, `<job_id>-<token>.json`; `.spare-*` and `.*.tmp` files) are
//! read once at open, their completions moved into the log and the files
//! removed; one that cannot be parsed is moved aside as `.json.bad` (ERROR).
//!
//! Why one log: a file per batch cost ext4 an inode allocation, a directory
//! fsync and a deletion per batch, and was the agents' largest CPU cost in
//! the throughput benchmark.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use baton_proto::{CompleteRequest, FencingToken, JobId};
use serde::{Deserialize, Serialize};
use tracing::{error, warn};

/// Outbox failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file system call failed.
    #[error("outbox {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A completion could not be encoded or a stored one decoded.
    #[error("outbox {path}: not a valid completion: {source}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
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
}

/// A completion's job and token.
pub type Key = (JobId, FencingToken);

/// One record of the log.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum Record {
    /// A completion written.
    Completion(Entry),
    /// A completion answered for good.
    Done { job_id: JobId, token: FencingToken },
}

/// `<len> <crc> ` before the payload: 8 hex digits, a space, 8, a space.
const HEADER: usize = 18;

/// The log is rewritten once it is longer than this and four times as long
/// as its waiting completions.
const COMPACT_AFTER_BYTES: u64 = 1 << 20;

const LOG: &str = "log";

/// The outbox directory and its log.
#[derive(Debug, Clone)]
pub struct Outbox {
    dir: PathBuf,
    state: Arc<Mutex<State>>,
}

/// The log as this run sees it.
#[derive(Debug)]
struct State {
    /// Opened for appending.
    file: File,
    /// Its length.
    len: u64,
    /// Waiting completions: where each record is in the log.
    live: BTreeMap<Key, Range<u64>>,
    /// Bytes of the waiting completions' records.
    live_bytes: u64,
    /// A failed append may have left part of a record: rewrite first.
    dirty: bool,
}

/// Frame `payload` as one record.
fn frame(payload: &[u8], out: &mut Vec<u8>) {
    let crc = crc32fast::hash(payload);
    out.extend_from_slice(format!("{:08x} {crc:08x} ", payload.len()).as_bytes());
    out.extend_from_slice(payload);
    out.push(b'\n');
}

fn encode(record: &Record, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    frame(&serde_json::to_vec(record)?, out);
    Ok(())
}

/// The record at the start of `bytes` and its length, if it checks out.
fn decode(bytes: &[u8]) -> Option<(Record, usize)> {
    let header = bytes.get(..HEADER)?;
    let text = std::str::from_utf8(header).ok()?;
    let (len, rest) = text.split_at(8);
    let len = usize::from_str_radix(len, 16).ok()?;
    let crc = u32::from_str_radix(rest.get(1..9)?, 16).ok()?;
    if header[8] != b' ' || header[17] != b' ' {
        return None;
    }
    let end = HEADER.checked_add(len)?;
    let payload = bytes.get(HEADER..end)?;
    if bytes.get(end) != Some(&b'\n') || crc32fast::hash(payload) != crc {
        return None;
    }
    let record = serde_json::from_slice(payload).ok()?;
    Some((record, end + 1))
}

/// What reading a log found.
#[derive(Debug, Default)]
struct Replay {
    /// Waiting completions and where their records are.
    live: BTreeMap<Key, (Entry, Range<u64>)>,
    /// Byte ranges skipped because no record there checks out.
    skipped: Vec<Range<usize>>,
}

/// Replay a log's records into `replay.live`. A part that does not check
/// out is skipped up to the next record that does (after a newline).
fn replay(bytes: &[u8], replay: &mut Replay) {
    let mut at = 0;
    while at < bytes.len() {
        if let Some((record, n)) = decode(&bytes[at..]) {
            apply(record, at as u64..(at + n) as u64, &mut replay.live);
            at += n;
            continue;
        }
        let start = at;
        at = bytes.len();
        let mut from = start;
        while let Some(nl) = bytes[from..].iter().position(|b| *b == b'\n') {
            from += nl + 1;
            if decode(&bytes[from..]).is_some() {
                at = from;
                break;
            }
        }
        replay.skipped.push(start..at);
    }
}

fn apply(record: Record, at: Range<u64>, live: &mut BTreeMap<Key, (Entry, Range<u64>)>) {
    match record {
        Record::Completion(entry) => {
            live.insert(entry.key(), (entry, at));
        }
        Record::Done { job_id, token } => {
            live.remove(&(job_id, token));
        }
    }
}

/// What is in an outbox directory: the log's waiting completions (after
/// those of files of the previous layout) and those files.
#[derive(Debug, Default)]
struct Found {
    replay: Replay,
    log_bytes: Vec<u8>,
    /// Old-layout completion files read.
    legacy: Vec<PathBuf>,
    /// Old-layout files that cannot be parsed.
    unreadable: Vec<PathBuf>,
    /// Spares and temp files of the old layout: nothing waits in them.
    stale: Vec<PathBuf>,
}

/// Read the directory without changing anything.
fn scan(dir: &Path) -> Result<Found, Error> {
    let mut found = Found::default();
    let mut legacy_entries = Vec::new();
    for item in fs::read_dir(dir).map_err(io_at(dir))? {
        let item = item.map_err(io_at(dir))?;
        let name = item.file_name().to_string_lossy().into_owned();
        if name.starts_with(".spare-") || (name.starts_with('.') && name.ends_with(".tmp")) {
            found.stale.push(item.path());
        } else if !name.starts_with('.') && name.ends_with(".json") {
            match read_legacy(&item.path()) {
                Some(entries) => {
                    legacy_entries.extend(entries);
                    found.legacy.push(item.path());
                }
                None => found.unreadable.push(item.path()),
            }
        }
    }
    found.legacy.sort();
    // The log comes after the old files: its tombstones answer them too.
    for entry in legacy_entries {
        found.replay.live.insert(entry.key(), (entry, 0..0));
    }
    let log = dir.join(LOG);
    match fs::read(&log) {
        Ok(bytes) => {
            replay(&bytes, &mut found.replay);
            found.log_bytes = bytes;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_at(&log)(e)),
    }
    Ok(found)
}

/// The completions of one file of the previous layout (an object or an
/// array); None when it is not valid.
fn read_legacy(path: &Path) -> Option<Vec<Entry>> {
    let bytes = fs::read(path).ok()?;
    if bytes.trim_ascii_start().starts_with(b"[") {
        serde_json::from_slice(&bytes).ok()
    } else {
        serde_json::from_slice(&bytes).ok().map(|e| vec![e])
    }
}

/// The completions waiting in the outbox of `state_dir`, by job and token,
/// read without changing anything (while an agent runs there too).
pub fn waiting(state_dir: &Path) -> Result<Vec<Entry>, Error> {
    let dir = state_dir.join("outbox");
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let found = scan(&dir)?;
    Ok(found.replay.live.into_values().map(|(e, _)| e).collect())
}

impl Outbox {
    /// Open (creating it 0700 if missing) `<state_dir>/outbox`: the log is
    /// read and rewritten with the waiting completions, those of files of
    /// the previous layout included, and those files are removed.
    pub fn open(state_dir: &Path) -> Result<Self, Error> {
        let dir = state_dir.join("outbox");
        crate::config::create_private_dir(&dir).map_err(io_at(&dir))?;
        let found = scan(&dir)?;
        report_damage(&dir, &found);
        for path in &found.unreadable {
            let bad = path.with_extension("json.bad");
            match fs::rename(path, &bad) {
                Ok(()) => error!(file = %bad.display(), "Unreadable completion moved aside"),
                Err(e) => {
                    error!(file = %path.display(), error = %e, "Unreadable completion cannot be moved aside")
                }
            }
        }
        let entries = found.replay.live.into_values().map(|(e, _)| e);
        let (file, live, len) = rewrite(&dir, entries.map(Ok))?;
        let outbox = Outbox {
            dir,
            state: Arc::new(Mutex::new(State {
                file,
                len,
                live_bytes: len,
                live,
                dirty: false,
            })),
        };
        let old = found.legacy.iter().chain(&found.stale);
        let mut removed = false;
        for path in old {
            match fs::remove_file(path) {
                Ok(()) => removed = true,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_at(path)(e)),
            }
        }
        if removed {
            sync_dir(&outbox.dir)?;
        }
        Ok(outbox)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn log(&self) -> PathBuf {
        self.dir.join(LOG)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Write `entry` durably.
    pub fn write(&self, entry: &Entry) -> Result<(), Error> {
        self.write_many(std::slice::from_ref(entry))
    }

    /// Write several entries durably: one append, one fdatasync. On an
    /// error none of them counts as written.
    pub fn write_many(&self, entries: &[Entry]) -> Result<(), Error> {
        if entries.is_empty() {
            return Ok(());
        }
        let log = self.log();
        let mut buf = Vec::new();
        let mut sizes = Vec::with_capacity(entries.len());
        for entry in entries {
            let before = buf.len();
            encode(&Record::Completion(entry.clone()), &mut buf).map_err(|source| {
                Error::Corrupt {
                    path: log.clone(),
                    source,
                }
            })?;
            sizes.push((buf.len() - before) as u64);
        }
        let mut st = self.lock();
        if st.dirty {
            self.compact(&mut st)?;
        }
        let start = st.len;
        if let Err(e) = st.file.write_all(&buf).and_then(|()| st.file.sync_data()) {
            // Cut a partial record off, or rewrite before the next append.
            st.dirty = st.file.set_len(start).is_err();
            return Err(io_at(&log)(e));
        }
        let mut at = start;
        for (entry, size) in entries.iter().zip(sizes) {
            if let Some(old) = st.live.insert(entry.key(), at..at + size) {
                st.live_bytes -= old.end - old.start;
            }
            st.live_bytes += size;
            at += size;
        }
        st.len = at;
        Ok(())
    }

    /// Mark answered (delivered or dropped) completions done. Not synced
    /// (see the module doc); answering one twice, or one never written, is
    /// fine. The log is rewritten when mostly answered.
    pub fn remove_many(&self, answered: &[Key]) -> Result<(), Error> {
        let log = self.log();
        let mut st = self.lock();
        let mut buf = Vec::new();
        for &(job_id, token) in answered {
            let Some(range) = st.live.remove(&(job_id, token)) else {
                continue;
            };
            st.live_bytes -= range.end - range.start;
            encode(&Record::Done { job_id, token }, &mut buf).map_err(|source| Error::Corrupt {
                path: log.clone(),
                source,
            })?;
        }
        if buf.is_empty() {
            return Ok(());
        }
        let long = st.len > COMPACT_AFTER_BYTES && st.len > 4 * st.live_bytes;
        // The rewrite leaves the answered ones out: no tombstone needed.
        if (long || st.dirty) && self.compact(&mut st).is_ok() {
            return Ok(());
        }
        let start = st.len;
        match st.file.write_all(&buf) {
            Ok(()) => {
                st.len += buf.len() as u64;
                Ok(())
            }
            Err(e) => {
                st.dirty = st.file.set_len(start).is_err();
                Err(io_at(&log)(e))
            }
        }
    }

    /// Mark one answered completion done.
    pub fn remove(&self, key: Key) -> Result<(), Error> {
        self.remove_many(&[key])
    }

    /// Whether the completion `key` waits for an answer.
    pub fn is_waiting(&self, key: Key) -> bool {
        self.lock().live.contains_key(&key)
    }

    /// The waiting completions, by job then token.
    pub fn pending(&self) -> Result<Vec<Entry>, Error> {
        let st = self.lock();
        let log = self.log();
        let mut out = Vec::with_capacity(st.live.len());
        for range in st.live.values() {
            out.push(self.read_entry(&st.file, range, &log)?);
        }
        Ok(out)
    }

    /// The completion whose record is at `range` of the log.
    fn read_entry(&self, file: &File, range: &Range<u64>, log: &Path) -> Result<Entry, Error> {
        let bytes = read_range(file, range).map_err(io_at(log))?;
        match decode(&bytes) {
            Some((Record::Completion(entry), _)) => Ok(entry),
            _ => Err(Error::Io {
                path: log.to_path_buf(),
                source: io::Error::new(io::ErrorKind::InvalidData, "a record changed on disk"),
            }),
        }
    }

    /// Rewrite the log with the waiting completions, under the lock.
    fn compact(&self, st: &mut State) -> Result<(), Error> {
        let log = self.log();
        let old: Vec<Range<u64>> = st.live.values().cloned().collect();
        let (file, live, len) = {
            let entries = old.iter().map(|r| self.read_entry(&st.file, r, &log));
            rewrite(&self.dir, entries)?
        };
        *st = State {
            file,
            len,
            live_bytes: len,
            live,
            dirty: false,
        };
        Ok(())
    }
}

/// Read `range` of `file`.
fn read_range(file: &File, range: &Range<u64>) -> io::Result<Vec<u8>> {
    let mut bytes = vec![0; usize::try_from(range.end - range.start).unwrap_or(0)];
    #[cfg(unix)]
    std::os::unix::fs::FileExt::read_exact_at(file, &mut bytes, range.start)?;
    #[cfg(windows)]
    {
        let mut done = 0;
        while done < bytes.len() {
            let n = std::os::windows::fs::FileExt::seek_read(
                file,
                &mut bytes[done..],
                range.start + done as u64,
            )?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            done += n;
        }
    }
    Ok(bytes)
}

/// Replace the log with one holding `entries` (temp file, fdatasync,
/// rename, directory fsync); returns it opened for appending, where each
/// record is, and its length.
#[allow(clippy::type_complexity)]
fn rewrite(
    dir: &Path,
    entries: impl Iterator<Item = Result<Entry, Error>>,
) -> Result<(File, BTreeMap<Key, Range<u64>>, u64), Error> {
    let tmp = dir.join("log.tmp");
    let log = dir.join(LOG);
    let mut buf = Vec::new();
    let mut live = BTreeMap::new();
    for entry in entries {
        let entry = entry?;
        let start = buf.len() as u64;
        let key = entry.key();
        encode(&Record::Completion(entry), &mut buf).map_err(|source| Error::Corrupt {
            path: log.clone(),
            source,
        })?;
        live.insert(key, start..buf.len() as u64);
    }
    let mut f = File::create(&tmp).map_err(io_at(&tmp))?;
    f.write_all(&buf).map_err(io_at(&tmp))?;
    f.sync_data().map_err(io_at(&tmp))?;
    drop(f);
    fs::rename(&tmp, &log).map_err(io_at(&log))?;
    sync_dir(dir)?;
    let file = OpenOptions::new()
        .append(true)
        .read(true)
        .open(&log)
        .map_err(io_at(&log))?;
    Ok((file, live, buf.len() as u64))
}

/// Say what was skipped reading the log: a torn last record is a WARN; a
/// damaged part before the end is an ERROR, and the log is kept aside as
/// `log.damaged` before it is rewritten.
fn report_damage(dir: &Path, found: &Found) {
    let total = found.log_bytes.len();
    for range in &found.replay.skipped {
        if range.end == total {
            warn!(
                bytes = range.end - range.start,
                "Ignored a torn last record in the outbox log (a crash during a write)"
            );
            continue;
        }
        let aside = dir.join("log.damaged");
        let kept = fs::write(&aside, &found.log_bytes);
        error!(
            offset = range.start,
            bytes = range.end - range.start,
            copy = %aside.display(),
            kept = kept.is_ok(),
            "Skipped a damaged part of the outbox log; completions in it are lost"
        );
    }
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_at(dir))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests;
