//! Byte-level helpers: a bounds-checked little-endian reader over a message
//! payload and the string encodings TDS uses (UTF-16LE, `B_VARCHAR`,
//! `US_VARCHAR`).

use anyhow::{Result, bail, ensure};

/// A bounds-checked reader over one reassembled message. Every read that
/// would run past the end is an error (the server then closes the connection,
/// as SQL Server does with a malformed request).
#[derive(Debug)]
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        ensure!(
            n <= self.remaining(),
            "truncated message: need {n} bytes at offset {}, {} left",
            self.pos,
            self.remaining()
        );
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u16_le(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32_le(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn u64_le(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// Little-endian unsigned integer of `n` ≤ 16 bytes.
    pub(crate) fn uint_le(&mut self, n: usize) -> Result<u128> {
        ensure!(n <= 16, "integer of {n} bytes");
        let b = self.take(n)?;
        Ok(b.iter()
            .rev()
            .fold(0u128, |acc, byte| (acc << 8) | u128::from(*byte)))
    }

    /// `n` UTF-16LE code units (not bytes).
    pub(crate) fn utf16(&mut self, units: usize) -> Result<String> {
        let bytes = self.take(units * 2)?;
        Ok(utf16_to_string(bytes))
    }
}

/// Decode UTF-16LE bytes (an even count). SQL Server stores UCS-2 and accepts
/// unpaired surrogates, so those are kept as U+FFFD rather than refused.
pub(crate) fn utf16_to_string(bytes: &[u8]) -> String {
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16_lossy(&units)
}

pub(crate) fn put_utf16(out: &mut Vec<u8>, s: &str) {
    for unit in s.encode_utf16() {
        out.extend_from_slice(&unit.to_le_bytes());
    }
}

pub(crate) fn utf16_len(s: &str) -> usize {
    s.encode_utf16().count()
}

pub(crate) fn put_b_varchar(out: &mut Vec<u8>, s: &str) -> Result<()> {
    let n = utf16_len(s);
    if n > usize::from(u8::MAX) {
        bail!("B_VARCHAR too long ({n} UTF-16 units): {s:?}");
    }
    out.push(n as u8);
    put_utf16(out, s);
    Ok(())
}

pub(crate) fn put_us_varchar(out: &mut Vec<u8>, s: &str) -> Result<()> {
    let n = utf16_len(s);
    if n > usize::from(u16::MAX) {
        bail!("US_VARCHAR too long ({n} UTF-16 units)");
    }
    out.extend_from_slice(&(n as u16).to_le_bytes());
    put_utf16(out, s);
    Ok(())
}

/// Read `ALL_HEADERS` at the start of a SQL batch or RPC request and return
/// the transaction descriptor it carries (8 bytes as a little-endian u64; 0
/// outside a transaction). SQL Server (TDS 7.2+) requires it and requires a
/// transaction descriptor header in it; lengths must be consistent.
pub(crate) fn read_all_headers(c: &mut Cursor<'_>) -> Result<u64> {
    let total = c.u32_le()? as usize;
    ensure!(total >= 4, "ALL_HEADERS total length {total} < 4");
    let mut body = Cursor::new(c.take(total - 4)?);
    let mut descriptor = None;
    while !body.is_empty() {
        let len = body.u32_le()? as usize;
        ensure!(len >= 6, "ALL_HEADERS header length {len} < 6");
        let ty = body.u16_le()?;
        let data = body.take(len - 6)?;
        match ty {
            // Query notifications: accepted as is.
            1 => {}
            2 => {
                ensure!(
                    data.len() == 12,
                    "transaction descriptor header of {} bytes (want 12)",
                    data.len()
                );
                let outstanding = u32::from_le_bytes([data[8], data[9], data[10], data[11]]);
                ensure!(
                    outstanding == 1,
                    "outstanding request count {outstanding} (want 1)"
                );
                let mut d = [0u8; 8];
                d.copy_from_slice(&data[..8]);
                descriptor = Some(u64::from_le_bytes(d));
            }
            3 => ensure!(
                data.len() == 20,
                "trace activity header of {} bytes",
                data.len()
            ),
            other => bail!("unknown ALL_HEADERS header type {other}"),
        }
    }
    descriptor.ok_or_else(|| anyhow::anyhow!("ALL_HEADERS without a transaction descriptor header"))
}
