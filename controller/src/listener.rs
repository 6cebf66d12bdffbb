//! Serving connections: HTTPS with rustls (optionally verifying client
//! certificates) or, when explicitly allowed, plain HTTP.
//!
//! Each request gets the peer address ([`PeerAddr`]) and whether its
//! connection presented a verified client certificate
//! ([`ClientCertVerified`]) in its extensions. On shutdown the listener stops
//! accepting and lets open connections finish their current request.
//!
//! Every agent holds one connection (its long-poll), so a large fleet needs a
//! descriptor per agent: [`raise_nofile_limit`] lifts the soft limit to the
//! hard one at start (systemd's default soft limit is 1024).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::config::TlsConfig;

/// The peer address of the connection a request came on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// Whether the connection presented a client certificate that verified
/// against the configured client CA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientCertVerified(pub bool);

/// TLS setup errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A PEM file cannot be read or holds nothing usable.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client CA cannot verify anything.
    #[error("client CA: {0}")]
    ClientCa(String),
}

fn pem_err(path: &std::path::Path, message: impl std::fmt::Display) -> Error {
    Error::Pem {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

/// Load certificates from a PEM file (at least one).
pub fn load_certs(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_err(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(path, e))?;
    if certs.is_empty() {
        return Err(pem_err(path, "no certificate in the file"));
    }
    Ok(certs)
}

/// Descriptors a fleet of 10,000 agents needs: one held poll each, plus the
/// store, operators and headroom.
pub const FLEET_DESCRIPTORS: u64 = 10_000 + 1024;

/// The open-file limit after [`raise_nofile_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NofileLimit {
    /// The soft limit before.
    pub before: u64,
    /// The soft limit now.
    pub soft: u64,
    /// The hard limit.
    pub hard: u64,
}

/// Raise the soft open-file limit to the hard one. `None` where there is no
/// such limit or it cannot be read.
#[cfg(unix)]
pub fn raise_nofile_limit() -> Option<NofileLimit> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (before, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    let mut soft = before;
    if before < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        soft = hard;
    }
    Some(NofileLimit { before, soft, hard })
}

/// Raise the soft open-file limit to the hard one (not on this platform).
#[cfg(not(unix))]
pub fn raise_nofile_limit() -> Option<NofileLimit> {
    None
}

/// Build the TLS acceptor from the config.
pub fn tls_acceptor(cfg: &TlsConfig) -> Result<TlsAcceptor, Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let certs = load_certs(&cfg.cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&cfg.key_file).map_err(|e| pem_err(&cfg.key_file, e))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let mut config = match &cfg.client_ca_file {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in load_certs(ca)? {
                roots.add(c).map_err(|e| pem_err(ca, e))?;
            }
            // Client certificates are optional at the TLS level (operators use
            // bearer tokens only); agent endpoints demand one when configured.
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| Error::ClientCa(e.to_string()))?;
            builder
                .with_client_cert_verifier(verifier)
                .with_single_cert(certs, key)?
        }
        None => builder.with_no_client_auth().with_single_cert(certs, key)?,
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serve `app` on `listener` until `shutdown`, then drain open connections
/// (at most `drain` long).
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    shutdown: CancellationToken,
    drain: Duration,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: do not spin.
                    tracing::warn!(error = %e, "Accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let watcher = graceful.watcher();
        // A held connection lives in a task whose future is the served
        // connection itself: a task that awaited it after the handshake
        // would carry both in its future (each agent's held poll paid
        // ~4 KiB more; see ARCHITECTURE.md "Memory per held poll").
        match &tls {
            None => {
                let conn = connection(TokioIo::new(stream), app.clone(), peer, false);
                tokio::spawn(watcher.watch(conn));
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let app = app.clone();
                tokio::spawn(async move {
                    if let Some((stream, client_cert)) = handshake(&acceptor, stream, peer).await {
                        let conn = connection(TokioIo::new(stream), app, peer, client_cert);
                        tokio::spawn(watcher.watch(conn));
                    }
                });
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("Connections still open after the drain period; closing them");
    }
}

/// The TLS handshake of an accepted connection (at most 10 s): the stream
/// and whether it presented a client certificate, or `None` when it failed.
async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
) -> Option<(tokio_rustls::server::TlsStream<TcpStream>, bool)> {
    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
        Ok(Ok(stream)) => {
            let client_cert = stream
                .get_ref()
                .1
                .peer_certificates()
                .is_some_and(|c| !c.is_empty());
            Some((stream, client_cert))
        }
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}

fn connection<I>(
    io: TokioIo<I>,
    app: Router,
    peer: SocketAddr,
    client_cert: bool,
) -> hyper::server::conn::http1::Connection<
    TokioIo<I>,
    impl hyper::service::Service<
        hyper::Request<hyper::body::Incoming>,
        Response = axum::response::Response,
        Error = std::convert::Infallible,
        Future = impl Future<Output = Result<axum::response::Response, std::convert::Infallible>> + Send,
    > + Send,
>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(PeerAddr(peer));
            req.extensions_mut().insert(ClientCertVerified(client_cert));
            app.clone().oneshot(req)
        });
    hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .serve_connection(io, service)
}
