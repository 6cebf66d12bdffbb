//! A throwaway PKI for TLS tests and the demo: a CA, a server certificate for
//! 127.0.0.1/localhost, a client CA with one client certificate, and an
//! unrelated CA (for "wrong CA" tests). Files are PEM, keys 0600.

use std::path::{Path, PathBuf};

use anyhow::Result;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// Paths of the generated files.
#[derive(Debug, Clone)]
pub struct Pki {
    /// CA that signed the server certificate (agents and batonctl pin it).
    pub ca: PathBuf,
    /// Server certificate chain.
    pub server_cert: PathBuf,
    /// Server key.
    pub server_key: PathBuf,
    /// CA that signs client certificates (the controller's `client_ca_file`).
    pub client_ca: PathBuf,
    /// A client certificate signed by `client_ca`.
    pub client_cert: PathBuf,
    /// Its key.
    pub client_key: PathBuf,
    /// A CA unrelated to everything above.
    pub other_ca: PathBuf,
}

fn write(path: &Path, text: &str, private: bool) -> Result<()> {
    std::fs::write(path, text)?;
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    #[cfg(not(unix))]
    let _ = private;
    Ok(())
}

fn new_ca(name: &str) -> Result<(String, Issuer<'static, KeyPair>)> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate()?;
    let cert = p.self_signed(&key)?;
    Ok((cert.pem(), Issuer::new(p, key)))
}

fn leaf(
    issuer: &Issuer<'_, KeyPair>,
    cn: &str,
    sans: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> Result<(String, String)> {
    let mut p = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
    p.distinguished_name.push(DnType::CommonName, cn);
    p.extended_key_usages = vec![usage];
    let key = KeyPair::generate()?;
    let cert = p.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

impl Pki {
    /// Generate everything into `dir`.
    pub fn generate(dir: &Path) -> Result<Pki> {
        std::fs::create_dir_all(dir)?;
        let (ca_pem, ca) = new_ca("Baton test CA")?;
        let (server_pem, server_key) = leaf(
            &ca,
            "baton-controller",
            &["127.0.0.1", "localhost"],
            ExtendedKeyUsagePurpose::ServerAuth,
        )?;
        let (client_ca_pem, client_ca) = new_ca("Baton agents CA")?;
        let (client_pem, client_key) = leaf(
            &client_ca,
            "baton-agent",
            &["baton-agent"],
            ExtendedKeyUsagePurpose::ClientAuth,
        )?;
        let (other_pem, _) = new_ca("Some other CA")?;
        let pki = Pki {
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            client_ca: dir.join("client-ca.pem"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
            other_ca: dir.join("other-ca.pem"),
        };
        write(&pki.ca, &ca_pem, false)?;
        write(&pki.server_cert, &server_pem, false)?;
        write(&pki.server_key, &server_key, true)?;
        write(&pki.client_ca, &client_ca_pem, false)?;
        write(&pki.client_cert, &client_pem, false)?;
        write(&pki.client_key, &client_key, true)?;
        write(&pki.other_ca, &other_pem, false)?;
        Ok(pki)
    }

    /// The controller's `[tls]` section; `mtls` adds the client CA and requires agent certificates.
    pub fn controller_toml(&self, mtls: bool) -> String {
        let mut s = format!(
            "[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            self.server_cert.display(),
            self.server_key.display()
        );
        if mtls {
            s.push_str(&format!(
                "client_ca_file = \"{}\"\nrequire_agent_client_cert = true\n",
                self.client_ca.display()
            ));
        }
        s
    }

    /// The agent's `[tls]` section; `client` adds the client certificate.
    pub fn agent_toml(&self, client: bool) -> String {
        let mut s = format!("[tls]\nca_file = \"{}\"\n", self.ca.display());
        if client {
            s.push_str(&format!(
                "client_cert_file = \"{}\"\nclient_key_file = \"{}\"\n",
                self.client_cert.display(),
                self.client_key.display()
            ));
        }
        s
    }
}

/// Certificates for a TLS database server (PostgreSQL's `ssl = on`): a CA,
/// a server certificate for 127.0.0.1/localhost, one from the same CA for
/// another name only (hostname verification must refuse it), and an
/// unrelated CA (a wrong pin). Files are PEM, keys 0600.
#[derive(Debug, Clone)]
pub struct DbPki {
    /// The CA the client pins (`[store] ca_file`).
    pub ca: PathBuf,
    /// Server certificate for 127.0.0.1 and localhost, signed by `ca`.
    pub server_cert: PathBuf,
    /// Its key.
    pub server_key: PathBuf,
    /// Signed by `ca`, but for `db.other.invalid` only.
    pub wrong_name_cert: PathBuf,
    /// Its key.
    pub wrong_name_key: PathBuf,
    /// A CA unrelated to the server's.
    pub other_ca: PathBuf,
}

impl DbPki {
    /// Generate everything into `dir`.
    pub fn generate(dir: &Path) -> Result<DbPki> {
        std::fs::create_dir_all(dir)?;
        let (ca_pem, ca) = new_ca("Baton test database CA")?;
        let server = ExtendedKeyUsagePurpose::ServerAuth;
        let (cert, key) = leaf(&ca, "baton-db", &["127.0.0.1", "localhost"], server.clone())?;
        let (wrong, wrong_key) = leaf(&ca, "db.other.invalid", &["db.other.invalid"], server)?;
        let (other_pem, _) = new_ca("Some other database CA")?;
        let p = DbPki {
            ca: dir.join("db-ca.pem"),
            server_cert: dir.join("db-server.pem"),
            server_key: dir.join("db-server.key"),
            wrong_name_cert: dir.join("db-wrong-name.pem"),
            wrong_name_key: dir.join("db-wrong-name.key"),
            other_ca: dir.join("db-other-ca.pem"),
        };
        write(&p.ca, &ca_pem, false)?;
        write(&p.server_cert, &cert, false)?;
        write(&p.server_key, &key, true)?;
        write(&p.wrong_name_cert, &wrong, false)?;
        write(&p.wrong_name_key, &wrong_key, true)?;
        write(&p.other_ca, &other_pem, false)?;
        Ok(p)
    }
}
