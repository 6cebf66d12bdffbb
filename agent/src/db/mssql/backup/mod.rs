//! The `dump` kind on SQL Server connections: native backups (being built).

use std::path::PathBuf;
use std::sync::Arc;

use baton_proto::{JobKind, JobSpec};

use super::Connections;
use crate::executor::{BoxFuture, Executor, Job, Outcome};

/// Runs `dump` jobs on SQL Server connections as `BACKUP DATABASE`.
#[derive(Debug, Clone)]
pub struct BackupExecutor {
    connections: Arc<Connections>,
    state_dir: PathBuf,
}

impl BackupExecutor {
    /// An executor for `connections`; `state_dir` is the agent's.
    pub fn new(connections: Arc<Connections>, state_dir: PathBuf) -> Self {
        BackupExecutor {
            connections,
            state_dir,
        }
    }

    /// The agent's state directory.
    pub fn state_dir(&self) -> &std::path::Path {
        &self.state_dir
    }
}

impl Executor for BackupExecutor {
    fn kind(&self) -> JobKind {
        JobKind::Dump
    }

    fn available(&self) -> bool {
        !self.connections.is_empty()
    }

    fn handles(&self, spec: &JobSpec) -> bool {
        self.connections.handles(spec)
    }

    fn execute(&self, _job: Job) -> BoxFuture<'_, Outcome> {
        Box::pin(async { Outcome::failed(false, "SQL Server backups are not built yet") })
    }
}
