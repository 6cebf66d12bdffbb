//! The agent's SQL Server connections, shared by the `procedure`, `sql` and
//! `dump` executors: by name, with the fleet id that database-side names
//! (lock, ledger key) carry ([`ByName`]).

use crate::db::common::connections::{ByName, Named};
use crate::db::mssql::connection::MssqlConnection;

/// SQL Server connections by name, and the fleet id.
pub type Connections = ByName<MssqlConnection>;

impl Named for MssqlConnection {
    fn name(&self) -> &str {
        &self.name
    }
}

impl Connections {
    /// A connection's settings, or why there is none.
    pub fn get(&self, name: &str) -> Result<&MssqlConnection, String> {
        self.lookup(name).ok_or_else(|| {
            format!("connection {name:?} is not configured on this agent as an mssql connection")
        })
    }

    /// What the agent advertises on poll.
    pub fn advertised(&self) -> Vec<baton_proto::ConnectionInfo> {
        self.advertised_as("mssql")
    }
}
