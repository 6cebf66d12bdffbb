use std::collections::BTreeMap;
use std::path::PathBuf;

use super::*;
use crate::config::connection::Error;

fn settings(src: &str) -> BTreeMap<String, toml::Value> {
    toml::from_str::<toml::Table>(src)
        .expect("toml")
        .into_iter()
        .collect()
}

fn parse(src: &str) -> Result<MssqlConnection, Error> {
    MssqlConnection::parse("s", &settings(src), None)
}

#[test]
fn strict_with_ca_file_and_password_file() {
    let dir = tempfile::tempdir().expect("tmp");
    crate::secret::tests::write_secret(&dir.path().join("pw"), "s3cret\n");
    std::fs::write(dir.path().join("ca.pem"), "x").expect("write");
    let c = MssqlConnection::parse(
            "main",
            &settings(
                "host = \"sql1\"\nuser = \"baton\"\npassword_file = \"pw\"\ndatabase = \"app\"\nencrypt = \"strict\"\nca_file = \"ca.pem\"\nconnect_timeout = \"5s\"\ncommand_timeout = \"2m\"\n",
            ),
            Some(dir.path()),
        )
        .expect("parse");
    assert_eq!(c.host, "sql1");
    assert_eq!(c.endpoint, MssqlEndpoint::Port(1433));
    assert_eq!(c.database.as_deref(), Some("app"));
    assert_eq!(c.encrypt, Encrypt::Strict);
    assert_eq!(
        c.trust,
        Some(ServerTrust::CaFile(dir.path().join("ca.pem")))
    );
    assert_eq!(c.password.read().expect("read").expose(), "s3cret");
    assert_eq!(c.connect_timeout, Duration::from_secs(5));
    assert_eq!(c.command_timeout, Some(Duration::from_secs(120)));
    let t = c.tiberius_config().expect("tiberius config");
    assert_eq!(t.get_addr(), "sql1:1433");
    assert_eq!(t.get_command_timeout(), Some(Duration::from_secs(120)));
}

#[test]
fn defaults_instance_off_and_trust() {
    let c = parse("host = \"h\"\nuser = \"u\"\npassword_env = \"PATH\"\nencrypt = \"off\"\nport = 14330\ncommand_timeout = \"0s\"\n")
            .expect("off");
    assert_eq!(c.endpoint, MssqlEndpoint::Port(14330));
    assert_eq!(c.encrypt, Encrypt::Off);
    assert_eq!(c.trust, None);
    assert_eq!(c.connect_timeout, Duration::from_secs(10));
    assert_eq!(c.command_timeout, None);
    assert_eq!(
        c.tiberius_config().expect("config").get_command_timeout(),
        None
    );
    let c = parse("host = \"h\"\ninstance = \"SQLEXPRESS\"\nuser = \"u\"\npassword_env = \"PATH\"\ntrust_server_certificate = true\n")
            .expect("instance");
    assert_eq!(
        c.endpoint,
        MssqlEndpoint::Instance {
            name: "SQLEXPRESS".into(),
            browser_port: 1434
        }
    );
    assert_eq!(c.encrypt, Encrypt::Required);
    assert_eq!(c.trust, Some(ServerTrust::TrustAny));
    assert_eq!(c.command_timeout, Some(Duration::from_secs(30)));
}

#[test]
fn errors_name_the_key() {
    let cases = [
        (
            "user = \"u\"\npassword_env = \"PATH\"\nencrypt = \"off\"\n",
            "host",
        ),
        (
            "host = \"h\"\nport = 1\ninstance = \"A\"\nuser = \"u\"\npassword_env = \"PATH\"\nencrypt = \"off\"\n",
            "instance",
        ),
        (
            "host = \"h\"\ninstance = \"a;b\"\nuser = \"u\"\npassword_env = \"PATH\"\nencrypt = \"off\"\n",
            "instance",
        ),
        (
            "host = \"h\"\nuser = \"u\"\npassword = \"inline\"\n",
            "password",
        ),
        (
            "host = \"h\"\nuser = \"u\"\nencrypt = \"off\"\n",
            "password_file",
        ),
        (
            "host = \"h\"\nuser = \"u\"\npassword_env = \"BATON_SURELY_UNSET_VAR\"\nencrypt = \"off\"\n",
            "password_env",
        ),
        (
            "host = \"h\"\nuser = \"u\"\npassword_env = \"PATH\"\n",
            "ca_file",
        ),
        (
            "host = \"h\"\nuser = \"u\"\npassword_env = \"PATH\"\nencrypt = \"maybe\"\n",
            "encrypt",
        ),
        (
            "host = \"h\"\nuser = \"u\"\npassword_env = \"PATH\"\nencrypt = \"off\"\ntrust_server_certificate = true\n",
            "trust_server_certificate",
        ),
        (
            "host = \"h\"\nuser = \"u\"\npassword_env = \"PATH\"\nca_file = \"/surely/missing.pem\"\n",
            "ca_file",
        ),
        (
            "host = \"h\"\nuser = \"u\"\npassword_env = \"PATH\"\nencrypt = \"off\"\ncommand_timeout = \"soon\"\n",
            "command_timeout",
        ),
        (
            "host = \"h\"\nuser = \"u\"\npassword_env = \"PATH\"\nencrypt = \"off\"\ndatabase = \"a b\"\n",
            "database",
        ),
    ];
    for (src, key) in cases {
        let e = parse(src).expect_err(src);
        assert_eq!(e.key, format!("connections.s.{key}"), "{src}: {e}");
    }
}

#[test]
fn backup_keys_are_parsed_and_checked() {
    const BASE: &str = "host = \"h\"\nuser = \"u\"\npassword_env = \"PATH\"\nencrypt = \"off\"\n";
    let c = parse(BASE).expect("no backup keys");
    assert_eq!(c.backup, BackupSettings::default());
    assert_eq!(c.backup.dir, None);
    assert!(!c.backup.compression);
    let c = parse(&format!(
            "{BASE}backup_dir = \"/var/opt/mssql/backup\"\nbackup_compression = true\nkeep_last = 3\nmax_age = \"7days\"\n"
        ))
        .expect("backup keys");
    assert_eq!(
        c.backup,
        BackupSettings {
            dir: Some(PathBuf::from("/var/opt/mssql/backup")),
            compression: true,
            keep_last: Some(3),
            max_age: Some(Duration::from_secs(7 * 24 * 3600)),
        }
    );
    for (extra, key) in [
        ("backup_dir = \"backups\"\n", "backup_dir"),
        ("keep_last = 0\n", "keep_last"),
        ("max_age = \"a while\"\n", "max_age"),
        ("backup_compression = \"yes\"\n", "backup_compression"),
    ] {
        let e = parse(&format!("{BASE}{extra}")).expect_err(extra);
        assert_eq!(e.key, format!("connections.s.{key}"), "{extra}: {e}");
    }
}
