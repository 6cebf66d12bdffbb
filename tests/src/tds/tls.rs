//! TDS 8.0 strict mode: TLS (ALPN `tds/8.0`) wraps the TCP stream before the
//! PRELOGIN.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

pub(crate) const ALPN_TDS_80: &[u8] = b"tds/8.0";

/// A TLS acceptor for a PEM certificate chain and key.
pub(crate) fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor> {
    let chain = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing {}", cert.display()))?;
    let key =
        PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![ALPN_TDS_80.to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Complete the handshake; the client must have negotiated `tds/8.0`.
pub(crate) async fn accept(acceptor: &TlsAcceptor, tcp: TcpStream) -> Result<TlsStream<TcpStream>> {
    let stream = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp))
        .await
        .context("TLS handshake timed out")?
        .context("TLS handshake")?;
    let alpn = stream.get_ref().1.alpn_protocol();
    ensure!(
        alpn == Some(ALPN_TDS_80),
        "client did not negotiate ALPN tds/8.0 (got {alpn:?})"
    );
    Ok(stream)
}
