//! Bounded output capture: the first bytes of a stream, and a rolling tail.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine as _;
use baton_proto::OutputEncoding;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::ProgressHandle;

/// Keeps the first `limit` bytes written to it and notes whether more came.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bounded {
    data: Vec<u8>,
    limit: usize,
    truncated: bool,
}

impl Bounded {
    /// An empty buffer keeping at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Bounded {
            data: Vec::new(),
            limit,
            truncated: false,
        }
    }

    /// Append; bytes past the limit are dropped and noted.
    pub fn push(&mut self, bytes: &[u8]) {
        let room = self.limit.saturating_sub(self.data.len());
        if bytes.len() > room {
            self.truncated = true;
        }
        self.data.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    /// Whether bytes were dropped.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// The kept bytes as lossy UTF-8.
    pub fn to_string_lossy(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }

    /// The kept bytes as sent in a result: see [`encode`].
    pub fn encode(&self) -> Encoded {
        let mut e = encode(&self.data, self.limit);
        e.cut |= self.truncated;
        e
    }
}

/// A captured stream as a result carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// The text (UTF-8 output, or base64 of the raw bytes).
    pub text: String,
    /// `None` for UTF-8 text, else how `text` is encoded.
    pub encoding: Option<OutputEncoding>,
    /// Whether bytes were left out (capture limit or encoding).
    pub cut: bool,
}

/// `bytes` as a result carries them, never more than `limit` bytes of text:
/// UTF-8 output as itself (a character split by the capture limit is left
/// out), unless JSON escaping would make it over a third larger (control
/// characters); anything else as base64 of as many whole 3-byte groups as fit
/// (3/4 of the limit). The controller checks the same bound on the text.
pub fn encode(bytes: &[u8], limit: usize) -> Encoded {
    let kept = &bytes[..bytes.len().min(limit)];
    let mut cut = kept.len() < bytes.len();
    let text = match std::str::from_utf8(kept) {
        Ok(t) => Some(t),
        // Only a character cut in two at the end: drop its first bytes.
        Err(e) if e.error_len().is_none() && (cut || bytes.len() >= limit) => {
            cut = true;
            std::str::from_utf8(&kept[..e.valid_up_to()]).ok()
        }
        Err(_) => None,
    };
    if let Some(t) = text
        && json_len(t) <= limit.saturating_add(limit / 3)
    {
        return Encoded {
            text: t.to_owned(),
            encoding: None,
            cut,
        };
    }
    let raw = &bytes[..bytes.len().min(limit / 4 * 3)];
    Encoded {
        text: base64::engine::general_purpose::STANDARD.encode(raw),
        encoding: Some(OutputEncoding::Base64),
        cut: raw.len() < bytes.len(),
    }
}

/// Length of `text` as a JSON string body (serde_json's escapes).
fn json_len(text: &str) -> usize {
    text.bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..0x20 => 6,
            _ => 1,
        })
        .sum()
}

/// Keeps the last `limit` bytes written to it.
#[derive(Debug, Clone, Default)]
pub struct LogTail {
    data: VecDeque<u8>,
    limit: usize,
}

impl LogTail {
    /// An empty tail of at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        LogTail {
            data: VecDeque::with_capacity(limit.min(64 * 1024)),
            limit,
        }
    }

    /// Append, dropping the oldest bytes beyond the limit.
    pub fn push(&mut self, bytes: &[u8]) {
        let bytes = &bytes[bytes.len().saturating_sub(self.limit)..];
        let overflow = (self.data.len() + bytes.len()).saturating_sub(self.limit);
        self.data.drain(..overflow.min(self.data.len()));
        self.data.extend(bytes);
    }

    /// The tail as lossy UTF-8, starting at a character boundary, at most
    /// `limit` bytes (each invalid byte becomes a 3-byte U+FFFD: the text is
    /// cut again from the front so the heartbeat stays within the bound).
    pub fn to_string_lossy(&self) -> String {
        let text = self.lossy();
        let mut start = text.len().saturating_sub(self.limit);
        while !text.is_char_boundary(start) {
            start += 1;
        }
        text[start..].to_owned()
    }

    fn lossy(&self) -> String {
        let (a, b) = self.data.as_slices();
        let mut bytes = Vec::with_capacity(a.len() + b.len());
        bytes.extend_from_slice(a);
        bytes.extend_from_slice(b);
        // Skip UTF-8 continuation bytes cut off from their first byte.
        let start = bytes
            .iter()
            .take(3)
            .take_while(|b| (**b & 0b1100_0000) == 0b1000_0000)
            .count();
        String::from_utf8_lossy(&bytes[start..]).into_owned()
    }
}

/// A [`Bounded`] shared between a reader task and the executor, so what was
/// read stays available even when the reader has to be abandoned.
#[derive(Debug, Clone, Default)]
pub struct SharedBounded(Arc<Mutex<Bounded>>);

impl SharedBounded {
    /// An empty shared buffer of at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        SharedBounded(Arc::new(Mutex::new(Bounded::new(limit))))
    }

    /// Append.
    pub fn push(&self, bytes: &[u8]) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(bytes);
    }

    /// A copy of what is kept now.
    pub fn get(&self) -> Bounded {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Read `stream` to its end into `sink`, copying everything into the shared
/// log tail. Reading goes on past the sink's limit so the writer never blocks
/// on a full pipe.
pub async fn drain<R: AsyncRead + Unpin>(
    mut stream: R,
    sink: SharedBounded,
    progress: ProgressHandle,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                sink.push(&buf[..n]);
                progress.append_output(&buf[..n]);
            }
        }
    }
}

#[cfg(test)]
mod tests;
