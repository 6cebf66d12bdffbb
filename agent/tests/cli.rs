//! The `baton-agent` binary's command line: `validate`, exit codes, `--version`.

use std::path::Path;
use std::process::{Command, Output};

fn agent(args: &[&str], dir: &Path, env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_baton-agent"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .current_dir(dir)
        .output()
        .expect("run baton-agent")
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("token"), "t0ken\n").expect("token");
    std::fs::write(
        dir.path().join("agent.toml"),
        "agent_id = \"a1\"\ntoken_file = \"token\"\nstate_dir = \"state\"\ngroups = [\"db\"]\n",
    )
    .expect("config");
    dir
}

#[test]
fn validate_prints_a_summary_and_creates_nothing() {
    let dir = setup();
    let out = agent(&["validate", "--config", "agent.toml"], dir.path(), &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(stdout.starts_with("Config OK: agent_id=a1 "), "{stdout}");
    assert!(stdout.contains("groups=[db]"), "{stdout}");
    assert!(!stdout.contains("t0ken") && !String::from_utf8_lossy(&out.stderr).contains("t0ken"));
    assert!(!dir.path().join("state").exists());
}

#[test]
fn config_errors_exit_78_naming_file_key_and_line() {
    let dir = setup();
    let path = dir.path().join("agent.toml");
    let text = std::fs::read_to_string(&path).expect("read") + "slots = 1000\n";
    std::fs::write(&path, text).expect("write");
    let out = agent(&["validate"], dir.path(), &[("BATON_CONFIG", "agent.toml")]);
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("agent.toml, line 5, key `slots`"),
        "{stderr}"
    );

    // The same mistake from the environment names the variable.
    let dir = setup();
    let out = agent(
        &["validate", "--config", "agent.toml"],
        dir.path(),
        &[("BATON_GROUPS", "bad group")],
    );
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("environment variable BATON_GROUPS"),
        "{stderr}"
    );

    // `run` fails the same way before doing anything.
    let out = agent(&["--slots", "x", "--config", "agent.toml"], dir.path(), &[]);
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("flag --slots"));
}

#[test]
fn version_flag() {
    let dir = setup();
    let out = agent(&["--version"], dir.path(), &[]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("baton-agent {}", env!("CARGO_PKG_VERSION"))
    );
}
