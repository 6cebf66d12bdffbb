//! The real tiberius client against a [`TdsServer`], as the TDS tests drive
//! it: a config for `127.0.0.1`, the TCP connect and login, and the small
//! reads and checks every such test repeats. Helpers that cannot go on panic
//! with what failed (they are test steps).
//!
//! Included by the test files that drive tiberius (`mod tds_common;`):
//! tiberius is a dev-dependency of this crate, so this cannot live in
//! `baton_tests::tds`.
use tiberius::error::{Error, TokenError};
use tiberius::{AuthMethod, Client, Command, CommandResult, Config, EncryptionLevel, Row};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

use baton_tests::tds::TdsServer;

/// A tiberius client over plain TCP.
pub type Conn = Client<Compat<TcpStream>>;

/// A config for `server` on `127.0.0.1` as SQL login `user`, with `level`.
pub fn config(server: &TdsServer, user: &str, password: &str, level: EncryptionLevel) -> Config {
    let mut c = Config::new();
    c.host("127.0.0.1");
    c.port(server.port());
    c.authentication(AuthMethod::sql_server(user, password));
    c.encryption(level);
    c
}

/// Connect (TCP without Nagle) and log in.
pub async fn connect(config: Config) -> tiberius::Result<Conn> {
    let tcp = TcpStream::connect(config.get_addr()).await?;
    tcp.set_nodelay(true)?;
    Client::connect(config, tcp.compat_write()).await
}

/// Run an RPC to its end.
pub async fn exec(client: &mut Conn, cmd: Command<'_>) -> tiberius::Result<CommandResult> {
    cmd.exec(client).await?.into_command_result().await
}

/// The ERROR token of a server error; panics on any other error.
pub fn server_error(e: Error) -> TokenError {
    match e {
        Error::Server(t) => t,
        other => panic!("expected a server error, got {other:?}"),
    }
}

/// The one row of `sql`; panics when the query fails or returns no row.
pub async fn one_row(client: &mut Conn, sql: &str) -> Row {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_row()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .unwrap_or_else(|| panic!("{sql}: no row"))
}
