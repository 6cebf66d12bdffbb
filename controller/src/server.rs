//! Wiring: open the store, start the reaper, serve HTTP until shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState, Inner};
use crate::auth::Authenticator;
use crate::config::Config;
use crate::dispatch::{self, Wakers};
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
    /// The store cannot be opened.
    #[error("store: {0}")]
    Store(#[from] store::Error),
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
}

/// Run the controller until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    let dir_err = |source| Error::StateDir {
        path: config.state_dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(&config.state_dir).map_err(dir_err)?;
    let store = Store::open(&config.database, config.sync).await?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Bind {
            addr: config.listen.to_string(),
            source,
        })?;
    let addr = listener.local_addr().map_err(Error::Serve)?;
    write_addr_file(&config.state_dir, &addr.to_string()).map_err(dir_err)?;

    let wakers = Arc::new(Wakers::default());
    let kick = Arc::new(Notify::new());
    let state = AppState::new(Inner {
        store: store.clone(),
        auth: Authenticator::new(&config.operator_tokens, &config.agent_tokens),
        config: config.clone(),
        wakers: wakers.clone(),
        reaper_kick: kick.clone(),
        ready: AtomicBool::new(false),
        shutdown: shutdown.clone(),
    });
    let reaper = tokio::spawn(dispatch::reaper(
        store.clone(),
        wakers,
        kick,
        shutdown.clone(),
    ));
    state.ready.store(true, Ordering::Release);
    tracing::info!(
        listen = %addr,
        database = %config.database.display(),
        operator_tokens = config.operator_tokens.len(),
        agent_tokens = config.agent_tokens.len(),
        "Controller ready"
    );
    if !addr.ip().is_loopback() {
        tracing::warn!(listen = %addr, "Serving plain HTTP on a non-loopback address; TLS arrives with the security issue");
    }

    let app = api::router(state.clone());
    let stop = shutdown.clone();
    let ready_state = state.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            stop.cancelled().await;
            ready_state.ready.store(false, Ordering::Release);
            tracing::info!("Shutting down");
        })
        .await
        .map_err(Error::Serve)?;
    shutdown.cancel();
    let _ = reaper.await;
    store.close().await;
    tracing::info!("Controller stopped");
    Ok(())
}

/// Write the bound address to `<state_dir>/listen.addr` (temp file + rename),
/// so scripts and tests that asked for port 0 can find the port.
fn write_addr_file(dir: &std::path::Path, addr: &str) -> std::io::Result<()> {
    let tmp = dir.join("listen.addr.tmp");
    std::fs::write(&tmp, format!("{addr}\n"))?;
    std::fs::rename(tmp, dir.join("listen.addr"))
}
