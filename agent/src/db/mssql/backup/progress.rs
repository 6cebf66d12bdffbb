//! The backup's progress: tiberius does not surface the INFO messages of
//! `STATS = 5`, so a second connection asks
//! `sys.dm_exec_requests.percent_complete` of the backup's session every
//! second and publishes it for heartbeats. Polling never fails the backup: a
//! poll that fails is logged and the next one reconnects.

use std::convert::Infallible;

use baton_proto::Progress;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, warn};

use super::{PROGRESS_EVERY, sql};
use crate::db::mssql::connection::{MssqlClient, MssqlConnection};
use crate::executor::ProgressHandle;

/// The progress message for `percent` of `database`.
pub fn message(database: &str, percent: f32) -> String {
    // One decimal at most: 37.5 -> "37.5", 40.0 -> "40".
    let p = (percent * 10.0).round() / 10.0;
    format!("backing up {database}: {p} %")
}

/// Poll until dropped (the caller drops it when the backup ends); the first
/// poll comes after [`PROGRESS_EVERY`].
pub(super) async fn poll(
    conn: &MssqlConnection,
    spid: i16,
    database: &str,
    progress: ProgressHandle,
) -> Infallible {
    let mut ticks = tokio::time::interval_at(Instant::now() + PROGRESS_EVERY, PROGRESS_EVERY);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut client: Option<MssqlClient> = None;
    let mut last: Option<f32> = None;
    let mut warned = false;
    loop {
        ticks.tick().await;
        let c = match client.as_mut() {
            Some(c) => c,
            None => match conn.connect().await {
                Ok(c) => client.insert(c),
                Err(e) => {
                    if !warned {
                        warn!(error = %e, "Cannot open the progress connection");
                        warned = true;
                    }
                    continue;
                }
            },
        };
        match sql::percent(c, spid).await {
            Ok(Some(p)) => {
                if last != Some(p) {
                    debug!(percent = p, "Backup progress");
                    last = Some(p);
                }
                progress.set_progress(Progress {
                    percent: Some(p),
                    message: message(database, p),
                });
            }
            Ok(None) => {}
            Err(e) => {
                if !warned {
                    warn!(error = %e, "Cannot read the backup's progress");
                    warned = true;
                }
                client = None;
            }
        }
    }
}

#[cfg(test)]
mod tests;
