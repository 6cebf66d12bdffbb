//! The SQL client (`mariadb`/`mysql`) with the job's defaults file: batches of
//! one-line statements whose results (or errors) come back per statement, and
//! the restore of a dump file.
//!
//! A batch goes in on stdin with `--batch --skip-column-names --force`, each
//! statement preceded by a marker `SELECT`, so the rows of statement *i* are
//! the lines after marker *i*, and an `ERROR … at line N` on stderr names the
//! statement that failed: one that may fail (no privilege for `SHOW MASTER
//! STATUS`, say) does not sink the others.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;

use async_compression::tokio::bufread::ZstdDecoder;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio_util::io::InspectReader;

use super::Error;
use super::messages;
use super::process::{Spawn, describe_exit};
use super::rewrite::DumpFilter;
use crate::executor::ProgressHandle;
use crate::executor::capture::{self, SharedBounded};
use crate::executor::groups::ProcessGroups;

const MARKER: &str = "baton-dump-section:";
/// Bytes of stdout kept from a query batch.
const MAX_QUERY_OUTPUT: usize = 16 * 1024 * 1024;

/// Rows of one statement; `None` is SQL NULL.
pub(crate) type Rows = Vec<Vec<Option<String>>>;

/// The SQL client of one job.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    /// The program.
    pub program: PathBuf,
    /// The job's defaults file.
    pub defaults: PathBuf,
    /// Its environment.
    pub env: Vec<(OsString, OsString)>,
    /// Where its process groups are recorded.
    pub groups: ProcessGroups,
    /// Bytes of stderr kept.
    pub max_stderr: usize,
}

impl Client {
    fn spawn(&self, args: Vec<OsString>) -> Result<super::process::Proc, Error> {
        Spawn {
            program: &self.program,
            defaults: &self.defaults,
            args,
            stdin: true,
            env: &self.env,
            groups: &self.groups,
        }
        .start()
    }

    /// Run `statements` (one line each) in `database` (or none); each gets its
    /// rows or its error message. Fails as a whole when the client cannot run
    /// or connect.
    pub async fn query(
        &self,
        database: Option<&str>,
        statements: &[String],
    ) -> Result<Vec<Result<Rows, String>>, Error> {
        let mut script = String::new();
        for (i, sql) in statements.iter().enumerate() {
            let sql = sql.replace(['\n', '\r'], " ");
            script.push_str(&format!("SELECT '{MARKER}{i}';\n{sql};\n"));
        }
        let mut args: Vec<OsString> = ["--batch", "--skip-column-names", "--force"]
            .iter()
            .map(OsString::from)
            .collect();
        args.push("--default-character-set=utf8mb4".into());
        if let Some(db) = database {
            args.push(format!("--database={db}").into());
        }
        let mut proc = self.spawn(args)?;
        let stdin = proc.child.stdin.take();
        let stdout = proc.child.stdout.take();
        let stderr = proc.child.stderr.take();
        let out = SharedBounded::new(MAX_QUERY_OUTPUT);
        let err = SharedBounded::new(self.max_stderr);
        let tasks = [
            stdout.map(|s| tokio::spawn(capture::drain(s, out.clone(), ProgressHandle::new(0)))),
            stderr.map(|s| tokio::spawn(capture::drain(s, err.clone(), ProgressHandle::new(0)))),
        ];
        if let Some(mut input) = stdin {
            // A client that died early closes the pipe; its stderr says why.
            let _ = input.write_all(script.as_bytes()).await;
            let _ = input.shutdown().await;
        }
        let status = proc.child.wait().await;
        for t in tasks.into_iter().flatten() {
            let _ = t.await;
        }
        let stderr = err.get().to_string_lossy();
        let stdout = out.get().to_string_lossy();
        let status = status.map_err(|e| Error::io("cannot wait for the SQL client", e))?;
        parse_batch(statements.len(), &stdout, &stderr, status)
    }

    /// Load the zstd dump at `dump` into `database` through `filter`, streamed
    /// in chunks (bounded memory); `progress(read_sql_bytes)` is called after
    /// each chunk. What was read is hashed on the way: the file's bytes and
    /// the SQL's, as the dump's manifest records them.
    pub async fn restore(
        &self,
        database: &str,
        dump: &Path,
        mut filter: DumpFilter,
        mut progress: impl FnMut(u64),
    ) -> Result<Loaded, Error> {
        let file = tokio::fs::File::open(dump)
            .await
            .map_err(|e| Error::io(format!("cannot open {}", dump.display()), e))?;
        let mut file_hash = Sha256::new();
        let mut sql_hash = Sha256::new();
        let hashed = InspectReader::new(file, |bytes: &[u8]| file_hash.update(bytes));
        let mut sql = ZstdDecoder::new(BufReader::with_capacity(256 * 1024, hashed));
        let args: Vec<OsString> = vec![
            "--batch".into(),
            "--default-character-set=utf8mb4".into(),
            "--max-allowed-packet=1G".into(),
            format!("--database={database}").into(),
        ];
        let mut proc = self.spawn(args)?;
        let stdin = proc.child.stdin.take();
        let out = SharedBounded::new(self.max_stderr);
        let err = SharedBounded::new(self.max_stderr);
        let tasks = [
            proc.child
                .stdout
                .take()
                .map(|s| tokio::spawn(capture::drain(s, out.clone(), ProgressHandle::new(0)))),
            proc.child
                .stderr
                .take()
                .map(|s| tokio::spawn(capture::drain(s, err.clone(), ProgressHandle::new(0)))),
        ];
        let mut fed = Fed::default();
        if let Some(input) = stdin {
            fed = feed(&mut sql, input, &mut filter, &mut sql_hash, &mut progress).await;
        }
        let feed_error = fed
            .error
            .map(|e| Error::io(format!("cannot read {}", dump.display()), e));
        let (total, fed_all) = (fed.total, fed.all);
        drop(sql);
        let status = proc.child.wait().await;
        for t in tasks.into_iter().flatten() {
            let _ = t.await;
        }
        let status = status.map_err(|e| Error::io("cannot wait for the SQL client", e))?;
        let stderr = err.get().to_string_lossy();
        if !status.success() {
            return Err(client_error(&stderr, status));
        }
        if let Some(e) = feed_error {
            return Err(e);
        }
        if !fed_all {
            return Err(Error::Client {
                message: "the SQL client stopped reading the dump before its end".into(),
                retryable: true,
            });
        }
        Ok(Loaded {
            sha256: hex::encode(file_hash.finalize()),
            sha256_sql: hex::encode(sql_hash.finalize()),
            sql_bytes: total,
            filter,
        })
    }
}

/// How feeding the client went.
#[derive(Default)]
struct Fed {
    /// Bytes of SQL written.
    total: u64,
    /// Whether the whole dump went in.
    all: bool,
    /// Why reading the dump failed.
    error: Option<std::io::Error>,
}

/// Feed `sql` through `filter` into the client's stdin in chunks, hashing
/// the SQL; a broken pipe ends it (the client stopped on an error: its
/// status and stderr tell which).
async fn feed(
    sql: &mut (impl tokio::io::AsyncRead + Unpin),
    mut input: impl tokio::io::AsyncWrite + Unpin,
    filter: &mut DumpFilter,
    sql_hash: &mut Sha256,
    progress: &mut impl FnMut(u64),
) -> Fed {
    let mut fed = Fed::default();
    let mut buf = vec![0u8; super::stream::CHUNK];
    let mut filtered = Vec::with_capacity(super::stream::CHUNK + 1024);
    loop {
        let n = match sql.read(&mut buf).await {
            Ok(n) => n,
            Err(e) => {
                fed.error = Some(e);
                break;
            }
        };
        sql_hash.update(&buf[..n]);
        filtered.clear();
        if n == 0 {
            filter.finish(&mut filtered);
        } else {
            filter.push(&buf[..n], &mut filtered);
        }
        if input.write_all(&filtered).await.is_err() {
            break;
        }
        if n == 0 {
            fed.all = true;
            break;
        }
        fed.total += n as u64;
        progress(fed.total);
    }
    let _ = input.shutdown().await;
    fed
}

/// What [`Client::restore`] read and loaded.
#[derive(Debug)]
pub(crate) struct Loaded {
    /// sha256 of the file's bytes (hex).
    pub sha256: String,
    /// sha256 of the SQL (hex).
    pub sha256_sql: String,
    /// Bytes of SQL.
    pub sql_bytes: u64,
    /// The filter, with its counts.
    pub filter: DumpFilter,
}

fn client_error(stderr: &str, status: ExitStatus) -> Error {
    let said = messages::summary(stderr);
    let message = if said.is_empty() {
        format!("the SQL client {}", describe_exit(status))
    } else {
        format!("the SQL client {}: {said}", describe_exit(status))
    };
    Error::Client {
        retryable: messages::retryable(stderr),
        message,
    }
}

/// Split a batch's output into per-statement results.
pub(crate) fn parse_batch(
    count: usize,
    stdout: &str,
    stderr: &str,
    status: ExitStatus,
) -> Result<Vec<Result<Rows, String>>, Error> {
    // Errors by statement: statement i is on line 2i + 2 of the script.
    let mut failed: BTreeMap<usize, String> = BTreeMap::new();
    let mut unattributed = Vec::new();
    for line in stderr.lines().filter(|l| l.starts_with("ERROR ")) {
        let at = line
            .split_once(" at line ")
            .and_then(|(_, rest)| rest.split(':').next())
            .and_then(|n| n.trim().parse::<usize>().ok());
        match at {
            Some(n) if n >= 2 && n % 2 == 0 && n / 2 - 1 < count => {
                failed.entry(n / 2 - 1).or_insert_with(|| line.to_owned());
            }
            _ => unattributed.push(line),
        }
    }
    let conn_lost = failed.values().any(|m| {
        messages::error_codes(m)
            .iter()
            .any(|c| (2000..3000).contains(c))
    });
    if !unattributed.is_empty() || conn_lost || (!status.success() && failed.is_empty()) {
        return Err(client_error(stderr, status));
    }
    let mut results: Vec<Result<Rows, String>> = (0..count).map(|_| Ok(Vec::new())).collect();
    let mut current: Option<usize> = None;
    let mut seen = vec![false; count];
    for line in stdout.lines() {
        if let Some(i) = line
            .strip_prefix(MARKER)
            .and_then(|n| n.parse::<usize>().ok())
            && i < count
        {
            seen[i] = true;
            current = Some(i);
            continue;
        }
        if let Some(Ok(rows)) = current.and_then(|i| results.get_mut(i)) {
            rows.push(line.split('\t').map(unescape).collect());
        }
    }
    for (i, result) in results.iter_mut().enumerate() {
        if let Some(msg) = failed.remove(&i) {
            *result = Err(msg);
        } else if !seen[i] {
            *result = Err("the SQL client did not run this statement".into());
        }
    }
    Ok(results)
}

/// Undo `--batch` escaping; `NULL` is SQL NULL.
pub(crate) fn unescape(field: &str) -> Option<String> {
    if field == "NULL" {
        return None;
    }
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('0') => out.push('\0'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    Some(out)
}

/// Quote an identifier with backticks.
pub(crate) fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// Quote a string literal.
pub(crate) fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// The only column of the only row, if any.
pub(crate) fn scalar(result: &Result<Rows, String>) -> Option<String> {
    result.as_ref().ok()?.first()?.first()?.clone()
}

#[cfg(all(test, unix))]
mod tests;
