use baton_proto::auth::OPERATOR_PREFIX;

use super::*;

#[test]
fn secrets_are_prefixed_random_and_hashed() {
    let a = new_secret(OPERATOR_PREFIX);
    let b = new_secret(OPERATOR_PREFIX);
    assert!(a.starts_with(OPERATOR_PREFIX));
    assert_eq!(a.len(), OPERATOR_PREFIX.len() + 64);
    assert_ne!(a, b);
    assert_eq!(hash_secret(&a).len(), 64);
    assert_ne!(hash_secret(&a), hash_secret(&b));
    assert_eq!(
        hash_secret("abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

fn key(token: &str) -> CacheKey {
    Sha256::digest(token.as_bytes()).into()
}

fn agent(id: &str) -> Principal {
    Principal::Agent(AgentPrincipal {
        id: id.into(),
        allowed_groups: vec![],
    })
}

#[test]
fn a_lookup_that_raced_an_invalidation_is_not_cached() {
    let c = AuthCache::default();
    let now = Instant::now();
    let epoch = c.epoch();
    // The store said "a1" before its revocation committed...
    c.forget_agent("a1");
    // ... so that answer must not come back.
    c.insert(key("x"), agent("a1"), epoch, now);
    assert!(c.get(&key("x"), now).is_none());
    c.insert(key("x"), agent("a1"), c.epoch(), now);
    assert!(c.get(&key("x"), now).is_some());
}

#[test]
fn entries_expire_and_the_cache_is_bounded() {
    let c = AuthCache::default();
    let now = Instant::now();
    c.insert(key("x"), agent("a1"), c.epoch(), now);
    assert!(c.get(&key("x"), now + CACHE_TTL / 2).is_some());
    assert!(c.get(&key("x"), now + CACHE_TTL).is_none());
    assert_eq!(c.hits_and_misses(), (1, 1));
    for i in 0..CACHE_ENTRIES + 10 {
        c.insert(key(&i.to_string()), agent("a"), c.epoch(), now);
    }
    assert_eq!(c.len(), CACHE_ENTRIES);
    // Stale entries make room for new ones.
    let later = now + CACHE_TTL;
    c.insert(key("new"), agent("b"), c.epoch(), later);
    assert_eq!(c.len(), 1);
    assert!(c.get(&key("new"), later).is_some());
    c.clear();
    assert!(c.is_empty());
}
