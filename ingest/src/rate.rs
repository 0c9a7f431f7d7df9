//! Per-tenant ingest rate limits: a token bucket of request-body bytes.

use std::collections::HashMap;
use std::time::Instant;

use hearth_engine::ErrorKind;
use hearth_engine::model::TenantId;
use parking_lot::Mutex;

use crate::error::{Error, Result, reason};

const MIB: f64 = 1024.0 * 1024.0;

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

#[derive(Debug)]
pub struct RateLimiter {
    bytes_per_second: f64,
    burst_bytes: f64,
    buckets: Mutex<HashMap<TenantId, Bucket>>,
}

impl RateLimiter {
    /// `rate_mb` MiB/s with a `burst_mb` MiB allowance; a rate of 0 admits everything.
    pub fn new(rate_mb: f64, burst_mb: f64) -> Self {
        RateLimiter {
            bytes_per_second: rate_mb * MIB,
            burst_bytes: burst_mb.max(rate_mb) * MIB,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes `bytes` from the tenant's bucket, or refuses with `resource_exhausted`.
    pub fn admit(&self, tenant: &TenantId, bytes: usize) -> Result<()> {
        if self.bytes_per_second <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock();
        let bucket = buckets.entry(tenant.clone()).or_insert(Bucket {
            tokens: self.burst_bytes,
            updated: now,
        });
        let elapsed = now.duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.bytes_per_second).min(self.burst_bytes);
        bucket.updated = now;
        let wanted = bytes as f64;
        if wanted > bucket.tokens {
            return Err(Error::rejected(
                ErrorKind::ResourceExhausted,
                reason::RATE_LIMITED,
                format!(
                    "push rate limit ({:.1} MiB/s) exceeded for tenant '{tenant}' while adding {bytes} bytes",
                    self.bytes_per_second / MIB
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
        let limiter = RateLimiter::new(1.0, 1.0);
        let t = TenantId::new("t").unwrap();
        limiter.admit(&t, 600 * 1024).unwrap();
        let err = limiter.admit(&t, 600 * 1024).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ResourceExhausted);
        assert!(err.to_string().contains("push rate limit"));
        limiter
            .admit(&TenantId::new("other").unwrap(), 600 * 1024)
            .unwrap();
        assert!(RateLimiter::new(0.0, 0.0).admit(&t, usize::MAX).is_ok());
    }
}
