use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use super::*;
use crate::config::mysql::{DbTls, DumpSettings, PasswordSource};

fn conn(endpoint: Endpoint, tls: Option<DbTls>) -> MysqlConnection {
    MysqlConnection {
        name: "main".into(),
        endpoint,
        user: "baton".into(),
        password: PasswordSource::Env("UNUSED".into()),
        database: None,
        pool_size: 1,
        connect_timeout: Duration::from_secs(1),
        tls,
        create_ledger: false,
        dump: DumpSettings::default(),
    }
}

fn password(dir: &Path, value: &str) -> Password {
    let p = dir.join("pw");
    std::fs::write(&p, format!("{value}\n")).expect("pw");
    PasswordSource::File(p).read().expect("read")
}

#[test]
fn values_are_quoted_with_option_file_escapes() {
    assert_eq!(quote_value("plain").expect("q"), "\"plain\"");
    assert_eq!(
        quote_value(" a\\b\"c#d'e;f\tg\nh\ri\u{8} ").expect("q"),
        "\" a\\\\b\\\"c#d'e;f\\tg\\nh\\ri\\b \""
    );
    assert_eq!(quote_value("ünï€").expect("q"), "\"ünï€\"");
    assert!(quote_value("a\0b").is_err());
}

#[test]
fn socket_connection_renders_without_tls() {
    let tmp = tempfile::tempdir().expect("tmp");
    let c = conn(Endpoint::Socket("/run/mysqld/mysqld.sock".into()), None);
    let text = render(&c, &password(tmp.path(), "p#ss \"w\"\\"), Flavor::MariaDb).expect("render");
    assert_eq!(
        text,
        "# Written by baton-agent for one dump job; removed when the job ends.\n\
         [client]\n\
         user=\"baton\"\n\
         password=\"p#ss \\\"w\\\"\\\\\"\n\
         socket=\"/run/mysqld/mysqld.sock\"\n\
         protocol=SOCKET\n"
    );
}

#[test]
fn tcp_connection_renders_tls_per_flavor() {
    let tmp = tempfile::tempdir().expect("tmp");
    let pw = password(tmp.path(), "x");
    let tcp = Endpoint::Tcp {
        host: "db.example".into(),
        port: 3307,
    };
    let full = DbTls {
        ca_file: Some("/etc/baton/ca.pem".into()),
        verify: Verify::Full,
    };
    let maria = render(&conn(tcp.clone(), Some(full.clone())), &pw, Flavor::MariaDb).expect("r");
    assert!(
        maria.contains("host=\"db.example\"\nport=3307\nprotocol=TCP\n"),
        "{maria}"
    );
    assert!(
        maria.contains("ssl-ca=\"/etc/baton/ca.pem\"\nssl\nssl-verify-server-cert\n"),
        "{maria}"
    );
    let mysql = render(&conn(tcp.clone(), Some(full)), &pw, Flavor::Mysql).expect("r");
    assert!(
        mysql.ends_with("ssl-ca=\"/etc/baton/ca.pem\"\nssl-mode=VERIFY_IDENTITY\n"),
        "{mysql}"
    );
    let ca_only = DbTls {
        ca_file: None,
        verify: Verify::Ca,
    };
    let mysql = render(
        &conn(tcp.clone(), Some(ca_only.clone())),
        &pw,
        Flavor::Mysql,
    )
    .expect("r");
    assert!(
        mysql.ends_with("protocol=TCP\nssl-mode=VERIFY_CA\n"),
        "{mysql}"
    );
    let maria = render(&conn(tcp, Some(ca_only)), &pw, Flavor::MariaDb).expect("r");
    assert!(maria.ends_with("protocol=TCP\nssl\n"), "{maria}");
}

#[test]
fn a_nul_in_the_password_is_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let c = conn(Endpoint::Socket("/s".into()), None);
    let e = render(&c, &password(tmp.path(), "a\0b"), Flavor::MariaDb).expect_err("nul");
    assert!(e.to_string().contains("password contains a NUL"), "{e}");
    assert!(!e.to_string().contains("a\0b"));
}

#[test]
fn defaults_file_is_0600_in_a_0700_dir_removed_on_drop() {
    let state = tempfile::tempdir().expect("tmp");
    let dir = PrivateDir::create(state.path(), "job1-abc").expect("dir");
    let path = dir
        .write_defaults("[client]\npassword=\"s\"\n")
        .expect("write");
    assert_eq!(path.parent(), Some(dir.path()));
    let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(dir.path()), 0o700);
    assert_eq!(mode(&state.path().join(TMP_DIR)), 0o700);
    assert!(dir.write_defaults("again").is_err(), "never overwrites");
    let kept = dir.path().to_path_buf();
    drop(dir);
    assert!(!kept.exists());
    assert!(!path.exists());
}

#[test]
fn leftover_private_dirs_are_removed() {
    let state = tempfile::tempdir().expect("tmp");
    let dir = PrivateDir::create(state.path(), "job7-dead").expect("dir");
    dir.write_defaults("[client]\n").expect("write");
    let path = dir.path().to_path_buf();
    std::mem::forget(dir); // as if the agent had been killed
    assert!(path.exists());
    remove_leftover_dirs(state.path());
    assert!(!path.exists());
    remove_leftover_dirs(&state.path().join("missing"));
}

#[test]
fn a_restart_removes_the_partial_its_killed_run_was_writing() {
    let state = tempfile::tempdir().expect("tmp");
    let dumps = tempfile::tempdir().expect("dumps");
    let partial = dumps.path().join("20261205T000000Z-job7.sql.zst.partial");
    let other = dumps.path().join("20261205T000000Z-job8.sql.zst.partial");
    std::fs::write(&partial, b"half a dump").expect("partial");
    std::fs::write(&other, b"another agent's").expect("other");
    let dir = PrivateDir::create(state.path(), "job7-dead").expect("dir");
    dir.note_partial(&partial).expect("note");
    std::mem::forget(dir); // as if the agent had been killed
    remove_leftover_dirs(state.path());
    assert!(!partial.exists());
    assert!(other.exists(), "only the partial this agent noted goes");
    // A note that names anything but a partial is ignored.
    let keep = dumps.path().join("important.sql.zst");
    std::fs::write(&keep, b"x").expect("keep");
    let dir = PrivateDir::create(state.path(), "job9-dead").expect("dir");
    dir.note_partial(&keep).expect("note");
    std::mem::forget(dir);
    remove_leftover_dirs(state.path());
    assert!(keep.exists());
}

fn script(path: &Path, body: &str) {
    crate::db::test_files::executable(path, &format!("#!/bin/sh\n{body}\n"));
}

#[tokio::test]
async fn tools_are_found_and_asked_for_their_version() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    std::fs::create_dir_all(&a).expect("a");
    std::fs::create_dir_all(&b).expect("b");
    let search = std::env::join_paths([&a, &b]).expect("join");
    assert!(find_tool(None, Some(&search)).is_err());
    script(
        &b.join("mysqldump"),
        "echo 'mysqldump  Ver 8.0.36 for Linux on x86_64 (MySQL Community Server - GPL)'",
    );
    assert_eq!(
        find_tool(None, Some(&search)).expect("found"),
        b.join("mysqldump")
    );
    script(
        &b.join("mariadb-dump"),
        "echo 'mariadb-dump  Ver 10.19 Distrib 10.11.6-MariaDB, for debian-linux-gnu (x86_64)'",
    );
    let tool = find_tool(None, Some(&search)).expect("found");
    assert_eq!(tool, b.join("mariadb-dump"), "mariadb-dump comes first");
    let not_exec = a.join("plain");
    std::fs::write(&not_exec, "").expect("plain");
    assert!(find_tool(Some(&not_exec), Some(&search)).is_err());
    assert_eq!(find_tool(Some(&tool), None).expect("configured"), tool);

    assert!(find_client(&tool, Some(&search)).is_err());
    script(&a.join("mysql"), "true");
    assert_eq!(
        find_client(&tool, Some(&search)).expect("path"),
        a.join("mysql")
    );
    script(&b.join("mariadb"), "true");
    assert_eq!(
        find_client(&tool, Some(&search)).expect("sibling"),
        b.join("mariadb")
    );

    let env = vec![("PATH".into(), search.clone())];
    let v = tool_version(&tool, &env).await.expect("version");
    assert!(v.starts_with("mariadb-dump  Ver 10.19"), "{v}");
    assert_eq!(Flavor::from_version(&v), Flavor::MariaDb);
    let v = tool_version(&b.join("mysqldump"), &env)
        .await
        .expect("version");
    assert_eq!(Flavor::from_version(&v), Flavor::Mysql);
    let broken = a.join("broken");
    script(&broken, "echo oops >&2; exit 3");
    let e = tool_version(&broken, &env).await.expect_err("fails");
    assert!(e.to_string().contains("oops"), "{e}");
}
