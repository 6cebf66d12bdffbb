//! Failover between controllers, against real HTTP servers (the fake
//! controller; a killable one closes its connections and refuses new ones,
//! as a dying process does).

use std::time::{Duration, Instant};

use baton_proto::{
    Capabilities, CompleteRequest, Completion, Grant, HeartbeatRequest, JobResult, JobSpec,
    NoopSpec, PollRequest,
};

use crate::fake_controller::Fake;
use crate::outbox::{Entry, Outbox};
use crate::secret::Secret;
use crate::tls::TlsConfig;
use crate::transport::{Error, Transport};

const SECRET: &str = "baton_agt_route";
const LIMIT: Duration = Duration::from_secs(10);

fn transport(fakes: &[&Fake]) -> Transport {
    let urls: Vec<String> = fakes.iter().map(|f| f.url.clone()).collect();
    Transport::with_urls(&urls, &TlsConfig::default())
        .expect("transport")
        .authenticated("a1", &Secret::new(SECRET))
        .expect("credentials")
}

fn poll_request() -> PollRequest {
    PollRequest {
        groups: vec!["g".into()],
        free_slots: 1,
        capabilities: Capabilities::default(),
        version: "test".into(),
        os: "linux".into(),
        metrics: None,
        wait_ms: Some(30_000),
        leases: Vec::new(),
        failover_ms: None,
        completions: Vec::new(),
    }
}

fn grant(job_id: i64) -> Grant {
    Grant {
        job_id,
        attempt: 1,
        token: 7,
        lease_ttl_ms: 5_000,
        held_ms: 0,
        timeout_ms: None,
        group: "g".into(),
        spec: JobSpec::Noop(NoopSpec::default()),
        retry_codes: Vec::new(),
    }
}

/// A closed loopback port: connections are refused.
fn refused_url() -> String {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    format!("http://{addr}")
}

#[tokio::test]
async fn a_held_poll_on_a_dying_controller_is_retried_on_another_at_once() {
    let a = Fake::start_killable().await;
    let b = Fake::start().await;
    a.script().hold_polls = true;
    b.script().grants.push_back(grant(1));
    let t = transport(&[&a, &b]);
    let hold = Duration::from_secs(30);
    let held = tokio::spawn({
        let t = t.clone();
        async move { t.poll(&poll_request(), hold).await }
    });
    assert!(
        a.until(LIMIT, |s| s.polls.len() == 1).await,
        "A holds the poll"
    );
    let killed = Instant::now();
    a.kill();
    let resp = tokio::time::timeout(LIMIT, held)
        .await
        .expect("not held until the poll's timeout")
        .expect("task")
        .expect("answered by B");
    let took = killed.elapsed();
    assert_eq!(resp.grants.len(), 1, "B's grant");
    assert_eq!(b.script().polls.len(), 1);
    // The poll was not left to its timeout (hold + margin): it moved at once.
    assert!(took < hold, "moved after {took:?}");
    assert_eq!(t.base_url(), b.url, "B is preferred now");
    assert_eq!(t.route().failovers(), 1);
    let (_, ms) = t.route().pending_failover().expect("a failover measured");
    assert!(u128::from(ms) <= took.as_millis() + 1000, "{ms} ms");

    // The next poll goes to B and reports the failover; the one after does not.
    b.script().hold_polls = false;
    t.poll(&poll_request(), hold).await.expect("second poll");
    t.poll(&poll_request(), hold).await.expect("third poll");
    let polls = b.script().polls.clone();
    assert_eq!(polls.len(), 3, "all on B");
    assert_eq!(polls[0].failover_ms, None, "measured after it was sent");
    assert_eq!(polls[1].failover_ms, Some(ms), "reported on the next poll");
    assert_eq!(polls[2].failover_ms, None, "reported once answered");
    assert!(t.route().pending_failover().is_none());
}

#[tokio::test]
async fn a_503_fails_over_and_the_answering_controller_is_kept() {
    let a = Fake::start().await;
    let b = Fake::start().await;
    a.script().poll_unavailable = 1;
    let t = transport(&[&a, &b]);
    let short = Duration::from_millis(10);
    let mut req = poll_request();
    req.wait_ms = Some(10);
    t.poll(&req, short).await.expect("B answers");
    assert_eq!((a.script().polls.len(), b.script().polls.len()), (1, 1));
    assert_eq!(t.base_url(), b.url);
    // Sticky: the next calls go to B only, A is not tried first.
    for _ in 0..3 {
        t.poll(&req, short).await.expect("B again");
    }
    assert_eq!((a.script().polls.len(), b.script().polls.len()), (1, 4));
    // A 4xx is an answer: no failover to A.
    b.script().revoked = true;
    let e = t.poll(&req, short).await.expect_err("refused");
    assert!(matches!(e, Error::Unauthorized(_)), "{e:?}");
    assert_eq!(a.script().polls.len(), 1, "a 401 does not fail over");
    assert_eq!(t.base_url(), b.url);
}

#[tokio::test]
async fn heartbeats_fail_over_to_the_surviving_controller() {
    let a = Fake::start_killable().await;
    let b = Fake::start().await;
    let t = transport(&[&a, &b]);
    let req = HeartbeatRequest {
        started_after_ms: None,
        token: 7,
        progress: None,
        log_tail: String::new(),
        failover_ms: None,
    };
    t.heartbeat(1, &req, LIMIT).await.expect("A answers");
    assert_eq!(a.script().heartbeats.len(), 1);
    a.kill();
    t.heartbeat(1, &req, LIMIT).await.expect("B answers");
    t.heartbeat(1, &req, LIMIT).await.expect("B again");
    let beats = b.script().heartbeats.clone();
    assert_eq!(beats.len(), 2);
    assert_eq!(beats[0].1.failover_ms, None);
    assert!(beats[1].1.failover_ms.is_some(), "the failover is reported");
    assert_eq!(a.script().heartbeats.len(), 1);
}

#[tokio::test]
async fn the_outbox_is_delivered_through_whichever_controller_answers() {
    let a = Fake::start_killable().await;
    let b = Fake::start().await;
    a.kill();
    let t = transport(&[&a, &b]);
    let state = tempfile::tempdir().expect("tempdir");
    let outbox = Outbox::open(state.path()).expect("outbox");
    for job_id in [1, 2] {
        let entry = Entry {
            job_id,
            request: CompleteRequest {
                started_after_ms: None,
                token: 7,
                completion: Completion::Succeeded,
                result: JobResult::default(),
                error: None,
            },
        };
        outbox.write(&entry).expect("write");
    }
    let left = crate::delivery::flush_once(&t, &outbox)
        .await
        .expect("flush");
    assert_eq!(left, 0, "all delivered");
    let jobs: Vec<i64> = b.script().completes.iter().map(|(j, _)| *j).collect();
    assert_eq!(jobs, [1, 2]);
    assert!(outbox.pending().expect("pending").is_empty());
}

#[tokio::test]
async fn every_controller_failing_is_one_unavailable_error_naming_each() {
    let urls = [refused_url(), refused_url(), refused_url()];
    let t = Transport::with_urls(&urls, &TlsConfig::default())
        .expect("transport")
        .authenticated("a1", &Secret::new(SECRET))
        .expect("credentials");
    let e = t
        .poll(&poll_request(), Duration::from_millis(10))
        .await
        .expect_err("none answers");
    let Error::Unavailable(message) = &e else {
        panic!("{e:?}");
    };
    assert!(message.starts_with("all 3 controllers failed"), "{message}");
    for url in &urls {
        assert!(message.contains(url.as_str()), "{message}");
    }
    assert_eq!(t.base_url(), urls[0], "no answer: the preference stays");
    assert_eq!(t.route().failovers(), 0);
}

#[tokio::test]
async fn after_the_first_immediate_move_later_moves_back_off() {
    // Two dead controllers before a live one: the move to the second is at
    // once, the move to the third waits at least the first backoff delay.
    let c = Fake::start().await;
    let urls = [refused_url(), refused_url(), c.url.clone()];
    let t = Transport::with_urls(&urls, &TlsConfig::default())
        .expect("transport")
        .authenticated("a1", &Secret::new(SECRET))
        .expect("credentials");
    let started = Instant::now();
    let mut req = poll_request();
    req.wait_ms = Some(0);
    t.poll(&req, Duration::from_millis(10))
        .await
        .expect("C answers");
    assert!(
        started.elapsed() >= super::FAILOVER_MIN,
        "the third try backs off: {:?}",
        started.elapsed()
    );
    assert_eq!(t.base_url(), c.url);
    assert_eq!(t.route().failovers(), 1);
}

#[test]
fn the_route_measures_a_failover_once_and_forgets_it_when_reported() {
    let r = super::Route::new(vec!["http://a".into(), "http://b".into()]);
    assert_eq!(r.order().collect::<Vec<_>>(), [0, 1]);
    r.answered(0);
    assert!(r.pending_failover().is_none(), "no switch");
    r.failed(0);
    r.failed(0);
    r.answered(1);
    assert_eq!(r.preferred(), "http://b");
    assert_eq!(r.order().collect::<Vec<_>>(), [1, 0]);
    let (seq, _) = r.pending_failover().expect("measured");
    assert_eq!(r.failovers(), 1);
    r.reported(seq + 1);
    assert!(r.pending_failover().is_some(), "another sequence");
    r.reported(seq);
    assert!(r.pending_failover().is_none());
    // Answering again where it already is measures nothing.
    r.answered(1);
    assert_eq!(r.failovers(), 1);
}
