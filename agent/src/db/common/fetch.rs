//! A `restore` job's object: a dump or backup an `upload` job wrote to an
//! object store, downloaded next to the engine's dump files and checked
//! before anything touches a database (engine-neutral).
//!
//! 1. **Which object**: `source.key` under the store's prefix, or the newest
//!    object under `source.key_prefix` whose `<stem>.manifest.json` exists
//!    (as the upload's retention counts them: dump names, newest by the time
//!    in the name). Its file name must end with the engine's suffix.
//! 2. **Manifest**: the manifest object (at most 1 MiB) with its `sha256`;
//!    the object's `x-amz-meta-sha256`, when present, must say the same.
//! 3. **Download**, streamed (one chunk in memory at a time) into
//!    `<dump root>/.restore-job<id>-<random>/<name>.partial` (a directory of
//!    its own, 0700), hashed on the way; the sha256 must be the manifest's,
//!    else the job fails for good and nothing touched a database. Then the
//!    file is renamed to `<name>` and the manifest written beside it, so the
//!    engine's restore reads it as a file a dump job wrote.
//! 4. **Cleanup**: the directory is removed when the [`Fetched`] is dropped:
//!    after the restore, on any failure, and when the job is stopped in the
//!    middle (the future is dropped). Only a killed agent leaves one behind,
//!    and the next start removes it ([`remove_leftovers`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use baton_proto::RestoreOrigin;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::paths::{DumpName, MANIFEST_SUFFIX, safe_component};
use super::source::MAX_MANIFEST_BYTES;
use crate::config::StoreConfig;
use crate::objstore::{self, Client};

/// The start of a download directory's name under a dump root.
pub const DIR_PREFIX: &str = ".restore-job";

/// Why an object cannot be restored.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The agent has no such store.
    #[error(
        "source.store: this agent has no store {0:?} ([stores.{0}] in its config; nothing was done)"
    )]
    NoStore(String),
    /// Nothing to restore under the prefix, or the key is not a dump's.
    #[error("{0} (nothing was done)")]
    Refused(String),
    /// The object store failed.
    #[error("store {store}: {source}")]
    Store {
        /// Store name.
        store: String,
        /// What failed.
        source: objstore::Error,
    },
    /// The download directory or file could not be written.
    #[error("{what} {path}: {source}")]
    Io {
        /// What it was.
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The bytes are not those the manifest (or the object's metadata) describes.
    #[error(
        "object {key} does not match its manifest: {what} is {actual}, the manifest says \
         {expected}; the object is damaged or was replaced, or the download was corrupted \
         (nothing was restored)"
    )]
    Mismatch {
        /// The object.
        key: String,
        /// What was compared (`the download's sha256`, `its sha256 metadata`).
        what: &'static str,
        /// The manifest's sha256.
        expected: String,
        /// What was found.
        actual: String,
    },
}

impl Error {
    /// Whether another attempt may succeed (the store or the local disk
    /// failing); never a refusal or a mismatch.
    pub fn retryable(&self) -> bool {
        match self {
            Error::Store { source, .. } => source.retryable(),
            Error::Io { .. } => true,
            Error::NoStore(_) | Error::Refused(_) | Error::Mismatch { .. } => false,
        }
    }
}

/// A downloaded and verified object; its directory is removed on drop.
#[derive(Debug)]
pub struct Fetched {
    dir: PathBuf,
    /// The file (`<dir>/<name>`).
    pub file: PathBuf,
    /// The store.
    pub store: String,
    /// The object's key (the store's prefix included).
    pub key: String,
    /// Bytes.
    pub size: u64,
    /// The verified sha256 (hex).
    pub sha256: String,
}

impl Drop for Fetched {
    fn drop(&mut self) {
        remove_dir(&self.dir);
    }
}

/// Removes a download directory when dropped, unless disarmed.
struct DirGuard(Option<PathBuf>);

impl Drop for DirGuard {
    fn drop(&mut self) {
        if let Some(d) = self.0.take() {
            remove_dir(&d);
        }
    }
}

fn remove_dir(dir: &Path) {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => tracing::debug!(dir = %dir.display(), "Removed the restore's download"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "Cannot remove the restore's download; remove it by hand");
        }
    }
}

/// What to download and where.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The spec's origin (an object or the newest under a prefix).
    pub origin: RestoreOrigin<'a>,
    /// The engine's file suffix (`.sql.zst`, `.bak`).
    pub suffix: &'static str,
    /// The dump root the download goes under.
    pub root: &'a Path,
    /// The job (names the directory).
    pub job_id: &'a str,
}

/// Download and verify the object `req` names; `progress(bytes)` as it comes.
pub async fn fetch(
    stores: &BTreeMap<String, StoreConfig>,
    req: Request<'_>,
    progress: impl FnMut(u64),
) -> Result<Fetched, Error> {
    let (store_name, wanted) = match req.origin {
        RestoreOrigin::Object { store, key } => (store, Wanted::Key(key)),
        RestoreOrigin::Latest { store, prefix } => (store, Wanted::Newest(prefix)),
        RestoreOrigin::File(_) => {
            return Err(Error::Refused("a file source is not downloaded".into()));
        }
    };
    let store = stores
        .get(store_name)
        .ok_or_else(|| Error::NoStore(store_name.to_owned()))?
        .as_s3();
    let failed = |source| Error::Store {
        store: store_name.to_owned(),
        source,
    };
    let client = Client::new(store).map_err(failed)?;
    let (key, manifest_key, name) = resolve(&client, &store.prefix, wanted, req.suffix)
        .await
        .map_err(|e| e.into_fetch(store_name))?;
    let manifest = read_manifest(&client, &manifest_key)
        .await
        .map_err(|e| e.into_fetch(store_name))?;
    let sha256 = manifest_sha256(&manifest, &manifest_key)?;
    let dir = req.root.join(format!(
        "{DIR_PREFIX}{}-{:08x}",
        req.job_id,
        rand::random::<u32>()
    ));
    create_private_dir(&dir).map_err(|source| Error::Io {
        what: "download directory",
        path: dir.clone(),
        source,
    })?;
    let mut guard = DirGuard(Some(dir.clone()));
    let file = dir.join(&name);
    let size = download(&client, &key, &file, &sha256, progress)
        .await
        .map_err(|e| e.into_fetch(store_name))?;
    let stem = &name[..name.len() - req.suffix.len()];
    let manifest_file = dir.join(format!("{stem}{MANIFEST_SUFFIX}"));
    std::fs::write(&manifest_file, &manifest).map_err(|source| Error::Io {
        what: "manifest",
        path: manifest_file.clone(),
        source,
    })?;
    guard.0 = None;
    tracing::info!(store = %store_name, key = %key, size, "Downloaded and verified the object to restore");
    Ok(Fetched {
        dir,
        file,
        store: store_name.to_owned(),
        key,
        size,
        sha256,
    })
}

/// Which object.
#[derive(Debug, Clone, Copy)]
enum Wanted<'a> {
    Key(&'a str),
    Newest(&'a str),
}

/// An error on the way, before the store's name is attached.
enum Step {
    Store(objstore::Error),
    Other(Error),
}

impl From<objstore::Error> for Step {
    fn from(e: objstore::Error) -> Self {
        Step::Store(e)
    }
}

impl From<Error> for Step {
    fn from(e: Error) -> Self {
        Step::Other(e)
    }
}

impl Step {
    fn into_fetch(self, store: &str) -> Error {
        match self {
            Step::Store(source) => Error::Store {
                store: store.to_owned(),
                source,
            },
            Step::Other(e) => e,
        }
    }
}

/// The object's full key, its manifest's and its file name.
async fn resolve(
    client: &Client,
    store_prefix: &str,
    wanted: Wanted<'_>,
    suffix: &'static str,
) -> Result<(String, String, String), Step> {
    let key = match wanted {
        Wanted::Key(k) => format!("{store_prefix}{k}"),
        Wanted::Newest(p) => {
            let prefix = format!("{store_prefix}{p}");
            let listed = client.list(&prefix).await?;
            newest(&listed, suffix).ok_or_else(|| {
                Error::Refused(format!(
                    "no {suffix} object with its manifest under {prefix:?} in bucket {}",
                    client.bucket()
                ))
            })?
        }
    };
    let (name, manifest_key) = names(&key, suffix).map_err(Error::Refused)?;
    Ok((key, manifest_key, name))
}

/// The newest `<stem><suffix>` object among `listed` whose manifest is
/// listed too.
pub fn newest(listed: &[objstore::Listed], suffix: &str) -> Option<String> {
    let keys: BTreeSet<&str> = listed.iter().map(|l| l.key.as_str()).collect();
    listed
        .iter()
        .filter_map(|l| {
            let name = DumpName::parse_file(l.key.rsplit('/').next()?, suffix)?;
            let (_, manifest) = names(&l.key, suffix).ok()?;
            keys.contains(manifest.as_str()).then_some((name, &l.key))
        })
        .max()
        .map(|(_, key)| key.clone())
}

/// The file name of `key` and its manifest's key; refused unless the name is
/// `<stem><suffix>` with a stem that can be a local file name.
pub fn names(key: &str, suffix: &str) -> Result<(String, String), String> {
    let name = key.rsplit('/').next().unwrap_or(key);
    let stem = name.strip_suffix(suffix).unwrap_or("");
    if stem.is_empty() || !safe_component(name) || stem.contains('.') {
        return Err(format!(
            "object {key:?} is not a {suffix} file an upload job wrote (its name must be \
             `<stem>{suffix}`)"
        ));
    }
    let manifest = format!("{stem}{MANIFEST_SUFFIX}");
    let manifest_key = match key.rsplit_once('/') {
        Some((dir, _)) => format!("{dir}/{manifest}"),
        None => manifest,
    };
    Ok((name.to_owned(), manifest_key))
}

/// The manifest object's bytes (at most [`MAX_MANIFEST_BYTES`]).
async fn read_manifest(client: &Client, key: &str) -> Result<Vec<u8>, Step> {
    let mut body = match client.get(key).await {
        Ok(b) => b,
        Err(objstore::Error::Status { status: 404, .. }) => {
            return Err(Error::Refused(format!(
                "no manifest {key}: an object is restored only with the manifest its upload wrote"
            ))
            .into());
        }
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    while let Some(chunk) = body.chunk().await? {
        out.extend_from_slice(&chunk);
        if out.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(Error::Refused(format!(
                "manifest {key} is larger than {MAX_MANIFEST_BYTES} bytes"
            ))
            .into());
        }
    }
    Ok(out)
}

/// The manifest's `sha256` (64 hex digits, lower case).
pub fn manifest_sha256(manifest: &[u8], key: &str) -> Result<String, Error> {
    let v: serde_json::Value = serde_json::from_slice(manifest)
        .map_err(|e| Error::Refused(format!("manifest {key} is not JSON: {e}")))?;
    match v.get("sha256").and_then(|s| s.as_str()) {
        Some(s) if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(s.to_ascii_lowercase())
        }
        _ => Err(Error::Refused(format!(
            "manifest {key} has no sha256 of 64 hex digits"
        ))),
    }
}

/// Stream the object into `<file>.partial`, hashing; rename once it matches.
async fn download(
    client: &Client,
    key: &str,
    file: &Path,
    sha256: &str,
    mut progress: impl FnMut(u64),
) -> Result<u64, Step> {
    let mismatch = |what, actual: &str| Error::Mismatch {
        key: key.to_owned(),
        what,
        expected: sha256.to_owned(),
        actual: actual.to_owned(),
    };
    let mut body = client.get(key).await?;
    if let Some(meta) = &body.sha256
        && !meta.eq_ignore_ascii_case(sha256)
    {
        return Err(mismatch("its sha256 metadata", meta).into());
    }
    let partial = file.with_extension(format!(
        "{}.partial",
        file.extension().and_then(|e| e.to_str()).unwrap_or("")
    ));
    let io = |what, path: &Path| {
        let path = path.to_owned();
        move |source| Error::Io { what, path, source }
    };
    let mut out = tokio::fs::File::create(&partial)
        .await
        .map_err(io("download", &partial))?;
    let mut hash = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = body.chunk().await? {
        hash.update(&chunk);
        out.write_all(&chunk)
            .await
            .map_err(io("download", &partial))?;
        size += chunk.len() as u64;
        progress(size);
    }
    out.sync_all().await.map_err(io("download", &partial))?;
    drop(out);
    let actual = hex::encode(hash.finalize());
    if actual != sha256 {
        return Err(mismatch("the download's sha256", &actual).into());
    }
    tokio::fs::rename(&partial, file)
        .await
        .map_err(io("download", file))?;
    Ok(size)
}

/// Remove the download directories (`.restore-job*`) a previous run of the
/// agent left under `roots` (it was killed mid-restore; no job runs yet).
pub fn remove_leftovers(roots: &[PathBuf]) {
    for root in roots {
        let Ok(entries) = std::fs::read_dir(root) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if name.to_string_lossy().starts_with(DIR_PREFIX)
                && entry.file_type().is_ok_and(|t| t.is_dir())
            {
                tracing::warn!(dir = %entry.path().display(), "Removing a restore's download left by a previous agent run");
                remove_dir(&entry.path());
            }
        }
    }
}

/// A directory only the agent's user can read (the dump inside is data).
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
}

#[cfg(test)]
mod tests;
