//! The Baton agent: long-polls the controller for jobs, holds each job's lease
//! (renewing it, and fencing the work on its own clock when it is lost), runs
//! the job next to the database, and reports the result durably.
//!
//! The binary (`main.rs`) is a thin shell over this library, so tests drive the
//! same code.
//!
//! Layers, imports only pointing down (a module imports its own layer or a
//! lower one): L0 plain values and files ([`config`], [`secret`], [`tls`],
//! [`identity`], [`backoff`], [`shutdown`], [`logging`], [`fault`]) · L1 the
//! executors ([`executor`], [`db`]: no HTTP types, no HTTP parts of the
//! config) and, separately, [`transport`] (the only module that speaks HTTP;
//! executors and transport never import each other) · L2 the [`lease`]
//! keeper, the [`outbox`] and [`delivery`] · L3 [`runner`], [`poller`],
//! [`enroll`] · L4 [`agent`], [`service`], [`cli`] and `main.rs`. Completions
//! go through the [`outbox`] before they are sent by [`delivery`]. The agent's
//! credentials come from [`enroll`]ment and live in the [`identity`] file.
//!
//! # Layout
//! - [`cli`]: command line (`run`, `enroll`, `validate`, `--version`, flags).
//! - [`config`]: layered config (defaults → TOML → `BATON_AGENT_*` env → flags), validated at start;
//!   the executors' parts are plain values: `config::connection` (what every
//!   `[connections.*]` shares: password source, settings parser), `config::mysql`,
//!   `config::mssql` (each engine's settings), `config::command` (`[command]` allow-lists).
//! - [`secret`]: the `Secret` wrapper (never shown) and the enrollment token's source.
//! - [`tls`]: PEM files of `[tls]` (pinned CA, client certificate and key), checked at start.
//! - [`identity`]: `<state_dir>/identity.json` (agent id, secret, groups), mode 0600.
//! - [`enroll`]: trading an enrollment token for the identity (`enroll`, or the start of `run`).
//! - [`logging`]: tracing subscriber on stderr.
//! - [`shutdown`]: SIGTERM / Ctrl-C into one cancellation token; a second signal exits;
//!   SIGHUP reloads the log level, never stops.
//! - [`service`]: the Windows service (`service run|install|uninstall`), `%ProgramData%\Baton\`
//!   and its ACL, the service's log file.
//! - [`agent`]: wiring, start, graceful shutdown.
//! - [`poller`]: the poll loop (polls only while a slot is free, backs off on errors).
//! - [`runner`]: one job task from grant to delivered completion (or release).
//! - [`lease`]: the lease keeper: heartbeats, deadline, self-fencing.
//! - [`fault`]: failover-drill faults (crash, freeze, partition) simulated on the controller's request.
//! - [`transport`]: typed HTTP calls to the controller (enroll, poll, heartbeat, complete,
//!   release), TLS settings, one client.
//! - [`outbox`]: durable completions, one append-only log `<state_dir>/outbox/log`.
//! - [`delivery`]: sending completions, with retry and backoff; `delivery::queue` is the
//!   agent's one delivery task (batched writes and sends, leftovers of an earlier run).
//! - [`backoff`]: exponential delays with jitter.
//! - [`executor`]: the executor trait, cancel-with-reason, progress; kinds
//!   [`executor::command`] and [`executor::noop`]; [`executor::keeper`] and
//!   [`executor::deathsig`] make commands die with the agent.
//! - [`db`]: the database executors: [`db::common`] (shared by both engines),
//!   [`db::mysql`] (`procedure`, `sql`, and `dump` in [`db::mysql::dump`]),
//!   [`db::mssql`] (`procedure`, `sql`, and `dump` as native backups in
//!   [`db::mssql::backup`]).
// deny, not forbid: `executor::deathsig` is the one audited module allowed to
// use it (ARCHITECTURE.md, "Process safety").
#![deny(unsafe_code)]

pub mod agent;
pub mod backoff;
pub mod cli;
pub mod config;
pub mod db;
pub mod delivery;
pub mod enroll;
pub mod executor;
pub mod fault;
pub mod identity;
pub mod lease;
pub mod logging;
pub mod objstore;
pub mod outbox;
pub mod poller;
pub mod runner;
pub mod secret;
pub mod service;
pub mod shutdown;
pub mod tls;
pub mod transport;
pub mod upload;

#[cfg(all(test, unix))]
mod fake_controller;

/// Install aws-lc-rs as the process-wide rustls provider (ignored when one is set).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
