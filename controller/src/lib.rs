//! The Baton controller: a durable store of jobs and leases, and the HTTP API
//! that agents long-poll and operators drive.
//!
//! # Layout
//! - [`clock`]: the controller's clock (wall time at start + monotonic time since).
//! - [`config`]: layered configuration (defaults → TOML → `BATON_*` env → flags).
//! - [`auth`]: bearer secrets (stored as SHA-256), roles, agent callers.
//! - [`logging`]: the tracing subscriber (text or JSON lines, reloadable filter).
//! - [`listener`]: HTTPS (rustls, optional client certificates) or explicit plain HTTP.
//! - [`store`]: SQLite store; the lease contract lives in `store::lease`.
//! - [`dispatch`]: per-group wake-ups for long-polls and the lease reaper.
//! - [`validate`]: job submission checks naming the failing field.
//! - [`api`]: axum routes, JSON bodies and JSON errors.
//! - [`presence`]: agent presence in memory, flushed in batches; what an idle poll may skip.
//! - [`retention`]: the background task pruning finished jobs and old audit
//!   rows (`job_keep`, `audit_keep`).
//! - [`metrics`]: `GET /metrics` in the Prometheus text format (drills, takeovers, expiries).
//! - [`server`]: wiring: open the store, serve, shut down on one token.
#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod clock;
pub mod config;
pub mod dispatch;
pub mod listener;
pub mod logging;
pub mod metrics;
pub mod presence;
pub mod retention;
pub mod server;
pub mod store;
pub mod validate;
