//! A consensus prepared for path selection: the candidates with their
//! position weights, a lookup by identity, and per-position cumulative
//! weights, built once per consensus so that each circuit costs a few
//! binary searches instead of scans of every relay.
//!
//! A relay that must also fit a rule (not beside the guard, not already a
//! guard) is drawn by rejection: draw from the whole position, retry if it
//! does not fit. Conditioned on acceptance that is exactly the weighted
//! draw among the relays that fit. After [`REJECTION_TRIES`] misses the
//! draw falls back to the exact scan of [`choice::choose`], so the
//! distribution stays exact even when few relays fit (or none has weight,
//! where `choose` falls back to bandwidth and then to a uniform draw).

use std::collections::HashMap;

use foldhash::fast::RandomState;
use std::sync::atomic::{AtomicU64, Ordering};

use rand::Rng;
use trine_circuit::RelayId;

use super::{Candidate, Position, PositionWeights, choice};

/// Draws from the whole position before scanning for the relays that fit.
pub const REJECTION_TRIES: usize = 32;

/// Distinguishes prepared consensuses, so a guard state can tell it was
/// already reconciled with this one.
static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);

/// The candidates of one consensus, prepared for path selection.
#[derive(Debug)]
pub struct PathIndex {
    candidates: Vec<Candidate>,
    weights: PositionWeights,
    /// Keyed per process (foldhash), so relays cannot choose identities
    /// that collide; far cheaper than SipHash for the lookups every
    /// reconciliation of a guard state makes.
    by_id: HashMap<RelayId, usize, RandomState>,
    guard: Cumulative,
    middle: Cumulative,
    exit: Cumulative,
    generation: u64,
}

/// The relays with positive weight in one position and the running sum of
/// their weights.
#[derive(Debug, Default)]
struct Cumulative {
    positions: Vec<usize>,
    sums: Vec<u128>,
}

impl Cumulative {
    fn new(candidates: &[Candidate], weights: &PositionWeights, position: Position) -> Self {
        let mut table = Self::default();
        let mut sum = 0u128;
        for (index, candidate) in candidates.iter().enumerate() {
            let weight = weights.weight_of(candidate, position);
            if weight > 0 {
                sum = sum.saturating_add(weight);
                table.positions.push(index);
                table.sums.push(sum);
            }
        }
        table
    }

    /// An index into the candidates, drawn by weight; `None` when no relay
    /// has weight here.
    fn draw<R: Rng + ?Sized>(&self, rng: &mut R) -> Option<usize> {
        let total = *self.sums.last()?;
        // The same uniform draw either way; 64-bit arithmetic is much
        // cheaper and every realistic network's total fits in it.
        let point = match u64::try_from(total) {
            Ok(total) => u128::from(rng.gen_range(0..total)),
            Err(_) => rng.gen_range(0..total),
        };
        let slot = self.sums.partition_point(|&sum| sum <= point);
        self.positions.get(slot).copied()
    }
}

impl PathIndex {
    /// Prepares `candidates` (in consensus order, which the exact fallback
    /// draws keep).
    pub fn new(candidates: Vec<Candidate>) -> Self {
        let weights = PositionWeights::compute(&candidates);
        let mut by_id = HashMap::with_capacity_and_hasher(candidates.len(), RandomState::default());
        for (index, candidate) in candidates.iter().enumerate() {
            // A duplicated identity resolves to its first guard-eligible
            // entry, else its first: the entry path selection would use.
            let slot = by_id.entry(candidate.id).or_insert(index);
            if !candidates[*slot].is_guard_eligible() && candidate.is_guard_eligible() {
                *slot = index;
            }
        }
        Self {
            guard: Cumulative::new(&candidates, &weights, Position::Guard),
            middle: Cumulative::new(&candidates, &weights, Position::Middle),
            exit: Cumulative::new(&candidates, &weights, Position::Exit),
            candidates,
            weights,
            by_id,
            generation: NEXT_GENERATION.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// The candidates, in consensus order.
    pub fn candidates(&self) -> &[Candidate] {
        &self.candidates
    }

    /// The position weights of this consensus.
    pub fn weights(&self) -> &PositionWeights {
        &self.weights
    }

    /// Whether there are no candidates (read as "no consensus").
    pub fn is_empty(&self) -> bool {
        self.candidates.is_empty()
    }

    /// Where `id` is among [`Self::candidates`] (its guard-eligible entry
    /// if it is listed more than once).
    pub fn position_of(&self, id: &RelayId) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    /// The candidate with identity `id`, as [`Self::position_of`].
    pub fn get(&self, id: &RelayId) -> Option<&Candidate> {
        self.position_of(id).map(|index| &self.candidates[index])
    }

    /// Identifies this prepared consensus within the process.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Draws a relay that is `eligible` for `position` and `fits`, with
    /// probability proportional to its weight there among all such relays
    /// (with [`choice::choose`]'s fallbacks when none of them has weight),
    /// and gives its position. `None` when no relay qualifies.
    pub(crate) fn draw<R: Rng + ?Sized>(
        &self,
        position: Position,
        eligible: fn(&Candidate) -> bool,
        fits: impl Fn(&Candidate) -> bool,
        rng: &mut R,
    ) -> Option<usize> {
        let table = match position {
            Position::Guard => &self.guard,
            Position::Middle => &self.middle,
            Position::Exit => &self.exit,
        };
        if !table.sums.is_empty() {
            for _ in 0..REJECTION_TRIES {
                let index = table.draw(rng)?;
                if fits(&self.candidates[index]) {
                    return Some(index);
                }
            }
        }
        let (positions, pool): (Vec<usize>, Vec<&Candidate>) = self
            .candidates
            .iter()
            .enumerate()
            .filter(|(_, candidate)| eligible(candidate) && fits(candidate))
            .unzip();
        choice::choose(&pool, position, &self.weights, rng).map(|index| positions[index])
    }
}
