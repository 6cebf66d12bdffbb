//! One `mysql_async` pool per configured connection, built on first use.
//!
//! The password is read from its file or variable each time a job takes a
//! connection; when it differs from the one the pool was built with, a new
//! pool replaces the old one (whose connections close as their jobs end), so
//! a rotated password needs no restart.
//!
//! At most `pool_size` jobs hold a connection of a pool at a time (more wait
//! for a slot); the pool itself may open one more, so that the connection
//! that kills a stopped job's query is there when every slot is busy. When
//! even that one is taken, a connection outside the pool is opened.

use std::sync::Arc;
use std::time::Duration;

use baton_proto::ConnectionInfo;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, Pool};
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};
use tracing::{debug, info};

use super::Error;
pub use super::connection::opts;
#[cfg(test)]
use crate::config::mysql::{Endpoint, Verify};
use crate::config::mysql::{MysqlConnection, Password};
use crate::db::common::connections::{ByName, Named};

impl Named for Slot {
    fn name(&self) -> &str {
        &self.config.name
    }
}

/// How long a kill waits for a pooled connection before opening its own.
const KILLER_POOL_WAIT: Duration = Duration::from_secs(1);

/// The pools of this agent's MySQL connections.
#[derive(Debug, Default)]
pub struct Pools {
    slots: ByName<Slot>,
}

#[derive(Debug)]
struct Slot {
    config: MysqlConnection,
    permits: Arc<Semaphore>,
    built: Mutex<Option<Built>>,
}

#[derive(Debug, Clone)]
struct Built {
    pool: Pool,
    opts: Opts,
    password: Password,
}

/// A connection held by a job, with what is needed to reach its session
/// from a second connection.
#[derive(Debug)]
pub struct Held {
    /// The job's connection.
    pub conn: Conn,
    /// `CONNECTION_ID()` of its session.
    pub id: u64,
    /// A way to open a second connection with the same settings.
    pub side: SideDoor,
    /// The job's slot of the connection (freed when dropped).
    pub permit: OwnedSemaphorePermit,
}

/// Opens connections next to a job's one (for `KILL`).
#[derive(Debug, Clone)]
pub struct SideDoor {
    pool: Pool,
    opts: Opts,
    connect_timeout: Duration,
}

impl SideDoor {
    /// A second connection: from the pool when one comes within a second,
    /// else a connection of its own with the same settings.
    pub async fn open(&self) -> Result<Conn, mysql_async::Error> {
        if let Ok(Ok(conn)) = tokio::time::timeout(KILLER_POOL_WAIT, self.pool.get_conn()).await {
            return Ok(conn);
        }
        debug!("No pooled connection free for the kill; opening one outside the pool");
        match tokio::time::timeout(self.connect_timeout, Conn::new(self.opts.clone())).await {
            Ok(r) => r,
            Err(_) => Err(mysql_async::Error::Io(mysql_async::IoError::Io(
                std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timeout"),
            ))),
        }
    }
}

impl Pools {
    /// Pools for these connections (nothing is opened yet).
    pub fn new(connections: impl IntoIterator<Item = MysqlConnection>) -> Self {
        let slots = connections.into_iter().map(|c| Slot {
            permits: Arc::new(Semaphore::new(c.pool_size)),
            config: c,
            built: Mutex::new(None),
        });
        Pools {
            slots: ByName::new(slots),
        }
    }

    /// Namespace database locks and ledger rows with this fleet id.
    pub fn with_fleet(self, fleet: &str) -> Self {
        Pools {
            slots: self.slots.with_fleet(fleet),
        }
    }

    /// The fleet id (empty when unknown).
    pub fn fleet(&self) -> &str {
        self.slots.fleet()
    }

    /// Whether no connection is configured.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The connections to advertise on poll.
    pub fn advertised(&self) -> Vec<ConnectionInfo> {
        self.slots.advertised_as("mysql")
    }

    /// The settings of a connection.
    pub fn config(&self, name: &str) -> Result<&MysqlConnection, Error> {
        self.slots.lookup(name).map(|s| &s.config).ok_or_else(|| {
            Error::Config(format!(
                "connection {name:?} is not configured on this agent as a mysql connection"
            ))
        })
    }

    /// Take a connection of `name` for a job: wait for a free slot, then
    /// connect (within the connect timeout) and learn the session id. A
    /// pooled connection that turns out dead is replaced once.
    pub async fn hold(&self, name: &str) -> Result<Held, Error> {
        let slot = self.slots.lookup(name).ok_or_else(|| {
            Error::Config(format!(
                "connection {name:?} is not configured on this agent as a mysql connection"
            ))
        })?;
        let permit = slot
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Config(format!("connection {name:?} is closed")))?;
        let built = slot.current().await?;
        let timeout = slot.config.connect_timeout;
        let mut tries = 0;
        loop {
            tries += 1;
            let mut conn = match tokio::time::timeout(timeout, built.pool.get_conn()).await {
                Ok(r) => r?,
                Err(_) => {
                    return Err(Error::ConnectTimeout {
                        connection: name.to_owned(),
                        after: timeout,
                    });
                }
            };
            match conn.query_first::<u64, _>("SELECT CONNECTION_ID()").await {
                Ok(Some(id)) => {
                    return Ok(Held {
                        conn,
                        id,
                        side: SideDoor {
                            pool: built.pool.clone(),
                            opts: built.opts.clone(),
                            connect_timeout: timeout,
                        },
                        permit,
                    });
                }
                Ok(None) => {
                    return Err(Error::Config(
                        "SELECT CONNECTION_ID() returned no row".into(),
                    ));
                }
                Err(e) if e.is_fatal() && tries < 2 => {
                    debug!(connection = %name, error = %e, "Pooled connection was dead; taking another");
                    let _ = conn.disconnect().await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl Slot {
    /// The pool for the password as it is now (built or rebuilt when needed).
    async fn current(&self) -> Result<Built, Error> {
        let password = self
            .config
            .password
            .read()
            .map_err(|message| Error::Password {
                connection: self.config.name.clone(),
                message,
            })?;
        let mut built = self.built.lock().await;
        if let Some(b) = built.as_ref().filter(|b| b.password == password) {
            return Ok(b.clone());
        }
        let opts = opts(&self.config, &password);
        let fresh = Built {
            pool: Pool::new(opts.clone()),
            opts,
            password,
        };
        if let Some(old) = built.replace(fresh.clone()) {
            info!(connection = %self.config.name, "Password changed; new connection pool");
            tokio::spawn(async move {
                let _ = old.pool.disconnect().await;
            });
        } else {
            debug!(connection = %self.config.name, "Connection pool created");
        }
        Ok(fresh)
    }
}

#[cfg(test)]
mod tests;
