//! A real S3-compatible server for tests (`scripts/s3server`: moto_server on
//! loopback, key files with fixed values in its dir; moto checks no
//! signature), and the fixtures the upload and restore tests share.
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
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use serde_json::{Value, json};
use sha2::Digest;

use crate::cluster::Cluster;
use crate::faultproxy::FaultProxy;

/// The bucket of the e2e tests.
pub const BUCKET: &str = "baton-backups";

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
        Self::start_args(&[])
    }

    /// Start a server that refuses requests not signed with its key
    /// (`scripts/s3server start --auth`: presigned SigV4 signatures checked
    /// in front of moto; 403 `InvalidAccessKeyId` / `SignatureDoesNotMatch`).
    pub fn start_auth() -> Result<S3Server> {
        Self::start_args(&["--auth"])
    }

    fn start_args(args: &[&str]) -> Result<S3Server> {
        let dir = tempfile::Builder::new().prefix("baton-s3-").tempdir()?;
        let out = Command::new(script())
            .arg("start")
            .args(args)
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

    /// Start a server with [`BUCKET`] in it.
    pub fn with_bucket() -> Result<S3Server> {
        let s3 = S3Server::start()?;
        s3.make_bucket(BUCKET)?;
        Ok(s3)
    }

    /// A fault proxy in front of the server, and its URL (a store's `endpoint`).
    pub async fn proxy(&self) -> Result<(FaultProxy, String)> {
        let upstream = format!("127.0.0.1:{}", self.port).parse()?;
        let proxy = FaultProxy::start(upstream).await?;
        let url = format!("http://{}", proxy.addr());
        Ok((proxy, url))
    }

    /// A `[stores.NAME]` section for this server reached at `endpoint` (its
    /// [`S3Server::url`] or a proxy's): [`BUCKET`], path-style, the server's
    /// key files, then the `extra` lines.
    pub fn store_toml(&self, name: &str, endpoint: &str, extra: &str) -> String {
        let keys = (self.access_key_file(), self.secret_key_file());
        store_toml_keys(name, endpoint, (&keys.0, &keys.1), extra)
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

    fn signal(&self, sig: Signal) -> Result<()> {
        let text = std::fs::read_to_string(self.dir.path().join("pid")).context("server pid")?;
        let pid: i32 = text.trim().parse().context("server pid")?;
        nix::sys::signal::kill(Pid::from_raw(pid), sig)
            .with_context(|| format!("{sig:?} to {pid}"))?;
        Ok(())
    }

    /// SIGSTOP the server: connections stay open, nothing is answered.
    pub fn freeze(&self) -> Result<()> {
        self.signal(Signal::SIGSTOP)
    }

    /// SIGCONT after [`S3Server::freeze`].
    pub fn thaw(&self) -> Result<()> {
        self.signal(Signal::SIGCONT)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        // A frozen server would ignore the SIGTERM.
        let _ = self.thaw();
        let _ = Command::new(script())
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}

/// A `[stores.NAME]` section for [`BUCKET`] at `endpoint`, path-style,
/// with the `(access, secret)` key files given, then the `extra` lines.
pub fn store_toml_keys(name: &str, endpoint: &str, keys: (&Path, &Path), extra: &str) -> String {
    format!(
        "[stores.{name}]\nkind = \"s3\"\nendpoint = \"{endpoint}\"\nbucket = \"{BUCKET}\"\n\
         path_style = true\naccess_key_file = \"{}\"\nsecret_key_file = \"{}\"\n{extra}",
        keys.0.display(),
        keys.1.display()
    )
}

/// The hex sha256 of a file's bytes.
pub fn sha256_file(p: &Path) -> String {
    let bytes = std::fs::read(p).expect("read");
    hex::encode(sha2::Sha256::digest(&bytes))
}

/// A pipeline `name`: a `dump` step (`dump`, a dump spec), then an `upload`
/// of its file to store `offsite` on the same agent (with `retention`
/// when given); each step tried once.
pub fn dump_upload_pipeline(name: &str, dump: Value, retention: Option<Value>) -> Value {
    let mut upload = json!({"kind": "upload", "store": "offsite",
                            "file": "${steps.dump.result.file}"});
    if let Some(r) = retention {
        upload["retention"] = r;
    }
    json!({
        "name": name,
        "group": "default",
        "timeout_ms": 300_000,
        "steps": [
            {"name": "dump", "job": {"spec": dump, "retry": {"max_attempts": 1}}},
            {"name": "upload", "depends_on": ["dump"], "same_agent_as": "dump",
             "job": {"spec": upload, "retry": {"max_attempts": 1}}},
        ],
    })
}

/// Agents with a (never reached) MySQL connection `main` dumping to
/// `<dir>/dumps`, so files there may be uploaded, and a fake dump there of
/// `size` bytes with its manifest (`main`, database `sales`).
#[derive(Debug)]
pub struct UploadFixture {
    /// The controller and agents.
    pub c: Cluster,
    /// The fake dump.
    pub file: PathBuf,
    /// Its sha256 (hex).
    pub sha256: String,
    _dir: tempfile::TempDir,
}

/// The fake dump's name.
pub const FAKE_DUMP: &str = "20261206T010203Z-job9.sql.zst";

impl UploadFixture {
    /// An `upload` job of the fake dump to `store`, keyed `<prefix>/{file}`
    /// (`None`: the default template), with the `retry` policy given.
    pub fn job(&self, store: &str, prefix: Option<&str>, retry: Value) -> Value {
        let mut spec =
            json!({"kind": "upload", "store": store, "file": self.file.display().to_string()});
        if let Some(p) = prefix {
            spec["key"] = json!(format!("{p}/{{file}}"));
        }
        json!({"group": "default", "spec": spec, "retry": retry})
    }

    /// `n` agents (`agent-1`…), each with the stores `store(dir, agent_id)` gives.
    pub async fn start(n: usize, store: impl Fn(&Path, &str) -> String, size: usize) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("baton-upl-")
            .tempdir()
            .expect("tmp");
        let pw = dir.path().join("pw");
        crate::mariadb::write_password_file(&pw, "unused").expect("pw");
        let dumps = dir.path().join("dumps");
        let sub = dumps.join("main/sales");
        std::fs::create_dir_all(&sub).expect("dir");
        let file = sub.join(FAKE_DUMP);
        write_pattern(&file, size);
        let sha256 = sha256_file(&file);
        std::fs::write(
            sub.join("20261206T010203Z-job9.manifest.json"),
            json!({"file": FAKE_DUMP, "connection": "main", "database": "sales",
                   "sha256": sha256, "started_at": "2026-12-06T01:02:03.000Z"})
            .to_string(),
        )
        .expect("manifest");
        let conn = format!(
            "[connections.main]\nkind = \"mysql\"\nhost = \"127.0.0.1\"\nport = 1\nuser = \"u\"\n\
             password_file = \"{}\"\ndump_dir = \"{}\"\n",
            pw.display(),
            dumps.display()
        );
        let base = dir.path().to_path_buf();
        let c = Cluster::start_with(n, "", move |o| {
            o.extra = format!("{conn}{}", store(&base, &o.id));
        })
        .await
        .expect("cluster");
        c.wait_agents_online().await.expect("online");
        UploadFixture {
            c,
            file,
            sha256,
            _dir: dir,
        }
    }
}

/// `size` bytes of a repeating pattern.
fn write_pattern(file: &Path, size: usize) {
    use std::io::Write;
    let mut f = std::fs::File::create(file).expect("file");
    let chunk: Vec<u8> = (0..1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let mut left = size;
    while left > 0 {
        let n = left.min(chunk.len());
        f.write_all(&chunk[..n]).expect("write");
        left -= n;
    }
}
