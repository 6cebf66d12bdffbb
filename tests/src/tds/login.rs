//! PRELOGIN (MS-TDS 2.2.6.5) and LOGIN7 (2.2.6.4) decoding, and their replies.

use anyhow::{Result, bail, ensure};

use super::record::Login;
use super::wire::{Cursor, utf16_to_string};

pub(crate) const ENCRYPT_OFF: u8 = 0x00;
pub(crate) const ENCRYPT_ON: u8 = 0x01;
pub(crate) const ENCRYPT_NOT_SUP: u8 = 0x02;
pub(crate) const ENCRYPT_REQ: u8 = 0x03;

const VERSION: u8 = 0x00;
const ENCRYPTION: u8 = 0x01;
const INSTOPT: u8 = 0x02;
const THREADID: u8 = 0x03;
const MARS: u8 = 0x04;
const TRACEID: u8 = 0x05;
const FEDAUTHREQUIRED: u8 = 0x06;
const NONCEOPT: u8 = 0x07;
const TERMINATOR: u8 = 0xFF;

/// The client's PRELOGIN.
#[derive(Debug, Clone)]
pub(crate) struct PreLogin {
    pub(crate) encryption: u8,
    pub(crate) instance: String,
    pub(crate) mars: bool,
}

pub(crate) fn parse_prelogin(payload: &[u8]) -> Result<PreLogin> {
    let mut c = Cursor::new(payload);
    let mut seen = Vec::new();
    let mut out = PreLogin {
        encryption: ENCRYPT_OFF,
        instance: String::new(),
        mars: false,
    };
    loop {
        let token = c.u8()?;
        if token == TERMINATOR {
            break;
        }
        let offset = usize::from(u16::from_be_bytes([c.u8()?, c.u8()?]));
        let len = usize::from(u16::from_be_bytes([c.u8()?, c.u8()?]));
        ensure!(!seen.contains(&token), "PRELOGIN option {token} twice");
        if seen.is_empty() {
            ensure!(token == VERSION, "PRELOGIN must start with VERSION");
        }
        seen.push(token);
        ensure!(
            offset + len <= payload.len(),
            "PRELOGIN option {token} at {offset}+{len} beyond {} bytes",
            payload.len()
        );
        let data = &payload[offset..offset + len];
        match token {
            VERSION => ensure!(len == 6, "PRELOGIN VERSION of {len} bytes"),
            ENCRYPTION => {
                ensure!(len == 1, "PRELOGIN ENCRYPTION of {len} bytes");
                out.encryption = data[0];
                // 0x80 (client certificate) may be combined with the level.
                ensure!(
                    out.encryption & 0x7F <= ENCRYPT_REQ,
                    "PRELOGIN ENCRYPTION value 0x{:02X}",
                    out.encryption
                );
            }
            INSTOPT => {
                let Some(end) = data.iter().position(|b| *b == 0) else {
                    bail!("PRELOGIN INSTOPT without a terminating NUL");
                };
                out.instance = String::from_utf8_lossy(&data[..end]).into_owned();
            }
            THREADID => ensure!(len == 0 || len == 4, "PRELOGIN THREADID of {len} bytes"),
            MARS => {
                ensure!(len == 1 && data[0] <= 1, "PRELOGIN MARS {data:?}");
                out.mars = data[0] == 1;
            }
            TRACEID => ensure!(len == 36 || len == 20, "PRELOGIN TRACEID of {len} bytes"),
            FEDAUTHREQUIRED => ensure!(len == 1, "PRELOGIN FEDAUTHREQUIRED of {len} bytes"),
            NONCEOPT => ensure!(len == 32, "PRELOGIN NONCEOPT of {len} bytes"),
            other => bail!("unknown PRELOGIN option {other}"),
        }
    }
    ensure!(seen.contains(&ENCRYPTION), "PRELOGIN without ENCRYPTION");
    Ok(out)
}

/// Whether a PRELOGIN INSTOPT names this server: the named instance `own`
/// (case-insensitively), or for the default instance an empty name or
/// `MSSQLSERVER`.
pub(crate) fn instance_valid(own: Option<&str>, requested: &str) -> bool {
    match own {
        Some(name) => requested.eq_ignore_ascii_case(name),
        None => requested.is_empty() || requested.eq_ignore_ascii_case("MSSQLSERVER"),
    }
}

/// The server's PRELOGIN reply: VERSION 16.0.1000, ENCRYPTION, INSTOPT,
/// THREADID with length 0, MARS off.
pub(crate) fn prelogin_reply(encryption: u8, instance_valid: bool) -> Vec<u8> {
    let options: [(u8, Vec<u8>); 5] = [
        (VERSION, vec![16, 0, 0x03, 0xE8, 0, 0]),
        (ENCRYPTION, vec![encryption]),
        (INSTOPT, vec![u8::from(!instance_valid)]),
        (THREADID, vec![]),
        (MARS, vec![0]),
    ];
    let mut table = Vec::new();
    let mut data = Vec::new();
    let mut offset = options.len() * 5 + 1;
    for (token, bytes) in &options {
        table.push(*token);
        table.extend_from_slice(&(offset as u16).to_be_bytes());
        table.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        offset += bytes.len();
        data.extend_from_slice(bytes);
    }
    table.push(TERMINATOR);
    table.extend_from_slice(&data);
    table
}

/// Undo the LOGIN7 password obfuscation: XOR 0xA5, then swap the nibbles.
fn deobfuscate(bytes: &[u8]) -> Vec<u8> {
    bytes
        .iter()
        .map(|b| {
            let x = b ^ 0xA5;
            x.rotate_left(4)
        })
        .collect()
}

/// TDS versions a LOGIN7 may carry (7.1 … 7.4, and 8.0 in strict mode).
const TDS_VERSIONS: [u32; 6] = [
    0x7100_0001,
    0x7209_0002,
    0x730A_0003,
    0x730B_0003,
    0x7400_0004,
    0x0800_0000,
];

const FIXED_LEN: usize = 94;

/// LOGIN7 fields the server acts on, beyond what is recorded.
#[derive(Debug, Clone)]
pub(crate) struct Login7 {
    pub(crate) login: Login,
    /// `fIntSecurity`: integrated (SSPI) authentication requested.
    pub(crate) integrated: bool,
    /// `fExtension`: a FeatureExt block (e.g. federated authentication).
    pub(crate) feature_ext: bool,
}

pub(crate) fn parse_login7(payload: &[u8]) -> Result<Login7> {
    ensure!(
        payload.len() >= FIXED_LEN,
        "LOGIN7 of {} bytes",
        payload.len()
    );
    let mut c = Cursor::new(payload);
    let length = c.u32_le()? as usize;
    ensure!(
        length == payload.len(),
        "LOGIN7 length field {length} for a {}-byte message",
        payload.len()
    );
    let tds_version = c.u32_le()?;
    ensure!(
        TDS_VERSIONS.contains(&tds_version),
        "LOGIN7 TDS version 0x{tds_version:08X}"
    );
    let packet_size = c.u32_le()?;
    ensure!(
        packet_size == 0 || (512..=32767).contains(&packet_size),
        "LOGIN7 packet size {packet_size}"
    );
    c.take(12)?; // ClientProgVer, ClientPID, ConnectionID
    let _flags1 = c.u8()?;
    let flags2 = c.u8()?;
    let _type_flags = c.u8()?;
    let flags3 = c.u8()?;
    c.take(8)?; // ClientTimeZone, ClientLCID
    // (offset, length in characters) pairs, in order.
    fn field(c: &mut Cursor<'_>, total: usize, what: &str) -> Result<(usize, usize)> {
        let offset = usize::from(c.u16_le()?);
        let chars = usize::from(c.u16_le()?);
        ensure!(chars <= 128, "LOGIN7 {what} of {chars} characters");
        ensure!(
            chars == 0 || (offset >= FIXED_LEN && offset + chars * 2 <= total),
            "LOGIN7 {what} at {offset}+{chars} outside the message"
        );
        Ok((offset, chars))
    }
    let total = payload.len();
    let host = field(&mut c, total, "HostName")?;
    let user = field(&mut c, total, "UserName")?;
    let password = field(&mut c, total, "Password")?;
    let app = field(&mut c, total, "AppName")?;
    let server = field(&mut c, total, "ServerName")?;
    c.take(4)?; // ibExtension/cbExtension (bytes, checked with fExtension)
    let _library = field(&mut c, total, "CltIntName")?;
    let _language = field(&mut c, total, "Language")?;
    let database = field(&mut c, total, "Database")?;
    let text =
        |(offset, chars): (usize, usize)| utf16_to_string(&payload[offset..offset + chars * 2]);
    let (pw_off, pw_chars) = password;
    let password = utf16_to_string(&deobfuscate(&payload[pw_off..pw_off + pw_chars * 2]));
    Ok(Login7 {
        login: Login {
            user: text(user),
            password,
            database: text(database),
            app_name: text(app),
            host_name: text(host),
            server_name: text(server),
            packet_size,
            tds_version,
            accepted: false,
        },
        integrated: flags2 & 0x80 != 0,
        feature_ext: flags3 & 0x10 != 0,
    })
}
