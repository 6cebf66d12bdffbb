//! `GET /metrics`: the Prometheus text format (0.0.4), encoded by
//! prometheus-client.
//!
//! Three sources, one registry built per scrape:
//! - the event metrics the services record as things happen
//!   (`crate::telemetry`: dispatch latency, poll hold, attempts by outcome,
//!   schedule lateness, notification deliveries, group-commit sizes and
//!   times, PostgreSQL transaction times) and the `process_*` metrics;
//! - what the store knows, the same on every replica and surviving
//!   restarts ([`StoreFigures`]): jobs by group and state, the oldest
//!   ready job's age, agents by group and state, drills, lease expirations
//!   and takeovers, schedules and their occurrences. Read at most once per
//!   [`CACHE_FOR`] whatever the number of scrapers (one grouped read per
//!   table, [`Cache`]);
//! - the controller's own counters and gauges read live ([`Live`]): the
//!   group-commit writer's totals, the auth cache, presence, the limits on
//!   callers without a credential, retention, the clock skew.
//!
//! Names follow Prometheus' conventions (`baton_` prefix, base units,
//! `_total` counters, `_seconds` times); the list with help texts is the
//! output itself, and README "Metrics" names them. Store-derived series are
//! fleet-wide: with several controllers aggregate them with `max`, the
//! per-process ones with `sum`.
//!
//! Access: a viewer token (`Authorization: Bearer …`, Prometheus'
//! `authorization.credentials_file`), like every other read.

mod families;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::prometheus_text;
use prometheus_client::registry::Registry;

use super::auth::Viewer;
use super::{ApiError, AppState};
use crate::store::agents::GroupAgents;
use crate::store::health::StatsSnapshot as GroupCommitStats;
use crate::store::jobs::QueueFigure;
use crate::store::now_ms;

pub use families::TAKEOVER_BUCKETS;

/// How long the store's figures are reused: scrapes of several Prometheus
/// servers within this read the store once.
pub const CACHE_FOR: Duration = Duration::from_secs(1);

/// Finished jobs are counted over this window (`baton_jobs_finished_last_hour`):
/// the read then costs what the active and recent jobs cost, not what
/// retention keeps.
pub const FINISHED_WINDOW_MS: i64 = 3_600_000;

/// What the store knows, read in one go ([`StoreFigures::read`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoreFigures {
    /// When it was read (the controller's clock, Unix ms).
    pub now: i64,
    /// Jobs by group and state (finished ones: within [`FINISHED_WINDOW_MS`]),
    /// with the oldest ready queued job.
    pub queue: Vec<QueueFigure>,
    /// Agents by group and state.
    pub agents: Vec<GroupAgents>,
    /// `(method, state, count)` of drills.
    pub drills: Vec<(String, String, i64)>,
    /// Leases ended by their agent's restart report.
    pub agent_restart_ends: i64,
    /// Takeover durations (ms).
    pub takeovers_ms: Vec<i64>,
    /// Schedule occurrences by fate (ranges counted in full).
    pub occurrences: baton_proto::schedule::OccurrenceCounts,
    /// `(active, paused)` schedules.
    pub schedules: (u64, u64),
    /// Schedules without a success within their `alert_after`.
    pub schedules_stale: u64,
}

impl StoreFigures {
    /// Read every figure (drills whose watcher died with a restart get
    /// their verdict first).
    pub async fn read(s: &AppState) -> Result<StoreFigures, ApiError> {
        crate::drills::refresh_running(&s.store).await?;
        let now = now_ms();
        let offline_after = s.config.agent_offline_after.as_millis() as i64;
        let schedules = s.schedules.list(now).await?.schedules;
        let paused = schedules.iter().filter(|v| v.paused).count() as u64;
        Ok(StoreFigures {
            now,
            queue: s.store.queue_figures(now, now - FINISHED_WINDOW_MS).await?,
            agents: s.store.fleet_figures(now, offline_after).await?,
            drills: s.store.drill_outcomes().await?,
            agent_restart_ends: s.store.agent_restart_ends().await?,
            takeovers_ms: s.store.takeover_samples_ms().await?,
            occurrences: s.store.occurrence_totals().await?,
            schedules: (schedules.len() as u64 - paused, paused),
            schedules_stale: schedules.iter().filter(|v| v.stale).count() as u64,
        })
    }
}

/// The store's figures of the last [`CACHE_FOR`] (one per controller).
#[derive(Debug, Default)]
pub struct Cache {
    last: tokio::sync::Mutex<Option<(Instant, Arc<StoreFigures>)>>,
}

impl Cache {
    /// The figures, read again when older than [`CACHE_FOR`]; concurrent
    /// scrapes wait for one read.
    pub async fn figures(&self, s: &AppState) -> Result<Arc<StoreFigures>, ApiError> {
        let mut last = self.last.lock().await;
        if let Some((at, f)) = last.as_ref()
            && at.elapsed() < CACHE_FOR
        {
            return Ok(f.clone());
        }
        let f = Arc::new(StoreFigures::read(s).await?);
        *last = Some((Instant::now(), f.clone()));
        Ok(f)
    }
}

/// The controller's own counters and gauges, read at each scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Live {
    /// The group-commit writer's counters.
    pub group_commit: GroupCommitStats,
    /// Credentials in the auth cache.
    pub auth_cache_entries: u64,
    /// Auth lookups answered from the cache.
    pub auth_cache_hits: u64,
    /// Auth lookups that went to the store.
    pub auth_cache_misses: u64,
    /// Agents in the in-memory presence, when known.
    pub presence_agents: Option<u64>,
    /// Agent polls held here and parked for a hand-off, when known.
    pub polls_parked: Option<u64>,
    /// Boundary refusals of callers without a credential (`api::limits`).
    pub boundary: Boundary,
    /// Rows retention deleted since the start.
    pub pruned: crate::store::retention::PrunedSnapshot,
    /// The wall clock minus the controller's clock (ms), when known.
    pub clock_skew_ms: Option<i64>,
}

/// Counters of `api::limits`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Boundary {
    /// Requests refused by the concurrency limits.
    pub refused_busy: u64,
    /// Enrollment attempts refused by the rate limit.
    pub refused_enroll: u64,
    /// Refused anonymous calls not written to the audit log.
    pub audit_suppressed: u64,
    /// Requests without a credential in flight now.
    pub unauthenticated_in_flight: u64,
}

impl Live {
    /// Read now.
    pub fn read(s: &AppState) -> Live {
        let (hits, misses) = s.store.auth_cache().hits_and_misses();
        Live {
            group_commit: s.store.group_commit_stats(),
            auth_cache_entries: s.store.auth_cache().len() as u64,
            auth_cache_hits: hits,
            auth_cache_misses: misses,
            presence_agents: Some(s.presence.len() as u64),
            polls_parked: Some(s.jobs.parked() as u64),
            boundary: Boundary {
                refused_busy: s.limits.refused_busy.load(Ordering::Relaxed),
                refused_enroll: s.limits.refused_enroll.load(Ordering::Relaxed),
                audit_suppressed: s.limits.audit_suppressed.load(Ordering::Relaxed),
                unauthenticated_in_flight: s.limits.in_flight() as u64,
            },
            pruned: s.store.pruned(),
            clock_skew_ms: Some(crate::clock::skew_ms()),
        }
    }
}

/// `GET /metrics`.
#[utoipa::path(
    get,
    operation_id = "metrics",
    path = "/metrics",
    tag = "health",
    responses(
        (status = 200, description = "Prometheus text format 0.0.4", body = String, content_type = "text/plain; version=0.0.4")
    ),
    security(("operator_token" = ["viewer"]))
)]
pub async fn serve(State(s): State<AppState>, _v: Viewer) -> Result<Response, ApiError> {
    let figures = s.metrics.figures(&s).await?;
    Ok((
        [(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)],
        render(&figures, &Live::read(&s)),
    )
        .into_response())
}

/// The Prometheus text of the event metrics, the store's figures and the
/// live values.
pub fn render(store: &StoreFigures, live: &Live) -> String {
    let mut reg = Registry::default();
    crate::telemetry::register(&mut reg);
    families::store(&mut reg, store);
    families::live(&mut reg, live);
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_text::encode(&mut out, &reg);
    out
}

#[cfg(test)]
mod tests;
