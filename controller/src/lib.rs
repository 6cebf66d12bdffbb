//! The Baton controller: a durable store of jobs and leases, and the HTTP API
//! that agents long-poll and operators drive.
//!
//! # Layout
//!
//! Five layers; a module imports only from its own layer or a lower one
//! (`use crate::…` points down), and only the router and its handlers inside
//! `api/` know each other.
//!
//! - L0, plain values and pure code:
//!   - [`config`]: layered configuration (defaults → TOML → `BATON_*` env → flags).
//!   - [`validate`]: job submission checks naming the failing field.
//!   - [`credentials`]: secrets (made, SHA-256 hashed), resolved callers
//!     ([`credentials::Principal`]) and the auth cache; no HTTP.
//!   - [`clock`]: the controller's clock (wall time at start + monotonic time since).
//!   - [`logging`]: the tracing subscriber (text or JSON lines, reloadable filter).
//!   - [`pipeline`]: pipelines as pure values: definition checks, step
//!     references, a run's next moves.
//!   - [`pki`]: `tls init`, a private CA and the server and agent
//!     certificates (rcgen), written with safe modes.
//!   - [`telemetry`]: the event metrics (prometheus-client) the layers
//!     above record into, and the `process_*` metrics.
//!   - [`trigger`]: schedule triggers (cron in a zone, intervals, window,
//!     jitter, the DST rule) and the pure firing plan (`trigger::plan`).
//! - L1, [`store`]: the SQLite store; the lease contract lives in `store::lease`.
//! - L2, services (each with its own error type; none sees HTTP):
//!   - [`jobs`]: every write that can give a group work (submit, batch,
//!     requeue by completion, release, retry, a drill's job, revocation,
//!     drain and resume, grant, expiry) commits, then wakes the group; the
//!     per-group wake-ups live here and only this service can wake.
//!   - [`dispatch`]: the lease reaper and [`dispatch::long_poll`], the poll
//!     loop without HTTP (both call `jobs`).
//!   - [`presence`]: agent presence in memory, flushed in batches; what an idle poll may skip.
//!   - [`placement`]: at submit, whether an enrolled agent serves the group
//!     and advertises the connection (a snapshot of the agents table).
//!   - [`drills`]: failover drills: plan, start, watch, refresh, the heartbeat's fault.
//!   - [`schedules`]: schedules and pipelines as operators define and
//!     drive them, and the timer that fires them, follows up ended steps
//!     and times out runs (writes through `jobs`).
//!   - [`notify`]: notifications: time-derived events, fan-out to
//!     webhooks, signed POSTs retried with backoff, attempts recorded.
//!   - [`retention`]: the background task pruning finished jobs and old audit
//!     rows (`job_keep`, `audit_keep`).
//! - L3, the edge:
//!   - [`listener`]: HTTPS (rustls, optional client certificates) or explicit
//!     plain HTTP; the connection facts a request carries (`PeerAddr`,
//!     `ClientCertVerified`).
//!   - [`api`]: axum routes, JSON bodies and JSON errors; `api::auth`
//!     (middleware, role and agent extractors), `api::metrics` (`GET
//!     /metrics`). Handlers parse, call a service and map its error to an
//!     `ApiError`.
//!   - [`ui`]: the dashboard at `/ui` (server-rendered HTML over the same
//!     store and services, session cookies, CSRF, a strict CSP); its routes
//!     go through `api`'s middlewares.
//! - L4, [`server`]: wiring: open the store, start the services, serve,
//!   shut down on one token (and `main.rs`, `bin/`).
#![forbid(unsafe_code)]

pub mod api;
pub mod clock;
pub mod config;
pub mod credentials;
pub mod dispatch;
pub mod drills;
pub mod jobs;
pub mod listener;
pub mod logging;
pub mod notify;
pub mod pgurl;
pub mod pipeline;
pub mod pki;
pub mod placement;
pub mod presence;
pub mod retention;
pub mod schedules;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod trigger;
pub mod ui;
pub mod validate;
