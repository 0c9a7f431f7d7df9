//! Per-tenant ingest rate limits: a token bucket of request-body bytes.

use std::collections::HashMap;
use std::time::Instant;

use hearth_engine::ErrorKind;
use hearth_engine::model::TenantId;
use parking_lot::Mutex;

use crate::error::{Error, Result, reason};

const MIB: f64 = 1024.0 * 1024.0;

/// How many processes share a tenant's ingestion rate (the cluster's healthy distributors).
pub trait RateShare: Send + Sync + std::fmt::Debug {
    fn sharers(&self) -> usize;
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// One token bucket per tenant; each call says the tenant's current rate, so a limit changed
/// at runtime applies to the next request.
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<TenantId, Bucket>>,
}

impl RateLimiter {
    /// Takes `bytes` from the tenant's bucket, refilled at `rate_mb` MiB/s up to `burst_mb` MiB
    /// (at least one second of the rate), or refuses with `resource_exhausted`. A rate of 0
    /// admits everything.
    pub fn admit(
        &self,
        tenant: &TenantId,
        bytes: usize,
        rate_mb: f64,
        burst_mb: f64,
    ) -> Result<()> {
        if rate_mb <= 0.0 {
            return Ok(());
        }
        let bytes_per_second = rate_mb * MIB;
        let burst_bytes = burst_mb.max(rate_mb) * MIB;
        let now = Instant::now();
        let mut buckets = self.buckets.lock();
        let bucket = buckets.entry(tenant.clone()).or_insert(Bucket {
            tokens: burst_bytes,
            updated: now,
        });
        let elapsed = now.duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * bytes_per_second).min(burst_bytes);
        bucket.updated = now;
        let wanted = bytes as f64;
        if wanted > bucket.tokens {
            return Err(Error::rejected(
                ErrorKind::ResourceExhausted,
                reason::RATE_LIMITED,
                format!(
                    "push rate limit ({:.1} MiB/s) exceeded for tenant '{tenant}' while adding {bytes} bytes",
                    rate_mb
                ),
            ));
        }
        bucket.tokens -= wanted;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_the_burst() {
        let limiter = RateLimiter::default();
        let t = TenantId::new("t").unwrap();
        limiter.admit(&t, 600 * 1024, 1.0, 1.0).unwrap();
        let err = limiter.admit(&t, 600 * 1024, 1.0, 1.0).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ResourceExhausted);
        assert!(err.to_string().contains("push rate limit"));
        limiter
            .admit(&TenantId::new("other").unwrap(), 600 * 1024, 1.0, 1.0)
            .unwrap();
        assert!(limiter.admit(&t, usize::MAX, 0.0, 0.0).is_ok());
    }

    #[test]
    fn a_higher_rate_applies_to_the_next_request() {
        let limiter = RateLimiter::default();
        let t = TenantId::new("t").unwrap();
        limiter.admit(&t, 900 * 1024, 1.0, 1.0).unwrap();
        assert!(limiter.admit(&t, 900 * 1024, 1.0, 1.0).is_err());
        // A burst of 8 MiB refills the bucket up to it over time, not at once: still refused
        // right away, admitted once a little time has passed at 100 MiB/s.
        std::thread::sleep(std::time::Duration::from_millis(20));
        limiter.admit(&t, 900 * 1024, 100.0, 8.0).unwrap();
    }
}
