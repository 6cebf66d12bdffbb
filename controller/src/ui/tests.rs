use axum::http::HeaderMap;

use super::session::{CsrfForm, UiUser, csrf_token};
use super::*;
use crate::credentials::OperatorPrincipal;

fn user(role: baton_proto::auth::Role) -> UiUser {
    UiUser {
        who: OperatorPrincipal {
            token_id: "t1".into(),
            name: "ops".into(),
            role,
        },
        csrf: csrf_token("s3cret"),
    }
}

#[test]
fn csrf_is_per_session_and_checked() {
    assert_ne!(csrf_token("a"), csrf_token("b"));
    assert_eq!(csrf_token("a"), csrf_token("a"));
    let u = user(baton_proto::auth::Role::Operator);
    assert!(
        u.check(&CsrfForm {
            csrf: Some(csrf_token("s3cret"))
        })
        .is_ok()
    );
    for bad in [None, Some(String::new()), Some(csrf_token("other"))] {
        let err = u.check(&CsrfForm { csrf: bad }).expect_err("refused");
        let Error::Api(e) = err else {
            panic!("not an API error")
        };
        assert_eq!(e.0.error.code.status(), 403);
        assert_eq!(e.0.error.field.as_deref(), Some("csrf"));
    }
}

#[test]
fn the_sign_in_form_wants_its_cookie_nonce_and_no_other_site() {
    let headers = |cookie: Option<&str>, site: Option<&str>| {
        let mut h = HeaderMap::new();
        if let Some(c) = cookie {
            h.insert("cookie", c.parse().expect("h"));
        }
        if let Some(s) = site {
            h.insert("sec-fetch-site", s.parse().expect("h"));
        }
        h
    };
    let mine = Some("a=1; baton_login=n0nce; b=2");
    for site in [None, Some("same-origin"), Some("none")] {
        let h = headers(mine, site);
        let ok = session::check_login_csrf(&h, Some("n0nce"));
        assert_eq!(ok.ok(), Some("n0nce"), "{site:?}");
    }
    let refused = [
        (headers(mine, None), None),
        (headers(mine, None), Some("")),
        (headers(mine, None), Some("other")),
        (headers(None, None), Some("n0nce")),
        (headers(Some("baton_login="), None), Some("")),
        (headers(mine, Some("cross-site")), Some("n0nce")),
        (headers(mine, Some("same-site")), Some("n0nce")),
    ];
    for (h, sent) in refused {
        let Err(Error::Api(e)) = session::check_login_csrf(&h, sent) else {
            panic!("accepted: {h:?} {sent:?}")
        };
        assert_eq!(e.0.error.code.status(), 403);
        assert_eq!(e.0.error.field.as_deref(), Some("csrf"));
    }
}

#[test]
fn the_session_cookie_is_found_among_others() {
    let mut h = HeaderMap::new();
    h.insert("cookie", "a=1; baton_session=abc; b=2".parse().expect("h"));
    assert_eq!(crate::api::auth::session_cookie(&h), Some("abc"));
    h.insert(
        "cookie",
        "baton_session_x=1; x=baton_session".parse().expect("h"),
    );
    assert_eq!(crate::api::auth::session_cookie(&h), None);
}

#[test]
fn only_operators_operate_and_pages_escape_text_without_inline_code() {
    let v = user(baton_proto::auth::Role::Viewer);
    let o = user(baton_proto::auth::Role::Operator);
    assert!(!v.can_operate());
    assert!(o.can_operate());
    let page = layout("x", Nav::Fleet, Some(&v), maud::html! { p { "<b>" } }).0;
    // Escaped text, the assets by hashed URL, no inline script or style.
    assert!(page.contains("&lt;b&gt;"), "{page}");
    assert!(page.contains(&format!("/ui/assets/ui-{}.js", *ASSET_VERSION)));
    assert!(
        !page.contains("<script>") && !page.contains("style="),
        "{page}"
    );
}

#[test]
fn durations_and_sizes_read_short() {
    assert_eq!(dur(850), "850 ms");
    assert_eq!(dur(12_400), "12.4 s");
    assert_eq!(dur(185_000), "3 m 05 s");
    assert_eq!(bytes(512), "512 B");
    assert_eq!(bytes(3 << 30), "3.0 GiB");
}

#[tokio::test]
async fn assets_are_served_by_their_hash_with_long_caching() {
    use axum::extract::Path;
    let v = ASSET_VERSION.clone();
    let css = asset(Path(format!("ui-{v}.css"))).await;
    assert_eq!(css.status(), StatusCode::OK);
    assert!(
        css.headers()[header::CACHE_CONTROL]
            .to_str()
            .expect("s")
            .contains("immutable")
    );
    assert_eq!(
        asset(Path("ui-0.css".into())).await.status(),
        StatusCode::NOT_FOUND
    );
}

#[test]
fn result_sets_render_as_tables_with_nulls_and_escaping() {
    let r = baton_proto::JobResult {
        exit_code: None,
        stdout: String::new(),
        stdout_encoding: None,
        stderr: String::new(),
        stderr_encoding: None,
        truncated: false,
        data: Some(serde_json::json!({"result_sets": [
            {"columns": ["id", "name"], "rows": [[1, "<a>"], [2, null]], "truncated": true}
        ]})),
    };
    let html = jobs::result(&r).into_string();
    assert!(
        html.contains("<th scope=\"col\">id</th><th scope=\"col\">name</th>"),
        "{html}"
    );
    assert!(html.contains("<td>1</td><td>&lt;a&gt;</td>"), "{html}");
    assert!(html.contains("<td>2</td><td>NULL</td>"), "{html}");
    assert!(html.contains("(truncated)"), "{html}");
}

#[test]
fn the_session_cookie_is_secure_under_tls_and_always_http_only_and_strict() {
    let plain = session::set_cookie("abc", false);
    let tls = session::set_cookie("abc", true);
    for c in [&plain, &tls] {
        assert!(c.starts_with("baton_session=abc; "), "{c}");
        for attr in ["HttpOnly", "SameSite=Strict", "Path=/ui/", "Max-Age=43200"] {
            assert!(c.contains(attr), "{attr}: {c}");
        }
    }
    assert!(tls.ends_with("; Secure"), "{tls}");
    assert!(!plain.contains("Secure"), "{plain}");
}

#[test]
fn a_running_attempt_shows_its_progress_bar_and_the_waterfall_its_segments() {
    let t = |ms: i64| chrono::DateTime::from_timestamp_millis(ms).expect("t");
    let job: baton_proto::JobView = serde_json::from_value(serde_json::json!({
        "id": 7, "group": "db", "kind": "dump",
        "spec": {"kind": "dump", "connection": "main", "database": "shop"},
        "state": "running", "priority": 0, "retry": {"max_attempts": 2},
        "lease_ttl_ms": 30000, "attempts_spent": 1,
        "cancel_requested": false, "created_at": t(1_000), "updated_at": t(9_000),
        "attempts": [
            {"number": 1, "agent_id": "db1", "token": 1, "started_at": t(2_000),
             "ended_at": t(4_000), "outcome": "lease_expired", "log_tail": ""},
            {"number": 2, "agent_id": "db2", "token": 2, "started_at": t(6_000),
             "running_at": t(7_000),
             "progress": {"percent": 42.0, "message": "copying shop.orders"}, "log_tail": ""}
        ]
    }))
    .expect("job");
    let rows = jobs::attempts(&job).into_string();
    assert!(
        rows.contains("<progress max=\"100\" value=\"42\">"),
        "{rows}"
    );
    assert!(rows.contains("copying shop.orders"), "{rows}");
    let svg = chart::waterfall(&job, 10_000).into_string();
    // Attempt 1 waits from creation, attempt 2 from attempt 1's end; the
    // held segments are coloured by outcome (red, then running blue).
    assert!(svg.contains("data-outcome=\"lease_expired\""), "{svg}");
    assert!(svg.contains("class=\"seg-bad\""), "{svg}");
    assert!(svg.contains("class=\"seg-run\""), "{svg}");
    assert_eq!(svg.matches("class=\"seg-wait\"").count(), 2, "{svg}");
    assert!(
        svg.contains("waiting 1.0 s") && svg.contains("waiting 2.0 s"),
        "{svg}"
    );
    // Attempt 1 reported no start: held in red, no granted segment;
    // attempt 2 is granted from 6 s to its start at 7 s, then running.
    assert_eq!(svg.matches("class=\"seg-granted\"").count(), 1, "{svg}");
    assert!(svg.contains("granted 1.0 s"), "{svg}");
    assert!(svg.contains("running running 3.0 s"), "{svg}");
    assert!(
        svg.contains("held (start not reported) lease_expired"),
        "{svg}"
    );
}

#[test]
fn a_finished_attempt_is_drawn_waiting_granted_then_running_in_its_outcome() {
    let t = |ms: i64| chrono::DateTime::from_timestamp_millis(ms).expect("t");
    let job: baton_proto::JobView = serde_json::from_value(serde_json::json!({
        "id": 8, "group": "db", "kind": "noop", "spec": {"kind": "noop"},
        "state": "succeeded", "priority": 0, "retry": {"max_attempts": 1},
        "lease_ttl_ms": 30000, "attempts_spent": 1, "cancel_requested": false,
        "created_at": t(1_000), "updated_at": t(5_000), "finished_at": t(5_000),
        "attempts": [{"number": 1, "agent_id": "db1", "token": 1, "started_at": t(2_000),
             "running_at": t(2_500), "ended_at": t(5_000), "outcome": "succeeded", "log_tail": ""}]
    }))
    .expect("job");
    let svg = chart::waterfall(&job, 99_000).into_string();
    let seg = |c: &str| svg.find(&format!("class=\"{c}\"")).expect(c);
    // The three segments, in time order, each with its duration.
    assert!(
        seg("seg-wait") < seg("seg-granted") && seg("seg-granted") < seg("seg-ok"),
        "{svg}"
    );
    assert!(svg.contains("waiting 1.0 s"), "{svg}");
    assert!(svg.contains("granted 500 ms"), "{svg}");
    assert!(svg.contains("running succeeded 2.5 s"), "{svg}");
}
