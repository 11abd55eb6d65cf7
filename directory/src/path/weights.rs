//! Position weights: how much of each relay's bandwidth is offered to the
//! guard, middle and exit positions, so that scarce guard and exit capacity
//! is not spent in the middle.
//!
//! Relays fall into four classes by the positions they may hold: guard-only,
//! exit-only, dual (both) and other (middle only). Each circuit needs one
//! relay in each position, so ideally each position gets a third of the
//! total bandwidth `T`. The formulas, all in integers scaled by
//! [`WEIGHT_SCALE`], are derived in `docs/path-selection.md`.

use super::Candidate;

/// The fixed-point scale of every position weight: a weight of
/// `WEIGHT_SCALE` offers all of a relay's bandwidth to that position.
pub const WEIGHT_SCALE: u64 = 10_000;

/// A position in a circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Position {
    /// First hop.
    Guard,
    /// Second hop.
    Middle,
    /// Last hop.
    Exit,
}

/// The share (out of [`WEIGHT_SCALE`]) of a relay's bandwidth offered to
/// each position, by class. A class's shares sum to `WEIGHT_SCALE`; a
/// middle-only relay offers everything to the middle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PositionWeights {
    /// Guard-only relays in the guard position.
    pub guard_as_guard: u64,
    /// Guard-only relays in the middle position.
    pub guard_as_middle: u64,
    /// Exit-only relays in the exit position.
    pub exit_as_exit: u64,
    /// Exit-only relays in the middle position.
    pub exit_as_middle: u64,
    /// Dual (guard and exit) relays in the guard position.
    pub dual_as_guard: u64,
    /// Dual relays in the middle position.
    pub dual_as_middle: u64,
    /// Dual relays in the exit position.
    pub dual_as_exit: u64,
}

/// Which positions a relay may hold, for weighting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    GuardOnly,
    ExitOnly,
    Dual,
    MiddleOnly,
    Unusable,
}

impl Class {
    fn of(candidate: &Candidate) -> Self {
        match (
            candidate.is_middle_eligible(),
            candidate.is_guard_eligible(),
            candidate.is_exit_eligible(),
        ) {
            (false, _, _) => Self::Unusable,
            (true, true, true) => Self::Dual,
            (true, true, false) => Self::GuardOnly,
            (true, false, true) => Self::ExitOnly,
            (true, false, false) => Self::MiddleOnly,
        }
    }
}

impl PositionWeights {
    /// The weights for a network: totals each class's bandwidth over the
    /// relays that may hold some position, then applies
    /// [`Self::from_totals`].
    pub fn compute(candidates: &[Candidate]) -> Self {
        let (mut guard_only, mut exit_only, mut dual, mut other) = (0u128, 0u128, 0u128, 0u128);
        for candidate in candidates {
            let total = match Class::of(candidate) {
                Class::GuardOnly => &mut guard_only,
                Class::ExitOnly => &mut exit_only,
                Class::Dual => &mut dual,
                Class::MiddleOnly => &mut other,
                Class::Unusable => continue,
            };
            *total = total.saturating_add(u128::from(candidate.weight));
        }
        Self::from_totals(guard_only, exit_only, dual, other)
    }

    /// The weights from each class's total bandwidth.
    ///
    /// With `T` the sum and `third = T / 3`: exit-only relays give the exit
    /// position up to `third` (the rest to the middle), and guard-only
    /// relays likewise for the guard position. Dual relays then fill what
    /// the exit and guard positions still lack, split in proportion to the
    /// two shortfalls when they cannot fill both, and give only what is left
    /// over to the middle.
    pub fn from_totals(guard_only: u128, exit_only: u128, dual: u128, other: u128) -> Self {
        let total = guard_only
            .saturating_add(exit_only)
            .saturating_add(dual)
            .saturating_add(other);
        // Everything below is three times its real value, so that `third`
        // needs no division: `3 * x <= total` means `x <= third`.
        let exit_as_exit = share_up_to(total, exit_only.saturating_mul(3));
        let guard_as_guard = share_up_to(total, guard_only.saturating_mul(3));
        let exit_shortfall = total.saturating_sub(exit_only.saturating_mul(3));
        let guard_shortfall = total.saturating_sub(guard_only.saturating_mul(3));
        let shortfall = exit_shortfall.saturating_add(guard_shortfall);
        let dual_times_three = dual.saturating_mul(3);
        let (dual_as_exit, dual_as_guard) = if shortfall == 0 {
            (0, 0)
        } else if shortfall >= dual_times_three {
            let as_exit = ratio(exit_shortfall, shortfall);
            (as_exit, WEIGHT_SCALE - as_exit)
        } else {
            (
                ratio(exit_shortfall, dual_times_three),
                ratio(guard_shortfall, dual_times_three),
            )
        };
        Self {
            guard_as_guard,
            guard_as_middle: WEIGHT_SCALE - guard_as_guard,
            exit_as_exit,
            exit_as_middle: WEIGHT_SCALE - exit_as_exit,
            dual_as_guard,
            dual_as_middle: WEIGHT_SCALE.saturating_sub(dual_as_exit + dual_as_guard),
            dual_as_exit,
        }
    }

    /// The share (out of [`WEIGHT_SCALE`]) of `candidate`'s bandwidth
    /// offered to `position`; 0 when it may not hold that position.
    pub fn share(&self, candidate: &Candidate, position: Position) -> u64 {
        match (Class::of(candidate), position) {
            (Class::Unusable, _) => 0,
            (Class::GuardOnly, Position::Guard) => self.guard_as_guard,
            (Class::GuardOnly, Position::Middle) => self.guard_as_middle,
            (Class::ExitOnly, Position::Exit) => self.exit_as_exit,
            (Class::ExitOnly, Position::Middle) => self.exit_as_middle,
            (Class::Dual, Position::Guard) => self.dual_as_guard,
            (Class::Dual, Position::Middle) => self.dual_as_middle,
            (Class::Dual, Position::Exit) => self.dual_as_exit,
            (Class::MiddleOnly, Position::Middle) => WEIGHT_SCALE,
            (Class::GuardOnly | Class::MiddleOnly, Position::Exit)
            | (Class::ExitOnly | Class::MiddleOnly, Position::Guard) => 0,
        }
    }

    /// `candidate`'s selection weight in `position`: its bandwidth times its
    /// share. Exact integers, so every platform draws the same relays.
    pub fn weight_of(&self, candidate: &Candidate, position: Position) -> u128 {
        u128::from(candidate.weight) * u128::from(self.share(candidate, position))
    }
}

/// `WEIGHT_SCALE * limit / supply`, capped at `WEIGHT_SCALE`: the share of a
/// supply that fills a position needing `limit`.
fn share_up_to(limit: u128, supply: u128) -> u64 {
    if supply <= limit {
        WEIGHT_SCALE
    } else {
        ratio(limit, supply)
    }
}

/// `WEIGHT_SCALE * part / whole`, rounded down, for `part <= whole`.
fn ratio(part: u128, whole: u128) -> u64 {
    let scaled = u128::from(WEIGHT_SCALE).saturating_mul(part) / whole.max(1);
    u64::try_from(scaled).map_or(WEIGHT_SCALE, |share| share.min(WEIGHT_SCALE))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_sums(weights: &PositionWeights) {
        assert_eq!(
            weights.guard_as_guard + weights.guard_as_middle,
            WEIGHT_SCALE
        );
        assert_eq!(weights.exit_as_exit + weights.exit_as_middle, WEIGHT_SCALE);
        assert_eq!(
            weights.dual_as_guard + weights.dual_as_middle + weights.dual_as_exit,
            WEIGHT_SCALE
        );
    }

    #[test]
    fn scarce_exits_are_all_kept_for_the_exit_position() {
        // T = 100: exits (20 + 10 dual) are under a third; guards (40) over.
        let weights = PositionWeights::from_totals(40, 20, 10, 30);
        check_sums(&weights);
        assert_eq!(weights.exit_as_exit, WEIGHT_SCALE);
        assert_eq!(weights.dual_as_exit, WEIGHT_SCALE);
        assert_eq!(weights.guard_as_guard, 8_333); // 33.3 of 40
        assert_eq!(weights.dual_as_middle, 0);
    }

    #[test]
    fn plentiful_capacity_spills_into_the_middle() {
        // T = 120: guard-only 60 and exit-only 60, no dual, no other.
        let weights = PositionWeights::from_totals(60, 60, 0, 0);
        check_sums(&weights);
        assert_eq!(weights.guard_as_guard, 6_666);
        assert_eq!(weights.exit_as_exit, 6_666);
    }

    #[test]
    fn dual_relays_split_in_proportion_to_the_two_shortfalls() {
        // T = 90, third = 30: exits lack 30, guards lack 10; dual (20) can't
        // fill 40, so 3/4 of it goes to exit and 1/4 to guard.
        let weights = PositionWeights::from_totals(20, 0, 20, 50);
        check_sums(&weights);
        assert_eq!(weights.dual_as_exit, 7_500);
        assert_eq!(weights.dual_as_guard, 2_500);
        assert_eq!(weights.dual_as_middle, 0);
        // Dual 60 of T = 90: it fills both shortfalls (30 + 10) and offers
        // the remaining 20, a third of it, to the middle.
        let weights = PositionWeights::from_totals(20, 0, 60, 10);
        check_sums(&weights);
        assert_eq!(weights.dual_as_exit, 5_000);
        assert_eq!(weights.dual_as_guard, 1_666);
        assert_eq!(weights.dual_as_middle, 3_334);
        assert_eq!(weights.guard_as_guard, WEIGHT_SCALE);
    }

    #[test]
    fn an_empty_network_has_defined_weights() {
        let weights = PositionWeights::from_totals(0, 0, 0, 0);
        check_sums(&weights);
    }
}
