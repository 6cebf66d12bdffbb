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
