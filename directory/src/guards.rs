//! The client's entry guards: a small, long-lived, persisted set of relays
//! it is willing to use as first hop.
//!
//! Guards are sampled (weighted by guard-position bandwidth) into an
//! ordered list. The first [`GuardParams::primary_count`] sampled guards
//! that the consensus lists as usable are the *primary* guards; the client
//! uses the first usable one and moves down the list only while those
//! before it are failing. Each guard is kept for a random lifetime, dropped
//! as soon as the consensus stops listing it, and never dropped for failing
//! (a failure only delays its next use), so an attacker who can knock
//! guards over cannot push a client on to new ones. Parameters and reasons:
//! `docs/path-selection.md`.

mod storage;

use rand::Rng;
use trine_circuit::RelayId;

use crate::path::{Candidate, PathIndex, Position};

pub use storage::{GuardStateError, MAX_STORED_GUARDS};

const DAY: u64 = 24 * 60 * 60;

/// How many guards to keep and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardParams {
    /// Sampled guards the consensus lists as usable that the state tops up
    /// to (default 20).
    pub sample_size: usize,
    /// Most guards the state holds, usable or not (default 40, at most
    /// [`MAX_STORED_GUARDS`]): bounds growth when sampled guards lose flags.
    pub max_sampled: usize,
    /// How many of the first usable sampled guards are primary (default 3).
    pub primary_count: usize,
    /// Shortest lifetime of a sampled guard, seconds (default 60 days).
    pub min_lifetime: u64,
    /// Longest lifetime of a sampled guard, seconds (default 120 days).
    pub max_lifetime: u64,
    /// Wait after a guard's first failure before trying it again, seconds
    /// (default 10 minutes); doubles with each further failure.
    pub first_retry_delay: u64,
    /// Longest wait before trying a failed guard again, seconds (default 6
    /// hours).
    pub max_retry_delay: u64,
}

impl Default for GuardParams {
    fn default() -> Self {
        Self {
            sample_size: 20,
            max_sampled: 40,
            primary_count: 3,
            min_lifetime: 60 * DAY,
            max_lifetime: 120 * DAY,
            first_retry_delay: 10 * 60,
            max_retry_delay: 6 * 60 * 60,
        }
    }
}

/// One sampled guard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardEntry {
    /// The relay.
    pub id: RelayId,
    /// When it was sampled, UNIX seconds.
    pub added_at: u64,
    /// When it is dropped and replaced, UNIX seconds (`added_at` plus its
    /// random lifetime).
    pub expires_at: u64,
    /// Whether the latest consensus lists it with Guard, Running and Valid.
    pub listed_usable: bool,
    /// Failures since it last worked.
    pub failures: u32,
    /// After a failure, when it may be tried again, UNIX seconds.
    pub retry_at: Option<u64>,
    /// When a circuit through it last worked, UNIX seconds.
    pub last_success_at: Option<u64>,
}

impl GuardEntry {
    /// Whether the consensus lists it as a guard and it has not expired.
    fn is_listed_at(&self, now: u64) -> bool {
        self.listed_usable && now < self.expires_at
    }

    /// Whether it may be used now: listed, unexpired, not waiting to retry.
    fn is_usable_at(&self, now: u64) -> bool {
        self.is_listed_at(now) && self.retry_at.is_none_or(|retry_at| retry_at <= now)
    }
}

/// The client's sampled guards, in order of preference.
#[derive(Debug, Clone, Default)]
pub struct GuardState {
    params: GuardParams,
    sampled: Vec<GuardEntry>,
    /// The consensus last reconciled with, if any: not part of the state's
    /// value, only a note that makes repeating [`Self::update`] free.
    reconciled: Option<Reconciled>,
    /// Changes whenever the entries may have changed; not part of the
    /// state's value either (see [`Self::revision`]).
    revision: u64,
}

/// Which prepared consensus the state was last reconciled with, when the
/// first of its guards expires, and whether it then wanted no more guards.
#[derive(Debug, Clone, Copy)]
struct Reconciled {
    generation: u64,
    next_expiry: u64,
    settled: bool,
    /// Which identities the sample may hold, so that a change to a relay
    /// it certainly does not hold is passed over without reading it.
    filter: IdFilter,
    /// The first usable guard and where it is listed in this consensus:
    /// most circuits go through it, and this spares reading the guards.
    first: Option<FirstUsable>,
}

/// Where the first usable guard, as last found, is listed, and how long
/// it stays the first.
#[derive(Debug, Clone, Copy)]
struct FirstUsable {
    /// Where it is listed as a guard in the consensus reconciled with.
    at: Option<usize>,
    /// The state's revision it was found at: a marked failure or a
    /// reconciliation that looked at the guards makes it stale.
    revision: u64,
    /// When a guard before it may be retried, so may come first again.
    until: u64,
}

/// A 512-bit Bloom filter of identities, two bits each: no false
/// negatives, so "may not hold" is certain. With a sample of 40 guards a
/// relay it does not hold passes as held about 2% of the time.
#[derive(Debug, Clone, Copy, Default)]
struct IdFilter([u64; 8]);

impl IdFilter {
    fn of<'a>(ids: impl Iterator<Item = &'a RelayId>) -> Self {
        let mut filter = Self::default();
        for id in ids {
            for bit in Self::bits(id) {
                filter.0[bit / 64] |= 1 << (bit % 64);
            }
        }
        filter
    }

    fn may_hold(&self, id: &RelayId) -> bool {
        Self::bits(id)
            .iter()
            .all(|&bit| self.0[bit / 64] & (1 << (bit % 64)) != 0)
    }

    /// Mixes every byte of the identity (some identities differ only in
    /// a few bytes) into 64 bits and takes two 9-bit numbers from them.
    fn bits(id: &RelayId) -> [usize; 2] {
        let mixed = id.as_bytes().chunks_exact(8).fold(0u64, |acc, word| {
            let mut bytes = [0; 8];
            bytes.copy_from_slice(word);
            (acc ^ u64::from_le_bytes(bytes)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        });
        [(mixed >> 55) as usize, ((mixed >> 46) & 0x1ff) as usize]
    }
}

/// Two states are equal when they hold the same guards under the same
/// parameters, whatever consensus each was last reconciled with.
impl PartialEq for GuardState {
    fn eq(&self, other: &Self) -> bool {
        self.params == other.params && self.sampled == other.sampled
    }
}

impl Eq for GuardState {}

impl GuardState {
    /// An empty state; the first [`Self::update`] samples the guards.
    pub fn new(params: GuardParams) -> Self {
        Self {
            params,
            sampled: Vec::new(),
            reconciled: None,
            revision: 0,
        }
    }

    /// A number that changes whenever [`Self::entries`] may have changed
    /// (a reconciliation that looked at the guards, a failure or success
    /// marked), so that a caller watching the guards (the simulator) can
    /// skip looking at them when it has not. Not part of the state's value
    /// and not stored.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The parameters.
    pub fn params(&self) -> &GuardParams {
        &self.params
    }

    /// Every sampled guard, most preferred first.
    pub fn entries(&self) -> &[GuardEntry] {
        &self.sampled
    }

    /// Reconciles the state with a new consensus at time `now`: drops
    /// guards whose lifetime is over and guards the consensus no longer
    /// lists, records which remaining guards are listed with Guard, Running
    /// and Valid, and samples new guards (appended, so least preferred)
    /// until [`GuardParams::sample_size`] are usable or
    /// [`GuardParams::max_sampled`] are held.
    ///
    /// An empty consensus is taken as "no consensus", not as a network
    /// without relays: the state is left as it is, so a caller that failed
    /// to load its consensus does not throw its guards away.
    ///
    /// Repeating it with the same `index` before any guard's lifetime is
    /// over would change nothing, so that case returns at once; so does an
    /// index made [`PathIndex::following`] the one last reconciled with
    /// that drops or changes none of the guards, when no more are wanted.
    pub fn update<R: Rng + ?Sized>(&mut self, index: &PathIndex, now: u64, rng: &mut R) {
        if index.is_empty() {
            return;
        }
        if let Some(done) = &mut self.reconciled
            && now < done.next_expiry
        {
            if done.generation == index.generation() {
                return;
            }
            // The consensus right after the one reconciled with, and none
            // of the guards dropped or changed: reconciling would keep
            // every guard as it is, and a settled state samples nothing.
            let (sampled, filter) = (&self.sampled, &done.filter);
            let unchanged = index.changed_since(done.generation).is_some_and(|changed| {
                !changed
                    .iter()
                    .any(|id| filter.may_hold(id) && sampled.iter().any(|entry| entry.id == *id))
            });
            if unchanged && done.settled {
                let before = done.generation;
                done.generation = index.generation();
                // Still the first usable guard; only its position moved.
                done.first = done.first.map(|first| FirstUsable {
                    at: first.at.and_then(|at| index.moved_since(before, at)),
                    ..first
                });
                return;
            }
        }
        self.revision = self.revision.wrapping_add(1);
        self.sampled.retain_mut(|entry| {
            let Some(listed) = index.get(&entry.id) else {
                return false;
            };
            entry.listed_usable = listed.is_guard_eligible();
            now < entry.expires_at
        });
        self.top_up(index, now, rng);
        self.reconciled = Some(Reconciled {
            generation: index.generation(),
            next_expiry: self
                .sampled
                .iter()
                .map(|entry| entry.expires_at)
                .min()
                .unwrap_or(u64::MAX),
            settled: !self.wants_more(),
            filter: IdFilter::of(self.sampled.iter().map(|entry| &entry.id)),
            first: None,
        });
    }

    /// The guard of rank `rank` among [`Self::usable`] at `now` (`None`
    /// past the last), with where it is listed as a guard (Guard, Running,
    /// Valid) among the candidates of `index` (`None` when it is not).
    /// For rank 0 the answer is kept while the state and `index` stay as
    /// they are and no guard before it can be retried, so a client's
    /// circuits through its usual guard read neither the guards nor the
    /// identity lookup.
    pub(crate) fn usable_listed(
        &mut self,
        index: &PathIndex,
        now: u64,
        rank: usize,
    ) -> Option<Option<usize>> {
        let look_up = |id: RelayId| {
            index
                .position_of(&id)
                .filter(|&at| index.candidates()[at].is_guard_eligible())
        };
        if rank > 0 {
            return self.usable(now).nth(rank).map(look_up);
        }
        let revision = self.revision;
        let current = self
            .reconciled
            .as_mut()
            .filter(|done| done.generation == index.generation());
        if let Some(first) = current.as_ref().and_then(|done| done.first)
            && first.revision == revision
            && now < first.until
        {
            return Some(first.at);
        }
        let mut until = u64::MAX;
        let mut found = None;
        for entry in &self.sampled {
            if entry.is_usable_at(now) {
                found = Some(entry.id);
                break;
            }
            if entry.is_listed_at(now)
                && let Some(retry_at) = entry.retry_at
            {
                until = until.min(retry_at);
            }
        }
        let id = found?;
        let at = look_up(id);
        if let Some(done) = current {
            done.first = Some(FirstUsable {
                at,
                revision,
                until,
            });
        }
        Some(at)
    }

    /// Samples new guards, weighted by guard-position weight, until enough
    /// are usable or the state is full.
    fn top_up<R: Rng + ?Sized>(&mut self, index: &PathIndex, now: u64, rng: &mut R) {
        while self.wants_more() {
            // At most MAX_STORED_GUARDS entries: a scan beats hashing.
            let held = &self.sampled;
            let drawn = index.draw(
                Position::Guard,
                Candidate::is_guard_eligible,
                |at| {
                    let id = index.candidates()[at].id;
                    !held.iter().any(|entry| entry.id == id)
                },
                rng,
            );
            let Some(id) = drawn.map(|at| index.candidates()[at].id) else {
                break;
            };
            let lifetime = self.random_lifetime(rng);
            self.sampled.push(GuardEntry {
                id,
                added_at: now,
                expires_at: now.saturating_add(lifetime),
                listed_usable: true,
                failures: 0,
                retry_at: None,
                last_success_at: None,
            });
        }
    }

    /// Whether fewer guards than wanted are usable and there is room.
    fn wants_more(&self) -> bool {
        let capacity = self.params.max_sampled.min(MAX_STORED_GUARDS);
        self.listed_count() < self.params.sample_size && self.sampled.len() < capacity
    }

    fn listed_count(&self) -> usize {
        self.sampled
            .iter()
            .filter(|entry| entry.listed_usable)
            .count()
    }

    /// A lifetime drawn uniformly between the two bounds (in either order).
    fn random_lifetime<R: Rng + ?Sized>(&self, rng: &mut R) -> u64 {
        let (low, high) = (self.params.min_lifetime, self.params.max_lifetime);
        rng.gen_range(low.min(high)..=low.max(high))
    }

    /// The primary guards at `now`: the first
    /// [`GuardParams::primary_count`] sampled guards that are listed and
    /// unexpired, whether or not they are waiting to be retried.
    pub fn primary(&self, now: u64) -> impl Iterator<Item = &GuardEntry> {
        self.sampled
            .iter()
            .filter(move |entry| entry.is_listed_at(now))
            .take(self.params.primary_count)
    }

    /// The guards that may be used at `now`, most preferred first: listed,
    /// unexpired and not waiting to be retried. The usable primary guards
    /// come first, in order; the others follow only as fallbacks.
    pub fn usable(&self, now: u64) -> impl Iterator<Item = RelayId> + '_ {
        self.sampled
            .iter()
            .filter(move |entry| entry.is_usable_at(now))
            .map(|entry| entry.id)
    }

    /// The guard to use at `now`: the first usable primary guard, else the
    /// first usable sampled guard; `None` when every guard is unlisted,
    /// expired or waiting to be retried.
    pub fn pick(&self, now: u64) -> Option<RelayId> {
        self.usable(now).next()
    }

    /// Records that a circuit through `id` failed at `now`: it is skipped
    /// until its retry time, which doubles from
    /// [`GuardParams::first_retry_delay`] with each failure in a row, up to
    /// [`GuardParams::max_retry_delay`]. Unknown guards are ignored.
    pub fn mark_failed(&mut self, id: RelayId, now: u64) {
        let (first, max) = (self.params.first_retry_delay, self.params.max_retry_delay);
        if let Some(entry) = self.entry_mut(id) {
            entry.failures = entry.failures.saturating_add(1);
            let doublings = entry.failures.saturating_sub(1);
            let delay = first
                .saturating_mul(2u64.saturating_pow(doublings))
                .min(max);
            entry.retry_at = Some(now.saturating_add(delay));
        }
    }

    /// Records that a circuit through `id` worked at `now`: its failures
    /// are forgotten. Unknown guards are ignored.
    pub fn mark_succeeded(&mut self, id: RelayId, now: u64) {
        if let Some(entry) = self.entry_mut(id) {
            entry.failures = 0;
            entry.retry_at = None;
            entry.last_success_at = Some(now);
        }
    }

    fn entry_mut(&mut self, id: RelayId) -> Option<&mut GuardEntry> {
        self.revision = self.revision.wrapping_add(1);
        self.sampled.iter_mut().find(|entry| entry.id == id)
    }
}
