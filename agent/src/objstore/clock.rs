//! The store's clock, as its answers tell it. S3 (and MinIO, Ceph) refuse a
//! request signed more than 15 min away from their own clock (403
//! `RequestTimeTooSkewed`), so a host whose clock stepped would see every
//! store request fail. As the AWS SDKs do, every answer's `Date` header (or
//! a refusal's `<ServerTime>`) gives the offset store − host; once it is
//! larger than [`SIGN_SKEW`], requests are signed with host time + offset,
//! and a WARN names the skew once (again only after it went away and came
//! back). The offset is kept per store name for the agent's life, so the
//! next job's first request is signed right too.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use chrono::{DateTime, TimeDelta, Utc};
use rusty_s3::S3Action;

use super::{Client, Error, SIGNED_FOR, header, xml_field};

/// Skew past which requests are signed with the store's time (S3 allows
/// 15 min; `Date` has whole seconds and the answer takes its time, so
/// smaller offsets are noise and the host's clock is used as it is).
pub const SIGN_SKEW: TimeDelta = TimeDelta::minutes(5);

/// What is known of one store's clock.
#[derive(Debug, Default)]
pub struct StoreClock {
    /// Store − host, milliseconds, from the latest answer.
    offset_ms: AtomicI64,
    /// Whether an answer has been seen.
    seen: AtomicBool,
    /// Whether the skew has been logged (cleared when it goes away).
    warned: AtomicBool,
}

static CLOCKS: LazyLock<Mutex<HashMap<String, Arc<StoreClock>>>> = LazyLock::new(Mutex::default);

impl StoreClock {
    /// The clock of the store named `name` (one per name in this process).
    pub fn for_store(name: &str) -> Arc<StoreClock> {
        let mut clocks = CLOCKS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(clocks.entry(name.to_owned()).or_default())
    }

    /// Note the store's time `server`, read at host time `local`. Returns
    /// the skew when it should be logged now (first seen over [`SIGN_SKEW`]).
    pub fn observe(&self, server: DateTime<Utc>, local: DateTime<Utc>) -> Option<TimeDelta> {
        let skew = server - local;
        self.offset_ms
            .store(skew.num_milliseconds(), Ordering::Relaxed);
        self.seen.store(true, Ordering::Relaxed);
        if skew.abs() > SIGN_SKEW {
            (!self.warned.swap(true, Ordering::Relaxed)).then_some(skew)
        } else {
            self.warned.store(false, Ordering::Relaxed);
            None
        }
    }

    /// Store − host, once an answer has been seen.
    pub fn offset(&self) -> Option<TimeDelta> {
        self.seen
            .load(Ordering::Relaxed)
            .then(|| TimeDelta::milliseconds(self.offset_ms.load(Ordering::Relaxed)))
    }

    /// The time to sign a request made at host time `local`.
    pub fn signing_time(&self, local: DateTime<Utc>) -> DateTime<Utc> {
        match self.offset() {
            Some(o) if o.abs() > SIGN_SKEW => local + o,
            _ => local,
        }
    }

    /// The store's time at host time `local` (any offset applied; the
    /// host's time before any answer).
    pub fn store_time(&self, local: DateTime<Utc>) -> DateTime<Utc> {
        local + self.offset().unwrap_or_default()
    }
}

impl Client {
    /// Sign `action` with the host's time, or the store's when they differ
    /// by more than [`SIGN_SKEW`].
    pub(super) fn sign<'a>(&self, action: &impl S3Action<'a>) -> reqwest::Url {
        let at = self.clock.signing_time(chrono::Utc::now());
        action.sign_with_time(SIGNED_FOR, &timestamp(at))
    }

    /// The store's time now (from its latest answer's `Date`; the host's
    /// before any answer).
    pub fn store_now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.store_time(chrono::Utc::now())
    }

    /// Learn the store's time from an answer's `Date` header, or from a
    /// refusal's `<ServerTime>` (S3's `RequestTimeTooSkewed` body).
    pub(super) fn observe(&self, headers: &reqwest::header::HeaderMap, body: Option<&str>) {
        let server = header(headers, "date")
            .and_then(|d| parse_http_date(&d))
            .or_else(|| {
                body.and_then(|b| xml_field(b, "ServerTime"))
                    .and_then(|t| parse_s3_time(&t))
            });
        let Some(server) = server else { return };
        if let Some(skew) = self.clock.observe(server, chrono::Utc::now()) {
            tracing::warn!(
                store = %self.store.name,
                skew_s = skew.num_seconds(),
                "Store clock differs from this host's; signing requests with the store's time"
            );
        }
    }

    /// `attempt`, and once more at once when the server refused its time
    /// (by then [`Client::observe`] has the store's time to sign with).
    pub(super) async fn skew_retry<T, F, Fut>(&self, attempt: F) -> Result<T, Error>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        match attempt().await {
            Err(e) if e.clock_skewed() => {
                tracing::info!(store = %self.store.name, error = %e, "Store refused the request's time; signing again with the store's");
                attempt().await
            }
            r => r,
        }
    }
}

/// An HTTP `Date` header (IMF-fixdate, `Sun, 06 Dec 2026 10:25:41 GMT`).
pub fn parse_http_date(v: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc2822(v.trim())
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// An S3 time (`2026-12-06T10:25:41.123Z`: `LastModified`, `ServerTime`).
pub fn parse_s3_time(v: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(v.trim())
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// `t` as rusty-s3 takes it for signing.
pub fn timestamp(t: DateTime<Utc>) -> jiff::Timestamp {
    jiff::Timestamp::from_millisecond(t.timestamp_millis())
        .unwrap_or_else(|_| jiff::Timestamp::now())
}

#[cfg(test)]
mod tests;
