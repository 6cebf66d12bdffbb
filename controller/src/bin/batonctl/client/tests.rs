use super::*;

#[test]
fn ids_are_one_encoded_path_segment() {
    assert_eq!(segment("db-1.example_x~"), "db-1.example_x~");
    assert_eq!(segment("a/b c"), "a%2Fb%20c");
    assert_eq!(segment("é?#"), "%C3%A9%3F%23");
    let base = parse_base_url("http://ctl:8420/baton").expect("url");
    let path = format!("/v1/tokens/{}/revoke", segment("../x"));
    assert_eq!(
        join_url(&base, &path, &[]).as_str(),
        "http://ctl:8420/baton/v1/tokens/..%2Fx/revoke"
    );
}

#[test]
fn audit_query_pairs_are_encoded() {
    let base = parse_base_url("http://ctl:8420").expect("url");
    let q = AuditQuery {
        limit: Some(50),
        before: Some(-1),
        actor: Some("token:ci bot".into()),
    };
    assert_eq!(
        join_url(&base, "/v1/audit", &q.pairs()).as_str(),
        "http://ctl:8420/v1/audit?limit=50&before=-1&actor=token%3Aci+bot"
    );
    assert!(AuditQuery::default().pairs().is_empty());
}

#[test]
fn credential_errors_carry_a_hint() {
    let forbidden = ApiError::from_response(
        StatusCode::FORBIDDEN,
        r#"{"error":{"code":"forbidden","message":"this needs the admin role"}}"#,
    );
    assert_eq!(forbidden.to_string(), "this needs the admin role");
    assert!(forbidden.hint().is_some_and(|h| h.contains("whoami")));
    let unknown = ApiError::from_response(StatusCode::UNAUTHORIZED, "");
    assert!(unknown.hint().is_some_and(|h| h.contains("BATON_TOKEN")));
    let missing = ApiError::from_response(StatusCode::NOT_FOUND, "");
    assert_eq!(missing.hint(), None);
}

#[test]
fn urls_keep_prefix_and_encode_labels() {
    let base = parse_base_url("http://127.0.0.1:8420/baton/").expect("url");
    let q = ListQuery {
        state: Some("queued".into()),
        label: Some(("team".into(), "dba ops".into())),
        limit: Some(5),
        ..ListQuery::default()
    };
    let url = join_url(&base, "/v1/jobs", &q.pairs());
    assert_eq!(
        url.as_str(),
        "http://127.0.0.1:8420/baton/v1/jobs?state=queued&label=team%3Ddba+ops&limit=5"
    );
    let plain = parse_base_url("https://ctl.example:8420").expect("url");
    assert_eq!(
        join_url(&plain, "/v1/jobs/7", &[]).as_str(),
        "https://ctl.example:8420/v1/jobs/7"
    );
}

#[test]
fn reindent_keeps_key_order_and_strings() {
    let text = r#"{"id":7,"group":"a, b: {c}","spec":{"kind":"noop"},"args":[],"env":{ },"q":"x\\\"y","n":[1,2]}"#;
    let pretty = reindent(text);
    assert_eq!(
        pretty,
        "{\n  \"id\": 7,\n  \"group\": \"a, b: {c}\",\n  \"spec\": {\n    \"kind\": \"noop\"\n  },\n  \"args\": [],\n  \"env\": {},\n  \"q\": \"x\\\\\\\"y\",\n  \"n\": [\n    1,\n    2\n  ]\n}"
    );
    let a: Value = serde_json::from_str(text).expect("json");
    let b: Value = serde_json::from_str(&pretty).expect("pretty json");
    assert_eq!(a, b);
}

#[test]
fn bad_urls_are_usage_errors() {
    for raw in ["ftp://x", "not a url", "unix:/tmp/sock"] {
        let err = parse_base_url(raw).expect_err(raw);
        assert!(err.is::<UsageError>(), "{raw}: {err}");
    }
}

#[test]
fn api_error_message_names_the_field() {
    let e = ApiError::from_response(
        StatusCode::BAD_REQUEST,
        r#"{"error":{"code":"bad_request","message":"priority out of range","field":"priority"}}"#,
    );
    assert_eq!(e.to_string(), "priority out of range (field: priority)");
    assert!(!e.is_transient());
    let e = ApiError::from_response(StatusCode::SERVICE_UNAVAILABLE, "upstream down");
    assert_eq!(e.to_string(), "HTTP 503 Service Unavailable: upstream down");
    assert!(e.is_transient());
}

#[test]
fn answers_nested_past_the_recursion_limit_still_parse() {
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    let text = format!(r#"{{"id":1,"s":"[[{{\"]","result":{{"data":{deep}}}}}"#);
    assert!(serde_json::from_str::<Value>(&text).is_err());
    let v = parse_answer(&text).expect("pruned");
    assert_eq!(v["id"], 1);
    assert_eq!(v["s"], "[[{\"]");
    let mut d = &v["result"]["data"];
    let mut levels = 0;
    while let Some(a) = d.as_array() {
        d = &a[0];
        levels += 1;
    }
    assert_eq!(d, "(nested too deep to show)");
    assert_eq!(levels, MAX_SHOWN_DEPTH - 2);
    // Shallow answers are untouched.
    let shallow = r#"{"a":[1,{"b":"]"}]}"#;
    assert_eq!(prune_deep_json(shallow, 64), shallow);
}
