use super::*;

fn text(reg: &Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, reg).expect("encode");
    out
}

#[test]
fn renders_every_family_with_its_name_and_type() {
    let mut reg = Registry::default();
    register(&mut reg);
    let t = text(&reg);
    for (name, kind) in [
        ("baton_dispatch_latency_seconds", "histogram"),
        ("baton_dispatch_poll_held_seconds", "histogram"),
        ("baton_attempts_total", "counter"),
        ("baton_schedule_lateness_seconds", "histogram"),
        ("baton_notification_deliveries_total", "counter"),
        ("baton_group_commit_batch_ops", "histogram"),
        ("baton_group_commit_seconds", "histogram"),
        ("baton_store_transaction_seconds", "histogram"),
        ("baton_sqlite_checkpoints_total", "counter"),
        ("baton_sqlite_checkpoint_frames_total", "counter"),
        ("baton_sqlite_checkpoint_failures_total", "counter"),
    ] {
        assert!(
            t.contains(&format!("# TYPE {name} {kind}\n")),
            "{name} in\n{t}"
        );
    }
    for r in DELIVERY_RESULTS {
        assert!(
            t.contains(&format!(
                "baton_notification_deliveries_total{{result=\"{r}\"}} "
            )),
            "{r} in\n{t}"
        );
    }
    assert!(
        t.contains("baton_attempts_total{outcome=\"agent_restarted\"} "),
        "{t}"
    );
    #[cfg(target_os = "linux")]
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ] {
        assert!(t.contains(&format!("\n{name} ")), "{name} in\n{t}");
    }
}

/// The process-wide metrics are shared by the tests of this binary: the
/// checks compare before and after.
#[test]
fn notification_results_are_counted_and_unknown_ones_are_failures() {
    let get = |r: &'static str| {
        metrics()
            .notification_deliveries
            .get_or_create(&[("result", r)])
            .get()
    };
    let (d, f) = (get("delivered"), get("failed"));
    notification_delivered("delivered");
    notification_delivered("delivered");
    notification_delivered("something else");
    assert!(get("delivered") >= d + 2);
    assert!(get("failed") > f);
}

#[test]
fn outcomes_match_the_wire_names() {
    use baton_proto::AttemptOutcome as O;
    let wire: Vec<&str> = [
        O::Succeeded,
        O::Failed,
        O::TimedOut,
        O::Cancelled,
        O::LeaseExpired,
        O::Released,
        O::Revoked,
        O::AgentRestarted,
    ]
    .iter()
    .map(|o| o.as_str())
    .collect();
    assert_eq!(wire, OUTCOMES);
}
