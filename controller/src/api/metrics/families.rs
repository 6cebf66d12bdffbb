//! The metric families of one scrape: the store's figures and the live
//! values, registered as prometheus-client metrics.

use std::sync::atomic::AtomicU64;

use baton_proto::JobState;
use baton_proto::drill::DrillMethod;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use super::{Live, StoreFigures};

/// Upper bounds (seconds) of the takeover histogram buckets.
pub const TAKEOVER_BUCKETS: [f64; 14] = [
    0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 120.0, 300.0,
];

/// Labels of one series.
type Labels = Vec<(&'static str, String)>;

/// A gauge holding seconds (or any float).
type FloatGauge = Gauge<f64, AtomicU64>;

/// The store's figures (fleet-wide).
pub(super) fn store(reg: &mut Registry, f: &StoreFigures) {
    jobs(reg, f);
    agents(reg, f);
    drills(reg, f);
    schedules(reg, f);
    takeovers(reg, f);
}

/// Jobs by group and state (queued and running; finished in the last
/// hour); the oldest ready job's age by group.
fn jobs(reg: &mut Registry, f: &StoreFigures) {
    let jobs = Family::<Labels, Gauge>::default();
    let finished = Family::<Labels, Gauge>::default();
    let oldest = Family::<Labels, FloatGauge>::default();
    for q in &f.queue {
        // Every state of a group that has jobs is shown, 0 when empty.
        for state in JobState::ALL {
            let family = if state.is_terminal() {
                &finished
            } else {
                &jobs
            };
            drop(family.get_or_create(&group_state(&q.group, state.as_str())));
        }
        let family = if q.state.is_terminal() {
            &finished
        } else {
            &jobs
        };
        family
            .get_or_create(&group_state(&q.group, q.state.as_str()))
            .inc_by(q.count as i64);
        let age = oldest.get_or_create(&vec![("group", q.group.clone())]);
        if let Some(at) = q.oldest_ready_at {
            age.set(crate::telemetry::ms_as_secs(f.now - at));
        }
    }
    reg.register(
        "baton_jobs",
        "Queued and running jobs by group and state (fleet-wide)",
        jobs,
    );
    reg.register(
        "baton_jobs_finished_last_hour",
        "Jobs that ended within the last hour, by group and state: succeeded, failed, cancelled (fleet-wide)",
        finished,
    );
    reg.register_with_unit(
        "baton_jobs_queued_oldest_age",
        "Age of the oldest queued job ready to run, since it became ready (submit or end of backoff), by group; 0 when none waits (fleet-wide)",
        Unit::Seconds,
        oldest,
    );
}

fn group_state(group: &str, state: &str) -> Labels {
    vec![("group", group.to_owned()), ("state", state.to_owned())]
}

/// Agents by group and state.
fn agents(reg: &mut Registry, f: &StoreFigures) {
    let agents = Family::<Labels, Gauge>::default();
    for a in &f.agents {
        for (state, n) in [
            ("online", a.online),
            ("draining", a.draining),
            ("offline", a.offline),
        ] {
            agents
                .get_or_create(&group_state(&a.group, state))
                .set(n as i64);
        }
    }
    reg.register(
        "baton_agents",
        "Enrolled agents that are not revoked, by group and state: online (seen within agent_offline_after, not drained), draining (drained), offline (fleet-wide)",
        agents,
    );
}

/// Drills by method and result, running drills, lease expirations and
/// restart ends.
fn drills(reg: &mut Registry, f: &StoreFigures) {
    let done = Family::<Labels, Counter>::default();
    for method in DrillMethod::ALL {
        for result in ["passed", "failed", "error"] {
            let n: i64 = f
                .drills
                .iter()
                .filter(|(m, r, _)| m == method.as_str() && r == result)
                .map(|(_, _, n)| *n)
                .sum();
            done.get_or_create(&vec![
                ("method", method.as_str().to_owned()),
                ("result", result.to_owned()),
            ])
            .inc_by(n.max(0) as u64);
        }
    }
    reg.register(
        "baton_drills",
        "Finished failover drills by method and result (fleet-wide)",
        done,
    );
    let running: i64 = f
        .drills
        .iter()
        .filter(|(_, r, _)| r == "running")
        .map(|(_, _, n)| *n)
        .sum();
    reg.register(
        "baton_drills_running",
        "Drills waiting for their verdict (fleet-wide)",
        ConstGauge::new(running),
    );
    counter(
        reg,
        "baton_agent_restart_lease_ends",
        "Leases a restarted agent reported for its killed predecessor, ended agent_restarted (fleet-wide)",
        f.agent_restart_ends.max(0) as u64,
    );
}

/// Schedules and their occurrences.
fn schedules(reg: &mut Registry, f: &StoreFigures) {
    let occ = Family::<Labels, Counter>::default();
    let o = &f.occurrences;
    for (state, n) in [
        ("fired", o.fired),
        ("pending", o.pending),
        ("skipped", o.skipped),
        ("missed", o.missed),
    ] {
        occ.get_or_create(&vec![("state", state.to_owned())])
            .inc_by(n);
    }
    reg.register(
        "baton_schedule_occurrences",
        "Schedule occurrences by what became of them (missed: never silently dropped; fleet-wide)",
        occ,
    );
    let by_state = Family::<Labels, Gauge>::default();
    by_state
        .get_or_create(&vec![("state", "active".to_owned())])
        .set(f.schedules.0 as i64);
    by_state
        .get_or_create(&vec![("state", "paused".to_owned())])
        .set(f.schedules.1 as i64);
    reg.register(
        "baton_schedules",
        "Schedules, active or paused (fleet-wide)",
        by_state,
    );
    reg.register(
        "baton_schedules_stale",
        "Schedules without a successful occurrence within their alert_after (fleet-wide)",
        ConstGauge::new(f.schedules_stale as i64),
    );
}

/// Lease-expiry takeovers: their count and durations.
fn takeovers(reg: &mut Registry, f: &StoreFigures) {
    let h = Histogram::new(TAKEOVER_BUCKETS);
    for ms in &f.takeovers_ms {
        h.observe(*ms as f64 / 1000.0);
    }
    reg.register_with_unit(
        "baton_takeover",
        "Lease-expiry takeovers: holder's last renewal to the next grant (fleet-wide)",
        Unit::Seconds,
        h,
    );
    counter(
        reg,
        "baton_lease_takeovers",
        "Jobs granted again after their lease ran out (fleet-wide)",
        f.takeovers_ms.len() as u64,
    );
}

fn counter(reg: &mut Registry, name: &str, help: &str, n: u64) {
    reg.register(name, help, ConstCounter::new(n));
}

fn gauge(reg: &mut Registry, name: &str, help: &str, n: u64) {
    reg.register(name, help, ConstGauge::new(n as i64));
}

/// The controller's own counters and gauges.
pub(super) fn live(reg: &mut Registry, l: &Live) {
    let gc = &l.group_commit;
    for (name, help, n) in [
        (
            "baton_group_commit_batches",
            "Group-commit batches committed (SQLite writer transactions, PostgreSQL grouped statements)",
            gc.batches,
        ),
        (
            "baton_group_commit_ops",
            "Operations run in group-commit batches",
            gc.ops,
        ),
        (
            "baton_group_commit_replays",
            "Group-commit batches run again with savepoints after an operation failed",
            gc.replays,
        ),
        (
            "baton_auth_cache_hits",
            "Authentications answered from the auth cache",
            l.auth_cache_hits,
        ),
        (
            "baton_auth_cache_misses",
            "Authentications that looked the token up in the store",
            l.auth_cache_misses,
        ),
        (
            "baton_unauthenticated_refused",
            "Requests without a credential refused by the concurrency limits (per address or overall)",
            l.boundary.refused_busy,
        ),
        (
            "baton_enroll_rate_limited",
            "Enrollment attempts refused by the per-address rate limit",
            l.boundary.refused_enroll,
        ),
        (
            "baton_audit_suppressed",
            "Refused calls without a credential not written to the audit log (rate limit)",
            l.boundary.audit_suppressed,
        ),
    ] {
        counter(reg, name, help, n);
    }
    live_gauges(reg, l);
}

/// Retention's counts and the live gauges.
fn live_gauges(reg: &mut Registry, l: &Live) {
    let pruned = Family::<Labels, Counter>::default();
    for (table, n) in l.pruned.by_table() {
        pruned
            .get_or_create(&vec![("table", table.to_owned())])
            .inc_by(n);
    }
    reg.register(
        "baton_pruned_rows",
        "Rows deleted by retention (job_keep, audit_keep)",
        pruned,
    );
    gauge(
        reg,
        "baton_auth_cache_entries",
        "Credentials in the auth cache",
        l.auth_cache_entries,
    );
    gauge(
        reg,
        "baton_unauthenticated_in_flight",
        "Requests without a credential being served now",
        l.boundary.unauthenticated_in_flight,
    );
    if let Some(n) = l.presence_agents {
        gauge(
            reg,
            "baton_presence_agents",
            "Agents in this controller's in-memory presence",
            n,
        );
    }
    if let Some(n) = l.polls_parked {
        gauge(
            reg,
            "baton_dispatch_polls_parked",
            "Agent polls held by this controller with a free slot, parked for a submit to hand them a job (a poll whose connection closed is gone from it)",
            n,
        );
    }
    if let Some(ms) = l.clock_skew_ms {
        reg.register_with_unit(
            "baton_clock_skew",
            "Wall clock minus the controller's clock (steps since its start; a restart adopts them)",
            Unit::Seconds,
            ConstGauge::new(ms as f64 / 1000.0),
        );
    }
}
