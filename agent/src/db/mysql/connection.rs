//! A MySQL/MariaDB connection's driver options, from its settings (plain
//! values parsed at start: [`crate::config::mysql`]): login, database, TCP
//! or Unix socket, TLS and the pool's bounds. The password is passed in, read
//! by the caller each time a pool is built, so a rotated one is picked up.

use std::time::Duration;

use mysql_async::{Opts, OptsBuilder, PoolConstraints, PoolOpts, SslOpts};

pub use crate::config::mysql::{DbTls, DumpSettings, Endpoint, MysqlConnection, Password, Verify};

/// Driver options for a connection.
pub fn opts(c: &MysqlConnection, password: &Password) -> Opts {
    let max = c.pool_size.max(1) + 1;
    let constraints = PoolConstraints::new(0, max).unwrap_or_default();
    let builder = OptsBuilder::default()
        .user(Some(c.user.clone()))
        .pass(Some(password.expose().to_owned()))
        .db_name(c.database.clone())
        .prefer_socket(false)
        .tcp_keepalive(Some(Duration::from_secs(60)))
        .pool_opts(PoolOpts::default().with_constraints(constraints));
    let builder = match &c.endpoint {
        Endpoint::Socket(path) => builder.socket(Some(path.to_string_lossy().into_owned())),
        Endpoint::Tcp { host, port } => {
            let builder = builder.ip_or_hostname(host.clone()).tcp_port(*port);
            match &c.tls {
                Some(tls) => {
                    let mut ssl = SslOpts::default();
                    if let Some(ca) = &tls.ca_file {
                        ssl = ssl
                            .with_root_certs(vec![ca.clone().into()])
                            .with_disable_built_in_roots(true);
                    }
                    if tls.verify == Verify::Ca {
                        ssl = ssl.with_danger_skip_domain_validation(true);
                    }
                    builder.ssl_opts(ssl)
                }
                None => builder,
            }
        }
    };
    builder.into()
}
