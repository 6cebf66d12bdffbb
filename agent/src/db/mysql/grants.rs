//! What `baton-agent validate` says about a MySQL/MariaDB login's grants:
//! beyond a least-privilege dump account, a restore check (`dump --verify`)
//! needs `ALL` on the scratch databases (`baton_verify_<job>_<hex>`) and the
//! right to restore objects of another definer (`SET USER` on MariaDB,
//! `SET_USER_ID`/`SET_ANY_DEFINER` on MySQL 8; `SUPER` does both), and on
//! MariaDB `mariadb-dump --routines` needs `SELECT ON mysql.proc` for
//! routines of other definers.
//!
//! The check is advisory: `SHOW GRANTS FOR CURRENT_USER()` is read and
//! matched ([`missing`], pure); a database that cannot be reached at
//! validate time, or grants that come through roles, give a warning, never
//! a failure.

use std::time::Duration;

use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use thiserror::Error;

use super::connection::{MysqlConnection, opts};

/// A scratch database name as the restore check makes them.
const SCRATCH_SAMPLE: &str = "baton_verify_1_0a1b2c3d";

/// Why the grants could not be read.
#[derive(Debug, Error)]
pub enum Error {
    /// The password could not be read.
    #[error("cannot read the password: {0}")]
    Password(String),
    /// No connection within the connect timeout.
    #[error("no connection within {0:?}")]
    Timeout(Duration),
    /// The driver or the server refused.
    #[error("{0}")]
    Driver(#[from] mysql_async::Error),
}

/// A grant a login lacks, as the text to grant it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// `ALL ON \`baton\_verify\_%\`.*`, ...
    pub grant: &'static str,
    /// What needs it.
    pub why: &'static str,
}

/// The grants missing from `grants` (lines of `SHOW GRANTS`) on a server
/// whose `VERSION()` is `version`.
pub fn missing(grants: &[String], version: &str) -> Vec<Missing> {
    let mariadb = version.to_ascii_lowercase().contains("mariadb");
    let parsed: Vec<Grant> = grants.iter().filter_map(|g| Grant::parse(g)).collect();
    let mut out = Vec::new();
    let scratch = parsed
        .iter()
        .any(|g| g.all() && g.covers_database(SCRATCH_SAMPLE));
    if !scratch {
        out.push(Missing {
            grant: "ALL ON `baton\\_verify\\_%`.*",
            why: "dump --verify restores into scratch databases baton_verify_<job>_<hex>",
        });
    }
    let definer = ["SET USER", "SET_USER_ID", "SET_ANY_DEFINER", "SUPER"];
    let set_user = parsed
        .iter()
        .any(|g| g.global() && (g.all() || definer.iter().any(|p| g.has(p))));
    if !set_user {
        out.push(if mariadb {
            Missing {
                grant: "SET USER ON *.*",
                why: "dump --verify restores views, triggers, routines and events of another definer",
            }
        } else {
            Missing {
                grant: "SET_USER_ID ON *.* (MySQL 8.0; SET_ANY_DEFINER from 8.2)",
                why: "dump --verify restores views, triggers, routines and events of another definer",
            }
        });
    }
    let proc = parsed.iter().any(|g| {
        (g.all() || g.has("SELECT"))
            && (g.global() || g.target == "`mysql`.*" || g.target == "`mysql`.`proc`")
    });
    if mariadb && !proc {
        out.push(Missing {
            grant: "SELECT ON mysql.proc",
            why: "mariadb-dump --routines fails (exit 2) on a routine of another definer that \
                  the login may EXECUTE",
        });
    }
    out
}

/// One `GRANT <privileges> ON <target> TO ...` line.
struct Grant {
    privileges: Vec<String>,
    target: String,
}

impl Grant {
    fn parse(line: &str) -> Option<Grant> {
        let rest = line.trim().strip_prefix("GRANT ")?;
        let (privileges, rest) = rest.split_once(" ON ")?;
        let (target, _) = rest.split_once(" TO ")?;
        Some(Grant {
            privileges: split_privileges(privileges),
            target: target.trim().to_owned(),
        })
    }

    fn all(&self) -> bool {
        self.has("ALL PRIVILEGES") || self.has("ALL")
    }

    fn has(&self, privilege: &str) -> bool {
        self.privileges
            .iter()
            .any(|p| p.eq_ignore_ascii_case(privilege))
    }

    fn global(&self) -> bool {
        self.target == "*.*"
    }

    /// Whether the target is `*.*` or `<pattern>.*` matching `database`.
    fn covers_database(&self, database: &str) -> bool {
        if self.global() {
            return true;
        }
        let Some(db) = self.target.strip_suffix(".*") else {
            return false;
        };
        let db = db
            .strip_prefix('`')
            .and_then(|d| d.strip_suffix('`'))
            .unwrap_or(db)
            .replace("``", "`");
        like(&db, database)
    }
}

/// Privileges separated by commas outside parentheses (column lists), each
/// without its column list.
fn split_privileges(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut depth, mut current) = (0usize, String::new());
    for c in text.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => out.push(std::mem::take(&mut current)),
            _ if depth == 0 => current.push(c),
            _ => {}
        }
    }
    out.push(current);
    out.into_iter()
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}

/// SQL `LIKE` with `%`, `_` and `\` as the escape (how grant database
/// patterns match).
fn like(pattern: &str, text: &str) -> bool {
    fn go(p: &[char], t: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('%', rest)) => (0..=t.len()).any(|i| go(rest, &t[i..])),
            Some(('_', rest)) => !t.is_empty() && go(rest, &t[1..]),
            Some(('\\', rest)) if !rest.is_empty() => {
                t.first() == Some(&rest[0]) && go(&rest[1..], &t[1..])
            }
            Some((c, rest)) => t.first() == Some(c) && go(rest, &t[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    go(&p, &t)
}

/// Connect as `conn` and read its grants and the server version.
pub async fn read(conn: &MysqlConnection) -> Result<(Vec<String>, String), Error> {
    let password = conn.password.read().map_err(Error::Password)?;
    let connect = Conn::new(opts(conn, &password));
    let mut c = tokio::time::timeout(conn.connect_timeout, connect)
        .await
        .map_err(|_| Error::Timeout(conn.connect_timeout))??;
    let grants: Vec<String> = c.query("SHOW GRANTS FOR CURRENT_USER()").await?;
    let version: Option<String> = c.query_first("SELECT VERSION()").await?;
    let _ = c.disconnect().await;
    Ok((grants, version.unwrap_or_default()))
}

/// The warnings `validate` prints for one connection.
pub async fn warnings(conn: &MysqlConnection) -> Vec<String> {
    let name = &conn.name;
    match read(conn).await {
        Err(e) => vec![format!(
            "connection {name}: cannot check the grants dumps need ({e}); the database may be \
             down now — this check is advisory and does not fail validate"
        )],
        Ok((grants, version)) => missing(&grants, &version)
            .into_iter()
            .map(|m| {
                format!(
                    "connection {name}: login {} lacks {}: {} (grants through roles are not \
                     followed)",
                    conn.user, m.grant, m.why
                )
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests;
