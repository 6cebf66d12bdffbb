//! Identity with two replicas on one database (two [`PgStore`]s on the same
//! scratch database): what must hold across them.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;

use super::{AUTH_CACHE_TTL, EVENTS_CHANNEL, REVOKE_EVENT};
use crate::store::postgres::PgStore;
use crate::store::postgres::testutil::{Scratch, options, scratch_database};
use crate::store::testutil::enrolled;
use crate::store::{Error, Store};

/// Two replicas on one fresh database, or `None` to skip.
async fn replicas() -> Option<(Store, Store, String, Scratch)> {
    let (url, guard) = scratch_database().await?;
    let a = PgStore::open(&options(&url)).await.expect("open a");
    let b = PgStore::open(&options(&url)).await.expect("open b");
    Some((Store::new(Arc::new(a)), Store::new(Arc::new(b)), url, guard))
}

#[tokio::test]
async fn one_enrollment_token_spent_on_two_replicas_at_once_enrolls_once() {
    let Some((a, b, _url, _guard)) = replicas().await else {
        return;
    };
    let groups = vec!["g".to_owned()];
    for i in 0..20 {
        let hash = format!("eh{i}");
        a.create_enrollment_token(&format!("e{i}"), &hash, &groups, "", "x", i64::MAX, 0)
            .await
            .expect("token");
        // The same token, two agent ids, one on each replica, at once.
        let (ida, sa, idb, sb) = (
            format!("a{i}"),
            format!("sa{i}"),
            format!("b{i}"),
            format!("sb{i}"),
        );
        let (ra, rb) = tokio::join!(
            a.enroll(&hash, &ida, &sa, "t", 10),
            b.enroll(&hash, &idb, &sb, "t", 10),
        );
        let ok = [&ra, &rb].iter().filter(|r| r.is_ok()).count();
        assert_eq!(ok, 1, "token {i} enrolled {ok} agents: {ra:?} {rb:?}");
        let refused = if ra.is_ok() { rb } else { ra };
        assert!(
            matches!(&refused, Err(Error::Unauthorized(m)) if m.contains("already used")),
            "{refused:?}"
        );
    }
    let agents = a.list_agents(10, 60_000).await.expect("agents");
    assert_eq!(agents.len(), 20, "one agent per token");
}

#[tokio::test]
async fn one_agent_id_enrolled_on_two_replicas_at_once_is_taken_once() {
    let Some((a, b, _url, _guard)) = replicas().await else {
        return;
    };
    let groups = vec!["g".to_owned()];
    for i in 0..10 {
        a.create_enrollment_token(
            &format!("x{i}"),
            &format!("hx{i}"),
            &groups,
            "",
            "x",
            i64::MAX,
            0,
        )
        .await
        .expect("token");
        a.create_enrollment_token(
            &format!("y{i}"),
            &format!("hy{i}"),
            &groups,
            "",
            "x",
            i64::MAX,
            0,
        )
        .await
        .expect("token");
        let id = format!("agent{i}");
        let (hx, sx, hy, sy) = (
            format!("hx{i}"),
            format!("sx{i}"),
            format!("hy{i}"),
            format!("sy{i}"),
        );
        let (ra, rb) = tokio::join!(
            a.enroll(&hx, &id, &sx, "t", 10),
            b.enroll(&hy, &id, &sy, "t", 10),
        );
        let ok = [&ra, &rb].iter().filter(|r| r.is_ok()).count();
        assert_eq!(ok, 1, "{id}: {ra:?} {rb:?}");
        let refused = if ra.is_ok() { rb } else { ra };
        assert!(matches!(refused, Err(Error::Conflict(_))), "{refused:?}");
    }
}

#[tokio::test]
async fn enrollment_attempts_are_counted_across_replicas() {
    let Some((a, b, _url, _guard)) = replicas().await else {
        return;
    };
    let mut calls = Vec::new();
    for i in 0..20 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        calls.push(tokio::spawn(async move {
            s.enroll_attempt("10.0.0.1", 1000).await.expect("count")
        }));
    }
    let mut counts = Vec::new();
    for c in calls {
        counts.push(c.await.expect("join").expect("shared count"));
    }
    counts.sort_unstable();
    assert_eq!(
        counts,
        (1..=20).collect::<Vec<u32>>(),
        "each attempt counted once"
    );
    // Another source and another minute count apart; old minutes go.
    assert_eq!(
        a.enroll_attempt("10.0.0.2", 1000).await.expect("c"),
        Some(1)
    );
    assert_eq!(
        b.enroll_attempt("10.0.0.1", 1001).await.expect("c"),
        Some(1)
    );
    assert_eq!(
        a.enroll_attempt("10.0.0.1", 1003).await.expect("c"),
        Some(1)
    );
    assert_eq!(
        b.enroll_attempt("10.0.0.1", 1000).await.expect("c"),
        Some(1)
    );
}

/// Receive the next notification on `baton_events`, or `None` after 5 s.
async fn next_event(l: &mut PgListener) -> Option<String> {
    tokio::time::timeout(Duration::from_secs(5), l.recv())
        .await
        .ok()
        .map(|n| n.expect("notification").payload().to_owned())
}

#[tokio::test]
async fn revokes_notify_the_other_replicas_when_they_commit() {
    let Some((a, _b, url, _guard)) = replicas().await else {
        return;
    };
    let mut l = PgListener::connect(&url).await.expect("listener");
    l.listen(EVENTS_CHANNEL).await.expect("listen");
    enrolled(&a, "a1", &["g"]).await;
    a.revoke_agent("a1", 20).await.expect("revoke");
    assert_eq!(next_event(&mut l).await.as_deref(), Some(REVOKE_EVENT));
    a.create_operator_token("t1", "ops", baton_proto::auth::Role::Viewer, "h", "x", 0)
        .await
        .expect("token");
    a.revoke_operator_token("t1", 30).await.expect("revoke");
    assert_eq!(next_event(&mut l).await.as_deref(), Some(REVOKE_EVENT));
    // A revoke that fails commits nothing and tells nobody.
    assert!(matches!(
        a.revoke_agent("nobody", 40).await,
        Err(Error::Missing(_))
    ));
    assert_eq!(next_event(&mut l).await, None);
}

#[tokio::test]
async fn a_replica_trusts_a_cached_credential_for_the_short_ttl_only() {
    let Some((a, _b, _url, _guard)) = replicas().await else {
        return;
    };
    assert_eq!(a.auth_cache().ttl(), AUTH_CACHE_TTL);
    assert!(AUTH_CACHE_TTL <= Duration::from_secs(2));
}
