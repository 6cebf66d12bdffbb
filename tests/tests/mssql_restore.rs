//! SQL Server `restore` jobs driven through the agent's
//! `MssqlRestoreExecutor` against the TDS test server: a backup made by the
//! agent's own `BackupExecutor` against the backup model (contract B1–B5),
//! then restored. The restore statements (R1–R5 of the contract) are
//! answered by scripted rules that record what they got, as SQL Server 2022
//! answers them: `RESTORE FILELISTONLY` a result set of logical/physical
//! files, the default paths one row, `RESTORE DATABASE` INFO 3211/3014 or
//! an error, the figures query a result set. What is tested is what the
//! agent sends (and in which order), what it refuses before sending
//! anything, and what it does after a failure or a cancel.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton_agent::config::StoreConfig;
use baton_agent::config::store::S3Store;
use baton_agent::db::mssql::connection::MssqlConnection;
use baton_agent::db::mssql::{BackupExecutor, Connections, MssqlRestoreExecutor};
use baton_agent::executor::{Cancel, CancelReason, Executor, Job, Outcome, ProgressHandle};
use baton_proto::{Completion, DumpSpec, JobSpec, RestoreSource, RestoreSpec};
use baton_tests::tds::*;
use serde_json::{Value as Json, json};

const DB: &str = "shop";

/// Statements the scripted rules saw: text and string arguments.
type Seen = Arc<Mutex<Vec<(String, Vec<String>)>>>;

struct World {
    server: TdsServer,
    seen: Seen,
    backup: BackupExecutor,
    restore: MssqlRestoreExecutor,
    connections: Arc<Connections>,
    _tmp: tempfile::TempDir,
}

fn args(req: &Request) -> Vec<String> {
    req.as_rpc()
        .map(|r| {
            r.args()
                .iter()
                .map(|p| p.value.as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A result set ending as an `sp_executesql` (RPC) or a batch reply ends.
fn rows(rpc: bool, columns: Vec<Column>, rows: Vec<Vec<Value>>) -> Reply {
    let done = Done::new().count(rows.len() as u64).cmd(cur_cmd::SELECT);
    let mut t = vec![Token::ColMetaData(columns)];
    t.extend(rows.into_iter().map(Token::Row));
    if rpc {
        t.extend([
            Token::DoneInProc(done.more()),
            Token::ReturnStatus(0),
            Token::DoneProc(Done::new()),
        ]);
    } else {
        t.push(Token::Done(done));
    }
    Reply::tokens(t)
}

fn text(v: &str) -> Value {
    Value::String(v.into())
}

/// A rule that records the request, then answers with `reply(rpc)`.
fn recorded(
    seen: &Seen,
    needle: &str,
    reply: impl Fn(bool) -> Reply + Send + Sync + 'static,
) -> (Match, Responder) {
    let seen = seen.clone();
    let reply = Arc::new(reply);
    let responder = Responder::dynamic(move |ctx: Ctx| {
        let (seen, reply) = (seen.clone(), reply.clone());
        async move {
            let req = &ctx.request;
            let statement = req.sql().unwrap_or_default().to_owned();
            seen.lock().expect("lock").push((statement, args(req)));
            reply(req.as_rpc().is_some())
        }
    });
    (Match::sql(needle), responder)
}

/// The restore rules; `restore` answers `RESTORE DATABASE`.
fn rules(seen: &Seen, restore: Reply) -> Vec<(Match, Responder)> {
    let nv = |n| SqlType::NVarChar(Some(n));
    vec![
        recorded(seen, "RESTORE FILELISTONLY", move |rpc| {
            rows(
                rpc,
                vec![
                    Column::new("LogicalName", nv(128)),
                    Column::new("PhysicalName", nv(260)),
                    Column::new("Type", nv(1)),
                ],
                vec![
                    vec![text("shop"), text("C:\\Data\\shop.mdf"), text("D")],
                    vec![text("shop_log"), text("C:\\Data\\shop_log.ldf"), text("L")],
                ],
            )
        }),
        recorded(seen, "InstanceDefaultDataPath", move |rpc| {
            rows(
                rpc,
                vec![
                    Column::new("data_path", nv(260)),
                    Column::new("log_path", nv(260)),
                ],
                vec![vec![text("D:\\SQL\\Data\\"), text("E:\\SQL\\Log\\")]],
            )
        }),
        recorded(seen, "RESTORE DATABASE", move |_| restore.clone()),
        recorded(seen, "sys.partitions", move |rpc| {
            rows(
                rpc,
                vec![
                    Column::new("schema_name", nv(128)),
                    Column::new("table_name", nv(128)),
                    Column::new("row_count", SqlType::BigInt),
                ],
                vec![
                    vec![text("dbo"), text("orders"), Value::Int(1200)],
                    vec![text("dbo"), text("t"), Value::Int(2)],
                ],
            )
        }),
        recorded(seen, "DROP DATABASE", |_| Reply::done()),
    ]
}

/// What SQL Server sends for a finished RESTORE DATABASE (an RPC).
fn restored() -> Reply {
    Reply::tokens(vec![
        Token::info(3211, "100 percent processed."),
        Token::info(3014, "RESTORE DATABASE successfully processed 1 pages."),
        Token::DoneInProc(Done::new().more()),
        Token::ReturnStatus(0),
        Token::DoneProc(Done::new()),
    ])
}

async fn world(restore: Reply) -> World {
    baton_tests::init_crypto();
    let tmp = tempfile::tempdir().expect("tmp");
    let seen: Seen = Arc::default();
    let model = BackupModel::new()
        .database(DB)
        .progress(Duration::from_millis(50), 1)
        .verify_time(Duration::from_millis(10));
    let mut script = Script::new();
    for (m, r) in rules(&seen, restore) {
        script = script.on(m, r);
    }
    let server = TdsServer::start(model.install(script))
        .await
        .expect("start");
    baton_tests::mariadb::write_private_file(&tmp.path().join("pw"), "pw").expect("pw");
    let src = format!(
        "host = \"127.0.0.1\"\nport = {}\nuser = \"baton\"\npassword_file = \"pw\"\nencrypt = \"off\"\nbackup_dir = {}\n",
        server.port(),
        Json::from(tmp.path().join("backups").display().to_string())
    );
    let settings: BTreeMap<String, toml::Value> = toml::from_str::<toml::Table>(&src)
        .expect("toml")
        .into_iter()
        .collect();
    let conn = MssqlConnection::parse("sql", &settings, Some(tmp.path())).expect("connection");
    let connections = Arc::new(Connections::new([conn]).with_fleet("f1"));
    World {
        server,
        seen,
        backup: BackupExecutor::new(connections.clone(), tmp.path().join("state")),
        restore: MssqlRestoreExecutor::new(connections.clone()),
        connections,
        _tmp: tmp,
    }
}

fn job(spec: JobSpec) -> Job {
    Job {
        job_id: i64::from(rand::random::<u16>()),
        token: 1,
        attempt: 1,
        retry_codes: vec![1205],
        spec,
        timeout: None,
        cancel: Cancel::new(),
        progress: ProgressHandle::new(64 * 1024),
    }
}

fn restore_job(file: &str, database: &str, replace: bool) -> Job {
    job(JobSpec::Restore(RestoreSpec {
        connection: "sql".into(),
        source: RestoreSource {
            file: Some(file.into()),
            ..Default::default()
        },
        database: database.into(),
        replace,
    }))
}

impl World {
    /// A verified backup of `shop` made by the agent: its `.bak` path.
    async fn backup(&self) -> PathBuf {
        let out = self
            .backup
            .execute(job(JobSpec::Dump(DumpSpec {
                connection: "sql".into(),
                database: DB.into(),
                verify: false,
            })))
            .await;
        assert_eq!(out.completion, Completion::Succeeded, "{out:?}");
        let data = out.result.data.expect("data");
        PathBuf::from(data["path"].as_str().expect("path"))
    }

    fn seen(&self) -> Vec<(String, Vec<String>)> {
        self.seen.lock().expect("lock").clone()
    }

    /// Whether any request the server logged contains `text`.
    fn sent(&self, text: &str) -> bool {
        self.server
            .log()
            .into_iter()
            .any(|e| e.request.sql().is_some_and(|s| s.contains(text)))
    }
}

fn failed(out: &Outcome) -> String {
    assert!(
        matches!(out.completion, Completion::Failed { retryable: false }),
        "{out:?}"
    );
    out.error.clone().unwrap_or_default()
}

#[tokio::test]
async fn a_backup_is_restored_under_a_new_name_with_its_files_moved() {
    let w = world(restored()).await;
    let bak = w.backup().await;
    let path = bak.display().to_string();
    let out = w
        .restore
        .execute(restore_job(&path, "shop_copy", false))
        .await;
    assert_eq!(out.completion, Completion::Succeeded, "{out:?}");
    let seen = w.seen();
    let statements: Vec<&str> = seen.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(statements.len(), 4, "{seen:#?}");
    assert_eq!(statements[0], "RESTORE FILELISTONLY FROM DISK = @P1");
    assert_eq!(seen[0].1, std::slice::from_ref(&path));
    assert!(statements[1].contains("InstanceDefaultDataPath"));
    assert_eq!(
        statements[2],
        "RESTORE DATABASE @P1 FROM DISK = @P2 WITH CHECKSUM, STATS = 5, MOVE @P3 TO @P4, MOVE @P5 TO @P6"
    );
    assert_eq!(
        seen[2].1,
        [
            "shop_copy",
            path.as_str(),
            "shop",
            "D:\\SQL\\Data\\shop_copy_0_shop.mdf",
            "shop_log",
            "E:\\SQL\\Log\\shop_copy_1_shop_log.ldf",
        ]
    );
    assert!(
        statements[3].contains("[shop_copy].sys.partitions"),
        "{}",
        statements[3]
    );
    let data = out.result.data.expect("data");
    assert_eq!(data["replaced"], false);
    assert_eq!(
        data["tables"],
        json!([
            {"name": "dbo.orders", "rows": 1200, "checksum": null},
            {"name": "dbo.t", "rows": 2, "checksum": null},
        ])
    );
    assert_eq!(data["files"][1]["logical"], "shop_log");
    assert_eq!(data["source"]["database"], DB);
    assert!(!w.sent("DROP DATABASE"));
}

#[tokio::test]
async fn an_existing_database_is_refused_without_replace_and_restored_over_with_it() {
    let w = world(restored()).await;
    let bak = w.backup().await.display().to_string();
    let error = failed(&w.restore.execute(restore_job(&bak, DB, false)).await);
    assert!(
        error.contains("already exists") && error.contains("replace = true"),
        "{error}"
    );
    assert!(
        w.seen().is_empty(),
        "nothing but the existence check was sent"
    );
    let out = w.restore.execute(restore_job(&bak, DB, true)).await;
    assert_eq!(out.completion, Completion::Succeeded, "{out:?}");
    let seen = w.seen();
    let restore = seen
        .iter()
        .find(|(s, _)| s.starts_with("RESTORE DATABASE"))
        .expect("sent");
    assert!(
        restore.0.ends_with("MOVE @P5 TO @P6, REPLACE"),
        "{}",
        restore.0
    );
    assert_eq!(out.result.data.expect("data")["replaced"], true);
}

#[tokio::test]
async fn a_damaged_file_or_a_missing_manifest_sends_nothing() {
    let w = world(restored()).await;
    let bak = w.backup().await;
    let mut bytes = std::fs::read(&bak).expect("read");
    let n = bytes.len() / 2;
    bytes[n] ^= 0x40;
    let good = std::fs::read(&bak).expect("read");
    std::fs::write(&bak, &bytes).expect("flip");
    let path = bak.display().to_string();
    let error = failed(&w.restore.execute(restore_job(&path, "copy", false)).await);
    assert!(error.contains("does not match its manifest"), "{error}");
    std::fs::write(&bak, &good).expect("repair");
    let manifest = path.replace(".bak", ".manifest.json");
    std::fs::remove_file(&manifest).expect("rm");
    let error = failed(&w.restore.execute(restore_job(&path, "copy", false)).await);
    assert!(error.contains("no readable manifest"), "{error}");
    let outside = w._tmp.path().join("other.bak");
    std::fs::write(&outside, &good).expect("copy");
    let error = failed(
        &w.restore
            .execute(restore_job(&outside.display().to_string(), "copy", false))
            .await,
    );
    assert!(error.contains("not under a dump directory"), "{error}");
    assert!(w.seen().is_empty(), "{:#?}", w.seen());
}

#[tokio::test]
async fn a_failed_restore_into_a_new_database_drops_it() {
    let refusal = Reply::tokens(vec![
        Token::error(
            3234,
            16,
            "Logical file 'shop' is not part of database 'shop_copy'.",
        ),
        Token::error(3013, 16, "RESTORE DATABASE is terminating abnormally."),
        Token::DoneInProc(Done::new().error().more()),
        Token::ReturnStatus(0),
        Token::DoneProc(Done::new().error()),
    ]);
    let w = world(refusal).await;
    let bak = w.backup().await.display().to_string();
    let out = w
        .restore
        .execute(restore_job(&bak, "shop_copy", false))
        .await;
    let error = failed(&out);
    assert!(error.contains("3234"), "{error}");
    assert_eq!(out.result.data.expect("data")["error"]["number"], 3234);
    let seen = w.seen();
    let last = seen.last().expect("statements");
    assert_eq!(last.0, "DROP DATABASE IF EXISTS [shop_copy]");
}

#[tokio::test]
async fn a_cancel_mid_restore_sends_attention_and_drops_the_new_database() {
    let w = world(Reply::hang()).await;
    let bak = w.backup().await.display().to_string();
    let j = restore_job(&bak, "shop_copy", false);
    let cancel = j.cancel.clone();
    let seen = w.seen.clone();
    tokio::spawn(async move {
        while !seen
            .lock()
            .expect("lock")
            .iter()
            .any(|(s, _)| s.starts_with("RESTORE DATABASE"))
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        cancel.cancel(CancelReason::Cancelled);
    });
    let out = w.restore.execute(j).await;
    assert!(matches!(out.completion, Completion::Cancelled), "{out:?}");
    let data = out.result.data.expect("data");
    assert_eq!(data["cancel"]["attention_sent"], true);
    assert!(
        w.server
            .log()
            .iter()
            .any(|e| matches!(e.request, Request::Attention))
    );
    assert_eq!(
        w.seen().last().map(|(s, _)| s.clone()).as_deref(),
        Some("DROP DATABASE IF EXISTS [shop_copy]")
    );
}

/// A `[stores.offsite]` on the test's S3 server.
fn store(s3: &baton_tests::s3::S3Server) -> BTreeMap<String, StoreConfig> {
    let src = format!(
        "endpoint = \"{}\"\nbucket = \"baks\"\npath_style = true\naccess_key_file = {}\n\
         secret_key_file = {}\n",
        s3.url,
        Json::from(s3.access_key_file().display().to_string()),
        Json::from(s3.secret_key_file().display().to_string()),
    );
    let settings: BTreeMap<String, toml::Value> = toml::from_str::<toml::Table>(&src)
        .expect("toml")
        .into_iter()
        .collect();
    let s = S3Store::parse("offsite", &settings, None, &BTreeMap::new()).expect("store");
    BTreeMap::from([("offsite".to_owned(), StoreConfig::S3(s))])
}

fn store_job(key: &str, database: &str) -> Job {
    job(JobSpec::Restore(RestoreSpec {
        connection: "sql".into(),
        source: RestoreSource {
            store: Some("offsite".into()),
            key: Some(key.into()),
            ..Default::default()
        },
        database: database.into(),
        replace: false,
    }))
}

/// A backup put in the store with its manifest (as `upload` leaves them)
/// is downloaded under `backup_dir`, checked, restored from there and
/// removed; once its bytes are replaced (the sha256 metadata kept) the
/// restore is refused with nothing sent to the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_in_a_store_is_downloaded_checked_restored_and_removed() {
    baton_tests::require_s3!();
    let s3 = baton_tests::s3::S3Server::start().expect("s3 server");
    s3.make_bucket("baks").expect("bucket");
    let w = world(restored()).await;
    let bak = w.backup().await;
    let name = bak
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let stem = name.strip_suffix(".bak").expect("stem");
    let manifest = bak.with_file_name(format!("{stem}.manifest.json"));
    let m: Json =
        serde_json::from_slice(&std::fs::read(&manifest).expect("manifest")).expect("json");
    let sha = m["sha256"].as_str().expect("sha256").to_owned();
    let key = format!("sql/shop/{name}");
    s3.put("baks", &key, &bak, Some(&sha)).expect("put");
    s3.put(
        "baks",
        &format!("sql/shop/{stem}.manifest.json"),
        &manifest,
        None,
    )
    .expect("put manifest");
    let restore = MssqlRestoreExecutor::new(w.connections.clone()).with_stores(store(&s3));
    let backups = w._tmp.path().join("backups");

    let out = restore.execute(store_job(&key, "shop_copy")).await;
    assert_eq!(out.completion, Completion::Succeeded, "{out:?}");
    let seen = w.seen();
    assert_eq!(seen[0].0, "RESTORE FILELISTONLY FROM DISK = @P1");
    let from = PathBuf::from(&seen[0].1[0]);
    assert!(
        from.starts_with(std::fs::canonicalize(&backups).expect("canon"))
            && from.to_string_lossy().contains("/.restore-job")
            && from.ends_with(&name),
        "{from:?}"
    );
    assert!(!from.exists(), "the download is removed");
    let data = out.result.data.expect("data");
    assert_eq!(data["source"]["key"], key.as_str());
    assert_eq!(data["source"]["sha256"], sha.as_str());

    let mut bytes = std::fs::read(&bak).expect("read");
    let n = bytes.len() / 2;
    bytes[n] ^= 0x40;
    let tampered = w._tmp.path().join("tampered.bak");
    std::fs::write(&tampered, &bytes).expect("write");
    s3.put("baks", &key, &tampered, Some(&sha)).expect("put");
    let before = w.seen().len();
    let error = failed(&restore.execute(store_job(&key, "shop_copy2")).await);
    assert!(error.contains("does not match its manifest"), "{error}");
    assert_eq!(
        w.seen().len(),
        before,
        "nothing sent after the existence check"
    );
    let left: Vec<_> = std::fs::read_dir(&backups)
        .expect("dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(".restore-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
