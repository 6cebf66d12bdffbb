//! The `upload` executor: a file an earlier step made on this agent, copied
//! to an object store (`[stores.<name>]`) with its manifest.
//!
//! 1. **Source.** `spec.file` must be absolute and, once symlinks are
//!    resolved, under one of the agent's dump or backup directories (a MySQL
//!    connection's `dump_dir`, default `<state_dir>/dumps`; a SQL Server
//!    connection's `backup_dir`); anything else is refused before any
//!    request. `<stem>.manifest.json` next to it gives the connection, the
//!    database, the start time and the file's sha256.
//! 2. **Key.** The spec's template (default
//!    `{connection}/{database}/{yyyy}/{mm}/{dd}/{file}`) under the store's
//!    prefix; the manifest goes next to it as `<stem>.manifest.json`.
//! 3. **Multipart**, streamed: parts of `part_size` read one after the
//!    other, at most `concurrency` in flight (memory ≈ part_size ×
//!    (concurrency + 1)); each part with `x-amz-checksum-sha256` when the
//!    server echoed the algorithm at creation, else `Content-MD5`. The file's
//!    sha256 is computed on the way and must equal the manifest's; it is the
//!    object's `x-amz-meta-sha256`.
//! 4. **Failure or cancel** aborts the multipart upload: no object appears
//!    under the key. Requests are retried (backon) on 5xx and connection
//!    errors; a 403 fails at once and for good (bad keys), the job's error
//!    naming the store and the S3 error code ([`failure`]). Each upload in
//!    progress is recorded under the state dir ([`pending`]): after a kill
//!    the restarted agent aborts it before any new upload starts, and a job
//!    out of time has its upload aborted.
//! 5. **Verify** after completion: HEAD (size and sha256 metadata) and a
//!    ranged read of the last 64 KiB compared with the file's.
//! 6. **Manifest** uploaded next to the object, then **retention**
//!    ([`retention`]).
//!
//! Result data: `store`, `bucket`, `key`, `size`, `sha256`, `etag`,
//! `manifest_key`, `deleted` (keys removed by retention).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use baton_proto::upload::{DEFAULT_KEY, KeyValues, UploadSpec, render};
use baton_proto::{JobKind, JobResult, JobSpec, Progress};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use sha2::Digest;
use tokio::io::AsyncReadExt;

use crate::config::StoreConfig;
use crate::config::store::S3Store;
use crate::executor::{BoxFuture, CancelReason, Executor, Job, Outcome};
use crate::objstore::{self, Checksum, Client, Part};
use pending::{Pending, Record};

pub mod pending;
pub mod retention;

/// Bytes of the tail read back after completion.
const TAIL: u64 = 64 * 1024;

/// Errors of an upload.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The job asks for something this agent refuses (for good).
    #[error("{0}")]
    Refused(String),
    /// A local file could not be read.
    #[error("{what} {path}: {source}")]
    Io {
        /// What it was.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The object store failed.
    #[error(transparent)]
    Store(#[from] objstore::Error),
    /// What was read back is not what was sent.
    #[error("verification failed: {0}")]
    Verify(String),
    /// Stopped.
    #[error("stopped: {}", .0.as_str())]
    Cancelled(CancelReason),
}

impl Error {
    fn retryable(&self) -> bool {
        match self {
            Error::Store(e) => e.retryable(),
            Error::Io { .. } | Error::Verify(_) => true,
            Error::Refused(_) | Error::Cancelled(_) => false,
        }
    }
}

/// Runs `upload` jobs.
#[derive(Debug)]
pub struct UploadExecutor {
    stores: Arc<std::collections::BTreeMap<String, StoreConfig>>,
    roots: Vec<PathBuf>,
    pending: Arc<Pending>,
}

impl UploadExecutor {
    /// With the agent's stores, the directories files may come from, and
    /// the records of uploads in progress.
    pub fn new(
        stores: std::collections::BTreeMap<String, StoreConfig>,
        roots: Vec<PathBuf>,
        pending: Arc<Pending>,
    ) -> Self {
        UploadExecutor {
            stores: Arc::new(stores),
            roots,
            pending,
        }
    }
}

impl Executor for UploadExecutor {
    fn kind(&self) -> JobKind {
        JobKind::Upload
    }

    fn available(&self) -> bool {
        !self.stores.is_empty()
    }

    fn execute(&self, job: Job) -> BoxFuture<'_, Outcome> {
        Box::pin(async move {
            let JobSpec::Upload(spec) = &job.spec else {
                return Outcome::failed(false, "not an upload job");
            };
            // A dead run's uploads go first (the restarted agent's takeover).
            self.pending.abort_leftovers(&self.stores).await;
            let run = run(self, spec, &job);
            let r = match job.timeout {
                Some(t) => match tokio::time::timeout(t, run).await {
                    Ok(r) => r,
                    Err(_) => {
                        let record = self.pending.path_of(job.job_id, job.attempt);
                        self.pending.abort_recorded(&record, &self.stores).await;
                        return Outcome::timed_out(t, JobResult::default());
                    }
                },
                None => run.await,
            };
            match r {
                Ok(data) => Outcome::succeeded(JobResult {
                    data: Some(data),
                    ..JobResult::default()
                }),
                Err(Error::Cancelled(reason)) => Outcome::cancelled(reason, JobResult::default()),
                Err(e) => {
                    let (retry, msg) = failure(&spec.store, &e);
                    Outcome::failed(retry, msg)
                }
            }
        })
    }
}

/// Whether a failed upload may be retried, and what the job's error says:
/// the store's name and the server's answer (status and S3 error code); keys
/// the server refused are said to be so, and never retried.
pub fn failure(store: &str, e: &Error) -> (bool, String) {
    match e {
        // Already names the store.
        Error::Store(objstore::Error::Setup { .. }) => (false, e.to_string()),
        Error::Store(s) if s.bad_credentials() => (
            false,
            format!(
                "store {store}: {e} (the store refused the keys: check its key files, key \
                 variables or AWS credential chain; not retried)"
            ),
        ),
        Error::Store(_) => (e.retryable(), format!("store {store}: {e}")),
        _ => (e.retryable(), e.to_string()),
    }
}

/// What the manifest says about the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The file (canonical).
    pub file: PathBuf,
    /// Its manifest.
    pub manifest: PathBuf,
    /// The file's name.
    pub name: String,
    /// `<stem>.manifest.json`.
    pub manifest_name: String,
    /// Connection, database and sha256 from the manifest.
    pub connection: String,
    /// Database.
    pub database: String,
    /// The file's sha256 (hex).
    pub sha256: String,
    /// When the dump started.
    pub at: chrono::DateTime<chrono::Utc>,
}

/// Check `file` against `roots` and read its manifest.
pub fn source(file: &str, roots: &[PathBuf]) -> Result<Source, Error> {
    let p = Path::new(file);
    if !p.is_absolute() {
        return Err(Error::Refused(format!(
            "spec.file {file:?} is not an absolute path"
        )));
    }
    let io = |what, path: &Path| {
        let path = path.to_owned();
        move |source| Error::Io { what, path, source }
    };
    let canon = p.canonicalize().map_err(io("file", p))?;
    let under = roots
        .iter()
        .filter_map(|r| r.canonicalize().ok())
        .any(|r| canon.starts_with(&r) && canon != r);
    if !under {
        return Err(Error::Refused(format!(
            "spec.file {file:?} is not under this agent's dump or backup directories ({})",
            roots
                .iter()
                .map(|r| r.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let name = canon
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::Refused(format!("spec.file {file:?} has no usable name")))?
        .to_owned();
    let stem = name.split('.').next().unwrap_or_default();
    let manifest_name = format!("{stem}{}", crate::db::common::paths::MANIFEST_SUFFIX);
    let manifest = canon.with_file_name(&manifest_name);
    let text = std::fs::read_to_string(&manifest).map_err(io("manifest", &manifest))?;
    let m: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::Refused(format!("manifest {}: {e}", manifest.display())))?;
    let field = |k: &str| {
        m.get(k)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .ok_or_else(|| Error::Refused(format!("manifest {} has no {k}", manifest.display())))
    };
    if field("file")? != name {
        return Err(Error::Refused(format!(
            "manifest {} describes another file",
            manifest.display()
        )));
    }
    let at = field("started_at")?
        .parse()
        .map_err(|e| Error::Refused(format!("manifest {}: started_at: {e}", manifest.display())))?;
    let (connection, database, sha256) =
        (field("connection")?, field("database")?, field("sha256")?);
    Ok(Source {
        file: canon,
        manifest,
        name,
        manifest_name,
        connection,
        database,
        sha256,
        at,
    })
}

/// The whole upload; the result data.
async fn run(
    ex: &UploadExecutor,
    spec: &UploadSpec,
    job: &Job,
) -> Result<serde_json::Value, Error> {
    let store = match ex.stores.get(&spec.store) {
        Some(s) => s.as_s3(),
        None => {
            return Err(Error::Refused(format!(
                "this agent has no store {:?} ([stores.{}] in its config)",
                spec.store, spec.store
            )));
        }
    };
    let src = source(&spec.file, &ex.roots)?;
    let template = spec.key.as_deref().unwrap_or(DEFAULT_KEY);
    let values = KeyValues {
        connection: &src.connection,
        database: &src.database,
        at: src.at,
        file: &src.name,
    };
    let (key, retention_prefix) =
        render(template, &values).map_err(|m| Error::Refused(format!("spec.key: {m}")))?;
    let key = format!("{}{key}", store.prefix);
    let manifest_key = match key.rsplit_once('/') {
        Some((dir, _)) => format!("{dir}/{}", src.manifest_name),
        None => src.manifest_name.clone(),
    };
    let client = Client::new(store)?;
    tracing::info!(job_id = %job.job_id, store = %store.name, bucket = %store.bucket, key = %key, "Upload starting");
    let (size, etag) = upload_file(&client, &ex.pending, store, &key, &src, job).await?;
    verify(&client, &key, &src, size).await?;
    let manifest = tokio::fs::read(&src.manifest)
        .await
        .map_err(|source| Error::Io {
            what: "manifest",
            path: src.manifest.clone(),
            source,
        })?;
    let manifest_sha = hex::encode(sha2::Sha256::digest(&manifest));
    client
        .put_small(&manifest_key, Bytes::from(manifest), &manifest_sha)
        .await?;
    let deleted = match &spec.retention {
        Some(r) => {
            let prefix = format!("{}{retention_prefix}", store.prefix);
            retention::apply(&client, &prefix, r, &key).await?
        }
        None => Vec::new(),
    };
    tracing::info!(job_id = %job.job_id, key = %key, size, deleted = deleted.len(), "Upload done");
    Ok(serde_json::json!({
        "store": store.name,
        "bucket": store.bucket,
        "key": key,
        "size": size,
        "sha256": src.sha256,
        "etag": etag,
        "manifest_key": manifest_key,
        "deleted": deleted,
    }))
}

/// Multipart upload of the file; aborted on any failure or cancel.
async fn upload_file(
    client: &Client,
    pending: &Pending,
    store: &S3Store,
    key: &str,
    src: &Source,
    job: &Job,
) -> Result<(u64, String), Error> {
    let (upload_id, checksum) = client.create_multipart(key, &src.sha256).await?;
    let record = pending
        .add(&Record {
            store: store.name.clone(),
            bucket: store.bucket.clone(),
            key: key.to_owned(),
            upload_id: upload_id.clone(),
            job_id: job.job_id,
            attempt: job.attempt,
        })
        .await;
    let sent = tokio::select! {
        r = send_parts(client, store, key, &upload_id, checksum, src, job) => r,
        reason = job.cancel.cancelled() => Err(Error::Cancelled(reason)),
    };
    let result = match sent {
        Ok((parts, size)) => client
            .complete(key, &upload_id, &parts)
            .await
            .map(|etag| (size, etag))
            .map_err(Error::from),
        Err(e) => Err(e),
    };
    let mut settled = true;
    if let Err(e) = &result {
        tracing::warn!(job_id = %job.job_id, key = %key, error = %e, "Upload failed; aborting the multipart upload");
        if let Err(a) = client.abort(key, &upload_id).await {
            settled = false;
            tracing::warn!(job_id = %job.job_id, key = %key, error = %a, "Abort of the multipart upload failed; the agent's next start tries again, else the bucket's lifecycle rule must remove it");
        }
    }
    // An upload that could not be aborted stays recorded for the next start.
    if let Some(path) = record
        && settled
    {
        pending.remove(&path).await;
    }
    result
}

/// Read the file part by part, at most `concurrency` parts in flight.
async fn send_parts(
    client: &Client,
    store: &S3Store,
    key: &str,
    upload_id: &str,
    checksum: Checksum,
    src: &Source,
    job: &Job,
) -> Result<(Vec<Part>, u64), Error> {
    let io = |source| Error::Io {
        what: "file",
        path: src.file.clone(),
        source,
    };
    let mut f = tokio::fs::File::open(&src.file).await.map_err(io)?;
    let total = f.metadata().await.map_err(io)?.len();
    let part_size = usize::try_from(store.part_size).unwrap_or(usize::MAX);
    let mut hasher = sha2::Sha256::new();
    let mut in_flight = FuturesUnordered::new();
    let mut parts = Vec::new();
    let (mut number, mut read_total, mut done_bytes) = (0u16, 0u64, 0u64);
    loop {
        let mut buf = Vec::with_capacity(part_size);
        (&mut f)
            .take(store.part_size)
            .read_to_end(&mut buf)
            .await
            .map_err(io)?;
        if buf.is_empty() && number > 0 {
            break;
        }
        hasher.update(&buf);
        read_total += buf.len() as u64;
        number = number
            .checked_add(1)
            .filter(|n| *n <= 10_000)
            .ok_or_else(|| Error::Refused("more than 10,000 parts: raise part_size_mb".into()))?;
        let len = buf.len() as u64;
        in_flight.push(async move {
            client
                .upload_part(key, upload_id, number, Bytes::from(buf), checksum)
                .await
                .map(|p| (p, len))
        });
        let last = len < store.part_size;
        // Full: wait for one; at the end (a short part, or an empty read
        // after a full one, above), wait for all.
        while in_flight.len() >= store.concurrency || (last && !in_flight.is_empty()) {
            if let Some(r) = in_flight.next().await {
                let (p, len) = r?;
                done_bytes += len;
                parts.push(p);
                job.progress.set_progress(progress(done_bytes, total));
            }
        }
        if last {
            break;
        }
    }
    // A file of whole parts ends with an empty read: the last parts are
    // still in flight.
    while let Some(r) = in_flight.next().await {
        let (p, len) = r?;
        done_bytes += len;
        parts.push(p);
        job.progress.set_progress(progress(done_bytes, total));
    }
    parts.sort_by_key(|p| p.number);
    let sha = hex::encode(hasher.finalize());
    if sha != src.sha256 {
        return Err(Error::Verify(format!(
            "the file's sha256 {sha} is not the manifest's {} (changed since the dump?)",
            src.sha256
        )));
    }
    Ok((parts, read_total))
}

fn progress(done: u64, total: u64) -> Progress {
    let pct = if total == 0 {
        100.0
    } else {
        done as f64 * 100.0 / total as f64
    };
    Progress {
        percent: Some(pct.min(100.0) as f32),
        message: format!("{done} of {total} bytes uploaded"),
    }
}

/// HEAD (size, sha256 metadata) and the tail read back.
async fn verify(client: &Client, key: &str, src: &Source, size: u64) -> Result<(), Error> {
    let head = client
        .head(key)
        .await?
        .ok_or_else(|| Error::Verify(format!("{key} is missing after completion")))?;
    if head.size != size {
        return Err(Error::Verify(format!(
            "{key} has {} bytes, the file {size}",
            head.size
        )));
    }
    if head.sha256.as_deref() != Some(src.sha256.as_str()) {
        return Err(Error::Verify(format!(
            "{key}'s sha256 metadata is {:?}, not {}",
            head.sha256, src.sha256
        )));
    }
    let n = TAIL.min(size);
    if n == 0 {
        return Ok(());
    }
    let remote = client.tail(key, n).await?;
    let mut f = std::fs::File::open(&src.file).map_err(|source| Error::Io {
        what: "file",
        path: src.file.clone(),
        source,
    })?;
    let mut local = vec![0; usize::try_from(n).unwrap_or(0)];
    {
        use std::io::{Read, Seek, SeekFrom};
        f.seek(SeekFrom::Start(size - n))
            .and_then(|_| f.read_exact(&mut local))
            .map_err(|source| Error::Io {
                what: "file",
                path: src.file.clone(),
                source,
            })?;
    }
    if remote[..] != local[..] {
        return Err(Error::Verify(format!(
            "the last {n} bytes of {key} differ from the file's"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
