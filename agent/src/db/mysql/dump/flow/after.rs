//! Steps 8 and 9 of a dump: the source snapshot, the binlog position and the
//! restore check (a child of [`super`] so it shares the run's private state).

use std::path::Path;
use std::time::Duration;

use baton_proto::Progress;
use tokio::time::Instant;
use tracing::warn;

use super::super::client::{Client, ident, scalar};
use super::super::manifest::Binlog;
use super::super::rewrite::DumpFilter;
use super::super::stream::{self, Tally, human_bytes};
use super::super::verify::{self, ObjectCounts, Verdict};
use super::super::{Error, messages};
use super::{PROGRESS_EVERY, Probe, Run, Written, remove_quietly};
use crate::db::common::paths;

/// How long dropping the scratch database may take (also after a stop).
const DROP_TIMEOUT: Duration = Duration::from_secs(30);

impl Run<'_> {
    /// Steps 8 and 9. A stop or a failure from here on removes the dump.
    pub(super) async fn after_dump(
        &mut self,
        client: &Client,
        written: &Written,
        probe: &Probe,
        no_data: bool,
    ) -> Result<(Option<Binlog>, Option<Verdict>), Error> {
        let dump = written.layout.finished();
        let after = self
            .source_and_check(client, &written.tally, probe, &dump, no_data)
            .await;
        if after.is_err() {
            remove_quietly(&dump);
            let _ = paths::fsync_dir(&written.layout.dir);
        }
        after
    }

    /// The source snapshot, the binlog position and the restore check.
    async fn source_and_check(
        &mut self,
        client: &Client,
        tally: &Tally,
        probe: &Probe,
        dump: &Path,
        no_data: bool,
    ) -> Result<(Option<Binlog>, Option<Verdict>), Error> {
        let database = self.spec.database.as_str();
        let source = if self.spec.verify {
            self.note(format!("taking the source's checksums of {database}"));
            let ignored = ignored_tables(&self.conn.dump.extra_flags, database);
            Some(
                self.stop
                    .run(verify::snapshot(client, database, &ignored, !no_data))
                    .await?,
            )
        } else {
            None
        };
        let binlog = self.binlog(client, tally).await?;
        let Some(source) = source else {
            return Ok((binlog, None));
        };
        let verdict = self
            .restore_check(client, &source, probe, dump, no_data)
            .await?;
        Ok((binlog, Some(verdict)))
    }

    async fn binlog(&mut self, client: &Client, tally: &Tally) -> Result<Option<Binlog>, Error> {
        if let Some(pos) = stream::dump_position(&tally.edges) {
            return Ok(Some(Binlog {
                file: pos.file.as_ref().map(|(f, _)| f.clone()),
                position: pos.file.map(|(_, p)| p),
                gtid: pos.gtid,
                source: "dump".into(),
            }));
        }
        let statements = vec![
            "SHOW MASTER STATUS".to_owned(),
            "SELECT @@GLOBAL.gtid_binlog_pos".to_owned(),
            "SELECT @@GLOBAL.gtid_executed".to_owned(),
        ];
        let r = match self.stop.run(client.query(None, &statements)).await {
            Ok(r) => r,
            Err(e @ Error::Stopped(_)) => return Err(e),
            Err(e) => {
                self.warnings.push(format!("binlog position unknown: {e}"));
                return Ok(None);
            }
        };
        let row = r
            .first()
            .and_then(|x| x.as_ref().ok())
            .and_then(|rows| rows.first());
        let file = row.and_then(|row| row.first().cloned().flatten());
        let position = row
            .and_then(|row| row.get(1).cloned().flatten())
            .and_then(|p| p.parse().ok());
        let gtid = r
            .get(1)
            .and_then(scalar)
            .or_else(|| r.get(2).and_then(scalar))
            .filter(|g| !g.is_empty());
        if file.is_none() && gtid.is_none() {
            return Ok(None);
        }
        Ok(Some(Binlog {
            file,
            position,
            gtid,
            source: "server_after_dump".into(),
        }))
    }

    async fn restore_check(
        &mut self,
        client: &Client,
        source: &verify::Snapshot,
        probe: &Probe,
        dump: &Path,
        no_data: bool,
    ) -> Result<Verdict, Error> {
        let started = Instant::now();
        let scratch = format!(
            "baton_verify_{}_{:08x}",
            self.job.job_id,
            rand::random::<u32>()
        );
        self.note(format!("restoring into scratch database {scratch}"));
        // Dropped when created, or when the CREATE got no answer (it may
        // exist); not when the server refused it: there is nothing to drop.
        let checked = match self.stop.run(create_scratch(client, probe, &scratch)).await {
            Ok(Ok(())) => {
                let compared = self
                    .stop
                    .run(self.restore_and_compare(client, source, dump, &scratch, no_data))
                    .await;
                self.drop_scratch(client, &scratch, true).await;
                compared
            }
            Ok(Err(refused)) => Err(refused),
            Err(e) => {
                self.drop_scratch(client, &scratch, false).await;
                Err(e)
            }
        };
        let mut verdict = Verdict {
            checksums: !no_data,
            objects: ObjectCounts {
                routines: source.routines,
                triggers: source.triggers,
                views: source.views,
                events: source.events,
            },
            tables: source.tables.clone(),
            scratch_database: scratch,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            ..Verdict::default()
        };
        match checked {
            Ok((compared, mismatches)) => {
                verdict.ok = mismatches.is_empty();
                verdict.tables_compared = compared;
                verdict.mismatches = mismatches;
                Ok(verdict)
            }
            // A restore that fails for good (SQL or privilege error) is a verdict.
            Err(
                e @ (Error::Client {
                    retryable: false, ..
                }
                | Error::Setup(_)),
            ) => {
                verdict.error = Some(e.to_string());
                Ok(verdict)
            }
            Err(e) => Err(e),
        }
    }

    /// Drop the scratch database (`created`, or maybe created); a failure is
    /// a warning naming it, to be dropped by hand.
    async fn drop_scratch(&mut self, client: &Client, scratch: &str, created: bool) {
        let drop_sql = vec![format!("DROP DATABASE IF EXISTS {}", ident(scratch))];
        let dropped = tokio::time::timeout(DROP_TIMEOUT, client.query(None, &drop_sql)).await;
        let drop_error = match dropped {
            Ok(Ok(r)) => r.into_iter().next().and_then(Result::err),
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some("no answer in 30 s".into()),
        };
        let Some(e) = drop_error else { return };
        warn!(scratch = %scratch, error = %e, created, "Cannot drop the scratch database; drop it by hand");
        let what = if created {
            "was created but"
        } else {
            "may exist and"
        };
        self.warnings.push(format!(
            "scratch database {scratch} {what} could not be dropped: {e}; drop it by hand"
        ));
    }

    async fn restore_and_compare(
        &self,
        client: &Client,
        source: &verify::Snapshot,
        dump: &Path,
        scratch: &str,
        no_data: bool,
    ) -> Result<(usize, Vec<String>), Error> {
        let progress = self.job.progress.clone();
        let mut next = Instant::now();
        let filter = DumpFilter::new(true, Some((&self.spec.database, scratch)));
        client
            .restore(scratch, dump, filter, |read| {
                if Instant::now() >= next {
                    next = Instant::now() + PROGRESS_EVERY;
                    progress.set_progress(Progress {
                        percent: None,
                        message: format!("restore check: {} of SQL restored", human_bytes(read)),
                    });
                }
            })
            .await?;
        self.note("comparing the restored copy with the source".into());
        let restored = verify::snapshot(client, scratch, &[], !no_data).await?;
        Ok(verify::compare(source, &restored, !no_data))
    }
}

/// `CREATE DATABASE <scratch>` with the source's character set. The outer
/// error: no answer (stopped, connection lost: it may exist); the inner: the
/// server refused it (it does not exist).
async fn create_scratch(
    client: &Client,
    probe: &Probe,
    scratch: &str,
) -> Result<Result<(), Error>, Error> {
    let charset = probe
        .charset
        .as_ref()
        .filter(|(cs, coll)| plain(cs) && plain(coll))
        .map_or(String::new(), |(cs, coll)| {
            format!(" CHARACTER SET {cs} COLLATE {coll}")
        });
    let create = vec![format!("CREATE DATABASE {}{charset}", ident(scratch))];
    Ok(
        match client.query(None, &create).await?.into_iter().next() {
            Some(Err(e)) => Err(Error::Client {
                retryable: messages::retryable(&e),
                message: format!(
                    "the restore check did not run: the scratch database {scratch} could not be \
                 created: {e} (the login needs ALL ON `baton\\_verify\\_%`.*)"
                ),
            }),
            _ => Ok(()),
        },
    )
}

/// Tables of `database` left out with `--ignore-table=<database>.<table>`.
pub(crate) fn ignored_tables(flags: &[String], database: &str) -> Vec<String> {
    flags
        .iter()
        .filter_map(|f| f.strip_prefix("--ignore-table="))
        .filter_map(|t| t.split_once('.'))
        .filter(|(d, _)| *d == database)
        .map(|(_, t)| t.to_owned())
        .collect()
}

/// Whether a character set or collation name can be spliced as is.
fn plain(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}
