use sha2::{Digest, Sha256};

use super::*;
use crate::credentials::{CacheKey, hash_secret, new_id, new_secret};

#[test]
fn bearer_parsing() {
    let mut h = axum::http::HeaderMap::new();
    assert!(bearer(&h).is_none());
    h.insert("authorization", "Bearer abc".parse().expect("hv"));
    assert_eq!(bearer(&h), Some(Ok("abc")));
    h.insert("authorization", "Basic abc".parse().expect("hv"));
    assert!(matches!(bearer(&h), Some(Err(_))));
}

use crate::store::testutil::store;

fn key(token: &str) -> CacheKey {
    Sha256::digest(token.as_bytes()).into()
}

/// Enroll `id` for `groups` with a fresh secret; returns the secret.
async fn enroll(s: &Store, id: &str, groups: &[&str]) -> String {
    let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
    let enr = new_secret("enr_");
    s.create_enrollment_token(
        &new_id("e_"),
        &hash_secret(&enr),
        &groups,
        "",
        "test",
        i64::MAX,
        0,
    )
    .await
    .expect("enrollment token");
    let secret = new_secret(AGENT_SECRET_PREFIX);
    s.enroll(&hash_secret(&enr), id, &hash_secret(&secret), "test", 0)
        .await
        .expect("enroll");
    secret
}

fn agent_id(p: Option<Principal>) -> Option<String> {
    match p {
        Some(Principal::Agent(a)) => Some(a.id),
        _ => None,
    }
}

#[tokio::test]
async fn a_revoked_agent_is_refused_at_once_even_when_cached() {
    let (s, _d) = store().await;
    let secret = enroll(&s, "a1", &["db"]).await;
    let first = lookup(&s, &secret).await.expect("lookup");
    assert_eq!(agent_id(first), Some("a1".into()));
    // Cached now: the next call is answered from memory.
    assert!(s.auth_cache().get(&key(&secret), Instant::now()).is_some());
    assert_eq!(
        agent_id(lookup(&s, &secret).await.expect("lookup")),
        Some("a1".into())
    );
    s.revoke_agent("a1", 10).await.expect("revoke");
    assert!(s.auth_cache().get(&key(&secret), Instant::now()).is_none());
    assert!(lookup(&s, &secret).await.expect("lookup").is_none());
    // A refusal is not cached either.
    assert!(s.auth_cache().is_empty());
}

#[tokio::test]
async fn re_enrollment_replaces_the_cached_secret_and_groups() {
    let (s, _d) = store().await;
    let old = enroll(&s, "a1", &["db"]).await;
    assert!(lookup(&s, &old).await.expect("lookup").is_some());
    s.revoke_agent("a1", 10).await.expect("revoke");
    let new = enroll(&s, "a1", &["web"]).await;
    assert!(lookup(&s, &old).await.expect("lookup").is_none());
    match lookup(&s, &new).await.expect("lookup") {
        Some(Principal::Agent(a)) => assert_eq!(a.allowed_groups, vec!["web".to_string()]),
        other => panic!("new secret refused: {other:?}"),
    }
}

#[tokio::test]
async fn a_revoked_operator_token_is_refused_at_once_even_when_cached() {
    let (s, _d) = store().await;
    let admin = new_secret(OPERATOR_PREFIX);
    let viewer = new_secret(OPERATOR_PREFIX);
    s.create_operator_token("t1", "root", Role::Admin, &hash_secret(&admin), "init", 0)
        .await
        .expect("create");
    s.create_operator_token("t2", "ro", Role::Viewer, &hash_secret(&viewer), "init", 0)
        .await
        .expect("create");
    for t in [&admin, &viewer] {
        assert!(matches!(
            lookup(&s, t).await.expect("lookup"),
            Some(Principal::Operator(_))
        ));
    }
    assert_eq!(s.auth_cache().len(), 2);
    s.revoke_operator_token("t1", 10).await.expect("revoke");
    assert!(lookup(&s, &admin).await.expect("lookup").is_none());
    // The other token stays cached and accepted.
    assert!(s.auth_cache().get(&key(&viewer), Instant::now()).is_some());
    match lookup(&s, &viewer).await.expect("lookup") {
        Some(Principal::Operator(o)) => {
            assert_eq!((o.name.as_str(), o.role), ("ro", Role::Viewer))
        }
        other => panic!("viewer refused: {other:?}"),
    }
}

#[tokio::test]
async fn unknown_and_malformed_tokens_are_not_cached() {
    let (s, _d) = store().await;
    for t in [
        new_secret(OPERATOR_PREFIX),
        new_secret(AGENT_SECRET_PREFIX),
        "not-a-baton-token".to_string(),
    ] {
        assert!(lookup(&s, &t).await.expect("lookup").is_none());
    }
    assert!(s.auth_cache().is_empty());
}

/// Two replicas (two stores on one PostgreSQL database), no notification
/// delivered (no listener here): a revoke on A refuses the agent on B once
/// B's cached entry runs out, within the PostgreSQL cache TTL (+ 1 s).
#[tokio::test]
async fn a_revoke_on_another_replica_is_honoured_within_the_cache_ttl() {
    use crate::store::postgres::{PgStore, testutil};
    let Some((url, _guard)) = testutil::scratch_database().await else {
        return;
    };
    let open = || async {
        Store::new(std::sync::Arc::new(
            PgStore::open(&testutil::options(&url)).await.expect("open"),
        ))
    };
    let (a, b) = (open().await, open().await);
    let secret = enroll(&a, "a1", &["db"]).await;
    assert_eq!(
        agent_id(lookup(&b, &secret).await.expect("lookup")),
        Some("a1".into())
    );
    assert!(b.auth_cache().get(&key(&secret), Instant::now()).is_some());
    let revoked = Instant::now();
    a.revoke_agent("a1", now_ms()).await.expect("revoke");
    assert!(lookup(&a, &secret).await.expect("lookup").is_none());
    let bound = b.auth_cache().ttl() + std::time::Duration::from_secs(1);
    assert!(bound <= std::time::Duration::from_secs(3), "{bound:?}");
    while lookup(&b, &secret).await.expect("lookup").is_some() {
        assert!(
            revoked.elapsed() < bound,
            "replica B still accepts the revoked agent after {:?}",
            revoked.elapsed()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
