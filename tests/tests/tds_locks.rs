//! The TDS test server's built-in application locks and sessions, driven by
//! the real tiberius client: `sp_getapplock` grant / wait / timeout /
//! release / re-acquire, validation (-999), session and transaction owners,
//! waits ended by ATTENTION or disconnect, and a disconnected client's
//! session that keeps its lock until its request has run to its end.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use baton_tests::tds::*;
use tds_common::{Conn, exec, one_row, server_error};
use tiberius::{Command, CommandResult, EncryptionLevel};

pub mod tds_common;

const WAIT: Duration = Duration::from_secs(5);
const RES: &str = "baton:fleet-a:job:42";

async fn connect(server: &TdsServer) -> Conn {
    let c = tds_common::config(server, "u", "p", EncryptionLevel::NotSupported);
    tds_common::connect(c).await.expect("login")
}

/// `sp_getapplock` as the agent sends it (contract L1); the return status.
async fn get_lock(client: &mut Conn, resource: &str, owner: &str, timeout_ms: i32) -> i32 {
    let mut cmd = Command::new("sp_getapplock");
    cmd.bind_param("@Resource", resource.to_string());
    cmd.bind_param("@LockMode", "Exclusive");
    cmd.bind_param("@LockOwner", owner.to_string());
    cmd.bind_param("@LockTimeout", timeout_ms);
    exec(client, cmd)
        .await
        .expect("sp_getapplock")
        .return_code() as i32
}

/// `sp_releaseapplock` (contract L2).
async fn release_lock(client: &mut Conn, resource: &str) -> tiberius::Result<CommandResult> {
    let mut cmd = Command::new("sp_releaseapplock");
    cmd.bind_param("@Resource", resource.to_string());
    cmd.bind_param("@LockOwner", "Session");
    exec(client, cmd).await
}

async fn batch(client: &mut Conn, sql: &str) {
    client
        .simple_query(sql)
        .await
        .expect("batch")
        .into_results()
        .await
        .expect("results");
}

fn grants(server: &TdsServer, resource: &str) -> Vec<LockGrant> {
    server
        .applocks()
        .into_iter()
        .filter(|g| g.resource == resource)
        .collect()
}

fn assert_no_overlap(grants: &[LockGrant]) {
    for (i, a) in grants.iter().enumerate() {
        for b in &grants[i + 1..] {
            assert!(!a.overlaps(b), "overlapping holds: {a:?} and {b:?}");
        }
    }
}

#[tokio::test]
async fn applock_grant_timeout_wait_release_and_reacquire() {
    baton_tests::init_crypto();
    let server = TdsServer::start(Script::new()).await.expect("start");
    let mut a = connect(&server).await;
    let mut b = connect(&server).await;

    assert_eq!(get_lock(&mut a, RES, "Session", 1000).await, 0, "granted");
    assert_eq!(get_lock(&mut b, RES, "Session", 0).await, -1, "no wait");
    assert_eq!(get_lock(&mut b, RES, "Session", 100).await, -1, "timed out");
    // Resource names are case-sensitive (binary compared).
    let upper = RES.to_uppercase();
    assert_eq!(get_lock(&mut b, &upper, "Session", 0).await, 0);
    release_lock(&mut b, &upper).await.expect("released");

    // B waits forever until A releases: status 1.
    let waiter = tokio::spawn(async move {
        let status = get_lock(&mut b, RES, "Session", -1).await;
        (status, b)
    });
    server
        .wait_for(WAIT, |l| {
            l.iter()
                .filter(|e| e.conn == 2)
                .filter_map(|e| e.request.as_rpc())
                .filter(|r| r.param("@LockTimeout").map(|p| &p.value) == Some(&Value::Int(-1)))
                .count()
                == 1
        })
        .await
        .expect("B's request arrived");
    assert!(!waiter.is_finished(), "B must wait while A holds the lock");
    let res = release_lock(&mut a, RES).await.expect("released");
    assert_eq!(res.return_code(), 0);
    let (status, mut b) = waiter.await.expect("waiter");
    assert_eq!(status, 1, "granted after waiting");

    // Releasing a lock A no longer holds: error 1223, status -999.
    let err = server_error(release_lock(&mut a, RES).await.expect_err("not held"));
    assert_eq!(err.code(), 1223);
    assert_eq!(err.class(), 16);
    assert_eq!(
        err.message(),
        format!(
            "Cannot release the application lock (Database Principal: 'public', Resource: \
             '{RES}') because it is not currently held."
        )
    );

    // Re-acquiring counts: B must release twice.
    assert_eq!(get_lock(&mut b, RES, "Session", 0).await, 0);
    release_lock(&mut b, RES).await.expect("first release");
    assert_eq!(get_lock(&mut a, RES, "Session", 0).await, -1, "still held");
    release_lock(&mut b, RES).await.expect("second release");
    assert_eq!(get_lock(&mut a, RES, "Session", 0).await, 0, "free now");

    let holds = grants(&server, RES);
    let who: Vec<(u64, bool, Option<LockRelease>)> = holds
        .iter()
        .map(|g| (g.conn, g.waited, g.released_by))
        .collect();
    assert_eq!(
        who,
        [
            (1, false, Some(LockRelease::Explicit)),
            (2, true, Some(LockRelease::Explicit)),
            (1, false, None),
        ]
    );
    assert!(holds.iter().all(|g| g.mode == LockMode::Exclusive));
    assert!(holds.iter().all(|g| g.owner == LockOwner::Session));
    assert_no_overlap(&holds);
}

#[tokio::test]
async fn applock_arguments_are_validated_like_sql_server() {
    baton_tests::init_crypto();
    // Declared procedures do not hide the system procedures.
    let script = Script::new().procedure(Procedure::new("dbo.usp_x"));
    let server = TdsServer::start(script).await.expect("start");
    let mut a = connect(&server).await;

    // The default owner is Transaction: outside one, message 15626 and -999.
    let mut cmd = Command::new("sp_getapplock");
    cmd.bind_param("@Resource", RES);
    cmd.bind_param("@LockMode", "Exclusive");
    let res = exec(&mut a, cmd).await.expect("no error");
    assert_eq!(res.return_code() as i32, -999);

    let mut cmd = Command::new("sys.sp_getapplock");
    cmd.bind_param("@Resource", RES);
    cmd.bind_param("@LockMode", "Exclusiv");
    cmd.bind_param("@LockOwner", "Session");
    let res = exec(&mut a, cmd).await.expect("no error");
    assert_eq!(res.return_code() as i32, -999, "unknown mode");

    // A missing @LockMode and an unknown parameter are binding errors.
    let mut cmd = Command::new("sp_getapplock");
    cmd.bind_param("@Resource", RES);
    let err = server_error(exec(&mut a, cmd).await.expect_err("201"));
    assert_eq!(err.code(), 201);
    assert_eq!(
        err.message(),
        "Procedure or function 'sp_getapplock' expects parameter '@LockMode', which was not \
         supplied."
    );
    let mut cmd = Command::new("sp_getapplock");
    cmd.bind_param("@Resource", RES);
    cmd.bind_param("@LockMode", "Exclusive");
    cmd.bind_param("@Timeout", 5i32);
    let err = server_error(exec(&mut a, cmd).await.expect_err("8145"));
    assert_eq!(err.code(), 8145);

    // A time-out below -1 is refused by xp_userlock.
    let mut cmd = Command::new("sp_getapplock");
    cmd.bind_param("@Resource", RES);
    cmd.bind_param("@LockMode", "Exclusive");
    cmd.bind_param("@LockOwner", "Session");
    cmd.bind_param("@LockTimeout", -5i32);
    let err = server_error(exec(&mut a, cmd).await.expect_err("1227"));
    assert_eq!(err.code(), 1227);
    assert!(server.applocks().is_empty(), "nothing was granted");
}

#[tokio::test]
async fn session_end_releases_session_locks_and_commit_releases_transaction_locks() {
    baton_tests::init_crypto();
    let server = TdsServer::start(Script::new()).await.expect("start");
    let mut a = connect(&server).await;
    let mut b = connect(&server).await;

    assert_eq!(get_lock(&mut a, RES, "Session", 1000).await, 0);
    a.close().await.expect("close");
    let log = server
        .wait_for(WAIT, |l| {
            l.iter()
                .any(|e| e.conn == 1 && matches!(e.request, Request::SessionEnded { .. }))
        })
        .await
        .expect("session ended");
    let ended = log
        .iter()
        .find(|e| e.conn == 1 && matches!(e.request, Request::SessionEnded { .. }))
        .map(|e| e.request.clone());
    assert_eq!(
        ended,
        Some(Request::SessionEnded {
            rolled_back: false,
            released_locks: vec![RES.to_string()],
        })
    );
    assert_eq!(get_lock(&mut b, RES, "Session", 0).await, 0);
    release_lock(&mut b, RES).await.expect("release");

    // A transaction-owned lock lasts as long as the transaction.
    let mut c = connect(&server).await;
    batch(&mut c, "SET XACT_ABORT ON; BEGIN TRANSACTION").await;
    assert_eq!(get_lock(&mut c, "tx-res", "Transaction", 0).await, 0);
    assert_eq!(get_lock(&mut b, "tx-res", "Session", 0).await, -1);
    batch(&mut c, "COMMIT TRANSACTION").await;
    assert_eq!(get_lock(&mut b, "tx-res", "Session", 0).await, 0);

    let holds = grants(&server, "tx-res");
    assert_eq!(holds.len(), 2);
    assert_eq!(holds[0].owner, LockOwner::Transaction);
    assert_eq!(holds[0].released_by, Some(LockRelease::TransactionEnd));
    assert_no_overlap(&holds);
    let first = grants(&server, RES);
    assert_eq!(first[0].released_by, Some(LockRelease::SessionEnd));
}

#[tokio::test]
async fn attention_and_disconnect_end_a_lock_wait_without_a_grant() {
    baton_tests::init_crypto();
    let server = TdsServer::start(Script::new().hold_applock(RES))
        .await
        .expect("start");
    let mut a = connect(&server).await;

    // ATTENTION while waiting: the request is abandoned, the session stays.
    let waiting = tokio::time::timeout(
        Duration::from_millis(200),
        get_lock(&mut a, RES, "Session", -1),
    )
    .await;
    assert!(waiting.is_err(), "the lock is held from outside");
    a.cancel_query().await.expect("attention acknowledged");
    assert!(server.release_applock(RES));
    assert_eq!(get_lock(&mut a, "other", "Session", 0).await, 0, "usable");
    assert!(
        grants(&server, RES).iter().all(|g| g.conn == 0),
        "no grant for the cancelled request"
    );

    // A disconnect while waiting ends the wait and the session.
    assert!(server.hold_applock(RES));
    let mut b = connect(&server).await;
    let waiter = tokio::spawn(async move { get_lock(&mut b, RES, "Session", -1).await });
    server
        .wait_for(WAIT, |l| {
            l.iter()
                .any(|e| e.conn == 2 && e.request.as_rpc().is_some())
        })
        .await
        .expect("B waits");
    waiter.abort();
    server
        .wait_for(WAIT, |l| {
            l.iter()
                .any(|e| e.conn == 2 && matches!(e.request, Request::SessionEnded { .. }))
        })
        .await
        .expect("B's session ended");
    assert!(server.release_applock(RES));
    let holds = grants(&server, RES);
    assert_eq!(holds.len(), 2);
    assert!(holds.iter().all(|g| g.conn == 0), "{holds:?}");
    assert_eq!(holds[0].released_by, Some(LockRelease::Outside));
}

/// The SIGKILLed agent case: the client disconnects mid-request, SQL Server
/// finishes the request (its reply goes nowhere), then ends the session:
/// the lock is held until then, and the work inside the transaction is
/// rolled back.
#[tokio::test]
async fn a_disconnected_session_keeps_its_lock_until_its_request_ends() {
    baton_tests::init_crypto();
    let ran = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Notify::new());
    let (counter, g) = (ran.clone(), gate.clone());
    // The procedure runs until the test opens the gate, then 100 ms more.
    let responder = Responder::dynamic(move |_ctx: Ctx| {
        let (counter, g) = (counter.clone(), g.clone());
        async move {
            g.notified().await;
            Reply::proc_return(0)
                .delay(Duration::from_millis(100))
                .then_run(move || {
                    counter.fetch_add(1, Ordering::SeqCst);
                })
        }
    });
    let script = Script::new()
        .procedure(Procedure::new("dbo.usp_long").param("@n", SqlType::Int))
        .on(Match::proc("dbo.usp_long"), responder);
    let server = TdsServer::start(script).await.expect("start");
    let mut a = connect(&server).await;
    assert_eq!(get_lock(&mut a, RES, "Session", 1000).await, 0);
    batch(&mut a, "SET XACT_ABORT ON; BEGIN TRANSACTION").await;
    let call = tokio::spawn(async move {
        let mut cmd = Command::new("[dbo].[usp_long]");
        cmd.bind_param("@n", 1i32);
        let _ = exec(&mut a, cmd).await;
    });
    server
        .wait_for(WAIT, |l| {
            l.iter()
                .any(|e| e.request.as_rpc().and_then(|r| r.name()) == Some("[dbo].[usp_long]"))
        })
        .await
        .expect("the call arrived");
    call.abort(); // the client dies mid-request
    server
        .wait_for(WAIT, |l| {
            l.iter()
                .any(|e| e.conn == 1 && e.request == Request::Disconnect)
        })
        .await
        .expect("disconnect seen");

    // The request is still running on the server: the lock is still held.
    let mut b = connect(&server).await;
    assert_eq!(get_lock(&mut b, RES, "Session", 0).await, -1);
    assert_eq!(server.trancount(1), 1, "A's transaction is still open");
    let waiter = tokio::spawn(async move { get_lock(&mut b, RES, "Session", -1).await });
    gate.notify_one();
    assert_eq!(waiter.await.expect("waiter"), 1, "granted after the wait");

    let log = server.log();
    let pos = |pred: &dyn Fn(&Entry) -> bool| log.iter().position(pred).expect("entry");
    let disconnect = pos(&|e| e.conn == 1 && e.request == Request::Disconnect);
    let ended = pos(&|e| e.conn == 1 && matches!(e.request, Request::SessionEnded { .. }));
    assert!(disconnect < ended);
    assert_eq!(
        log[ended].request,
        Request::SessionEnded {
            rolled_back: true,
            released_locks: vec![RES.to_string()],
        }
    );
    assert_eq!(ran.load(Ordering::SeqCst), 1, "the request ran to its end");
    let effects = server.effects("usp_long");
    assert_eq!(effects.len(), 1);
    assert_eq!(effects[0].state, EffectState::RolledBack);
    let holds = grants(&server, RES);
    assert_eq!(holds.len(), 2);
    assert_eq!(holds[0].released_by, Some(LockRelease::SessionEnd));
    assert!(holds[1].waited);
    assert_no_overlap(&holds);
}

#[tokio::test]
async fn run_steps_run_in_place_and_not_after_an_attention() {
    baton_tests::init_crypto();
    let ran = Arc::new(AtomicUsize::new(0));
    let (c1, c2) = (ran.clone(), ran.clone());
    let script = Script::new()
        .on(
            Match::sql("quick"),
            Reply::tokens(vec![])
                .then_run(move || {
                    c1.fetch_add(1, Ordering::SeqCst);
                })
                .then(vec![Token::done()]),
        )
        .on(
            Match::sql("stuck"),
            Reply::hang().then_run(move || {
                c2.fetch_add(100, Ordering::SeqCst);
            }),
        );
    let server = TdsServer::start(script).await.expect("start");
    let mut a = connect(&server).await;
    batch(&mut a, "EXEC quick").await;
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    let hung = tokio::time::timeout(Duration::from_millis(200), a.simple_query("EXEC stuck"))
        .await
        .is_err();
    assert!(hung);
    a.cancel_query().await.expect("attention");
    batch(&mut a, "EXEC quick").await;
    assert_eq!(
        ran.load(Ordering::SeqCst),
        2,
        "the run after the hang never ran"
    );
}

#[tokio::test]
async fn spid_is_per_connection() {
    baton_tests::init_crypto();
    let server = TdsServer::start(Script::new()).await.expect("start");
    let mut a = connect(&server).await;
    let mut b = connect(&server).await;
    for (client, want) in [(&mut a, spid(1)), (&mut b, spid(2))] {
        let row = one_row(client, "SELECT @@SPID").await;
        assert_eq!(row.get::<i16, _>(0), Some(want));
    }
}
