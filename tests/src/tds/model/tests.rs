use super::*;

#[test]
fn lock_modes_follow_sql_servers_compatibility_matrix() {
    use LockMode::*;
    let modes = [Shared, Update, IntentShared, IntentExclusive, Exclusive];
    // Rows: requested; columns: granted (S, U, IS, IX, X).
    let want = [
        [true, true, true, false, false],
        [true, false, true, false, false],
        [true, true, true, true, false],
        [false, false, true, true, false],
        [false, false, false, false, false],
    ];
    for (r, row) in modes.iter().zip(want) {
        for (g, ok) in modes.iter().zip(row) {
            assert_eq!(r.compatible(*g), ok, "{r:?} requested vs {g:?} granted");
        }
    }
    assert_eq!(LockMode::parse("exclusive  "), Some(Exclusive));
    assert_eq!(LockMode::parse("Exclusiv"), None);
}

#[test]
fn a_rollback_discards_pending_rows_and_effects_and_frees_transaction_locks() {
    let m = Model::default();
    m.create_ledger();
    let TxnChange::Began(Some(id)) = m.begin(1) else {
        panic!("no transaction");
    };
    let row = LedgerRow {
        fleet: "f".into(),
        job_id: 1,
        attempt: 1,
        token: 1,
        committed_at: chrono::DateTime::UNIX_EPOCH.naive_utc(),
        result: "{}".into(),
        conn: 1,
    };
    m.ledger_insert(1, row.clone()).expect("insert");
    m.effect(1, "dbo.p", vec![]);
    assert!(m.try_lock(1, Some(id), "r", LockMode::Exclusive, Instant::now(), false));
    assert!(matches!(m.ledger_get(2, "f", 1), Err(LedgerError::Blocked)));
    assert_eq!(m.rollback(1), TxnChange::RolledBack(id));
    assert!(matches!(m.ledger_get(2, "f", 1), Ok(None)));
    assert_eq!(m.effects(Some("p"))[0].state, EffectState::RolledBack);
    assert_eq!(
        m.lock_history()[0].released_by,
        Some(LockRelease::TransactionEnd)
    );
    // Autocommit: at once.
    m.ledger_insert(2, row).expect("insert");
    assert_eq!(m.ledger_rows().len(), 1);
}
