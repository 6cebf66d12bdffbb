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

fn operator(id: &str) -> Principal {
    Principal::Operator(OperatorPrincipal {
        token_id: id.into(),
        name: "ops".into(),
        role: Role::Admin,
    })
}

#[test]
fn a_vouched_cache_trusts_agents_longer_while_the_vouching_lasts() {
    let short = Duration::from_secs(2);
    let c = AuthCache::vouched(short);
    let t0 = Instant::now();
    c.insert(key("a"), agent("a1"), c.epoch(), t0);
    c.insert(key("o"), operator("t1"), c.epoch(), t0);
    let later = t0 + Duration::from_secs(10);
    // Not vouched for: the short life, as without vouching.
    assert!(c.get(&key("a"), t0 + short / 2).is_some());
    assert!(c.get(&key("a"), later).is_none());
    // Every revoke committed before `later - 1 s` was heard: trusted until
    // `later + 1 s`.
    c.vouch(later - Duration::from_secs(1));
    assert!(c.get(&key("a"), later).is_some());
    assert!(c.get(&key("a"), later + Duration::from_secs(1)).is_none());
    // Operators' entries keep the short life.
    assert!(c.get(&key("o"), later).is_none());
    // Vouching only moves forward.
    c.vouch(t0);
    assert!(c.get(&key("a"), later).is_some());
    // Never past the long life, however recent the vouching.
    let end = t0 + CACHE_TTL;
    c.vouch(end);
    assert!(c.get(&key("a"), end - Duration::from_millis(1)).is_some());
    assert!(c.get(&key("a"), end).is_none());
    // A revoke heard clears it as ever.
    c.vouch(later);
    c.forget_agent("a1");
    assert!(c.get(&key("a"), later).is_none());
}

#[test]
fn an_unvouched_cache_ignores_vouching() {
    let c = AuthCache::with_ttl(Duration::from_secs(2));
    let t0 = Instant::now();
    c.insert(key("a"), agent("a1"), c.epoch(), t0);
    c.vouch(t0 + Duration::from_secs(9));
    assert!(c.get(&key("a"), t0 + Duration::from_secs(5)).is_none());
}
