//! `baton-controller tls init`: a private CA, the controller's server
//! certificate and agents' client certificates, made with rcgen (ECDSA P-256)
//! and written into one directory.
//!
//! Files (names match the shipped `controller.toml`):
//! - `ca.pem` / `ca.key`: the CA (10 years). Agents and batonctl pin
//!   `ca.pem`; the controller verifies agent client certificates with it.
//!   An existing CA is reused (loaded from `ca.key`), never replaced: delete
//!   both files to start a new CA.
//! - `controller.pem` / `controller.key`: the server certificate for exactly
//!   the names and addresses of `--san` (2 years, serverAuth).
//! - `agent-NAME.pem` / `agent-NAME.key`: a client certificate per `--agent`
//!   (2 years, clientAuth, CN and DNS name = the agent name).
//!
//! Keys are created 0600 and certificates 0644 (the mode is set when the file
//! is created, before anything is written), the directory 0700 when it is
//! made. Existing files are refused unless `force`; every file is written to
//! a temporary name first and moved into place, so a refusal or a failure
//! leaves no half-written file. Every new certificate is verified against
//! `ca.pem` before it is written (a `ca.pem` that does not belong to
//! `ca.key` is reported, not papered over).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{Datelike as _, Months, NaiveDate};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

/// Years the CA is valid.
pub const CA_YEARS: u32 = 10;
/// Years a server or agent certificate is valid.
pub const LEAF_YEARS: u32 = 2;
/// Common name of the CA (fixed: a reused CA is rebuilt from its key and this name).
const CA_NAME: &str = "Baton CA";

/// What `tls init` could not do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A `--san` entry is neither an IP address nor a DNS name.
    #[error("--san: `{0}` is neither an IP address nor a DNS name")]
    San(String),
    /// An `--agent` name is not a valid agent name.
    #[error("--agent: `{0}` is not an agent name (1-128 of A-Z a-z 0-9 _ . -)")]
    AgentName(String),
    /// Neither `--san` nor `--agent` was given.
    #[error("nothing to make: give --san for the controller's certificate and/or --agent NAME")]
    Nothing,
    /// Files that would be overwritten without `--force`.
    #[error("{} already exist{}; pass --force to replace them (the CA is kept)", list(.0), if .0.len() == 1 { "s" } else { "" })]
    Exists(Vec<PathBuf>),
    /// Half a CA: the certificate without its key or the other way round.
    #[error(
        "{present} exists but {missing} does not: restore it, or remove {present} to make a new CA"
    )]
    HalfCa {
        /// The file that exists.
        present: String,
        /// The file that does not.
        missing: String,
    },
    /// The existing CA cannot be used.
    #[error("{}: {message}", path.display())]
    Ca {
        /// `ca.pem` or `ca.key`.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A file or the directory cannot be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// rcgen refused to make a key or a certificate.
    #[error("cannot make a certificate: {0}")]
    Make(#[from] rcgen::Error),
}

fn list(paths: &[PathBuf]) -> String {
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    names.join(", ")
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One subject alternative name of the server certificate.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum San {
    /// A DNS name.
    Dns(String),
    /// An IP address.
    Ip(IpAddr),
}

impl std::fmt::Display for San {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            San::Dns(d) => f.write_str(d),
            San::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// Parse `--san host,ip,...` (an IPv6 address may be written in brackets).
/// Duplicates are dropped; the order is kept otherwise.
pub fn parse_sans(list: &str) -> Result<Vec<San>, Error> {
    let mut out: Vec<San> = Vec::new();
    for raw in list.split(',') {
        let item = raw.trim();
        let bare = item
            .strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .unwrap_or(item);
        let san = if let Ok(ip) = bare.parse::<IpAddr>() {
            San::Ip(ip)
        } else {
            match ServerName::try_from(item) {
                Ok(ServerName::DnsName(d)) if !item.is_empty() => San::Dns(d.as_ref().to_owned()),
                _ => return Err(Error::San(item.to_owned())),
            }
        };
        if !out.contains(&san) {
            out.push(san);
        }
    }
    Ok(out)
}

/// What to make.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Where the files go (created 0700 if absent).
    pub dir: PathBuf,
    /// Names of the server certificate; empty: no server certificate.
    pub sans: Vec<San>,
    /// Agents to make client certificates for.
    pub agents: Vec<String>,
    /// Replace existing server and agent files.
    pub force: bool,
}

/// One file written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Its path.
    pub path: PathBuf,
    /// What it is, for the operator.
    pub what: String,
}

/// What `make` did.
#[derive(Debug, Clone)]
pub struct Made {
    /// The directory (absolute).
    pub dir: PathBuf,
    /// Whether an existing CA was reused.
    pub ca_reused: bool,
    /// The files written, in order.
    pub files: Vec<Written>,
}

/// Paths of the files in `dir`.
pub fn ca_cert_path(dir: &Path) -> PathBuf {
    dir.join("ca.pem")
}

fn ca_key_path(dir: &Path) -> PathBuf {
    dir.join("ca.key")
}

/// The server certificate's path in `dir`.
pub fn server_cert_path(dir: &Path) -> PathBuf {
    dir.join("controller.pem")
}

/// The server key's path in `dir`.
pub fn server_key_path(dir: &Path) -> PathBuf {
    dir.join("controller.key")
}

/// An agent's certificate path in `dir`.
pub fn agent_cert_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("agent-{name}.pem"))
}

/// An agent's key path in `dir`.
pub fn agent_key_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("agent-{name}.key"))
}

/// A file to write: path, text, private (0600) or not (0644), description.
struct Out {
    path: PathBuf,
    text: String,
    private: bool,
    what: String,
}

/// Make what `plan` asks for; `today` (UTC) starts the validity.
pub fn make(plan: &Plan, today: NaiveDate) -> Result<Made, Error> {
    if plan.sans.is_empty() && plan.agents.is_empty() {
        return Err(Error::Nothing);
    }
    for name in &plan.agents {
        if !baton_proto::valid_name(name) {
            return Err(Error::AgentName(name.clone()));
        }
    }
    create_dir(&plan.dir)?;
    let dir = std::fs::canonicalize(&plan.dir).map_err(io(&plan.dir))?;
    let existing: Vec<PathBuf> = leaf_paths(&dir, plan)
        .into_iter()
        .filter(|p| p.exists())
        .collect();
    if !existing.is_empty() && !plan.force {
        return Err(Error::Exists(existing));
    }
    let (issuer, ca_pem, mut outs, ca_reused) = ca(&dir, today)?;
    if !plan.sans.is_empty() {
        outs.extend(server(&dir, &plan.sans, &issuer, &ca_pem, today)?);
    }
    for name in &plan.agents {
        outs.extend(agent(&dir, name, &issuer, &ca_pem, today)?);
    }
    let mut files = Vec::new();
    for out in outs {
        write_file(&out.path, &out.text, out.private, plan.force)?;
        files.push(Written {
            path: out.path,
            what: out.what,
        });
    }
    Ok(Made {
        dir,
        ca_reused,
        files,
    })
}

fn leaf_paths(dir: &Path, plan: &Plan) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if !plan.sans.is_empty() {
        out.push(server_cert_path(dir));
        out.push(server_key_path(dir));
    }
    let names: BTreeSet<&String> = plan.agents.iter().collect();
    for name in names {
        out.push(agent_cert_path(dir, name));
        out.push(agent_key_path(dir, name));
    }
    out
}

#[cfg(unix)]
fn create_dir(dir: &Path) -> Result<(), Error> {
    use std::os::unix::fs::DirBuilderExt as _;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io(dir))
}

#[cfg(not(unix))]
fn create_dir(dir: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(io(dir))
}

/// `today` plus `years` (Feb 29 becomes Feb 28).
fn years_after(today: NaiveDate, years: u32) -> NaiveDate {
    today
        .checked_add_months(Months::new(years * 12))
        .unwrap_or(today)
}

/// Valid from the day before `today` (clocks running behind) for `years`.
fn validity(p: &mut CertificateParams, today: NaiveDate, years: u32) {
    // chrono's months (1-12) and days (1-31) fit in a u8.
    let day = |d: NaiveDate| rcgen::date_time_ymd(d.year(), d.month() as u8, d.day() as u8);
    p.not_before = day(today.pred_opt().unwrap_or(today));
    p.not_after = day(years_after(today, years));
}

/// The CA's parameters: fixed, so an existing CA can be rebuilt from its key.
fn ca_params(today: NaiveDate) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_NAME);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut p, today, CA_YEARS);
    p
}

/// The CA: the existing one (`ca.pem` + `ca.key`) or a new one (to be written).
fn ca(
    dir: &Path,
    today: NaiveDate,
) -> Result<(Issuer<'static, KeyPair>, String, Vec<Out>, bool), Error> {
    let (cert_path, key_path) = (ca_cert_path(dir), ca_key_path(dir));
    match (cert_path.exists(), key_path.exists()) {
        (true, true) => {
            let key_pem = std::fs::read_to_string(&key_path).map_err(io(&key_path))?;
            let key = KeyPair::from_pem(&key_pem).map_err(|e| Error::Ca {
                path: key_path.clone(),
                message: format!("not a private key rcgen can use: {e}"),
            })?;
            let cert_pem = std::fs::read_to_string(&cert_path).map_err(io(&cert_path))?;
            Ok((
                Issuer::new(ca_params(today), key),
                cert_pem,
                Vec::new(),
                true,
            ))
        }
        (false, false) => {
            let params = ca_params(today);
            let key = KeyPair::generate()?;
            let cert = params.self_signed(&key)?;
            let until = years_after(today, CA_YEARS);
            let outs = vec![
                Out {
                    path: cert_path,
                    text: cert.pem(),
                    private: false,
                    what: format!(
                        "CA certificate (until {until}): agents and batonctl pin it, the controller checks client certificates with it"
                    ),
                },
                Out {
                    path: key_path,
                    text: key.serialize_pem(),
                    private: true,
                    what: "CA key: signs new certificates (`tls init` again); keep it off the controller if you can".into(),
                },
            ];
            Ok((Issuer::new(params, key), cert.pem(), outs, false))
        }
        (present, _) => {
            let (p, m) = if present {
                (cert_path, key_path)
            } else {
                (key_path, cert_path)
            };
            Err(Error::HalfCa {
                present: p.display().to_string(),
                missing: m.display().to_string(),
            })
        }
    }
}

/// A leaf signed by the CA: (certificate PEM, key PEM).
fn leaf(
    issuer: &Issuer<'_, KeyPair>,
    cn: &str,
    sans: Vec<SanType>,
    usage: ExtendedKeyUsagePurpose,
    today: NaiveDate,
) -> Result<(String, String, CertificateDer<'static>), Error> {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.subject_alt_names = sans;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![usage];
    p.use_authority_key_identifier_extension = true;
    validity(&mut p, today, LEAF_YEARS);
    let key = KeyPair::generate()?;
    let cert = p.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem(), cert.der().clone()))
}

fn san_type(san: &San) -> Result<SanType, Error> {
    Ok(match san {
        San::Ip(ip) => SanType::IpAddress(*ip),
        San::Dns(d) => SanType::DnsName(d.clone().try_into()?),
    })
}

fn roots(dir: &Path, ca_pem: &str) -> Result<Arc<rustls::RootCertStore>, Error> {
    let bad = |message: String| Error::Ca {
        path: ca_cert_path(dir),
        message,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| bad(format!("not a PEM certificate: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| bad(format!("not a CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(bad("no certificate in the file".into()));
    }
    Ok(Arc::new(roots))
}

/// The error for a new certificate that does not chain to `ca.pem`.
fn mismatch(dir: &Path, e: impl std::fmt::Display) -> Error {
    Error::Ca {
        path: ca_cert_path(dir),
        message: format!(
            "a certificate signed with ca.key does not verify against it ({e}); ca.pem and ca.key do not belong together, or were not made by `tls init`"
        ),
    }
}

fn server(
    dir: &Path,
    sans: &[San],
    issuer: &Issuer<'_, KeyPair>,
    ca_pem: &str,
    today: NaiveDate,
) -> Result<Vec<Out>, Error> {
    let types = sans.iter().map(san_type).collect::<Result<Vec<_>, _>>()?;
    let cn = sans.first().map(San::to_string).unwrap_or_default();
    let (cert, key, der) = leaf(
        issuer,
        &cn,
        types,
        ExtendedKeyUsagePurpose::ServerAuth,
        today,
    )?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(roots(dir, ca_pem)?, provider)
            .build()
            .map_err(|e| mismatch(dir, e))?;
    let name = ServerName::try_from(cn.clone()).map_err(|e| mismatch(dir, e))?;
    rustls::client::danger::ServerCertVerifier::verify_server_cert(
        verifier.as_ref(),
        &der,
        &[],
        &name,
        &[],
        UnixTime::now(),
    )
    .map_err(|e| mismatch(dir, e))?;
    let names: Vec<String> = sans.iter().map(San::to_string).collect();
    let until = years_after(today, LEAF_YEARS);
    Ok(vec![
        Out {
            path: server_cert_path(dir),
            text: cert,
            private: false,
            what: format!(
                "controller certificate for {} (until {until})",
                names.join(", ")
            ),
        },
        Out {
            path: server_key_path(dir),
            text: key,
            private: true,
            what: "controller key: readable by the controller's user only".into(),
        },
    ])
}

fn agent(
    dir: &Path,
    name: &str,
    issuer: &Issuer<'_, KeyPair>,
    ca_pem: &str,
    today: NaiveDate,
) -> Result<Vec<Out>, Error> {
    let san = SanType::DnsName(name.to_owned().try_into()?);
    let (cert, key, der) = leaf(
        issuer,
        name,
        vec![san],
        ExtendedKeyUsagePurpose::ClientAuth,
        today,
    )?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots(dir, ca_pem)?, provider)
            .build()
            .map_err(|e| mismatch(dir, e))?;
    verifier
        .verify_client_cert(&der, &[], UnixTime::now())
        .map_err(|e| mismatch(dir, e))?;
    let until = years_after(today, LEAF_YEARS);
    Ok(vec![
        Out {
            path: agent_cert_path(dir, name),
            text: cert,
            private: false,
            what: format!("client certificate of agent {name} (until {until})"),
        },
        Out {
            path: agent_key_path(dir, name),
            text: key,
            private: true,
            what: format!("key of agent {name}: copy it to that agent only"),
        },
    ])
}

/// Write `text` to a temporary file created with its final mode, then move it
/// to `path` (replacing a file only when `force`).
fn write_file(path: &Path, text: &str, private: bool, force: bool) -> Result<(), Error> {
    use std::io::Write as _;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".{}.tmp", name.unwrap_or_default()));
    let _ = std::fs::remove_file(&tmp);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = opts.open(&tmp).map_err(io(&tmp))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io(&tmp))?;
    drop(file);
    let moved = if force {
        std::fs::rename(&tmp, path)
    } else {
        // A hard link fails if `path` appeared meanwhile: never overwrite.
        std::fs::hard_link(&tmp, path).and_then(|()| std::fs::remove_file(&tmp))
    };
    moved.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::Io {
            path: path.to_path_buf(),
            source: e,
        }
    })
}

/// What to tell the operator after `make`: the files, the config lines to
/// paste and how agents and batonctl pin the CA.
pub fn instructions(plan: &Plan, made: &Made) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let dir = &made.dir;
    let ca = ca_cert_path(dir);
    if made.ca_reused {
        let _ = writeln!(s, "Using the existing CA {}", ca.display());
    }
    let _ = writeln!(s, "Wrote:");
    for f in &made.files {
        let _ = writeln!(s, "  {}  {}", f.path.display(), f.what);
    }
    let _ = writeln!(s, "\nController config (controller.toml):\n  [tls]");
    if !plan.sans.is_empty() {
        let _ = writeln!(
            s,
            "  cert_file = \"{}\"\n  key_file = \"{}\"",
            server_cert_path(dir).display(),
            server_key_path(dir).display()
        );
    }
    let comment = if plan.agents.is_empty() { "# " } else { "" };
    let _ = writeln!(
        s,
        "  {comment}client_ca_file = \"{}\"   # verify agents' client certificates\n  # require_agent_client_cert = true   # and demand one on every agent call",
        ca.display()
    );
    let _ = writeln!(
        s,
        "\nbatonctl: export BATON_CA_FILE={} (or pass --ca-file), with an https:// URL naming one of the certificate's names",
        ca.display()
    );
    let _ = writeln!(
        s,
        "\nAgent config (agent.toml), with ca.pem copied to the agent host:\n  [tls]\n  ca_file = \"{}\"",
        ca.display()
    );
    for name in &plan.agents {
        let _ = writeln!(
            s,
            "  # agent {name}:\n  client_cert_file = \"{}\"\n  client_key_file = \"{}\"",
            agent_cert_path(dir, name).display(),
            agent_key_path(dir, name).display()
        );
    }
    s
}

#[cfg(test)]
mod tests;
