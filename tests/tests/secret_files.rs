//! Secret files open to group or others are refused by the real binaries,
//! naming the file, the setting, the mode and the fix: the controller's TLS
//! key (exit 78) and batonctl's token file (exit 2). The agent's are covered
//! by `agent/tests/cli.rs` and its config tests.
#![cfg(unix)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use baton_tests::pki::Pki;
use baton_tests::proc::bin;

fn run(name: &str, args: &[&str]) -> Output {
    Command::new(bin(name).expect("bin"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .expect("run")
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn the_controller_refuses_a_tls_key_others_can_read() {
    let dir = tempfile::tempdir().expect("tmp");
    let pki = Pki::generate(dir.path()).expect("pki");
    let cfg = dir.path().join("controller.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:0\"\nstate_dir = \"{}\"\n[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            dir.path().join("state").display(),
            pki.server_cert.display(),
            pki.server_key.display()
        ),
    )
    .expect("config");
    let args = ["--config", cfg.to_str().expect("utf8"), "validate"];
    for ok in [0o600, 0o400] {
        chmod(&pki.server_key, ok);
        let out = run("baton-controller", &args);
        assert_eq!(out.status.code(), Some(0), "{ok:o}: {out:?}");
    }
    for bad in [0o640, 0o644, 0o604] {
        chmod(&pki.server_key, bad);
        let out = run("baton-controller", &args);
        assert_eq!(out.status.code(), Some(78), "{bad:o}: {out:?}");
        let stderr = text(&out.stderr);
        let key = pki.server_key.display();
        for part in [
            format!("{}, line 5, key `tls.key_file`", cfg.display()),
            format!("mode {bad:04o}"),
            format!("chmod 600 {key}"),
        ] {
            assert!(stderr.contains(&part), "{part}: {stderr}");
        }
    }
}

#[test]
fn batonctl_refuses_a_token_file_others_can_read() {
    let dir = tempfile::tempdir().expect("tmp");
    let token = dir.path().join("operator.token");
    std::fs::write(&token, "baton_op_not-a-real-token\n").expect("token");
    chmod(&token, 0o644);
    let path = token.to_str().expect("utf8");
    // No controller is needed: the file is refused before any request.
    let out = run(
        "batonctl",
        &[
            "--url",
            "http://127.0.0.1:9",
            "--token-file",
            path,
            "whoami",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = text(&out.stderr);
    for part in ["mode 0644", &format!("chmod 600 {path}")] {
        assert!(stderr.contains(part), "{part}: {stderr}");
    }
    assert!(!stderr.contains("not-a-real-token"), "{stderr}");
    // Private: the file passes and batonctl goes on to the (absent) controller.
    chmod(&token, 0o600);
    let out = run(
        "batonctl",
        &[
            "--url",
            "http://127.0.0.1:9",
            "--token-file",
            path,
            "whoami",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(!text(&out.stderr).contains("mode 0"), "{out:?}");
}
