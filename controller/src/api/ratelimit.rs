//! Token buckets per source address (enrollment attempts).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Allows `per_minute` calls per address, in bursts of up to `per_minute`.
#[derive(Debug)]
pub struct RateLimiter {
    per_minute: u32,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimiter {
    /// A limiter for `per_minute` calls per address.
    pub fn new(per_minute: u32) -> Self {
        RateLimiter {
            per_minute: per_minute.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Take one call for `ip` at `now`; `Err(wait)` says how long until the next is allowed.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let cap = f64::from(self.per_minute);
        let per_sec = cap / 60.0;
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 10_000 {
            // Forget full buckets; an attacker with many addresses only fills memory this far.
            map.retain(|_, (tokens, last)| {
                *tokens + now.duration_since(*last).as_secs_f64() * per_sec < cap
            });
        }
        let (tokens, last) = map.entry(ip).or_insert((cap, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * per_sec).min(cap);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / per_sec))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_refills_per_address() {
        let l = RateLimiter::new(2);
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        let t = Instant::now();
        assert!(l.check(a, t).is_ok());
        assert!(l.check(a, t).is_ok());
        let wait = l.check(a, t).expect_err("limited");
        assert!(wait > Duration::from_secs(20) && wait <= Duration::from_secs(30));
        assert!(l.check(b, t).is_ok(), "other addresses are not affected");
        assert!(l.check(a, t + Duration::from_secs(31)).is_ok(), "refilled");
    }
}
