//! Submit refuses what no agent can run (issue 16, points 1 and 8): real
//! controller, a real agent advertising a MySQL connection `main` (its
//! server need not exist: only the advertisement matters), and batonctl.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use baton_proto::JobState;
use baton_tests::cluster::Cluster;
use baton_tests::proc::bin;

fn ctl_cmd(url: &str, token: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin("batonctl").expect("bin"));
    cmd.args(args)
        .env("BATON_URL", url)
        .env("BATON_TOKEN", token);
    cmd
}

fn ctl(url: &str, token: &str, args: &[&str]) -> Output {
    ctl_cmd(url, token, args).output().expect("run batonctl")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A cluster of one agent in group `default` advertising `main` (mysql);
/// the temp dir holds its password file.
async fn cluster() -> (Cluster, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let pw = dir.path().join("main.pw");
    write_secret(&pw);
    let c = Cluster::start_with(1, "", |o| {
        o.extra = format!(
            "[connections.main]\nkind = \"mysql\"\nhost = \"127.0.0.1\"\nport = 9\n\
             user = \"nobody\"\npassword_file = \"{}\"\ndatabase = \"shop\"\n",
            pw.display()
        );
    })
    .await
    .expect("cluster");
    c.wait_agents_online().await.expect("online");
    (c, dir)
}

fn write_secret(path: &std::path::Path) {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .expect("password file");
    std::io::Write::write_all(&mut f, b"secret\n").expect("write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submit_no_agent_can_run_is_refused_naming_what_exists() {
    let (c, _dir) = cluster().await;
    let (url, tok) = (c.controller.url(), c.controller.admin_token.clone());
    let sql = ["submit", "--kind", "sql", "--sql", "SELECT 1"];

    let mut args = sql.to_vec();
    args.extend(["--connection", "nosuch"]);
    let out = ctl(&url, &tok, &args);
    let err = text(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{}{err}", text(&out.stdout));
    assert!(err.contains("spec.connection"), "{err}");
    assert!(err.contains("main (mysql)"), "{err}");
    assert!(
        !text(&out.stdout).contains("Submitted"),
        "{}",
        text(&out.stdout)
    );

    let mut args = sql.to_vec();
    args.extend(["--connection", "main", "--group", "nosuch"]);
    let out = ctl(&url, &tok, &args);
    let err = text(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("group") && err.contains("default"), "{err}");

    // A three-part (SQL Server) name for a MySQL connection, a date that
    // does not exist: refused at submit, naming the field.
    let dir = tempfile::tempdir().expect("tempdir");
    for (procedure, value, field) in [
        (
            "shop.dbo.close_day",
            r#"{"type":"int","value":1}"#,
            "spec.procedure",
        ),
        (
            "close_day",
            r#"{"type":"date","value":"2026-13-45"}"#,
            "spec.params[0].value",
        ),
    ] {
        let path = dir.path().join("job.json");
        std::fs::write(
            &path,
            format!(
                r#"{{"group":"default","spec":{{"kind":"procedure","connection":"main",
                   "procedure":"{procedure}","params":[{{"name":"d","value":{value}}}]}}}}"#
            ),
        )
        .expect("job file");
        let out = ctl(&url, &tok, &["submit", "-f", path.to_str().expect("utf-8")]);
        let err = text(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{procedure}: {err}");
        assert!(err.contains(field), "{procedure}: {err}");
    }

    let mut args = sql.to_vec();
    args.extend(["--connection", "nosuch", "--allow-unplaced"]);
    let out = ctl(&url, &tok, &args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("Submitted job"),
        "{}",
        text(&out.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_prints_the_blocked_reason_then_the_outcome() {
    let (c, _dir) = cluster().await;
    let (url, tok) = (c.controller.url(), c.controller.admin_token.clone());
    let out = ctl(&url, &tok, &["agents", "drain", "agent-1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let mut child = ctl_cmd(
        &url,
        &tok,
        &["submit", "--kind", "noop", "--sleep", "10ms", "--wait"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn batonctl");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let blocked = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("a blocked line while the only agent is drained");
    assert!(
        blocked.starts_with("blocked: ") && blocked.contains("drained (agent-1)"),
        "{blocked}"
    );
    let out = ctl(&url, &tok, &["agents", "resume", "agent-1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let done = child.wait_with_output().expect("batonctl ends");
    reader.join().expect("reader");
    let rest: Vec<String> = rx.try_iter().collect();
    let stdout = text(&done.stdout);
    assert_eq!(done.status.code(), Some(0), "{stdout}{rest:?}");
    assert!(stdout.contains(JobState::Succeeded.as_str()), "{stdout}");
    // The reason was printed once: it did not change while drained.
    assert!(
        !rest.iter().any(|l| l.contains("drained")),
        "printed again: {rest:?}"
    );
}
