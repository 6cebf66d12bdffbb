//! The TDS test server's built-in transactions, run ledger and effects,
//! driven by the real tiberius client: ENVCHANGE 8/9/10 and the descriptor
//! tiberius attaches to later requests, `@@TRANCOUNT`, XACT_ABORT rollback
//! on an error or an ATTENTION, the ledger statements of the wire contract
//! (visible after COMMIT, blocked reads, 2627, 208), effects committed or
//! rolled back with their transaction.

use std::time::Duration;

use baton_tests::tds::*;
use tds_common::{Conn, exec, one_row, server_error};
use tiberius::{Command, CommandResult, EncryptionLevel, Row};

pub mod tds_common;

const WAIT: Duration = Duration::from_secs(5);
const BEGIN: &str = "SET XACT_ABORT ON; BEGIN TRANSACTION";

async fn connect(server: &TdsServer) -> Conn {
    let mut c = tds_common::config(server, "u", "p", EncryptionLevel::NotSupported);
    c.database("jobs");
    tds_common::connect(c).await.expect("login")
}

async fn batch(client: &mut Conn, sql: &str) -> tiberius::Result<()> {
    client.simple_query(sql).await?.into_results().await?;
    Ok(())
}

async fn trancount(client: &mut Conn) -> i32 {
    let row = one_row(client, "SELECT @@TRANCOUNT").await;
    row.get::<i32, _>(0).expect("int")
}

/// Contract T2.
async fn ledger_get(client: &mut Conn, fleet: &str, job: i64) -> tiberius::Result<Option<Row>> {
    client
        .query(LEDGER_SELECT, &[&fleet, &job])
        .await?
        .into_row()
        .await
}

/// Contract T5.
async fn ledger_put(
    client: &mut Conn,
    fleet: &str,
    job: i64,
    attempt: i32,
) -> tiberius::Result<()> {
    let token = 100 + i64::from(attempt);
    let result = format!("{{\"attempt\":{attempt}}}");
    client
        .execute(LEDGER_INSERT, &[&fleet, &job, &attempt, &token, &result])
        .await?;
    Ok(())
}

fn descriptor_of(server: &TdsServer, conn: u64, sql: &str) -> Vec<u64> {
    server
        .log()
        .iter()
        .filter(|e| e.conn == conn && e.request.sql() == Some(sql))
        .map(|e| e.descriptor)
        .collect()
}

#[tokio::test]
async fn transactions_send_envchange_and_tiberius_attaches_the_descriptor() {
    baton_tests::init_crypto();
    let server = TdsServer::start(Script::new()).await.expect("start");
    let mut a = connect(&server).await;

    assert_eq!(trancount(&mut a).await, 0);
    batch(&mut a, BEGIN).await.expect("begin");
    assert_eq!(trancount(&mut a).await, 1);
    batch(&mut a, "BEGIN TRAN").await.expect("nested");
    assert_eq!(trancount(&mut a).await, 2);
    batch(&mut a, "COMMIT").await.expect("inner commit");
    assert_eq!(trancount(&mut a).await, 1);
    batch(&mut a, "COMMIT TRANSACTION").await.expect("commit");
    assert_eq!(trancount(&mut a).await, 0);

    // The descriptor: none before BEGIN, the same one while the
    // transaction is open (tiberius took it from ENVCHANGE 8), none after
    // the COMMIT's ENVCHANGE 9.
    let seen = descriptor_of(&server, 1, "SELECT @@TRANCOUNT");
    assert_eq!(seen.len(), 5);
    assert_eq!(seen[0], 0);
    assert_ne!(seen[1], 0);
    assert_eq!(seen[1..4], [seen[1], seen[1], seen[1]]);
    assert_eq!(seen[4], 0);
    assert_eq!(descriptor_of(&server, 1, "COMMIT TRANSACTION"), [seen[1]]);

    // A rollback: ENVCHANGE 10 clears it too; a new transaction has a new
    // descriptor.
    batch(&mut a, "BEGIN TRANSACTION").await.expect("begin");
    assert_eq!(trancount(&mut a).await, 1);
    batch(&mut a, "IF @@TRANCOUNT > 0 ROLLBACK TRANSACTION")
        .await
        .expect("rollback");
    assert_eq!(trancount(&mut a).await, 0);
    let seen = descriptor_of(&server, 1, "SELECT @@TRANCOUNT");
    assert_ne!(seen[5], 0);
    assert_ne!(seen[5], seen[1]);
    assert_eq!(seen[6], 0);

    // Nothing to end: the guarded rollback is a no-op, the others fail.
    batch(&mut a, "IF @@TRANCOUNT > 0 ROLLBACK TRANSACTION")
        .await
        .expect("no-op");
    let err = server_error(batch(&mut a, "COMMIT TRANSACTION").await.expect_err("3902"));
    assert_eq!(err.code(), 3902);
    assert_eq!(
        err.message(),
        "The COMMIT TRANSACTION request has no corresponding BEGIN TRANSACTION."
    );
    let err = server_error(batch(&mut a, "ROLLBACK").await.expect_err("3903"));
    assert_eq!(err.code(), 3903);

    // Transactions are per session.
    let mut b = connect(&server).await;
    batch(&mut a, BEGIN).await.expect("begin");
    assert_eq!(trancount(&mut b).await, 0);
    assert_eq!(server.trancount(1), 1);
}

fn procs() -> Script {
    Script::new()
        .procedure(Procedure::new("dbo.usp_transfer").param("@amount", SqlType::Int))
        .procedure(Procedure::new("dbo.usp_fail"))
        .on(
            Match::proc("dbo.usp_fail"),
            Reply::proc_error(
                ServerMessage::new(50000, 16, "boom")
                    .procedure("usp_fail")
                    .line(3),
                -4,
            ),
        )
}

async fn transfer(client: &mut Conn, amount: i32) -> tiberius::Result<CommandResult> {
    let mut cmd = Command::new("[dbo].[usp_transfer]");
    cmd.bind_param("@amount", amount);
    exec(client, cmd).await
}

#[tokio::test]
async fn effects_commit_with_their_transaction_and_xact_abort_rolls_back_on_error() {
    baton_tests::init_crypto();
    let server = TdsServer::start(procs()).await.expect("start");
    let mut a = connect(&server).await;

    // Outside a transaction: committed at once.
    transfer(&mut a, 1).await.expect("call");
    // Committed with the transaction.
    batch(&mut a, BEGIN).await.expect("begin");
    transfer(&mut a, 2).await.expect("call");
    let pending = server.effects("usp_transfer");
    assert_eq!(pending[1].state, EffectState::Pending);
    assert!(pending[1].txn.is_some());
    batch(&mut a, "COMMIT TRANSACTION").await.expect("commit");
    // XACT_ABORT: the procedure's error dooms the transaction.
    batch(&mut a, BEGIN).await.expect("begin");
    transfer(&mut a, 3).await.expect("call");
    let err = server_error(
        exec(&mut a, Command::new("dbo.usp_fail"))
            .await
            .expect_err("50000"),
    );
    assert_eq!(err.code(), 50000);
    assert_eq!(trancount(&mut a).await, 0, "rolled back by the error");
    let last = server.log().last().map(|e| e.descriptor);
    assert_eq!(
        last,
        Some(0),
        "tiberius dropped the descriptor on ENVCHANGE 10"
    );
    // An explicit rollback.
    batch(&mut a, BEGIN).await.expect("begin");
    transfer(&mut a, 4).await.expect("call");
    batch(&mut a, "IF @@TRANCOUNT > 0 ROLLBACK TRANSACTION")
        .await
        .expect("rollback");
    // A refused call (wrong parameter) is no effect.
    let mut cmd = Command::new("dbo.usp_transfer");
    cmd.bind_param("@nope", 5i32);
    assert_eq!(
        server_error(exec(&mut a, cmd).await.expect_err("8145")).code(),
        8145
    );

    let states: Vec<(Value, EffectState)> = server
        .effects("[dbo].[usp_transfer]")
        .into_iter()
        .map(|e| (e.params[0].value.clone(), e.state))
        .collect();
    assert_eq!(
        states,
        [
            (Value::Int(1), EffectState::Committed),
            (Value::Int(2), EffectState::Committed),
            (Value::Int(3), EffectState::RolledBack),
            (Value::Int(4), EffectState::RolledBack),
        ]
    );
    assert!(
        server.effects("usp_fail").is_empty(),
        "a failed call is no effect"
    );
}

#[tokio::test]
async fn attention_under_xact_abort_rolls_the_transaction_back() {
    baton_tests::init_crypto();
    let script = procs().on(Match::sql("WAITFOR"), Reply::hang());
    let server = TdsServer::start(script).await.expect("start");
    let mut a = connect(&server).await;
    batch(&mut a, BEGIN).await.expect("begin");
    transfer(&mut a, 1).await.expect("call");
    let hung = tokio::time::timeout(
        Duration::from_millis(200),
        a.simple_query("WAITFOR DELAY '01:00:00'"),
    )
    .await
    .is_err();
    assert!(hung);
    a.cancel_query().await.expect("attention");
    assert_eq!(trancount(&mut a).await, 0);
    assert_eq!(
        server.effects("usp_transfer")[0].state,
        EffectState::RolledBack
    );
}

#[tokio::test]
async fn ledger_rows_are_visible_after_commit_and_keys_are_unique() {
    baton_tests::init_crypto();
    let server = TdsServer::start(Script::new()).await.expect("start");
    let mut a = connect(&server).await;
    let mut b = connect(&server).await;

    // No table yet: 208.
    let err = server_error(ledger_get(&mut a, "fleet-a", 7).await.expect_err("208"));
    assert_eq!(err.code(), 208);
    assert_eq!(err.message(), "Invalid object name 'dbo.baton_ledger'.");
    let err = server_error(ledger_put(&mut a, "fleet-a", 7, 1).await.expect_err("208"));
    assert_eq!(err.code(), 208);
    batch(&mut a, LEDGER_DDL).await.expect("create");
    batch(&mut a, LEDGER_DDL)
        .await
        .expect("create is idempotent");
    assert!(server.ledger_exists());
    assert!(
        ledger_get(&mut a, "fleet-a", 7)
            .await
            .expect("get")
            .is_none()
    );

    // Inserted in A's transaction: A sees it, nobody else yet.
    batch(&mut a, BEGIN).await.expect("begin");
    ledger_put(&mut a, "fleet-a", 7, 1).await.expect("insert");
    let own = ledger_get(&mut a, "fleet-a", 7).await.expect("get");
    assert_eq!(own.and_then(|r| r.get::<i32, _>("attempt")), Some(1));
    assert!(server.ledger_rows().is_empty(), "not committed");

    // B's read of the key waits for A's transaction (read committed).
    let reader = tokio::spawn(async move {
        let row = ledger_get(&mut b, "fleet-a", 7).await.expect("get");
        let row = row.map(|r| {
            let attempt = r.get::<i32, _>("attempt");
            let token = r.get::<i64, _>("token");
            let at = r.get::<&str, _>("committed_at").map(str::to_string);
            let result = r.get::<&str, _>("result").map(str::to_string);
            (attempt, token, at, result)
        });
        (row, b)
    });
    server
        .wait_for(WAIT, |l| {
            l.iter()
                .any(|e| e.conn == 2 && e.request.sql() == Some(LEDGER_SELECT))
        })
        .await
        .expect("B's read arrived");
    assert!(!reader.is_finished(), "B must wait for A's commit");
    batch(&mut a, "COMMIT TRANSACTION").await.expect("commit");
    let (row, mut b) = reader.await.expect("reader");
    let (attempt, token, at, result) = row.expect("a row after the commit");
    assert_eq!((attempt, token), (Some(1), Some(101)));
    assert_eq!(result.as_deref(), Some("{\"attempt\":1}"));

    let rows = server.ledger_rows();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].fleet.as_str(), rows[0].job_id, rows[0].attempt),
        ("fleet-a", 7, 1)
    );
    assert_eq!(rows[0].conn, 1);
    let at = at.expect("committed_at");
    let parsed = chrono::NaiveDateTime::parse_from_str(&at, "%Y-%m-%dT%H:%M:%S%.f");
    assert_eq!(parsed.ok(), Some(rows[0].committed_at), "style 127: {at}");
    assert!(!at.ends_with('Z') && at.len() <= 23, "{at}");

    // The key is taken: 2627, outside and inside a transaction (where
    // XACT_ABORT rolls the transaction back).
    let err = server_error(ledger_put(&mut b, "fleet-a", 7, 2).await.expect_err("2627"));
    assert_eq!(err.code(), 2627);
    assert_eq!(err.class(), 14);
    assert_eq!(
        err.message(),
        "Violation of PRIMARY KEY constraint 'pk_baton_ledger'. Cannot insert duplicate key in \
         object 'dbo.baton_ledger'. The duplicate key value is (fleet-a, 7)."
    );
    batch(&mut b, BEGIN).await.expect("begin");
    ledger_put(&mut b, "fleet-a", 8, 2)
        .await
        .expect("another key");
    let err = server_error(ledger_put(&mut b, "fleet-a", 7, 2).await.expect_err("2627"));
    assert_eq!(err.code(), 2627);
    assert_eq!(trancount(&mut b).await, 0, "XACT_ABORT rolled back");

    // A rolled back insert leaves nothing.
    batch(&mut a, BEGIN).await.expect("begin");
    ledger_put(&mut a, "fleet-a", 9, 1).await.expect("insert");
    batch(&mut a, "IF @@TRANCOUNT > 0 ROLLBACK TRANSACTION")
        .await
        .expect("rollback");
    let keys: Vec<i64> = server.ledger_rows().iter().map(|r| r.job_id).collect();
    assert_eq!(
        keys,
        [7],
        "job 8 rolled back by XACT_ABORT, job 9 explicitly"
    );
}

#[tokio::test]
async fn a_seeded_ledger_row_is_found_and_a_session_end_discards_pending_rows() {
    baton_tests::init_crypto();
    let script = Script::new().ledger_row("fleet-a", 1, 1, 11, "{\"done\":true}");
    let server = TdsServer::start(script).await.expect("start");
    let mut a = connect(&server).await;
    let row = ledger_get(&mut a, "fleet-a", 1)
        .await
        .expect("get")
        .expect("seeded row");
    assert_eq!(row.get::<i64, _>("token"), Some(11));
    assert_eq!(row.get::<&str, _>("result"), Some("{\"done\":true}"));

    // NULL is refused by the NOT NULL columns.
    let err = server_error(
        a.execute(
            LEDGER_INSERT,
            &[&"fleet-a", &2i64, &1i32, &Option::<i64>::None, &"{}"],
        )
        .await
        .expect_err("515"),
    );
    assert_eq!(err.code(), 515);

    batch(&mut a, BEGIN).await.expect("begin");
    ledger_put(&mut a, "fleet-a", 2, 1).await.expect("insert");
    a.close().await.expect("close");
    let log = server
        .wait_for(WAIT, |l| {
            l.iter()
                .any(|e| matches!(e.request, Request::SessionEnded { .. }))
        })
        .await
        .expect("session ended");
    assert!(log.iter().any(|e| e.request
        == Request::SessionEnded {
            rolled_back: true,
            released_locks: vec![],
        }));
    let keys: Vec<i64> = server.ledger_rows().iter().map(|r| r.job_id).collect();
    assert_eq!(keys, [1]);
}

#[tokio::test]
async fn script_rules_still_come_before_the_built_in_answers() {
    baton_tests::init_crypto();
    let script = Script::new().on(
        Match::batch("SELECT @@TRANCOUNT"),
        Reply::tokens(vec![
            Token::columns(vec![Column::new("", SqlType::Int)]),
            Token::row([7]),
            Token::done_rows(1),
        ]),
    );
    let server = TdsServer::start(script).await.expect("start");
    let mut a = connect(&server).await;
    assert_eq!(trancount(&mut a).await, 7);
    assert_eq!(server.trancount(1), 0);
}

#[tokio::test]
async fn a_procedure_that_commits_by_itself_ends_the_transaction_with_error_266() {
    baton_tests::init_crypto();
    let script = Script::new()
        .procedure(Procedure::new("dbo.usp_selfish"))
        .on(
            Match::proc("dbo.usp_selfish"),
            Reply::default()
                .then_commit()
                .then(vec![Token::ReturnStatus(0), Token::DoneProc(Done::new())]),
        );
    let server = TdsServer::start(script).await.expect("start");
    let mut a = connect(&server).await;
    batch(&mut a, BEGIN).await.expect("begin");
    let err = server_error(
        exec(&mut a, Command::new("[dbo].[usp_selfish]"))
            .await
            .expect_err("266"),
    );
    assert_eq!(err.code(), 266);
    assert_eq!(
        err.message(),
        "Transaction count after EXECUTE indicates a mismatching number of BEGIN and COMMIT \
         statements. Previous count = 1, current count = 0."
    );
    // Contract T4: the agent sees 0 and flags `ledger_warning`.
    assert_eq!(trancount(&mut a).await, 0);
    let effects = server.effects("usp_selfish");
    assert_eq!(effects.len(), 1);
    assert_eq!(effects[0].state, EffectState::Committed);
    // Outside a transaction its COMMIT fails with 3902.
    let err = server_error(
        exec(&mut a, Command::new("[dbo].[usp_selfish]"))
            .await
            .expect_err("3902"),
    );
    assert_eq!(err.code(), 3902);
}

#[tokio::test]
async fn dynamic_responders_see_the_sessions_transaction() {
    baton_tests::init_crypto();
    let script = Script::new().on(
        Match::sql("BACKUP DATABASE"),
        Responder::dynamic(|ctx: Ctx| async move {
            if ctx.trancount > 0 && ctx.descriptor != 0 {
                Reply::error(ServerMessage::new(
                    3021,
                    16,
                    "Cannot perform a backup or restore operation within a transaction.",
                ))
            } else {
                Reply::done()
            }
        }),
    );
    let server = TdsServer::start(script).await.expect("start");
    let mut a = connect(&server).await;
    batch(&mut a, "BACKUP DATABASE jobs TO DISK = 'x'")
        .await
        .expect("outside a transaction");
    batch(&mut a, BEGIN).await.expect("begin");
    let err = server_error(
        batch(&mut a, "BACKUP DATABASE jobs TO DISK = 'x'")
            .await
            .expect_err("3021"),
    );
    assert_eq!(err.code(), 3021);
    assert_eq!(trancount(&mut a).await, 0, "XACT_ABORT rolled back");
}
