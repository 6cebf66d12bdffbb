//! Retention in the bucket, after a successful upload: under the upload's
//! key prefix, the objects named `<stem>.<suffix>` (a dump or backup name,
//! `<YYYYMMDDTHHMMSSZ>-job<id>`) **with** their `<stem>.manifest.json` next
//! to them are the candidates; those beyond `keep_last` (newest first, by
//! the time in the name) or older than `max_age` are deleted, the object
//! first, then its manifest. The object just written is never deleted, nor
//! an object whose manifest is missing (an upload in progress, or not ours),
//! nor any other key.

use std::collections::{BTreeMap, BTreeSet};

use baton_proto::upload::UploadRetention;

use crate::db::common::paths::{DumpName, MANIFEST_SUFFIX};
use crate::db::common::retention::select;
use crate::objstore::{Client, Listed};

use super::Error;

/// One candidate: the object's key and its manifest's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The object.
    pub key: String,
    /// Its manifest.
    pub manifest: String,
}

/// The dump name of a key's last segment (`<stem>.<suffix>`, not a manifest).
fn name_of(key: &str) -> Option<DumpName> {
    let file = key.rsplit('/').next()?;
    if file.ends_with(MANIFEST_SUFFIX) {
        return None;
    }
    let (stem, rest) = file.split_once('.')?;
    (!rest.is_empty()).then_some(())?;
    DumpName::parse_stem(stem)
}

/// The manifest key next to `key`.
fn manifest_of(key: &str, name: &DumpName) -> String {
    let m = format!("{}{MANIFEST_SUFFIX}", name.stem());
    match key.rsplit_once('/') {
        Some((dir, _)) => format!("{dir}/{m}"),
        None => m,
    }
}

/// The candidates among `listed` (objects with their manifest).
pub fn candidates(listed: &[Listed]) -> BTreeMap<DumpName, Candidate> {
    let keys: BTreeSet<&str> = listed.iter().map(|l| l.key.as_str()).collect();
    listed
        .iter()
        .filter_map(|l| {
            let name = name_of(&l.key)?;
            let manifest = manifest_of(&l.key, &name);
            keys.contains(manifest.as_str()).then(|| {
                (
                    name,
                    Candidate {
                        key: l.key.clone(),
                        manifest,
                    },
                )
            })
        })
        .collect()
}

/// What to delete under `r`, `written` protected.
pub fn plan(
    listed: &[Listed],
    r: &UploadRetention,
    written: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<Candidate>, Error> {
    let max_age = r
        .max_age
        .as_deref()
        .map(humantime::parse_duration)
        .transpose()
        .map_err(|e| Error::Refused(format!("spec.retention.max_age: {e}")))?;
    let found = candidates(listed);
    let protect = name_of(written);
    let names: Vec<DumpName> = found.keys().cloned().collect();
    Ok(select(&names, r.keep_last, max_age, now, protect.as_ref())
        .into_iter()
        .filter_map(|n| found.get(&n).cloned())
        .filter(|c| c.key != written)
        .collect())
}

/// List `prefix`, delete what [`plan`] picks; the deleted object keys.
pub async fn apply(
    client: &Client,
    prefix: &str,
    r: &UploadRetention,
    written: &str,
) -> Result<Vec<String>, Error> {
    let listed = client.list(prefix).await?;
    let doomed = plan(&listed, r, written, chrono::Utc::now())?;
    let mut deleted = Vec::new();
    for c in doomed {
        client.delete(&c.key).await?;
        client.delete(&c.manifest).await?;
        tracing::info!(key = %c.key, "Retention deleted an uploaded object");
        deleted.push(c.key);
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests;
