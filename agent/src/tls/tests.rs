use super::*;

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Self {
        Pki {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        crate::secret::tests::write_secret(&path, text);
        path
    }
}

fn self_signed(name: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    (cert.pem(), key.serialize_pem())
}

#[test]
fn ca_bundles_are_checked() {
    let pki = Pki::new();
    let (a, _) = self_signed("a.test");
    let (b, _) = self_signed("b.test");
    let both = pki.write("ca.pem", &format!("{a}{b}"));
    let ca = CaBundle::load(&both).expect("bundle");
    assert_eq!(ca.certs_der().count(), 2);
    assert_eq!(ca.path(), both);

    let e = CaBundle::load(&pki.dir.path().join("missing.pem")).expect_err("missing");
    assert_eq!(e.part, Part::Ca);
    assert!(e.message.contains("cannot read"), "{e}");

    let empty = pki.write("empty.pem", "hello\n");
    let e = CaBundle::load(&empty).expect_err("no cert");
    assert!(e.message.contains("no PEM certificate"), "{e}");

    let garbage = pki.write(
        "bad.pem",
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
    );
    let e = CaBundle::load(&garbage).expect_err("not a cert");
    assert!(e.message.contains("trust anchor"), "{e}");
}

#[test]
fn client_identity_key_must_match_the_certificate() {
    let pki = Pki::new();
    let (cert, key) = self_signed("agent.test");
    let (_, other_key) = self_signed("other.test");
    let cert_path = pki.write("agent.crt", &cert);
    let key_path = pki.write("agent.key", &key);
    let id = ClientIdentity::load(&cert_path, &key_path).expect("identity");
    let pem = String::from_utf8(id.pem().to_vec()).expect("utf8");
    assert!(pem.contains("BEGIN CERTIFICATE") && pem.contains("PRIVATE KEY"));
    assert!(
        !format!("{id:?}").contains("PRIVATE KEY"),
        "Debug hides the key"
    );

    let wrong = pki.write("other.key", &other_key);
    let e = ClientIdentity::load(&cert_path, &wrong).expect_err("mismatch");
    assert_eq!(e.part, Part::ClientKey);
    assert!(e.message.contains("does not belong"), "{e}");

    let e = ClientIdentity::load(&key_path, &key_path).expect_err("key as cert");
    assert_eq!(e.part, Part::ClientCert);

    let two = pki.write("two.key", &format!("{key}{other_key}"));
    let e = ClientIdentity::load(&cert_path, &two).expect_err("two keys");
    assert!(e.message.contains("more than one"), "{e}");

    let e = ClientIdentity::load(&cert_path, &cert_path).expect_err("cert as key");
    assert_eq!(e.part, Part::ClientKey);
}
