use super::*;
use baton_proto::{JobSpec, NoopSpec};

fn grant(ttl: u64, held: u64) -> Grant {
    Grant {
        job_id: 1,
        attempt: 1,
        token: 5,
        lease_ttl_ms: ttl,
        held_ms: held,
        timeout_ms: None,
        group: "g".into(),
        spec: JobSpec::Noop(NoopSpec::default()),
        retry_codes: Vec::new(),
    }
}

#[test]
fn first_deadline_counts_from_poll_sent_plus_held() {
    let sent = Instant::now();
    let lease = Lease::from_grant(&grant(15_000, 2_000), sent);
    // 2 s held + 15 s TTL - 1 s margin.
    assert_eq!(lease.deadline(), sent + Duration::from_millis(16_000));
    assert_eq!(
        fence_margin(Duration::from_secs(2)),
        Duration::from_millis(200)
    );
    assert_eq!(
        fence_margin(Duration::from_secs(60)),
        Duration::from_secs(1)
    );
    assert_eq!(lease.interval(), Duration::from_secs(5));
    assert_eq!(lease.call_timeout(), Duration::from_secs(5));
    assert_eq!(lease.retry_interval(), Duration::from_millis(1500));
    let long = Lease::from_grant(&grant(3_600_000, 0), sent);
    assert_eq!(long.call_timeout(), MAX_CALL_TIMEOUT);
}

#[test]
fn phase_moves_once() {
    let later = Instant::now() + Duration::from_secs(60);
    let s = LeaseState::new(later);
    assert!(s.finish());
    assert!(!s.fence(), "a finished job cannot be fenced");
    assert_eq!(s.phase(), Phase::Finishing);
    let f = LeaseState::new(later);
    assert!(f.fence());
    assert!(!f.finish(), "a fenced job is never reported");
    assert_eq!(f.phase(), Phase::Fenced);
}

#[test]
fn work_ending_after_the_deadline_is_fenced() {
    let s = LeaseState::new(Instant::now());
    assert!(!s.finish(), "the deadline has passed");
    assert_eq!(s.phase(), Phase::Fenced);
    let r = LeaseState::new(Instant::now());
    r.renew(Instant::now() + Duration::from_secs(60));
    assert!(r.finish(), "a renewal moves the deadline");
}

#[tokio::test]
async fn fences_when_the_controller_is_unreachable() {
    // A port nobody listens on: every heartbeat fails at once.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    crate::install_crypto_provider();
    let url = format!("http://{addr}");
    let transport = Arc::new(
        Transport::new(&url, &crate::tls::TlsConfig::default())
            .and_then(|t| t.authenticated("a1", &crate::config::Secret::new("t")))
            .expect("transport"),
    );
    let lease = Lease::from_grant(&grant(300, 0), Instant::now());
    let cancel = Cancel::new();
    let state = Arc::new(LeaseState::new(lease.deadline()));
    let keeper = Keeper::new(
        transport,
        lease,
        ProgressHandle::new(16),
        cancel.clone(),
        state.clone(),
    );
    let start = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), keeper.run(CancellationToken::new()))
        .await
        .expect("keeper stops on fencing");
    // 300 ms TTL - 30 ms margin: not before the fence deadline.
    assert!(start.elapsed() >= Duration::from_millis(265));
    assert_eq!(state.phase(), Phase::Fenced);
    assert_eq!(cancel.reason(), Some(CancelReason::LeaseLost));
}
