//! The agent as a whole: wiring, start, and graceful shutdown.
//!
//! Start: hand the completions an earlier run left in the outbox to the
//! delivery task (in the background), start that task (finished jobs'
//! completions and those, in batches), report the leases a killed earlier
//! run held ([`predecessor`], in the background), abort the multipart
//! uploads it left (`upload::pending`, in the background), then poll. Shutdown (the token
//! fires): stop polling, let running jobs finish
//! within `shutdown_grace` and deliver their completions, then stop and
//! release the jobs still running, stop the delivery task (what it had not
//! delivered stays in the outbox), flush the outbox once, and return.

use std::sync::Arc;
use std::time::Duration;

use baton_proto::Capabilities;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::{Config, ConnectionConfig};
use crate::db::mssql::export::ExportExecutor as MssqlExport;
use crate::db::mssql::{BackupExecutor, Connections, MssqlExecutor, MssqlRestoreExecutor};
use crate::db::mysql::dump::{DumpExecutor, Settings as DumpSettings};
use crate::db::mysql::export::ExportExecutor as MysqlExport;
use crate::db::mysql::restore::RestoreExecutor;
use crate::db::mysql::{MysqlExecutor, Pools};
use crate::delivery::{self, Deliverer, DeliveryQueue};
use crate::executor::command::{CommandExecutor, CommandSettings, ProcessGroups};
use crate::executor::noop::NoopExecutor;
use crate::executor::{Executor, Executors};
use crate::identity::Identity;
use crate::lease::record::{self, LeaseRecords};
use crate::outbox::{self, Outbox};
use crate::poller::{self, PollSettings};
use crate::runner::{Registry, Shared};
use crate::transport::{self, Transport};
use crate::upload::pending::Pending;

pub mod predecessor;

/// How long stopped jobs get to die and be released after the grace.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The controller client could not be built.
    #[error(transparent)]
    Transport(#[from] transport::Error),
    /// The outbox could not be opened.
    #[error(transparent)]
    Outbox(#[from] outbox::Error),
    /// The lease records under the state dir cannot be created.
    #[error(transparent)]
    Leases(#[from] record::Error),
    /// The record of running commands under the state dir cannot be created.
    #[error("cannot create the running-commands directory in the state dir: {0}")]
    StateDir(std::io::Error),
    /// The records of uploads in progress under the state dir cannot be read.
    #[error("cannot open the uploads directory in the state dir: {0}")]
    Uploads(std::io::Error),
    /// None of the configured groups was granted at enrollment.
    #[error(
        "none of the configured groups ({configured}) is granted to agent {agent_id} \
         (enrolled for: {granted})"
    )]
    NoGroups {
        /// The enrolled agent id.
        agent_id: String,
        /// `groups` from the config.
        configured: String,
        /// Groups of the identity.
        granted: String,
    },
}

/// The groups to poll: the configured ones that the enrollment granted (WARN
/// for the others), or every granted group when none is configured.
pub fn served_groups(configured: &[String], identity: &Identity) -> Result<Vec<String>, Error> {
    let granted = &identity.groups;
    if configured.is_empty() {
        return Ok(granted.clone());
    }
    if granted.is_empty() {
        return Ok(configured.to_vec());
    }
    let mut served = Vec::new();
    for group in configured {
        if granted.contains(group) {
            served.push(group.clone());
        } else {
            warn!(
                group = %group,
                granted = %granted.join(","),
                "Configured group not granted to this agent at enrollment; not served"
            );
        }
    }
    if served.is_empty() {
        return Err(Error::NoGroups {
            agent_id: identity.agent_id.clone(),
            configured: configured.join(", "),
            granted: granted.join(", "),
        });
    }
    Ok(served)
}

/// A configured agent, ready to run.
#[derive(Debug)]
pub struct Agent {
    config: Config,
    agent_id: String,
    shared: Arc<Shared>,
    groups: ProcessGroups,
    settings: PollSettings,
    queue: DeliveryQueue,
    /// Leases the previous run held when it died, to report.
    predecessor: Vec<baton_proto::LeaseRef>,
    /// Uploads in progress; the previous run's are aborted at start.
    uploads: Arc<Pending>,
}

impl Agent {
    /// Build the agent from a validated config (the state dir must exist), its
    /// enrolled identity, and the controller client (credentials are added here).
    pub fn new(config: Config, identity: &Identity, transport: &Transport) -> Result<Self, Error> {
        let groups =
            ProcessGroups::persistent(config.state_dir.join("running")).map_err(Error::StateDir)?;
        let killed = groups.kill_leftovers();
        if killed > 0 {
            warn!(
                killed,
                "Killed commands left running by a previous agent run"
            );
        }
        let command =
            CommandExecutor::with_groups(CommandSettings::from_config(&config.command), groups);
        Self::with_command_executor(config, identity, transport, command)
    }

    /// Build the agent with a given command executor (tests tune its settings).
    pub fn with_command_executor(
        config: Config,
        identity: &Identity,
        transport: &Transport,
        command: CommandExecutor,
    ) -> Result<Self, Error> {
        let transport = transport.authenticated(&identity.agent_id, &identity.secret)?;
        let served = served_groups(&config.groups, identity)?;
        let outbox = Outbox::open(&config.state_dir)?;
        // Read before the first poll: every record now is the previous run's.
        let leases = LeaseRecords::open(&config.state_dir)?;
        let predecessor = predecessor::to_report(&leases, &outbox);
        let groups = command.process_groups();
        let mut list: Vec<Box<dyn Executor>> = vec![Box::new(command), Box::new(NoopExecutor)];
        let mysql = Arc::new(
            Pools::new(
                config
                    .connections
                    .values()
                    .filter_map(|c| c.as_mysql().cloned()),
            )
            .with_fleet(&identity.fleet),
        );
        list.push(Box::new(MysqlExecutor::procedure(mysql.clone())));
        list.push(Box::new(MysqlExecutor::sql(mysql.clone())));
        list.push(Box::new(MysqlExport::new(mysql.clone(), &config.state_dir)));
        let dump_settings = DumpSettings::new(
            config
                .connections
                .iter()
                .filter_map(|(name, c)| Some((name.clone(), c.as_mysql()?.clone())))
                .collect(),
            config.state_dir.clone(),
        );
        list.push(Box::new(DumpExecutor::new(
            dump_settings.clone(),
            groups.clone(),
        )));
        list.push(Box::new(
            RestoreExecutor::new(dump_settings, groups.clone()).with_stores(config.stores.clone()),
        ));
        let mssql = Arc::new(
            Connections::new(
                config
                    .connections
                    .values()
                    .filter_map(|c| c.as_mssql().cloned()),
            )
            .with_fleet(&identity.fleet),
        );
        list.push(Box::new(MssqlExecutor::procedure(mssql.clone())));
        list.push(Box::new(MssqlExecutor::sql(mssql.clone())));
        list.push(Box::new(MssqlExport::new(mssql.clone(), &config.state_dir)));
        list.push(Box::new(BackupExecutor::new(
            mssql.clone(),
            config.state_dir.clone(),
        )));
        list.push(Box::new(
            MssqlRestoreExecutor::new(mssql.clone()).with_stores(config.stores.clone()),
        ));
        let uploads =
            Arc::new(Pending::open(config.state_dir.join("uploads")).map_err(Error::Uploads)?);
        list.push(Box::new(crate::upload::UploadExecutor::new(
            config.stores.clone(),
            upload_roots(&config),
            uploads.clone(),
        )));
        let executors = Executors::new(list);
        let mut connections = mysql.advertised();
        connections.extend(mssql.advertised());
        let settings = PollSettings {
            groups: served,
            wait: config.poll_wait,
            capabilities: Capabilities {
                kinds: executors.kinds(),
                connections,
                stores: config.stores.keys().cloned().collect(),
            },
        };
        let (deliverer, queue) = Deliverer::channel();
        let shared = Arc::new(Shared {
            transport: Arc::new(transport),
            outbox,
            delivery: deliverer,
            executors,
            registry: Registry::default(),
            log_tail_bytes: config.command.log_tail_bytes,
            leases,
        });
        Ok(Agent {
            config,
            agent_id: identity.agent_id.clone(),
            shared,
            groups,
            settings,
            queue,
            predecessor,
            uploads,
        })
    }

    /// Process groups of running commands (a forced exit kills them).
    pub fn process_groups(&self) -> ProcessGroups {
        self.groups.clone()
    }

    /// Log the start: who, what it serves, and connections not advertised.
    fn log_start(&self) {
        let cfg = &self.config;
        let kinds: Vec<&str> = self
            .settings
            .capabilities
            .kinds
            .iter()
            .map(|k| k.as_str())
            .collect();
        let kinds = kinds.join(",");
        info!(
            agent_id = %self.agent_id,
            groups = %self.settings.groups.join(","),
            slots = cfg.slots,
            controller = %cfg.controller_urls.join(","),
            kinds = %kinds,
            "Agent started"
        );
        for (name, conn) in &cfg.connections {
            if let ConnectionConfig::Reserved { .. } = conn {
                warn!(connection = %name, kind = %conn.kind(), "Database executors for this kind are not built yet; connection not advertised");
            }
        }
    }

    /// Run until `shutdown` fires, then shut down gracefully.
    pub async fn run(self, shutdown: CancellationToken) {
        self.log_start();
        let cfg = &self.config;
        let shared = &self.shared;
        let drain_stop = CancellationToken::new();
        let drain = tokio::spawn(delivery::drain(
            shared.outbox.clone(),
            shared.delivery.clone(),
            drain_stop.clone(),
        ));

        let delivery_stop = CancellationToken::new();
        let delivery = tokio::spawn(delivery::run_queue(
            self.queue,
            shared.transport.clone(),
            shared.outbox.clone(),
            delivery_stop.clone(),
        ));

        let reported = tokio::spawn(predecessor::report(
            shared.transport.clone(),
            shared.leases.clone(),
            self.predecessor,
            shutdown.clone(),
        ));

        let (uploads, stores) = (self.uploads.clone(), cfg.stores.clone());
        tokio::spawn(async move { uploads.abort_leftovers(&stores).await });

        let slots = Arc::new(Semaphore::new(cfg.slots as usize));
        let mut jobs = JoinSet::new();
        poller::run(shared, &self.settings, &slots, &mut jobs, &shutdown).await;
        let _ = reported.await;

        stop_jobs(shared, &mut jobs, cfg.shutdown_grace).await;
        delivery_stop.cancel();
        if let Err(e) = delivery.await
            && e.is_panic()
        {
            error!(error = %e, "The delivery task panicked");
        }
        drain_stop.cancel();
        let _ = drain.await;
        match delivery::flush_once(&shared.transport, &shared.outbox).await {
            Ok(0) => info!("Agent stopped"),
            Ok(kept) => warn!(
                kept,
                "Agent stopped; completions left in the outbox for the next start"
            ),
            Err(e) => warn!(error = %e, "Agent stopped; the outbox could not be flushed"),
        }
    }
}

/// Shutdown, after polling stopped: let the running jobs finish within
/// `grace`, then stop and release those still running (aborting them after
/// [`STOP_TIMEOUT`]).
async fn stop_jobs(shared: &Shared, jobs: &mut JoinSet<()>, grace: Duration) {
    poller::reap(jobs);
    info!(
        running = jobs.len(),
        grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX),
        "Shutting down: polling stopped, waiting for running jobs"
    );
    let in_grace = wait_for(jobs, Instant::now() + grace).await;
    if !in_grace {
        info!(
            left = jobs.len(),
            "Shutdown grace over: stopping and releasing the jobs still running"
        );
        shared.registry.stop_all();
        if !wait_for(jobs, Instant::now() + STOP_TIMEOUT).await {
            warn!(
                left = jobs.len(),
                "Jobs did not stop in time; aborting them"
            );
            jobs.abort_all();
            while jobs.join_next().await.is_some() {}
        }
    }
}

/// Wait for every job task until `deadline`; true when all ended.
async fn wait_for(jobs: &mut JoinSet<()>, deadline: Instant) -> bool {
    loop {
        poller::reap(jobs);
        if jobs.is_empty() {
            return true;
        }
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => return false,
            done = jobs.join_next() => {
                if let Some(Err(e)) = done
                    && e.is_panic()
                {
                    error!(error = %e, "A job task panicked");
                }
            }
        }
    }
}

/// The directories `upload` jobs may read from: each MySQL connection's
/// dump directory (default `<state_dir>/dumps`) and each SQL Server
/// connection's backup directory.
fn upload_roots(config: &Config) -> Vec<std::path::PathBuf> {
    let mut roots: Vec<std::path::PathBuf> = config
        .connections
        .values()
        .filter_map(|c| match (c.as_mysql(), c.as_mssql()) {
            (Some(m), _) => Some(
                m.dump
                    .dir
                    .clone()
                    .unwrap_or_else(|| config.state_dir.join("dumps")),
            ),
            (_, Some(s)) => s.backup.dir.clone(),
            _ => None,
        })
        .collect();
    roots.sort();
    roots.dedup();
    roots
}

#[cfg(all(test, unix))]
pub(crate) mod tests;
