//! Credentials without HTTP: secrets made and hashed ([`new_secret`],
//! [`hash_secret`]), who a token names ([`Principal`]: an operator token
//! or an agent), and the bounded in-memory cache of known credentials
//! ([`AuthCache`]).
//!
//! Secrets are 256-bit random values with a kind prefix; only their SHA-256
//! is stored (a slow password hash would only cost time on every poll). The
//! store owns the credentials and invalidates the cache after every commit
//! that changes one (revocation, re-enrollment). The HTTP side
//! (`api::auth`) hashes the bearer token, asks this cache, and falls back
//! to the store.
//!
//! The cache is bounded ([`CACHE_ENTRIES`]), an entry is trusted for its
//! TTL at most (a backstop for changes made by another process:
//! [`CACHE_TTL`] by default; a few seconds on PostgreSQL, where other
//! replicas revoke, see `store::postgres::identity`). Where other replicas
//! revoke, an agent's entry is trusted up to [`CACHE_TTL`] while the cache
//! is *vouched for* ([`AuthCache::vouch`]): the listener that hears the
//! other replicas' revocations heard, no longer than the short TTL ago, a
//! heartbeat of its own sent after every revocation it has not heard.
//! Unknown tokens are never cached. An epoch counter keeps a lookup that
//! raced an invalidation from putting the stale caller back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, Instant};

use baton_proto::auth::Role;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// SHA-256 of a secret, hex-encoded (what the store keeps).
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The cache key of a bearer token: its SHA-256 (never the token itself).
pub fn cache_key(token: &str) -> CacheKey {
    Sha256::digest(token.as_bytes()).into()
}

/// A new 256-bit secret with a kind prefix, e.g. `baton_op_<64 hex>`.
pub fn new_secret(prefix: &str) -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    format!("{prefix}{}", hex::encode(b))
}

/// A short random id for tokens (`t_…`, `e_…`).
pub fn new_id(prefix: &str) -> String {
    let mut b = [0u8; 6];
    rand::rng().fill_bytes(&mut b);
    format!("{prefix}{}", hex::encode(b))
}

/// An authenticated operator token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorPrincipal {
    /// Token id.
    pub token_id: String,
    /// Token name.
    pub name: String,
    /// Role.
    pub role: Role,
}

/// An authenticated agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentPrincipal {
    /// Agent id.
    pub id: String,
    /// Groups its enrollment token granted.
    pub allowed_groups: Vec<String>,
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub enum Principal {
    /// An operator token.
    Operator(OperatorPrincipal),
    /// An agent secret.
    Agent(AgentPrincipal),
}

impl Principal {
    /// How the audit log names the caller.
    pub fn actor(&self) -> String {
        match self {
            Principal::Operator(o) => format!("token:{}", o.name),
            Principal::Agent(a) => format!("agent:{}", a.id),
        }
    }

    /// How the audit log names the role.
    pub fn role_name(&self) -> &'static str {
        match self {
            Principal::Operator(o) => o.role.as_str(),
            Principal::Agent(_) => "agent",
        }
    }
}

/// Most credentials the [`AuthCache`] holds (a fleet of 10,000 agents plus
/// operators fits many times over).
pub const CACHE_ENTRIES: usize = 50_000;
/// Longest a cached credential is trusted without asking the store (the
/// default; the PostgreSQL backend, shared by several controllers, uses a
/// much shorter one). Every
/// credential change goes through this process's store and invalidates at
/// once, so this only bounds how long a change made behind its back (a hand
/// edit of the database) goes unseen. It is longer than the default poll
/// hold (25 s): an idle agent re-polls every hold, so a shorter life would
/// make every idle poll miss.
pub const CACHE_TTL: Duration = Duration::from_secs(60);

/// SHA-256 of a token (never the token itself).
pub type CacheKey = [u8; 32];

/// Known credentials: token hash → caller. See the module header.
pub struct AuthCache {
    inner: RwLock<CacheInner>,
    hits: AtomicU64,
    misses: AtomicU64,
    /// How long an entry is trusted ([`CACHE_TTL`] unless the backend
    /// says otherwise: shorter where other processes change credentials).
    ttl: Duration,
    /// How long an agent's entry is trusted while the cache is vouched for
    /// (`None`: never longer than `ttl`).
    vouched_ttl: Option<Duration>,
}

impl Default for AuthCache {
    fn default() -> Self {
        AuthCache::with_ttl(CACHE_TTL)
    }
}

#[derive(Default)]
struct CacheInner {
    map: HashMap<CacheKey, CacheEntry>,
    /// Bumped by every invalidation.
    epoch: u64,
    /// Until when every revocation committed elsewhere is known to have
    /// been heard here, less the short TTL (see [`AuthCache::vouch`]).
    vouched_until: Option<Instant>,
}

struct CacheEntry {
    principal: Principal,
    cached: Instant,
}

impl std::fmt::Debug for AuthCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthCache")
            .field("entries", &self.len())
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl AuthCache {
    /// An empty cache whose entries are trusted for `ttl` at most.
    pub fn with_ttl(ttl: Duration) -> Self {
        AuthCache {
            inner: RwLock::default(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            ttl,
            vouched_ttl: None,
        }
    }

    /// An empty cache whose entries are trusted for `ttl`, and agents'
    /// entries for [`CACHE_TTL`] while it is vouched for
    /// ([`AuthCache::vouch`]). Operators' entries keep `ttl`: operators
    /// call rarely, so the longer life would save nothing, and each read
    /// keeps their token's `last_used_at` as fresh as before.
    pub fn vouched(ttl: Duration) -> Self {
        AuthCache {
            vouched_ttl: Some(CACHE_TTL.max(ttl)),
            ..AuthCache::with_ttl(ttl)
        }
    }

    /// Every revocation committed before `heard_up_to` has been heard here
    /// (its invalidation done): agents' entries are trusted for the longer
    /// life until `heard_up_to` plus the short TTL, so a revocation heard
    /// of late or not at all is honoured as late as without vouching. The
    /// caller is the listener, with the send time of a heartbeat of its own
    /// it just heard (notifications arrive in commit order). Only moves
    /// forward.
    pub fn vouch(&self, heard_up_to: Instant) {
        if self.vouched_ttl.is_none() {
            return;
        }
        let until = heard_up_to + self.ttl;
        let mut inner = self.write();
        if inner.vouched_until.is_none_or(|v| v < until) {
            inner.vouched_until = Some(until);
        }
    }

    /// Whether `e` is still trusted at `now` (vouched for until `vouched`).
    fn fresh(&self, e: &CacheEntry, vouched: Option<Instant>, now: Instant) -> bool {
        if now < e.cached + self.ttl {
            return true;
        }
        match self.vouched_ttl {
            Some(long) => {
                matches!(e.principal, Principal::Agent(_))
                    && vouched.is_some_and(|v| now < v)
                    && now < e.cached + long
            }
            None => false,
        }
    }

    /// The longest any entry is trusted (what the sweep keeps).
    fn max_ttl(&self) -> Duration {
        self.vouched_ttl.unwrap_or(self.ttl)
    }

    /// How long an entry is trusted without asking the store.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, CacheInner> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, CacheInner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cached caller for `key`, if still fresh at `now`.
    pub fn get(&self, key: &CacheKey, now: Instant) -> Option<Principal> {
        let inner = self.read();
        let found = inner
            .map
            .get(key)
            .filter(|e| self.fresh(e, inner.vouched_until, now))
            .map(|e| e.principal.clone());
        drop(inner);
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Lookups answered from the cache and lookups that went to the store
    /// (unknown tokens included) so far.
    pub fn hits_and_misses(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    /// The current epoch; pass it to [`AuthCache::insert`].
    pub fn epoch(&self) -> u64 {
        self.read().epoch
    }

    /// Remember `principal` for `key`, unless an invalidation happened since
    /// `epoch` was read (the store answer may predate it). When full, stale
    /// entries go first; if it is still full the caller is not cached.
    pub fn insert(&self, key: CacheKey, principal: Principal, epoch: u64, now: Instant) {
        let mut inner = self.write();
        if inner.epoch != epoch {
            return;
        }
        if inner.map.len() >= CACHE_ENTRIES && !inner.map.contains_key(&key) {
            let max = self.max_ttl();
            inner.map.retain(|_, e| now < e.cached + max);
            if inner.map.len() >= CACHE_ENTRIES {
                return;
            }
        }
        inner.map.insert(
            key,
            CacheEntry {
                principal,
                cached: now,
            },
        );
    }

    /// Forget every cached credential of agent `id`.
    pub fn forget_agent(&self, id: &str) {
        self.forget(|p| matches!(p, Principal::Agent(a) if a.id == id));
    }

    /// Forget operator token `token_id`.
    pub fn forget_operator_token(&self, token_id: &str) {
        self.forget(|p| matches!(p, Principal::Operator(o) if o.token_id == token_id));
    }

    /// Forget everything.
    pub fn clear(&self) {
        self.forget(|_| true);
    }

    fn forget(&self, drop: impl Fn(&Principal) -> bool) {
        let mut inner = self.write();
        inner.epoch += 1;
        inner.map.retain(|_, e| !drop(&e.principal));
    }

    /// Credentials cached now (fresh or not yet swept).
    pub fn len(&self) -> usize {
        self.read().map.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests;
