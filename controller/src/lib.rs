//! The Baton controller: a durable store of jobs and leases, and the HTTP API
//! that agents long-poll and operators drive.
//!
//! # Layout
//! - [`config`]: layered configuration (defaults → TOML → `BATON_*` env → flags).
//! - [`auth`]: bearer tokens (hashed, constant-time), operator vs agent callers.
//! - [`store`]: SQLite store; the lease contract lives in `store::lease`.
//! - [`dispatch`]: per-group wake-ups for long-polls and the lease reaper.
//! - [`validate`]: job submission checks naming the failing field.
//! - [`api`]: axum routes, JSON bodies and JSON errors.
//! - [`server`]: wiring: open the store, serve, shut down on one token.
#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod config;
pub mod dispatch;
pub mod server;
pub mod store;
pub mod validate;
