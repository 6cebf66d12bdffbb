//! `baton-agent validate` against a real MariaDB: it names each grant a
//! connection's login lacks for `dump --verify` (and `--routines`), and only
//! warns — also when the database cannot be reached.

use std::path::Path;
use std::process::Output;

use baton_tests::mariadb;
use baton_tests::proc::bin;

/// `baton-agent validate` with `connection` as the only extra table.
fn validate(dir: &Path, connection: &str) -> Output {
    let cfg = dir.join("agent.toml");
    let state = dir.join("state");
    std::fs::write(
        &cfg,
        format!(
            "agent_id = \"a1\"\nstate_dir = \"{}\"\ncontroller_url = \"http://127.0.0.1:9\"\n\n{connection}",
            state.display()
        ),
    )
    .expect("write");
    std::process::Command::new(bin("baton-agent").expect("bin"))
        .args(["--config", cfg.to_str().expect("path"), "validate"])
        .output()
        .expect("run")
}

fn lacks(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.contains(" lacks ")).collect()
}

#[test]
fn validate_names_each_missing_verify_grant_and_only_warns() {
    baton_tests::require_mariadb!();
    let mdb = mariadb::server_blocking().expect(mariadb::INSTALL_HINT);
    let db = mdb.create_database("grants").expect("database");
    let (user, password) = mdb
        .create_user(
            &db,
            &["SELECT", "SHOW VIEW", "TRIGGER", "EVENT", "LOCK TABLES"],
        )
        .expect("user");
    let dir = tempfile::tempdir().expect("tmp");
    let pw = dir.path().join("main.password");
    mariadb::write_password_file(&pw, &password).expect("password file");
    let conn = mdb.connection_toml("main", &db, &user, &pw);

    // A least-privilege dump login: the three grants are named, exit 0.
    let out = validate(dir.path(), &conn);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{err}");
    let lines = lacks(&err);
    assert_eq!(lines.len(), 3, "{err}");
    for (line, grant) in lines.iter().zip([
        "ALL ON `baton\\_verify\\_%`.*",
        "SET USER ON *.*",
        "SELECT ON mysql.proc",
    ]) {
        assert!(
            line.starts_with("warning: connection main: login "),
            "{line}"
        );
        assert!(
            line.contains(&user) && line.contains(grant),
            "{grant}: {line}"
        );
    }

    // Granted one by one: each warning goes when its grant is there.
    mdb.grant(&user, &["ALL"], "`baton\\_verify\\_%`.*")
        .expect("grant");
    let err = String::from_utf8_lossy(&validate(dir.path(), &conn).stderr).into_owned();
    assert_eq!(lacks(&err).len(), 2, "{err}");
    assert!(!err.contains("baton\\_verify"), "{err}");
    mdb.grant(&user, &["SET USER"], "*.*").expect("grant");
    mdb.grant(&user, &["SELECT"], "mysql.proc").expect("grant");
    let out = validate(dir.path(), &conn);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(lacks(&err), Vec::<&str>::new(), "{err}");
    assert!(!err.contains("cannot check"), "{err}");

    // A database that is down: a warning that says so, still exit 0.
    let down = conn.replace(&format!("port = {}", mdb.port()), "port = 9");
    assert_ne!(down, conn);
    let out = validate(dir.path(), &down);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("warning: connection main: cannot check the grants dumps need")
            && err.contains("does not fail validate"),
        "{err}"
    );
}
