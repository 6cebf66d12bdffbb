//! Reply tokens (MS-TDS 2.2.7) and their encoding: COLMETADATA, ROW, DONE,
//! DONEPROC, DONEINPROC, RETURNSTATUS, RETURNVALUE, INFO, ERROR, ENVCHANGE
//! (database, packet size, collation, begin/commit/rollback transaction),
//! LOGINACK.

use anyhow::{Context, Result, bail, ensure};

use super::record::Request;
use super::types::{SqlType, Value, write_type_info, write_value};
use super::wire::{put_b_varchar, put_us_varchar};

/// DONE status bits (MS-TDS 2.2.7.6).
pub mod done_status {
    pub const FINAL: u16 = 0x00;
    pub const MORE: u16 = 0x01;
    pub const ERROR: u16 = 0x02;
    pub const INXACT: u16 = 0x04;
    pub const COUNT: u16 = 0x10;
    pub const ATTN: u16 = 0x20;
    pub const SRVERROR: u16 = 0x100;
}

/// `CurCmd` values SQL Server puts in DONE tokens.
pub mod cur_cmd {
    pub const SELECT: u16 = 0xC1;
    pub const INSERT: u16 = 0xC3;
    pub const DELETE: u16 = 0xC4;
    pub const UPDATE: u16 = 0xC5;
    pub const EXECUTE: u16 = 0xE0;
}

/// A DONE, DONEPROC or DONEINPROC body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Done {
    pub status: u16,
    pub cur_cmd: u16,
    pub rows: u64,
}

impl Done {
    /// Final, no count.
    pub fn new() -> Done {
        Done::default()
    }

    /// More results follow (`DONE_MORE`).
    pub fn more(mut self) -> Done {
        self.status |= done_status::MORE;
        self
    }

    /// The statement failed (`DONE_ERROR`).
    pub fn error(mut self) -> Done {
        self.status |= done_status::ERROR;
        self
    }

    /// Acknowledges an attention (`DONE_ATTN`).
    pub fn attn(mut self) -> Done {
        self.status |= done_status::ATTN;
        self
    }

    /// A valid row count (`DONE_COUNT`).
    pub fn count(mut self, rows: u64) -> Done {
        self.status |= done_status::COUNT;
        self.rows = rows;
        self
    }

    pub fn cmd(mut self, cur_cmd: u16) -> Done {
        self.cur_cmd = cur_cmd;
        self
    }
}

/// The body of an ERROR or INFO token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerMessage {
    pub number: i32,
    pub state: u8,
    pub class: u8,
    pub message: String,
    pub server: String,
    pub procedure: String,
    pub line: i32,
}

impl ServerMessage {
    /// State 1, server `BATONTDS`, no procedure, line 1.
    pub fn new(number: i32, class: u8, message: impl Into<String>) -> ServerMessage {
        ServerMessage {
            number,
            state: 1,
            class,
            message: message.into(),
            server: "BATONTDS".into(),
            procedure: String::new(),
            line: 1,
        }
    }

    pub fn state(mut self, state: u8) -> Self {
        self.state = state;
        self
    }

    pub fn procedure(mut self, procedure: impl Into<String>) -> Self {
        self.procedure = procedure.into();
        self
    }

    pub fn line(mut self, line: i32) -> Self {
        self.line = line;
        self
    }

    pub fn server(mut self, server: impl Into<String>) -> Self {
        self.server = server.into();
        self
    }
}

/// A result column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub ty: SqlType,
    pub nullable: bool,
}

impl Column {
    /// A nullable column.
    pub fn new(name: impl Into<String>, ty: SqlType) -> Column {
        Column {
            name: name.into(),
            ty,
            nullable: true,
        }
    }

    pub fn not_null(mut self) -> Column {
        self.nullable = false;
        self
    }
}

/// One reply token.
#[derive(Debug, Clone, PartialEq)]
pub enum Token {
    /// COLMETADATA (0x81): starts a result set.
    ColMetaData(Vec<Column>),
    /// ROW (0xD1) of the current result set.
    Row(Vec<Value>),
    /// DONE (0xFD).
    Done(Done),
    /// DONEPROC (0xFE).
    DoneProc(Done),
    /// DONEINPROC (0xFF).
    DoneInProc(Done),
    /// RETURNSTATUS (0x79).
    ReturnStatus(i32),
    /// RETURNVALUE (0xAC) for the OUTPUT parameter `name` of the request; its
    /// ordinal is the parameter's position in the RPC. Not sent when the
    /// request has no such OUTPUT parameter (SQL Server returns only those).
    ReturnValue {
        name: String,
        ty: SqlType,
        value: Value,
    },
    /// INFO (0xAB).
    Info(ServerMessage),
    /// ERROR (0xAA).
    Error(ServerMessage),
    /// ENVCHANGE (0xE3) type 1, the current database.
    EnvDatabase { new: String, old: String },
    /// ENVCHANGE type 8: a transaction began; the descriptor (8 bytes, here
    /// a little-endian u64) is what the client sends in later requests'
    /// ALL_HEADERS.
    EnvBeginTransaction(u64),
    /// ENVCHANGE type 9: the transaction with this descriptor committed.
    EnvCommitTransaction(u64),
    /// ENVCHANGE type 10: the transaction with this descriptor rolled back.
    EnvRollbackTransaction(u64),
    /// Bytes sent as they are (for tests of malformed replies).
    Raw(Vec<u8>),
}

impl Token {
    pub fn columns(columns: Vec<Column>) -> Token {
        Token::ColMetaData(columns)
    }

    pub fn row<V: Into<Value>, I: IntoIterator<Item = V>>(values: I) -> Token {
        Token::Row(values.into_iter().map(Into::into).collect())
    }

    /// Final DONE without a count.
    pub fn done() -> Token {
        Token::Done(Done::new())
    }

    /// Final DONE with a row count.
    pub fn done_rows(rows: u64) -> Token {
        Token::Done(Done::new().count(rows))
    }

    pub fn error(number: i32, class: u8, message: impl Into<String>) -> Token {
        Token::Error(ServerMessage::new(number, class, message))
    }

    pub fn info(number: i32, message: impl Into<String>) -> Token {
        Token::Info(ServerMessage::new(number, 0, message))
    }

    pub fn return_value(name: impl Into<String>, ty: SqlType, value: impl Into<Value>) -> Token {
        Token::ReturnValue {
            name: name.into(),
            ty,
            value: value.into(),
        }
    }
}

/// Encodes tokens of one reply, tracking the current result set's columns.
pub(crate) struct Encoder<'a> {
    request: Option<&'a Request>,
    columns: Option<Vec<SqlType>>,
}

impl<'a> Encoder<'a> {
    pub(crate) fn new(request: Option<&'a Request>) -> Self {
        Encoder {
            request,
            columns: None,
        }
    }

    pub(crate) fn encode(&mut self, out: &mut Vec<u8>, token: &Token) -> Result<()> {
        match token {
            Token::ColMetaData(cols) => {
                ensure!(!cols.is_empty(), "COLMETADATA without columns");
                out.push(0x81);
                out.extend_from_slice(&(cols.len() as u16).to_le_bytes());
                for col in cols {
                    out.extend_from_slice(&0u32.to_le_bytes()); // UserType
                    // Flags: fNullable, fUpdateable = 2 (unknown).
                    let flags: u16 = u16::from(col.nullable) | 0x0008;
                    out.extend_from_slice(&flags.to_le_bytes());
                    write_type_info(out, col.ty)
                        .with_context(|| format!("column {:?}", col.name))?;
                    put_b_varchar(out, &col.name)?;
                }
                self.columns = Some(cols.iter().map(|c| c.ty).collect());
            }
            Token::Row(values) => {
                let Some(types) = &self.columns else {
                    bail!("ROW before COLMETADATA");
                };
                ensure!(
                    types.len() == values.len(),
                    "ROW with {} values for {} columns",
                    values.len(),
                    types.len()
                );
                out.push(0xD1);
                for (ty, v) in types.iter().zip(values) {
                    write_value(out, *ty, v)?;
                }
            }
            Token::Done(d) => done(out, 0xFD, d),
            Token::DoneProc(d) => done(out, 0xFE, d),
            Token::DoneInProc(d) => done(out, 0xFF, d),
            Token::ReturnStatus(s) => {
                out.push(0x79);
                out.extend_from_slice(&s.to_le_bytes());
            }
            Token::ReturnValue { name, ty, value } => {
                let Some(ordinal) = self.output_ordinal(name) else {
                    return Ok(());
                };
                out.push(0xAC);
                out.extend_from_slice(&ordinal.to_le_bytes());
                put_b_varchar(out, name)?;
                out.push(0x01); // status: output parameter
                out.extend_from_slice(&0u32.to_le_bytes()); // UserType
                out.extend_from_slice(&1u16.to_le_bytes()); // Flags: nullable
                write_type_info(out, *ty)?;
                write_value(out, *ty, value).with_context(|| format!("return value {name}"))?;
            }
            Token::Info(m) => message(out, 0xAB, m)?,
            Token::Error(m) => message(out, 0xAA, m)?,
            Token::EnvDatabase { new, old } => {
                let mut body = vec![1u8];
                put_b_varchar(&mut body, new)?;
                put_b_varchar(&mut body, old)?;
                env_change(out, &body);
            }
            Token::EnvBeginTransaction(id) => {
                // NewValue: B_VARBYTE descriptor; OldValue: empty.
                let mut body = vec![8u8, 8];
                body.extend_from_slice(&id.to_le_bytes());
                body.push(0);
                env_change(out, &body);
            }
            Token::EnvCommitTransaction(id) | Token::EnvRollbackTransaction(id) => {
                // NewValue: empty; OldValue: B_VARBYTE descriptor.
                let ty = if matches!(token, Token::EnvCommitTransaction(_)) {
                    9u8
                } else {
                    10
                };
                let mut body = vec![ty, 0, 8];
                body.extend_from_slice(&id.to_le_bytes());
                env_change(out, &body);
            }
            Token::Raw(bytes) => out.extend_from_slice(bytes),
        }
        Ok(())
    }

    /// Position of the OUTPUT parameter `name` in the current RPC.
    fn output_ordinal(&self, name: &str) -> Option<u16> {
        let Some(Request::Rpc(rpc)) = self.request else {
            return None;
        };
        rpc.params
            .iter()
            .position(|p| p.output && p.name.eq_ignore_ascii_case(name))
            .map(|i| i as u16)
    }
}

pub(crate) fn done(out: &mut Vec<u8>, ty: u8, d: &Done) {
    out.push(ty);
    out.extend_from_slice(&d.status.to_le_bytes());
    out.extend_from_slice(&d.cur_cmd.to_le_bytes());
    out.extend_from_slice(&d.rows.to_le_bytes());
}

fn message(out: &mut Vec<u8>, ty: u8, m: &ServerMessage) -> Result<()> {
    let mut body = Vec::new();
    body.extend_from_slice(&m.number.to_le_bytes());
    body.push(m.state);
    body.push(m.class);
    put_us_varchar(&mut body, &m.message)?;
    put_b_varchar(&mut body, &m.server)?;
    put_b_varchar(&mut body, &m.procedure)?;
    body.extend_from_slice(&m.line.to_le_bytes());
    ensure!(
        body.len() <= usize::from(u16::MAX),
        "message token too long"
    );
    out.push(ty);
    out.extend_from_slice(&(body.len() as u16).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(())
}

pub(crate) fn env_change(out: &mut Vec<u8>, body: &[u8]) {
    out.push(0xE3);
    out.extend_from_slice(&(body.len() as u16).to_le_bytes());
    out.extend_from_slice(body);
}

/// ENVCHANGE type 4: packet size (as decimal strings).
pub(crate) fn env_packet_size(out: &mut Vec<u8>, new: u32, old: u32) -> Result<()> {
    let mut body = vec![4u8];
    put_b_varchar(&mut body, &new.to_string())?;
    put_b_varchar(&mut body, &old.to_string())?;
    env_change(out, &body);
    Ok(())
}

/// ENVCHANGE type 7: SQL collation.
pub(crate) fn env_collation(out: &mut Vec<u8>) {
    let mut body = vec![7u8, 5];
    body.extend_from_slice(&super::types::COLLATION);
    body.push(0);
    env_change(out, &body);
}

/// LOGINACK: TDS 7.4, "Microsoft SQL Server" 16.0.1000.
pub(crate) fn login_ack(out: &mut Vec<u8>) -> Result<()> {
    let mut body = vec![1u8]; // interface: SQL_TSQL
    body.extend_from_slice(&0x7400_0004u32.to_be_bytes());
    put_b_varchar(&mut body, "Microsoft SQL Server")?;
    body.extend_from_slice(&[16, 0, 0x03, 0xE8]);
    out.push(0xAD);
    out.extend_from_slice(&(body.len() as u16).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(())
}
