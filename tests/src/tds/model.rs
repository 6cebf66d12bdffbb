//! The server's built-in state, shared by all connections: sessions and their
//! transactions, application locks (with a history for no-overlap proofs),
//! the run ledger table and the effects of declared procedures.
//!
//! Everything lives under one mutex; every change wakes the waiters (lock
//! requests, readers blocked on an uncommitted ledger row, tests polling).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::NaiveDateTime;
use tokio::sync::Notify;

use super::record::{Param, normalize_name};

/// Who owns an application lock (`@LockOwner`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockOwner {
    /// Held until `sp_releaseapplock` or the session ends.
    Session,
    /// Held until `sp_releaseapplock` or the transaction ends.
    Transaction,
}

/// An application lock mode (`@LockMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    Shared,
    Update,
    IntentShared,
    IntentExclusive,
    Exclusive,
}

impl LockMode {
    /// `@LockMode` as SQL Server parses it (case-insensitive, trailing
    /// blanks ignored).
    pub fn parse(s: &str) -> Option<LockMode> {
        let s = s.trim_end_matches(' ').to_lowercase();
        Some(match s.as_str() {
            "shared" => LockMode::Shared,
            "update" => LockMode::Update,
            "intentshared" => LockMode::IntentShared,
            "intentexclusive" => LockMode::IntentExclusive,
            "exclusive" => LockMode::Exclusive,
            _ => return None,
        })
    }

    /// SQL Server's lock compatibility matrix (requested vs granted).
    pub fn compatible(self, granted: LockMode) -> bool {
        use LockMode::*;
        matches!(
            (self, granted),
            (Shared, Shared | Update | IntentShared)
                | (Update, Shared | IntentShared)
                | (
                    IntentShared,
                    Shared | Update | IntentShared | IntentExclusive
                )
                | (IntentExclusive, IntentShared | IntentExclusive)
        )
    }
}

/// How a lock grant ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockRelease {
    /// `sp_releaseapplock` (as many times as it was acquired).
    Explicit,
    /// The session ended (client disconnect, after its last request ended).
    SessionEnd,
    /// The owning transaction committed or rolled back.
    TransactionEnd,
    /// [`super::TdsServer::release_applock`] (a lock held from outside).
    Outside,
}

/// One hold of an application lock, from grant to release. Re-acquiring a
/// lock the owner holds counts up the same grant; it ends when the count
/// drops to zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockGrant {
    pub resource: String,
    pub mode: LockMode,
    pub owner: LockOwner,
    /// The connection (0: held from outside, see
    /// [`super::TdsServer::hold_applock`]).
    pub conn: u64,
    pub requested_at: Instant,
    pub granted_at: Instant,
    /// The request had to wait (return status 1).
    pub waited: bool,
    pub released_at: Option<Instant>,
    pub released_by: Option<LockRelease>,
}

impl LockGrant {
    /// Whether this hold and `other` overlapped in time.
    pub fn overlaps(&self, other: &LockGrant) -> bool {
        let end = |g: &LockGrant| g.released_at.unwrap_or_else(Instant::now);
        self.granted_at < end(other) && other.granted_at < end(self)
    }
}

/// A committed row of `dbo.baton_ledger`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRow {
    pub fleet: String,
    pub job_id: i64,
    pub attempt: i32,
    pub token: i64,
    /// `SYSUTCDATETIME()` at the insert, to the millisecond.
    pub committed_at: NaiveDateTime,
    pub result: String,
    /// The connection that inserted it (0: seeded by the script).
    pub conn: u64,
}

/// Where an effect stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EffectState {
    /// Inside a transaction that has not ended yet.
    Pending,
    Committed,
    /// Its transaction rolled back (explicitly, by XACT_ABORT, or at session
    /// end).
    RolledBack,
}

/// A completed RPC to a declared procedure (no error, no ATTENTION).
#[derive(Debug, Clone, PartialEq)]
pub struct Effect {
    /// The procedure name as sent.
    pub proc: String,
    pub conn: u64,
    pub params: Vec<Param>,
    /// The transaction it belonged to (its descriptor as a little-endian
    /// u64), if any.
    pub txn: Option<u64>,
    pub state: EffectState,
    pub at: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Txn {
    id: u64,
    depth: u32,
}

#[derive(Debug, Default)]
struct Sess {
    xact_abort: bool,
    txn: Option<Txn>,
}

/// A lock held now: owner `(conn, txn)` with `txn` set for transaction
/// owners.
#[derive(Debug)]
struct Held {
    resource: String,
    conn: u64,
    txn: Option<u64>,
    mode: LockMode,
    count: u32,
    grant: usize,
}

#[derive(Debug, Clone)]
struct Pending {
    txn: u64,
    row: LedgerRow,
}

#[derive(Debug, Default)]
struct State {
    sessions: HashMap<u64, Sess>,
    next_txn: u64,
    held: Vec<Held>,
    history: Vec<LockGrant>,
    /// `None` while `dbo.baton_ledger` does not exist.
    ledger: Option<BTreeMap<(String, i64), LedgerRow>>,
    pending: Vec<Pending>,
    effects: Vec<Effect>,
}

/// What a ledger statement found.
#[derive(Debug)]
pub(crate) enum LedgerError {
    /// Error 208: the table does not exist.
    Missing,
    /// Error 2627: the key exists.
    Duplicate,
    /// Another session's uncommitted row holds the key: wait.
    Blocked,
}

/// The outcome of a transaction statement.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TxnChange {
    /// A transaction started (descriptor) or a nested level was added (`None`).
    Began(Option<u64>),
    /// The outermost level committed (descriptor), or a nested one (`None`).
    Committed(Option<u64>),
    RolledBack(u64),
    /// COMMIT/ROLLBACK without a transaction.
    NoTransaction,
}

/// The shared built-in state.
#[derive(Debug)]
pub(crate) struct Model {
    state: Mutex<State>,
    pub(crate) changed: Notify,
}

impl Default for Model {
    fn default() -> Self {
        Model {
            state: Mutex::new(State {
                next_txn: 0x0000_0001_0000_0000,
                ..State::default()
            }),
            changed: Notify::new(),
        }
    }
}

/// A guard that wakes waiters when dropped (every change goes through it),
/// unless [`Guard::unchanged`] says nothing changed (a waiter that woke
/// itself would spin).
struct Guard<'a> {
    state: MutexGuard<'a, State>,
    changed: &'a Notify,
    dirty: bool,
}

impl Guard<'_> {
    fn unchanged(&mut self) {
        self.dirty = false;
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        if self.dirty {
            self.changed.notify_waiters();
        }
    }
}

impl std::ops::Deref for Guard<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        &self.state
    }
}

impl std::ops::DerefMut for Guard<'_> {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.state
    }
}

impl Model {
    fn lock(&self) -> Guard<'_> {
        let state = match self.state.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        Guard {
            state,
            changed: &self.changed,
            dirty: true,
        }
    }

    fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        match self.state.lock() {
            Ok(s) => f(&s),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }

    // --- sessions and transactions ---

    /// The open transaction of `conn` (its id = descriptor), if any.
    pub(crate) fn txn(&self, conn: u64) -> Option<u64> {
        self.read(|s| s.sessions.get(&conn).and_then(|x| x.txn).map(|t| t.id))
    }

    /// `@@TRANCOUNT` of `conn`.
    pub(crate) fn trancount(&self, conn: u64) -> u32 {
        self.read(|s| {
            s.sessions
                .get(&conn)
                .and_then(|x| x.txn)
                .map_or(0, |t| t.depth)
        })
    }

    pub(crate) fn xact_abort(&self, conn: u64) -> bool {
        self.read(|s| s.sessions.get(&conn).is_some_and(|x| x.xact_abort))
    }

    pub(crate) fn set_xact_abort(&self, conn: u64, on: bool) {
        self.lock().sessions.entry(conn).or_default().xact_abort = on;
    }

    /// `BEGIN TRANSACTION`.
    pub(crate) fn begin(&self, conn: u64) -> TxnChange {
        let mut g = self.lock();
        let st: &mut State = &mut g;
        let sess = st.sessions.entry(conn).or_default();
        match sess.txn.as_mut() {
            Some(t) => {
                t.depth += 1;
                TxnChange::Began(None)
            }
            None => {
                let id = st.next_txn;
                st.next_txn += 1;
                sess.txn = Some(Txn { id, depth: 1 });
                TxnChange::Began(Some(id))
            }
        }
    }

    /// `COMMIT TRANSACTION`: the outermost level makes the transaction's
    /// effects and ledger rows durable and releases its locks.
    pub(crate) fn commit(&self, conn: u64) -> TxnChange {
        let mut g = self.lock();
        let Some(sess) = g.sessions.get_mut(&conn) else {
            return TxnChange::NoTransaction;
        };
        let Some(t) = sess.txn.as_mut() else {
            return TxnChange::NoTransaction;
        };
        if t.depth > 1 {
            t.depth -= 1;
            return TxnChange::Committed(None);
        }
        let id = t.id;
        sess.txn = None;
        g.end_txn(id, true);
        TxnChange::Committed(Some(id))
    }

    /// `ROLLBACK TRANSACTION` (all levels), XACT_ABORT, or session end.
    pub(crate) fn rollback(&self, conn: u64) -> TxnChange {
        let mut g = self.lock();
        let Some(t) = g.sessions.get_mut(&conn).and_then(|s| s.txn.take()) else {
            return TxnChange::NoTransaction;
        };
        g.end_txn(t.id, false);
        TxnChange::RolledBack(t.id)
    }

    /// The session ended: its transaction rolls back, its locks are
    /// released. Returns (rolled back, resources released).
    pub(crate) fn end_session(&self, conn: u64) -> (bool, Vec<String>) {
        let rolled_back = matches!(self.rollback(conn), TxnChange::RolledBack(_));
        let mut g = self.lock();
        g.sessions.remove(&conn);
        let released = g.release_where(|h| h.conn == conn, LockRelease::SessionEnd);
        (rolled_back, released)
    }

    // --- application locks ---

    /// Try to grant now; `Some(grant index)` when granted.
    pub(crate) fn try_lock(
        &self,
        conn: u64,
        txn: Option<u64>,
        resource: &str,
        mode: LockMode,
        requested_at: Instant,
        waited: bool,
    ) -> bool {
        let mut g = self.lock();
        if let Some(h) = g
            .held
            .iter_mut()
            .find(|h| h.resource == resource && h.conn == conn && h.txn == txn)
        {
            h.count += 1;
            return true;
        }
        let blocked = g
            .held
            .iter()
            .any(|h| h.resource == resource && h.conn != conn && !mode.compatible(h.mode));
        if blocked {
            g.unchanged();
            return false;
        }
        let grant = g.history.len();
        g.history.push(LockGrant {
            resource: resource.to_string(),
            mode,
            owner: if txn.is_some() {
                LockOwner::Transaction
            } else {
                LockOwner::Session
            },
            conn,
            requested_at,
            granted_at: Instant::now(),
            waited,
            released_at: None,
            released_by: None,
        });
        g.held.push(Held {
            resource: resource.to_string(),
            conn,
            txn,
            mode,
            count: 1,
            grant,
        });
        true
    }

    /// Wait for the lock (`timeout` `None`: forever); the status
    /// `sp_getapplock` returns: 0 granted at once, 1 after waiting, -1 timed
    /// out. Dropping the future abandons the request.
    pub(crate) async fn acquire(
        &self,
        conn: u64,
        txn: Option<u64>,
        resource: &str,
        mode: LockMode,
        timeout: Option<Duration>,
    ) -> i32 {
        let requested_at = Instant::now();
        let deadline = timeout.map(|d| tokio::time::Instant::now() + d);
        let mut waited = false;
        loop {
            let notified = self.changed.notified();
            if self.try_lock(conn, txn, resource, mode, requested_at, waited) {
                return i32::from(waited);
            }
            waited = true;
            match deadline {
                Some(d) => {
                    if tokio::time::timeout_at(d, notified).await.is_err() {
                        return -1;
                    }
                }
                None => notified.await,
            }
        }
    }

    /// `sp_releaseapplock`: one count of the owner's hold; false when the
    /// owner does not hold it.
    pub(crate) fn unlock(&self, conn: u64, txn: Option<u64>, resource: &str) -> bool {
        let mut g = self.lock();
        let Some(i) = g
            .held
            .iter()
            .position(|h| h.resource == resource && h.conn == conn && h.txn == txn)
        else {
            g.unchanged();
            return false;
        };
        g.held[i].count -= 1;
        if g.held[i].count == 0 {
            let h = g.held.remove(i);
            g.close_grant(h.grant, LockRelease::Explicit);
        }
        true
    }

    /// A lock held by an outside session (connection 0) until
    /// [`Model::release_outside`].
    pub(crate) fn hold_outside(&self, resource: &str) -> bool {
        self.try_lock(
            0,
            None,
            resource,
            LockMode::Exclusive,
            Instant::now(),
            false,
        )
    }

    pub(crate) fn release_outside(&self, resource: &str) -> bool {
        let mut g = self.lock();
        !g.release_where(
            |h| h.conn == 0 && h.resource == resource,
            LockRelease::Outside,
        )
        .is_empty()
    }

    pub(crate) fn lock_history(&self) -> Vec<LockGrant> {
        self.read(|s| s.history.clone())
    }

    // --- the ledger ---

    /// Create `dbo.baton_ledger` if missing.
    pub(crate) fn create_ledger(&self) {
        let mut g = self.lock();
        if g.ledger.is_none() {
            g.ledger = Some(BTreeMap::new());
        }
    }

    /// Seed a committed row (creates the table).
    pub(crate) fn seed_ledger(&self, row: LedgerRow) {
        let mut g = self.lock();
        let key = (row.fleet.clone(), row.job_id);
        g.ledger.get_or_insert_with(BTreeMap::new).insert(key, row);
    }

    pub(crate) fn ledger_exists(&self) -> bool {
        self.read(|s| s.ledger.is_some())
    }

    /// The committed rows.
    pub(crate) fn ledger_rows(&self) -> Vec<LedgerRow> {
        self.read(|s| {
            s.ledger
                .as_ref()
                .map(|l| l.values().cloned().collect())
                .unwrap_or_default()
        })
    }

    /// The row `conn` sees for the key (read committed: another session's
    /// uncommitted insert of the key blocks the reader).
    pub(crate) fn ledger_get(
        &self,
        conn: u64,
        fleet: &str,
        job_id: i64,
    ) -> Result<Option<LedgerRow>, LedgerError> {
        self.read(|s| {
            let Some(table) = &s.ledger else {
                return Err(LedgerError::Missing);
            };
            let own = s.sessions.get(&conn).and_then(|x| x.txn).map(|t| t.id);
            for p in &s.pending {
                if p.row.fleet == fleet && p.row.job_id == job_id {
                    if Some(p.txn) == own {
                        return Ok(Some(p.row.clone()));
                    }
                    return Err(LedgerError::Blocked);
                }
            }
            Ok(table.get(&(fleet.to_string(), job_id)).cloned())
        })
    }

    /// Insert a row: pending in `conn`'s transaction, or committed at once.
    pub(crate) fn ledger_insert(&self, conn: u64, row: LedgerRow) -> Result<(), LedgerError> {
        let mut g = self.lock();
        let own = g.sessions.get(&conn).and_then(|x| x.txn).map(|t| t.id);
        let key = (row.fleet.clone(), row.job_id);
        let refused = match &g.ledger {
            None => Some(LedgerError::Missing),
            Some(table) if table.contains_key(&key) => Some(LedgerError::Duplicate),
            Some(_) => g
                .pending
                .iter()
                .find(|p| p.row.fleet == row.fleet && p.row.job_id == row.job_id)
                .map(|p| {
                    if Some(p.txn) == own {
                        LedgerError::Duplicate
                    } else {
                        LedgerError::Blocked
                    }
                }),
        };
        if let Some(e) = refused {
            g.unchanged();
            return Err(e);
        }
        match own {
            Some(txn) => g.pending.push(Pending { txn, row }),
            None => {
                if let Some(t) = g.ledger.as_mut() {
                    t.insert(key, row);
                }
            }
        }
        Ok(())
    }

    // --- effects ---

    /// Record a completed call of a declared procedure.
    pub(crate) fn effect(&self, conn: u64, proc: &str, params: Vec<Param>) {
        let mut g = self.lock();
        let txn = g.sessions.get(&conn).and_then(|x| x.txn).map(|t| t.id);
        g.effects.push(Effect {
            proc: proc.to_string(),
            conn,
            params,
            txn,
            state: if txn.is_some() {
                EffectState::Pending
            } else {
                EffectState::Committed
            },
            at: Instant::now(),
        });
    }

    /// The effects of `proc` (bracket quoting and case ignored; `dbo.`
    /// optional), or of every procedure with `None`.
    pub(crate) fn effects(&self, proc: Option<&str>) -> Vec<Effect> {
        let same = |a: &str, b: &str| {
            let (a, b) = (normalize_name(a), normalize_name(b));
            let strip = |s: &str| s.strip_prefix("dbo.").map(str::to_string);
            a == b || strip(&a).as_deref() == Some(&b) || strip(&b).as_deref() == Some(&a)
        };
        self.read(|s| {
            s.effects
                .iter()
                .filter(|e| proc.is_none_or(|p| same(p, &e.proc)))
                .cloned()
                .collect()
        })
    }
}

impl State {
    fn close_grant(&mut self, grant: usize, by: LockRelease) {
        if let Some(g) = self.history.get_mut(grant) {
            g.released_at = Some(Instant::now());
            g.released_by = Some(by);
        }
    }

    fn release_where(&mut self, pred: impl Fn(&Held) -> bool, by: LockRelease) -> Vec<String> {
        let (gone, kept): (Vec<Held>, Vec<Held>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|h| pred(h));
        self.held = kept;
        gone.into_iter()
            .map(|h| {
                self.close_grant(h.grant, by);
                h.resource
            })
            .collect()
    }

    fn end_txn(&mut self, id: u64, commit: bool) {
        for e in self.effects.iter_mut().filter(|e| e.txn == Some(id)) {
            if e.state == EffectState::Pending {
                e.state = if commit {
                    EffectState::Committed
                } else {
                    EffectState::RolledBack
                };
            }
        }
        let (mine, rest): (Vec<Pending>, Vec<Pending>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| p.txn == id);
        self.pending = rest;
        if commit && let Some(table) = self.ledger.as_mut() {
            for p in mine {
                table.insert((p.row.fleet.clone(), p.row.job_id), p.row);
            }
        }
        self.release_where(|h| h.txn == Some(id), LockRelease::TransactionEnd);
    }
}

#[cfg(test)]
mod tests;
