use baton_proto::auth::{EnrollmentTokenState, Role};

use crate::store::testutil::enrolled;
use crate::store::{Error, Store};

/// Conformance case `operator_tokens_lifecycle`.
pub async fn operator_tokens_lifecycle(s: &Store) {
    assert!(!s.has_active_admin().await.expect("q"));
    let v = s
        .create_operator_token("t1", "root", Role::Admin, "h1", "init", 10)
        .await
        .expect("create");
    assert_eq!(v.role, Role::Admin);
    assert!(s.has_active_admin().await.expect("q"));
    let dup = s
        .create_operator_token("t2", "root", Role::Viewer, "h2", "x", 11)
        .await;
    assert!(matches!(dup, Err(Error::Conflict(_))), "{dup:?}");
    let p = s
        .operator_by_hash("h1", 20)
        .await
        .expect("q")
        .expect("found");
    assert_eq!((p.name.as_str(), p.role), ("root", Role::Admin));
    assert!(s.operator_by_hash("nope", 20).await.expect("q").is_none());
    let listed = s.list_operator_tokens().await.expect("list");
    assert_eq!(
        listed[0].last_used_at.map(|t| t.timestamp_millis()),
        Some(20)
    );
    let r = s.revoke_operator_token("t1", 30).await.expect("revoke");
    assert!(r.revoked_at.is_some());
    assert!(s.operator_by_hash("h1", 40).await.expect("q").is_none());
    assert!(!s.has_active_admin().await.expect("q"));
    // The name is free again once revoked.
    s.create_operator_token("t3", "root", Role::Viewer, "h3", "x", 50)
        .await
        .expect("reuse name");
}

/// Conformance case `enrollment_is_single_use_and_expires`.
pub async fn enrollment_is_single_use_and_expires(s: &Store) {
    let groups = vec!["db".to_string()];
    s.create_enrollment_token("e1", "eh1", &groups, "", "token:root", 1000, 0)
        .await
        .expect("create");
    let g = s
        .enroll("eh1", "a1", "sh1", "0.1", 10)
        .await
        .expect("enroll");
    assert_eq!(g, groups);
    let again = s.enroll("eh1", "a2", "sh2", "0.1", 11).await;
    assert!(
        matches!(&again, Err(Error::Unauthorized(m)) if m.contains("already used")),
        "{again:?}"
    );
    s.create_enrollment_token("e2", "eh2", &groups, "", "x", 100, 0)
        .await
        .expect("create");
    let late = s.enroll("eh2", "a3", "sh3", "0.1", 100).await;
    assert!(
        matches!(&late, Err(Error::Unauthorized(m)) if m.contains("expired")),
        "{late:?}"
    );
    s.create_enrollment_token("e3", "eh3", &groups, "", "x", 1000, 0)
        .await
        .expect("create");
    s.revoke_enrollment_token("e3", 5).await.expect("revoke");
    let revoked = s.enroll("eh3", "a4", "sh4", "0.1", 6).await;
    assert!(
        matches!(&revoked, Err(Error::Unauthorized(m)) if m.contains("revoked")),
        "{revoked:?}"
    );
    let unknown = s.enroll("zz", "a5", "sh5", "0.1", 6).await;
    assert!(matches!(unknown, Err(Error::Unauthorized(_))));
    // An active agent id cannot be taken twice.
    s.create_enrollment_token("e4", "eh4", &groups, "", "x", 1000, 0)
        .await
        .expect("create");
    let taken = s.enroll("eh4", "a1", "sh6", "0.1", 7).await;
    assert!(matches!(taken, Err(Error::Conflict(_))));
    let states: Vec<_> = s
        .list_enrollment_tokens(200)
        .await
        .expect("list")
        .into_iter()
        .map(|t| (t.id, t.state))
        .collect();
    assert!(states.contains(&("e1".to_string(), EnrollmentTokenState::Used)));
    assert!(states.contains(&("e2".to_string(), EnrollmentTokenState::Expired)));
    assert!(states.contains(&("e3".to_string(), EnrollmentTokenState::Revoked)));
    assert!(states.contains(&("e4".to_string(), EnrollmentTokenState::Active)));
    let p = s.agent_by_hash("sh1").await.expect("q").expect("agent");
    assert_eq!(p.id, "a1");
    assert_eq!(p.allowed_groups, groups);
}

/// Conformance case `revoking_an_agent_requeues_its_jobs_without_spending_attempts`.
pub async fn revoking_an_agent_requeues_its_jobs_without_spending_attempts(s: &Store) {
    use crate::store::GrantRequest;
    use baton_proto::{AttemptOutcome, JobKind, JobState};
    enrolled(s, "a1", &["g"]).await;
    let id = s
        .submit(crate::store::testutil::new_job("g", None, "h"), 0)
        .await
        .expect("submit")
        .job
        .id;
    let groups = vec!["g".to_string()];
    let kinds = vec![JobKind::Noop];
    let g = s
        .grant(
            &GrantRequest {
                agent_id: "a1",
                groups: &groups,
                kinds: &kinds,
                connections: &[],
                stores: &[],
                max: 1,
            },
            10,
        )
        .await
        .expect("grant");
    assert_eq!(g.grants.len(), 1);
    let r = s.revoke_agent("a1", 20).await.expect("revoke");
    assert_eq!(r.jobs, vec![id]);
    assert_eq!(r.groups, groups);
    let j = s.get_job(id).await.expect("job");
    assert_eq!(j.state, JobState::Queued);
    assert_eq!(j.attempts_spent, 0);
    assert_eq!(j.attempts[0].outcome, Some(AttemptOutcome::Revoked));
    assert!(s.agent_by_hash("secret-a1").await.expect("q").is_none());
    assert!(matches!(
        s.revoke_agent("nobody", 1).await,
        Err(Error::Missing(_))
    ));
}

/// Conformance case `dashboard_sessions_expire_and_end_with_their_token`.
pub async fn dashboard_sessions_expire_and_end_with_their_token(s: &Store) {
    s.create_operator_token("t1", "ops", Role::Operator, "h1", "init", 10)
        .await
        .expect("create");
    s.create_operator_token("t2", "eyes", Role::Viewer, "h2", "init", 10)
        .await
        .expect("create");
    s.create_session("sa", "t1", 1_000, 100).await.expect("a");
    s.create_session("sb", "t2", 2_000, 100).await.expect("b");
    s.create_session("sc", "t1", 5_000, 100).await.expect("c");
    let a = s.session_by_hash("sa", 500).await.expect("q").expect("a");
    assert_eq!((a.token_id.as_str(), a.role), ("t1", Role::Operator));
    let b = s.session_by_hash("sb", 500).await.expect("q").expect("b");
    assert_eq!((b.name.as_str(), b.role), ("eyes", Role::Viewer));
    assert!(s.session_by_hash("nope", 500).await.expect("q").is_none());
    // Expired at its end, not after.
    assert!(s.session_by_hash("sa", 1_000).await.expect("q").is_none());
    // Sign-out ends one session only; a repeated sign-out is fine.
    s.delete_session("sb").await.expect("delete");
    s.delete_session("sb").await.expect("again");
    assert!(s.session_by_hash("sb", 600).await.expect("q").is_none());
    assert!(s.session_by_hash("sc", 600).await.expect("q").is_some());
    // A new session prunes the ended ones, and the same hash can be reused
    // once its session was pruned.
    s.create_session("sa", "t2", 9_000, 1_500)
        .await
        .expect("reuse");
    let again = s
        .session_by_hash("sa", 1_600)
        .await
        .expect("q")
        .expect("a2");
    assert_eq!(again.token_id, "t2");
    // Revoking the token ends its sessions.
    s.revoke_operator_token("t1", 1_700).await.expect("revoke");
    assert!(s.session_by_hash("sc", 1_800).await.expect("q").is_none());
    assert!(s.session_by_hash("sa", 1_800).await.expect("q").is_some());
}
