use super::*;
use crate::roundtrip::check;

#[test]
fn drill_roundtrip() {
    check(&DrillStart {
        group: "db".into(),
        method: DrillMethod::Freeze,
        duration_ms: Some(4000),
        job: None,
        rto_ms: Some(20_000),
        lease_ttl_ms: Some(2000),
        agent: None,
    });
    check(&DrillStart {
        group: "db".into(),
        method: DrillMethod::ControllerCrash,
        duration_ms: None,
        job: None,
        rto_ms: None,
        lease_ttl_ms: None,
        agent: Some("db1".into()),
    });
    check(&Fault {
        drill_id: 3,
        method: DrillMethod::Crash,
        duration_ms: 100,
    });
    check(&FaultAck {
        token: 2,
        drill_id: 3,
    });
    let at = DateTime::from_timestamp_millis(1_700_000_000_123).expect("ts");
    check(&DrillView {
        id: 1,
        group: "db".into(),
        method: DrillMethod::Partition,
        duration_ms: 4000,
        lease_ttl_ms: 2000,
        rto_ms: 10_000,
        job_id: Some(7),
        state: DrillState::Failed,
        created_by: "token:admin".into(),
        created_at: at,
        finished_at: Some(at),
        report: Some(DrillReport {
            holder: Some("a1".into()),
            new_holder: Some("a2".into()),
            detection_ms: Some(2000),
            takeover_ms: Some(2001),
            total_ms: Some(4000),
            failover_ms: Some(35),
            attempts: 2,
            job_state: Some(crate::job::JobState::Succeeded),
            exactly_once: ExactlyOnce::Proven,
            exactly_once_evidence: "one success".into(),
            rto_ms: 10,
            passed: false,
            reasons: vec!["slow".into()],
        }),
        events: vec![
            DrillEvent {
                at,
                kind: DrillEventKind::LeaseExpired,
                agent: Some("a1".into()),
                attempt: Some(1),
                detail: None,
            },
            DrillEvent {
                at,
                kind: DrillEventKind::AgentFailover,
                agent: Some("a1".into()),
                attempt: None,
                detail: Some("35 ms".into()),
            },
        ],
    });
    assert_eq!(
        serde_json::to_value(DrillMethod::Partition).expect("json"),
        "partition"
    );
    assert_eq!(
        serde_json::to_value(DrillMethod::ControllerCrash).expect("json"),
        "controller_crash"
    );
}

#[test]
fn names_parse_back() {
    for m in DrillMethod::ALL {
        assert_eq!(DrillMethod::parse(m.as_str()), Some(m));
    }
    for s in DrillState::ALL {
        assert_eq!(DrillState::parse(s.as_str()), Some(s));
    }
    assert_eq!(
        DrillEventKind::parse("job_regranted"),
        Some(DrillEventKind::JobRegranted)
    );
    assert_eq!(DrillEventKind::parse("nope"), None);
    assert!(DrillEventKind::FaultSent < DrillEventKind::LeaseExpired);
}
