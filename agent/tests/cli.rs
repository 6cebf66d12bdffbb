//! The `baton-agent` binary's command line: `validate`, `enroll`, exit codes, `--version`.
#![cfg(unix)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

fn agent_with_stdin(args: &[&str], dir: &Path, env: &[(&str, &str)], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_baton-agent"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run baton-agent");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.as_bytes()).expect("write stdin");
    drop(input);
    child.wait_with_output().expect("wait")
}

fn agent(args: &[&str], dir: &Path, env: &[(&str, &str)]) -> Output {
    agent_with_stdin(args, dir, env, "")
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("agent.toml"),
        "agent_id = \"a1\"\ncontroller_url = \"http://127.0.0.1:9\"\nstate_dir = \"state\"\ngroups = [\"db\"]\n",
    )
    .expect("config");
    dir
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A one-request HTTP server: answers `status` with the JSON `body`, returns the request.
fn one_shot(status: &'static str, body: String) -> (String, JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut reader = BufReader::new(stream);
        let mut head = String::new();
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("read");
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().expect("length");
            }
            head.push_str(&line);
            if line == "\r\n" || line.is_empty() {
                break;
            }
        }
        let mut req = vec![0; length];
        reader.read_exact(&mut req).expect("body");
        let answer = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        reader
            .get_mut()
            .write_all(answer.as_bytes())
            .expect("answer");
        head + &text(&req)
    });
    (url, handle)
}

fn write_identity(dir: &Path, mode: u32) {
    let state = dir.join("state");
    std::fs::create_dir_all(&state).expect("state");
    let path = state.join("identity.json");
    std::fs::write(
        &path,
        "{\"agent_id\": \"a1\", \"secret\": \"baton_agt_s3cret\", \"groups\": [\"db\"], \
         \"controller_url\": \"http://127.0.0.1:9\", \"enrolled_at\": \"2026-01-01T00:00:00Z\"}",
    )
    .expect("identity");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

#[test]
fn validate_prints_a_summary_and_creates_nothing() {
    let dir = setup();
    let out = agent(&["validate", "--config", "agent.toml"], dir.path(), &[]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(stdout.starts_with("Config OK: agent_id=a1 "), "{stdout}");
    assert!(stdout.contains("groups=[db]"), "{stdout}");
    assert!(stdout.contains("tls.ca=system"), "{stdout}");
    assert!(
        stdout.contains("Identity: not enrolled yet; run `baton-agent enroll"),
        "{stdout}"
    );
    assert!(!dir.path().join("state").exists());
}

#[test]
fn validate_reports_the_identity_and_refuses_an_open_one() {
    let dir = setup();
    write_identity(dir.path(), 0o600);
    let out = agent(&["validate", "--config", "agent.toml"], dir.path(), &[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("Identity: enrolled as a1 (groups: db)"),
        "{stdout}"
    );
    assert!(!stdout.contains("s3cret") && !text(&out.stderr).contains("s3cret"));

    write_identity(dir.path(), 0o644);
    let out = agent(&["validate", "--config", "agent.toml"], dir.path(), &[]);
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("readable by group or others"), "{stderr}");
    assert!(!stderr.contains("s3cret"));
}

#[test]
fn run_without_an_identity_or_a_token_exits_78() {
    let dir = setup();
    let out = agent(&["--config", "agent.toml"], dir.path(), &[]);
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(
            "not enrolled: run `baton-agent enroll --token-file FILE` or set enrollment_token_file"
        ),
        "{stderr}"
    );
}

#[test]
fn enroll_reads_the_token_from_stdin_and_never_prints_the_secret() {
    let dir = setup();
    let (url, server) = one_shot(
        "200 OK",
        "{\"agent_id\":\"a1\",\"secret\":\"baton_agt_t0p-s3cret\",\"groups\":[\"db\",\"x\"]}"
            .into(),
    );
    let out = agent_with_stdin(
        &[
            "enroll",
            "--config",
            "agent.toml",
            "--token-file",
            "-",
            "--controller-url",
            &url,
        ],
        dir.path(),
        &[],
        "baton_enr_from-stdin\n",
    );
    let request = server.join().expect("server");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(text(&out.stdout), "Enrolled as a1 (groups: db, x)\n");
    for stream in [text(&out.stdout), text(&out.stderr)] {
        assert!(
            !stream.contains("t0p-s3cret"),
            "the secret was printed: {stream}"
        );
        assert!(
            !stream.contains("from-stdin"),
            "the token was printed: {stream}"
        );
    }
    assert!(request.starts_with("POST /v1/agents/enroll "), "{request}");
    assert!(
        !request.to_ascii_lowercase().contains("authorization:"),
        "{request}"
    );
    assert!(
        request.contains("\"token\":\"baton_enr_from-stdin\""),
        "{request}"
    );

    let path = dir.path().join("state").join("identity.json");
    let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(
        std::fs::read_to_string(&path)
            .expect("read")
            .contains("baton_agt_t0p-s3cret")
    );

    // Again: refused, the file is kept.
    let out = agent(&["enroll", "--config", "agent.toml"], dir.path(), &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("already enrolled as a1; delete state/identity.json to enroll again"),
        "{stderr}"
    );
    assert!(path.exists());
}

#[test]
fn enroll_refusal_prints_the_controllers_message_and_exits_1() {
    let dir = setup();
    let token = dir.path().join("enroll.token");
    std::fs::write(&token, "baton_enr_spent").expect("token");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let (url, server) = one_shot(
        "401 Unauthorized",
        "{\"error\":{\"code\":\"unauthorized\",\"message\":\"enrollment token already used\"}}"
            .into(),
    );
    let out = agent(
        &["enroll", "--config", "agent.toml"],
        dir.path(),
        &[
            ("BATON_AGENT_ENROLLMENT_TOKEN_FILE", "enroll.token"),
            ("BATON_AGENT_CONTROLLER_URL", &url),
        ],
    );
    server.join().expect("server");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("the controller refused the enrollment: enrollment token already used"),
        "{stderr}"
    );
    assert!(!stderr.contains("baton_enr_spent"));
    assert!(!dir.path().join("state").join("identity.json").exists());
}

#[test]
fn config_errors_exit_78_naming_file_key_and_line() {
    let dir = setup();
    let path = dir.path().join("agent.toml");
    let text_before = std::fs::read_to_string(&path).expect("read");
    std::fs::write(&path, text_before.clone() + "slots = 1000\n").expect("write");
    let out = agent(
        &["validate"],
        dir.path(),
        &[("BATON_AGENT_CONFIG", "agent.toml")],
    );
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("agent.toml, line 5, key `slots`"),
        "{stderr}"
    );

    // The removed static token names its line and what replaced it.
    std::fs::write(
        &path,
        text_before + "token_file = \"/etc/baton/agent.token\"\n",
    )
    .expect("write");
    let out = agent(&["validate", "--config", "agent.toml"], dir.path(), &[]);
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("agent.toml, line 5, key `token_file`"),
        "{stderr}"
    );
    assert!(stderr.contains("baton-agent enroll"), "{stderr}");

    // The same mistake from the environment names the variable.
    let dir = setup();
    let out = agent(
        &["validate", "--config", "agent.toml"],
        dir.path(),
        &[("BATON_AGENT_GROUPS", "bad group")],
    );
    assert_eq!(out.status.code(), Some(78));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("environment variable BATON_AGENT_GROUPS"),
        "{stderr}"
    );

    // `run` fails the same way before doing anything.
    let out = agent(&["--slots", "x", "--config", "agent.toml"], dir.path(), &[]);
    assert_eq!(out.status.code(), Some(78));
    assert!(text(&out.stderr).contains("flag --slots"));
}

#[test]
fn version_flag() {
    let dir = setup();
    let out = agent(&["--version"], dir.path(), &[]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout).trim(),
        format!("baton-agent {}", env!("CARGO_PKG_VERSION"))
    );
}

/// batonctl's and the controller's variables (and the agent's own old names)
/// are not the agent's: `validate` is the same as without them.
#[test]
fn validate_ignores_the_variables_of_batonctl_and_the_controller() {
    let dir = setup();
    let plain = agent(&["validate", "--config", "agent.toml"], dir.path(), &[]);
    assert_eq!(plain.status.code(), Some(0), "{plain:?}");
    let others = [
        ("BATON_TOKEN_FILE", "/nonexistent/operator.token"),
        ("BATON_URL", "https://controller.example:8420"),
        ("BATON_CA_FILE", "/nonexistent/ca.pem"),
        ("BATON_TOKEN", "baton_op_x"),
        ("BATON_CONTROLLER_STATE_DIR", "/nonexistent"),
    ];
    let out = agent(&["validate", "--config", "agent.toml"], dir.path(), &others);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(text(&out.stdout), text(&plain.stdout));
    assert_eq!(text(&out.stderr), text(&plain.stderr));

    // An old name of the agent's own: one warning naming the new one, not applied.
    let out = agent(
        &["validate", "--config", "agent.toml"],
        dir.path(),
        &[("BATON_SLOTS", "9")],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stderr = text(&out.stderr);
    assert_eq!(stderr.matches("BATON_AGENT_SLOTS").count(), 1, "{stderr}");
    assert!(text(&out.stdout).contains("slots=1 "), "{out:?}");

    // The old config variable is not read; when that leaves the config
    // incomplete, the warning comes with the error.
    let out = agent(&["validate"], dir.path(), &[("BATON_CONFIG", "agent.toml")]);
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("set BATON_AGENT_CONFIG instead"),
        "{stderr}"
    );
    let out = agent(
        &["validate"],
        dir.path(),
        &[("BATON_AGENT_CONFIG", "agent.toml")],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

/// `--help` lists every variable the agent reads.
#[test]
fn help_lists_the_agent_variables() {
    let dir = setup();
    let out = agent(&["--help"], dir.path(), &[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let help = text(&out.stdout);
    for name in [
        "BATON_AGENT_CONFIG",
        "BATON_AGENT_STATE_DIR",
        "BATON_AGENT_ENROLLMENT_TOKEN_FILE",
    ] {
        assert!(help.contains(name), "{name}: {help}");
    }
}

/// A password file open to group or others stops `validate` with 78, naming
/// the file, the key, its line, the mode and the fix.
#[test]
fn validate_refuses_a_password_file_others_can_read() {
    let dir = setup();
    let path = dir.path().join("agent.toml");
    let before = std::fs::read_to_string(&path).expect("read");
    std::fs::write(
        &path,
        before + "[connections.main]\nkind = \"mysql\"\nhost = \"db\"\nuser = \"u\"\npassword_file = \"pw\"\n",
    )
    .expect("write");
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "s3cret\n").expect("pw");
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = agent(&["validate", "--config", "agent.toml"], dir.path(), &[]);
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    let stderr = text(&out.stderr);
    // The path as the config names it (relative to the working directory here).
    for part in [
        "line 9, key `connections.main.password_file`",
        "mode 0644",
        "run `chmod 600 pw`",
    ] {
        assert!(stderr.contains(part), "{part}: {stderr}");
    }
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let out = agent(&["validate", "--config", "agent.toml"], dir.path(), &[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}
