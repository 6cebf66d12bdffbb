//! A MySQL/MariaDB connection's driver options, from its settings (plain
//! values parsed at start: [`crate::config::mysql`]): login, database, TCP
//! or Unix socket, TLS and the pool's bounds. The password is passed in, read
//! by the caller each time a pool is built, so a rotated one is picked up.

use std::time::Duration;

use mysql_async::{Opts, OptsBuilder, PoolConstraints, PoolOpts, SslOpts};

pub use crate::config::mysql::{DbTls, DumpSettings, Endpoint, MysqlConnection, Password, Verify};

/// How long a connection a job gave back stays open for the next job. With
/// mysql_async's default (0) and no minimum, the pool closed every returned
/// connection, so each job paid a new login. A returned connection is reset
/// first (`COM_RESET_CONNECTION`: session variables, `SET SESSION` settings,
/// temporary tables, user variables and locks go), so nothing of one job
/// reaches the next.
pub const IDLE_KEEP: Duration = Duration::from_secs(60);

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
        .pool_opts(
            PoolOpts::default()
                .with_constraints(constraints)
                .with_inactive_connection_ttl(IDLE_KEEP)
                .with_reset_connection(true),
        );
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
