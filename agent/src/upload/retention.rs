//! Retention in the bucket, after a successful upload: under the upload's
//! key prefix, the objects named `<stem>.<suffix>` (a dump or backup name,
//! `<YYYYMMDDTHHMMSSZ>-job<id>`) **with** their `<stem>.manifest.json` next
//! to them are the candidates; those beyond `keep_last` (newest first, by
//! the time in the name) or older than `max_age` are deleted, the object
//! first, then its manifest. The age is the store's time now less the
//! object's `LastModified` (both the store's clock: a step of the agent's
//! clock neither ages objects nor makes them young; the name's time, the
//! agent's clock, only when the listing has no `LastModified`). The object
//! just written is never deleted, nor an object whose manifest is missing
//! (an upload in progress, or not ours), nor any other key.

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
    /// The object's `LastModified` (the store's clock).
    pub modified: Option<chrono::DateTime<chrono::Utc>>,
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
                        modified: l.modified,
                    },
                )
            })
        })
        .collect()
}

/// What to delete under `r`, `written` protected, newest first; `now` is
/// the store's time (ages are counted from `LastModified`).
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
    let mut doomed: BTreeSet<DumpName> = select(&names, r.keep_last, None, now, protect.as_ref())
        .into_iter()
        .collect();
    let oldest_kept = max_age
        .and_then(|age| chrono::TimeDelta::from_std(age).ok())
        .and_then(|age| now.checked_sub_signed(age));
    if let Some(limit) = oldest_kept {
        doomed.extend(
            found
                .iter()
                .filter(|(n, c)| c.modified.unwrap_or(n.started) < limit)
                .filter(|(n, _)| Some(*n) != protect.as_ref())
                .map(|(n, _)| n.clone()),
        );
    }
    Ok(doomed
        .into_iter()
        .rev()
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
    // The store's time, not the agent's: `LastModified` is the store's
    // clock, and the listing's answer (its `Date` header) has just told the
    // client how far the agent's clock is from it. The just-written object's
    // `LastModified` would do too, but only when the listing has it.
    let doomed = plan(&listed, r, written, client.store_now())?;
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
