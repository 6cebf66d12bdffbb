//! The restore tests' fixture (`restore_store.rs`, `restore_drill_clock.rs`):
//! a database on the real MariaDB dumped and uploaded by a real dump →
//! upload pipeline to a real S3-compatible server (moto), a controller and
//! one agent with the store `offsite` (prefix `prod`), the object's key and
//! sha256; a fault proxy between the agent and the server when asked for;
//! the processes on a faked clock when given its environment.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use baton_proto::pipeline::{RunState, RunView, StepRunView};
use baton_proto::{AttemptOutcome, JobId, JobView};
use serde_json::{Value, json};

use crate::cluster::Cluster;
use crate::faultproxy::FaultProxy;
use crate::mariadb::{self, MariaDb};
use crate::proc::bin;
use crate::s3::{self, BUCKET, S3Server};

/// How long a restore test waits for anything.
pub const WAIT: Duration = Duration::from_secs(180);

/// A job's result data (`null` without one).
pub fn data(j: &JobView) -> Value {
    j.result
        .as_ref()
        .and_then(|r| r.data.clone())
        .unwrap_or(Value::Null)
}

/// The step `name` of a run (panics naming the run without it).
pub fn step<'a>(r: &'a RunView, name: &str) -> &'a StepRunView {
    r.steps
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no step {name} in {r:#?}"))
}

/// A dumped and uploaded database, an agent with the store, and the object.
pub struct Fixture {
    /// The controller and its one agent.
    pub c: Cluster,
    /// The S3-compatible server.
    pub s3: S3Server,
    /// The shared MariaDB server.
    pub mdb: &'static MariaDb,
    /// The dumped database (and `<db>_c1`, `<db>_c2`, dropped at the end).
    pub db: String,
    /// The agent's dump directory (restores download under it).
    pub dumps: PathBuf,
    /// Between the agent and the server, when asked for.
    pub proxy: Option<FaultProxy>,
    /// The object's key in the bucket (the store's prefix `prod/` included).
    pub key: String,
    /// The object's sha256 (hex).
    pub sha256: String,
    /// Holds the password file, the dumps and downloads.
    pub dir: tempfile::TempDir,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.mdb.sql(
            None,
            &format!(
                "DROP DATABASE IF EXISTS `{0}`; DROP DATABASE IF EXISTS `{0}_c1`; \
                 DROP DATABASE IF EXISTS `{0}_c2`",
                self.db
            ),
        );
    }
}

/// The default table: 500 orders.
pub const ORDERS: &str =
    "CREATE TABLE orders (id INT PRIMARY KEY, amount DECIMAL(10,2), note TEXT);
     INSERT INTO orders SELECT seq, seq / 7, CONCAT('order ', seq) FROM seq_1_to_500;";

/// How a [`Fixture`] is made.
pub struct Setup<'a> {
    /// Extra controller configuration.
    pub controller_extra: &'a str,
    /// The SQL that fills the database.
    pub tables: &'a str,
    /// The dump's restore check.
    pub verify: bool,
    /// The agent reaches the store through a fault proxy.
    pub proxy: bool,
    /// More lines of the store's section (after `prefix`).
    pub store: &'a str,
}

impl Fixture {
    /// The default fixture ([`ORDERS`], verified dump, no proxy).
    pub async fn start(controller_extra: &str) -> Fixture {
        Self::start_with(Setup {
            controller_extra,
            tables: ORDERS,
            verify: true,
            proxy: false,
            store: "",
        })
        .await
    }

    /// A fixture made as `setup` says.
    pub async fn start_with(setup: Setup<'_>) -> Fixture {
        Self::start_env(setup, Vec::new()).await
    }

    /// Like [`Fixture::start_with`], the controller and the agent running
    /// with `env` added (e.g. one [`crate::faketime::FakeClock::env`]).
    pub async fn start_env(setup: Setup<'_>, env: Vec<(String, String)>) -> Fixture {
        crate::init_crypto();
        let s3 = S3Server::with_bucket().expect("s3 server");
        let (proxy, endpoint) = if setup.proxy {
            let (p, url) = s3.proxy().await.expect("proxy");
            (Some(p), url)
        } else {
            (None, s3.url.clone())
        };
        let mdb = mariadb::server().await.expect(mariadb::INSTALL_HINT);
        let db = mdb.create_database("rs").expect("database");
        mdb.sql(Some(&db), setup.tables).expect("setup sql");
        let (user, password) = mdb.create_user(&db, &["ALL"]).expect("user");
        mdb.grant(&user, &["SELECT"], "mysql.proc").expect("grant");
        for on in [
            format!("`{}\\_c_`.*", db.replace('_', "\\_")),
            "`baton\\_verify\\_%`.*".to_owned(),
            "`baton\\_drill\\_%`.*".to_owned(),
        ] {
            mdb.grant(&user, &["ALL"], &on).expect("grant");
        }
        let dir = tempfile::Builder::new()
            .prefix("baton-rs-")
            .tempdir()
            .expect("tmp");
        let pw = dir.path().join("main.password");
        mariadb::write_password_file(&pw, &password).expect("password");
        let dumps = dir.path().join("dumps");
        let conn = mdb.connection_toml("main", &db, &user, &pw);
        let store = s3.store_toml(
            "offsite",
            &endpoint,
            &format!("prefix = \"prod\"\n{}", setup.store),
        );
        let dumps_of = dumps.clone();
        let agent_env = env.clone();
        let c = Cluster::start_env(1, setup.controller_extra, env, move |o| {
            o.extra = format!("{conn}dump_dir = \"{}\"\n{store}", dumps_of.display());
            o.env = agent_env.clone();
        })
        .await
        .expect("cluster");
        c.wait_agents_online().await.expect("online");
        let dump = json!({"kind": "dump", "connection": "main", "database": db,
                          "verify": setup.verify});
        c.api
            .create_pipeline(s3::dump_upload_pipeline("offsite", dump, None))
            .await
            .expect("pipeline");
        let run = c.api.start_run("offsite").await.expect("run");
        let r = c.api.wait_run_ended(run.id, WAIT).await.expect("ended");
        assert_eq!(r.state, RunState::Succeeded, "{r:#?}\n{}", c.logs());
        let up = c
            .api
            .job(step(&r, "upload").job_id.expect("job"))
            .await
            .expect("job");
        let d = data(&up);
        let key = d["key"].as_str().expect("key").to_owned();
        let sha256 = d["sha256"].as_str().expect("sha256").to_owned();
        Fixture {
            c,
            s3,
            mdb,
            db,
            dumps,
            proxy,
            key,
            sha256,
            dir,
        }
    }

    /// The key under the store's prefix (what a restore names).
    pub fn store_key(&self) -> &str {
        self.key.strip_prefix("prod/").expect("under the prefix")
    }

    /// Replace the object's bytes (one byte flipped in the middle), keeping
    /// its sha256 metadata; the manifest object is left alone.
    pub fn tamper(&self) {
        let file = self.dir.path().join("object");
        self.s3.get(BUCKET, &self.key, &file).expect("get");
        let mut bytes = std::fs::read(&file).expect("read");
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x01;
        std::fs::write(&file, &bytes).expect("write");
        self.s3
            .put(BUCKET, &self.key, &file, Some(&self.sha256))
            .expect("put");
        let listing = self.s3.list(BUCKET).expect("list");
        let o = listing
            .objects
            .iter()
            .find(|o| o.key == self.key)
            .expect("listed");
        assert_eq!(
            o.sha256, self.sha256,
            "the metadata still says the old sha256"
        );
    }

    /// Whether the database `name` exists on the server.
    pub fn database_exists(&self, name: &str) -> bool {
        let out = self
            .mdb
            .sql(
                None,
                &format!(
                    "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{name}'"
                ),
            )
            .expect("query");
        out.trim() != "0"
    }

    /// Downloads left under the dump directory (`.restore-job*`).
    pub fn leftovers(&self) -> Vec<String> {
        std::fs::read_dir(&self.dumps)
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(".restore-"))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Submit a restore of `source` into `database` (2 attempts); its end.
    pub async fn restore(&self, source: Value, database: &str) -> JobView {
        let j = self
            .c
            .api
            .submit(json!({
                "group": "default",
                "spec": {"kind": "restore", "connection": "main", "source": source,
                         "database": database},
                "retry": {"max_attempts": 2, "initial_backoff_ms": 100},
            }))
            .await
            .expect("submit");
        self.c.api.wait_terminal(j.id, WAIT).await.expect("ended")
    }

    /// Wait until a restore's download has begun (bytes in a `.partial`).
    pub async fn wait_downloading(&self) {
        let end = std::time::Instant::now() + WAIT;
        while downloading(&self.dumps) == 0 {
            assert!(
                std::time::Instant::now() < end,
                "the download never began\n{}",
                self.c.logs()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Wait for job `id`'s first attempt to end: its outcome and the job.
    pub async fn first_outcome(&self, id: JobId) -> (AttemptOutcome, JobView) {
        let end = std::time::Instant::now() + WAIT;
        loop {
            let j = self.c.api.job(id).await.expect("job");
            if let Some(outcome) = j.attempts.first().and_then(|a| a.outcome) {
                return (outcome, j);
            }
            assert!(
                std::time::Instant::now() < end,
                "the first attempt never ended: {j:#?}\n{}",
                self.c.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// `batonctl pipeline create --template restore-drill` of the `main`
    /// connection's objects in `offsite`, named `name`, on schedule `cron`.
    pub fn create_drill(&self, name: &str, cron: &str) -> Output {
        self.ctl(&[
            "pipeline",
            "create",
            "--template",
            "restore-drill",
            "--connection",
            "main",
            "--store",
            "offsite",
            "--prefix",
            "main/",
            "--name",
            name,
            "--schedule",
            cron,
        ])
    }

    /// `batonctl ARGS` against the controller, as admin.
    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new(bin("batonctl").expect("bin"))
            .args(["--url", &self.c.controller.url()])
            .args(args)
            .env("BATON_TOKEN", &self.c.controller.admin_token)
            .output()
            .expect("batonctl")
    }
}

/// 24 MiB of random bytes: a dump object far larger than what the socket
/// buffers between the server and the agent hold.
pub const BLOBS: &str = "CREATE TABLE blobs (id INT PRIMARY KEY, b BLOB NOT NULL);
     INSERT INTO blobs SELECT seq, RANDOM_BYTES(1024) FROM seq_1_to_24576;";

/// Bytes in `.partial` files under the dump directory's downloads.
pub fn downloading(dumps: &Path) -> u64 {
    let Ok(dirs) = std::fs::read_dir(dumps) else {
        return 0;
    };
    dirs.filter_map(Result::ok)
        .filter(|d| d.file_name().to_string_lossy().starts_with(".restore-"))
        .filter_map(|d| std::fs::read_dir(d.path()).ok())
        .flatten()
        .filter_map(Result::ok)
        .filter(|f| f.file_name().to_string_lossy().ends_with(".partial"))
        .filter_map(|f| f.metadata().ok())
        .map(|m| m.len())
        .sum()
}
