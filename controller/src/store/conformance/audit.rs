use crate::store::Store;
use crate::store::audit::AuditRecord;

/// Conformance case `append_filter_page`.
pub async fn append_filter_page(s: &Store) {
    for (i, actor) in ["token:a", "agent:x", "token:a"].iter().enumerate() {
        let r = AuditRecord {
            actor: (*actor).into(),
            role: "admin".into(),
            action: "POST /v1/jobs".into(),
            target: "/v1/jobs".into(),
            status: 201,
            error: (i == 2).then(|| "conflict".to_string()),
        };
        s.audit_grouped(&r, i as i64).await.expect("audit");
    }
    let all = s.list_audit(None, None, 10).await.expect("list");
    assert_eq!(all.entries.len(), 3);
    assert_eq!(all.entries[0].error.as_deref(), Some("conflict"));
    let a = s.list_audit(Some("token:a"), None, 1).await.expect("list");
    assert_eq!(a.entries.len(), 1);
    let next = a.next_before.expect("more");
    let b = s
        .list_audit(Some("token:a"), Some(next), 10)
        .await
        .expect("list");
    assert_eq!(b.entries.len(), 1);
    assert_eq!(b.next_before, None);
}

/// The audit row of a created `POST /v1/jobs` by `actor`.
fn submit_row(actor: &str) -> AuditRecord {
    AuditRecord {
        actor: actor.into(),
        role: "operator".into(),
        action: "POST /v1/jobs".into(),
        target: "/v1/jobs".into(),
        status: 201,
        error: None,
    }
}

/// Conformance case `an_unkeyed_submit_writes_its_audit_row_with_the_job`:
/// submits arriving together (the group commit's batch on PostgreSQL, the
/// writer's on SQLite) each write their row with their job, once; a keyed
/// submit leaves its row to the caller (a replay must not record a 201).
pub async fn an_unkeyed_submit_writes_its_audit_row_with_the_job(s: &Store) {
    let submits = (0..20).map(|i| {
        let mut job = crate::store::testutil::new_job("g", None, "h");
        job.audit = Some(submit_row(&format!("token:t{i}")));
        s.submit(job, 1_000 + i)
    });
    let done = futures_util::future::join_all(submits).await;
    for d in &done {
        let d = d.as_ref().expect("submit");
        assert!(d.created && d.audited, "{d:?}");
    }
    let mut keyed = crate::store::testutil::new_job("g", Some("k"), "h");
    keyed.audit = Some(submit_row("token:keyed"));
    let k = s.submit(keyed, 2_000).await.expect("keyed");
    assert!(k.created);
    let all = s.list_audit(None, None, 100).await.expect("list");
    let mut actors: Vec<&str> = all.entries.iter().map(|e| e.actor.as_str()).collect();
    actors.sort_unstable();
    let mut want: Vec<String> = (0..20).map(|i| format!("token:t{i}")).collect();
    if k.audited {
        want.push("token:keyed".into());
    }
    want.sort_unstable();
    assert_eq!(actors, want);
    for d in &done {
        let job = &d.as_ref().expect("submit").job;
        let got = s.get_job(job.id).await.expect("job");
        assert_eq!(got.created_at, job.created_at);
    }
}

/// Conformance case `a_handed_over_submit_writes_its_audit_row_with_the_job`:
/// a submit granted in its own transaction (`submit_and_grant`) writes its
/// audit row there too when it has no key — one commit answers it; with
/// one, the row is written once, by the store or by the caller.
pub async fn a_handed_over_submit_writes_its_audit_row_with_the_job(s: &Store) {
    crate::store::testutil::enrolled(s, "a1", &["g"]).await;
    let groups = vec!["g".to_string()];
    let kinds = vec![baton_proto::JobKind::Noop];
    let owned = crate::store::lease::OwnedGrant {
        agent_id: "a1".into(),
        groups,
        kinds,
        connections: Vec::new(),
        stores: Vec::new(),
        max: 2,
    };
    let mut job = crate::store::testutil::new_job("g", None, "h");
    job.audit = Some(submit_row("token:handed"));
    let (done, granted) = s
        .submit_and_grant(job, &owned.as_req(), 1_000)
        .await
        .expect("submit and grant");
    assert!(done.created && done.audited, "{done:?}");
    assert_eq!(granted.grants.len(), 1, "{granted:?}");
    let mut keyed = crate::store::testutil::new_job("g", Some("k"), "h");
    keyed.audit = Some(submit_row("token:keyed"));
    let (k, _) = s
        .submit_and_grant(keyed, &owned.as_req(), 2_000)
        .await
        .expect("keyed");
    assert!(k.created, "{k:?}");
    // Written once, by whoever said it was: the store or (keyed) the caller.
    let all = s.list_audit(None, None, 100).await.expect("list");
    let mut actors: Vec<&str> = all.entries.iter().map(|e| e.actor.as_str()).collect();
    actors.sort_unstable();
    let want = if k.audited {
        vec!["token:handed", "token:keyed"]
    } else {
        vec!["token:handed"]
    };
    assert_eq!(actors, want);
}
