//! The free-space rule, checked before a dump's tool starts (and before an
//! export writes: there the estimate is 0, only the reserve must be free).
//!
//! The estimate is `SUM(data_length + index_length)` of the database's tables
//! in `information_schema.TABLES`. Compression is not counted on (a dump of
//! random or already compressed data does not shrink) and index pages are
//! not in the dump, so the estimate is usually far above what the file needs:
//! the rule refuses only dumps that might not fit even uncompressed.
//!
//! **Rule**: free space of the dump directory's filesystem ≥ estimate × 1.0 +
//! the connection's `dump_reserve_mb` (default 64 MiB) — the headroom a DBA
//! wants left on the disk after the dump.
//!
//! The filesystem is the mount point (from sysinfo) that is the longest prefix
//! of the dump directory (or of its nearest existing ancestor, as the
//! directory may not exist yet). When no mount point matches (sysinfo skips
//! tmpfs, say), the check cannot be made: the dump goes on and the manifest
//! says so.

use std::path::{Path, PathBuf};

/// Default headroom on top of the estimate.
pub const MARGIN: u64 = 64 * 1024 * 1024;

/// Bytes that must be free for a database of `estimate` bytes, keeping `reserve` free.
pub fn required(estimate: u64, reserve: u64) -> u64 {
    estimate.saturating_add(reserve)
}

/// Whether a database of `estimate` bytes may be dumped with `free` bytes free.
pub fn fits(estimate: u64, free: u64, reserve: u64) -> bool {
    free >= required(estimate, reserve)
}

/// The filesystem holding `path`: its mount point and free bytes.
pub fn free_space(path: &Path) -> Option<(PathBuf, u64)> {
    let path = existing_ancestor(path)?;
    let disks = sysinfo::Disks::new_with_refreshed_list().ok()?;
    best_mount(
        &path,
        disks
            .iter()
            .map(|d| (d.mount_point().to_path_buf(), d.available_space())),
    )
}

/// The nearest existing ancestor of `path` (itself included), canonicalised.
fn existing_ancestor(path: &Path) -> Option<PathBuf> {
    path.ancestors().find_map(|p| p.canonicalize().ok())
}

/// The mount whose point is the longest prefix of `path` (whole components).
pub fn best_mount(
    path: &Path,
    mounts: impl IntoIterator<Item = (PathBuf, u64)>,
) -> Option<(PathBuf, u64)> {
    mounts
        .into_iter()
        .filter(|(mount, _)| path.starts_with(mount))
        .max_by_key(|(mount, _)| mount.components().count())
}

#[cfg(test)]
mod tests;
