//! TLS material read from PEM files: the CA bundle the controller's certificate
//! must chain to (`[tls] ca_file`), and the agent's client certificate and key
//! for mutual TLS (`client_cert_file`, `client_key_file`).
//!
//! Everything is loaded and checked when the config is validated (certificates
//! parse, the key parses and matches the certificate), so a mistake is reported
//! with the config key instead of at the first connection. The transport
//! hands the material to the HTTP client; this module knows no HTTP.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use rustls::RootCertStore;
use rustls::pki_types::pem::{self, SectionKind};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::secret::Secret;

/// Which file an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// `tls.ca_file`.
    Ca,
    /// `tls.client_cert_file`.
    ClientCert,
    /// `tls.client_key_file`.
    ClientKey,
}

impl Part {
    /// The config key of the file.
    pub fn key(self) -> &'static str {
        match self {
            Part::Ca => "tls.ca_file",
            Part::ClientCert => "tls.client_cert_file",
            Part::ClientKey => "tls.client_key_file",
        }
    }
}

/// A TLS file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct Error {
    /// Which file.
    pub part: Part,
    /// Its path.
    pub path: PathBuf,
    /// What is wrong (never the key material).
    pub message: String,
}

impl Error {
    fn new(part: Part, path: &Path, message: impl Into<String>) -> Self {
        Error {
            part,
            path: path.to_path_buf(),
            message: message.into(),
        }
    }
}

/// The CA certificates the controller's certificate must chain to (and nothing else).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaBundle {
    path: PathBuf,
    certs: Vec<CertificateDer<'static>>,
}

impl CaBundle {
    /// Read and check a PEM bundle of one or more CA certificates.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let sections = read_sections(Part::Ca, path)?;
        let mut certs = Vec::new();
        for (kind, der) in sections {
            if kind != SectionKind::Certificate {
                let msg = format!("holds a {kind:?} section; a CA file holds certificates only");
                return Err(Error::new(Part::Ca, path, msg));
            }
            certs.push(CertificateDer::from(der));
        }
        if certs.is_empty() {
            return Err(Error::new(Part::Ca, path, "no PEM certificate found"));
        }
        let mut store = RootCertStore::empty();
        for (i, cert) in certs.iter().enumerate() {
            store.add(cert.clone()).map_err(|e| {
                Error::new(
                    Part::Ca,
                    path,
                    format!("certificate {} cannot be a trust anchor: {e}", i + 1),
                )
            })?;
        }
        Ok(CaBundle {
            path: path.to_path_buf(),
            certs,
        })
    }

    /// The file it was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The certificates, DER encoded.
    pub fn certs_der(&self) -> impl Iterator<Item = &[u8]> {
        self.certs.iter().map(|c| c.as_ref())
    }
}

/// The agent's client certificate (with its chain) and private key, for mutual TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    cert_path: PathBuf,
    key_path: PathBuf,
    /// Certificate file, then key file, as PEM. Holds the private key.
    pem: Secret,
}

impl ClientIdentity {
    /// Read and check the certificate file and the key file, and that they belong together.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, Error> {
        let mut chain = Vec::new();
        for (kind, der) in read_sections(Part::ClientCert, cert_path)? {
            if kind != SectionKind::Certificate {
                let msg =
                    format!("holds a {kind:?} section; put the private key in tls.client_key_file");
                return Err(Error::new(Part::ClientCert, cert_path, msg));
            }
            chain.push(CertificateDer::from(der));
        }
        if chain.is_empty() {
            return Err(Error::new(
                Part::ClientCert,
                cert_path,
                "no PEM certificate found",
            ));
        }

        crate::secret::check_secret_file(key_path)
            .map_err(|m| Error::new(Part::ClientKey, key_path, m))?;
        let mut keys = Vec::new();
        for (kind, der) in read_sections(Part::ClientKey, key_path)? {
            let key = match kind {
                SectionKind::PrivateKey => PrivateKeyDer::Pkcs8(der.into()),
                SectionKind::RsaPrivateKey => PrivateKeyDer::Pkcs1(der.into()),
                SectionKind::EcPrivateKey => PrivateKeyDer::Sec1(der.into()),
                other => {
                    let msg =
                        format!("holds a {other:?} section; a key file holds one private key only");
                    return Err(Error::new(Part::ClientKey, key_path, msg));
                }
            };
            keys.push(key);
        }
        let key = match (keys.pop(), keys.is_empty()) {
            (Some(key), true) => key,
            (None, _) => {
                return Err(Error::new(
                    Part::ClientKey,
                    key_path,
                    "no PEM private key found",
                ));
            }
            (Some(_), false) => {
                return Err(Error::new(
                    Part::ClientKey,
                    key_path,
                    "holds more than one private key",
                ));
            }
        };
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        rustls::sign::CertifiedKey::from_der(chain, key, &provider).map_err(|e| {
            let msg = match e {
                rustls::Error::InconsistentKeys(_) => format!(
                    "the key does not belong to the certificate in {}",
                    cert_path.display()
                ),
                other => format!("unusable private key: {other}"),
            };
            Error::new(Part::ClientKey, key_path, msg)
        })?;

        let text = |part, path: &Path| -> Result<String, Error> {
            let bytes = std::fs::read(path).map_err(|e| Error::new(part, path, e.to_string()))?;
            String::from_utf8(bytes).map_err(|_| Error::new(part, path, "not a PEM text file"))
        };
        let mut pem = text(Part::ClientCert, cert_path)?;
        pem.push('\n');
        pem.push_str(&text(Part::ClientKey, key_path)?);
        Ok(ClientIdentity {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            pem: Secret::new(pem),
        })
    }

    /// The certificate file.
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// The key file.
    pub fn key_path(&self) -> &Path {
        &self.key_path
    }

    /// Certificate chain and private key as one PEM text (for the HTTP client only).
    pub fn pem(&self) -> &[u8] {
        self.pem.expose().as_bytes()
    }
}

/// `[tls]`: how the agent checks the controller, and how it proves itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// Pinned CA; `None` trusts the system's roots.
    pub ca: Option<CaBundle>,
    /// Client certificate for mutual TLS.
    pub client: Option<ClientIdentity>,
}

/// Every PEM section of a file (sections of unknown kinds are skipped).
fn read_sections(part: Part, path: &Path) -> Result<Vec<(SectionKind, Vec<u8>)>, Error> {
    let bytes =
        std::fs::read(path).map_err(|e| Error::new(part, path, format!("cannot read: {e}")))?;
    let mut reader: &[u8] = &bytes;
    let mut out = Vec::new();
    loop {
        let reader: &mut dyn BufRead = &mut reader;
        match pem::from_buf(reader) {
            Ok(Some(section)) => out.push(section),
            Ok(None) => return Ok(out),
            Err(e) => return Err(Error::new(part, path, format!("not valid PEM: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(all(test, unix))]
mod handshake_tests;
