//! The T-SQL the backup model understands, parsed as SQL Server would:
//! `BACKUP DATABASE … TO DISK = … [WITH …]`, `RESTORE VERIFYONLY FROM DISK =
//! … [WITH …]`, and `SELECT <columns> FROM <table> WHERE <column> = <value>`.
//! Values are variables (bound from the `sp_executesql` arguments),
//! literals or identifiers. What SQL Server refuses is refused with its
//! error: syntax (102), undeclared variables (137), unknown options (155),
//! conflicting options (3031).

use super::super::record::Param;
use super::super::tokens::ServerMessage;
use super::super::types::Value;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// A keyword or identifier (`[quoted]` ones included), as written.
    Word(String),
    /// `@name`.
    Var(String),
    /// A string literal (`'…'` or `N'…'`), unescaped.
    Str(String),
    Num(i64),
    Punct(char),
}

impl Tok {
    fn text(&self) -> String {
        match self {
            Tok::Word(w) | Tok::Var(w) => w.clone(),
            Tok::Str(s) => s.clone(),
            Tok::Num(n) => n.to_string(),
            Tok::Punct(c) => c.to_string(),
        }
    }

    fn is_word(&self, w: &str) -> bool {
        matches!(self, Tok::Word(x) if x.eq_ignore_ascii_case(w))
    }
}

fn syntax(near: &str) -> ServerMessage {
    ServerMessage::new(102, 15, format!("Incorrect syntax near '{near}'."))
}

fn lex(text: &str) -> Result<Vec<Tok>, ServerMessage> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let word_char = |c: char| c.is_alphanumeric() || c == '_' || c == '#' || c == '$';
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' || ((c == 'N' || c == 'n') && chars.get(i + 1) == Some(&'\'')) {
            i += if c == '\'' { 1 } else { 2 };
            let mut s = String::new();
            loop {
                match chars.get(i) {
                    None => return Err(unclosed(&s)),
                    Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                        s.push('\'');
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(ch) => {
                        s.push(*ch);
                        i += 1;
                    }
                }
            }
            out.push(Tok::Str(s));
        } else if c == '[' {
            i += 1;
            let mut s = String::new();
            loop {
                match chars.get(i) {
                    None => return Err(unclosed(&s)),
                    Some(']') if chars.get(i + 1) == Some(&']') => {
                        s.push(']');
                        i += 2;
                    }
                    Some(']') => {
                        i += 1;
                        break;
                    }
                    Some(ch) => {
                        s.push(*ch);
                        i += 1;
                    }
                }
            }
            out.push(Tok::Word(s));
        } else if c == '@' {
            let start = i;
            i += 1;
            while i < chars.len() && (word_char(chars[i]) || chars[i] == '@') {
                i += 1;
            }
            out.push(Tok::Var(chars[start..i].iter().collect()));
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            let digits: String = chars[start..i].iter().collect();
            out.push(Tok::Num(digits.parse().map_err(|_| syntax(&digits))?));
        } else if word_char(c) {
            let start = i;
            while i < chars.len() && word_char(chars[i]) {
                i += 1;
            }
            out.push(Tok::Word(chars[start..i].iter().collect()));
        } else if "=,;.()*".contains(c) {
            out.push(Tok::Punct(c));
            i += 1;
        } else {
            return Err(syntax(&c.to_string()));
        }
    }
    // A trailing `;` ends the statement.
    if out.last() == Some(&Tok::Punct(';')) {
        out.pop();
    }
    Ok(out)
}

fn unclosed(s: &str) -> ServerMessage {
    ServerMessage::new(
        105,
        15,
        format!("Unclosed quotation mark after the character string '{s}'."),
    )
}

/// A value as written in the statement.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Arg {
    Var(String),
    Str(String),
    Ident(String),
    Num(i64),
}

impl Arg {
    /// The value, variables looked up among the `sp_executesql` arguments.
    pub(crate) fn resolve(&self, args: &[Param]) -> Result<Value, ServerMessage> {
        match self {
            Arg::Var(name) => args
                .iter()
                .find(|p| p.name.eq_ignore_ascii_case(name))
                .map(|p| p.value.clone())
                .ok_or_else(|| {
                    ServerMessage::new(
                        137,
                        15,
                        format!("Must declare the scalar variable \"{name}\"."),
                    )
                }),
            Arg::Str(s) | Arg::Ident(s) => Ok(Value::String(s.clone())),
            Arg::Num(n) => Ok(Value::Int(*n)),
        }
    }

    /// The value as text (a database name, a path).
    pub(crate) fn text(&self, args: &[Param]) -> Result<String, ServerMessage> {
        match self.resolve(args)? {
            Value::String(s) => Ok(s),
            Value::Int(n) => Ok(n.to_string()),
            Value::Null => Ok(String::new()),
            other => Err(ServerMessage::new(
                206,
                16,
                format!("Operand type clash: {other:?} is incompatible with nvarchar"),
            )),
        }
    }
}

/// One `WITH` option.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Opt {
    /// Upper-case.
    pub(crate) name: String,
    pub(crate) value: Option<Arg>,
}

impl Opt {
    /// `NAME` or `NAME = value` (variables by name, strings quoted).
    pub(crate) fn display(&self) -> String {
        match &self.value {
            None => self.name.clone(),
            Some(Arg::Var(v) | Arg::Ident(v)) => format!("{} = {v}", self.name),
            Some(Arg::Str(s)) => format!("{} = N'{}'", self.name, s.replace('\'', "''")),
            Some(Arg::Num(n)) => format!("{} = {n}", self.name),
        }
    }
}

/// `BACKUP DATABASE <db> TO DISK = <path> [, DISK = …] [WITH …]`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BackupStmt {
    pub(crate) database: Arg,
    pub(crate) disks: Vec<Arg>,
    pub(crate) options: Vec<Opt>,
}

/// `RESTORE VERIFYONLY FROM DISK = <path> [WITH …]`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct VerifyStmt {
    pub(crate) disks: Vec<Arg>,
    pub(crate) options: Vec<Opt>,
}

/// `SELECT <columns> FROM <table> WHERE <column> = <value>`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SelectStmt {
    /// Column names, lower-case.
    pub(crate) columns: Vec<String>,
    /// Dotted, lower-case (`sys.databases`).
    pub(crate) table: String,
    /// Lower-case.
    pub(crate) filter_column: String,
    pub(crate) filter: Arg,
}

/// Options `BACKUP` accepts (`true`: takes `= value`, `None`: optional).
const BACKUP_OPTIONS: &[(&str, Option<bool>)] = &[
    ("CHECKSUM", Some(false)),
    ("NO_CHECKSUM", Some(false)),
    ("COPY_ONLY", Some(false)),
    ("INIT", Some(false)),
    ("NOINIT", Some(false)),
    ("FORMAT", Some(false)),
    ("NOFORMAT", Some(false)),
    ("SKIP", Some(false)),
    ("NOSKIP", Some(false)),
    ("COMPRESSION", Some(false)),
    ("NO_COMPRESSION", Some(false)),
    ("CONTINUE_AFTER_ERROR", Some(false)),
    ("STOP_ON_ERROR", Some(false)),
    ("DIFFERENTIAL", Some(false)),
    ("REWIND", Some(false)),
    ("NOREWIND", Some(false)),
    ("UNLOAD", Some(false)),
    ("NOUNLOAD", Some(false)),
    ("RESTART", Some(false)),
    ("STATS", None),
    ("NAME", Some(true)),
    ("DESCRIPTION", Some(true)),
    ("MEDIANAME", Some(true)),
    ("MEDIADESCRIPTION", Some(true)),
    ("EXPIREDATE", Some(true)),
    ("RETAINDAYS", Some(true)),
    ("BLOCKSIZE", Some(true)),
    ("BUFFERCOUNT", Some(true)),
    ("MAXTRANSFERSIZE", Some(true)),
];

/// Options `RESTORE VERIFYONLY` accepts.
const VERIFY_OPTIONS: &[(&str, Option<bool>)] = &[
    ("CHECKSUM", Some(false)),
    ("NO_CHECKSUM", Some(false)),
    ("CONTINUE_AFTER_ERROR", Some(false)),
    ("STOP_ON_ERROR", Some(false)),
    ("LOADHISTORY", Some(false)),
    ("REWIND", Some(false)),
    ("NOREWIND", Some(false)),
    ("UNLOAD", Some(false)),
    ("NOUNLOAD", Some(false)),
    ("STATS", None),
    ("FILE", Some(true)),
    ("MEDIANAME", Some(true)),
    ("MEDIAPASSWORD", Some(true)),
    ("PASSWORD", Some(true)),
    ("BLOCKSIZE", Some(true)),
    ("BUFFERCOUNT", Some(true)),
    ("MAXTRANSFERSIZE", Some(true)),
];

/// Pairs SQL Server refuses together (error 3031).
const CONFLICTS: &[(&str, &str)] = &[
    ("CHECKSUM", "NO_CHECKSUM"),
    ("COMPRESSION", "NO_COMPRESSION"),
    ("INIT", "NOINIT"),
    ("FORMAT", "NOFORMAT"),
    ("SKIP", "NOSKIP"),
    ("CONTINUE_AFTER_ERROR", "STOP_ON_ERROR"),
    ("REWIND", "NOREWIND"),
    ("UNLOAD", "NOUNLOAD"),
];

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn new(text: &str) -> Result<Parser, ServerMessage> {
        Ok(Parser {
            toks: lex(text)?,
            pos: 0,
        })
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    /// The error for the current token (or the last one at the end).
    fn error(&self) -> ServerMessage {
        let tok = self
            .toks
            .get(self.pos)
            .or_else(|| self.toks.last())
            .map(Tok::text)
            .unwrap_or_default();
        syntax(&tok)
    }

    fn word(&mut self, w: &str) -> Result<(), ServerMessage> {
        match self.peek() {
            Some(t) if t.is_word(w) => {
                self.pos += 1;
                Ok(())
            }
            _ => Err(self.error()),
        }
    }

    fn punct(&mut self, c: char) -> Result<(), ServerMessage> {
        match self.peek() {
            Some(Tok::Punct(p)) if *p == c => {
                self.pos += 1;
                Ok(())
            }
            _ => Err(self.error()),
        }
    }

    fn eat_punct(&mut self, c: char) -> bool {
        self.punct(c).is_ok()
    }

    fn end(&self) -> Result<(), ServerMessage> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(self.error()),
        }
    }

    /// A database name: a variable or an identifier.
    fn name_arg(&mut self) -> Result<Arg, ServerMessage> {
        match self.next() {
            Some(Tok::Var(v)) => Ok(Arg::Var(v)),
            Some(Tok::Word(w)) => Ok(Arg::Ident(w)),
            _ => {
                self.pos -= 1;
                Err(self.error())
            }
        }
    }

    /// A value: a variable, a literal or an identifier.
    fn value_arg(&mut self) -> Result<Arg, ServerMessage> {
        match self.next() {
            Some(Tok::Var(v)) => Ok(Arg::Var(v)),
            Some(Tok::Str(s)) => Ok(Arg::Str(s)),
            Some(Tok::Num(n)) => Ok(Arg::Num(n)),
            Some(Tok::Word(w)) => Ok(Arg::Ident(w)),
            _ => {
                self.pos -= 1;
                Err(self.error())
            }
        }
    }

    /// `DISK = <path> [, DISK = <path>]…`
    fn disks(&mut self) -> Result<Vec<Arg>, ServerMessage> {
        let mut disks = Vec::new();
        loop {
            self.word("DISK")?;
            self.punct('=')?;
            match self.next() {
                Some(Tok::Var(v)) => disks.push(Arg::Var(v)),
                Some(Tok::Str(s)) => disks.push(Arg::Str(s)),
                _ => {
                    self.pos -= 1;
                    return Err(self.error());
                }
            }
            if !self.eat_punct(',') {
                return Ok(disks);
            }
        }
    }

    /// `[WITH opt [, opt]…]`, checked against `known`.
    fn options(
        &mut self,
        known: &[(&str, Option<bool>)],
        what: &str,
    ) -> Result<Vec<Opt>, ServerMessage> {
        let mut opts: Vec<Opt> = Vec::new();
        if self.peek().is_none() {
            return Ok(opts);
        }
        self.word("WITH")?;
        loop {
            let name = match self.next() {
                Some(Tok::Word(w)) => w.to_uppercase(),
                _ => {
                    self.pos -= 1;
                    return Err(self.error());
                }
            };
            let Some((_, takes)) = known.iter().find(|(k, _)| *k == name) else {
                return Err(ServerMessage::new(
                    155,
                    15,
                    format!("'{name}' is not a recognized {what} option."),
                ));
            };
            let value = match takes {
                Some(false) => None,
                Some(true) => {
                    self.punct('=')?;
                    Some(self.value_arg()?)
                }
                None if self.eat_punct('=') => Some(self.value_arg()?),
                None => None,
            };
            opts.push(Opt { name, value });
            if !self.eat_punct(',') {
                break;
            }
        }
        self.end()?;
        for (a, b) in CONFLICTS {
            let has = |n: &str| opts.iter().any(|o| o.name == n);
            if has(a) && has(b) {
                return Err(ServerMessage::new(
                    3031,
                    16,
                    format!(
                        "Option '{b}' conflicts with option(s) '{a}'. Remove the conflicting \
                         option and reissue the statement."
                    ),
                ));
            }
        }
        Ok(opts)
    }
}

/// Whether `text` is a `BACKUP DATABASE` statement (for matching).
pub(crate) fn is_backup(text: &str) -> bool {
    starts_with_words(text, &["BACKUP", "DATABASE"])
}

/// Whether `text` is a `RESTORE VERIFYONLY` statement (for matching).
pub(crate) fn is_verify(text: &str) -> bool {
    starts_with_words(text, &["RESTORE", "VERIFYONLY"])
}

fn starts_with_words(text: &str, words: &[&str]) -> bool {
    let mut it = text.split_whitespace();
    words
        .iter()
        .all(|w| it.next().is_some_and(|t| t.eq_ignore_ascii_case(w)))
}

pub(crate) fn parse_backup(text: &str) -> Result<BackupStmt, ServerMessage> {
    let mut p = Parser::new(text)?;
    p.word("BACKUP")?;
    p.word("DATABASE")?;
    let database = p.name_arg()?;
    p.word("TO")?;
    let disks = p.disks()?;
    let options = p.options(BACKUP_OPTIONS, "BACKUP")?;
    Ok(BackupStmt {
        database,
        disks,
        options,
    })
}

pub(crate) fn parse_verify(text: &str) -> Result<VerifyStmt, ServerMessage> {
    let mut p = Parser::new(text)?;
    p.word("RESTORE")?;
    p.word("VERIFYONLY")?;
    p.word("FROM")?;
    let disks = p.disks()?;
    let options = p.options(VERIFY_OPTIONS, "RESTORE")?;
    Ok(VerifyStmt { disks, options })
}

/// A single-table `SELECT` with one equality filter; `None` when the text
/// is not of that shape (left to other rules).
pub(crate) fn parse_select(text: &str) -> Option<SelectStmt> {
    let mut p = Parser::new(text).ok()?;
    p.word("SELECT").ok()?;
    let mut columns = Vec::new();
    loop {
        match p.next()? {
            Tok::Word(w) => columns.push(w.to_lowercase()),
            _ => return None,
        }
        if !p.eat_punct(',') {
            break;
        }
    }
    p.word("FROM").ok()?;
    let mut table = match p.next()? {
        Tok::Word(w) => w.to_lowercase(),
        _ => return None,
    };
    while p.eat_punct('.') {
        match p.next()? {
            Tok::Word(w) => {
                table.push('.');
                table.push_str(&w.to_lowercase());
            }
            _ => return None,
        }
    }
    p.word("WHERE").ok()?;
    let filter_column = match p.next()? {
        Tok::Word(w) => w.to_lowercase(),
        _ => return None,
    };
    p.punct('=').ok()?;
    let filter = p.value_arg().ok()?;
    p.end().ok()?;
    Some(SelectStmt {
        columns,
        table,
        filter_column,
        filter,
    })
}

/// The `STATS` percentage: `Some(n)` with `STATS = n`, `Some(10)` with a
/// bare `STATS`, `None` without.
pub(crate) fn stats(options: &[Opt], args: &[Param]) -> Option<u32> {
    let opt = options.iter().find(|o| o.name == "STATS")?;
    let n = match &opt.value {
        None => 10,
        Some(a) => a.resolve(args).ok().and_then(|v| v.as_i64()).unwrap_or(10),
    };
    Some(u32::try_from(n.clamp(1, 100)).unwrap_or(10))
}

#[cfg(test)]
mod tests;
