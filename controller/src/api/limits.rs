//! Limits for callers without a credential, applied before anything of
//! theirs is read or stored.
//!
//! - **Concurrency**: at most `max_unauthenticated` requests without a known
//!   credential are in flight at once, and `max_unauthenticated_per_address`
//!   from one address (IPv6: one /64). The authentication middleware takes an
//!   [`UnauthPermit`] for every such request before the handler runs; past the
//!   per-address limit the answer is `429 rate_limited`, past the global one
//!   `503 overloaded`, both with `Connection: close` and without reading the
//!   body. Authenticated calls — agents' held polls above all — never count.
//! - **Enrollment rate** ([`EnrollGate`], an extractor that runs before the
//!   body is read): `enroll_per_minute` attempts per address (governor's
//!   GCRA, bursts of the same size), `429` with `Retry-After`. Where several
//!   controllers share the store (PostgreSQL), every attempt this one lets
//!   through is also counted in the store per address and clock minute
//!   ([`Limits::enroll_shared`]): past `enroll_per_minute` in that minute,
//!   whichever replicas took them, the attempt is refused too.
//! - **Audit of refused anonymous calls**: at most [`AUDIT_PER_ADDRESS`] rows a
//!   minute per address and [`AUDIT_GLOBAL`] in total; the rest are counted
//!   (`baton_audit_suppressed_total`) instead of written.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use baton_proto::ErrorCode;
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota};

use super::{ApiError, AppState};
use crate::listener::PeerAddr;
use crate::store::{self, Store, now_ms};

/// Refused anonymous calls audited per address per minute.
pub const AUDIT_PER_ADDRESS: u32 = 30;
/// Refused anonymous calls audited per minute in total.
pub const AUDIT_GLOBAL: u32 = 300;
/// Keyed limiters forget idle addresses once they track this many.
const FORGET_FROM: usize = 10_000;

/// The limits and their counters (shared by every request).
#[derive(Debug)]
pub struct Limits {
    enroll: DefaultKeyedRateLimiter<IpAddr>,
    enroll_per_minute: u32,
    audit_per_address: DefaultKeyedRateLimiter<IpAddr>,
    audit_global: DefaultDirectRateLimiter,
    in_flight: Mutex<InFlight>,
    max_total: usize,
    max_per_address: usize,
    /// Requests refused by the concurrency limits.
    pub refused_busy: AtomicU64,
    /// Enrollment attempts refused by the rate limit.
    pub refused_enroll: AtomicU64,
    /// Refused anonymous calls not written to the audit log.
    pub audit_suppressed: AtomicU64,
}

#[derive(Debug, Default)]
struct InFlight {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

/// Why a request without a credential was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// Its address has too many requests in flight.
    Address,
    /// Too many requests without credentials are in flight overall.
    Global,
}

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN))
}

/// The key of an address: IPv4 as is, IPv6 by its /64 (one host usually
/// holds a whole /64).
pub fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut s = v6.segments();
                s[4..].fill(0);
                IpAddr::V6(s.into())
            }
        },
    }
}

impl Limits {
    /// Limits from the config values.
    pub fn new(enroll_per_minute: u32, max_total: usize, max_per_address: usize) -> Arc<Self> {
        Arc::new(Limits {
            enroll: DefaultKeyedRateLimiter::keyed(per_minute(enroll_per_minute)),
            enroll_per_minute: enroll_per_minute.max(1),
            audit_per_address: DefaultKeyedRateLimiter::keyed(per_minute(AUDIT_PER_ADDRESS)),
            audit_global: DefaultDirectRateLimiter::direct(per_minute(AUDIT_GLOBAL)),
            in_flight: Mutex::new(InFlight::default()),
            max_total: max_total.max(1),
            max_per_address: max_per_address.max(1),
            refused_busy: AtomicU64::new(0),
            refused_enroll: AtomicU64::new(0),
            audit_suppressed: AtomicU64::new(0),
        })
    }

    /// Admit one request without a credential from `ip` (`None`: address
    /// unknown, counted globally only) until the permit is dropped.
    pub fn admit(self: &Arc<Self>, ip: Option<IpAddr>) -> Result<UnauthPermit, Busy> {
        let ip = ip.map(key);
        let mut f = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(ip) = ip
            && f.per_address.get(&ip).copied().unwrap_or(0) >= self.max_per_address
        {
            self.refused_busy.fetch_add(1, Ordering::Relaxed);
            return Err(Busy::Address);
        }
        if f.total >= self.max_total {
            self.refused_busy.fetch_add(1, Ordering::Relaxed);
            return Err(Busy::Global);
        }
        f.total += 1;
        if let Some(ip) = ip {
            *f.per_address.entry(ip).or_insert(0) += 1;
        }
        Ok(UnauthPermit {
            limits: self.clone(),
            ip,
        })
    }

    /// Requests without a credential in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }

    /// Take one enrollment attempt for `ip`; `Err(seconds)` to wait.
    pub fn enroll(&self, ip: IpAddr) -> Result<(), u64> {
        let ip = key(ip);
        if self.enroll.len() > FORGET_FROM {
            self.enroll.retain_recent();
        }
        self.enroll.check_key(&ip).map_err(|not_until| {
            self.refused_enroll.fetch_add(1, Ordering::Relaxed);
            let wait = not_until.wait_time_from(std::time::Instant::now());
            wait.as_secs().max(1)
        })
    }

    /// Count the enrollment attempt from `ip` in the store, for the limit
    /// that holds across controllers sharing it: `enroll_per_minute` per
    /// address and clock minute (`now`, Unix ms) in total. `Ok(Err(seconds))`
    /// until the next minute when past it; always `Ok(Ok(()))` on a store of
    /// one controller (SQLite: [`Limits::enroll`] sees every attempt).
    pub async fn enroll_shared(
        &self,
        store: &Store,
        ip: IpAddr,
        now: i64,
    ) -> store::Result<Result<(), u64>> {
        let minute = now.div_euclid(60_000);
        let Some(n) = store.enroll_attempt(&key(ip).to_string(), minute).await? else {
            return Ok(Ok(()));
        };
        if n <= self.enroll_per_minute {
            return Ok(Ok(()));
        }
        self.refused_enroll.fetch_add(1, Ordering::Relaxed);
        let wait_ms = (minute + 1) * 60_000 - now;
        Ok(Err(u64::try_from((wait_ms + 999) / 1000)
            .unwrap_or(1)
            .max(1)))
    }

    /// Whether a refused anonymous call from `ip` may be written to the
    /// audit log (else it is counted as suppressed).
    pub fn audit_refused_anonymous(&self, ip: Option<IpAddr>) -> bool {
        if self.audit_per_address.len() > FORGET_FROM {
            self.audit_per_address.retain_recent();
        }
        let address_ok = ip.is_none_or(|ip| self.audit_per_address.check_key(&key(ip)).is_ok());
        if address_ok && self.audit_global.check().is_ok() {
            return true;
        }
        let n = self.audit_suppressed.fetch_add(1, Ordering::Relaxed) + 1;
        if n == 1 || n.is_multiple_of(1000) {
            tracing::info!(
                suppressed = n,
                peer = ?ip,
                "Refused anonymous calls are not all audited (rate limit); counted in baton_audit_suppressed_total"
            );
        }
        false
    }
}

/// One admitted request without a credential; frees its slot when dropped.
#[derive(Debug)]
pub struct UnauthPermit {
    limits: Arc<Limits>,
    ip: Option<IpAddr>,
}

impl Drop for UnauthPermit {
    fn drop(&mut self) {
        let mut f = self
            .limits
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        f.total = f.total.saturating_sub(1);
        if let Some(ip) = self.ip
            && let Some(n) = f.per_address.get_mut(&ip)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                f.per_address.remove(&ip);
            }
        }
    }
}

/// A refusal whose body was not read: the connection is closed after the
/// answer, so the rest of the body is never waited for.
pub fn closing(e: ApiError, retry_after: Option<u64>) -> Response {
    let mut resp = e.into_response();
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    if let Some(secs) = retry_after
        && let Ok(v) = HeaderValue::from_str(&secs.to_string())
    {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

/// The answer to a [`Busy`] refusal.
pub fn busy_response(busy: Busy, ip: Option<IpAddr>) -> Response {
    match busy {
        Busy::Address => closing(
            ApiError::new(
                ErrorCode::RateLimited,
                format!(
                    "too many requests without credentials in flight from {}",
                    ip.map_or_else(|| "this address".to_owned(), |ip| ip.to_string())
                ),
                None,
            ),
            Some(1),
        ),
        Busy::Global => closing(
            ApiError::new(
                ErrorCode::Overloaded,
                "too many requests without credentials in flight; retry later",
                None,
            ),
            Some(1),
        ),
    }
}

/// Extractor for the enrollment route: the per-address rate limit (this
/// process's, then the store's across replicas), checked before the body is
/// read (declare it before the body extractor).
#[derive(Debug)]
pub struct EnrollGate;

impl FromRequestParts<AppState> for EnrollGate {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, Response> {
        let Some(PeerAddr(addr)) = parts.extensions.get::<PeerAddr>().copied() else {
            return Ok(EnrollGate);
        };
        let ip = addr.ip();
        let refused = |secs: u64| {
            closing(
                ApiError::new(
                    ErrorCode::RateLimited,
                    format!("too many enrollment attempts from {ip}; retry in {secs} s"),
                    None,
                ),
                Some(secs),
            )
        };
        s.limits.enroll(ip).map_err(refused)?;
        match s.limits.enroll_shared(&s.store, ip, now_ms()).await {
            Ok(Ok(())) => Ok(EnrollGate),
            Ok(Err(secs)) => Err(refused(secs)),
            Err(e) => Err(closing(ApiError::from(e), Some(1))),
        }
    }
}

#[cfg(test)]
mod tests;
