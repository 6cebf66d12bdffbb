//! The `export` kind's file, shared by both engines: each engine's executor
//! streams its result set row by row into an [`ExportFile`], which encodes
//! ([`encode`]: CSV or JSON Lines), compresses (zstd, gzip or none), hashes
//! the bytes that reach the disk (sha256) and writes them to
//! `<stem>.<csv|jsonl>[.zst|.gz].partial` in
//! `<state_dir>/exports/<connection>/<prefix>/`.
//!
//! Memory is bounded whatever the row count: one row and at most [`CHUNK`]
//! bytes of encoded text (plus the compressor's window) are held at a time.
//!
//! Only a complete export looks complete: on success the file is
//! fdatasync'd, renamed to its final name, the directory fsync'd, then the
//! manifest `<stem>.manifest.json` written atomically (temp file, fsync,
//! rename) — a manifest that cannot be written removes the file. Anything
//! else (an error, a cancel, the lease loss, a timeout: the engine drops the
//! [`ExportFile`]) removes the `.partial`; no manifest exists for it. A
//! `.partial` left by a killed agent is removed by the retention of the next
//! export in that directory once it is a day old (or at once when the same
//! job finishes).
//!
//! Before writing, the free-space rule of dumps ([`super::space`]) is
//! checked with an estimate of 0: the connection's reserve must be free (a
//! query's result size is not known in advance). After a success, retention
//! ([`super::retention`], the connection's `keep_last` / `max_age`) runs in
//! the export's directory, per file suffix, never touching the new file.

pub mod encode;

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_compression::Level;
use async_compression::tokio::write::{GzipEncoder, ZstdEncoder};
use baton_proto::{
    ExportCompression, ExportFormat, ExportSpec, FencingToken, JobId, ParamValue, Progress,
};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value as Json;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;
use tracing::{info, warn};

use super::paths::{self, BadName, DumpName, Layout, Suffixes};
use super::{report, retention, space};
use crate::executor::ProgressHandle;
use encode::Encoder;

/// Bytes of encoded text gathered before they go through the compressor.
pub const CHUNK: usize = 64 * 1024;
/// Version of the manifest format.
pub const FORMAT: u32 = 1;
/// zstd level (as dumps).
pub const ZSTD_LEVEL: i32 = 3;
/// How often progress is published.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Why an export file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The connection or prefix cannot be a directory name.
    #[error("{0}")]
    Name(#[from] BadName),
    /// Not even the reserve is free.
    #[error(
        "not enough free space for the export: {mount} (holding {dir}) has {free} bytes free, \
         and the connection's reserve is {reserve} bytes"
    )]
    NoSpace {
        /// The export directory.
        dir: String,
        /// Its filesystem's mount point.
        mount: String,
        /// Bytes free.
        free: u64,
        /// Bytes to keep free.
        reserve: u64,
    },
    /// Local file-system trouble.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why.
        source: std::io::Error,
    },
    /// The manifest could not be written (the file was removed).
    #[error("{0}")]
    Manifest(#[from] report::Error),
}

impl Error {
    /// Whether another attempt may succeed (not after a full disk).
    pub fn retryable(&self) -> bool {
        match self {
            Error::Name(_) | Error::NoSpace { .. } => false,
            Error::Io { source, .. } => !disk_full(source),
            Error::Manifest(report::Error::Write { source, .. }) => !disk_full(source),
            Error::Manifest(_) => false,
        }
    }

    fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}

fn disk_full(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull || e.kind() == std::io::ErrorKind::QuotaExceeded
}

/// The file suffixes of an export (finished, partial).
pub fn suffixes(format: ExportFormat, compression: ExportCompression) -> Suffixes {
    use ExportCompression as C;
    use ExportFormat as F;
    let (finished, partial) = match (format, compression) {
        (F::Csv, C::Zstd) => (".csv.zst", ".csv.zst.partial"),
        (F::Csv, C::Gzip) => (".csv.gz", ".csv.gz.partial"),
        (F::Csv, C::None) => (".csv", ".csv.partial"),
        (F::Jsonl, C::Zstd) => (".jsonl.zst", ".jsonl.zst.partial"),
        (F::Jsonl, C::Gzip) => (".jsonl.gz", ".jsonl.gz.partial"),
        (F::Jsonl, C::None) => (".jsonl", ".jsonl.partial"),
    };
    Suffixes { finished, partial }
}

/// Where an export goes and the rules of its directory (plain values from
/// the connection's settings).
#[derive(Debug, Clone)]
pub struct Target {
    /// `<state_dir>/exports`.
    pub root: PathBuf,
    /// The connection's name.
    pub connection: String,
    /// Retention: files kept per directory and suffix.
    pub keep_last: Option<u32>,
    /// Retention: files older than this are deleted.
    pub max_age: Option<Duration>,
    /// Bytes that must stay free on the export directory's filesystem.
    pub reserve: u64,
}

/// A column of the result set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Column {
    /// Its name.
    pub name: String,
    /// Its type in one word (`int`, `decimal`, `string`, `bytes`, `datetime`, ...).
    #[serde(rename = "type")]
    pub kind: String,
}

/// What an export is and how to trust it; written next to the file and
/// sent as the job's `result.data` (plus `path` and `manifest_path`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Manifest {
    /// Format version of this manifest.
    pub format: u32,
    /// Always `export`.
    pub kind: &'static str,
    /// The file's name (same directory).
    pub file: String,
    /// Connection name on the agent.
    pub connection: String,
    /// The export's prefix (its directory).
    pub prefix: String,
    /// The query.
    pub query: String,
    /// The bound parameters.
    pub params: Vec<ParamValue>,
    /// Rows written (the header not counted).
    pub rows: u64,
    /// The columns, in order.
    pub columns: Vec<Column>,
    /// `csv` or `jsonl`.
    pub file_format: &'static str,
    /// `zstd`, `gzip` or `none`.
    pub compression: &'static str,
    /// Bytes of the file.
    pub bytes: u64,
    /// Bytes of text before compression.
    pub uncompressed_bytes: u64,
    /// sha256 of the file (hex), as `sha256sum` prints it.
    pub sha256: String,
    /// Start (RFC 3339 UTC, milliseconds).
    #[serde(with = "baton_proto::time::ms")]
    pub started_at: DateTime<Utc>,
    /// End, same format.
    #[serde(with = "baton_proto::time::ms")]
    pub ended_at: DateTime<Utc>,
    /// Milliseconds from start to end (monotonic clock).
    pub duration_ms: u64,
    /// The server's version, when known.
    pub server_version: Option<String>,
    /// The job.
    pub job_id: JobId,
    /// Its fencing token.
    pub token: FencingToken,
    /// Anything the reader should know.
    pub warnings: Vec<String>,
}

/// What a finished export left.
#[derive(Debug, Clone)]
pub struct Finished {
    /// The file.
    pub path: PathBuf,
    /// Its manifest.
    pub manifest_path: PathBuf,
    /// The manifest.
    pub manifest: Manifest,
    /// Files retention deleted.
    pub retention_deleted: Vec<String>,
}

impl Finished {
    /// `result.data`: the manifest plus `path` and `manifest_path`.
    pub fn data(&self) -> Json {
        report::result_data(&self.manifest, &self.path, &self.manifest_path)
    }

    /// The one-line summary for stdout and the log tail.
    pub fn summary(&self) -> String {
        let m = &self.manifest;
        format!(
            "exported {} rows from {} into {} ({} bytes, {}) in {:.1} s",
            m.rows,
            m.connection,
            self.path.display(),
            m.bytes,
            m.compression,
            m.duration_ms as f64 / 1000.0
        )
    }
}

/// The compressor in front of the file.
enum Compressor {
    Zstd(ZstdEncoder<Vec<u8>>),
    Gzip(GzipEncoder<Vec<u8>>),
    Plain,
}

impl Compressor {
    fn new(c: ExportCompression) -> Self {
        match c {
            ExportCompression::Zstd => Compressor::Zstd(ZstdEncoder::with_quality(
                Vec::with_capacity(CHUNK),
                Level::Precise(ZSTD_LEVEL),
            )),
            ExportCompression::Gzip => {
                Compressor::Gzip(GzipEncoder::new(Vec::with_capacity(CHUNK)))
            }
            ExportCompression::None => Compressor::Plain,
        }
    }

    /// Feed `input`; what the compressor produced is appended to `out`.
    async fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> std::io::Result<()> {
        match self {
            Compressor::Zstd(e) => {
                e.write_all(input).await?;
                out.append(e.get_mut());
            }
            Compressor::Gzip(e) => {
                e.write_all(input).await?;
                out.append(e.get_mut());
            }
            Compressor::Plain => out.extend_from_slice(input),
        }
        Ok(())
    }

    /// End the stream; the rest goes to `out`.
    async fn finish(&mut self, out: &mut Vec<u8>) -> std::io::Result<()> {
        match self {
            Compressor::Zstd(e) => {
                e.shutdown().await?;
                out.append(e.get_mut());
            }
            Compressor::Gzip(e) => {
                e.shutdown().await?;
                out.append(e.get_mut());
            }
            Compressor::Plain => {}
        }
        Ok(())
    }
}

/// An export being written. Dropped before [`ExportFile::finish`] (an
/// error, a stop), it removes its `.partial`.
pub struct ExportFile {
    layout: Layout,
    target: Target,
    spec: ExportSpec,
    file: tokio::fs::File,
    compressor: Compressor,
    hash: Sha256,
    text: Vec<u8>,
    out: Vec<u8>,
    encoder: Encoder,
    columns: Vec<Column>,
    rows: u64,
    text_bytes: u64,
    written: u64,
    started: DateTime<Utc>,
    clock: Instant,
    next_report: Instant,
    progress: ProgressHandle,
    renamed: bool,
}

impl std::fmt::Debug for ExportFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportFile")
            .field("partial", &self.layout.partial())
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

impl Drop for ExportFile {
    fn drop(&mut self) {
        if !self.renamed {
            remove_quietly(&self.layout.partial());
        }
    }
}

impl ExportFile {
    /// Check the free space, create the directory and the `.partial`, and
    /// write the header of `columns`.
    pub async fn create(
        target: &Target,
        spec: &ExportSpec,
        job_id: JobId,
        columns: Vec<Column>,
        progress: ProgressHandle,
    ) -> Result<ExportFile, Error> {
        let started = Utc::now();
        let name = DumpName { started, job_id };
        let suffixes = suffixes(spec.format, spec.compression);
        let layout = Layout::new(
            &target.root,
            &target.connection,
            spec.prefix_or_default(),
            name,
            suffixes,
        )?;
        let dir = layout.dir.clone();
        paths::create_dirs(&dir)
            .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
        check_space(&dir, target.reserve).await?;
        let partial = layout.partial();
        let file = paths::create_new(&partial)
            .map_err(|e| Error::io(format!("cannot create {}", partial.display()), e))?;
        let names: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
        let encoder = Encoder::new(spec.format, &names);
        let mut text = Vec::with_capacity(2 * CHUNK);
        encoder.header(&mut text, &names);
        Ok(ExportFile {
            layout,
            target: target.clone(),
            spec: spec.clone(),
            file: tokio::fs::File::from_std(file),
            compressor: Compressor::new(spec.compression),
            hash: Sha256::new(),
            text,
            out: Vec::with_capacity(2 * CHUNK),
            encoder,
            columns,
            rows: 0,
            text_bytes: 0,
            written: 0,
            started,
            clock: Instant::now(),
            next_report: Instant::now() + PROGRESS_EVERY,
            progress,
            renamed: false,
        })
    }

    /// The `.partial` being written.
    pub fn partial(&self) -> PathBuf {
        self.layout.partial()
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Add one row (one value per column).
    pub async fn push(&mut self, row: &[Json]) -> Result<(), Error> {
        self.encoder.row(&mut self.text, row);
        self.rows += 1;
        if self.text.len() >= CHUNK {
            self.drain().await?;
            if Instant::now() >= self.next_report {
                self.next_report = Instant::now() + PROGRESS_EVERY;
                self.progress.set_progress(Progress {
                    percent: None,
                    message: format!(
                        "exported {} rows ({} bytes written)",
                        self.rows, self.written
                    ),
                });
            }
        }
        Ok(())
    }

    /// The gathered text through the compressor, the hash and into the file.
    async fn drain(&mut self) -> Result<(), Error> {
        self.text_bytes += self.text.len() as u64;
        let what = || format!("cannot write {}", self.layout.partial().display());
        self.compressor
            .feed(&self.text, &mut self.out)
            .await
            .map_err(|e| Error::io(what(), e))?;
        self.text.clear();
        self.write_out().await
    }

    async fn write_out(&mut self) -> Result<(), Error> {
        if self.out.is_empty() {
            return Ok(());
        }
        self.hash.update(&self.out);
        self.file.write_all(&self.out).await.map_err(|e| {
            Error::io(
                format!("cannot write {}", self.layout.partial().display()),
                e,
            )
        })?;
        self.written += self.out.len() as u64;
        self.out.clear();
        Ok(())
    }

    /// End the stream, fdatasync, rename, write the manifest, apply
    /// retention. `server_version` and `warnings` go to the manifest.
    pub async fn finish(
        mut self,
        server_version: Option<String>,
        warnings: Vec<String>,
        token: FencingToken,
    ) -> Result<Finished, Error> {
        self.drain().await?;
        let partial = self.layout.partial();
        let what = |verb: &str| format!("cannot {verb} {}", partial.display());
        let mut out = std::mem::take(&mut self.out);
        self.compressor
            .finish(&mut out)
            .await
            .map_err(|e| Error::io(what("write"), e))?;
        self.out = out;
        self.write_out().await?;
        self.file
            .flush()
            .await
            .map_err(|e| Error::io(what("write"), e))?;
        self.file
            .sync_data()
            .await
            .map_err(|e| Error::io(what("fdatasync"), e))?;
        let path = self.layout.finished();
        tokio::fs::rename(&partial, &path)
            .await
            .map_err(|e| Error::io(what("rename"), e))?;
        self.renamed = true;
        let dir = self.layout.dir.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || paths::fsync_dir(&dir))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
        {
            remove_quietly(&path);
            return Err(Error::io(
                format!("cannot fsync {}", self.layout.dir.display()),
                e,
            ));
        }
        let manifest = self.manifest(server_version, warnings, token);
        let manifest_path = match report::write_manifest(&self.layout, &manifest).await {
            Ok(p) => p,
            Err(e) => {
                remove_quietly(&path);
                return Err(e.into());
            }
        };
        info!(
            connection = %manifest.connection,
            file = %path.display(),
            rows = manifest.rows,
            bytes = manifest.bytes,
            sha256 = %manifest.sha256,
            "Export written"
        );
        let retention_deleted = retention::after_success(
            self.layout.suffixes,
            &self.layout,
            self.target.keep_last,
            self.target.max_age,
        )
        .await;
        Ok(Finished {
            path,
            manifest_path,
            manifest,
            retention_deleted,
        })
    }

    fn manifest(
        &mut self,
        server_version: Option<String>,
        warnings: Vec<String>,
        token: FencingToken,
    ) -> Manifest {
        let hash = std::mem::take(&mut self.hash);
        Manifest {
            format: FORMAT,
            kind: "export",
            file: self.layout.file_name(self.layout.suffixes.finished),
            connection: self.target.connection.clone(),
            prefix: self.spec.prefix_or_default().to_owned(),
            query: self.spec.query.clone(),
            params: self.spec.params.clone(),
            rows: self.rows,
            columns: std::mem::take(&mut self.columns),
            file_format: self.spec.format.as_str(),
            compression: self.spec.compression.as_str(),
            bytes: self.written,
            uncompressed_bytes: self.text_bytes,
            sha256: hex::encode(hash.finalize()),
            started_at: self.started,
            ended_at: Utc::now(),
            duration_ms: u64::try_from(self.clock.elapsed().as_millis()).unwrap_or(u64::MAX),
            server_version,
            job_id: self.layout.name.job_id,
            token,
            warnings,
        }
    }
}

/// The reserve must be free on the directory's filesystem (unknown: go on).
async fn check_space(dir: &Path, reserve: u64) -> Result<(), Error> {
    let probe = dir.to_path_buf();
    let found = tokio::task::spawn_blocking(move || space::free_space(&probe))
        .await
        .ok()
        .flatten();
    match found {
        Some((mount, free)) if !space::fits(0, free, reserve) => Err(Error::NoSpace {
            dir: dir.display().to_string(),
            mount: mount.display().to_string(),
            free,
            reserve,
        }),
        Some(_) => Ok(()),
        None => {
            warn!(dir = %dir.display(), "Free space unknown; check skipped");
            Ok(())
        }
    }
}

fn remove_quietly(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => info!(file = %path.display(), "Removed an unfinished export file"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            warn!(file = %path.display(), error = %e, "Cannot remove an unfinished export file")
        }
    }
}

#[cfg(all(test, unix))]
mod tests;
