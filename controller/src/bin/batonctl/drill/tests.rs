use super::*;
use baton_proto::drill::{DrillEvent, DrillEventKind, DrillReport, ExactlyOnce};

#[test]
fn renders_report_and_relative_timeline() {
    let t0 = DateTime::from_timestamp_millis(1_700_000_000_000).expect("t0");
    let at = |ms: i64| t0 + chrono::Duration::milliseconds(ms);
    let ev = |ms, kind, agent: Option<&str>| DrillEvent {
        at: at(ms),
        kind,
        agent: agent.map(str::to_owned),
        attempt: agent.map(|_| 1),
        detail: None,
    };
    let d = DrillView {
        id: 4,
        group: "db".into(),
        method: DrillMethod::Crash,
        duration_ms: 4000,
        lease_ttl_ms: 2000,
        rto_ms: 500,
        job_id: Some(9),
        state: DrillState::Failed,
        created_by: "token:ops".into(),
        created_at: t0,
        finished_at: Some(at(5000)),
        report: Some(DrillReport {
            holder: Some("agent-1".into()),
            new_holder: Some("agent-2".into()),
            detection_ms: Some(2000),
            takeover_ms: Some(2010),
            total_ms: Some(4100),
            failover_ms: None,
            attempts: 2,
            job_state: None,
            exactly_once: ExactlyOnce::Proven,
            exactly_once_evidence: "one success".into(),
            rto_ms: 500,
            passed: false,
            reasons: vec!["takeover took 2010 ms, over the RTO of 500 ms".into()],
        }),
        events: vec![
            ev(0, DrillEventKind::Started, None),
            ev(700, DrillEventKind::FaultSent, Some("agent-1")),
            ev(2710, DrillEventKind::LeaseExpired, Some("agent-1")),
        ],
    };
    let text = render_drill(&d);
    assert!(
        text.starts_with("Drill 4: crash on group db — failed\n"),
        "{text}"
    );
    assert!(text.contains("holder agent-1 → agent-2"), "{text}");
    assert!(
        text.contains("exactly once: proven — one success"),
        "{text}"
    );
    assert!(
        text.contains("    - takeover took 2010 ms, over the RTO of 500 ms"),
        "{text}"
    );
    let timeline: Vec<&str> = text
        .lines()
        .skip_while(|l| *l != "Timeline:")
        .skip(2)
        .collect();
    assert_eq!(timeline.len(), 3, "{text}");
    assert!(timeline[0].trim_start().starts_with("+0"), "{text}");
    assert!(timeline[1].contains("fault_sent") && timeline[1].contains("agent-1"));
    assert!(timeline[2].contains("lease_expired"), "{text}");
    let list = render_list(
        &DrillList {
            drills: vec![DrillView {
                events: Vec::new(),
                ..d
            }],
        },
        at(6000),
    );
    assert!(list.starts_with("ID"), "{list}");
    assert!(list.contains("crash") && list.contains("failed"), "{list}");
}

#[test]
fn methods_parse() {
    assert_eq!(parse_method("freeze"), Ok(DrillMethod::Freeze));
    assert_eq!(
        parse_method("controller-crash"),
        Ok(DrillMethod::ControllerCrash)
    );
    assert_eq!(
        parse_method("controller_crash"),
        Ok(DrillMethod::ControllerCrash)
    );
    assert!(parse_method("reboot").is_err());
}
