//! The source of a `restore` job on either engine: a dump (`.sql.zst`) or
//! native backup (`.bak`) that a `dump` job wrote on this agent, with the
//! manifest beside it; found, checked and hashed before anything touches a
//! database.
//!
//! - **Where**: `source.file` must be absolute and, once symlinks are
//!   resolved, lie under one of the agent's dump directories (the roots the
//!   engine's executor passes: every MySQL connection's `dump_dir`, or every
//!   SQL Server connection's `backup_dir`), and end with the engine's suffix.
//!   A job can therefore never make the agent read (or SQL Server restore)
//!   a file elsewhere on the host.
//! - **Manifest**: `<stem>.manifest.json` in the same directory, a JSON
//!   object of at most 1 MiB with the file's `sha256` (64 hex digits). Without
//!   it the job fails for good: a file whose integrity cannot be shown is
//!   never restored.
//! - **Integrity**: [`sha256_file`] reads the whole file (cancellable between
//!   chunks) and the job compares it with the manifest's.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::paths::MANIFEST_SUFFIX;

/// Largest manifest read.
pub const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;
/// Bytes read at a time when hashing.
const CHUNK: usize = 256 * 1024;

/// Why a source cannot be restored. None of these is retried.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The path is relative.
    #[error("source.file {0:?} is not an absolute path")]
    NotAbsolute(String),
    /// The file cannot be found or read.
    #[error("source.file {path:?} cannot be read: {source}")]
    Unreadable {
        /// The path as given.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not of the engine's kind.
    #[error("source.file {path:?} is not a {suffix} file written by a dump job")]
    WrongKind {
        /// The path.
        path: String,
        /// The suffix expected.
        suffix: &'static str,
    },
    /// The file lies outside the dump directories.
    #[error(
        "source.file {path:?} is not under a dump directory of this agent ({roots}); only \
         files written by dump jobs are restored"
    )]
    Outside {
        /// The path (resolved).
        path: String,
        /// The dump directories.
        roots: String,
    },
    /// No manifest, or an unreadable one.
    #[error(
        "no readable manifest beside {file}: {manifest}: {why}; a file is restored only with \
         the manifest its dump job wrote (nothing was done)"
    )]
    NoManifest {
        /// The dump file.
        file: String,
        /// The manifest's path.
        manifest: String,
        /// Why.
        why: String,
    },
    /// The manifest is not what a dump job writes.
    #[error("manifest {path} cannot be used: {why} (nothing was done)")]
    BadManifest {
        /// The manifest's path.
        path: String,
        /// Why.
        why: String,
    },
    /// The file's bytes are not those the manifest describes.
    #[error(
        "{file} does not match its manifest: its sha256 is {actual}, the manifest says \
         {expected}; the file is damaged or was replaced (nothing was done)"
    )]
    Mismatch {
        /// The file.
        file: String,
        /// The manifest's sha256.
        expected: String,
        /// The file's.
        actual: String,
    },
}

/// A located source: the file and its manifest, both resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// The file (symlinks resolved).
    pub file: PathBuf,
    /// `<stem>.manifest.json` beside it.
    pub manifest: PathBuf,
}

/// Find `path` under one of `roots`, with the suffix `suffix` (`.sql.zst`,
/// `.bak`), and its manifest's path. Roots that do not exist are skipped.
pub fn locate(path: &str, roots: &[PathBuf], suffix: &'static str) -> Result<Located, Error> {
    let given = Path::new(path);
    if !given.is_absolute() {
        return Err(Error::NotAbsolute(path.to_owned()));
    }
    let unreadable = |source| Error::Unreadable {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::canonicalize(given).map_err(unreadable)?;
    let meta = std::fs::metadata(&file).map_err(unreadable)?;
    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if !meta.is_file() || !name.ends_with(suffix) || name.len() == suffix.len() {
        return Err(Error::WrongKind {
            path: path.to_owned(),
            suffix,
        });
    }
    let inside = roots
        .iter()
        .filter_map(|r| std::fs::canonicalize(r).ok())
        .any(|root| file.starts_with(&root) && file != root);
    if !inside {
        return Err(Error::Outside {
            path: file.display().to_string(),
            roots: roots
                .iter()
                .map(|r| r.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let stem = &name[..name.len() - suffix.len()];
    let manifest = file.with_file_name(format!("{stem}{MANIFEST_SUFFIX}"));
    Ok(Located { file, manifest })
}

/// Read the manifest beside a located file: a JSON object with a `sha256`
/// of 64 hex digits; returns it as `T` and the sha256.
pub async fn read_manifest<T: serde::de::DeserializeOwned>(
    located: &Located,
) -> Result<(T, String), Error> {
    let no_manifest = |why: String| Error::NoManifest {
        file: located.file.display().to_string(),
        manifest: located.manifest.display().to_string(),
        why,
    };
    let bad = |why: String| Error::BadManifest {
        path: located.manifest.display().to_string(),
        why,
    };
    let meta = tokio::fs::symlink_metadata(&located.manifest)
        .await
        .map_err(|e| no_manifest(e.to_string()))?;
    if !meta.is_file() {
        return Err(no_manifest("not a regular file".into()));
    }
    if meta.len() > MAX_MANIFEST_BYTES {
        return Err(bad(format!("larger than {MAX_MANIFEST_BYTES} bytes")));
    }
    let bytes = tokio::fs::read(&located.manifest)
        .await
        .map_err(|e| no_manifest(e.to_string()))?;
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
    let sha256 = match value.get("sha256") {
        Some(serde_json::Value::String(s))
            if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            s.to_ascii_lowercase()
        }
        Some(serde_json::Value::Null) => {
            return Err(bad(
                "it has no sha256 (the agent could not read the file when it was written), so \
                 the file cannot be verified"
                    .into(),
            ));
        }
        _ => return Err(bad("no sha256 of 64 hex digits".into())),
    };
    let typed = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
    Ok((typed, sha256))
}

/// The sha256 (hex) of `file`, read in chunks; `progress(bytes_read)` after
/// each. Dropping the future stops it between chunks.
pub async fn sha256_file(file: &Path, mut progress: impl FnMut(u64)) -> std::io::Result<String> {
    let mut f = tokio::fs::File::open(file).await?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        total += n as u64;
        progress(total);
    }
    Ok(hex::encode(hash.finalize()))
}

/// `Ok` when `actual` is `expected`, else [`Error::Mismatch`].
pub fn matches(file: &Path, expected: &str, actual: &str) -> Result<(), Error> {
    if expected.eq_ignore_ascii_case(actual) {
        return Ok(());
    }
    Err(Error::Mismatch {
        file: file.display().to_string(),
        expected: expected.to_owned(),
        actual: actual.to_owned(),
    })
}

#[cfg(all(test, unix))]
mod tests;
