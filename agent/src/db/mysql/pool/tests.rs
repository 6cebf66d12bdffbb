//! Driver options and advertising, without a server.

use super::*;
use crate::config::mysql::{DbTls, DumpSettings, PasswordSource};

fn conn(endpoint: Endpoint, tls: Option<DbTls>) -> MysqlConnection {
    MysqlConnection {
        name: "main".into(),
        endpoint,
        user: "baton".into(),
        password: PasswordSource::Env("BATON_TEST_UNUSED".into()),
        database: Some("shop".into()),
        pool_size: 3,
        connect_timeout: Duration::from_secs(5),
        tls,
        create_ledger: true,
        dump: DumpSettings::default(),
    }
}

#[test]
fn socket_and_tls_options() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("pw");
    std::fs::write(&file, "pw\n").expect("write");
    let pw = PasswordSource::File(file).read().expect("read");
    let o = opts(&conn(Endpoint::Socket("/run/m.sock".into()), None), &pw);
    assert_eq!(o.socket(), Some("/run/m.sock"));
    assert_eq!(o.user(), Some("baton"));
    assert_eq!(o.pass(), Some("pw"));
    assert_eq!(o.db_name(), Some("shop"));
    assert_eq!(o.pool_opts().constraints().max(), 4);
    assert!(o.ssl_opts().is_none());

    let tls = DbTls {
        ca_file: Some("/etc/ca.pem".into()),
        verify: Verify::Ca,
    };
    let o = opts(
        &conn(
            Endpoint::Tcp {
                host: "db".into(),
                port: 3307,
            },
            Some(tls),
        ),
        &pw,
    );
    assert_eq!(o.ip_or_hostname(), "db");
    assert_eq!(o.tcp_port(), 3307);
    let ssl = o.ssl_opts().expect("tls");
    assert!(ssl.skip_domain_validation());
    assert!(ssl.disable_built_in_roots());
    assert!(!ssl.accept_invalid_certs());
    assert_eq!(ssl.root_certs().len(), 1);
}

#[test]
fn advertises_every_connection() {
    let pools = Pools::new([conn(Endpoint::Socket("/s".into()), None)]);
    assert_eq!(
        pools.advertised(),
        vec![ConnectionInfo {
            name: "main".into(),
            kind: "mysql".into()
        }]
    );
    assert!(pools.config("other").is_err());
}
