//! A map of an engine's connections by name, with the fleet id that
//! database-side names (lock, ledger key) carry, and what the agent
//! advertises on poll. MySQL keeps its pools in one, SQL Server its settings.

use std::collections::BTreeMap;

use baton_proto::{ConnectionInfo, JobSpec};

/// Something with a connection name.
pub trait Named {
    /// The connection name (what jobs refer to).
    fn name(&self) -> &str;
}

/// Connections by name, and the fleet id.
#[derive(Debug, Clone)]
pub struct ByName<T> {
    map: BTreeMap<String, T>,
    fleet: String,
}

impl<T> Default for ByName<T> {
    fn default() -> Self {
        ByName {
            map: BTreeMap::new(),
            fleet: String::new(),
        }
    }
}

impl<T: Named> ByName<T> {
    /// The connections (fleet id empty until [`ByName::with_fleet`]).
    pub fn new(list: impl IntoIterator<Item = T>) -> Self {
        ByName {
            map: list.into_iter().map(|c| (c.name().to_owned(), c)).collect(),
            fleet: String::new(),
        }
    }
}

impl<T> ByName<T> {
    /// With the controller's fleet id (part of lock names and ledger keys).
    pub fn with_fleet(mut self, fleet: &str) -> Self {
        self.fleet = fleet.to_owned();
        self
    }

    /// The fleet id (empty when unknown).
    pub fn fleet(&self) -> &str {
        &self.fleet
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The connection of this name.
    pub fn lookup(&self, name: &str) -> Option<&T> {
        self.map.get(name)
    }

    /// Whether the job's connection is one of these.
    pub fn handles(&self, spec: &JobSpec) -> bool {
        spec.connection().is_some_and(|c| self.map.contains_key(c))
    }

    /// All connections.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.map.values()
    }

    /// What the agent advertises on poll: every name, as `kind`.
    pub fn advertised_as(&self, kind: &str) -> Vec<ConnectionInfo> {
        self.map
            .keys()
            .map(|name| ConnectionInfo {
                name: name.clone(),
                kind: kind.into(),
            })
            .collect()
    }
}
