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
            allow_unplaced: false,
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
        audit: None,
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

/// A noop job for `group` (label `team=dba`, TTL 15 s), with an
/// idempotency `key` and request `hash`.
pub fn new_job(group: &str, key: Option<&str>, hash: &str) -> super::jobs::NewJob {
    super::jobs::NewJob {
        submit: baton_proto::JobSubmit {
            allow_unplaced: false,
            group: group.into(),
            spec: baton_proto::JobSpec::Noop(baton_proto::NoopSpec::default()),
            priority: 0,
            retry: baton_proto::RetryPolicy::default(),
            timeout_ms: None,
            lease_ttl_ms: None,
            labels: [("team".to_string(), "dba".to_string())].into(),
        },
        lease_ttl_ms: 15_000,
        idempotency_key: key.map(str::to_owned),
        request_hash: hash.into(),
        audit: None,
    }
}

/// A noop job with TTL `ttl`, three attempts and a fixed backoff of
/// `max_backoff_ms` (no jitter).
pub fn backoff_job(ttl: u64, max_backoff_ms: u64) -> super::jobs::NewJob {
    noop_job(
        ttl,
        baton_proto::RetryPolicy {
            max_attempts: 3,
            initial_backoff_ms: max_backoff_ms,
            max_backoff_ms,
            jitter: 0.0,
            ..baton_proto::RetryPolicy::default()
        },
    )
}

/// Grant `agent` up to one noop job of group `g` at `now`.
pub async fn grant_noop<S: super::lease::LeaseStore + ?Sized>(
    s: &S,
    agent: &str,
    now: i64,
) -> super::lease::Granted {
    let groups = vec!["g".to_string()];
    let kinds = vec![baton_proto::JobKind::Noop];
    let req = super::GrantRequest {
        agent_id: agent,
        groups: &groups,
        kinds: &kinds,
        connections: &[],
        stores: &[],
        max: 1,
    };
    s.grant(&req, now).await.expect("grant")
}

/// How many noop jobs of group `g` a grant of one gives `agent` at `now`.
pub async fn granted_noop<S: super::lease::LeaseStore + ?Sized>(
    s: &S,
    agent: &str,
    now: i64,
) -> usize {
    grant_noop(s, agent, now).await.grants.len()
}
