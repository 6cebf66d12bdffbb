use super::*;

#[test]
fn concurrency_is_bounded_per_address_and_globally() {
    let l = Limits::new(10, 3, 2);
    let a: IpAddr = "10.0.0.1".parse().expect("ip");
    let b: IpAddr = "10.0.0.2".parse().expect("ip");
    let a1 = l.admit(Some(a)).expect("a1");
    let _a2 = l.admit(Some(a)).expect("a2");
    assert_eq!(l.admit(Some(a)).expect_err("a3"), Busy::Address);
    let _b1 = l.admit(Some(b)).expect("b1");
    assert_eq!(l.admit(Some(b)).expect_err("global"), Busy::Global);
    assert_eq!(l.in_flight(), 3);
    drop(a1);
    assert_eq!(l.in_flight(), 2);
    let _b2 = l.admit(Some(b)).expect("a slot came free");
    assert_eq!(l.refused_busy.load(Ordering::Relaxed), 2);
}

#[test]
fn ipv6_addresses_share_their_64() {
    let l = Limits::new(10, 100, 1);
    let x: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
    let y: IpAddr = "2001:db8:1:2:bbbb::2".parse().expect("ip");
    let z: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
    let _x = l.admit(Some(x)).expect("x");
    assert_eq!(l.admit(Some(y)).expect_err("same /64"), Busy::Address);
    let _z = l.admit(Some(z)).expect("another /64");
}

#[test]
fn enrollment_bursts_then_waits_per_address() {
    let l = Limits::new(2, 10, 10);
    let a: IpAddr = "10.0.0.1".parse().expect("ip");
    let b: IpAddr = "10.0.0.2".parse().expect("ip");
    assert!(l.enroll(a).is_ok());
    assert!(l.enroll(a).is_ok());
    let wait = l.enroll(a).expect_err("limited");
    assert!((1..=30).contains(&wait), "{wait}");
    assert!(l.enroll(b).is_ok(), "other addresses are not affected");
}

#[test]
fn refused_anonymous_audit_rows_are_rate_limited() {
    let l = Limits::new(10, 10, 10);
    let a: IpAddr = "10.0.0.1".parse().expect("ip");
    let written = (0..100)
        .filter(|_| l.audit_refused_anonymous(Some(a)))
        .count();
    assert_eq!(written, AUDIT_PER_ADDRESS as usize);
    assert_eq!(l.audit_suppressed.load(Ordering::Relaxed), 70);
}

/// Two replicas (two controllers' router and state on one PostgreSQL
/// database), `enroll_per_minute = 3`: the fourth attempt from one address
/// is refused whichever replica takes it, although each replica alone saw
/// two at most.
#[tokio::test]
async fn the_enrollment_rate_holds_across_replicas() {
    use std::collections::BTreeMap;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    use crate::config::{Config, Flags};
    use crate::store::postgres::{PgStore, testutil};

    let Some((url, _guard)) = testutil::scratch_database().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let env = BTreeMap::from([(
        "BATON_CONTROLLER_ALLOW_PLAIN_HTTP".to_owned(),
        "true".to_owned(),
    )]);
    let flags = Flags {
        state_dir: Some(dir.path().to_owned()),
        ..Flags::default()
    };
    let mut config = Config::load(None, &env, &flags).expect("config");
    config.enroll_per_minute = 3;
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let store = Store::new(Arc::new(
            PgStore::open(&testutil::options(&url)).await.expect("open"),
        ));
        let shutdown = tokio_util::sync::CancellationToken::new();
        replicas.push(crate::server::app_state(&store, &config, &shutdown));
    }
    // The shared count is per clock minute: a run that straddles a minute
    // boundary proves nothing and runs again from another address.
    let minute = || crate::store::now_ms().div_euclid(60_000);
    let mut statuses = Vec::new();
    for host in 7..10u8 {
        let started = minute();
        let peer =
            crate::listener::PeerAddr((std::net::Ipv4Addr::new(10, 0, 0, host), 4000).into());
        statuses.clear();
        // A B A B: the fourth is the second on B.
        for i in 0..4 {
            let mut req = Request::post("/v1/agents/enroll")
                .header("content-type", "application/json")
                .body(Body::from(format!(
                    r#"{{"token":"baton_enr_bogus{i}","agent_id":"a{i}"}}"#
                )))
                .expect("request");
            req.extensions_mut().insert(peer);
            let resp = crate::api::router(replicas[i % 2].clone())
                .oneshot(req)
                .await
                .expect("answered");
            statuses.push(resp.status());
        }
        if minute() == started {
            break;
        }
    }
    assert_eq!(
        statuses,
        [
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    assert!(replicas[1].limits.refused_enroll.load(Ordering::Relaxed) >= 1);
}
