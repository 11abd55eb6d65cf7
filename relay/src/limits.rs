//! Rate limits, sans-IO (time is passed in): a token bucket for the relay's
//! bandwidth cap, a per-source-address CREATE limiter, and the buckets
//! of the EXTEND dial budget (`extend.rs`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// A token bucket: `rate` tokens per second, holding at most `burst`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: f64, burst: f64, now: Instant) -> Self {
        Self {
            rate,
            burst,
            tokens: burst,
            updated: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.updated = self.updated.max(now);
    }

    /// Takes `amount` tokens if available.
    pub fn try_take(&mut self, amount: f64, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= amount {
            self.tokens -= amount;
            true
        } else {
            false
        }
    }

    /// Returns `amount` tokens taken for something that did not happen
    /// after all (never above the burst).
    pub fn give_back(&mut self, amount: f64) {
        self.tokens = (self.tokens + amount).min(self.burst);
    }

    /// Whether the bucket is full (an idle source).
    fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.burst
    }
}

/// CREATE rate per source address. Idle sources are forgotten, so memory
/// stays bounded by the number of recently active sources, itself capped.
#[derive(Debug)]
pub struct SourceLimiter {
    rate: f64,
    burst: f64,
    sources: HashMap<IpAddr, TokenBucket>,
    max_sources: usize,
    /// When the table was last swept because it was full.
    swept: Option<Instant>,
}

impl SourceLimiter {
    /// `rate` CREATEs per second per address, bursts of `burst`.
    pub fn new(rate: f64, burst: f64) -> Self {
        Self {
            rate,
            burst,
            sources: HashMap::new(),
            max_sources: 65_536,
            swept: None,
        }
    }

    /// Whether `source` may CREATE now; counts it if so. IPv6 sources
    /// are limited per /64 (one host usually holds a whole /64). When the
    /// table is full, idle sources are swept at most once a second.
    pub fn allow(&mut self, source: IpAddr, now: Instant) -> bool {
        let source = match source {
            IpAddr::V4(_) => source,
            IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        };
        if !self.sources.contains_key(&source) && self.sources.len() >= self.max_sources {
            let due = self.swept.is_none_or(|at| {
                now.saturating_duration_since(at) >= std::time::Duration::from_secs(1)
            });
            if due {
                self.sources.retain(|_, bucket| !bucket.is_full(now));
                self.swept = Some(now);
            }
            if self.sources.len() >= self.max_sources {
                return false;
            }
        }
        self.sources
            .entry(source)
            .or_insert_with(|| TokenBucket::new(self.rate, self.burst, now))
            .try_take(1.0, now)
    }

    /// Forgets sources that have been idle long enough to be full again.
    pub fn prune(&mut self, now: Instant) {
        self.sources.retain(|_, bucket| !bucket.is_full(now));
    }

    /// Sources currently tracked.
    #[cfg(test)]
    pub fn tracked(&self) -> usize {
        self.sources.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_allows_burst_then_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(1000.0, 1500.0, start);
        assert!(bucket.try_take(1500.0, start));
        assert!(!bucket.try_take(1.0, start));
        assert!(!bucket.try_take(600.0, start + Duration::from_millis(500)));
        assert!(bucket.try_take(500.0, start + Duration::from_millis(500)));
        // Never more than the burst, however long it rests.
        assert!(!bucket.try_take(1501.0, start + Duration::from_secs(3600)));
    }

    #[test]
    fn sources_are_limited_separately_and_idle_ones_forgotten() {
        let start = Instant::now();
        let mut limiter = SourceLimiter::new(2.0, 3.0);
        let a: IpAddr = "198.18.0.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let b: IpAddr = "198.18.0.2".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        assert!((0..3).all(|_| limiter.allow(a, start)));
        assert!(!limiter.allow(a, start));
        assert!(limiter.allow(b, start));
        assert!(limiter.allow(a, start + Duration::from_millis(500)));
        limiter.prune(start + Duration::from_secs(10));
        assert_eq!(limiter.tracked(), 0);
        // One IPv6 /64 is one source, however many addresses it uses.
        let host = |last: u16| IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, last]);
        assert!((1..=3).all(|i| limiter.allow(host(i), start)));
        assert!(!limiter.allow(host(4), start));
        assert!(limiter.allow(IpAddr::from([0x2001, 0xdb8, 0, 2, 0, 0, 0, 1]), start));
    }
}
