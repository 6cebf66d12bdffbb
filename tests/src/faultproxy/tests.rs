use super::*;

/// An upstream that echoes every byte back.
async fn echo_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

async fn roundtrip(s: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
    s.write_all(msg).await.expect("write");
    let mut got = vec![0u8; msg.len()];
    s.read_exact(&mut got).await.expect("read");
    got
}

/// Whether a read sees nothing for `quiet` (the black hole holds the bytes).
async fn silent(s: &mut TcpStream, quiet: Duration) -> bool {
    let mut b = [0u8; 1];
    tokio::time::timeout(quiet, s.read(&mut b)).await.is_err()
}

#[tokio::test]
async fn pass_forwards_both_ways() {
    let p = FaultProxy::start(echo_server().await).await.expect("proxy");
    let mut s = TcpStream::connect(p.addr()).await.expect("connect");
    assert_eq!(roundtrip(&mut s, b"hello").await, b"hello");
    let st = p.stats();
    assert_eq!(st.accepted, 1);
    assert_eq!(st.to_upstream, 5);
    assert_eq!(st.to_client, 5);
    assert_eq!(p.fault(), Fault::Pass);
    assert!(p.url().starts_with("http://127.0.0.1:"));
}

#[tokio::test]
async fn black_hole_holds_existing_and_new_connections_until_healed() {
    let p = FaultProxy::start(echo_server().await).await.expect("proxy");
    let mut old = TcpStream::connect(p.addr()).await.expect("connect");
    assert_eq!(roundtrip(&mut old, b"a").await, b"a");
    p.black_hole();
    old.write_all(b"held").await.expect("write");
    let mut new = TcpStream::connect(p.addr()).await.expect("accepted");
    new.write_all(b"new").await.expect("write");
    assert!(silent(&mut old, Duration::from_millis(300)).await);
    assert!(silent(&mut new, Duration::from_millis(50)).await);
    assert_eq!(
        p.stats().to_upstream,
        1,
        "nothing forwarded while black-holed"
    );
    p.pass();
    let mut got = [0u8; 4];
    old.read_exact(&mut got).await.expect("read");
    assert_eq!(&got, b"held", "held bytes flow on after healing");
    let mut got = [0u8; 3];
    new.read_exact(&mut got).await.expect("read");
    assert_eq!(&got, b"new");
}

#[tokio::test]
async fn delay_adds_latency_per_chunk() {
    let p = FaultProxy::start(echo_server().await).await.expect("proxy");
    let mut s = TcpStream::connect(p.addr()).await.expect("connect");
    p.delay(Duration::from_millis(150));
    assert_eq!(p.fault(), Fault::Delay(Duration::from_millis(150)));
    let t = tokio::time::Instant::now();
    assert_eq!(roundtrip(&mut s, b"slow").await, b"slow");
    // Both directions wait: at least two delays (a lower bound, not a timing race).
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
}

async fn is_reset(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 8];
    // A reset connection reads an error (RST) or end of stream, never data.
    match tokio::time::timeout(Duration::from_secs(10), s.read(&mut b)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) | Err(_) => false,
    }
}

#[tokio::test]
async fn reset_closes_existing_and_new_connections_until_the_fault_changes() {
    let p = FaultProxy::start(echo_server().await).await.expect("proxy");
    let mut old = TcpStream::connect(p.addr()).await.expect("connect");
    assert_eq!(roundtrip(&mut old, b"x").await, b"x");
    p.reset();
    assert!(is_reset(&mut old).await);
    let mut new = TcpStream::connect(p.addr()).await.expect("accepted");
    assert!(is_reset(&mut new).await);
    assert!(p.stats().resets >= 2, "{:?}", p.stats());
    p.pass();
    let mut again = TcpStream::connect(p.addr()).await.expect("connect");
    assert_eq!(roundtrip(&mut again, b"ok").await, b"ok");
}

#[tokio::test]
async fn reset_existing_spares_later_connections() {
    let p = FaultProxy::start(echo_server().await).await.expect("proxy");
    let mut old = TcpStream::connect(p.addr()).await.expect("connect");
    assert_eq!(roundtrip(&mut old, b"1").await, b"1");
    p.reset_existing();
    assert!(is_reset(&mut old).await);
    let mut new = TcpStream::connect(p.addr()).await.expect("connect");
    assert_eq!(roundtrip(&mut new, b"2").await, b"2");
}

#[tokio::test]
async fn a_black_hole_during_a_delay_still_holds_the_chunk() {
    let p = FaultProxy::start(echo_server().await).await.expect("proxy");
    let mut s = TcpStream::connect(p.addr()).await.expect("connect");
    p.delay(Duration::from_millis(200));
    s.write_all(b"z").await.expect("write");
    tokio::time::sleep(Duration::from_millis(50)).await;
    p.black_hole();
    assert!(silent(&mut s, Duration::from_millis(400)).await);
    p.pass();
    let mut b = [0u8; 1];
    s.read_exact(&mut b).await.expect("read");
    assert_eq!(&b, b"z");
}

#[tokio::test]
async fn a_down_upstream_is_a_refused_connection() {
    let gone = {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        l.local_addr().expect("addr")
    };
    let p = FaultProxy::start(gone).await.expect("proxy");
    assert_eq!(p.upstream(), gone);
    let mut s = TcpStream::connect(p.addr()).await.expect("accepted");
    assert!(is_reset(&mut s).await);
}
