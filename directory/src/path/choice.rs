//! Weighted random choice in exact integer arithmetic, so a given RNG
//! stream picks the same relays on every platform.

use rand::Rng;

use super::{Candidate, Position, PositionWeights};

/// Draws an index into `pool` with probability proportional to each
/// relay's weight in `position`. When every such weight is zero (a tiny
/// or unmeasured network), falls back to raw bandwidth, then to a uniform
/// draw, so that a relay is refused only by the rules, never by its
/// weight. `None` only for an empty pool.
pub(crate) fn choose<R: Rng + ?Sized>(
    pool: &[&Candidate],
    position: Position,
    weights: &PositionWeights,
    rng: &mut R,
) -> Option<usize> {
    let by_position: Vec<u128> = pool
        .iter()
        .map(|relay| weights.weight_of(relay, position))
        .collect();
    weighted_index(&by_position, rng)
        .or_else(|| {
            let by_bandwidth: Vec<u128> = pool.iter().map(|relay| relay.weight.into()).collect();
            weighted_index(&by_bandwidth, rng)
        })
        .or_else(|| weighted_index(&vec![1; pool.len()], rng))
}

/// Draws an index with probability `weights[i] / sum(weights)`; `None`
/// when the sum is zero.
fn weighted_index<R: Rng + ?Sized>(weights: &[u128], rng: &mut R) -> Option<usize> {
    let total = weights
        .iter()
        .fold(0u128, |sum, weight| sum.saturating_add(*weight));
    if total == 0 {
        return None;
    }
    let mut point = rng.gen_range(0..total);
    for (index, weight) in weights.iter().enumerate() {
        if point < *weight {
            return Some(index);
        }
        point -= weight;
    }
    // Reached only if the sum saturated, which u64 bandwidths times
    // WEIGHT_SCALE cannot do for any realistic number of relays.
    weights.iter().rposition(|weight| *weight > 0)
}
