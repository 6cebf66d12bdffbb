use super::*;
use crate::roundtrip::check;

#[test]
fn agent_view_roundtrip() {
    let now = DateTime::from_timestamp_millis(1_790_000_000_000).expect("ts");
    let view = AgentView {
        id: "a1".into(),
        groups: vec!["db".into()],
        capabilities: Capabilities {
            kinds: vec![JobKind::Command],
            connections: vec![],
            stores: Vec::new(),
        },
        version: "0.1.0".into(),
        os: "linux".into(),
        last_seen: now,
        online: true,
        free_slots: 1,
        metrics: None,
        leases: vec![LeaseHeld {
            job_id: 3,
            token: 2,
            expires_at: now,
        }],
        enrolled_at: Some(now),
        revoked_at: None,
        drained_at: None,
    };
    check(&view);
    check(&AgentList { agents: vec![view] });
    check(&AgentDrain {
        agent_id: "a1".into(),
        draining: true,
        drained_at: Some(now),
        running: vec![3],
    });
}
