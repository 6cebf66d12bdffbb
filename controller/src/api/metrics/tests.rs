use super::*;

#[test]
fn renders_counters_and_a_cumulative_histogram() {
    let text = render(&Snapshot {
        drills: vec![
            ("crash".into(), "passed".into(), 2),
            ("freeze".into(), "failed".into(), 1),
            ("partition".into(), "running".into(), 1),
        ],
        lease_expirations: 3,
        agent_restart_ends: 4,
        takeovers_ms: vec![400, 2500, 16_000],
        group_commit: GroupCommitStats {
            batches: 5,
            ops: 40,
            replays: 1,
        },
        auth_cache_entries: 7,
        auth_cache_hits: 90,
        auth_cache_misses: 10,
        presence_agents: Some(2000),
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
        occurrences: baton_proto::schedule::OccurrenceCounts {
            fired: 9,
            skipped: 2,
            missed: 7,
            pending: 1,
        },
        schedules: (3, 1),
    });
    assert!(text.contains("baton_schedule_occurrences_total{state=\"fired\"} 9\n"));
    assert!(text.contains("baton_schedule_occurrences_total{state=\"missed\"} 7\n"));
    assert!(text.contains("baton_schedule_occurrences_total{state=\"skipped\"} 2\n"));
    assert!(text.contains("baton_schedule_occurrences_total{state=\"pending\"} 1\n"));
    assert!(text.contains("baton_schedules{state=\"paused\"} 1\n"));
    assert!(text.contains("baton_unauthenticated_refused_total 4\n"));
    assert!(text.contains("baton_enroll_rate_limited_total 5\n"));
    assert!(text.contains("baton_audit_suppressed_total 6\n"));
    assert!(text.contains("baton_unauthenticated_in_flight 2\n"));
    assert!(text.contains("baton_pruned_rows_total{table=\"jobs\"} 12\n"));
    assert!(text.contains("baton_pruned_rows_total{table=\"attempts\"} 15\n"));
    assert!(text.contains("baton_pruned_rows_total{table=\"audit\"} 4\n"));
    assert!(text.contains("baton_pruned_rows_total{table=\"occurrences\"} 30\n"));
    assert!(text.contains("baton_pruned_rows_total{table=\"pipeline_runs\"} 2\n"));
    assert!(text.contains("baton_pruned_rows_total{table=\"run_steps\"} 5\n"));
    assert!(text.contains("baton_drills_total{method=\"crash\",result=\"passed\"} 2\n"));
    assert!(text.contains("baton_drills_total{method=\"freeze\",result=\"failed\"} 1\n"));
    assert!(text.contains("baton_drills_total{method=\"partition\",result=\"error\"} 0\n"));
    assert!(text.contains("baton_drills_running 1\n"));
    assert!(text.contains("baton_lease_expirations_total 3\n"));
    assert!(text.contains("baton_agent_restart_lease_ends_total 4\n"));
    assert!(text.contains("baton_takeover_seconds_bucket{le=\"0.5\"} 1\n"));
    assert!(text.contains("baton_takeover_seconds_bucket{le=\"3\"} 2\n"));
    assert!(text.contains("baton_takeover_seconds_bucket{le=\"15\"} 2\n"));
    assert!(text.contains("baton_takeover_seconds_bucket{le=\"20\"} 3\n"));
    assert!(text.contains("baton_takeover_seconds_bucket{le=\"+Inf\"} 3\n"));
    assert!(text.contains("baton_takeover_seconds_sum 18.9\n"));
    assert!(text.contains("baton_takeover_seconds_count 3\n"));
    assert!(text.contains("# TYPE baton_group_commit_batches_total counter\n"));
    assert!(text.contains("baton_group_commit_batches_total 5\n"));
    assert!(text.contains("baton_group_commit_ops_total 40\n"));
    assert!(text.contains("baton_group_commit_replays_total 1\n"));
    assert!(text.contains("baton_auth_cache_entries 7\n"));
    assert!(text.contains("baton_auth_cache_hits_total 90\n"));
    assert!(text.contains("baton_auth_cache_misses_total 10\n"));
    assert!(text.contains("# TYPE baton_presence_agents gauge\n"));
    assert!(text.contains("baton_presence_agents 2000\n"));
    assert!(text.contains("# TYPE baton_clock_skew_seconds gauge\n"));
    assert!(text.contains("baton_clock_skew_seconds -3600.25\n"));
}

#[test]
fn presence_gauge_is_left_out_when_unknown() {
    let text = render(&Snapshot::default());
    assert!(text.contains("baton_group_commit_ops_total 0\n"));
    assert!(!text.contains("baton_presence_agents"));
    assert!(!text.contains("baton_clock_skew_seconds"));
}
