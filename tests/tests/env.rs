//! Each program reads only its own environment variables (the tables in
//! `baton_proto::env`): `--help` lists them, and the other programs' names
//! (set in the same shell, as on a host running all three) change nothing.

use std::collections::BTreeSet;
use std::process::{Command, Output};

use baton_proto::env::{AGENT, BATONCTL, CONTROLLER, EnvVar};
use baton_tests::cluster::Cluster;
use baton_tests::proc::bin;

/// A clean environment (PATH only) plus `vars`.
fn run(name: &str, args: &[&str], vars: &[(&str, &str)]) -> Output {
    Command::new(bin(name).expect("bin"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(vars.iter().copied())
        .output()
        .expect("run")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The `BATON_*` words of a text.
fn baton_words(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_uppercase() || c == '_'))
        .filter(|w| w.starts_with("BATON_") && w.len() > "BATON_".len())
        .map(str::to_owned)
        .collect()
}

fn names(vars: &[EnvVar]) -> BTreeSet<String> {
    vars.iter().map(|v| v.name.to_owned()).collect()
}

#[test]
fn each_help_lists_exactly_its_own_variables() {
    for (name, own) in [
        ("baton-agent", AGENT),
        ("baton-controller", CONTROLLER),
        ("batonctl", BATONCTL),
    ] {
        let out = run(name, &["--help"], &[]);
        assert_eq!(out.status.code(), Some(0), "{name}: {out:?}");
        let help = text(&out.stdout);
        assert_eq!(baton_words(&help), names(own), "{name}:\n{help}");
    }
}

/// Everything the agent and the controller read, old names included, set to
/// values that would break batonctl if it read them.
fn daemon_vars() -> Vec<(&'static str, &'static str)> {
    let mut vars: Vec<_> = AGENT
        .iter()
        .chain(CONTROLLER)
        .map(|v| (v.name, "/nonexistent/not a value"))
        .collect();
    for old in [
        "BATON_CONFIG",
        "BATON_LISTEN",
        "BATON_STATE_DIR",
        "BATON_LOG",
        "BATON_ENROLLMENT_TOKEN_FILE",
    ] {
        vars.push((old, "/nonexistent/not a value"));
    }
    vars
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batonctl_with_the_daemons_variables_behaves_as_without_them() {
    let c = Cluster::start(0).await.expect("cluster");
    let url = c.controller.url();
    let mut own = vec![
        ("BATON_URL", url.as_str()),
        ("BATON_TOKEN", c.controller.admin_token.as_str()),
    ];
    let ca = c.controller.ca.as_ref().map(|p| p.display().to_string());
    if let Some(ca) = &ca {
        own.push(("BATON_CA_FILE", ca.as_str()));
    }
    let noisy: Vec<_> = own.iter().copied().chain(daemon_vars()).collect();
    for args in [&["whoami"][..], &["-o", "json", "list"], &["health"]] {
        let plain = run("batonctl", args, &own);
        assert_eq!(plain.status.code(), Some(0), "{args:?}: {plain:?}");
        let with = run("batonctl", args, &noisy);
        assert_eq!(
            with.status.code(),
            plain.status.code(),
            "{args:?}: {with:?}"
        );
        assert_eq!(text(&with.stdout), text(&plain.stdout), "{args:?}");
        assert_eq!(text(&with.stderr), text(&plain.stderr), "{args:?}");
    }
    // Without its own token, the agent's enrollment token is not taken for it.
    let out = run("batonctl", &["whoami"], &noisy[..1]);
    let out_noisy = run(
        "batonctl",
        &["whoami"],
        &[noisy[0], ("BATON_AGENT_ENROLLMENT_TOKEN", "baton_enr_x")],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(out_noisy.status.code(), Some(2), "{out_noisy:?}");
    assert_eq!(text(&out_noisy.stderr), text(&out.stderr));
}

#[test]
fn the_controller_ignores_batonctl_and_agent_variables_and_warns_on_its_old_names() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = dir.path().join("controller.toml");
    std::fs::write(
        &cfg,
        format!(
            "allow_plain_http = true\nlisten = \"127.0.0.1:18420\"\nstate_dir = \"{}\"\n",
            dir.path().join("state").display()
        ),
    )
    .expect("write");
    let args = ["--config", cfg.to_str().expect("utf8"), "validate"];
    let plain = run("baton-controller", &args, &[]);
    assert_eq!(plain.status.code(), Some(0), "{plain:?}");
    let mut others: Vec<_> = AGENT
        .iter()
        .chain(BATONCTL)
        .map(|v| (v.name, "/nonexistent/not a value"))
        .collect();
    others.push(("BATON_TOKEN_FILE", "/nonexistent"));
    let out = run("baton-controller", &args, &others);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(text(&out.stdout), text(&plain.stdout));
    assert_eq!(text(&out.stderr), text(&plain.stderr));

    // An old config name: not applied; the error that follows comes after
    // the warning naming the new one.
    let cfg_s = cfg.to_str().expect("utf8");
    let out = run(
        "baton-controller",
        &["validate"],
        &[("BATON_CONFIG", cfg_s)],
    );
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("BATON_CONFIG is no longer read")
            && stderr.contains("BATON_CONTROLLER_CONFIG"),
        "{stderr}"
    );
    let out = run(
        "baton-controller",
        &["validate"],
        &[("BATON_CONTROLLER_CONFIG", cfg_s)],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    // An old name of its own: not applied, one warning naming the new one.
    let out = run(
        "baton-controller",
        &args,
        &[("BATON_LISTEN", "127.0.0.1:1")],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(text(&out.stdout), text(&plain.stdout));
    let stderr = text(&out.stderr);
    assert_eq!(
        stderr.matches("BATON_CONTROLLER_LISTEN").count(),
        1,
        "{stderr}"
    );
}

#[test]
fn the_readme_has_a_row_for_every_variable() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    for v in AGENT.iter().chain(CONTROLLER).chain(BATONCTL) {
        assert!(
            readme.contains(&format!("| `{}` |", v.name)),
            "README.md has no table row for {}",
            v.name
        );
    }
}
