//! The dashboard (`/ui`) in a real headless Chromium, driven over WebDriver
//! (fantoccini → Debian's `chromedriver`), against a real controller and
//! real agents.
//!
//! Skips, saying why, when `chromium` or `chromedriver` is missing, unless
//! `BATON_TEST_REQUIRE_CHROMIUM=1` (set by `.ci/run`, which installs them).
//! Screenshots of the main pages go to `target/ui-screens/*.png`.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use baton_proto::{AttemptOutcome, JobState};
use baton_tests::cluster::Cluster;
use fantoccini::elements::Element;
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::Method;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);
/// Debian's paths; `BATON_TEST_CHROMIUM` and `BATON_TEST_CHROMEDRIVER`
/// name others.
fn tool(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_owned())
}

/// chromedriver on a free port, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The driver and a browser session, or `None` (printed) when absent.
async fn browser() -> Option<(Driver, Client)> {
    let chromium = tool("BATON_TEST_CHROMIUM", "/usr/bin/chromium");
    let chromedriver = tool("BATON_TEST_CHROMEDRIVER", "/usr/bin/chromedriver");
    let missing: Vec<&str> = [chromium.as_str(), chromedriver.as_str()]
        .into_iter()
        .filter(|p| !std::path::Path::new(p).exists())
        .collect();
    if !missing.is_empty() {
        let why = format!("{missing:?} not installed (apt-get install chromium chromium-driver)");
        if std::env::var("BATON_TEST_REQUIRE_CHROMIUM").as_deref() == Ok("1") {
            panic!("BATON_TEST_REQUIRE_CHROMIUM=1 but {why}");
        }
        eprintln!("SKIP: {why}");
        return None;
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let child = Command::new(&chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,800", "--hide-scrollbars"]
        }),
    );
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&driver.url)
            .await
        {
            Ok(c) => return Some((driver, c)),
            Err(e) if Instant::now() > end => panic!("no WebDriver session: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// The element `css` matches, waiting for it (the pages refresh themselves).
async fn wait_css(b: &Client, css: &str) -> Element {
    let found = b
        .wait()
        .at_most(WAIT)
        .every(Duration::from_millis(200))
        .for_element(Locator::Css(css))
        .await;
    match found {
        Ok(e) => e,
        Err(e) => {
            let url = b.current_url().await.map(|u| u.to_string());
            let src = b.source().await.unwrap_or_default();
            panic!("no `{css}` within {WAIT:?}: {e}\nat {url:?}\n{src}")
        }
    }
}

async fn count(b: &Client, css: &str) -> usize {
    b.find_all(Locator::Css(css)).await.expect("find_all").len()
}

/// Save a screenshot as `target/ui-screens/<name>.png`.
async fn screenshot(b: &Client, name: &str) {
    let dir = screens_dir();
    std::fs::create_dir_all(&dir).expect("screens dir");
    let png = b.screenshot().await.expect("screenshot");
    std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
}

fn screens_dir() -> PathBuf {
    // target/debug → target/ui-screens
    let bin = baton_tests::proc::bin_dir();
    bin.parent()
        .map_or(bin.clone(), PathBuf::from)
        .join("ui-screens")
}

async fn sign_in(b: &Client, base: &str, token: &str) {
    b.goto(&format!("{base}/ui/fleet")).await.expect("goto");
    // Not signed in: the dashboard sends the browser to the sign-in page.
    let field = wait_css(b, "input#token").await;
    assert!(
        b.current_url()
            .await
            .expect("url")
            .path()
            .ends_with("/ui/login")
    );
    field.send_keys(token).await.expect("type token");
    b.find(Locator::Css("button#sign-in"))
        .await
        .expect("button")
        .click()
        .await
        .expect("click");
    wait_css(b, "button#sign-out").await;
}

fn sh(script: &str) -> serde_json::Value {
    json!({
        "group": "default",
        "spec": {"kind": "command", "program": "/bin/sh", "args": ["-c", script]},
        "retry": {"max_attempts": 1},
        "labels": {"from": "ui-test"}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_sees_fleet_drill_schedules_pipelines_a_job_succeed_cancels_one_and_drains() {
    let Some((_driver, b)) = browser().await else {
        return;
    };
    let c = Cluster::start(2).await.expect("cluster");
    c.wait_agents_online().await.expect("online");
    let base = c.controller.url();
    let ops = c
        .api
        .operator_token("ops", "operator")
        .await
        .expect("token");

    // Sign in and see the agents.
    sign_in(&b, &base, &ops).await;
    for a in ["agent-1", "agent-2"] {
        wait_css(&b, &format!("tr#agent-{a}[data-state=online]")).await;
    }
    screenshot(&b, "fleet").await;
    keyboard(&b).await;

    check_drill(&c, &b, &base).await;
    drain_both(&c, &b, &base).await;
    let job = queued_to_succeeded(&c, &b, &base).await;
    let cancelled = cancel_from_its_page(&c, &b, &base).await;
    schedules(&c, &b, &base).await;
    pipeline_run(&c, &b, &base).await;
    jobs_page(&b, &base, job.id, cancelled).await;

    // Readable on a phone: nothing wider than the screen but the tables'
    // own scroll boxes.
    b.set_window_size(390, 844).await.expect("resize");
    for (page, name) in [
        ("/ui/fleet", "fleet-390"),
        (&*format!("/ui/jobs/{}", job.id), "job-390"),
    ] {
        b.goto(&format!("{base}{page}")).await.expect("goto");
        wait_css(&b, "main h1").await;
        let wide = b
            .execute(
                "return document.documentElement.scrollWidth <= window.innerWidth;",
                vec![],
            )
            .await
            .expect("js");
        assert_eq!(wide, json!(true), "{page} overflows 390 px");
        screenshot(&b, name).await;
    }
    b.close().await.expect("close");
}

/// Keyboard use on the Fleet page: Tab goes to the skip link first, with
/// a visible focus ring, then through the navigation to real buttons.
async fn keyboard(b: &Client) {
    let body = b.find(Locator::Css("body")).await.expect("body");
    body.send_keys(&Key::Tab.to_string()).await.expect("tab");
    let first = b.active_element().await.expect("focus");
    assert_eq!(
        first.attr("class").await.expect("attr").as_deref(),
        Some("skip")
    );
    assert_eq!(
        first.css_value("outline-style").await.expect("css"),
        "solid"
    );
    let mut reached = Vec::new();
    for _ in 0..14 {
        let el = b.active_element().await.expect("focus");
        el.send_keys(&Key::Tab.to_string()).await.expect("tab");
        let now = b.active_element().await.expect("focus");
        reached.push(now.attr("id").await.expect("attr").unwrap_or_default());
    }
    assert!(
        reached.iter().any(|id| id == "sign-out")
            && reached.iter().any(|id| id.starts_with("drain-")),
        "Tab does not reach the buttons: {reached:?}"
    );
}

/// A drill's timeline renders: one marker per recorded event.
async fn check_drill(c: &Cluster, b: &Client, base: &str) {
    let raw = c
        .api
        .drill_start(
            json!({"group": "default", "method": "crash", "lease_ttl_ms": 2000, "rto_ms": 20000}),
        )
        .await
        .expect("drill");
    assert_eq!(raw.status.as_u16(), 201, "{}", raw.body);
    let drill_id = raw.body["id"].as_i64().expect("id");
    let d = c.api.wait_drill(drill_id, WAIT).await.expect("drill ends");
    b.goto(&format!("{base}/ui/drills")).await.expect("goto");
    wait_css(b, &format!("tr#drill-{drill_id} a"))
        .await
        .click()
        .await
        .expect("open");
    wait_css(b, "svg.drill-timeline").await;
    assert_eq!(count(b, "svg.drill-timeline g.event").await, d.events.len());
    let verdict = if d.report.as_ref().is_some_and(|r| r.passed) {
        "passed"
    } else {
        "failed"
    };
    wait_css(b, &format!("h1 [data-verdict={verdict}]")).await;
    assert_eq!(count(b, "svg.drill-timeline rect.span-regrant").await, 1);
    b.set_window_size(1280, 1000).await.expect("resize");
    screenshot(b, "drill").await;
    b.set_window_size(1280, 800).await.expect("resize");
}

/// Drain both agents from the Fleet page.
async fn drain_both(c: &Cluster, b: &Client, base: &str) {
    b.goto(&format!("{base}/ui/fleet")).await.expect("goto");
    for a in ["agent-1", "agent-2"] {
        wait_css(b, &format!("button#drain-{a}"))
            .await
            .click()
            .await
            .expect("drain");
        wait_css(b, &format!("tr#agent-{a}[data-state=draining]")).await;
    }
    let agents = c.api.agents().await.expect("agents").agents;
    assert!(agents.iter().all(|a| a.drained_at.is_some()), "{agents:?}");
}

/// Watch a job go from queued to succeeded on its page, refreshed in place.
async fn queued_to_succeeded(c: &Cluster, b: &Client, base: &str) -> baton_proto::JobView {
    let job = c
        .api
        .submit(sh("sleep 1; echo hello-from-ui"))
        .await
        .expect("submit");
    b.goto(&format!("{base}/ui/jobs/{}", job.id))
        .await
        .expect("goto");
    wait_css(b, "h1 [data-job-state=queued]").await;
    screenshot(b, "job-queued").await;
    b.execute("window.batonMarker = 1;", vec![])
        .await
        .expect("js");
    let resumed = c
        .api
        .raw(Method::POST, "/v1/agents/agent-1/resume", None, &[])
        .await
        .expect("resume");
    assert_eq!(resumed.status, 200);
    wait_css(b, "h1 [data-job-state=succeeded]").await;
    wait_css(b, "tr#attempt-1[data-outcome=succeeded]").await;
    assert_eq!(
        count(b, "svg.waterfall g.attempt[data-outcome=succeeded]").await,
        1
    );
    // The attempt's bar in three segments: waiting, granted (until the
    // agent reported its start), running (coloured as succeeded).
    for seg in ["seg-wait", "seg-granted", "seg-ok"] {
        let css = format!("svg.waterfall g.attempt[data-outcome=succeeded] rect.{seg}");
        assert_eq!(count(b, &css).await, 1, "{seg}");
    }
    let done = c.api.job(job.id).await.expect("job");
    let a = &done.attempts[0];
    let running = a.running_at.expect("the agent reported its start");
    assert!(
        a.started_at <= running && Some(running) <= a.ended_at,
        "{a:?}"
    );
    let marker = b
        .execute("return window.batonMarker;", vec![])
        .await
        .expect("js");
    assert_eq!(
        marker,
        json!(1),
        "the page was reloaded, not refreshed in place"
    );
    let out = wait_css(b, "main").await.text().await.expect("text");
    assert!(out.contains("hello-from-ui"), "{out}");
    screenshot(b, "job-succeeded").await;

    job
}

/// Cancel a running job from its page and see the attempt end; the UI's
/// actions are in the audit log like API calls, by the token.
async fn cancel_from_its_page(c: &Cluster, b: &Client, base: &str) -> i64 {
    let long = c
        .api
        .submit(sh("echo started; sleep 120"))
        .await
        .expect("submit");
    b.goto(&format!("{base}/ui/jobs/{}", long.id))
        .await
        .expect("goto");
    wait_css(b, "tr#attempt-1[data-outcome=running]").await;
    // The live log tail arrives with a heartbeat, into the open page.
    let end = Instant::now() + WAIT;
    loop {
        let tail = wait_css(b, "pre#log-tail")
            .await
            .text()
            .await
            .unwrap_or_default();
        if tail.contains("started") {
            break;
        }
        assert!(
            Instant::now() < end,
            "no log tail within {WAIT:?}: {tail:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    screenshot(b, "job-running").await;
    wait_css(b, "button#cancel")
        .await
        .click()
        .await
        .expect("cancel");
    wait_css(b, "tr#attempt-1[data-outcome=cancelled]").await;
    wait_css(b, "h1 [data-job-state=cancelled]").await;
    let after = c.api.job(long.id).await.expect("job");
    assert_eq!(after.state, JobState::Cancelled);
    assert_eq!(after.attempts[0].outcome, Some(AttemptOutcome::Cancelled));

    // The UI's actions are in the audit log like API calls, by the token.
    let audit = c.api.audit_entries().await.expect("audit");
    let by_ui = |action: &str| {
        audit
            .iter()
            .any(|e| e["action"] == action && e["actor"] == "token:ops" && e["status"] == 303)
    };
    assert!(by_ui("POST /ui/jobs/{id}/cancel"), "{audit:#?}");
    assert!(by_ui("POST /ui/agents/{id}/drain"), "{audit:#?}");
    long.id
}

/// Schedules: next runs in the schedule's own zone; pause and run now.
async fn schedules(c: &Cluster, b: &Client, base: &str) {
    c.api
        .create_schedule(json!({
            "name": "nightly", "group": "default", "cron": "0 30 2 * * *", "tz": "Europe/Berlin",
            "job": {"spec": {"kind": "noop", "sleep_ms": 0}, "retry": {"max_attempts": 1}}
        }))
        .await
        .expect("schedule");
    b.goto(&format!("{base}/ui/schedules")).await.expect("goto");
    let row = wait_css(b, "tr#schedule-nightly")
        .await
        .text()
        .await
        .expect("text");
    assert!(
        row.contains("02:30:00+01:00"),
        "next runs not in Europe/Berlin: {row}"
    );
    wait_css(b, "button#pause-nightly")
        .await
        .click()
        .await
        .expect("pause");
    wait_css(b, "tr#schedule-nightly [data-flag=paused]").await;
    wait_css(b, "button#trigger-nightly")
        .await
        .click()
        .await
        .expect("run now");
    let fired = wait_css(b, "tr#schedule-nightly a[href^='/ui/jobs/']").await;
    assert!(fired.text().await.expect("text").starts_with('#'));
    screenshot(b, "schedules").await;
    let v: serde_json::Value = c.api.get_json("/v1/schedules/nightly").await.expect("get");
    assert_eq!(v["paused"], true, "{v}");
}

/// Pipelines: a run's DAG with the state of each step.
async fn pipeline_run(c: &Cluster, b: &Client, base: &str) {
    let step = |name: &str, deps: &[&str]| {
        json!({"name": name, "depends_on": deps,
               "job": {"spec": {"kind": "noop", "sleep_ms": 0}, "retry": {"max_attempts": 1}}})
    };
    c.api
        .create_pipeline(json!({"name": "ci", "group": "default", "steps": [
            step("build", &[]), step("test", &["build"]), step("package", &["build"]),
            step("publish", &["test", "package"])
        ]}))
        .await
        .expect("pipeline");
    let run = c.api.start_run("ci").await.expect("run");
    let ended = c.api.wait_run_ended(run.id, WAIT).await.expect("run ends");
    b.goto(&format!("{base}/ui/pipelines")).await.expect("goto");
    wait_css(b, "tr#pipeline-ci a[href^='/ui/runs/']")
        .await
        .click()
        .await
        .expect("open run");
    wait_css(b, "svg.dag").await;
    assert_eq!(count(b, "svg.dag g.step").await, 4);
    assert_eq!(count(b, "svg.dag line.edge").await, 4);
    let done = format!("svg.dag g.step[data-state={}]", ended.state.as_str());
    assert_eq!(
        count(b, &done).await,
        4,
        "every step {}",
        ended.state.as_str()
    );
    screenshot(b, "pipeline-run").await;
}

/// The Jobs page filters by state and finds a job by id.
async fn jobs_page(b: &Client, base: &str, succeeded: i64, cancelled: i64) {
    b.goto(&format!("{base}/ui/jobs?state=cancelled"))
        .await
        .expect("goto");
    wait_css(b, &format!("tr#job-{cancelled}")).await;
    assert_eq!(count(b, &format!("tr#job-{succeeded}")).await, 0);
    screenshot(b, "jobs").await;
    wait_css(b, "input#f-id")
        .await
        .send_keys(&succeeded.to_string())
        .await
        .expect("type");
    b.find(Locator::Css("button#go"))
        .await
        .expect("go")
        .click()
        .await
        .expect("click");
    wait_css(b, "h1 [data-job-state=succeeded]").await;
}

/// A plain HTTP client that keeps redirects and cookies to itself.
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// Sign in with `token` over plain HTTP: the session cookie's value and
/// its whole `Set-Cookie` line.
async fn session(base: &str, token: &str) -> (String, String) {
    let r = post_login(base, token, Some(&login_form(base).await)).await;
    assert_eq!(r.status(), 303, "sign-in answers with a redirect");
    let line = r.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .to_owned();
    let value = line
        .strip_prefix("baton_session=")
        .and_then(|v| v.split(';').next())
        .expect("baton_session cookie")
        .to_owned();
    (value, line)
}

/// A sign-in form's CSRF nonce: its `baton_login` cookie (the hidden field
/// carries the same value).
async fn login_form(base: &str) -> String {
    let r = http()
        .get(format!("{base}/ui/login"))
        .send()
        .await
        .expect("login page");
    let line = r.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .to_owned();
    assert!(
        line.contains("HttpOnly") && line.contains("SameSite=Strict"),
        "{line}"
    );
    let nonce = line
        .strip_prefix("baton_login=")
        .and_then(|v| v.split(';').next())
        .expect("baton_login cookie")
        .to_owned();
    let page = r.text().await.expect("text");
    assert!(
        page.contains(&format!("name=\"csrf\" value=\"{nonce}\"")),
        "{page}"
    );
    nonce
}

/// POST the sign-in form with `token`; `nonce` goes in both the cookie and
/// the form (a real form), `None` in neither (a forged one).
async fn post_login(base: &str, token: &str, nonce: Option<&str>) -> reqwest::Response {
    let mut req = http()
        .post(format!("{base}/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded");
    req = match nonce {
        Some(n) => req
            .header("cookie", format!("baton_login={n}"))
            .body(format!("token={token}&csrf={n}")),
        None => req.body(format!("token={token}")),
    };
    req.send().await.expect("login")
}

/// The CSRF token a page of this session carries in its forms.
async fn csrf_of(base: &str, cookie: &str) -> String {
    let page = http()
        .get(format!("{base}/ui/fleet"))
        .header("cookie", format!("baton_session={cookie}"))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("text");
    let at = page.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    page[at..at + 64].to_owned()
}

async fn post_cancel(
    base: &str,
    id: i64,
    cookie: Option<&str>,
    csrf: Option<&str>,
) -> (u16, String) {
    let mut req = http()
        .post(format!("{base}/ui/jobs/{id}/cancel"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(csrf.map(|c| format!("csrf={c}")).unwrap_or_default());
    if let Some(c) = cookie {
        req = req.header("cookie", format!("baton_session={c}"));
    }
    let r = req.send().await.expect("post");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_has_no_buttons_and_forged_posts_are_refused() {
    let c = Cluster::start(1).await.expect("cluster");
    c.wait_agents_online().await.expect("online");
    let base = c.controller.url();
    let ops = c
        .api
        .operator_token("ops", "operator")
        .await
        .expect("token");
    let viewer = c.api.operator_token("eyes", "viewer").await.expect("token");
    let job = c.api.submit(sh("sleep 120")).await.expect("submit");
    c.api.wait_running(job.id, WAIT).await.expect("running");

    let op_cookie = cookie_and_headers(&base, &ops, job.id).await;
    let (admin_cookie, _) = session(&base, &c.controller.admin_token).await;
    let audit = http()
        .get(format!("{base}/ui/audit"))
        .header("cookie", format!("baton_session={admin_cookie}"))
        .send()
        .await
        .expect("audit");
    assert_eq!(audit.status(), 200);
    let rows = audit.text().await.expect("html");
    assert!(
        rows.contains("POST /ui/login"),
        "sign-ins are audited: {rows}"
    );
    let (view_cookie, op_csrf, view_csrf) =
        forged_posts_are_refused(&c, &base, &viewer, &op_cookie, job.id).await;
    // Viewers see the webhook deliveries (none here: no webhook set).
    let page = http()
        .get(format!("{base}/ui/notifications?state=failed"))
        .header("cookie", format!("baton_session={view_cookie}"))
        .send()
        .await
        .expect("notifications");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    assert!(
        html.contains("<h1>Notifications</h1>") && html.contains("No deliveries."),
        "{html}"
    );

    // The viewer in the browser: everything visible, no action button.
    if let Some((_driver, b)) = browser().await {
        sign_in(&b, &base, &viewer).await;
        wait_css(&b, "tr#agent-agent-1[data-state=online]").await;
        assert_eq!(count(&b, "button[id^=drain-]").await, 0);
        b.goto(&format!("{base}/ui/jobs/{}", job.id))
            .await
            .expect("goto");
        wait_css(&b, "tr#attempt-1[data-outcome=running]").await;
        assert_eq!(count(&b, "button#cancel").await, 0);
        assert_eq!(count(&b, "form[action$='/cancel']").await, 0);
        screenshot(&b, "job-viewer").await;
        wait_css(&b, "button#sign-out")
            .await
            .click()
            .await
            .expect("sign out");
        wait_css(&b, "input#token").await;
        b.close().await.expect("close");
    }

    // Sign-out ends the session in the store: its cookie is refused after.
    let out = http()
        .post(format!("{base}/ui/logout"))
        .header("cookie", format!("baton_session={view_cookie}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={view_csrf}"))
        .send()
        .await
        .expect("logout");
    assert_eq!(out.status(), 303);
    let gone = http()
        .get(format!("{base}/ui/fleet"))
        .header("cookie", format!("baton_session={view_cookie}"))
        .send()
        .await
        .expect("page");
    assert_eq!(gone.status(), 303);
    assert_eq!(gone.headers()["location"], "/ui/login");

    // The right token from the operator's session is accepted: the refusals
    // above were the CSRF check and the role, nothing else.
    let (st, body) = post_cancel(&base, job.id, Some(&op_cookie), Some(&op_csrf)).await;
    assert_eq!(st, 303, "{body}");
    assert!(c.api.job(job.id).await.expect("job").cancel_requested);
}

/// The session cookie's attributes and the page headers; a session cookie
/// is no credential outside /ui. Returns the operator's session.
async fn cookie_and_headers(base: &str, ops: &str, job: i64) -> String {
    let (op_cookie, line) = session(base, ops).await;
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/ui/", "Max-Age=43200"] {
        assert!(line.contains(attr), "{attr} missing: {line}");
    }
    assert!(
        !line.contains("Secure"),
        "plain HTTP has no Secure cookie: {line}"
    );
    let page = http()
        .get(format!("{base}/ui/jobs/{}", job))
        .header("cookie", format!("baton_session={op_cookie}"))
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_owned();
    assert!(
        csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let html = page.text().await.expect("html");
    assert!(
        html.contains("id=\"cancel\""),
        "an operator has the cancel button"
    );
    assert!(
        !html.contains("<script>") && !html.contains("style="),
        "inline script or style"
    );
    // An unknown token gets the sign-in page again, and no cookie.
    let bad = post_login(base, "baton_op_0000", Some(&login_form(base).await)).await;
    assert_eq!(bad.status(), 401);
    assert!(bad.headers().get("set-cookie").is_none());
    // The Audit page is for admins, as `GET /v1/audit` is.
    let audit = http()
        .get(format!("{base}/ui/audit"))
        .header("cookie", format!("baton_session={op_cookie}"))
        .send()
        .await
        .expect("audit");
    assert_eq!(audit.status(), 403);
    // A session cookie is no credential outside /ui.
    let api = http()
        .get(format!("{base}/v1/jobs/{}", job))
        .header("cookie", format!("baton_session={op_cookie}"))
        .send()
        .await
        .expect("api");
    assert_eq!(api.status(), 401);

    op_cookie
}

/// Forged POSTs: no session, no CSRF token, another session's token, a
/// viewer's session with its own token. Returns the viewer's session and
/// both CSRF tokens.
async fn forged_posts_are_refused(
    c: &Cluster,
    base: &str,
    viewer: &str,
    op_cookie: &str,
    job: i64,
) -> (String, String, String) {
    forged_sign_ins_are_refused(base, viewer).await;
    let (view_cookie, _) = session(base, viewer).await;
    let op_csrf = csrf_of(base, op_cookie).await;
    let view_csrf = csrf_of(base, &view_cookie).await;
    assert_ne!(op_csrf, view_csrf);
    let (st, body) = post_cancel(base, job, None, Some(&op_csrf)).await;
    assert_eq!(st, 401, "{body}");
    let (st, body) = post_cancel(base, job, Some(op_cookie), None).await;
    assert_eq!(st, 403, "{body}");
    assert!(body.contains("\"field\":\"csrf\""), "{body}");
    let (st, body) = post_cancel(base, job, Some(op_cookie), Some(&view_csrf)).await;
    assert_eq!(st, 403, "{body}");
    let (st, body) = post_cancel(base, job, Some(&view_cookie), Some(&view_csrf)).await;
    assert_eq!(st, 403, "{body}");
    assert!(body.contains("role viewer"), "{body}");
    let still = c.api.job(job).await.expect("job");
    assert!(
        still.state == JobState::Running && !still.cancel_requested,
        "{still:?}"
    );

    (view_cookie, op_csrf, view_csrf)
}

/// Forged sign-ins with an active token (`token`) start no session: no
/// form nonce at all, a nonce not the cookie's, and a real nonce sent from
/// another site. Each is 403 naming `csrf`, with no session cookie.
async fn forged_sign_ins_are_refused(base: &str, token: &str) {
    let nonce = login_form(base).await;
    let first = if nonce.starts_with('0') { "1" } else { "0" };
    let other = format!("{first}{}", &nonce[1..]);
    let forged = [
        post_login(base, token, None).await,
        http()
            .post(format!("{base}/ui/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", format!("baton_login={nonce}"))
            .body(format!("token={token}&csrf={other}"))
            .send()
            .await
            .expect("login"),
        http()
            .post(format!("{base}/ui/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", format!("baton_login={nonce}"))
            .header("sec-fetch-site", "cross-site")
            .header("origin", "https://evil.example")
            .body(format!("token={token}&csrf={nonce}"))
            .send()
            .await
            .expect("login"),
    ];
    for r in forged {
        let cookies: Vec<String> = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(r.status(), 403);
        assert!(
            !cookies.iter().any(|c| c.starts_with("baton_session=")),
            "{cookies:?}"
        );
        let body = r.text().await.expect("body");
        assert!(body.contains("\"field\":\"csrf\""), "{body}");
    }
}

/// GET `path` on `base` with the session cookie: the status and `Location`.
async fn get_with(base: &str, path: &str, cookie: &str) -> (u16, String) {
    let r = http()
        .get(format!("{base}{path}"))
        .header("cookie", format!("baton_session={cookie}"))
        .send()
        .await
        .expect("get");
    let location = r
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (r.status().as_u16(), location)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_from_one_replica_works_on_another_and_sign_out_ends_it_everywhere() {
    baton_tests::require_postgres!();
    let pg = baton_tests::postgres::shared()
        .await
        .expect(baton_tests::postgres::INSTALL_HINT);
    let c = baton_tests::ha::HaCluster::start(2, 0, pg)
        .await
        .expect("cluster");
    let urls = c.urls();
    let ops = c
        .api(0)
        .operator_token("ops", "operator")
        .await
        .expect("token");
    // Signed in on replica A, the session is known to replica B (the store).
    let (cookie, _) = session(&urls[0], &ops).await;
    assert_eq!(
        get_with(&urls[1], "/ui/fleet", &cookie).await.0,
        200,
        "{}",
        c.logs()
    );
    // A CSRF token from A's page is good on B (derived from the session).
    let csrf = csrf_of(&urls[0], &cookie).await;
    let job = c
        .api(0)
        .submit(
            json!({"group": "default", "spec": {"kind": "noop", "sleep_ms": 0},
                       "allow_unplaced": true}),
        )
        .await
        .expect("submit");
    let (st, body) = post_cancel(&urls[1], job.id, Some(&cookie), Some(&csrf)).await;
    assert_eq!(st, 303, "{body}");
    assert_eq!(
        c.api(0).job(job.id).await.expect("job").state,
        JobState::Cancelled
    );
    // Sign-out on B: A refuses the cookie at once.
    let out = http()
        .post(format!("{}/ui/logout", urls[1]))
        .header("cookie", format!("baton_session={cookie}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}"))
        .send()
        .await
        .expect("logout");
    assert_eq!(out.status(), 303);
    assert_eq!(
        get_with(&urls[0], "/ui/fleet", &cookie).await,
        (303, "/ui/login".to_owned())
    );
}
