use super::*;

/// A store in a fresh temp dir (kept alive by the returned guard).
pub async fn store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::open(&dir.path().join("t.db"), SyncMode::Normal)
        .await
        .expect("open");
    (s, dir)
}

/// A noop job for group `g` with lease TTL `ttl` and `retry`.
pub fn noop_job(ttl: u64, retry: baton_proto::RetryPolicy) -> super::jobs::NewJob {
    use baton_proto::{JobSpec, JobSubmit, NoopSpec};
    super::jobs::NewJob {
        submit: JobSubmit {
            group: "g".into(),
            spec: JobSpec::Noop(NoopSpec::default()),
            priority: 0,
            retry,
            timeout_ms: None,
            lease_ttl_ms: Some(ttl),
            labels: Default::default(),
        },
        lease_ttl_ms: ttl,
        idempotency_key: None,
        request_hash: "h".into(),
    }
}

/// Enroll agent `id` (secret hash `secret-<id>`) for `groups`.
pub async fn enrolled(s: &Store, id: &str, groups: &[&str]) {
    let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
    let token = format!("enr-{id}");
    s.create_enrollment_token(&token, &token, &groups, "", "test", i64::MAX, 0)
        .await
        .expect("enrollment token");
    s.enroll(&token, id, &format!("secret-{id}"), "test", 0)
        .await
        .expect("enroll");
}
