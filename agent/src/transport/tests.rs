use super::*;

#[test]
fn base_urls() {
    assert_eq!(
        check_base_url("http://127.0.0.1:8420/").as_deref(),
        Ok("http://127.0.0.1:8420")
    );
    assert!(check_base_url("https://ctl.example/baton").is_ok());
    assert!(check_base_url("ftp://x").is_err());
    assert!(check_base_url("127.0.0.1:8420").is_err());
    assert!(check_base_url("http://x/?a=1").is_err());
}

#[test]
fn errors_are_sorted() {
    let body =
        serde_json::to_vec(&ErrorBody::new(ErrorCode::LeaseLost, "stale", None)).expect("json");
    assert!(matches!(classify(409, &body, None), Error::LeaseLost(m) if m == "stale"));
    let conflict =
        serde_json::to_vec(&ErrorBody::new(ErrorCode::Conflict, "x", None)).expect("json");
    assert!(matches!(
        classify(409, &conflict, None),
        Error::Rejected {
            status: 409,
            code: Some(ErrorCode::Conflict),
            ..
        }
    ));
    let expired = serde_json::to_vec(&ErrorBody::new(
        ErrorCode::Unauthorized,
        "enrollment token expired",
        None,
    ))
    .expect("json");
    let e = classify(401, &expired, None);
    assert!(e.is_auth());
    assert!(matches!(&e, Error::Unauthorized(m) if m == "enrollment token expired"));
    assert!(matches!(classify(403, b"", None), Error::Forbidden(_)));
    assert!(!classify(403, b"", None).is_auth());
    assert!(matches!(
        classify(503, b"down", None),
        Error::Unavailable(_)
    ));
    assert!(matches!(
        classify(429, b"", Some(Duration::from_secs(3))),
        Error::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(3)
    ));
    assert!(matches!(
        classify(404, b"", None),
        Error::Rejected { status: 404, .. }
    ));
}

#[test]
fn retry_after_seconds() {
    let mut h = HeaderMap::new();
    assert_eq!(retry_after(&h), None);
    h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
    assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
    h.insert(
        RETRY_AFTER,
        HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
    );
    assert_eq!(retry_after(&h), None);
}

#[test]
fn plain_http_to_another_host_is_noticed() {
    assert!(plain_http_remote("http://ctl.example:8420"));
    assert!(plain_http_remote("http://10.1.2.3:8420"));
    assert!(!plain_http_remote("http://127.0.0.1:8420"));
    assert!(!plain_http_remote("http://127.9.9.9"));
    assert!(!plain_http_remote("http://localhost:8420"));
    assert!(!plain_http_remote("http://[::1]:8420"));
    assert!(!plain_http_remote("https://ctl.example"));
}
