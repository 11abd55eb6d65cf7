//! A consensus prepared for path selection: the candidates with their
//! position weights, a lookup by identity, and per position an alias table
//! of the weights, built once per consensus so that each circuit costs a
//! few random numbers instead of scans of every relay.
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

use super::rules::ConflictKey;
use super::{Candidate, PathConfig, Position, PositionWeights, choice};

/// Draws from the whole position before scanning for the relays that fit.
pub const REJECTION_TRIES: usize = 32;

/// Distinguishes prepared consensuses, so a guard state can tell it was
/// already reconciled with this one.
static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);

/// The candidates of one consensus, prepared for path selection.
#[derive(Debug)]
pub struct PathIndex {
    candidates: Vec<Candidate>,
    /// Per candidate, what the conflict rule needs in the common case
    /// (empty for a consensus too large to number, which then always uses
    /// the full rule).
    keys: Vec<ConflictKey>,
    weights: PositionWeights,
    /// Keyed per process (foldhash), so relays cannot choose identities
    /// that collide; far cheaper than SipHash for the lookups every
    /// reconciliation of a guard state makes.
    by_id: HashMap<RelayId, usize, RandomState>,
    guard: AliasTable,
    middle: AliasTable,
    exit: AliasTable,
    generation: u64,
    /// From [`Self::following`]: the consensus this one follows, and the
    /// relays of it that this one drops or lists with another guard
    /// eligibility.
    previous: Option<Changes>,
}

/// What changed for guard states from the consensus before.
#[derive(Debug)]
struct Changes {
    generation: u64,
    ids: Vec<RelayId>,
    /// Per position in the consensus before: where that relay's identity
    /// resolves in this one ([`PathIndex::position_of`]), or `u32::MAX`.
    moved: Vec<u32>,
}

/// More changes than this and a guard state reconciles in full anyway.
const MAX_TRACKED_CHANGES: usize = 64;

/// The relays with positive weight in one position as an alias table
/// (Walker, built as Vose does), in exact integers: a draw picks a slot
/// uniformly, then that slot's relay or its alias by one more uniform
/// number, which gives each relay exactly its weight over the total, at
/// the cost of two random numbers and no search.
#[derive(Debug, Default)]
struct AliasTable {
    slots: Vec<Slot>,
    /// The sum of the weights.
    total: u64,
}

/// One slot of an alias table, packed into 16 bytes so a draw reads one
/// place and the tables of a large consensus stay in a core's cache.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Below this (out of the total) the slot gives `own`, else `alias`.
    threshold: u64,
    /// Positions among the candidates.
    own: u32,
    alias: u32,
}

impl AliasTable {
    /// The table of `position`; empty (so draws use the exact scan) when
    /// no relay has weight there, or when the total weight or the number
    /// of relays is too large for the packed slots, which no real network
    /// comes near (the total is bandwidths times 10,000).
    fn new(candidates: &[Candidate], weights: &PositionWeights, position: Position) -> Self {
        let mut positions = Vec::new();
        let mut scaled = Vec::new();
        let mut total = 0u128;
        for (index, candidate) in candidates.iter().enumerate() {
            let weight = weights.weight_of(candidate, position);
            if weight > 0 {
                let Ok(index) = u32::try_from(index) else {
                    return Self::default();
                };
                positions.push(index);
                scaled.push(weight);
                total = total.saturating_add(weight);
            }
        }
        let Ok(total_u64) = u64::try_from(total) else {
            return Self::default();
        };
        // Every slot holds `total`; a relay of weight w fills w × n of them.
        let count = positions.len() as u128;
        for weight in &mut scaled {
            // Below 2^64 × 2^32: no overflow in u128.
            *weight *= count;
        }
        let mut slots: Vec<Slot> = positions
            .iter()
            .map(|&own| Slot {
                threshold: total_u64,
                own,
                alias: own,
            })
            .collect();
        let (mut small, mut large): (Vec<usize>, Vec<usize>) =
            (0..scaled.len()).partition(|&slot| scaled[slot] < total);
        while let (Some(&under), Some(&over)) = (small.last(), large.last()) {
            small.pop();
            // Below `total`, which fits in u64.
            slots[under].threshold = scaled[under] as u64;
            slots[under].alias = positions[over];
            scaled[over] -= total - scaled[under];
            if scaled[over] < total {
                large.pop();
                small.push(over);
            }
        }
        // What is left holds exactly `total`: its slots keep their relay.
        Self {
            slots,
            total: total_u64,
        }
    }

    /// A position among the candidates, drawn by weight; `None` when the
    /// table is empty.
    fn draw<R: Rng + ?Sized>(&self, rng: &mut R) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let slot = self.slots[rng.gen_range(0..self.slots.len())];
        let point = rng.gen_range(0..self.total);
        let at = if point < slot.threshold {
            slot.own
        } else {
            slot.alias
        };
        Some(at as usize)
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
            keys: ConflictKey::for_all(&candidates).unwrap_or_default(),
            guard: AliasTable::new(&candidates, &weights, Position::Guard),
            middle: AliasTable::new(&candidates, &weights, Position::Middle),
            exit: AliasTable::new(&candidates, &weights, Position::Exit),
            candidates,
            weights,
            by_id,
            generation: NEXT_GENERATION.fetch_add(1, Ordering::Relaxed),
            previous: None,
        }
    }

    /// Prepares `candidates`, the consensus published after `previous`,
    /// noting which relays of `previous` it drops or lists with another
    /// guard eligibility. A guard state reconciled with `previous` whose
    /// guards are none of those, and which wants no more guards, is then
    /// reconciled with this one without looking its guards up (see
    /// `GuardState::update`). Same result as [`Self::new`] otherwise.
    pub fn following(previous: &PathIndex, candidates: Vec<Candidate>) -> Self {
        let mut index = Self::new(candidates);
        let mut ids = Vec::new();
        let mut moved = Vec::with_capacity(previous.candidates.len());
        for (position, old) in previous.candidates.iter().enumerate() {
            let now_at = index.position_of(&old.id);
            moved.push(
                now_at
                    .and_then(|at| u32::try_from(at).ok())
                    .unwrap_or(u32::MAX),
            );
            if previous.by_id.get(&old.id) != Some(&position) {
                continue; // a duplicate identity: its resolved entry counts
            }
            let now_eligible = now_at.map(|at| index.candidates[at].is_guard_eligible());
            if now_eligible != Some(old.is_guard_eligible()) {
                ids.push(old.id);
            }
        }
        if ids.len() <= MAX_TRACKED_CHANGES {
            index.previous = Some(Changes {
                generation: previous.generation,
                ids,
                moved,
            });
        }
        index
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

    /// When this consensus follows the one with `generation` (see
    /// [`Self::following`]): the relays whose listing as guards changed.
    pub(crate) fn changed_since(&self, generation: u64) -> Option<&[RelayId]> {
        self.previous
            .as_ref()
            .filter(|changes| changes.generation == generation)
            .map(|changes| changes.ids.as_slice())
    }

    /// When this consensus follows the one with `generation`: where the
    /// relay at position `old` of that one resolves in this one.
    pub(crate) fn moved_since(&self, generation: u64, old: usize) -> Option<usize> {
        let changes = self.previous.as_ref()?;
        if changes.generation != generation {
            return None;
        }
        match changes.moved.get(old) {
            Some(&at) if at != u32::MAX => Some(at as usize),
            _ => None,
        }
    }

    /// Whether the candidate at `at` may share a circuit with each of the
    /// candidates at `avoiding`: [`Candidate::conflicts_with`], decided
    /// from the packed keys where they suffice.
    pub(crate) fn fits_beside(&self, at: usize, avoiding: &[usize], config: &PathConfig) -> bool {
        avoiding.iter().all(|&other| {
            let decided = match (self.keys.get(at), self.keys.get(other)) {
                (Some(mine), Some(theirs)) => mine.conflicts(*theirs, config),
                _ => None,
            };
            let conflict = decided.unwrap_or_else(|| {
                self.candidates[at].conflicts_with(&self.candidates[other], config)
            });
            !conflict
        })
    }

    /// Draws a relay that is `eligible` for `position` and `fits` (given its
    /// position among the candidates), with
    /// probability proportional to its weight there among all such relays
    /// (with [`choice::choose`]'s fallbacks when none of them has weight),
    /// and gives its position. `None` when no relay qualifies.
    pub(crate) fn draw<R: Rng + ?Sized>(
        &self,
        position: Position,
        eligible: fn(&Candidate) -> bool,
        fits: impl Fn(usize) -> bool,
        rng: &mut R,
    ) -> Option<usize> {
        let table = match position {
            Position::Guard => &self.guard,
            Position::Middle => &self.middle,
            Position::Exit => &self.exit,
        };
        if !table.slots.is_empty() {
            for _ in 0..REJECTION_TRIES {
                let index = table.draw(rng)?;
                if fits(index) {
                    return Some(index);
                }
            }
        }
        let (positions, pool): (Vec<usize>, Vec<&Candidate>) = self
            .candidates
            .iter()
            .enumerate()
            .filter(|&(at, candidate)| eligible(candidate) && fits(at))
            .unzip();
        choice::choose(&pool, position, &self.weights, rng).map(|index| positions[index])
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::flags::{Flag, Flags};

    fn middle(n: u64, weight: u64) -> Candidate {
        let mut id = [0; 32];
        id[..8].copy_from_slice(&n.to_be_bytes());
        Candidate {
            id: RelayId::from_bytes(id),
            addresses: Vec::new(),
            family: Vec::new(),
            flags: Flags::NONE.with(Flag::Running).with(Flag::Valid),
            weight,
            exit_allows_general: false,
        }
    }

    /// Over all slots, the share of the draws each relay gets is exactly
    /// its weight over the total: `n × weight` slot-units of `total`.
    fn assert_exact(weights: &[u64]) {
        let candidates: Vec<Candidate> = (0u64..)
            .zip(weights)
            .map(|(n, &weight)| middle(n, weight))
            .collect();
        let position_weights = PositionWeights::compute(&candidates);
        let table = AliasTable::new(&candidates, &position_weights, Position::Middle);
        let slots = table.slots.len() as u128;
        let mut mass = vec![0u128; candidates.len()];
        for slot in &table.slots {
            assert!(slot.threshold <= table.total);
            mass[slot.own as usize] += u128::from(slot.threshold);
            mass[slot.alias as usize] += u128::from(table.total - slot.threshold);
        }
        for (candidate, mass) in candidates.iter().zip(mass) {
            let weight = position_weights.weight_of(candidate, Position::Middle);
            assert_eq!(mass, weight * slots, "weights {weights:?}");
        }
    }

    #[test]
    fn alias_tables_give_each_relay_exactly_its_weight() {
        assert_exact(&[1]);
        assert_exact(&[5, 5, 5]);
        assert_exact(&[1, 1_000_000, 3, 0, 7]);
        assert_exact(&[u64::from(u32::MAX), 1, 2]);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for size in [2, 10, 97, 1000] {
            let weights: Vec<u64> = (0..size).map(|_| rng.gen_range(0..100_000)).collect();
            assert_exact(&weights);
        }
    }

    #[test]
    fn an_empty_position_draws_nothing() {
        let candidates = vec![middle(1, 0)];
        let weights = PositionWeights::compute(&candidates);
        let table = AliasTable::new(&candidates, &weights, Position::Exit);
        assert_eq!(table.draw(&mut ChaCha8Rng::seed_from_u64(2)), None);
    }

    /// Weights whose total does not fit the packed tables still draw
    /// exactly, by the scan: two thirds, none, one third.
    #[test]
    fn weights_too_large_to_pack_draw_by_the_exact_scan() {
        let index = PathIndex::new(vec![
            middle(1, u64::MAX),
            middle(2, 1),
            middle(3, u64::MAX / 2),
        ]);
        assert!(index.middle.slots.is_empty());
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut counts = [0u32; 3];
        for _ in 0..3000 {
            let at = index.draw(
                Position::Middle,
                Candidate::is_middle_eligible,
                |_| true,
                &mut rng,
            );
            counts[at.unwrap()] += 1;
        }
        // 2000 expected, standard deviation 26: five of them either way.
        assert!((1870..=2130).contains(&counts[0]), "{counts:?}");
        assert_eq!(counts[1], 0);
    }
}
