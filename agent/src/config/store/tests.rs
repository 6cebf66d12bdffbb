//! `[stores.<name>]` parsing: every error names the key and line.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::config::{Error, Flags, load_from};

use super::*;

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let w = |n: &str, t: &str| crate::secret::tests::write_secret(&dir.path().join(n), t);
        w("token", "baton_enr_s3cret\n");
        w("ak", "AKIAEXAMPLE\n");
        w("sk", "secret/example\n");
        Fixture { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("agent.toml")
    }

    /// The agent config with `store` (lines after `[stores.b]`).
    fn load(&self, store: &str) -> Result<crate::config::Config, Error> {
        let toml = format!(
            "agent_id = \"a\"\nenrollment_token_file = \"token\"\nstate_dir = \"{}\"\n\
             [stores.b]\nkind = \"s3\"\n{store}",
            self.dir.path().join("state").display()
        );
        load_from(
            &Flags::default(),
            &BTreeMap::new(),
            Some((&self.path(), &toml)),
        )
    }

    fn err(&self, store: &str) -> baton_proto::config::ConfigError {
        match self.load(store) {
            Ok(c) => panic!("accepted: {:?}", c.stores),
            Err(Error::Invalid(e)) => e,
        }
    }
}

const MINIMAL: &str = "endpoint = \"http://127.0.0.1:9000/\"\nbucket = \"backups\"\n\
                       access_key_file = \"ak\"\nsecret_key_file = \"sk\"\n";

#[test]
fn a_minimal_store_gets_the_defaults() {
    let f = Fixture::new();
    let c = f.load(MINIMAL).expect("valid");
    let s = c.stores["b"].as_s3();
    assert_eq!(s.endpoint, "http://127.0.0.1:9000");
    assert_eq!(s.region, "us-east-1");
    assert_eq!(s.prefix, "");
    assert!(!s.path_style);
    assert_eq!(s.part_size, DEFAULT_PART_SIZE);
    assert_eq!(s.concurrency, DEFAULT_CONCURRENCY);
    assert_eq!(s.read_timeout, DEFAULT_READ_TIMEOUT);
    assert_eq!(s.read_timeout, std::time::Duration::from_secs(30));
    assert_eq!(
        s.keys,
        KeySource::Files {
            access: f.dir.path().join("ak"),
            secret: f.dir.path().join("sk"),
        }
    );
    let k = s.keys.read().expect("keys");
    assert_eq!(
        (k.access.as_str(), k.secret.as_str()),
        ("AKIAEXAMPLE", "secret/example")
    );
    assert!(!format!("{k:?}").contains("secret/example"), "{k:?}");
}

#[test]
fn every_setting_is_read() {
    let f = Fixture::new();
    let ca = f.dir.path().join("ca.pem");
    std::fs::write(&ca, "pem").expect("ca");
    let c = f
        .load(&format!(
            "{MINIMAL}region = \"eu-west-3\"\nprefix = \"/db/prod\"\npath_style = true\n\
             ca_file = \"ca.pem\"\nsse = \"aws:kms\"\nkms_key_id = \"k-1\"\n\
             storage_class = \"STANDARD_IA\"\npart_size_mb = 8\nconcurrency = 2\n\
             read_timeout = \"2m 30s\"\n"
        ))
        .expect("valid");
    let s = c.stores["b"].as_s3();
    assert_eq!(s.region, "eu-west-3");
    assert_eq!(s.prefix, "db/prod/");
    assert!(s.path_style);
    assert_eq!(s.ca_file.as_deref(), Some(ca.as_path()));
    assert_eq!(s.sse, Some(Sse::Kms(Some("k-1".into()))));
    assert_eq!(s.storage_class.as_deref(), Some("STANDARD_IA"));
    assert_eq!((s.part_size, s.concurrency), (8 * 1024 * 1024, 2));
    assert_eq!(s.read_timeout, std::time::Duration::from_secs(150));
}

#[test]
fn an_inline_key_is_refused_naming_the_key_and_line() {
    let f = Fixture::new();
    for key in ["secret_key", "access_key", "secret_access_key"] {
        let e = f.err(&format!(
            "endpoint = \"http://h\"\nbucket = \"bkt\"\n{key} = \"x\"\n"
        ));
        assert_eq!(e.key, format!("stores.b.{key}"), "{e}");
        assert_eq!(e.line, Some(8), "{e}");
        assert!(e.to_string().contains("never inline"), "{e}");
        assert!(e.to_string().contains("agent.toml"), "{e}");
    }
}

#[test]
fn bad_values_name_their_key() {
    let f = Fixture::new();
    let cases = [
        (
            "endpoint = \"ftp://h\"\nbucket = \"bkt\"\n",
            "stores.b.endpoint",
        ),
        (
            "endpoint = \"http://h\"\nbucket = \"B\"\n",
            "stores.b.bucket",
        ),
        (&format!("{MINIMAL}sse = \"rot13\"\n"), "stores.b.sse"),
        (
            &format!("{MINIMAL}kms_key_id = \"k\"\n"),
            "stores.b.kms_key_id",
        ),
        (
            &format!("{MINIMAL}part_size_mb = 1\n"),
            "stores.b.part_size_mb",
        ),
        (
            &format!("{MINIMAL}concurrency = 0\n"),
            "stores.b.concurrency",
        ),
        (
            &format!("{MINIMAL}prefix = \"a/../b\"\n"),
            "stores.b.prefix",
        ),
        (
            &format!("{MINIMAL}ca_file = \"nope.pem\"\n"),
            "stores.b.ca_file",
        ),
        (&format!("{MINIMAL}colour = 1\n"), "stores.b"),
        (
            "endpoint = \"http://h\"\nbucket = \"bkt\"\naccess_key_file = \"ak\"\n",
            "stores.b.access_key_file",
        ),
        (
            "endpoint = \"http://h\"\nbucket = \"bkt\"\naccess_key_env = \"NO_SUCH_VAR_1\"\n\
             secret_key_env = \"NO_SUCH_VAR_2\"\n",
            "stores.b.access_key_env",
        ),
    ];
    for (text, key) in cases {
        let e = f.err(text);
        assert!(e.key.starts_with(key), "{text}: {e}");
        assert!(e.line.is_some(), "{text}: {e}");
    }
}

#[test]
fn a_key_file_others_can_read_is_refused() {
    let f = Fixture::new();
    let p = f.dir.path().join("open");
    std::fs::write(&p, "k").expect("write");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = f.err(
            "endpoint = \"http://h\"\nbucket = \"bkt\"\naccess_key_file = \"open\"\n\
             secret_key_file = \"sk\"\n",
        );
        assert_eq!(e.key, "stores.b.access_key_file", "{e}");
    }
}

#[test]
fn an_unknown_kind_is_refused() {
    let f = Fixture::new();
    let toml = format!(
        "agent_id = \"a\"\nenrollment_token_file = \"token\"\nstate_dir = \"{}\"\n\
         [stores.b]\nkind = \"gcs\"\n",
        f.dir.path().join("state").display()
    );
    let Err(Error::Invalid(e)) = load_from(
        &Flags::default(),
        &BTreeMap::new(),
        Some((&f.path(), &toml)),
    ) else {
        panic!("accepted")
    };
    assert_eq!(e.key, "stores.b.kind", "{e}");
}

#[test]
fn read_timeout_is_a_duration_within_bounds() {
    let f = Fixture::new();
    for (v, secs) in [("\"1s\"", 1), ("\" 45s \"", 45), ("\"1h\"", 3600)] {
        let c = f
            .load(&format!("{MINIMAL}read_timeout = {v}\n"))
            .expect("valid");
        assert_eq!(
            c.stores["b"].as_s3().read_timeout,
            std::time::Duration::from_secs(secs),
            "{v}"
        );
    }
    // Zero, too long, not a duration, not a string: the key and its line.
    for (v, says) in [
        ("\"0s\"", "must be between 1s and 1h"),
        ("\"500ms\"", "must be between 1s and 1h"),
        ("\"2h\"", "must be between 1s and 1h"),
        ("\"soon\"", "\"soon\" is not a duration like \"30s\""),
        ("30", "invalid type"),
    ] {
        let e = f.err(&format!("{MINIMAL}read_timeout = {v}\n"));
        assert_eq!(e.key, "stores.b.read_timeout", "{v}: {e}");
        assert_eq!(e.line, Some(10), "{v}: {e}");
        assert!(e.to_string().contains(says), "{v}: {e}");
        assert!(e.to_string().contains("agent.toml"), "{v}: {e}");
    }
}
