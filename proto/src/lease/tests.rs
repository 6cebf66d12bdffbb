use super::*;
use crate::agent::ConnectionInfo;
use crate::job::{JobKind, JobState, NoopSpec};
use crate::roundtrip::check;

#[test]
fn poll_roundtrip() {
    check(&PollRequest {
        groups: vec!["db".into()],
        free_slots: 2,
        capabilities: Capabilities {
            kinds: vec![JobKind::Command, JobKind::Noop],
            connections: vec![ConnectionInfo {
                name: "main".into(),
                kind: "mysql".into(),
            }],
            stores: Vec::new(),
        },
        version: "0.1.0".into(),
        os: "linux".into(),
        metrics: Some(HostMetrics {
            cpu_percent: Some(3.5),
            memory_used_bytes: Some(1),
            memory_total_bytes: Some(2),
            dump_dir_free_bytes: None,
        }),
        wait_ms: Some(1000),
        leases: vec![LeaseRef {
            job_id: 4,
            token: 7,
        }],
        failover_ms: Some(840),
        completions: vec![BatchCompleteItem::new(
            3,
            CompleteRequest {
                started_after_ms: Some(2),
                token: 5,
                completion: Completion::Succeeded,
                result: JobResult::default(),
                error: None,
            },
        )],
    });
    check(&PollResponse {
        grants: vec![Grant {
            job_id: 1,
            attempt: 2,
            token: 9,
            lease_ttl_ms: 15_000,
            held_ms: 12,
            timeout_ms: None,
            group: "db".into(),
            spec: JobSpec::Noop(NoopSpec::default()),
            retry_codes: vec![1213],
        }],
        retry_after_ms: None,
        drain: false,
        cancels: vec![],
        completed: vec![BatchCompleteResult::Recorded {
            job_id: 3,
            state: JobState::Succeeded,
            duplicate: false,
        }],
    });
    check(&PollResponse {
        grants: vec![],
        retry_after_ms: Some(5),
        drain: true,
        cancels: vec![LeaseRef {
            job_id: 4,
            token: 7,
        }],
        completed: vec![],
    });
    // Controllers before drain and cancel notices existed did not send the fields.
    let old: PollResponse = serde_json::from_str(r#"{"grants":[]}"#).expect("old");
    assert!(!old.drain && old.cancels.is_empty() && old.completed.is_empty());
    // Agents before failover reports did not send the field, and an agent
    // without one to report leaves it out.
    let old: PollRequest = serde_json::from_str(
        r#"{"groups":[],"free_slots":0,"capabilities":{"kinds":[],"connections":[]},"version":"1","os":"linux"}"#,
    )
    .expect("old poll");
    assert_eq!(old.failover_ms, None);
    assert!(old.completions.is_empty());
    let json = serde_json::to_string(&old).expect("json");
    assert!(!json.contains("failover_ms"), "{json}");
    assert!(!json.contains("completions"), "{json}");
}

#[test]
fn heartbeat_roundtrip() {
    check(&HeartbeatRequest {
        started_after_ms: None,
        token: 3,
        progress: Some(Progress {
            percent: Some(50.0),
            message: "half".into(),
        }),
        log_tail: "line\n".into(),
        failover_ms: Some(1200),
    });
    check(&HeartbeatResponse {
        lease_ttl_ms: 2000,
        cancel_requested: true,
        fault: None,
    });
    check(&HeartbeatResponse {
        lease_ttl_ms: 2000,
        cancel_requested: false,
        fault: Some(crate::drill::Fault {
            drill_id: 1,
            method: crate::drill::DrillMethod::Freeze,
            duration_ms: 4000,
        }),
    });
}

#[test]
fn complete_roundtrip() {
    for completion in [
        Completion::Succeeded,
        Completion::Failed { retryable: false },
        Completion::TimedOut,
        Completion::Cancelled,
    ] {
        check(&CompleteRequest {
            started_after_ms: None,
            token: 4,
            completion,
            result: JobResult::default(),
            error: Some("boom".into()),
        });
    }
    check(&CompleteResponse {
        state: JobState::Succeeded,
        duplicate: true,
    });
    let wire = serde_json::to_value(Completion::Failed { retryable: true }).expect("json");
    assert_eq!(
        wire,
        serde_json::json!({"outcome":"failed","retryable":true})
    );
}

#[test]
fn batch_complete_roundtrip() {
    let single = CompleteRequest {
        started_after_ms: None,
        token: 7,
        completion: Completion::Failed { retryable: true },
        result: JobResult::default(),
        error: Some("boom".into()),
    };
    let item = BatchCompleteItem::new(12, single.clone());
    assert_eq!(item.request(), single);
    check(&BatchCompleteRequest {
        completions: vec![item],
    });
    let wire = serde_json::to_value(BatchCompleteItem::new(3, single)).expect("json");
    assert_eq!(wire["job_id"], 3);
    assert_eq!(wire["token"], 7);
    assert_eq!(wire["completion"]["outcome"], "failed");
    let resp = BatchCompleteResponse {
        results: vec![
            BatchCompleteResult::Recorded {
                job_id: 1,
                state: JobState::Succeeded,
                duplicate: false,
            },
            BatchCompleteResult::Recorded {
                job_id: 2,
                state: JobState::Queued,
                duplicate: true,
            },
            BatchCompleteResult::Refused {
                job_id: 3,
                code: crate::error::ErrorCode::LeaseLost,
                message: "stale".into(),
            },
        ],
    };
    check(&resp);
    assert_eq!(
        resp.results
            .iter()
            .map(BatchCompleteResult::job_id)
            .collect::<Vec<_>>(),
        [1, 2, 3]
    );
    let wire = serde_json::to_value(&resp).expect("json");
    assert_eq!(
        wire["results"][2],
        serde_json::json!({"job_id":3,"code":"lease_lost","message":"stale"})
    );
}

#[test]
fn release_roundtrip() {
    check(&ReleaseRequest {
        token: 5,
        reason: "drain".into(),
    });
    check(&ReleaseResponse {
        state: JobState::Queued,
    });
}

#[test]
fn abandon_roundtrip() {
    check(&AbandonRequest {
        leases: vec![LeaseRef {
            job_id: 4,
            token: 7,
        }],
    });
    check(&AbandonResponse {
        results: vec![
            AbandonResult {
                job_id: 4,
                token: 7,
                outcome: AbandonOutcome::Ended,
                state: Some(JobState::Queued),
            },
            AbandonResult {
                job_id: 5,
                token: 2,
                outcome: AbandonOutcome::NotCurrent,
                state: None,
            },
        ],
    });
    let wire = serde_json::to_value(AbandonOutcome::NotCurrent).expect("json");
    assert_eq!(wire, serde_json::json!("not_current"));
    assert!(
        serde_json::from_str::<AbandonRequest>(r#"{"leases":[{"job_id":1,"token":1,"x":1}]}"#)
            .is_err(),
        "unknown fields are refused"
    );
}
