//! The backup files the model writes: self-describing and checksummed, so
//! `RESTORE VERIFYONLY` can tell a valid backup set from a damaged one (or
//! from a file that is no backup at all) wherever the file was moved.
//!
//! Layout: a text header (`BATON-TDS-BACKUP 1`, database, set number, size),
//! deterministic filler, and the SHA-256 of everything before it as the last
//! 32 bytes.

use std::io;
use std::path::Path;

use sha2::{Digest, Sha256};

const MAGIC: &[u8] = b"BATON-TDS-BACKUP 1\n";
const DIGEST_LEN: usize = 32;

/// The content of backup set `set` of `database`, `size` bytes (at least
/// the header and checksum).
pub(crate) fn content(database: &str, set: u64, size: u64) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(format!("database={database}\nset={set}\nsize={size}\n").as_bytes());
    let min = out.len() + DIGEST_LEN;
    let size = usize::try_from(size).unwrap_or(usize::MAX).max(min);
    // xorshift64 seeded from the header: deterministic filler.
    let mut x = out
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        })
        .max(1);
    while out.len() < size - DIGEST_LEN {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let take = (size - DIGEST_LEN - out.len()).min(8);
        out.extend_from_slice(&x.to_le_bytes()[..take]);
    }
    let digest = Sha256::digest(&out);
    out.extend_from_slice(&digest);
    out
}

/// Hex SHA-256 of `bytes` (what an agent's manifest records).
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// What `RESTORE VERIFYONLY` finds in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// A complete backup set of this database.
    Valid { database: String },
    /// A backup set whose checksum does not match (error 3189).
    Damaged,
    /// Not a backup at all (error 3241).
    NotABackup,
}

pub(crate) fn inspect(bytes: &[u8]) -> Verdict {
    if !bytes.starts_with(MAGIC) {
        return Verdict::NotABackup;
    }
    if bytes.len() < MAGIC.len() + DIGEST_LEN {
        return Verdict::Damaged;
    }
    let (body, digest) = bytes.split_at(bytes.len() - DIGEST_LEN);
    if Sha256::digest(body).as_slice() != digest {
        return Verdict::Damaged;
    }
    let header = String::from_utf8_lossy(&body[MAGIC.len()..body.len().min(MAGIC.len() + 512)]);
    let database = header
        .lines()
        .find_map(|l| l.strip_prefix("database="))
        .unwrap_or_default()
        .to_string();
    Verdict::Valid { database }
}

/// SQL Server's text for an operating system error opening a backup device.
pub(crate) fn os_error(e: &io::Error, reading: bool) -> (i32, &'static str) {
    match e.kind() {
        io::ErrorKind::NotFound if reading => (2, "The system cannot find the file specified."),
        io::ErrorKind::NotFound => (3, "The system cannot find the path specified."),
        _ => (5, "Access is denied."),
    }
}

/// Check that SQL Server could create the backup file at `path` (its
/// directory exists and is writable), leaving nothing behind that was not
/// there before.
pub(crate) fn probe_writable(path: &Path) -> io::Result<()> {
    if path.is_dir() {
        return Err(io::ErrorKind::PermissionDenied.into());
    }
    let existed = path.exists();
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    if !existed {
        std::fs::remove_file(path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
