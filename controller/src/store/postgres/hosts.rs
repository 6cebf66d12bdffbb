//! The configured PostgreSQL hosts, and which one the pool talks to.
//!
//! `url` names one host, or several as libpq does
//! (`postgres://user@h1:5432,h2:5432/baton`). The controller always needs
//! a server that accepts writes (libpq's `target_session_attrs=read-write`,
//! accepted in the URL and implied): at start it tries the hosts in order
//! and takes the first that is not in recovery. A watch then looks every
//! [`WATCH_EVERY`]: when the pool's host stops answering or has become a
//! standby, it finds the primary again and points the pool's new
//! connections there (old ones fail and are dropped). While no host accepts
//! writes, the store answers 503 `store_unavailable` and `/readyz` says why.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sqlx::ConnectOptions;
use sqlx::postgres::{PgConnectOptions, PgPool, PgSslMode};

use super::PgOptions;
use crate::store::health::{Cause, Health};
use crate::store::{Error, Result};

/// How often the watch checks that the pool's host is a primary.
pub const WATCH_EVERY: Duration = Duration::from_secs(1);

/// How long one host may take to answer the primary check.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// The configured hosts, each with the full connection options.
#[derive(Debug)]
pub struct Hosts {
    all: Vec<PgConnectOptions>,
    /// Index into `all` of the host the pool connects to.
    current: Mutex<usize>,
    /// The pinned CA (`[store] ca_file`), named when TLS fails.
    ca_file: Option<PathBuf>,
}

impl Hosts {
    /// Parse `opts.url` (one or several hosts) and apply the password and
    /// the pinned CA to each.
    pub fn parse(opts: &PgOptions) -> Result<Hosts> {
        let all = crate::pgurl::split_hosts(&opts.url)
            .map_err(|why| Error::Unavailable {
                cause: Cause::Unreachable,
                detail: format!("store url: {why}"),
            })?
            .iter()
            .map(|url| host_options(url, opts))
            .collect::<Result<Vec<_>>>()?;
        Ok(Hosts {
            all,
            current: Mutex::new(0),
            ca_file: opts.ca_file.clone(),
        })
    }

    /// How many hosts are configured.
    pub fn len(&self) -> usize {
        self.all.len()
    }

    /// Whether no host is configured (never: parsing refuses it).
    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// The first host, in the configured order, that accepts writes.
    pub async fn find_primary(&self) -> Result<PgConnectOptions> {
        let mut last = None;
        for (i, host) in self.all.iter().enumerate() {
            match is_primary(host).await {
                Ok(true) => {
                    *self.current.lock().unwrap_or_else(PoisonError::into_inner) = i;
                    return Ok(host.clone());
                }
                Ok(false) => last = Some((Cause::Standby, describe(host, "is a standby"))),
                Err(e) => last = Some((Cause::Unreachable, self.describe_error(host, &e))),
            }
        }
        let (cause, detail) =
            last.unwrap_or((Cause::Unreachable, "no PostgreSQL host configured".into()));
        Err(Error::Unavailable { cause, detail })
    }

    /// Watch the pool's host in the background (until the pool closes):
    /// mark the store failing while no host accepts writes, and move the
    /// pool to the new primary after a failover.
    pub fn watch(self: &Arc<Self>, pool: PgPool, health: Arc<Health>) {
        let hosts = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(WATCH_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if pool.is_closed() {
                    return;
                }
                hosts.check(&pool, &health).await;
            }
        });
    }

    async fn check(&self, pool: &PgPool, health: &Health) {
        let probe = tokio::time::timeout(
            PROBE_TIMEOUT,
            sqlx::query_scalar::<_, bool>("SELECT pg_is_in_recovery()").fetch_one(pool),
        )
        .await;
        match probe {
            Ok(Ok(false)) => {
                health.probe_committed();
                return;
            }
            Ok(Ok(true)) => health.failed(Cause::Standby, "the database server is a standby"),
            Ok(Err(e)) => health.failed(Cause::Unreachable, &e.to_string()),
            Err(_) => health.failed(Cause::Unreachable, "the database did not answer in time"),
        }
        if self.all.len() < 2 {
            return;
        }
        if let Ok(primary) = self.find_primary().await {
            tracing::warn!(
                host = primary.get_host(),
                port = primary.get_port(),
                "PostgreSQL primary moved: new connections go to this host"
            );
            pool.set_connect_options(primary);
        }
    }
}

/// Whether `host` accepts writes (`pg_is_in_recovery()` is false).
async fn is_primary(host: &PgConnectOptions) -> std::result::Result<bool, sqlx::Error> {
    let check = async {
        let mut conn = host.connect().await?;
        let standby: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
            .fetch_one(&mut conn)
            .await?;
        use sqlx::Connection;
        let _ = conn.close().await;
        Ok(!standby)
    };
    match tokio::time::timeout(PROBE_TIMEOUT, check).await {
        Ok(r) => r,
        Err(_) => Err(sqlx::Error::PoolTimedOut),
    }
}

impl Hosts {
    /// Why `host` could not be checked; a TLS failure names the pinned CA
    /// (the server's certificate must be signed by it and name the host:
    /// verify-full).
    fn describe_error(&self, host: &PgConnectOptions, e: &sqlx::Error) -> String {
        match (&self.ca_file, is_tls_error(e)) {
            (Some(ca), true) => describe(
                host,
                &format!(
                    "refused TLS: its certificate does not verify against [store] ca_file {} (verify-full: signed by that CA and naming the host as written in the url): {e}",
                    ca.display()
                ),
            ),
            _ => describe(host, &e.to_string()),
        }
    }
}

/// A TLS failure: the configuration (`Tls`: the CA file cannot be used) or
/// the handshake (rustls's error inside an I/O error: an unknown issuer, a
/// certificate for another name, a server without TLS).
pub(crate) fn is_tls_error(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Tls(_) => true,
        sqlx::Error::Io(io) => io
            .get_ref()
            .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some()),
        _ => false,
    }
}

fn describe(host: &PgConnectOptions, what: &str) -> String {
    format!("{}:{} {what}", host.get_host(), host.get_port())
}

fn host_options(url: &str, opts: &PgOptions) -> Result<PgConnectOptions> {
    let mut o = PgConnectOptions::from_str(url)?.application_name("baton-controller");
    if let Some(p) = &opts.password {
        o = o.password(p);
    }
    if let Some(ca) = &opts.ca_file {
        o = o.ssl_mode(PgSslMode::VerifyFull).ssl_root_cert(ca);
    }
    Ok(o)
}

#[cfg(test)]
mod tests;
