//! The agent's clock stepped ±1 h (the brief's clock fault) against an
//! object store (issue 19): real controller and agent processes, the agent
//! on a libfaketime clock (`baton_tests::faketime`), moto behind
//! `scripts/s3server`, read back with boto3.
//!
//! - with `--auth` the server refuses a request whose signing time is more
//!   than 15 min from its clock (403 `RequestTimeTooSkewed`, as S3, MinIO
//!   and Ceph do): an agent stepped +1 h, or −1 h, still uploads (it signs
//!   with the store's time, learnt from the answers' `Date` header), the
//!   object has its sha256, and the agent logs the skew;
//! - retention's `max_age` counts with the store's clock: an object written
//!   a second before the agent's clock stepped +1 h is kept by the next
//!   upload's retention (`max_age = "30m"`), while `keep_last` still prunes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use baton_proto::JobState;
use baton_tests::cluster::Cluster;
use baton_tests::faketime::FakeClock;
use baton_tests::s3::{BUCKET, S3Server, sha256_file};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(120);
const SKEW_WARNING: &str = "Store clock differs from this host's";

/// A dump directory with connection `main`, database `sales`.
struct Dumps {
    dir: tempfile::TempDir,
}

impl Dumps {
    fn new() -> Dumps {
        let dir = tempfile::Builder::new()
            .prefix("baton-sclk-")
            .tempdir()
            .expect("tmp");
        std::fs::create_dir_all(dir.path().join("dumps/main/sales")).expect("dir");
        Dumps { dir }
    }

    /// The agent's `[connections.main]` (never reached) dumping here.
    fn connection_toml(&self) -> String {
        let pw = self.dir.path().join("pw");
        baton_tests::mariadb::write_password_file(&pw, "unused").expect("pw");
        format!(
            "[connections.main]\nkind = \"mysql\"\nhost = \"127.0.0.1\"\nport = 1\nuser = \"u\"\n\
             password_file = \"{}\"\ndump_dir = \"{}\"\n",
            pw.display(),
            self.dir.path().join("dumps").display()
        )
    }

    /// A fake dump named as one started at `at` (job `job`), with its
    /// manifest; its path and sha256.
    fn add(&self, at: DateTime<Utc>, job: u64) -> (PathBuf, String) {
        let stem = format!("{}-job{job}", at.format("%Y%m%dT%H%M%SZ"));
        let sub = self.dir.path().join("dumps/main/sales");
        let file = sub.join(format!("{stem}.sql.zst"));
        std::fs::write(&file, format!("dump {stem}\n").repeat(1000)).expect("dump");
        let sha256 = sha256_file(&file);
        let manifest = json!({"file": file.file_name().and_then(|f| f.to_str()),
            "connection": "main", "database": "sales", "sha256": sha256,
            "started_at": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)});
        std::fs::write(
            sub.join(format!("{stem}.manifest.json")),
            manifest.to_string(),
        )
        .expect("manifest");
        (file, sha256)
    }
}

/// One agent on `clock` with store `offsite` of `s3`.
async fn cluster(s3: &S3Server, dumps: &Dumps, clock: &FakeClock) -> Cluster {
    let extra = format!(
        "{}{}",
        dumps.connection_toml(),
        s3.store_toml("offsite", &s3.url, "prefix = \"prod\"\n")
    );
    let env = clock.env();
    let c = Cluster::start_with(1, "", move |o| {
        o.extra.clone_from(&extra);
        o.env.clone_from(&env);
    })
    .await
    .expect("cluster");
    c.wait_agents_online().await.expect("online");
    c
}

/// Upload `file` (with `retention` when given); the key it was written to.
async fn upload(c: &Cluster, file: &Path, retention: Option<Value>) -> String {
    let mut spec =
        json!({"kind": "upload", "store": "offsite", "file": file.display().to_string()});
    if let Some(r) = retention {
        spec["retention"] = r;
    }
    let job = c
        .api
        .submit(json!({"group": "default", "spec": spec, "retry": {"max_attempts": 1}}))
        .await
        .expect("submit");
    let done = c.api.wait_terminal(job.id, WAIT).await.expect("ended");
    assert_eq!(done.state, JobState::Succeeded, "{done:#?}\n{}", c.logs());
    let data = done.result.and_then(|r| r.data).expect("data");
    data["key"].as_str().expect("key").to_owned()
}

fn skip_reason() -> Option<String> {
    baton_tests::s3::skip_reason().or_else(FakeClock::unavailable)
}

/// The agent stepped by `step_s` uploads to a server that refuses skewed
/// requests.
async fn upload_with_the_agent_stepped(step_s: i64) {
    if let Some(reason) = skip_reason() {
        println!("{reason}");
        return;
    }
    baton_tests::init_crypto();
    let s3 = S3Server::start_auth().expect("s3 server");
    s3.make_bucket(BUCKET).expect("bucket");
    let clock_dir = tempfile::tempdir().expect("dir");
    let clock = FakeClock::new(&clock_dir.path().join("faketime.rc")).expect("clock");
    let dumps = Dumps::new();
    let c = cluster(&s3, &dumps, &clock).await;
    clock.set_offset_s(step_s).expect("step");
    let (file, sha256) = dumps.add(Utc::now() + chrono::TimeDelta::seconds(step_s), 1);
    let key = upload(&c, &file, None).await;
    let l = s3.list(BUCKET).expect("list");
    let o = l.objects.iter().find(|o| o.key == key).expect("object");
    assert_eq!(o.sha256, sha256, "{l:?}");
    assert_eq!(sha256_file(&file), sha256);
    assert!(l.uploads.is_empty(), "{l:?}");
    let logs = c.logs();
    let warning = logs
        .lines()
        .find(|l| l.contains(SKEW_WARNING))
        .unwrap_or_else(|| panic!("no skew warning:\n{logs}"));
    assert!(warning.contains("offsite"), "{warning}");
    // The store is an hour behind (or ahead of) the agent, give or take.
    let skew_s = warning
        .split("skew_s=")
        .nth(1)
        .and_then(|r| r.split(|ch: char| !ch.is_ascii_digit() && ch != '-').next())
        .and_then(|n| n.parse::<i64>().ok())
        .unwrap_or_else(|| panic!("no skew_s: {warning}"));
    assert!((skew_s + step_s).abs() <= 60, "{warning}");
    assert_eq!(
        logs.matches(SKEW_WARNING).count(),
        1,
        "warned once:\n{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_an_hour_ahead_uploads_to_a_server_that_refuses_skewed_requests() {
    upload_with_the_agent_stepped(3600).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_an_hour_behind_uploads_to_a_server_that_refuses_skewed_requests() {
    upload_with_the_agent_stepped(-3600).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_age_counts_with_the_stores_clock_after_the_agent_steps_ahead() {
    if let Some(reason) = skip_reason() {
        println!("{reason}");
        return;
    }
    baton_tests::init_crypto();
    let s3 = S3Server::with_bucket().expect("s3 server");
    let clock_dir = tempfile::tempdir().expect("dir");
    let clock = FakeClock::new(&clock_dir.path().join("faketime.rc")).expect("clock");
    let dumps = Dumps::new();
    let c = cluster(&s3, &dumps, &clock).await;
    let retention = json!({"keep_last": 2, "max_age": "30m"});
    // An object two hours old by its name, put there by another client:
    // the oldest of three, so `keep_last = 2` prunes it.
    let now = Utc::now();
    let (oldest, oldest_sha) = dumps.add(now - chrono::TimeDelta::hours(2), 1);
    let first = upload(&c, &oldest, None).await;
    // Written a second before the step, named by the agent's clock.
    let (before, _) = dumps.add(now - chrono::TimeDelta::seconds(1), 2);
    let kept = upload(&c, &before, Some(retention.clone())).await;
    let l = s3.list(BUCKET).expect("list");
    assert!(l.objects.iter().any(|o| o.key == first), "{l:?}");
    assert!(l.objects.iter().any(|o| o.sha256 == oldest_sha), "{l:?}");
    // The agent's clock steps +1 h; its next dump is named by it.
    clock.set_offset_s(3600).expect("step");
    let (after, _) = dumps.add(Utc::now() + chrono::TimeDelta::hours(1), 3);
    let newest = upload(&c, &after, Some(retention)).await;
    let l = s3.list(BUCKET).expect("list");
    let keys: Vec<&str> = l
        .objects
        .iter()
        .filter(|o| !o.key.ends_with(".manifest.json"))
        .map(|o| o.key.as_str())
        .collect();
    assert_eq!(
        keys,
        [kept.as_str(), newest.as_str()],
        "the object written before the step is kept (an hour old by the agent's clock, \
         seconds by the store's); the oldest is pruned by keep_last\n{}",
        c.logs()
    );
    assert_eq!(l.objects.len(), 4, "with their manifests: {l:?}");
}
