//! A real S3-compatible server for tests (`scripts/s3server`: moto_server on
//! loopback, authenticated, with a fresh access key in its dir).
//!
//! The bucket's contents are read back through the server itself, with a
//! reference client (boto3: `scripts/s3server ls/get`), never with the
//! agent's code. A dropped [`S3Server`] stops its server.
//!
//! Without moto_server a test starting with [`require_s3!`](crate::require_s3) skips with a
//! one-line reason, unless `BATON_TEST_REQUIRE_S3=1` (set by `.ci/run`,
//! after `scripts/s3server install`): then it fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Environment variable: `1` turns a skip for a missing server into a failure.
pub const REQUIRE: &str = "BATON_TEST_REQUIRE_S3";

/// What to do when the server is missing.
pub const INSTALL_HINT: &str =
    "the S3 tests need moto_server: install it with `scripts/s3server install`";

/// `scripts/s3server`.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("scripts")
        .join("s3server")
}

/// Why S3 tests skip here, or `None` when they run.
pub fn skip_reason() -> Option<String> {
    if std::env::var(REQUIRE).as_deref() == Ok("1") {
        return None;
    }
    let venv = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"))
        .join(".cache/baton-s3-venv/bin/moto_server");
    let on_path = Command::new("sh")
        .args(["-c", "command -v moto_server"])
        .output()
        .is_ok_and(|o| o.status.success());
    if venv.exists() || on_path {
        return None;
    }
    Some(format!(
        "skipped: moto_server was not found; {REQUIRE}=1 makes this a failure. {INSTALL_HINT}"
    ))
}

/// The first line of a test that needs the S3 server.
#[macro_export]
macro_rules! require_s3 {
    () => {
        if let Some(reason) = $crate::s3::skip_reason() {
            println!("{reason}");
            return;
        }
    };
}

/// One object as the server lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Key.
    pub key: String,
    /// Bytes.
    pub size: u64,
    /// The `sha256` user metadata (`-` when absent).
    pub sha256: String,
}

/// The bucket's objects and unfinished multipart uploads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// Objects, in key order.
    pub objects: Vec<Listed>,
    /// Keys of unfinished multipart uploads.
    pub uploads: Vec<String>,
}

/// A running server of the test's own.
#[derive(Debug)]
pub struct S3Server {
    dir: tempfile::TempDir,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// Its port.
    pub port: u16,
}

impl S3Server {
    /// Start a server (free port).
    pub fn start() -> Result<S3Server> {
        let dir = tempfile::Builder::new().prefix("baton-s3-").tempdir()?;
        let out = Command::new(script())
            .arg("start")
            .arg(dir.path())
            .output()
            .context("running scripts/s3server")?;
        if !out.status.success() {
            bail!(
                "scripts/s3server start failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let line = String::from_utf8_lossy(&out.stdout).to_string();
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|f| f.strip_prefix(name).map(str::to_owned))
        };
        let url = field("url=").context("no url= from scripts/s3server")?;
        let port = field("port=")
            .and_then(|p| p.parse().ok())
            .context("no port= from scripts/s3server")?;
        Ok(S3Server { dir, url, port })
    }

    /// The file holding the access key id.
    pub fn access_key_file(&self) -> PathBuf {
        self.dir.path().join("access_key")
    }

    /// The file holding the secret key.
    pub fn secret_key_file(&self) -> PathBuf {
        self.dir.path().join("secret_key")
    }

    fn client(&self, args: &[&str]) -> Result<String> {
        let out = Command::new(script())
            .args(&args[..1])
            .arg(self.dir.path())
            .args(&args[1..])
            .output()
            .context("running scripts/s3server")?;
        if !out.status.success() {
            bail!(
                "scripts/s3server {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Create a bucket.
    pub fn make_bucket(&self, bucket: &str) -> Result<()> {
        self.client(&["mb", bucket]).map(drop)
    }

    /// List the bucket through the server (ListObjectsV2, ListMultipartUploads).
    pub fn list(&self, bucket: &str) -> Result<Listing> {
        let text = self.client(&["ls", bucket])?;
        let mut listing = Listing::default();
        for line in text.lines() {
            let parts: Vec<&str> = line.split(' ').collect();
            match parts.as_slice() {
                ["upload", key] => listing.uploads.push((*key).to_owned()),
                [key, size, sha] => listing.objects.push(Listed {
                    key: (*key).to_owned(),
                    size: size.parse().context("size")?,
                    sha256: (*sha).to_owned(),
                }),
                _ => bail!("unexpected listing line {line:?}"),
            }
        }
        Ok(listing)
    }

    /// Download an object to `file`.
    pub fn get(&self, bucket: &str, key: &str, file: &Path) -> Result<()> {
        let file = file.to_string_lossy().into_owned();
        self.client(&["get", bucket, key, &file]).map(drop)
    }

    /// Upload `file` as `key` in one PUT, with `sha256` as its user metadata
    /// when given (how tests replace an object's bytes but keep its metadata).
    pub fn put(&self, bucket: &str, key: &str, file: &Path, sha256: Option<&str>) -> Result<()> {
        let file = file.to_string_lossy().into_owned();
        let mut args = vec!["put", bucket, key, &file];
        if let Some(s) = sha256 {
            args.push(s);
        }
        self.client(&args).map(drop)
    }

    /// Upload `file` with the reference client (boto3's `upload_file`,
    /// default transfer settings); the seconds the call took.
    pub fn upload_timed(&self, bucket: &str, key: &str, file: &Path) -> Result<f64> {
        let file = file.to_string_lossy().into_owned();
        let out = self.client(&["upload", bucket, key, &file])?;
        out.trim()
            .strip_prefix("seconds=")
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("scripts/s3server upload printed {out:?}"))
    }

    /// SIGKILL the server (it dies mid-request; moto keeps nothing).
    pub fn kill(&self) -> Result<()> {
        self.client(&["kill"]).map(drop)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}
