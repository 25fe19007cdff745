//! Failed-attestation limits: a device token that does not get in costs HMACs, so failures are counted per ID
//! scope and per client address (token buckets, in this process's memory) and a key past its budget is answered
//! 429 with `Retry-After` before any signature is checked.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use crate::error::{Error, Result};

/// A budget: `burst` failures at once, refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FailureBudget {
    /// Failures allowed at once.
    pub burst: f64,
    /// Failures allowed per second after the burst.
    pub per_second: f64,
}

/// Buckets kept before the oldest are dropped (a flood of addresses must not grow memory without bound).
const MAX_KEYS: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Per-scope and per-address failure buckets.
#[derive(Debug)]
pub(crate) struct FailureLimiter {
    per_scope: FailureBudget,
    per_address: FailureBudget,
    buckets: Mutex<HashMap<(bool, String), Bucket>>,
}

impl FailureLimiter {
    pub(crate) fn new(per_scope: FailureBudget, per_address: FailureBudget) -> Self {
        Self { per_scope, per_address, buckets: Mutex::new(HashMap::new()) }
    }

    /// `Throttled` if the scope or the address has no failures left.
    pub(crate) fn check(&self, scope: &str, address: Option<IpAddr>) -> Result<()> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        for (key, budget) in self.keys(scope, address) {
            if let Some(bucket) = buckets.get_mut(&key) {
                refill(bucket, budget, now);
                if bucket.tokens < 1.0 {
                    let wait = ((1.0 - bucket.tokens) / budget.per_second.max(f64::MIN_POSITIVE)).ceil();
                    return Err(Error::Throttled {
                        message: "Too many failed attestations; retry later".into(),
                        retry_after_secs: wait.clamp(1.0, 3600.0) as u32,
                    });
                }
            }
        }
        Ok(())
    }

    /// Count one failed attestation against the scope and the address.
    pub(crate) fn failed(&self, scope: &str, address: Option<IpAddr>) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_KEYS {
            buckets.clear();
        }
        let now = Instant::now();
        for (key, budget) in self.keys(scope, address) {
            let bucket = buckets.entry(key).or_insert(Bucket { tokens: budget.burst, at: now });
            refill(bucket, budget, now);
            bucket.tokens = (bucket.tokens - 1.0).max(0.0);
        }
    }

    fn keys(&self, scope: &str, address: Option<IpAddr>) -> Vec<((bool, String), FailureBudget)> {
        let mut keys = vec![((false, scope.to_ascii_lowercase()), self.per_scope)];
        if let Some(ip) = address {
            keys.push(((true, ip.to_canonical().to_string()), self.per_address));
        }
        keys
    }
}

fn refill(bucket: &mut Bucket, budget: FailureBudget, now: Instant) {
    let elapsed = now.duration_since(bucket.at).as_secs_f64();
    bucket.tokens = (bucket.tokens + elapsed * budget.per_second).min(budget.burst);
    bucket.at = now;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_past_its_burst_is_throttled_and_others_are_not() {
        let limiter = FailureLimiter::new(
            FailureBudget { burst: 100.0, per_second: 0.001 },
            FailureBudget { burst: 3.0, per_second: 0.001 },
        );
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        for _ in 0..3 {
            limiter.check("scope", Some(a)).unwrap();
            limiter.failed("scope", Some(a));
        }
        let refused = limiter.check("scope", Some(a));
        assert!(matches!(refused, Err(Error::Throttled { retry_after_secs, .. }) if retry_after_secs >= 1));
        assert!(limiter.check("scope", Some(b)).is_ok(), "another address is not limited");
        assert!(limiter.check("scope", None).is_ok(), "the scope has budget left");
        for _ in 0..100 {
            limiter.failed("scope", Some(b));
        }
        assert!(limiter.check("SCOPE", None).is_err(), "the scope's budget is spent");
        assert!(limiter.check("other", None).is_ok());
    }
}
