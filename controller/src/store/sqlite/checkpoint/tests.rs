use super::*;
use crate::store::SyncMode;
use crate::store::prelude::*;
use crate::store::sqlite::SqliteStore;
use crate::store::testutil::new_job;

/// A small policy, so a test's few thousand writes cross it many times.
fn small() -> Policy {
    Policy {
        every: Duration::from_millis(5),
        threshold: 100,
        cap: 400,
        journal_limit: 200 * FRAME_BYTES,
        backoff: Duration::from_millis(5),
    }
}

async fn open(dir: &tempfile::TempDir, policy: Option<Policy>) -> Arc<SqliteStore> {
    let s = SqliteStore::open_with(&dir.path().join("c.db"), SyncMode::Normal, policy)
        .await
        .expect("open");
    Arc::new(s)
}

async fn submit(s: &SqliteStore) {
    s.submit(new_job("g", None, "h"), 1).await.expect("submit");
}

fn wal_len(dir: &tempfile::TempDir) -> u64 {
    std::fs::metadata(dir.path().join("c.db-wal")).map_or(0, |m| m.len())
}

fn frames(dir: &tempfile::TempDir) -> (u32, u32) {
    Files::of(&dir.path().join("c.db"))
        .frames()
        .expect("an untorn WAL-index header while nothing writes")
}

#[tokio::test]
async fn a_commit_never_checkpoints() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(&dir, None).await;
    let auto: i64 = sqlx::query_scalar("PRAGMA wal_autocheckpoint")
        .fetch_one(&s.writer)
        .await
        .expect("pragma");
    assert_eq!(auto, 0, "the writer's commits must not checkpoint");
    let limit: i64 = sqlx::query_scalar("PRAGMA journal_size_limit")
        .fetch_one(&s.writer)
        .await
        .expect("pragma");
    assert_eq!(
        u64::try_from(limit).expect("positive"),
        Policy::DEFAULT.journal_limit
    );
    // Commits only add frames: the WAL never restarts (a checkpoint in a
    // commit would let the next one start it again from frame 0).
    let mut last = frames(&dir).0;
    for _ in 0..1500 {
        submit(&s).await;
        let (log, copied) = frames(&dir);
        assert!(log > last, "the WAL went from {last} to {log} frames");
        assert_eq!(copied, 0, "nothing copied into the database file");
        last = log;
    }
    // Far past SQLite's default autocheckpoint (1000 pages), and SQLite
    // itself agrees on the count.
    assert!(last > 2000, "{last} frames");
    let mut c = s.writer.acquire().await.expect("conn");
    let (busy, log, done): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(&mut *c)
        .await
        .expect("checkpoint");
    assert_eq!((busy, log, done), (0, i64::from(last), i64::from(last)));
}

/// The policy decides deterministically here: the test looks itself after
/// every 10 submits (the task looks every 100 ms beside the writer; how far
/// the WAL grows between two looks depends on the disk and the load).
#[tokio::test]
async fn the_wal_stays_bounded_under_steady_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.db");
    let policy = small();
    let s = SqliteStore::open_with(&path, SyncMode::Normal, Some(policy))
        .await
        .expect("open");
    // The store's own task is stopped: only this test's looks checkpoint.
    s.checkpointer.as_ref().expect("checkpointer").stop().await;
    let stats = Arc::new(Stats::default());
    let opts = SqliteConnectOptions::new().filename(&path);
    let mut looker = Looker::new(opts, &path, policy, stats.clone(), Some(s.writer.clone()));
    let mut longest = 0;
    let mut most = 0;
    for i in 0..5000 {
        submit(&s).await;
        longest = longest.max(wal_len(&dir));
        most = most.max(frames(&dir).0);
        if i % 10 == 9 {
            looker.look().await;
        }
    }
    let runs = stats.checkpoints.load(Ordering::Relaxed);
    let copied = stats.frames.load(Ordering::Relaxed);
    assert_eq!(stats.failures.load(Ordering::Relaxed), 0);
    assert!(runs > 0, "no checkpoint ran");
    // 5,000 commits write at least 5,000 frames, and they reached the
    // database file.
    assert!(
        copied > 5000,
        "{copied} frames copied in {runs} checkpoints"
    );
    // Without checkpoints the WAL would hold all of them (> 20 MB).
    assert!(
        most < policy.cap,
        "{most} frames in the WAL, cap {}",
        policy.cap
    );
    let cap = 32 + u64::from(policy.cap) * FRAME_BYTES;
    assert!(
        longest <= cap,
        "WAL file reached {longest} bytes (cap {cap})"
    );
}

#[tokio::test]
async fn the_task_checkpoints_beside_the_writer_and_truncates_at_close() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(&dir, Some(small())).await;
    let stats = s.checkpointer.as_ref().expect("checkpointer").stats();
    for _ in 0..20_000 {
        submit(&s).await;
        if stats.checkpoints.load(Ordering::Relaxed) >= 3 {
            break;
        }
    }
    assert!(stats.checkpoints.load(Ordering::Relaxed) >= 3);
    assert!(stats.frames.load(Ordering::Relaxed) > 0);
    s.close().await;
    // The final TRUNCATE (then the last connection's close) left no WAL.
    assert_eq!(wal_len(&dir), 0);
}

/// Submit until `stats` counts `n` failures; every submit must succeed.
/// A writer transaction that reads before it writes (a deferred BEGIN:
/// agent enrollment, drills, ...) is never refused while checkpoints at the
/// cap run: a second holder of the write lock (a RESTART from the
/// checkpointer's connection) made SQLite answer such a transaction
/// SQLITE_BUSY at once, without its busy timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_then_write_transactions_are_not_refused_at_the_cap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(
        &dir,
        Some(Policy {
            every: Duration::from_millis(1),
            ..small()
        }),
    )
    .await;
    let busy = s.clone();
    let submits = tokio::spawn(async move {
        for _ in 0..3000 {
            submit(&busy).await;
        }
    });
    let mut refused = Vec::new();
    let mut n = 0u32;
    while !submits.is_finished() {
        n += 1;
        let r: sqlx::Result<()> = async {
            let mut tx = s.writer.begin().await?;
            let _: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM meta")
                .fetch_one(&mut *tx)
                .await?;
            sqlx::query("INSERT OR REPLACE INTO meta (key, value) VALUES ('test', ?)")
                .bind(n.to_string())
                .execute(&mut *tx)
                .await?;
            tx.commit().await
        }
        .await;
        if let Err(e) = r {
            refused.push(e.to_string());
        }
    }
    submits.await.expect("submits");
    let c = s.checkpointer.as_ref().expect("checkpointer");
    assert!(
        c.stats().checkpoints.load(Ordering::Relaxed) > 10,
        "checkpoints ran"
    );
    assert!(n > 50, "only {n} transactions ran beside the submits");
    assert!(
        refused.is_empty(),
        "{} of {n} refused: {:?}",
        refused.len(),
        refused.first()
    );
}

async fn submit_until_failures(s: &SqliteStore, stats: &Stats, n: u64) {
    for _ in 0..20_000 {
        submit(s).await;
        if stats.failures.load(Ordering::Relaxed) >= n {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("fewer than {n} failed checkpoints");
}

#[tokio::test]
async fn a_failing_checkpoint_is_retried_and_writes_go_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.db");
    let s = open(&dir, None).await;
    // A connection that can only read: SQLite refuses its checkpoints
    // (SQLITE_READONLY), as it would on a read-only filesystem.
    let opts = SqliteConnectOptions::new().filename(&path).read_only(true);
    let policy = Policy {
        threshold: 1,
        ..small()
    };
    let c = Checkpointer::start(opts, &path, policy, None);
    submit_until_failures(&s, c.stats(), 3).await;
    assert_eq!(c.stats().checkpoints.load(Ordering::Relaxed), 0);
    assert!(
        s.write_failure().is_none(),
        "a checkpoint is not a commit: the store stays healthy"
    );
    assert_eq!(frames(&dir).1, 0, "nothing was copied");
    c.stop().await;
}

/// `chattr` `flag` on `path`; false when the filesystem or the user
/// cannot (the test then skips).
fn chattr(flag: &str, path: &Path) -> bool {
    std::process::Command::new("chattr")
        .arg(flag)
        .arg(path)
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test]
async fn checkpoints_resume_once_the_database_file_is_writable_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.db");
    let s = open(&dir, Some(small())).await;
    submit(&s).await;
    if !chattr("+i", &path) {
        eprintln!("SKIP: cannot make the database file immutable (needs root and chattr)");
        return;
    }
    let stats = s.checkpointer.as_ref().expect("checkpointer").stats();
    let before = stats.checkpoints.load(Ordering::Relaxed);
    // The writer only appends to the WAL: writes go on, checkpoints fail.
    submit_until_failures(&s, stats, 2).await;
    let grown = frames(&dir).0;
    assert!(s.write_failure().is_none());
    assert!(chattr("-i", &path), "chattr -i");
    for _ in 0..20_000 {
        if stats.checkpoints.load(Ordering::Relaxed) > before && frames(&dir).1 > 0 {
            break;
        }
        submit(&s).await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(
        stats.checkpoints.load(Ordering::Relaxed) > before,
        "no checkpoint after the file became writable"
    );
    // The frames written while it failed reached the database file.
    assert!(frames(&dir).1 > 0 || frames(&dir).0 < grown);
    s.close().await;
}

#[test]
fn the_backoff_doubles_up_to_a_minute() {
    let s = Duration::from_secs(1);
    assert_eq!(backoff(s, 1), s);
    assert_eq!(backoff(s, 2), 2 * s);
    assert_eq!(backoff(s, 4), 8 * s);
    assert_eq!(backoff(s, 7), MAX_BACKOFF);
    assert_eq!(backoff(s, u32::MAX), MAX_BACKOFF);
}

#[test]
fn a_look_decides_by_frames_not_yet_copied() {
    let p = small();
    assert_eq!(due(None, &p), None);
    assert_eq!(due(Some((99, 0)), &p), None);
    assert_eq!(due(Some((150, 50)), &p), Some((Due::Passive, 50)));
    assert_eq!(due(Some((300, 250)), &p), None);
    assert_eq!(due(Some((400, 390)), &p), Some((Due::Tail, 390)));
    // All copied: the next write starts the WAL again.
    assert_eq!(due(Some((400, 400)), &p), None);
}
