//! Wiring: open the store, start the reaper and the schedule timer, serve
//! HTTP until shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use baton_proto::auth::{OPERATOR_PREFIX, Role};

use crate::api::{self, AppState, Inner};
use crate::config::{Config, StoreConfig};
use crate::credentials::{hash_secret, new_id, new_secret};
use crate::dispatch;
use crate::jobs::Jobs;
use crate::presence::{self, Presence};
use crate::schedules::Schedules;
use crate::store::{self, Store};

/// Startup and serving errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The state directory cannot be created or written.
    #[error("state directory {path}: {source}")]
    StateDir {
        /// The directory.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The store cannot be opened. Not a `#[source]`: the message already
    /// holds it, and `{:#}` would print it twice.
    #[error("store: {0}")]
    Store(store::Error),
    /// The listen address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("server: {0}")]
    Serve(std::io::Error),
    /// TLS files cannot be used.
    #[error("TLS: {0}")]
    Tls(#[from] crate::listener::Error),
    /// `init` found an admin token already.
    #[error(
        "already initialised: an active admin token exists (create more with `batonctl tokens create`)"
    )]
    AlreadyInitialised,
    /// A webhook's client cannot be built (`[notifications]`).
    #[error("notifications: {0}")]
    Notify(#[from] crate::notify::Error),
}

impl From<store::Error> for Error {
    fn from(e: store::Error) -> Self {
        Error::Store(e)
    }
}

/// Create the first admin token if none exists; returns its secret.
pub async fn create_admin_token(store: &Store, created_by: &str) -> Result<Option<String>, Error> {
    if store.has_active_admin().await? {
        return Ok(None);
    }
    let secret = new_secret(OPERATOR_PREFIX);
    let name = if store
        .list_operator_tokens()
        .await?
        .iter()
        .any(|t| t.name == "admin" && t.revoked_at.is_none())
    {
        new_id("admin-")
    } else {
        "admin".to_owned()
    };
    let made = store
        .create_operator_token(
            &new_id("t_"),
            &name,
            Role::Admin,
            &hash_secret(&secret),
            created_by,
            store::now_ms(),
        )
        .await;
    match made {
        Ok(_) => Ok(Some(secret)),
        // Another controller on the same database made the first admin
        // token at the same moment (the name is unique): it exists now.
        Err(_) if store.has_active_admin().await? => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// `baton-controller init`: open the store and create the first admin token.
pub async fn init(config: &Config) -> Result<String, Error> {
    std::fs::create_dir_all(&config.state_dir).map_err(|source| Error::StateDir {
        path: config.state_dir.display().to_string(),
        source,
    })?;
    let store = open_store(config).await?;
    let secret = create_admin_token(&store, "init").await?;
    store.close().await;
    secret.ok_or(Error::AlreadyInitialised)
}

/// On a first start without `init`: write the admin token to a 0600 file in
/// the state dir (never to the log) and say where it is.
async fn bootstrap(store: &Store, config: &Config) -> Result<(), Error> {
    let Some(secret) = create_admin_token(store, "first-start").await? else {
        return Ok(());
    };
    let path = config.state_dir.join("initial-admin.token");
    write_private(&path, &format!("{secret}\n")).map_err(|source| Error::StateDir {
        path: path.display().to_string(),
        source,
    })?;
    tracing::warn!(
        path = %path.display(),
        "No admin token existed: created one and wrote it to this file (mode 0600); move it somewhere safe and delete the file"
    );
    Ok(())
}

/// Re-express the earlier run's deadlines in this process's clock and say
/// what changed (`store::rebase`).
async fn rebase_clock(store: &Store) -> Result<(), Error> {
    let r = store.rebase_clock(crate::clock::now_ms()).await?;
    tracing::info!(
        running_leases = r.leases,
        backoffs_cut = r.backoffs,
        agents_seen_later = r.agents,
        drills_created_later = r.drills,
        "Clock anchored; running leases now end one TTL from this start"
    );
    Ok(())
}

/// Mark the holders of leases cancelled before this start (their marks were
/// in the previous run's memory), so the cancels reach their jobs by the next
/// poll instead of the next heartbeat. A failure costs only that speed.
async fn mark_cancelled_holders(jobs: &Jobs) {
    match jobs.mark_cancelled_holders().await {
        Ok(0) => {}
        Ok(agents) => tracing::info!(
            agents,
            "Agents holding cancelled jobs marked: their next polls carry the cancel notices"
        ),
        Err(e) => tracing::warn!(
            error = %e,
            "Cannot read the cancelled running jobs: their agents learn of the cancels by their next heartbeats"
        ),
    }
}

fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

/// Run the controller until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    let dir_err = |source| Error::StateDir {
        path: config.state_dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(&config.state_dir).map_err(dir_err)?;
    log_nofile_limit();
    // Anchor the controller's clock before anything reads it (`clock`);
    // on PostgreSQL, to the database's clock.
    crate::clock::process();
    let store = open_store(&config).await?;
    rebase_clock(&store).await?;
    bootstrap(&store, &config).await?;
    let tls = config
        .tls
        .as_ref()
        .map(crate::listener::tls_acceptor)
        .transpose()?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Bind {
            addr: config.listen.to_string(),
            source,
        })?;
    let addr = listener.local_addr().map_err(Error::Serve)?;
    write_addr_file(&config.state_dir, &addr.to_string()).map_err(dir_err)?;

    let state = app_state(&store, &config, &shutdown);
    mark_cancelled_holders(&state.jobs).await;
    let notifier = crate::notify::Notifier::new(
        store.clone(),
        &config.notifications,
        state.notify_counters.clone(),
    )?;
    let tasks = Tasks::spawn(&state, &config, notifier, &shutdown);
    state.ready.store(true, Ordering::Release);
    tracing::info!(
        listen = %addr,
        tls = tls.is_some(),
        mtls = config.tls.as_ref().is_some_and(|t| t.client_ca_file.is_some()),
        database = %config.database.display(),
        worker_threads = config.worker_threads,
        "Controller ready"
    );
    if tls.is_none() {
        tracing::warn!(listen = %addr, "Serving plain HTTP (allow_plain_http): tokens cross the network in clear text");
    }

    let app = api::router_with(state.clone(), crate::ui::router());
    let stop = shutdown.clone();
    let ready_state = state.clone();
    tokio::spawn(async move {
        stop.cancelled().await;
        ready_state.ready.store(false, Ordering::Release);
        tracing::info!("Shutting down");
    });
    crate::listener::serve(
        listener,
        tls,
        app,
        shutdown.clone(),
        std::time::Duration::from_secs(10),
    )
    .await;
    tasks.join().await;
    // No poll can arrive any more: write the last presence.
    match state.presence.flush(&store).await {
        Ok(rows) => tracing::debug!(rows, "Agent presence flushed at shutdown"),
        Err(e) => tracing::warn!(error = %e, "Cannot flush agent presence at shutdown"),
    }
    store.close().await;
    tracing::info!("Controller stopped");
    Ok(())
}

/// The handlers' shared state: the store, the services, the limits.
pub(crate) fn app_state(store: &Store, config: &Config, shutdown: &CancellationToken) -> AppState {
    let jobs = Jobs::new(store.clone());
    let limits = crate::pipeline::JobLimits {
        default_lease_ttl_ms: config.default_lease_ttl.as_millis() as u64,
        max_spec_bytes: config.max_spec_bytes,
    };
    AppState::new(Inner {
        store: store.clone(),
        schedules: Schedules::new(jobs.clone(), limits, store::now_ms()),
        jobs,
        limits: api::limits::Limits::new(
            config.enroll_per_minute,
            config.max_unauthenticated,
            config.max_unauthenticated_per_address,
        ),
        config: config.clone(),
        reaper_kick: Arc::new(Notify::new()),
        presence: Arc::new(Presence::default()),
        placement: crate::placement::Placement::default(),
        ready: AtomicBool::new(false),
        shutdown: shutdown.clone(),
        metrics: api::metrics::Cache::default(),
        notify_counters: Arc::default(),
    })
}

/// The background tasks: the lease reaper, the schedule timer, retention,
/// the presence flusher, the signals of other controllers, the drill sweep,
/// notifications.
struct Tasks {
    notifier: tokio::task::JoinHandle<()>,
    clock_watch: tokio::task::JoinHandle<()>,
    drills: tokio::task::JoinHandle<()>,
    reaper: tokio::task::JoinHandle<()>,
    signals: tokio::task::JoinHandle<()>,
    timer: tokio::task::JoinHandle<()>,
    retention: tokio::task::JoinHandle<()>,
    flusher: tokio::task::JoinHandle<()>,
}

impl Tasks {
    fn spawn(
        state: &AppState,
        config: &Config,
        notifier: crate::notify::Notifier,
        shutdown: &CancellationToken,
    ) -> Tasks {
        let notifier = tokio::spawn(notifier.run(shutdown.clone()));
        let reaper = tokio::spawn(dispatch::reaper(
            state.jobs.clone(),
            state.reaper_kick.clone(),
            shutdown.clone(),
        ));
        let timer = tokio::spawn(crate::schedules::timer(
            state.schedules.clone(),
            shutdown.clone(),
        ));
        let retention = tokio::spawn(crate::retention::run(
            state.store.clone(),
            crate::retention::Policy {
                job_keep: config.job_keep,
                audit_keep: config.audit_keep,
            },
            shutdown.clone(),
        ));
        let flusher = tokio::spawn(presence::run_flusher(
            state.presence.clone(),
            state.store.clone(),
            shutdown.clone(),
        ));
        let signals = tokio::spawn(state.jobs.clone().run_signals(shutdown.clone()));
        let clock_watch = tokio::spawn(watch_database_clock(state.store.clone(), shutdown.clone()));
        let drills = tokio::spawn(crate::drills::sweep(state.store.clone(), shutdown.clone()));
        Tasks {
            notifier,
            clock_watch,
            drills,
            reaper,
            signals,
            timer,
            retention,
            flusher,
        }
    }

    /// Wait for every task to end (after the shutdown).
    async fn join(self) {
        let _ = self.notifier.await;
        let _ = self.clock_watch.await;
        let _ = self.drills.await;
        let _ = self.reaper.await;
        let _ = self.signals.await;
        let _ = self.timer.await;
        let _ = self.retention.await;
        let _ = self.flusher.await;
    }
}

/// Raise the open-file limit and say when it is too low for a large fleet
/// (each agent holds a connection).
fn log_nofile_limit() {
    let Some(l) = crate::listener::raise_nofile_limit() else {
        return;
    };
    if l.soft < crate::listener::FLEET_DESCRIPTORS {
        tracing::warn!(
            soft = l.soft,
            hard = l.hard,
            agents = l.soft.saturating_sub(1024),
            "Open file limit is low: every agent holds a connection, so about this many agents can poll at once; raise LimitNOFILE"
        );
    } else if l.soft != l.before {
        tracing::info!(from = l.before, to = l.soft, "Open file limit raised");
    }
}

/// Write the bound address to `<state_dir>/listen.addr` (temp file + rename),
/// so scripts and tests that asked for port 0 can find the port.
fn write_addr_file(dir: &std::path::Path, addr: &str) -> std::io::Result<()> {
    let tmp = dir.join("listen.addr.tmp");
    std::fs::write(&tmp, format!("{addr}\n"))?;
    std::fs::rename(tmp, dir.join("listen.addr"))
}

/// The store's sync mode for the configured one (the store knows no config
/// types).
/// How often a replica compares its clock with the database's.
const CLOCK_WATCH_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// On a shared database: compare the controller's clock with the
/// database's every [`CLOCK_WATCH_EVERY`] and WARN once per change of more
/// than a second (the database host's clock stepped, or this host's
/// monotonic clock drifts): replicas then disagree about lease deadlines
/// until restarted (ARCHITECTURE.md "Several controllers").
async fn watch_database_clock(store: Store, shutdown: CancellationToken) {
    let mut watch = crate::clock::SkewWatch::default();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(CLOCK_WATCH_EVERY) => {}
        }
        let db_ms = match store.database_clock_ms().await {
            Ok(Some(ms)) => ms,
            Ok(None) => return, // an embedded store: nothing to compare with
            Err(_) => continue, // unreachable now: the hosts watch says so
        };
        if let Some(ahead_ms) = watch.check(db_ms.saturating_sub(crate::clock::now_ms())) {
            tracing::warn!(
                database_ahead_ms = ahead_ms,
                "The database's clock and this controller's have moved apart; restart this replica to re-anchor its clock (lease deadlines are compared across replicas)"
            );
        }
    }
}

/// Open the configured store. On PostgreSQL, anchor the controller's clock
/// to the database's, so that every replica reads the same clock.
pub async fn open_store(config: &Config) -> Result<Store, Error> {
    match &config.store {
        StoreConfig::Sqlite { path, sync } => Ok(Store::open(path, sync_mode(*sync)).await?),
        StoreConfig::Postgres(c) => {
            let pg = store::postgres::PgStore::open(&pg_options(c)).await?;
            let db_ms = pg.db_now_ms().await?;
            crate::clock::anchor_to(db_ms);
            tracing::info!(
                host_ahead_ms = crate::clock::skew_ms(),
                "Controller clock anchored to the database's clock"
            );
            Ok(Store::new(std::sync::Arc::new(pg)))
        }
    }
}

/// The store's options from `[store]` (the store knows no config type).
pub fn pg_options(c: &crate::config::PgConfig) -> store::postgres::PgOptions {
    store::postgres::PgOptions {
        url: c.url.clone(),
        password: c.password.clone(),
        ca_file: c.ca_file.clone(),
        pool_size: c.pool_size,
        poll_only: c.poll_only,
    }
}

fn sync_mode(sync: crate::config::SyncMode) -> store::SyncMode {
    match sync {
        crate::config::SyncMode::Full => store::SyncMode::Full,
        crate::config::SyncMode::Normal => store::SyncMode::Normal,
    }
}

#[cfg(test)]
mod tests;
