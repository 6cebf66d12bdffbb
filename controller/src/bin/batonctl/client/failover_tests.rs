//! Several controllers: which failures move a call to the next one, against
//! real HTTP servers on loopback.

use std::sync::Arc;
use std::sync::atomic::AtomicU32;

use axum::Router;
use axum::http::{HeaderMap, StatusCode as AxStatus};
use axum::response::IntoResponse;
use serde_json::json;

use super::*;

/// A server answering every request with `status` and a small JSON body,
/// counting the requests and recording their idempotency keys.
struct Server {
    url: Url,
    hits: Arc<AtomicU32>,
    keys: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Server {
    async fn start(status: u16) -> Server {
        let hits = Arc::new(AtomicU32::new(0));
        let keys = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (h, k) = (hits.clone(), keys.clone());
        let app = Router::new().fallback(move |headers: HeaderMap| {
            let (h, k) = (h.clone(), k.clone());
            async move {
                h.fetch_add(1, Ordering::SeqCst);
                if let Some(key) = headers
                    .get(IDEMPOTENCY_KEY_HEADER)
                    .and_then(|v| v.to_str().ok())
                {
                    k.lock().expect("keys").push(key.to_owned());
                }
                let status = AxStatus::from_u16(status).expect("status");
                let body = if status.is_success() {
                    json!({"id": 1, "state": "queued"})
                } else {
                    json!({"error": {"code": "store_unavailable", "message": "scripted"}})
                };
                (status, axum::Json(body)).into_response()
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Server {
            url: parse_base_url(&format!("http://{addr}")).expect("url"),
            hits,
            keys,
        }
    }

    fn hits(&self) -> u32 {
        self.hits.load(Ordering::SeqCst)
    }
}

/// A loopback port nobody listens on: connections are refused.
fn refused() -> Url {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    parse_base_url(&format!("http://{addr}")).expect("url")
}

/// A server that reads the request and closes the connection without an
/// answer: the request may have been acted on.
async fn hangs_up() -> (Url, Arc<AtomicU32>) {
    use tokio::io::AsyncReadExt as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let hits = Arc::new(AtomicU32::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            h.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = tcp.read(&mut buf).await;
            drop(tcp);
        }
    });
    (
        parse_base_url(&format!("http://{addr}")).expect("url"),
        hits,
    )
}

fn api(bases: Vec<Url>) -> Api {
    Api::with_bases(bases, "baton_op_test".into(), None).expect("api")
}

fn body() -> Value {
    json!({"kind": "noop"})
}

#[tokio::test]
async fn a_get_moves_past_a_refused_and_a_failing_controller_and_sticks() {
    let down = Server::start(503).await;
    let up = Server::start(200).await;
    let api = api(vec![refused(), down.url.clone(), up.url.clone()]);
    let answer = api.get_json("/v1/jobs", &[]).await.expect("answered");
    assert_eq!(answer.body["id"], 1);
    assert_eq!((down.hits(), up.hits()), (1, 1));
    assert_eq!(api.base(), &up.url, "the one that answered is preferred");
    api.get_json("/v1/jobs", &[]).await.expect("again");
    assert_eq!((down.hits(), up.hits()), (1, 2), "sticky: straight to it");
}

#[tokio::test]
async fn a_post_without_a_key_moves_on_only_when_nothing_was_sent() {
    let up = Server::start(201).await;
    // Refused: nothing was sent, so another controller may take it.
    let api1 = api(vec![refused(), up.url.clone()]);
    api1.post_json("/v1/jobs/1/cancel", Some(&body()))
        .await
        .expect("moved on");
    assert_eq!(up.hits(), 1);

    // A 503 may come after the work was done: not repeated elsewhere.
    let down = Server::start(503).await;
    let api2 = api(vec![down.url.clone(), up.url.clone()]);
    let e = api2
        .post_json("/v1/jobs/1/cancel", Some(&body()))
        .await
        .expect_err("not repeated");
    let status = e.downcast_ref::<ApiError>().map(|a| a.status);
    assert_eq!(status, Some(StatusCode::SERVICE_UNAVAILABLE), "{e:#}");
    assert_eq!((down.hits(), up.hits()), (1, 1));

    // Neither is a connection that broke off after the request went out.
    let (gone, gone_hits) = hangs_up().await;
    let api3 = api(vec![gone, up.url.clone()]);
    let e = api3
        .post_json("/v1/jobs/1/cancel", Some(&body()))
        .await
        .expect_err("not repeated");
    assert!(e.downcast_ref::<TransportError>().is_some(), "{e:#}");
    assert_eq!((gone_hits.load(Ordering::SeqCst), up.hits()), (1, 1));
}

#[tokio::test]
async fn a_submit_with_an_idempotency_key_moves_on_after_a_failure() {
    let down = Server::start(503).await;
    let up = Server::start(201).await;
    let api = api(vec![down.url.clone(), up.url.clone()]);
    let job: JobSubmit = serde_json::from_value(json!({
        "group": "g",
        "spec": {"kind": "noop"}
    }))
    .expect("job");
    api.submit(&job, Some("k-1")).await.expect("moved on");
    assert_eq!((down.hits(), up.hits()), (1, 1));
    assert_eq!(*up.keys.lock().expect("keys"), ["k-1"]);
    assert_eq!(
        *down.keys.lock().expect("keys"),
        ["k-1"],
        "the same key twice"
    );
}

#[tokio::test]
async fn a_4xx_is_an_answer_and_every_failure_is_named() {
    let refusing = Server::start(404).await;
    let up = Server::start(200).await;
    let api1 = api(vec![refusing.url.clone(), up.url.clone()]);
    let e = api1.get_json("/v1/jobs/9", &[]).await.expect_err("404");
    assert_eq!(
        e.downcast_ref::<ApiError>().map(|a| a.status),
        Some(StatusCode::NOT_FOUND)
    );
    assert_eq!(up.hits(), 0, "a 4xx does not fail over");

    let down = Server::start(502).await;
    let (a, b) = (refused(), down.url.clone());
    let api2 = api(vec![a.clone(), b.clone()]);
    let e = api2.get_json("/v1/jobs", &[]).await.expect_err("none");
    let text = format!("{e:#}");
    assert!(
        text.contains(a.as_str()) && text.contains(b.as_str()),
        "{text}"
    );
    assert!(
        is_transient(&e),
        "a 502 stays transient through the context"
    );
}

#[tokio::test]
async fn health_probes_the_first_controller_that_answers() {
    let down = Server::start(503).await;
    let api = api(vec![refused(), down.url.clone()]);
    let (status, _) = api.probe("/readyz").await.expect("answered");
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "an answer, reported"
    );
    assert_eq!(api.base(), &down.url);
    let none = api_none()
        .probe("/healthz")
        .await
        .expect_err("none answers");
    assert!(none.downcast_ref::<TransportError>().is_some(), "{none:#}");
}

fn api_none() -> Api {
    api(vec![refused(), refused()])
}

#[test]
fn later_moves_wait_a_growing_jittered_delay() {
    for n in 0..8 {
        let base = Duration::from_millis(100 << n.min(4)).min(Duration::from_secs(1));
        let w = failover_wait(n);
        assert!(w >= base && w <= base * 2, "{n}: {w:?}");
    }
}

#[tokio::test]
async fn the_third_controller_is_tried_after_a_wait() {
    let up = Server::start(200).await;
    let api = api(vec![refused(), refused(), up.url.clone()]);
    let started = std::time::Instant::now();
    api.get_json("/v1/jobs", &[]).await.expect("answered");
    assert!(
        started.elapsed() >= Duration::from_millis(100),
        "{:?}",
        started.elapsed()
    );
}
