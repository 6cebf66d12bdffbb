//! TDS packet framing (MS-TDS 2.2.3): an 8-byte header (type, status, big-endian
//! length including the header, SPID, packet id, window), messages reassembled
//! up to the end-of-message status bit, replies split at the negotiated packet
//! size.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Result, bail, ensure};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub(crate) const HEADER_LEN: usize = 8;
/// Packet size before LOGIN7 negotiates one (SQL Server's default).
pub(crate) const DEFAULT_PACKET_SIZE: u32 = 4096;
/// Largest request this test server reassembles.
const MAX_MESSAGE: usize = 16 << 20;

pub(crate) const SQL_BATCH: u8 = 0x01;
pub(crate) const RPC: u8 = 0x03;
pub(crate) const TABULAR_RESULT: u8 = 0x04;
pub(crate) const ATTENTION: u8 = 0x06;
pub(crate) const BULK_LOAD: u8 = 0x07;
pub(crate) const FED_AUTH_TOKEN: u8 = 0x08;
pub(crate) const TRANSACTION_MANAGER: u8 = 0x0E;
pub(crate) const LOGIN7: u8 = 0x10;
pub(crate) const SSPI: u8 = 0x11;
pub(crate) const PRELOGIN: u8 = 0x12;

const STATUS_EOM: u8 = 0x01;
const STATUS_IGNORE: u8 = 0x02;
const STATUS_RESET: u8 = 0x08;
const STATUS_RESET_SKIP_TRAN: u8 = 0x10;

/// One reassembled client message.
#[derive(Debug, Clone)]
pub(crate) struct Message {
    pub(crate) ty: u8,
    pub(crate) payload: Vec<u8>,
}

/// Reads client packets and reassembles messages, rejecting what SQL Server
/// rejects: unknown packet types or status bits, lengths outside the packet
/// size, a type change inside a message, a non-final packet that is not
/// exactly the negotiated size, an attention with a payload.
pub(crate) struct MessageReader<R> {
    inner: R,
    packet_size: Arc<AtomicU32>,
}

impl<R: AsyncRead + Unpin> MessageReader<R> {
    pub(crate) fn new(inner: R, packet_size: Arc<AtomicU32>) -> Self {
        MessageReader { inner, packet_size }
    }

    /// The next message; `None` on a clean end of stream between messages.
    pub(crate) async fn next(&mut self) -> Result<Option<Message>> {
        let mut ty: Option<u8> = None;
        let mut payload = Vec::new();
        loop {
            let mut header = [0u8; HEADER_LEN];
            let first = self.inner.read(&mut header[..1]).await?;
            if first == 0 {
                if ty.is_none() {
                    return Ok(None);
                }
                bail!("connection closed in the middle of a message");
            }
            self.inner.read_exact(&mut header[1..]).await?;
            let pty = header[0];
            let status = header[1];
            let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
            let size = self.packet_size.load(Ordering::Acquire) as usize;
            match pty {
                SQL_BATCH | RPC | ATTENTION | BULK_LOAD | FED_AUTH_TOKEN | TRANSACTION_MANAGER
                | LOGIN7 | SSPI | PRELOGIN => {}
                other => bail!("invalid packet type 0x{other:02X}"),
            }
            let known = STATUS_EOM | STATUS_IGNORE | STATUS_RESET | STATUS_RESET_SKIP_TRAN;
            ensure!(status & !known == 0, "invalid packet status 0x{status:02X}");
            ensure!(
                status & STATUS_IGNORE == 0 || status & STATUS_EOM != 0,
                "IGNORE status without END OF MESSAGE"
            );
            ensure!(
                len >= HEADER_LEN,
                "packet length {len} shorter than its header"
            );
            ensure!(
                len <= size,
                "packet length {len} above the packet size {size}"
            );
            if let Some(t) = ty {
                ensure!(
                    t == pty,
                    "packet type changed from 0x{t:02X} to 0x{pty:02X} in a message"
                );
            }
            ty = Some(pty);
            let eom = status & STATUS_EOM != 0;
            ensure!(
                eom || len == size,
                "non-final packet of {len} bytes (the negotiated packet size is {size})"
            );
            let start = payload.len();
            ensure!(
                start + len - HEADER_LEN <= MAX_MESSAGE,
                "message above {MAX_MESSAGE} bytes"
            );
            payload.resize(start + len - HEADER_LEN, 0);
            self.inner.read_exact(&mut payload[start..]).await?;
            if pty == ATTENTION {
                ensure!(
                    eom && payload.is_empty(),
                    "ATTENTION must be one empty final packet"
                );
            }
            if eom {
                if status & STATUS_IGNORE != 0 {
                    // The client asked the server to ignore this message.
                    ty = None;
                    payload.clear();
                    continue;
                }
                return Ok(Some(Message { ty: pty, payload }));
            }
        }
    }
}

/// Writes server messages (type 0x04), split at the negotiated packet size.
pub(crate) struct MessageWriter<W> {
    inner: W,
    packet_size: Arc<AtomicU32>,
    packet_id: u8,
    spid: u16,
}

impl<W: AsyncWrite + Unpin> MessageWriter<W> {
    pub(crate) fn new(inner: W, packet_size: Arc<AtomicU32>, spid: u16) -> Self {
        MessageWriter {
            inner,
            packet_size,
            packet_id: 1,
            spid,
        }
    }

    /// Send `payload` as packets; the last one carries END OF MESSAGE when
    /// `eom`, otherwise the message goes on in a later call.
    pub(crate) async fn send(&mut self, payload: &[u8], eom: bool) -> Result<()> {
        let chunk = self.packet_size.load(Ordering::Acquire) as usize - HEADER_LEN;
        let mut frames = Vec::with_capacity(payload.len() + HEADER_LEN * 2);
        let mut parts: Vec<&[u8]> = payload.chunks(chunk).collect();
        if parts.is_empty() {
            if !eom {
                return Ok(());
            }
            parts.push(&[]);
        }
        let count = parts.len();
        for (i, part) in parts.into_iter().enumerate() {
            let last = i + 1 == count;
            let status = if last && eom { STATUS_EOM } else { 0 };
            let len = (part.len() + HEADER_LEN) as u16;
            frames.push(TABULAR_RESULT);
            frames.push(status);
            frames.extend_from_slice(&len.to_be_bytes());
            frames.extend_from_slice(&self.spid.to_be_bytes());
            frames.push(self.packet_id);
            frames.push(0);
            frames.extend_from_slice(part);
            self.packet_id = self.packet_id.wrapping_add(1);
        }
        self.inner.write_all(&frames).await?;
        self.inner.flush().await?;
        Ok(())
    }

    pub(crate) async fn shutdown(&mut self) {
        let _ = self.inner.shutdown().await;
    }
}
