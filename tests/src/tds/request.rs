//! Decoding client requests: SQL batches (MS-TDS 2.2.6.7) and RPCs (2.2.6.6),
//! parameters decoded by type.

use anyhow::{Result, bail, ensure};

use super::record::{Param, ProcRef, Rpc};
use super::types::{read_type_info, read_value};
use super::wire::{Cursor, read_all_headers, utf16_to_string};

const STATUS_BY_REF: u8 = 0x01;
const STATUS_DEFAULT: u8 = 0x02;
const STATUS_ENCRYPTED: u8 = 0x08;

/// A SQL batch: ALL_HEADERS (the transaction descriptor is returned), then
/// UTF-16LE text.
pub(crate) fn parse_sql_batch(payload: &[u8]) -> Result<(String, u64)> {
    let mut c = Cursor::new(payload);
    let descriptor = read_all_headers(&mut c)?;
    let text = c.take(c.remaining())?;
    ensure!(text.len() % 2 == 0, "SQL batch text of an odd byte count");
    Ok((utf16_to_string(text), descriptor))
}

/// An RPC: ALL_HEADERS, a procedure name or `0xFFFF` + id, option flags, then
/// parameters (name, status, TYPE_INFO, value). The transaction descriptor
/// of ALL_HEADERS is returned with it.
pub(crate) fn parse_rpc(payload: &[u8]) -> Result<(Rpc, u64)> {
    let mut c = Cursor::new(payload);
    let descriptor = read_all_headers(&mut c)?;
    let len = c.u16_le()?;
    let proc = if len == 0xFFFF {
        let id = c.u16_le()?;
        ensure!((1..=15).contains(&id), "RPC procedure id {id}");
        ProcRef::Id(id)
    } else {
        ensure!(len > 0, "RPC with an empty procedure name");
        ProcRef::Name(c.utf16(usize::from(len))?)
    };
    let option_flags = c.u16_le()?;
    ensure!(
        option_flags & !0x0007 == 0,
        "RPC option flags 0x{option_flags:04X}"
    );
    let mut params = Vec::new();
    while !c.is_empty() {
        let first = c.take(1)?[0];
        if first == 0xFF || first == 0x80 || first == 0xFE {
            bail!("several RPCs in one request (batch separator 0x{first:02X}) are not supported");
        }
        ensure!(first <= 128, "RPC parameter name of {first} characters");
        let name = c.utf16(usize::from(first))?;
        let status = c.u8()?;
        ensure!(
            status & !(STATUS_BY_REF | STATUS_DEFAULT | STATUS_ENCRYPTED) == 0,
            "RPC parameter {name:?} with status 0x{status:02X}"
        );
        ensure!(
            status & STATUS_ENCRYPTED == 0,
            "encrypted RPC parameter {name:?} (Always Encrypted is not negotiated)"
        );
        let ty = read_type_info(&mut c).map_err(|e| e.context(format!("parameter {name:?}")))?;
        let value = read_value(&mut c, ty).map_err(|e| e.context(format!("parameter {name:?}")))?;
        params.push(Param {
            name,
            ty,
            value,
            output: status & STATUS_BY_REF != 0,
        });
    }
    let rpc = Rpc {
        proc,
        option_flags,
        params,
    };
    Ok((rpc, descriptor))
}
