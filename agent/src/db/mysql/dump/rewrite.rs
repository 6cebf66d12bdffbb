//! The line filter a dump passes through on its way into the SQL client
//! (the `dump` job's restore check and the `restore` job): what `mariadb-dump`
//! writes is rewritten only where it would reach beyond the database being
//! restored into.
//!
//! - `CREATE EVENT` lines (`/*!50106 CREATE*/ … EVENT … PRESERVE ENABLE …`)
//!   become `DISABLE`d when asked, so a scheduled event cannot fire in a copy.
//! - `ALTER DATABASE `<source>` CHARACTER SET … COLLATE …` lines, which the
//!   tool writes around each routine and event whose collation differs from
//!   the database's (checked on MariaDB 10.11), name the **source** database:
//!   restored as written they would alter the source, not the copy. They are
//!   rewritten to name the target. The dump names its source nowhere else
//!   (the tool gets one database and no `--databases`, so there is no
//!   `CREATE DATABASE` or `USE`); names written by hand inside routine or
//!   trigger bodies are the application's and are left alone.
//!
//! Lines are passed through untouched except those two kinds, which are
//! held until their end of line (bounded; a longer one passes unchanged).

/// The filter; [`DumpFilter::default`] disables events and renames nothing.
#[derive(Debug)]
pub struct DumpFilter {
    mode: Mode,
    disable_events: bool,
    /// `(`source`, `target`)`, quoted as the tool quotes them.
    rename: Option<(Vec<u8>, Vec<u8>)>,
    /// Events switched to DISABLE.
    pub disabled: usize,
    /// `ALTER DATABASE` lines pointed at the target.
    pub renamed: usize,
}

impl Default for DumpFilter {
    fn default() -> Self {
        DumpFilter::new(true, None)
    }
}

#[derive(Debug)]
enum Mode {
    /// At the start of a line: the bytes seen so far, while they may still be a prefix.
    Start(Vec<u8>),
    /// In a line that is not rewritten.
    Pass,
    /// In a line that may be rewritten.
    Hold(Vec<u8>),
}

const EVENT_PREFIX: &[u8] = b"/*!50106 CREATE*/";
const ALTER_PREFIX: &[u8] = b"ALTER DATABASE ";
/// Longest line held (a longer one passes unchanged).
pub const HOLD_LIMIT: usize = 1024 * 1024;

impl DumpFilter {
    /// A filter that disables events when `disable_events`, and points the
    /// `ALTER DATABASE` lines of database `from` at `to` when `rename` is
    /// `Some((from, to))`.
    pub fn new(disable_events: bool, rename: Option<(&str, &str)>) -> Self {
        DumpFilter {
            mode: Mode::Start(Vec::new()),
            disable_events,
            rename: rename.map(|(from, to)| (quote(from), quote(to))),
            disabled: 0,
            renamed: 0,
        }
    }

    fn prefixes(&self) -> impl Iterator<Item = &'static [u8]> + '_ {
        [
            self.disable_events.then_some(EVENT_PREFIX),
            self.rename.as_ref().map(|_| ALTER_PREFIX),
        ]
        .into_iter()
        .flatten()
    }

    /// Filter the next bytes into `out`.
    pub fn push(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        let longest = self.prefixes().map(<[u8]>::len).max().unwrap_or(0);
        while !input.is_empty() {
            match &mut self.mode {
                Mode::Pass => match input.iter().position(|b| *b == b'\n') {
                    Some(i) => {
                        out.extend_from_slice(&input[..=i]);
                        input = &input[i + 1..];
                        self.mode = Mode::Start(Vec::new());
                    }
                    None => {
                        out.extend_from_slice(input);
                        input = &[];
                    }
                },
                Mode::Start(seen) => {
                    let take = longest.saturating_sub(seen.len()).max(1).min(input.len());
                    let part = &input[..take];
                    if let Some(i) = part.iter().position(|b| *b == b'\n') {
                        out.extend_from_slice(seen);
                        out.extend_from_slice(&part[..=i]);
                        input = &input[i + 1..];
                        seen.clear();
                        continue;
                    }
                    seen.extend_from_slice(part);
                    input = &input[take..];
                    let seen = std::mem::take(seen);
                    self.mode = self.classify(seen, out);
                }
                Mode::Hold(line) => match input.iter().position(|b| *b == b'\n') {
                    Some(i) => {
                        line.extend_from_slice(&input[..=i]);
                        input = &input[i + 1..];
                        let line = std::mem::take(line);
                        self.emit(line, out);
                        self.mode = Mode::Start(Vec::new());
                    }
                    None => {
                        line.extend_from_slice(input);
                        input = &[];
                        if line.len() > HOLD_LIMIT {
                            out.extend_from_slice(line);
                            self.mode = Mode::Pass;
                        }
                    }
                },
            }
        }
    }

    /// What the start of a line makes of it: held (a prefix matched),
    /// still undecided, or passed (written out).
    fn classify(&self, seen: Vec<u8>, out: &mut Vec<u8>) -> Mode {
        if self.prefixes().any(|p| seen.starts_with(p)) {
            Mode::Hold(seen)
        } else if self.prefixes().any(|p| p.starts_with(&seen)) {
            Mode::Start(seen)
        } else {
            out.extend_from_slice(&seen);
            Mode::Pass
        }
    }

    /// The end of the input: flush what is held.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        match std::mem::replace(&mut self.mode, Mode::Pass) {
            Mode::Start(seen) => out.extend_from_slice(&seen),
            Mode::Pass => {}
            Mode::Hold(line) => self.emit(line, out),
        }
        self.mode = Mode::Start(Vec::new());
    }

    fn emit(&mut self, line: Vec<u8>, out: &mut Vec<u8>) {
        if line.starts_with(EVENT_PREFIX) {
            self.emit_event(line, out);
        } else {
            self.emit_alter(line, out);
        }
    }

    fn emit_event(&mut self, line: Vec<u8>, out: &mut Vec<u8>) {
        const EVENT: &[u8] = b" EVENT ";
        const ENABLED: &[u8] = b" PRESERVE ENABLE";
        let at = find(&line, EVENT)
            .and_then(|e| find(&line[e..], ENABLED).map(|p| e + p + b" PRESERVE ".len()));
        match at {
            Some(p) if self.disable_events => {
                out.extend_from_slice(&line[..p]);
                out.extend_from_slice(b"DISABLE");
                out.extend_from_slice(&line[p + b"ENABLE".len()..]);
                self.disabled += 1;
            }
            _ => out.extend_from_slice(&line),
        }
    }

    /// `ALTER DATABASE `<from>` …` → `ALTER DATABASE `<to>` …`.
    fn emit_alter(&mut self, line: Vec<u8>, out: &mut Vec<u8>) {
        let rest = &line[ALTER_PREFIX.len()..];
        match &self.rename {
            Some((from, to)) if rest.starts_with(from) && rest.get(from.len()) == Some(&b' ') => {
                out.extend_from_slice(ALTER_PREFIX);
                out.extend_from_slice(to);
                out.extend_from_slice(&rest[from.len()..]);
                self.renamed += 1;
            }
            _ => out.extend_from_slice(&line),
        }
    }
}

/// A name quoted as the dump tool quotes it (backticks, doubled inside).
fn quote(name: &str) -> Vec<u8> {
    format!("`{}`", name.replace('`', "``")).into_bytes()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests;
