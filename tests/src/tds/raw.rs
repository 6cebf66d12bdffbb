//! A raw TDS client for negative tests: hand-built packets and messages the
//! real client would never send, and a view of the server's packet framing.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::wire::put_utf16;

/// One server message as framed: `(status, length)` of each packet, and the
/// reassembled payload.
#[derive(Debug, Clone)]
pub struct RawMessage {
    pub packets: Vec<(u8, usize)>,
    pub payload: Vec<u8>,
}

/// A client speaking raw bytes to a [`super::TdsServer`].
#[derive(Debug)]
pub struct RawClient {
    stream: TcpStream,
}

impl RawClient {
    pub async fn connect(addr: SocketAddr) -> Result<RawClient> {
        Ok(RawClient {
            stream: TcpStream::connect(addr).await?,
        })
    }

    /// PRELOGIN (no encryption) and LOGIN7; fails without a LOGINACK.
    pub async fn login(
        addr: SocketAddr,
        user: &str,
        password: &str,
        db: &str,
    ) -> Result<RawClient> {
        let mut c = RawClient::connect(addr).await?;
        c.send(0x12, 1, &prelogin(0x02)).await?;
        c.read_message().await.context("PRELOGIN reply")?;
        c.send(0x10, 1, &login7(user, password, db)).await?;
        let reply = c.read_message().await.context("LOGIN7 reply")?;
        ensure!(reply.payload.contains(&0xAD), "no LOGINACK in {reply:?}");
        Ok(c)
    }

    /// Send one packet.
    pub async fn send(&mut self, ty: u8, status: u8, payload: &[u8]) -> Result<()> {
        self.stream.write_all(&packet(ty, status, payload)).await?;
        Ok(())
    }

    /// Read packets up to END OF MESSAGE.
    pub async fn read_message(&mut self) -> Result<RawMessage> {
        let mut msg = RawMessage {
            packets: Vec::new(),
            payload: Vec::new(),
        };
        loop {
            let mut h = [0u8; 8];
            self.stream.read_exact(&mut h).await?;
            ensure!(h[0] == 0x04, "server packet of type 0x{:02X}", h[0]);
            let len = usize::from(u16::from_be_bytes([h[2], h[3]]));
            ensure!(len >= 8, "server packet of {len} bytes");
            let start = msg.payload.len();
            msg.payload.resize(start + len - 8, 0);
            self.stream.read_exact(&mut msg.payload[start..]).await?;
            msg.packets.push((h[1], len));
            if h[1] & 1 == 1 {
                return Ok(msg);
            }
        }
    }

    /// Succeeds when the server closes the connection within `timeout`.
    pub async fn expect_closed(&mut self, timeout: Duration) -> Result<()> {
        let mut buf = [0u8; 256];
        loop {
            match tokio::time::timeout(timeout, self.stream.read(&mut buf)).await {
                Err(_) => bail!("connection still open after {timeout:?}"),
                Ok(Ok(0)) | Ok(Err(_)) => return Ok(()),
                Ok(Ok(_)) => continue,
            }
        }
    }
}

/// A client packet (SPID 0, packet id 1).
pub fn packet(ty: u8, status: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![ty, status];
    p.extend_from_slice(&((payload.len() + 8) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0, 1, 0]);
    p.extend_from_slice(payload);
    p
}

fn utf16(s: &str) -> Vec<u8> {
    let mut v = Vec::new();
    put_utf16(&mut v, s);
    v
}

/// PRELOGIN with VERSION, ENCRYPTION, an empty INSTOPT and a 0-byte THREADID.
pub fn prelogin(encryption: u8) -> Vec<u8> {
    let mut p = vec![
        0, 0, 21, 0, 6, 1, 0, 27, 0, 1, 2, 0, 28, 0, 1, 3, 0, 29, 0, 0, 0xFF,
    ];
    p.extend_from_slice(&[16, 0, 0, 0, 0, 0, encryption, 0]);
    p
}

/// LOGIN7 for TDS 7.4, packet size 4096, SQL authentication.
pub fn login7(user: &str, password: &str, db: &str) -> Vec<u8> {
    let pw: Vec<u8> = utf16(password)
        .iter()
        .map(|b| b.rotate_left(4) ^ 0xA5)
        .collect();
    let fields = [
        utf16("raw"),
        utf16(user),
        pw,
        utf16("raw-app"),
        utf16("srv"),
        vec![],
        vec![],
        vec![],
        utf16(db),
    ];
    let mut out = Vec::new();
    out.extend_from_slice(&0u32.to_le_bytes()); // length, patched below
    out.extend_from_slice(&0x7400_0004u32.to_le_bytes());
    out.extend_from_slice(&4096u32.to_le_bytes());
    out.extend_from_slice(&[0; 12]); // ClientProgVer, ClientPID, ConnectionID
    out.extend_from_slice(&[0x60, 0x03, 0, 0]); // option flags
    out.extend_from_slice(&[0; 8]); // ClientTimeZone, ClientLCID
    let mut data = Vec::new();
    for f in &fields {
        out.extend_from_slice(&((94 + data.len()) as u16).to_le_bytes());
        out.extend_from_slice(&((f.len() / 2) as u16).to_le_bytes());
        data.extend_from_slice(f);
    }
    out.extend_from_slice(&[0; 6]); // ClientID
    out.extend_from_slice(&[0; 12]); // SSPI, AtchDBFile, ChangePassword
    out.extend_from_slice(&0u32.to_le_bytes()); // cbSSPILong
    out.extend_from_slice(&data);
    let len = out.len() as u32;
    out[..4].copy_from_slice(&len.to_le_bytes());
    out
}

/// ALL_HEADERS with a transaction descriptor (outside a transaction).
pub fn all_headers() -> Vec<u8> {
    let mut h = 22u32.to_le_bytes().to_vec();
    h.extend_from_slice(&18u32.to_le_bytes());
    h.extend_from_slice(&2u16.to_le_bytes());
    h.extend_from_slice(&[0; 8]);
    h.extend_from_slice(&1u32.to_le_bytes());
    h
}

/// A SQL batch payload.
pub fn sql_batch(text: &str) -> Vec<u8> {
    let mut b = all_headers();
    b.extend_from_slice(&utf16(text));
    b
}

/// An RPC payload to a named procedure; each parameter is a name, a status
/// byte and raw TYPE_INFO + value bytes.
pub fn rpc(proc_name: &str, params: &[(&str, u8, &[u8])]) -> Vec<u8> {
    let mut r = all_headers();
    r.extend_from_slice(&(proc_name.encode_utf16().count() as u16).to_le_bytes());
    r.extend_from_slice(&utf16(proc_name));
    r.extend_from_slice(&0u16.to_le_bytes());
    for (name, status, type_and_value) in params {
        r.push(name.encode_utf16().count() as u8);
        r.extend_from_slice(&utf16(name));
        r.push(*status);
        r.extend_from_slice(type_and_value);
    }
    r
}
