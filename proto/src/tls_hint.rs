//! Why a connection to the controller failed at the scheme or TLS level, and
//! the hint to print (shared by `batonctl` and the agent, which meet the same
//! mistakes). Pure: it reads an error's source chain (typed: rustls and hyper
//! errors, found through `std::error::Error::source` and inside `io::Error`s),
//! never the network. Behind the `tls-hint` feature.

use std::error::Error as StdError;

use rustls::{CertificateError, InvalidMessage};

/// A mismatch between what the caller spoke and what the controller speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// An `http://` URL reached a TLS listener (the answer was not HTTP).
    PlainToTls,
    /// An `https://` URL reached a plain HTTP listener (the answer was not TLS).
    TlsToPlain,
    /// The controller's certificate is from a CA the caller does not trust.
    UnknownIssuer,
    /// The controller's certificate does not name the host of the URL; the
    /// names it has, when rustls reported them.
    WrongName {
        /// DNS names and IP addresses of the certificate.
        presented: Vec<String>,
    },
}

/// Where the caller tried to go.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// Host of the URL (an IPv6 address in brackets).
    pub host: &'a str,
    /// Port of the URL.
    pub port: u16,
}

/// The mismatch behind `err`, if it is one; `https`: the URL's scheme.
pub fn diagnose(err: &(dyn StdError + 'static), https: bool) -> Option<Mismatch> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(m) = rustls_error(e).and_then(from_rustls) {
            return Some(m);
        }
        if !https
            && let Some(h) = e.downcast_ref::<hyper::Error>()
            && h.is_parse()
        {
            return Some(Mismatch::PlainToTls);
        }
        next = e.source();
    }
    None
}

/// A rustls error, itself or inside (nested) `io::Error`s, whose `source()`
/// skips the error they wrap.
fn rustls_error<'a>(mut e: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    loop {
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        let inner = e.downcast_ref::<std::io::Error>()?.get_ref()?;
        e = inner;
    }
}

fn from_rustls(e: &rustls::Error) -> Option<Mismatch> {
    match e {
        rustls::Error::InvalidMessage(InvalidMessage::InvalidContentType) => {
            Some(Mismatch::TlsToPlain)
        }
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            Some(Mismatch::UnknownIssuer)
        }
        rustls::Error::InvalidCertificate(CertificateError::NotValidForName) => {
            Some(Mismatch::WrongName {
                presented: Vec::new(),
            })
        }
        rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
            presented,
            ..
        }) => Some(Mismatch::WrongName {
            presented: presented.iter().map(|p| bare_name(p)).collect(),
        }),
        _ => None,
    }
}

/// `DnsName("ctl")` → `ctl`, `IpAddress(10.0.0.5)` → `10.0.0.5` (rustls's
/// rendering of a presented name).
fn bare_name(presented: &str) -> String {
    let inner = presented
        .strip_prefix("DnsName(")
        .or_else(|| presented.strip_prefix("IpAddress("))
        .and_then(|s| s.strip_suffix(')'))
        .unwrap_or(presented);
    inner.trim_matches('"').to_owned()
}

impl Mismatch {
    /// The hint for an operator; `pin` says how this program pins a CA
    /// (e.g. "BATON_CA_FILE or --ca-file").
    pub fn hint(&self, to: Target<'_>, pin: &str) -> String {
        let Target { host, port } = to;
        match self {
            Mismatch::PlainToTls => {
                format!("the controller speaks HTTPS: use https://{host}:{port}")
            }
            Mismatch::TlsToPlain => format!(
                "the controller speaks plain HTTP here: use http://{host}:{port} (or give it a certificate: baton-controller tls init)"
            ),
            Mismatch::UnknownIssuer => format!(
                "the controller's certificate is from a CA this side does not trust: pin the controller's CA with {pin} (`baton-controller tls init` wrote it as ca.pem)"
            ),
            Mismatch::WrongName { presented } if presented.is_empty() => format!(
                "the controller's certificate does not name {host}: re-issue it with `baton-controller tls init --san {host},...`"
            ),
            Mismatch::WrongName { presented } => format!(
                "the controller's certificate does not name {host}, it names {}: use one of these in the URL, or re-issue it with `baton-controller tls init --san {host},...`",
                presented.join(", ")
            ),
        }
    }
}

#[cfg(test)]
mod tests;
