//! When a relay fetches the consensus. Sans-IO: `directory::run` sleeps
//! until [`FetchSchedule::next`], reports each outcome, and passes on the
//! daemon's hints.
//!
//! Every 30 s while a consensus is held. An exit carries DATA only from
//! relays its consensus lists, so it must not lag: while it holds none (a
//! first start, or every fetch failed) it tries again after 2 s, doubling
//! up to 30 s; and when a link comes up from an identity the held
//! consensus does not list (a relay newer than that consensus, or an
//! impostor) it fetches again soon, by the same doubling back-off. The
//! hint comes once per new link, never from links held open, so an
//! impostor must keep opening links (each a QUIC handshake with this
//! relay) to bring fetches forward, and still gets no more than the
//! back-off allows: 2, 4, 8, 16, then 30 s apart after a new consensus.

use std::time::{Duration, Instant};

/// How often the consensus is fetched while one is held.
pub const FETCH_EVERY: Duration = Duration::from_secs(30);
/// The first retry while none is held, or after an unlisted peer.
pub const FETCH_SOON: Duration = Duration::from_secs(2);

/// What a fetch gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    /// A consensus newer than the one held.
    Newer,
    /// Nothing newer (or the fetch failed), with a consensus held.
    Same,
    /// Nothing, and none is held.
    Nothing,
}

/// The next fetch and the current back-off.
#[derive(Debug)]
pub struct FetchSchedule {
    next: Instant,
    last: Option<Instant>,
    backoff: Duration,
}

impl FetchSchedule {
    /// The first fetch is at once.
    pub fn new(now: Instant) -> Self {
        Self {
            next: now,
            last: None,
            backoff: FETCH_SOON,
        }
    }

    /// When to fetch next.
    pub fn next(&self) -> Instant {
        self.next
    }

    /// A fetch ended at `now` with `outcome`.
    pub fn fetched(&mut self, now: Instant, outcome: Fetched) {
        self.last = Some(now);
        match outcome {
            Fetched::Newer => {
                self.backoff = FETCH_SOON;
                self.next = now + FETCH_EVERY;
            }
            Fetched::Same => self.next = now + FETCH_EVERY,
            Fetched::Nothing => self.next = now + self.backoff,
        }
        if outcome != Fetched::Newer {
            self.backoff = (self.backoff * 2).min(FETCH_EVERY);
        }
    }

    /// A peer proved an identity the held consensus does not list: fetch
    /// one back-off after the last fetch, if that is sooner.
    pub fn unlisted_peer(&mut self, now: Instant) {
        let soon = self.last.map_or(now, |last| last + self.backoff).max(now);
        self.next = self.next.min(soon);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn without_a_consensus_it_retries_fast_then_backs_off() {
        let start = Instant::now();
        let mut schedule = FetchSchedule::new(start);
        assert_eq!(schedule.next(), start);
        let mut now = start;
        for gap in [2, 4, 8, 16, 30, 30] {
            schedule.fetched(now, Fetched::Nothing);
            assert_eq!(schedule.next(), now + secs(gap));
            now = schedule.next();
        }
        // One arrives: every 30 s from then on.
        schedule.fetched(now, Fetched::Newer);
        assert_eq!(schedule.next(), now + FETCH_EVERY);
        schedule.fetched(now, Fetched::Same);
        assert_eq!(schedule.next(), now + FETCH_EVERY);
    }

    #[test]
    fn an_unlisted_peer_brings_the_fetch_forward_by_the_back_off() {
        let start = Instant::now();
        let mut schedule = FetchSchedule::new(start);
        schedule.fetched(start, Fetched::Newer);
        // Right after a newer consensus: two seconds after that fetch.
        schedule.unlisted_peer(start + secs(1));
        assert_eq!(schedule.next(), start + secs(2));
        // Still unlisted after each fetch: 4, 8, 16, 30 s apart, never
        // more often (an impostor's links cost the authorities little).
        let mut now = schedule.next();
        for gap in [4, 8, 16, 30, 30] {
            schedule.fetched(now, Fetched::Same);
            schedule.unlisted_peer(now);
            assert_eq!(schedule.next(), now + secs(gap));
            now = schedule.next();
        }
        // A newer consensus resets the back-off; the regular fetch is not
        // delayed by a hint.
        schedule.fetched(now, Fetched::Newer);
        schedule.unlisted_peer(now + secs(10));
        assert_eq!(schedule.next(), now + secs(10));
        schedule.fetched(now, Fetched::Newer);
        schedule.unlisted_peer(now + secs(40));
        assert_eq!(schedule.next(), now + FETCH_EVERY);
    }
}
