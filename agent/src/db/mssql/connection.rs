//! Opening a SQL Server session for a `kind = "mssql"` connection (its
//! settings: [`crate::config::mssql`]): the tiberius configuration (the
//! password is read at each connect, so a rotated one is picked up), TCP or
//! the SQL Browser for a named instance, TLS, the login, all within
//! `connect_timeout`; and whether a failed connect may be retried.

use std::time::Duration;

pub use crate::config::mssql::{
    BackupSettings, Encrypt, MssqlConnection, MssqlEndpoint, ServerTrust,
};

impl MssqlConnection {
    /// The tiberius client configuration; reads the password now (so a
    /// rotated password is picked up by the next connection).
    pub fn tiberius_config(&self) -> Result<tiberius::Config, String> {
        let password = self.password.read()?;
        let mut c = tiberius::Config::new();
        c.host(&self.host);
        match &self.endpoint {
            MssqlEndpoint::Port(p) => c.port(*p),
            MssqlEndpoint::Instance { name, browser_port } => {
                // With an instance, tiberius sends the SQL Browser query to
                // this port and connects to the port it answers.
                c.port(*browser_port);
                c.instance_name(name);
            }
        }
        if let Some(d) = &self.database {
            c.database(d);
        }
        c.application_name("baton-agent");
        c.authentication(tiberius::AuthMethod::sql_server(
            &self.user,
            password.expose(),
        ));
        c.encryption(match self.encrypt {
            Encrypt::Strict => tiberius::EncryptionLevel::Strict,
            Encrypt::Required => tiberius::EncryptionLevel::Required,
            Encrypt::Off => tiberius::EncryptionLevel::NotSupported,
        });
        match &self.trust {
            Some(ServerTrust::CaFile(ca)) => c.trust_cert_ca(ca.display()),
            Some(ServerTrust::TrustAny) => c.trust_cert(),
            None => {}
        }
        c.command_timeout(self.command_timeout);
        Ok(c)
    }
}

/// A client connected to SQL Server over TCP.
pub type MssqlClient = tiberius::Client<tokio_util::compat::Compat<tokio::net::TcpStream>>;

impl MssqlConnection {
    /// Open a connection (TCP, then TLS as configured, then the SQL login),
    /// all within `connect_timeout`. A named instance's port is asked from
    /// the SQL Browser first.
    pub async fn connect(&self) -> Result<MssqlClient, ConnectError> {
        self.connect_with(self.command_timeout).await
    }

    /// [`MssqlConnection::connect`] with another per round-trip command
    /// timeout (`None`: no limit, for `BACKUP DATABASE`).
    pub async fn connect_with(
        &self,
        command_timeout: Option<Duration>,
    ) -> Result<MssqlClient, ConnectError> {
        use tiberius::SqlBrowser;
        use tokio_util::compat::TokioAsyncWriteCompatExt;
        let mut config = self.tiberius_config().map_err(ConnectError::Setup)?;
        config.command_timeout(command_timeout);
        let target = match &self.endpoint {
            MssqlEndpoint::Instance { name, browser_port } => format!(
                "instance {name} on {} (SQL Browser on UDP {browser_port})",
                self.host
            ),
            MssqlEndpoint::Port(_) => config.get_addr(),
        };
        let login = |source| ConnectError::Login {
            connection: self.name.clone(),
            target: target.clone(),
            source: Box::new(source),
        };
        let open = async {
            // Resolves a named instance through the SQL Browser first; with a
            // port it is a plain TCP connect.
            let tcp = tokio::net::TcpStream::connect_named(&config)
                .await
                .map_err(|source| ConnectError::Reach {
                    connection: self.name.clone(),
                    target: target.clone(),
                    source: Box::new(source),
                })?;
            tcp.set_nodelay(true).map_err(|e| login(e.into()))?;
            tiberius::Client::connect(config, tcp.compat_write())
                .await
                .map_err(login)
        };
        match tokio::time::timeout(self.connect_timeout, open).await {
            Ok(r) => r,
            Err(_) => Err(ConnectError::Timeout {
                connection: self.name.clone(),
                after: self.connect_timeout,
            }),
        }
    }
}

/// Why no session could be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The settings could not be used (the password file, say).
    #[error("{0}")]
    Setup(String),
    /// The server (or the SQL Browser) could not be reached.
    #[error("connection {connection:?}: cannot reach {target}: {source}")]
    Reach {
        /// Connection name.
        connection: String,
        /// Address or instance.
        target: String,
        /// Why.
        source: Box<tiberius::error::Error>,
    },
    /// TLS or the login failed.
    #[error("connection {connection:?}: cannot log in to SQL Server at {target}: {source}")]
    Login {
        /// Connection name.
        connection: String,
        /// Address or instance.
        target: String,
        /// Why.
        source: Box<tiberius::error::Error>,
    },
    /// No session within `connect_timeout`.
    #[error("connection {connection}: no session within {}", humantime::format_duration(*after))]
    Timeout {
        /// Connection name.
        connection: String,
        /// The timeout.
        after: Duration,
    },
}

impl ConnectError {
    /// Whether another attempt may help: network trouble, an unknown
    /// instance and timeouts may; the settings, a refused certificate and a
    /// refused login (18456, or 4060 for a database the login cannot open)
    /// will not until an operator acts.
    pub fn retryable(&self) -> bool {
        use tiberius::error::Error as T;
        match self {
            ConnectError::Setup(_) => false,
            ConnectError::Reach { .. } | ConnectError::Timeout { .. } => true,
            ConnectError::Login { source: e, .. } => match &**e {
                T::Io { .. } => true,
                T::Server(t) => !matches!(t.code(), 18456 | 4060 | 18452 | 18486 | 18487 | 18488),
                _ => false,
            },
        }
    }
}

#[cfg(test)]
mod tests;
