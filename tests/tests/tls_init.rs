//! `baton-controller tls init` (issue 16 point 3) and the scheme/CA hints of
//! batonctl and the agent (point 4), with the real binaries: the files it
//! makes serve a controller that batonctl (pinned with `--ca-file`) and an
//! agent (pinned, with its client certificate required) reach.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use baton_proto::JobState;
use baton_tests::proc::{Agent, AgentOpts, Controller, bin};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn tls_init(args: &[&str]) -> Output {
    Command::new(bin("baton-controller").expect("bin"))
        .args(["tls", "init"])
        .args(args)
        .env_remove("BATON_CONFIG")
        .output()
        .expect("run baton-controller tls init")
}

/// batonctl with only the given environment of its own.
fn ctl(args: &[&str], token: Option<&str>) -> Output {
    let mut cmd = Command::new(bin("batonctl").expect("bin"));
    cmd.args(args)
        .env_remove("BATON_URL")
        .env_remove("BATON_CA_FILE")
        .env_remove("BATON_TOKEN_FILE")
        .env_remove("BATON_TOKEN");
    if let Some(t) = token {
        cmd.env("BATON_TOKEN", t);
    }
    cmd.output().expect("run batonctl")
}

/// `[tls]` of a controller serving `dir`'s files, client certificates required.
fn controller_tls(dir: &Path) -> String {
    format!(
        "[tls]\ncert_file = \"{0}/controller.pem\"\nkey_file = \"{0}/controller.key\"\nclient_ca_file = \"{0}/ca.pem\"\nrequire_agent_client_cert = true\n",
        dir.display()
    )
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_init_files_serve_the_controller_for_batonctl_and_an_agent() {
    baton_tests::init_crypto();
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("tls");
    let out = tls_init(&[
        "--dir",
        dir.to_str().expect("utf-8"),
        "--san",
        "127.0.0.1,localhost",
        "--agent",
        "db1",
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    let dir = dir.canonicalize().expect("dir");
    for line in [
        format!("cert_file = \"{}\"", dir.join("controller.pem").display()),
        format!("key_file = \"{}\"", dir.join("controller.key").display()),
        format!("BATON_CA_FILE={}", dir.join("ca.pem").display()),
        format!(
            "client_key_file = \"{}\"",
            dir.join("agent-db1.key").display()
        ),
    ] {
        assert!(stdout.contains(&line), "{line} missing:\n{stdout}");
    }
    assert_eq!(mode(&dir), 0o700);
    for (file, want) in [
        ("ca.pem", 0o644),
        ("ca.key", 0o600),
        ("controller.pem", 0o644),
        ("controller.key", 0o600),
        ("agent-db1.pem", 0o644),
        ("agent-db1.key", 0o600),
    ] {
        assert_eq!(mode(&dir.join(file)), want, "{file}");
    }

    // The controller serves with them, and demands agents' client certificates.
    let ca = dir.join("ca.pem");
    let ctl_dir = tmp.path().join("controller");
    let c = Controller::start_custom(
        &ctl_dir,
        "127.0.0.1:0",
        &controller_tls(&dir),
        Some(ca.clone()),
    )
    .await
    .expect("controller on tls init's files");
    let port = c.addr.port();
    for host in ["127.0.0.1", "localhost"] {
        let url = format!("https://{host}:{port}");
        let out = ctl(
            &[
                "--url",
                &url,
                "--ca-file",
                ca.to_str().expect("utf-8"),
                "health",
            ],
            None,
        );
        assert_eq!(out.status.code(), Some(0), "{host}: {}", text(&out.stderr));
        assert!(text(&out.stdout).contains("readyz: ok"));
    }

    // An agent pinned to ca.pem with its client certificate enrolls and runs a job.
    let api = c.api();
    let mut opts = AgentOpts::new("db1");
    opts.extra = format!(
        "[tls]\nca_file = \"{0}/ca.pem\"\nclient_cert_file = \"{0}/agent-db1.pem\"\nclient_key_file = \"{0}/agent-db1.key\"\n",
        dir.display()
    );
    opts.enrollment_token = Some(api.enrollment_token(&opts.groups).await.expect("token"));
    let _agent = Agent::start(tmp.path(), &c.url(), opts).expect("agent");
    let job = api
        .submit(json!({"group": "default", "spec": {"kind": "command", "program": "/bin/echo", "args": ["over tls init"]}}))
        .await
        .expect("submit");
    let done = api.wait_terminal(job.id, WAIT).await.expect("terminal");
    assert_eq!(done.state, JobState::Succeeded);
    let url = format!("https://localhost:{port}");
    let out = ctl(
        &[
            "--url",
            &url,
            "--ca-file",
            ca.to_str().expect("utf-8"),
            "agents",
        ],
        Some(&c.admin_token),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("db1"), "{}", text(&out.stdout));

    // Again without --force: refused, nothing replaced.
    let before = std::fs::read(dir.join("controller.pem")).expect("read");
    let out = tls_init(&["--dir", dir.to_str().expect("utf-8"), "--san", "127.0.0.1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("--force"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        std::fs::read(dir.join("controller.pem")).expect("read"),
        before
    );
}

/// The agent's log once it holds `needle` (up to `limit`).
fn wait_log(agent: &Agent, needle: &str, limit: Duration) -> String {
    let end = Instant::now() + limit;
    loop {
        let log = agent.log_text();
        if log.contains(needle) || Instant::now() > end {
            return log;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batonctl_and_the_agent_hint_at_scheme_and_ca_mismatches() {
    baton_tests::init_crypto();
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("tls");
    // A certificate for 127.0.0.1 only: `localhost` is a name it does not have.
    let out = tls_init(&["--dir", dir.to_str().expect("utf-8"), "--san", "127.0.0.1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let ca: PathBuf = dir.join("ca.pem");
    let ca_s = ca.to_str().expect("utf-8");
    let tls_section = format!(
        "[tls]\ncert_file = \"{0}/controller.pem\"\nkey_file = \"{0}/controller.key\"\n",
        dir.display()
    );
    let secure = Controller::start_custom(
        &tmp.path().join("secure"),
        "127.0.0.1:0",
        &tls_section,
        Some(ca.clone()),
    )
    .await
    .expect("TLS controller");
    let plain = Controller::start(&tmp.path().join("plain"), "")
        .await
        .expect("plain controller");
    let (tls_port, plain_port) = (secure.addr.port(), plain.addr.port());

    let cases = [
        (
            format!("http://127.0.0.1:{tls_port}"),
            Some(ca_s),
            format!("hint: the controller speaks HTTPS: use https://127.0.0.1:{tls_port}"),
        ),
        (
            format!("https://127.0.0.1:{plain_port}"),
            Some(ca_s),
            format!(
                "hint: the controller speaks plain HTTP here: use http://127.0.0.1:{plain_port}"
            ),
        ),
        (
            format!("https://127.0.0.1:{tls_port}"),
            None,
            "pin the controller's CA with BATON_CA_FILE or --ca-file".to_owned(),
        ),
        (
            format!("https://localhost:{tls_port}"),
            Some(ca_s),
            "does not name localhost, it names 127.0.0.1".to_owned(),
        ),
    ];
    for (url, ca_file, hint) in &cases {
        let mut args = vec!["--url", url.as_str()];
        if let Some(ca) = ca_file {
            args.extend(["--ca-file", ca]);
        }
        args.push("health");
        let out = ctl(&args, None);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{url}: {stderr}");
        assert!(
            stderr.contains(hint.as_str()),
            "{url}: want {hint:?} in:\n{stderr}"
        );
    }
    // The right URL and CA work.
    let url = format!("https://127.0.0.1:{tls_port}");
    let out = ctl(&["--url", &url, "--ca-file", ca_s, "health"], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    // The agent, given http:// for the TLS controller, says the same.
    let mut opts = AgentOpts::new("wrong-scheme");
    opts.enrollment_token = Some("baton_enr_unused".into());
    let agent =
        Agent::start(tmp.path(), &format!("http://127.0.0.1:{tls_port}"), opts).expect("agent");
    let want = format!("the controller speaks HTTPS: use https://127.0.0.1:{tls_port}");
    let log = wait_log(&agent, &want, WAIT);
    assert!(log.contains(&want), "no hint in the agent's log:\n{log}");
}
