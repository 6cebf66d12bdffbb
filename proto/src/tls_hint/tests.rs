use super::*;

#[derive(Debug)]
struct Wrap(Box<dyn StdError + Send + Sync + 'static>);

impl std::fmt::Display for Wrap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("client error (Connect)")
    }
}

impl StdError for Wrap {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(self.0.as_ref())
    }
}

/// A rustls error as reqwest reports it: inside an io::Error inside an
/// io::Error, under a wrapper.
fn wrapped(e: rustls::Error) -> Wrap {
    let io = std::io::Error::new(std::io::ErrorKind::InvalidData, e);
    Wrap(Box::new(std::io::Error::other(io)))
}

#[test]
fn rustls_errors_inside_io_errors_are_found() {
    let cases = [
        (
            rustls::Error::InvalidMessage(InvalidMessage::InvalidContentType),
            Mismatch::TlsToPlain,
        ),
        (
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
            Mismatch::UnknownIssuer,
        ),
        (
            rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
                expected: rustls::pki_types::ServerName::try_from("db.example")
                    .expect("name")
                    .to_owned(),
                presented: vec!["DnsName(\"ctl\")".into(), "IpAddress(10.0.0.5)".into()],
            }),
            Mismatch::WrongName {
                presented: vec!["ctl".into(), "10.0.0.5".into()],
            },
        ),
    ];
    for (err, want) in cases {
        assert_eq!(diagnose(&wrapped(err), true), Some(want));
    }
    let other = wrapped(rustls::Error::InvalidCertificate(CertificateError::Expired));
    assert_eq!(diagnose(&other, true), None);
    let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
    assert_eq!(diagnose(&io, false), None);
}

#[test]
fn hints_name_the_url_and_the_way_to_pin() {
    let to = Target {
        host: "ctl.example",
        port: 8420,
    };
    let pin = "BATON_CA_FILE or --ca-file";
    assert!(
        Mismatch::PlainToTls
            .hint(to, pin)
            .contains("use https://ctl.example:8420")
    );
    assert!(
        Mismatch::TlsToPlain
            .hint(to, pin)
            .contains("use http://ctl.example:8420")
    );
    assert!(
        Mismatch::UnknownIssuer
            .hint(to, pin)
            .contains("pin the controller's CA with BATON_CA_FILE or --ca-file")
    );
    let named = Mismatch::WrongName {
        presented: vec!["localhost".into(), "127.0.0.1".into()],
    }
    .hint(to, pin);
    assert!(
        named.contains("does not name ctl.example, it names localhost, 127.0.0.1"),
        "{named}"
    );
    assert!(named.contains("--san ctl.example"), "{named}");
}
