use super::*;
use crate::roundtrip::check;

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(1_790_000_000_000).expect("ts")
}

#[test]
fn roles_order() {
    assert!(Role::Admin.allows(Role::Operator));
    assert!(Role::Operator.allows(Role::Viewer));
    assert!(!Role::Viewer.allows(Role::Operator));
    assert!(!Role::Operator.allows(Role::Admin));
    assert_eq!(Role::parse("admin"), Some(Role::Admin));
    assert_eq!(Role::parse("root"), None);
}

#[test]
fn enrollment_roundtrip() {
    check(&EnrollRequest {
        token: "baton_enr_x".into(),
        agent_id: "db1".into(),
        hostname: "db1.example".into(),
        version: "0.1.0".into(),
    });
    check(&EnrollResponse {
        agent_id: "db1".into(),
        secret: "baton_agt_x".into(),
        groups: vec!["nightly".into()],
        fleet: "0123456789abcdef".into(),
    });
    check(&EnrollmentTokenCreate {
        groups: vec!["nightly".into()],
        expires_in_ms: 86_400_000,
        note: "db hosts".into(),
    });
    let view = EnrollmentTokenView {
        id: "e1".into(),
        groups: vec!["nightly".into()],
        note: String::new(),
        state: EnrollmentTokenState::Used,
        created_by: "token:admin".into(),
        created_at: now(),
        expires_at: now(),
        used_at: Some(now()),
        used_by: Some("db1".into()),
        revoked_at: None,
    };
    check(&view);
    check(&EnrollmentTokenCreated {
        view: view.clone(),
        token: "baton_enr_y".into(),
    });
    check(&EnrollmentTokenList { tokens: vec![view] });
}

#[test]
fn operator_tokens_roundtrip() {
    check(&OperatorTokenCreate {
        name: "ci".into(),
        role: Role::Viewer,
    });
    let view = OperatorTokenView {
        id: "t1".into(),
        name: "ci".into(),
        role: Role::Operator,
        created_by: "init".into(),
        created_at: now(),
        last_used_at: Some(now()),
        revoked_at: None,
    };
    check(&view);
    check(&OperatorTokenCreated {
        view: view.clone(),
        token: "baton_op_z".into(),
    });
    check(&OperatorTokenList { tokens: vec![view] });
    check(&WhoAmI {
        name: "ci".into(),
        token_id: "t1".into(),
        role: Role::Admin,
    });
}

#[test]
fn revoked_roundtrip() {
    check(&AgentRevoked {
        agent_id: "db1".into(),
        revoked_at: now(),
        jobs_requeued: vec![4, 5],
    });
}

#[test]
fn audit_roundtrip() {
    let e = AuditEntry {
        id: 3,
        at: now(),
        actor: "token:admin".into(),
        role: "admin".into(),
        action: "POST /v1/jobs/{id}/cancel".into(),
        target: "/v1/jobs/7/cancel".into(),
        status: 409,
        error: Some("conflict".into()),
    };
    check(&e);
    check(&AuditList {
        entries: vec![e],
        next_before: Some(3),
    });
}
