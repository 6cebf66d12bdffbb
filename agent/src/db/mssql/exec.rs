//! The `procedure` and `sql` kinds on SQL Server connections (being built).

use std::sync::Arc;

use baton_proto::{JobKind, JobSpec};

use super::Connections;
use crate::executor::{BoxFuture, Executor, Job, Outcome};

/// Runs `procedure` or `sql` jobs on this agent's SQL Server connections.
#[derive(Debug, Clone)]
pub struct MssqlExecutor {
    kind: JobKind,
    connections: Arc<Connections>,
}

impl MssqlExecutor {
    /// The `procedure` executor.
    pub fn procedure(connections: Arc<Connections>) -> Self {
        MssqlExecutor {
            kind: JobKind::Procedure,
            connections,
        }
    }

    /// The `sql` executor.
    pub fn sql(connections: Arc<Connections>) -> Self {
        MssqlExecutor {
            kind: JobKind::Sql,
            connections,
        }
    }
}

impl Executor for MssqlExecutor {
    fn kind(&self) -> JobKind {
        self.kind
    }

    fn available(&self) -> bool {
        !self.connections.is_empty()
    }

    fn handles(&self, spec: &JobSpec) -> bool {
        self.connections.handles(spec)
    }

    fn execute(&self, _job: Job) -> BoxFuture<'_, Outcome> {
        Box::pin(async { Outcome::failed(false, "SQL Server jobs are not built yet") })
    }
}
