use super::*;
use crate::store::agents::GroupAgents;
use baton_proto::JobState;

fn figures() -> StoreFigures {
    StoreFigures {
        now: 10_000,
        queue: vec![
            QueueFigure {
                group: "db".into(),
                state: JobState::Queued,
                count: 3,
                oldest_ready_at: Some(7_500),
            },
            QueueFigure {
                group: "db".into(),
                state: JobState::Succeeded,
                count: 5,
                oldest_ready_at: None,
            },
            QueueFigure {
                group: "web".into(),
                state: JobState::Queued,
                count: 1,
                oldest_ready_at: None,
            },
        ],
        agents: vec![GroupAgents {
            group: "db".into(),
            online: 2,
            draining: 1,
            offline: 0,
        }],
        drills: vec![
            ("crash".into(), "passed".into(), 2),
            ("freeze".into(), "failed".into(), 1),
            ("partition".into(), "running".into(), 1),
        ],
        agent_restart_ends: 4,
        takeovers_ms: vec![400, 2500, 16_000],
        occurrences: baton_proto::schedule::OccurrenceCounts {
            fired: 9,
            skipped: 2,
            missed: 7,
            pending: 1,
        },
        schedules: (3, 1),
        schedules_stale: 2,
    }
}

fn live() -> Live {
    Live {
        group_commit: GroupCommitStats {
            batches: 5,
            ops: 40,
            replays: 1,
        },
        auth_cache_entries: 7,
        auth_cache_hits: 90,
        auth_cache_misses: 10,
        presence_agents: Some(2000),
        polls_parked: Some(1500),
        boundary: Boundary {
            refused_busy: 4,
            refused_enroll: 5,
            audit_suppressed: 6,
            unauthenticated_in_flight: 2,
        },
        pruned: crate::store::retention::PrunedSnapshot {
            jobs: 12,
            attempts: 15,
            audit: 4,
            occurrences: 30,
            runs: 2,
            run_steps: 5,
        },
        clock_skew_ms: Some(-3_600_250),
    }
}

#[test]
fn renders_the_store_figures() {
    let text = render(&figures(), &live());
    for line in [
        "# TYPE baton_jobs gauge",
        "baton_jobs{group=\"db\",state=\"queued\"} 3",
        "baton_jobs_finished_last_hour{group=\"db\",state=\"succeeded\"} 5",
        "baton_jobs_finished_last_hour{group=\"web\",state=\"failed\"} 0",
        "baton_jobs{group=\"db\",state=\"running\"} 0",
        "baton_jobs{group=\"web\",state=\"queued\"} 1",
        "# TYPE baton_jobs_queued_oldest_age_seconds gauge",
        "baton_jobs_queued_oldest_age_seconds{group=\"db\"} 2.5",
        "baton_jobs_queued_oldest_age_seconds{group=\"web\"} 0.0",
        "baton_agents{group=\"db\",state=\"online\"} 2",
        "baton_agents{group=\"db\",state=\"draining\"} 1",
        "baton_agents{group=\"db\",state=\"offline\"} 0",
        "baton_schedule_occurrences_total{state=\"fired\"} 9",
        "baton_schedule_occurrences_total{state=\"missed\"} 7",
        "baton_schedule_occurrences_total{state=\"skipped\"} 2",
        "baton_schedule_occurrences_total{state=\"pending\"} 1",
        "baton_schedules{state=\"paused\"} 1",
        "baton_schedules_stale 2",
        "baton_drills_total{method=\"crash\",result=\"passed\"} 2",
        "baton_drills_total{method=\"freeze\",result=\"failed\"} 1",
        "baton_drills_total{method=\"partition\",result=\"error\"} 0",
        "baton_drills_running 1",
        "baton_agent_restart_lease_ends_total 4",
        "baton_lease_takeovers_total 3",
        "# TYPE baton_takeover_seconds histogram",
        "baton_takeover_seconds_bucket{le=\"0.5\"} 1",
        "baton_takeover_seconds_bucket{le=\"3\"} 2",
        "baton_takeover_seconds_bucket{le=\"15\"} 2",
        "baton_takeover_seconds_bucket{le=\"20\"} 3",
        "baton_takeover_seconds_bucket{le=\"+Inf\"} 3",
        "baton_takeover_seconds_sum 18.9",
        "baton_takeover_seconds_count 3",
    ] {
        assert!(text.contains(&format!("{line}\n")), "{line} in\n{text}");
    }
}

#[test]
fn renders_the_live_values() {
    let text = render(&StoreFigures::default(), &live());
    for line in [
        "baton_unauthenticated_refused_total 4",
        "baton_enroll_rate_limited_total 5",
        "baton_audit_suppressed_total 6",
        "baton_unauthenticated_in_flight 2",
        "baton_pruned_rows_total{table=\"jobs\"} 12",
        "baton_pruned_rows_total{table=\"attempts\"} 15",
        "baton_pruned_rows_total{table=\"audit\"} 4",
        "baton_pruned_rows_total{table=\"occurrences\"} 30",
        "baton_pruned_rows_total{table=\"pipeline_runs\"} 2",
        "baton_pruned_rows_total{table=\"run_steps\"} 5",
        "# TYPE baton_group_commit_batches_total counter",
        "baton_group_commit_batches_total 5",
        "baton_group_commit_ops_total 40",
        "baton_group_commit_replays_total 1",
        "baton_auth_cache_entries 7",
        "baton_auth_cache_hits_total 90",
        "baton_auth_cache_misses_total 10",
        "# TYPE baton_presence_agents gauge",
        "baton_presence_agents 2000",
        "# TYPE baton_dispatch_polls_parked gauge",
        "baton_dispatch_polls_parked 1500",
        "# TYPE baton_clock_skew_seconds gauge",
        "baton_clock_skew_seconds -3600.25",
    ] {
        assert!(text.contains(&format!("{line}\n")), "{line} in\n{text}");
    }
}

#[test]
fn unknown_values_are_left_out() {
    let text = render(&StoreFigures::default(), &Live::default());
    assert!(text.contains("baton_group_commit_ops_total 0\n"));
    assert!(!text.contains("baton_presence_agents"));
    assert!(!text.contains("baton_dispatch_polls_parked"));
    assert!(!text.contains("baton_clock_skew_seconds"));
    assert!(!text.contains("baton_jobs{"));
}

/// Every family has one HELP and one TYPE line, and no name is registered
/// twice (the event metrics, the store's and the live ones share one
/// registry).
#[test]
fn every_family_is_described_once() {
    let text = render(&figures(), &live());
    let mut seen = std::collections::BTreeSet::new();
    for l in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = l.split_whitespace().nth(2).expect("name");
        assert!(seen.insert(name.to_owned()), "{name} twice in\n{text}");
        assert!(text.contains(&format!("# HELP {name} ")), "{name}");
        assert!(
            name.starts_with("baton_") || name.starts_with("process_"),
            "{name}"
        );
    }
    assert!(seen.len() > 30, "{seen:?}");
}
