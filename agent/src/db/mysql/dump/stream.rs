//! The dump stream: the tool's stdout read in 64 KiB chunks, hashed (sha256
//! of the SQL), compressed with zstd, hashed again (sha256 of the bytes that
//! reach the file) and written; plus what the end of the SQL proves.

use std::time::Duration;

use async_compression::Level;
use async_compression::tokio::write::ZstdEncoder;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

/// Bytes read from the tool at a time.
pub const CHUNK: usize = 64 * 1024;
/// The last line of a complete dump (followed by ` on <date>` unless `--skip-dump-date`).
pub const TRAILER: &[u8] = b"-- Dump completed";
/// Bytes kept of the start and of the end of the SQL.
pub const EDGE: usize = 64 * 1024;

/// The first and the last [`EDGE`] bytes of a stream.
#[derive(Debug, Clone, Default)]
pub struct Edges {
    head: Vec<u8>,
    tail: Vec<u8>,
}

impl Edges {
    /// Take in the next bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        let room = EDGE.saturating_sub(self.head.len());
        self.head.extend_from_slice(&bytes[..bytes.len().min(room)]);
        let bytes = &bytes[bytes.len().saturating_sub(EDGE)..];
        self.tail.extend_from_slice(bytes);
        if self.tail.len() > 2 * EDGE {
            let cut = self.tail.len() - EDGE;
            self.tail.drain(..cut);
        }
    }

    /// The first bytes.
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    /// The last bytes (at most [`EDGE`]).
    pub fn tail(&self) -> &[u8] {
        &self.tail[self.tail.len().saturating_sub(EDGE)..]
    }

    /// Whether the last non-blank line is the `-- Dump completed` trailer.
    pub fn ends_with_trailer(&self) -> bool {
        ends_with_trailer(self.tail())
    }
}

/// Whether the last non-blank line of `tail` starts with [`TRAILER`].
pub fn ends_with_trailer(tail: &[u8]) -> bool {
    let end = tail
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    let text = &tail[..end];
    let start = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    text[start..].starts_with(TRAILER)
}

/// A binlog position written into the dump by `--master-data=2` / `--gtid`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DumpPosition {
    /// Binlog file and offset.
    pub file: Option<(String, u64)>,
    /// GTID position (MariaDB `gtid_slave_pos`).
    pub gtid: Option<String>,
}

/// The replication position the tool wrote as comments, if any (looked for
/// in the first and last 64 KiB, where the tool puts it).
pub fn dump_position(edges: &Edges) -> Option<DumpPosition> {
    let mut pos = DumpPosition::default();
    for text in [edges.head(), edges.tail()] {
        for line in text.split(|b| *b == b'\n') {
            let line = String::from_utf8_lossy(line);
            let line = line.trim_start_matches("-- ").trim();
            if line.starts_with("CHANGE MASTER TO MASTER_LOG_FILE=")
                || line.starts_with("CHANGE REPLICATION SOURCE TO SOURCE_LOG_FILE=")
            {
                if let (Some(file), Some(offset)) = (
                    quoted_after(line, "LOG_FILE="),
                    number_after(line, "LOG_POS="),
                ) {
                    pos.file = Some((file, offset));
                }
            } else if line.starts_with("SET GLOBAL gtid_slave_pos=") {
                pos.gtid = quoted_after(line, "gtid_slave_pos=");
            }
        }
    }
    (pos != DumpPosition::default()).then_some(pos)
}

fn quoted_after(line: &str, key: &str) -> Option<String> {
    let rest = &line[line.find(key)? + key.len()..];
    let rest = rest.strip_prefix('\'')?;
    Some(rest[..rest.find('\'')?].to_owned())
}

fn number_after(line: &str, key: &str) -> Option<u64> {
    let rest = &line[line.find(key)? + key.len()..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// What went through the pump.
#[derive(Debug, Clone)]
pub struct Tally {
    /// Bytes of SQL read from the tool.
    pub read: u64,
    /// Bytes written to the file.
    pub written: u64,
    /// sha256 of the file (hex).
    pub sha256: String,
    /// sha256 of the SQL (hex).
    pub sha256_sql: String,
    /// Start and end of the SQL.
    pub edges: Edges,
}

/// Read `src` to its end, compress it with zstd at `level` into `dst` and
/// flush `dst`. `progress(read, written)` is called at most every `every`.
pub async fn pump<R, W>(
    mut src: R,
    dst: &mut W,
    level: i32,
    every: Duration,
    mut progress: impl FnMut(u64, u64),
) -> std::io::Result<Tally>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut encoder = ZstdEncoder::with_quality(Vec::with_capacity(CHUNK), Level::Precise(level));
    let mut sql_hash = Sha256::new();
    let mut file_hash = Sha256::new();
    let mut edges = Edges::default();
    let (mut read, mut written) = (0u64, 0u64);
    let mut buf = vec![0u8; CHUNK];
    let mut next_report = Instant::now() + every;
    loop {
        let n = src.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        read += n as u64;
        sql_hash.update(chunk);
        edges.push(chunk);
        encoder.write_all(chunk).await?;
        let out = std::mem::take(encoder.get_mut());
        if !out.is_empty() {
            file_hash.update(&out);
            dst.write_all(&out).await?;
            written += out.len() as u64;
            // Give the buffer back to the encoder to avoid reallocating.
            *encoder.get_mut() = recycle(out);
        }
        if Instant::now() >= next_report {
            progress(read, written);
            next_report = Instant::now() + every;
        }
    }
    encoder.shutdown().await?;
    let out = encoder.into_inner();
    file_hash.update(&out);
    dst.write_all(&out).await?;
    written += out.len() as u64;
    dst.flush().await?;
    progress(read, written);
    Ok(Tally {
        read,
        written,
        sha256: hex::encode(file_hash.finalize()),
        sha256_sql: hex::encode(sql_hash.finalize()),
        edges,
    })
}

fn recycle(mut v: Vec<u8>) -> Vec<u8> {
    v.clear();
    v
}

/// `1.5 MiB`-style sizes for messages.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests;
