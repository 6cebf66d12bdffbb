//! The `upload` kind end to end: real controller and agent processes, a
//! real S3-compatible server (moto, `scripts/s3server`) whose bucket is
//! read back with a reference client (boto3), never the agent's code.
//!
//! - a dump → upload (with retention) pipeline on the real MariaDB, run three
//!   times: two objects with their manifests remain, their sha256 metadata
//!   and downloaded bytes equal the dumps';
//! - the server unreachable in the middle of a large upload (a fault proxy
//!   resetting every connection: moto keeps its state in memory, so a killed
//!   moto would come back empty): no object is visible under the key, the
//!   job is retried and completes once the server is back;
//! - two agents with different stores: uploads go only to the one with
//!   theirs (grant-time placement by store).
//! - the agent killed (SIGKILL) in the middle of an upload and restarted with
//!   the same state dir: its takeover aborts the dead run's multipart upload
//!   and uploads again; one object, no multipart upload left;
//! - a SQL Server native backup (`dump` on an `mssql` connection, the TDS
//!   test server's backup model) → upload pipeline: the object, its
//!   metadata and its manifest as the server lists them, equal to the
//!   backup file and its manifest.
//!
//! The 1 GiB throughput and RSS figures: `baton-bench upload`.
//!
//! - the upload records' directory on a full, then read-only disk: uploads
//!   warn and complete; recording resumes once the disk is repaired;
//! - wrong keys (a wrong secret, an unknown access key id) against a server
//!   that checks signatures: the job fails once, naming the store and the
//!   server's refusal, the secret nowhere, nothing left in the bucket.
//! - the server SIGSTOPped in the middle of an upload (issue 19): with the
//!   store's `read_timeout = "2s"` the part PUT whose body the server stopped
//!   taking is seen stalled and tried again; after SIGCONT the upload
//!   completes, no multipart upload left.
//!
//! moto's own authentication cannot do the last one: it reads only the
//! Authorization header and answers 500 (a KeyError on HTTP_AUTHORIZATION,
//! moto 5.2, `INITIAL_NO_AUTH_ACTION_COUNT=0`) to presigned requests, which
//! is how rusty-s3 signs; `scripts/s3server start --auth` checks their SigV4
//! signatures in front of moto instead.

use std::path::{Path, PathBuf};
use std::time::Duration;

use baton_proto::pipeline::RunState;
use baton_proto::{AttemptOutcome, JobState};
use baton_tests::cluster::Cluster;
use baton_tests::loopfs::LoopFs;
use baton_tests::s3::{self, BUCKET, S3Server, UploadFixture, sha256_file};
use baton_tests::tds::{BackupModel, Script, TdsServer};
use baton_tests::{mariadb, mssql};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(120);

/// The `offsite` store's settings after its endpoint and keys.
fn offsite(part_mb: u64) -> String {
    format!("prefix = \"prod\"\nsse = \"AES256\"\npart_size_mb = {part_mb}\nconcurrency = 2\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dump_upload_retention_pipeline_on_mariadb() {
    baton_tests::require_s3!();
    baton_tests::require_mariadb!();
    baton_tests::init_crypto();
    let s3 = S3Server::with_bucket().expect("s3 server");
    let mdb = mariadb::server().await.expect(mariadb::INSTALL_HINT);
    let db = mdb.create_database("upl").expect("database");
    mdb.sql(
        Some(&db),
        "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20)); INSERT INTO t VALUES (1,'a'),(2,'b');",
    )
    .expect("setup");
    let (user, password) = mdb.create_user(&db, &["ALL"]).expect("user");
    let secrets = tempfile::Builder::new()
        .prefix("baton-upl-")
        .tempdir()
        .expect("tmp");
    let pw = secrets.path().join("main.password");
    mariadb::write_password_file(&pw, &password).expect("password");
    let dumps = secrets.path().join("dumps");
    let conn = mdb.connection_toml("main", &db, &user, &pw);
    let store = s3.store_toml("offsite", &s3.url, &offsite(5));
    let dumps_of = dumps.clone();
    let c = Cluster::start_with(1, "", move |o| {
        o.extra = format!("{conn}dump_dir = \"{}\"\n{store}", dumps_of.display());
    })
    .await
    .expect("cluster");
    c.wait_agents_online().await.expect("online");
    let dump = json!({"kind": "dump", "connection": "main", "database": db});
    let retention = json!({"keep_last": 2});
    c.api
        .create_pipeline(s3::dump_upload_pipeline("offsite", dump, Some(retention)))
        .await
        .expect("pipeline");
    let mut uploaded = Vec::new();
    for _ in 0..3 {
        let run = c.api.start_run("offsite").await.expect("run");
        let r = c.api.wait_run_ended(run.id, WAIT).await.expect("ended");
        assert_eq!(r.state, RunState::Succeeded, "{r:#?}\n{}", c.logs());
        let up = r.steps.iter().find(|s| s.name == "upload").expect("step");
        let job = c.api.job(up.job_id.expect("job")).await.expect("job");
        let data = job.result.and_then(|r| r.data).expect("data");
        let key = data["key"].as_str().expect("key").to_owned();
        assert!(key.starts_with(&format!("prod/main/{db}/")), "{key}");
        assert_eq!(data["bucket"], BUCKET);
        uploaded.push((key, data["sha256"].as_str().expect("sha").to_owned()));
        // Dump names have a one-second resolution.
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let listing = s3.list(BUCKET).expect("list");
    assert!(listing.uploads.is_empty(), "{listing:?}");
    let objects: Vec<&str> = listing
        .objects
        .iter()
        .filter(|o| !o.key.ends_with(".manifest.json"))
        .map(|o| o.key.as_str())
        .collect();
    let kept: Vec<&str> = uploaded[1..].iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(objects, kept, "{listing:?}");
    assert_eq!(
        listing.objects.len(),
        4,
        "two objects and their manifests: {listing:?}"
    );
    for (key, sha) in &uploaded[1..] {
        let o = listing
            .objects
            .iter()
            .find(|o| &o.key == key)
            .expect("listed");
        assert_eq!(&o.sha256, sha, "metadata of {key}");
        let got = secrets.path().join("got");
        s3.get(BUCKET, key, &got).expect("get");
        assert_eq!(&sha256_file(&got), sha, "bytes of {key}");
        let manifest = key.replace(".sql.zst", ".manifest.json");
        assert!(
            listing.objects.iter().any(|o| o.key == manifest),
            "{manifest}"
        );
    }
}

/// One agent with store `offsite` at `url` (this server's or a proxy's) and
/// a fake dump of `size` bytes.
async fn fixture(s3: &S3Server, url: &str, size: usize) -> UploadFixture {
    UploadFixture::start(1, |_, _| s3.store_toml("offsite", url, &offsite(5)), size).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_gone_mid_upload_leaves_no_object_and_the_retry_completes() {
    baton_tests::require_s3!();
    baton_tests::init_crypto();
    let s3 = S3Server::with_bucket().expect("s3 server");
    let (proxy, url) = s3.proxy().await.expect("proxy");
    let f = fixture(&s3, &url, 25 * 1024 * 1024).await;
    // Slow the parts down so the fault lands in the middle.
    proxy.delay(Duration::from_millis(20));
    let job =
        f.c.api
            .submit(f.job(
                "offsite",
                None,
                json!({"max_attempts": 6, "initial_backoff_ms": 2000,
                   "retry_on": ["error", "lease_expired"]}),
            ))
            .await
            .expect("submit");
    f.c.api.wait_running(job.id, WAIT).await.expect("running");
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.reset();
    let key = "prod/main/sales/2026/12/06/20261206T010203Z-job9.sql.zst";
    // While the server cannot be reached: no object under the key.
    for _ in 0..3 {
        let l = s3.list(BUCKET).expect("list");
        assert!(
            !l.objects.iter().any(|o| o.key == key),
            "partial object visible: {l:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    proxy.pass();
    let done = f.c.api.wait_terminal(job.id, WAIT).await.expect("ended");
    assert_eq!(done.state, JobState::Succeeded, "{done:#?}\n{}", f.c.logs());
    // The fault was met: a request retried within the attempt, or a new attempt.
    let logs = f.c.logs();
    assert!(
        done.attempts.len() >= 2 || logs.contains("Object store request failed; retrying"),
        "the fault was never met: {done:#?}\n{logs}"
    );
    let l = s3.list(BUCKET).expect("list");
    let o = l.objects.iter().find(|o| o.key == key).expect("object");
    assert_eq!(
        (o.size, o.sha256.as_str()),
        (25 * 1024 * 1024, f.sha256.as_str())
    );
    assert!(l.uploads.is_empty(), "an aborted upload was left: {l:?}");
}

/// Stores at grant time: two agents of one group with different stores
/// (`archive` on agent-1, `offsite` on agent-2), both running `upload`.
/// Uploads to `offsite` are granted only to agent-2 and succeed at the
/// first attempt; agent-1, idle all along, never takes one (before, it
/// could, and the job failed there for good: "this agent has no store").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_go_only_to_the_agent_with_their_store() {
    baton_tests::require_s3!();
    baton_tests::init_crypto();
    let s3 = S3Server::with_bucket().expect("s3 server");
    let store = |_: &Path, agent: &str| {
        let name = if agent == "agent-2" {
            "offsite"
        } else {
            "archive"
        };
        s3.store_toml(name, &s3.url, "")
    };
    let f = UploadFixture::start(2, store, 1024).await;
    let mut ids = Vec::new();
    for p in ["a", "b", "c", "d"] {
        let job =
            f.c.api
                .submit(f.job("offsite", Some(p), json!({"max_attempts": 1})))
                .await
                .expect("submit");
        ids.push(job.id);
    }
    for id in ids {
        let done = f.c.api.wait_terminal(id, WAIT).await.expect("ended");
        assert_eq!(done.state, JobState::Succeeded, "{done:#?}\n{}", f.c.logs());
        assert_eq!(done.attempts.len(), 1, "{done:#?}");
        assert_eq!(done.attempts[0].agent_id, "agent-2", "{done:#?}");
    }
    let l = s3.list(BUCKET).expect("list");
    for p in ["a", "b", "c", "d"] {
        let key = format!("{p}/20261206T010203Z-job9.sql.zst");
        let o = l.objects.iter().find(|o| o.key == key).expect("object");
        assert_eq!(o.sha256, f.sha256, "{l:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_mid_upload_and_restarted_leaves_one_object_and_no_upload() {
    baton_tests::require_s3!();
    baton_tests::init_crypto();
    let s3 = S3Server::with_bucket().expect("s3 server");
    let (proxy, url) = s3.proxy().await.expect("proxy");
    let mut f = fixture(&s3, &url, 25 * 1024 * 1024).await;
    // Slow enough to be killed in the middle.
    proxy.delay(Duration::from_millis(20));
    // A long TTL: only the restarted agent's report can requeue the job.
    let mut spec = f.job(
        "offsite",
        None,
        json!({"max_attempts": 2, "initial_backoff_ms": 0, "jitter": 0.0,
               "retry_on": ["error", "lease_expired"]}),
    );
    spec["lease_ttl_ms"] = json!(60_000);
    let job = f.c.api.submit(spec).await.expect("submit");
    let (_, holder) = f.c.api.wait_running(job.id, WAIT).await.expect("running");
    let key = "prod/main/sales/2026/12/06/20261206T010203Z-job9.sql.zst";
    let uploads = f.c.agent(&holder).dir.join("state").join("uploads");
    let record = uploads.join(format!("{}-1.json", job.id));
    let end = std::time::Instant::now() + WAIT;
    while !record.exists() {
        assert!(
            std::time::Instant::now() < end,
            "no upload record\n{}",
            f.c.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f.c.agent(&holder).proc().kill9();
    let l = s3.list(BUCKET).expect("list");
    assert_eq!(l.uploads, [key], "the dead run left its upload: {l:?}");
    assert!(l.objects.is_empty(), "{l:?}");

    proxy.pass();
    f.c.agent(&holder).restart().expect("restart");
    let done = f.c.api.wait_terminal(job.id, WAIT).await.expect("ended");
    assert_eq!(done.state, JobState::Succeeded, "{done:#?}\n{}", f.c.logs());
    assert_eq!(done.attempts.len(), 2, "{done:#?}");
    assert_eq!(
        done.attempts[0].outcome,
        Some(AttemptOutcome::AgentRestarted),
        "{done:#?}"
    );
    let l = s3.list(BUCKET).expect("list");
    assert!(l.uploads.is_empty(), "a multipart upload was left: {l:?}");
    let manifest = key.replace(".sql.zst", ".manifest.json");
    let keys: Vec<&str> = l.objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(
        keys,
        [manifest.as_str(), key],
        "one object and its manifest: {l:?}"
    );
    assert_eq!(
        (l.objects[1].size, l.objects[1].sha256.as_str()),
        (25 * 1024 * 1024, f.sha256.as_str())
    );
    let log = f.c.agent(&holder).log_text();
    assert!(
        log.contains("Aborted a multipart upload left by a previous run"),
        "{log}"
    );
    let left: Vec<_> = std::fs::read_dir(&uploads).expect("dir").collect();
    assert!(left.is_empty(), "records left: {left:?}");
}

/// Wrong keys against a server that checks signatures
/// (`scripts/s3server start --auth`): a store whose secret key file holds
/// another secret (`SignatureDoesNotMatch`) and one whose access key id the
/// server does not know (`InvalidAccessKeyId`). Each upload fails at its
/// first request and only once (its policy allows three attempts on
/// errors), the error naming the store, the 403 and the code; the secret is
/// in no error, log or controller answer; no object and no multipart upload
/// are left. The right keys, through the same check, upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_keys_fail_once_naming_the_store_and_the_refusal() {
    baton_tests::require_s3!();
    baton_tests::init_crypto();
    let s3 = S3Server::start_auth().expect("s3 server");
    s3.make_bucket(BUCKET).expect("bucket");
    let keys = tempfile::tempdir().expect("tmp");
    let secret = "wrong-secret-Qx7u2kP9vLm4";
    let (bad_secret, stranger) = (keys.path().join("bad.secret"), keys.path().join("stranger"));
    mariadb::write_password_file(&bad_secret, secret).expect("secret");
    mariadb::write_password_file(&stranger, "AKIASTRANGER0000").expect("key id");
    let ak = s3.access_key_file();
    let stores = |_: &Path, _: &str| {
        [
            s3.store_toml("offsite", &s3.url, ""),
            s3::store_toml_keys("badsecret", &s3.url, (&ak, &bad_secret), ""),
            s3::store_toml_keys("stranger", &s3.url, (&stranger, &bad_secret), ""),
        ]
        .concat()
    };
    let f = UploadFixture::start(1, stores, 1024).await;
    let upload = |store: &str| {
        let retry = json!({"max_attempts": 3, "initial_backoff_ms": 100, "retry_on": ["error"]});
        f.job(store, Some(store), retry)
    };
    for (store, code) in [
        ("badsecret", "SignatureDoesNotMatch"),
        ("stranger", "InvalidAccessKeyId"),
    ] {
        let job = f.c.api.submit(upload(store)).await.expect("submit");
        let done = f.c.api.wait_terminal(job.id, WAIT).await.expect("ended");
        assert_eq!(done.state, JobState::Failed, "{done:#?}");
        assert_eq!(done.attempts.len(), 1, "never retried: {done:#?}");
        let error = done.error.clone().unwrap_or_default();
        for want in [
            &format!("store {store}:"),
            "HTTP 403",
            code,
            "refused the keys",
        ] {
            assert!(error.contains(want), "{want:?} in {error}");
        }
        let view = serde_json::to_string(&done).expect("json");
        assert!(!view.contains(secret), "the secret in the job: {view}");
    }
    let logs = f.c.logs();
    assert!(!logs.contains(secret), "the secret in a log:\n{logs}");
    let l = s3.list(BUCKET).expect("list");
    assert_eq!(l, s3::Listing::default(), "nothing left in the bucket");

    let job = f.c.api.submit(upload("offsite")).await.expect("submit");
    let done = f.c.api.wait_terminal(job.id, WAIT).await.expect("ended");
    assert_eq!(done.state, JobState::Succeeded, "{done:#?}\n{}", f.c.logs());
    let l = s3.list(BUCKET).expect("list");
    let o = l
        .objects
        .iter()
        .find(|o| o.key == format!("offsite/{}", s3::FAKE_DUMP))
        .expect("object");
    assert_eq!(o.sha256, f.sha256, "{l:?}");
}

/// Files in the upload records' directory, the mount's own entries
/// (`lost+found`, the filler) left out.
fn records(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("records dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "lost+found" && n != "filler")
        .collect()
}

const NOT_RECORDED: &str = "Cannot record the multipart upload";

/// An upload of the fake dump under `<prefix>/`, tried once; its end.
async fn upload_once(f: &UploadFixture, prefix: &str) -> baton_proto::JobView {
    let job =
        f.c.api
            .submit(f.job("offsite", Some(prefix), json!({"max_attempts": 1})))
            .await
            .expect("submit");
    f.c.api.wait_terminal(job.id, WAIT).await.expect("ended")
}

/// The upload records' directory (`<state_dir>/uploads`) on a small
/// loop-mounted disk that is full, then read-only: as designed ("a state
/// dir that refuses the record never stops an upload"), each upload warns
/// that it is not recorded and completes (the object and its manifest
/// listed by the server, no multipart upload left, no torn record file).
/// Once the disk takes writes again the agent records its uploads again by
/// itself (the record seen while the upload is in flight, removed after).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_then_read_only_records_dir_warns_uploads_anyway_and_recovers() {
    baton_tests::require_s3!();
    baton_tests::init_crypto();
    let s3 = S3Server::with_bucket().expect("s3 server");
    let (proxy, url) = s3.proxy().await.expect("proxy");
    let mut f = fixture(&s3, &url, 12 * 1024 * 1024).await;
    let uploads = f.c.agent("agent-1").dir.join("state").join("uploads");
    let disk = match LoopFs::create_at(8, &uploads) {
        Ok(d) => d,
        Err(e) => {
            println!("skipped: {e:#}");
            return;
        }
    };
    let listed = |prefix: &str| {
        let l = s3.list(BUCKET).expect("list");
        assert!(l.uploads.is_empty(), "a multipart upload was left: {l:?}");
        let (key, manifest) = (
            format!("prod/{prefix}/{}", s3::FAKE_DUMP),
            format!("prod/{prefix}/20261206T010203Z-job9.manifest.json"),
        );
        let o = l.objects.iter().find(|o| o.key == key).expect("object");
        assert_eq!(
            (o.size, o.sha256.as_str()),
            (12 * 1024 * 1024, f.sha256.as_str())
        );
        assert!(l.objects.iter().any(|o| o.key == manifest), "{l:?}");
    };
    let warnings = |f: &UploadFixture| f.c.agents[0].log_text().matches(NOT_RECORDED).count();

    disk.fill().expect("fill");
    let j = upload_once(&f, "full").await;
    assert_eq!(j.state, JobState::Succeeded, "{j:#?}\n{}", f.c.logs());
    listed("full");
    assert_eq!(warnings(&f), 1, "{}", f.c.logs());
    assert!(records(&uploads).is_empty(), "{:?}", records(&uploads));

    disk.unfill().expect("unfill");
    disk.fail_read_only().expect("read-only");
    let j = upload_once(&f, "ro").await;
    assert_eq!(j.state, JobState::Succeeded, "{j:#?}\n{}", f.c.logs());
    listed("ro");
    assert_eq!(warnings(&f), 2, "{}", f.c.logs());
    assert!(records(&uploads).is_empty(), "{:?}", records(&uploads));

    // Writable again; the upload slowed down so its record can be seen.
    disk.repair().expect("repair");
    proxy.delay(Duration::from_millis(20));
    let job =
        f.c.api
            .submit(f.job("offsite", Some("ok"), json!({"max_attempts": 1})))
            .await
            .expect("submit");
    let record = format!("{}-1.json", job.id);
    let end = std::time::Instant::now() + WAIT;
    while !records(&uploads).contains(&record) {
        assert!(
            std::time::Instant::now() < end,
            "the upload was never recorded: {:?}\n{}",
            records(&uploads),
            f.c.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proxy.pass();
    let j = f.c.api.wait_terminal(job.id, WAIT).await.expect("ended");
    assert_eq!(j.state, JobState::Succeeded, "{j:#?}\n{}", f.c.logs());
    listed("ok");
    assert_eq!(warnings(&f), 2, "{}", f.c.logs());
    assert!(records(&uploads).is_empty(), "{:?}", records(&uploads));
    // `disk` goes first (declared last): unmounted before the agent's dir is removed.
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sql_server_backup_goes_to_the_bucket_with_its_manifest() {
    baton_tests::require_s3!();
    baton_tests::init_crypto();
    let s3 = S3Server::with_bucket().expect("s3 server");
    // 11 MiB and a bit: three parts of 5 MiB at most.
    let size = 11 * 1024 * 1024 + 17;
    let model = BackupModel::new()
        .database("shop")
        .progress(Duration::from_millis(300), 3)
        .verify_time(Duration::from_millis(50))
        .size(size);
    let server = TdsServer::start(model.install(Script::new().login(mssql::USER, mssql::PASSWORD)))
        .await
        .expect("tds server");
    let dir = tempfile::Builder::new()
        .prefix("baton-upl-")
        .tempdir()
        .expect("tmp");
    let pw = dir.path().join("main.password");
    mssql::write_password_file(&pw, mssql::PASSWORD).expect("password");
    let backups = dir.path().join("backups");
    std::fs::create_dir_all(&backups).expect("backups");
    let extras = format!(
        "{}backup_dir = {}\n",
        mssql::PLAIN,
        mssql::toml_str(&backups.display().to_string())
    );
    let conn = mssql::tds_connection_toml("main", &server, &pw, &extras);
    let store = s3.store_toml("offsite", &s3.url, &offsite(5));
    let c = mssql::cluster(1, &format!("{conn}{store}"))
        .await
        .expect("cluster");
    let dump = json!({"kind": "dump", "connection": "main", "database": "shop"});
    c.api
        .create_pipeline(s3::dump_upload_pipeline("offsite-mssql", dump, None))
        .await
        .expect("pipeline");
    let run = c.api.start_run("offsite-mssql").await.expect("run");
    let r = c.api.wait_run_ended(run.id, WAIT).await.expect("ended");
    assert_eq!(r.state, RunState::Succeeded, "{r:#?}\n{}", c.logs());
    let step = |name: &str| r.steps.iter().find(|s| s.name == name).expect("step");
    let dump = c
        .api
        .job(step("dump").job_id.expect("job"))
        .await
        .expect("job");
    let upload = c
        .api
        .job(step("upload").job_id.expect("job"))
        .await
        .expect("job");
    let (dumped, up) = (mssql::data(&dump), mssql::data(&upload));

    // The backup file and its manifest on the agent.
    let file = PathBuf::from(dumped["path"].as_str().expect("path"));
    let name = file.file_name().and_then(|n| n.to_str()).expect("name");
    let stem = name.strip_suffix(".bak").expect(".bak");
    let manifest_file = file.with_file_name(format!("{stem}.manifest.json"));
    let manifest_bytes = std::fs::read(&manifest_file).expect("manifest");
    let manifest: serde_json::Value = serde_json::from_slice(&manifest_bytes).expect("json");
    let sha = sha256_file(&file);
    assert_eq!(manifest["sha256"], sha.as_str(), "{manifest:#}");
    assert_eq!(model.calls()[0].sha256.as_deref(), Some(sha.as_str()));

    // The key from the template, under the prefix.
    let day = manifest["started_at"].as_str().expect("started_at");
    let key = format!(
        "prod/main/shop/{}/{}/{}/{name}",
        &day[0..4],
        &day[5..7],
        &day[8..10]
    );
    let manifest_key = format!(
        "prod/main/shop/{}/{}/{}/{stem}.manifest.json",
        &day[0..4],
        &day[5..7],
        &day[8..10]
    );
    assert_eq!(up["key"], key.as_str(), "{up:#}");
    assert_eq!(up["manifest_key"], manifest_key.as_str(), "{up:#}");
    assert_eq!((&up["size"], &up["sha256"]), (&json!(size), &json!(sha)));

    // What the server lists (ListObjectsV2, HEAD, ListMultipartUploads).
    let l = s3.list(BUCKET).expect("list");
    assert!(l.uploads.is_empty(), "{l:?}");
    let keys: Vec<&str> = l.objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, [key.as_str(), manifest_key.as_str()], "{l:?}");
    assert_eq!(
        (l.objects[0].size, l.objects[0].sha256.as_str()),
        (size, sha.as_str())
    );
    // The bytes, downloaded by the reference client.
    let got = dir.path().join("got.bak");
    s3.get(BUCKET, &key, &got).expect("get");
    assert_eq!(sha256_file(&got), sha);
    let got_manifest = dir.path().join("got.manifest.json");
    s3.get(BUCKET, &manifest_key, &got_manifest)
        .expect("get manifest");
    assert_eq!(std::fs::read(&got_manifest).expect("read"), manifest_bytes);
}

/// Issue 19: the server SIGSTOPped while parts are being sent (a fault proxy
/// paces them so that the stop lands in the middle; it forwards with
/// back-pressure, so the agent's writes block as the server stops reading).
/// No job timeout: the store's `read_timeout` (2 s) sees the part PUT
/// stalled (a `Store request stalled` warning naming the store and the
/// request) and it is tried again. SIGCONT, and the upload completes: the
/// object whole, no multipart upload left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_stopped_mid_upload_is_seen_stalled_and_the_upload_completes_after_sigcont() {
    baton_tests::require_s3!();
    baton_tests::init_crypto();
    let s3 = S3Server::with_bucket().expect("s3 server");
    let (proxy, url) = s3.proxy().await.expect("proxy");
    let size = 25 * 1024 * 1024;
    let f = UploadFixture::start(
        1,
        |_, _| {
            s3.store_toml(
                "offsite",
                &url,
                &format!("{}read_timeout = \"2s\"\n", offsite(5)),
            )
        },
        size,
    )
    .await;
    proxy.delay(Duration::from_millis(20));
    let before = proxy.stats().to_upstream;
    let job =
        f.c.api
            .submit(f.job(
                "offsite",
                None,
                json!({"max_attempts": 3, "initial_backoff_ms": 2000}),
            ))
            .await
            .expect("submit");
    let end = std::time::Instant::now() + WAIT;
    // Parts on their way: some MiB sent, most of the file still to go.
    while proxy.stats().to_upstream - before < 5 * 1024 * 1024 {
        assert!(
            std::time::Instant::now() < end,
            "the upload never began\n{}",
            f.c.logs()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    s3.freeze().expect("SIGSTOP");
    let stalled = |logs: &str| {
        logs.lines().any(|l| {
            l.contains("Store request stalled") && l.contains("offsite") && l.contains("UploadPart")
        })
    };
    while !stalled(&f.c.logs()) {
        assert!(
            std::time::Instant::now() < end,
            "the stall was never seen\n{}",
            f.c.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    s3.thaw().expect("SIGCONT");
    proxy.pass();
    let done = f.c.api.wait_terminal(job.id, WAIT).await.expect("ended");
    assert_eq!(done.state, JobState::Succeeded, "{done:#?}\n{}", f.c.logs());
    let key = "prod/main/sales/2026/12/06/20261206T010203Z-job9.sql.zst";
    let l = s3.list(BUCKET).expect("list");
    let o = l.objects.iter().find(|o| o.key == key).expect("object");
    assert_eq!(
        (o.size, o.sha256.as_str()),
        (size as u64, f.sha256.as_str())
    );
    assert!(l.uploads.is_empty(), "a multipart upload was left: {l:?}");
}
