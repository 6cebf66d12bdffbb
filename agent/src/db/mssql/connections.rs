//! The agent's SQL Server connections, shared by the `procedure`, `sql` and
//! `dump` executors.

use std::collections::BTreeMap;

use baton_proto::{ConnectionInfo, JobSpec};

use crate::db::mssql::connection::MssqlConnection;

/// SQL Server connections by name, and the fleet id.
#[derive(Debug, Clone, Default)]
pub struct Connections {
    map: BTreeMap<String, MssqlConnection>,
    fleet: String,
}

impl Connections {
    /// The connections (fleet id empty until [`Connections::with_fleet`]).
    pub fn new(list: impl IntoIterator<Item = MssqlConnection>) -> Self {
        Connections {
            map: list.into_iter().map(|c| (c.name.clone(), c)).collect(),
            fleet: String::new(),
        }
    }

    /// With the controller's fleet id (part of lock names and ledger keys).
    pub fn with_fleet(mut self, fleet: &str) -> Self {
        self.fleet = fleet.to_owned();
        self
    }

    /// The fleet id.
    pub fn fleet(&self) -> &str {
        &self.fleet
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// A connection's settings, or why there is none.
    pub fn get(&self, name: &str) -> Result<&MssqlConnection, String> {
        self.map.get(name).ok_or_else(|| {
            format!("connection {name:?} is not configured on this agent as an mssql connection")
        })
    }

    /// Whether the job's connection is one of these.
    pub fn handles(&self, spec: &JobSpec) -> bool {
        spec.connection().is_some_and(|c| self.map.contains_key(c))
    }

    /// What the agent advertises on poll.
    pub fn advertised(&self) -> Vec<ConnectionInfo> {
        self.map
            .keys()
            .map(|name| ConnectionInfo {
                name: name.clone(),
                kind: "mssql".into(),
            })
            .collect()
    }

    /// All connections.
    pub fn iter(&self) -> impl Iterator<Item = &MssqlConnection> {
        self.map.values()
    }
}
