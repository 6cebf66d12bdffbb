//! What a restore sends to SQL Server (the wire contract's "Restores"
//! section), and the pure part: the `MOVE` clauses planned from `RESTORE
//! FILELISTONLY`.

use tiberius::Row;

/// R1: the backup's files (@P1 = the file).
pub const FILELIST: &str = "RESTORE FILELISTONLY FROM DISK = @P1";
/// R2: where the instance puts new data and log files.
pub const DEFAULT_PATHS: &str = "SELECT CAST(SERVERPROPERTY('InstanceDefaultDataPath') AS \
     nvarchar(260)) AS data_path, CAST(SERVERPROPERTY('InstanceDefaultLogPath') AS \
     nvarchar(260)) AS log_path";

/// One file of the backup set (a row of `RESTORE FILELISTONLY`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupFile {
    /// `LogicalName`.
    pub logical: String,
    /// `PhysicalName` on the source server.
    pub physical: String,
    /// `Type`: `D` data, `L` log, `S` FILESTREAM/memory-optimized, `F` full-text.
    pub kind: String,
}

/// One `MOVE @logical TO @physical`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Move {
    /// The logical name in the backup.
    pub logical: String,
    /// The new file (or directory, for `S`/`F`).
    pub physical: String,
}

/// R3: `RESTORE DATABASE @P1 FROM DISK = @P2 WITH CHECKSUM, STATS = 5`, one
/// `MOVE @P<n> TO @P<n+1>` per file (values bound), and `REPLACE` only when
/// asked.
pub fn restore_statement(moves: usize, replace: bool) -> String {
    let mut s = String::from("RESTORE DATABASE @P1 FROM DISK = @P2 WITH CHECKSUM, STATS = 5");
    for i in 0..moves {
        s.push_str(&format!(", MOVE @P{} TO @P{}", 3 + 2 * i, 4 + 2 * i));
    }
    if replace {
        s.push_str(", REPLACE");
    }
    s
}

/// R4: the restored database's tables and rows (the name is bracket-quoted:
/// a three-part name cannot be bound).
pub fn figures_statement(database: &str) -> String {
    let db = bracket(database);
    format!(
        "SELECT s.name AS schema_name, t.name AS table_name, SUM(p.rows) AS row_count FROM \
         {db}.sys.tables t JOIN {db}.sys.schemas s ON s.schema_id = t.schema_id JOIN \
         {db}.sys.partitions p ON p.object_id = t.object_id AND p.index_id IN (0, 1) GROUP BY \
         s.name, t.name ORDER BY s.name, t.name"
    )
}

/// R5: drop the half-restored database (SQL Server 2016+).
pub fn drop_statement(database: &str) -> String {
    format!("DROP DATABASE IF EXISTS {}", bracket(database))
}

/// `[name]` with `]` doubled.
pub fn bracket(name: &str) -> String {
    format!("[{}]", name.replace(']', "]]"))
}

/// Where each file of the backup goes: `<dir>/<database>_<n>_<logical><ext>`
/// with the data files (`.mdf` for the first, `.ndf` after), FILESTREAM and
/// full-text containers (no extension) in `data_dir` and the log files
/// (`.ldf`) in `log_dir`; a directory left unknown by the server is the one
/// the source's file was in. Logical names keep `[A-Za-z0-9_-]`, other
/// characters become `_`, so a file name never leaves its directory.
pub fn plan_moves(
    files: &[BackupFile],
    database: &str,
    data_dir: Option<&str>,
    log_dir: Option<&str>,
) -> Vec<Move> {
    let mut data_seen = 0;
    files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let (dir, ext) = match f.kind.as_str() {
                "L" => (log_dir, ".ldf"),
                "D" => {
                    data_seen += 1;
                    (data_dir, if data_seen == 1 { ".mdf" } else { ".ndf" })
                }
                _ => (data_dir, ""),
            };
            let dir = dir
                .filter(|d| !d.is_empty())
                .map(str::to_owned)
                .unwrap_or_else(|| parent(&f.physical));
            let safe: String = f
                .logical
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            Move {
                logical: f.logical.clone(),
                physical: join(&dir, &format!("{database}_{i}_{safe}{ext}")),
            }
        })
        .collect()
}

/// The directory part of a server path (`\` or `/` separated).
fn parent(path: &str) -> String {
    match path.rfind(['\\', '/']) {
        Some(i) => path[..i].to_owned(),
        None => String::new(),
    }
}

/// `dir` + separator + `name`, with the separator the server's path uses.
fn join(dir: &str, name: &str) -> String {
    let sep = if dir.contains('\\') { '\\' } else { '/' };
    if dir.is_empty() {
        name.to_owned()
    } else if dir.ends_with(['\\', '/']) {
        format!("{dir}{name}")
    } else {
        format!("{dir}{sep}{name}")
    }
}

/// A text column by name.
pub fn text(row: &Row, name: &str) -> Option<String> {
    row.try_get::<&str, _>(name)
        .ok()
        .flatten()
        .map(str::to_owned)
}

#[cfg(test)]
mod tests;
