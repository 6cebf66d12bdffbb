use axum::Router;
use axum::body::Body;
use axum::http::StatusCode;
use axum::routing::get;
use baton_proto::config::LogFormat;
use tower::ServiceExt as _;
use tracing_subscriber::layer::SubscriberExt as _;

use super::*;
use crate::logging::tests::Captured;

/// A job route whose handler names its caller (as authentication does)
/// when the request says so, and answers the status it asks for.
fn router() -> Router {
    async fn job(req: Request) -> StatusCode {
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        if let Some(actor) = header("x-actor") {
            identified(&actor);
        }
        info!("Inside the handler");
        header("x-status")
            .and_then(|s| s.parse().ok())
            .and_then(|s| StatusCode::from_u16(s).ok())
            .unwrap_or(StatusCode::OK)
    }
    Router::new()
        .route("/v1/jobs/{id}", get(job))
        .fallback(|| async { StatusCode::NOT_FOUND })
        .layer(RequestSpan)
}

/// The JSON lines logged (at DEBUG and up) while serving each request.
async fn served(requests: Vec<axum::http::Request<Body>>) -> Vec<serde_json::Value> {
    // Register this path's callsites here first, with no subscriber: a
    // callsite another test thread registered for the first time while
    // ours was being set up could store an interest computed without it
    // after the rebuild below, and its lines would be lost.
    let warm = get_req("/v1/jobs/1", &[("x-actor", "token:warm")]);
    router().oneshot(warm).await.expect("answered");
    let out = Captured::default();
    let writer = out.clone();
    let subscriber = tracing_subscriber::registry()
        .with(crate::logging::lines(
            LogFormat::Json,
            move || writer.clone(),
            false,
        ))
        .with(tracing_subscriber::filter::LevelFilter::DEBUG);
    let _default = tracing::subscriber::set_default(subscriber);
    // Other tests run on other threads with their own subscribers (or
    // none). A callsite first hit there while this subscriber was being
    // registered can keep an interest computed without it ("never" for a
    // DEBUG line); recompute every callsite's interest now that it is in.
    tracing::callsite::rebuild_interest_cache();
    for req in requests {
        router().oneshot(req).await.expect("answered");
    }
    let text = out.text();
    text.lines()
        .map(|l| serde_json::from_str(l).expect("every line is JSON"))
        .collect()
}

fn get_req(path: &str, headers: &[(&str, &str)]) -> axum::http::Request<Body> {
    let mut b = axum::http::Request::get(path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Body::empty()).expect("request")
}

fn answers(lines: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    lines
        .iter()
        .filter(|l| l["fields"]["message"] == "Request answered")
        .collect()
}

#[tokio::test]
async fn a_known_caller_refused_is_an_info_line_with_route_status_and_actor() {
    let lines = served(vec![get_req(
        "/v1/jobs/7",
        &[("x-actor", "token:alice"), ("x-status", "404")],
    )])
    .await;
    let inside = lines
        .iter()
        .find(|l| l["fields"]["message"] == "Inside the handler")
        .expect("the handler's line");
    assert_eq!(inside["span"]["route"], "/v1/jobs/{id}", "{inside}");
    assert_eq!(inside["span"]["actor"], "token:alice", "{inside}");
    let answer = answers(&lines);
    assert_eq!(answer.len(), 1, "{lines:?}");
    let a = answer[0];
    assert_eq!(a["level"], "INFO", "{a}");
    let span = &a["span"];
    assert_eq!(span["name"], "request");
    assert_eq!(span["method"], "GET");
    assert_eq!(span["route"], "/v1/jobs/{id}");
    assert_eq!(span["actor"], "token:alice");
    assert_eq!(span["status"], 404);
    assert!(
        span["latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
        "{a}"
    );
}

#[tokio::test]
async fn successes_and_strangers_stay_at_debug() {
    let lines = served(vec![
        get_req("/v1/jobs/1", &[("x-actor", "agent:a1")]),
        get_req("/v1/jobs/2", &[("x-status", "401")]),
        get_req("/no/such/route", &[]),
    ])
    .await;
    let answer = answers(&lines);
    assert_eq!(answer.len(), 3, "{lines:?}");
    for a in &answer {
        assert_eq!(a["level"], "DEBUG", "{a}");
    }
    assert_eq!(answer[0]["span"]["status"], 200);
    assert_eq!(answer[0]["span"]["actor"], "agent:a1");
    assert_eq!(answer[1]["span"]["status"], 401);
    assert!(answer[1]["span"].get("actor").is_none(), "{}", answer[1]);
    assert_eq!(answer[2]["span"]["route"], UNROUTED);
    assert_eq!(answer[2]["span"]["status"], 404);
}

#[test]
fn naming_a_caller_outside_a_request_does_nothing() {
    identified("token:nobody");
}
