//! `GET /metrics`: failover metrics in the Prometheus text format (0.0.4),
//! written by hand (no metrics crate).
//!
//! Everything is computed from the store at scrape time, so the values
//! survive controller restarts and need no hooks in the lease code:
//! - `baton_drills_total{method,result}`: finished drills (`passed`, `failed`, `error`);
//! - `baton_drills_running`: drills waiting for their verdict;
//! - `baton_lease_expirations_total`: leases that ran out;
//! - `baton_agent_restart_lease_ends_total`: leases a restarted agent
//!   reported for its killed predecessor, ended `agent_restarted`;
//! - `baton_schedule_occurrences_total{state}`: schedule occurrences by
//!   fate (`fired`, `pending`, `skipped`, `missed`);
//! - `baton_schedules{state}`: schedules `active` or `paused`;
//! - `baton_takeover_seconds`: histogram over every lease-expiry takeover
//!   (drills included), from the holder's last renewal (lease deadline − TTL)
//!   to the next grant of the job.
//!
//! Plus the controller's own per-process counters (they start at 0 with each
//! process, as Prometheus counters may):
//! - `baton_group_commit_batches_total`, `baton_group_commit_ops_total`,
//!   `baton_group_commit_replays_total`: the group-commit writer
//!   (`store::writer`); ops / batches is the mean batch size;
//! - `baton_auth_cache_entries`, `baton_auth_cache_hits_total`,
//!   `baton_auth_cache_misses_total`: the auth cache (`credentials`);
//! - `baton_presence_agents`: agents in the in-memory presence (`presence`),
//!   when known;
//! - `baton_unauthenticated_refused_total`, `baton_enroll_rate_limited_total`,
//!   `baton_audit_suppressed_total`, `baton_unauthenticated_in_flight`: the
//!   limits on callers without a credential (`api::limits`);
//! - `baton_pruned_rows_total{table}`: rows deleted by retention (`jobs`,
//!   `attempts`, `audit`, `occurrences`, `pipeline_runs`, `run_steps`;
//!   `retention`).
//! - `baton_clock_skew_seconds`: the wall clock minus the controller's clock
//!   (`clock`: wall-clock steps since the start, adopted at the next one),
//!   when known.
//!
//! Access: a viewer token (`Authorization: Bearer …`, Prometheus'
//! `authorization.credentials_file`), like every other read.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use baton_proto::drill::DrillMethod;

use super::auth::Viewer;
use super::{ApiError, AppState};
use crate::store::health::StatsSnapshot as GroupCommitStats;

/// Upper bounds (seconds) of the takeover histogram buckets.
pub const TAKEOVER_BUCKETS: [f64; 14] = [
    0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 120.0, 300.0,
];

/// What a scrape shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// `(method, state, count)` of drills.
    pub drills: Vec<(String, String, i64)>,
    /// Leases that ran out.
    pub lease_expirations: i64,
    /// Leases ended by their agent's restart report.
    pub agent_restart_ends: i64,
    /// Takeover durations (ms).
    pub takeovers_ms: Vec<i64>,
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
    /// Boundary refusals of callers without a credential (`api::limits`).
    pub boundary: Boundary,
    /// Rows retention deleted since the start.
    pub pruned: crate::store::retention::PrunedSnapshot,
    /// The wall clock minus the controller's clock (ms), when known.
    pub clock_skew_ms: Option<i64>,
    /// Schedule occurrences by fate (ranges counted in full).
    pub occurrences: baton_proto::schedule::OccurrenceCounts,
    /// `(active, paused)` schedules.
    pub schedules: (u64, u64),
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
    // Drills whose watcher died with a restart get their verdict here too.
    crate::drills::refresh_running(&s.store).await?;
    let snap = Snapshot {
        drills: s.store.drill_outcomes().await?,
        lease_expirations: s.store.lease_expirations().await?,
        agent_restart_ends: s.store.agent_restart_ends().await?,
        takeovers_ms: s.store.takeover_samples_ms().await?,
        group_commit: s.store.group_commit_stats(),
        auth_cache_entries: s.store.auth_cache().len() as u64,
        auth_cache_hits: s.store.auth_cache().hits_and_misses().0,
        auth_cache_misses: s.store.auth_cache().hits_and_misses().1,
        presence_agents: Some(s.presence.len() as u64),
        boundary: Boundary {
            refused_busy: s.limits.refused_busy.load(Ordering::Relaxed),
            refused_enroll: s.limits.refused_enroll.load(Ordering::Relaxed),
            audit_suppressed: s.limits.audit_suppressed.load(Ordering::Relaxed),
            unauthenticated_in_flight: s.limits.in_flight() as u64,
        },
        pruned: s.store.pruned(),
        clock_skew_ms: Some(crate::clock::skew_ms()),
        occurrences: s.store.occurrence_totals().await?,
        schedules: schedule_counts(&s.store.list_schedules().await?),
    };
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(&snap),
    )
        .into_response())
}

/// `(active, paused)` schedules.
fn schedule_counts(all: &[crate::store::schedules::StoredSchedule]) -> (u64, u64) {
    let paused = all.iter().filter(|s| s.paused).count() as u64;
    (all.len() as u64 - paused, paused)
}

/// The Prometheus text of a snapshot.
pub fn render(s: &Snapshot) -> String {
    let mut out = String::new();
    render_drills(&mut out, s);
    render_schedules(&mut out, s);
    render_takeovers(&mut out, s);
    render_counters(&mut out, s);
    render_gauges(&mut out, s);
    out
}

/// Drills by method and result, running drills, lease expirations.
fn render_drills(out: &mut String, s: &Snapshot) {
    out.push_str("# HELP baton_drills_total Finished failover drills by method and result.\n");
    out.push_str("# TYPE baton_drills_total counter\n");
    let mut running = 0;
    for method in DrillMethod::ALL {
        for result in ["passed", "failed", "error"] {
            let n = s
                .drills
                .iter()
                .filter(|(m, r, _)| m == method.as_str() && r == result)
                .map(|(_, _, n)| *n)
                .sum::<i64>();
            let _ = writeln!(
                out,
                "baton_drills_total{{method=\"{method}\",result=\"{result}\"}} {n}"
            );
        }
    }
    for (_, r, n) in &s.drills {
        if r == "running" {
            running += n;
        }
    }
    out.push_str("# HELP baton_drills_running Drills waiting for their verdict.\n");
    out.push_str("# TYPE baton_drills_running gauge\n");
    let _ = writeln!(out, "baton_drills_running {running}");
    out.push_str("# HELP baton_lease_expirations_total Leases that ran out on the controller.\n");
    out.push_str("# TYPE baton_lease_expirations_total counter\n");
    let _ = writeln!(out, "baton_lease_expirations_total {}", s.lease_expirations);
    out.push_str("# HELP baton_agent_restart_lease_ends_total Leases a restarted agent reported for its killed predecessor, ended agent_restarted.\n");
    out.push_str("# TYPE baton_agent_restart_lease_ends_total counter\n");
    let _ = writeln!(
        out,
        "baton_agent_restart_lease_ends_total {}",
        s.agent_restart_ends
    );
}

/// The takeover histogram (seconds).
fn render_schedules(out: &mut String, s: &Snapshot) {
    out.push_str(
        "# HELP baton_schedule_occurrences_total Schedule occurrences by what became of them (missed: never silently dropped).\n",
    );
    out.push_str("# TYPE baton_schedule_occurrences_total counter\n");
    let o = &s.occurrences;
    for (state, n) in [
        ("fired", o.fired),
        ("pending", o.pending),
        ("skipped", o.skipped),
        ("missed", o.missed),
    ] {
        let _ = writeln!(
            out,
            "baton_schedule_occurrences_total{{state=\"{state}\"}} {n}"
        );
    }
    out.push_str("# HELP baton_schedules Schedules, active or paused.\n");
    out.push_str("# TYPE baton_schedules gauge\n");
    let _ = writeln!(out, "baton_schedules{{state=\"active\"}} {}", s.schedules.0);
    let _ = writeln!(out, "baton_schedules{{state=\"paused\"}} {}", s.schedules.1);
}

fn render_takeovers(out: &mut String, s: &Snapshot) {
    out.push_str(
        "# HELP baton_takeover_seconds Lease-expiry takeovers: holder's last renewal to the next grant.\n",
    );
    out.push_str("# TYPE baton_takeover_seconds histogram\n");
    let secs: Vec<f64> = s
        .takeovers_ms
        .iter()
        .map(|ms| *ms as f64 / 1000.0)
        .collect();
    for le in TAKEOVER_BUCKETS {
        let n = secs.iter().filter(|v| **v <= le).count();
        let _ = writeln!(out, "baton_takeover_seconds_bucket{{le=\"{le}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "baton_takeover_seconds_bucket{{le=\"+Inf\"}} {}",
        secs.len()
    );
    let _ = writeln!(
        out,
        "baton_takeover_seconds_sum {}",
        secs.iter().sum::<f64>()
    );
    let _ = writeln!(out, "baton_takeover_seconds_count {}", secs.len());
}

/// The per-process counters.
fn render_counters(out: &mut String, s: &Snapshot) {
    let gc = &s.group_commit;
    for (name, help, n) in [
        (
            "baton_group_commit_batches_total",
            "Transactions run by the group-commit writer.",
            gc.batches,
        ),
        (
            "baton_group_commit_ops_total",
            "Operations run by the group-commit writer.",
            gc.ops,
        ),
        (
            "baton_group_commit_replays_total",
            "Group-commit batches run again with savepoints after an operation failed.",
            gc.replays,
        ),
        (
            "baton_auth_cache_hits_total",
            "Authentications answered from the auth cache.",
            s.auth_cache_hits,
        ),
        (
            "baton_auth_cache_misses_total",
            "Authentications that looked the token up in the store.",
            s.auth_cache_misses,
        ),
        (
            "baton_unauthenticated_refused_total",
            "Requests without a credential refused by the concurrency limits (per address or overall).",
            s.boundary.refused_busy,
        ),
        (
            "baton_enroll_rate_limited_total",
            "Enrollment attempts refused by the per-address rate limit.",
            s.boundary.refused_enroll,
        ),
        (
            "baton_audit_suppressed_total",
            "Refused calls without a credential not written to the audit log (rate limit).",
            s.boundary.audit_suppressed,
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {n}"
        );
    }
    out.push_str(
        "# HELP baton_pruned_rows_total Rows deleted by retention (job_keep, audit_keep).\n",
    );
    out.push_str("# TYPE baton_pruned_rows_total counter\n");
    for (table, n) in s.pruned.by_table() {
        let _ = writeln!(out, "baton_pruned_rows_total{{table=\"{table}\"}} {n}");
    }
}

/// The per-process gauges.
fn render_gauges(out: &mut String, s: &Snapshot) {
    out.push_str("# HELP baton_auth_cache_entries Credentials in the auth cache.\n");
    out.push_str("# TYPE baton_auth_cache_entries gauge\n");
    let _ = writeln!(out, "baton_auth_cache_entries {}", s.auth_cache_entries);
    out.push_str(
        "# HELP baton_unauthenticated_in_flight Requests without a credential being served now.\n",
    );
    out.push_str("# TYPE baton_unauthenticated_in_flight gauge\n");
    let _ = writeln!(
        out,
        "baton_unauthenticated_in_flight {}",
        s.boundary.unauthenticated_in_flight
    );
    if let Some(n) = s.presence_agents {
        out.push_str("# HELP baton_presence_agents Agents in the in-memory presence.\n");
        out.push_str("# TYPE baton_presence_agents gauge\n");
        let _ = writeln!(out, "baton_presence_agents {n}");
    }
    if let Some(ms) = s.clock_skew_ms {
        out.push_str(
            "# HELP baton_clock_skew_seconds Wall clock minus the controller's clock (steps since its start; a restart adopts them).\n",
        );
        out.push_str("# TYPE baton_clock_skew_seconds gauge\n");
        let _ = writeln!(out, "baton_clock_skew_seconds {}", ms as f64 / 1000.0);
    }
}

#[cfg(test)]
mod tests;
