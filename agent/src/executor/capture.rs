//! Bounded output capture: the first bytes of a stream, and a rolling tail.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

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

    /// The tail as lossy UTF-8, starting at a character boundary.
    pub fn to_string_lossy(&self) -> String {
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
mod tests {
    use super::*;

    #[test]
    fn bounded_keeps_the_first_bytes() {
        let mut b = Bounded::new(5);
        b.push(b"abc");
        assert!(!b.truncated());
        b.push(b"defg");
        b.push(b"h");
        assert!(b.truncated());
        assert_eq!(b.to_string_lossy(), "abcde");
        let mut exact = Bounded::new(3);
        exact.push(b"abc");
        assert!(!exact.truncated());
    }

    #[test]
    fn tail_keeps_the_last_bytes() {
        let mut t = LogTail::new(4);
        t.push(b"ab");
        assert_eq!(t.to_string_lossy(), "ab");
        t.push(b"cdef");
        assert_eq!(t.to_string_lossy(), "cdef");
        t.push(b"0123456789");
        assert_eq!(t.to_string_lossy(), "6789");
        t.push(b"x");
        assert_eq!(t.to_string_lossy(), "789x");
        let mut none = LogTail::new(0);
        none.push(b"abc");
        assert_eq!(none.to_string_lossy(), "");
    }

    #[test]
    fn tail_starts_on_a_char_boundary() {
        let mut t = LogTail::new(4);
        t.push("aé€".as_bytes()); // 1 + 2 + 3 bytes: the tail cuts into 'é'
        assert_eq!(t.to_string_lossy(), "€");
    }

    #[tokio::test]
    async fn drain_reads_past_the_limit() {
        let data = vec![b'x'; 100_000];
        let progress = ProgressHandle::new(10);
        let sink = SharedBounded::new(10);
        drain(&data[..], sink.clone(), progress.clone()).await;
        let out = sink.get();
        assert!(out.truncated());
        assert_eq!(out.to_string_lossy(), "x".repeat(10));
        assert_eq!(progress.snapshot().1, "x".repeat(10));
    }
}
