//! Path selection: choosing the guard, middle and exit of a circuit from the
//! relays of a consensus.
//!
//! The input is a slice of [`Candidate`]s, a flat view of the consensus that
//! carries only what the rules need, so the client and the simulator run
//! exactly the same code. Nothing here does I/O or reads a clock: time is a
//! parameter (UNIX seconds) and every random choice comes from the caller's
//! RNG, so a seeded RNG reproduces every path.
//!
//! Order: the guard comes first, from the persistent [`GuardState`]; then an
//! exit that fits beside it; then a middle that fits beside both. The rules
//! and the reasons for this order are in `docs/path-selection.md`.

pub(crate) mod choice;
mod rules;
mod weights;

use std::net::SocketAddr;

use rand::Rng;
use trine_circuit::RelayId;

use crate::flags::Flags;
use crate::guards::GuardState;

pub use weights::{Position, PositionWeights, WEIGHT_SCALE};

/// One relay as path selection sees it. The consensus converts its entries
/// into these; the simulator builds them directly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The relay's identity.
    pub id: RelayId,
    /// Where it listens. Used only for the subnet rule (IPv4 /16, IPv6 /32).
    pub addresses: Vec<SocketAddr>,
    /// The relays it declares as run by the same operator. Two relays are
    /// one family only when each declares the other.
    pub family: Vec<RelayId>,
    /// The flags the consensus gave it.
    pub flags: Flags,
    /// Its consensus bandwidth weight (any unit, the same for every relay).
    pub weight: u64,
    /// Whether its exit policy lets general traffic out (needed for an exit).
    pub exit_allows_general: bool,
}

/// A chosen circuit path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Path {
    /// First hop: sees the client, not the destination.
    pub guard: RelayId,
    /// Second hop: sees neither.
    pub middle: RelayId,
    /// Last hop: sees the destination, not the client.
    pub exit: RelayId,
}

/// Settings that change the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathConfig {
    /// Refuse two relays in one IPv4 /16 or one IPv6 /32. On by default;
    /// only a test network whose relays all share one subnet turns it off.
    pub enforce_distinct_subnets: bool,
}

impl Default for PathConfig {
    fn default() -> Self {
        Self {
            enforce_distinct_subnets: true,
        }
    }
}

/// Why no path could be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The guard state holds no guard that is listed with Guard, Running and
    /// Valid, unexpired and not waiting for its retry time.
    #[error("no usable guard")]
    NoGuards,
    /// No relay with Exit, Running and Valid whose policy allows general
    /// traffic fits beside the relays already chosen.
    #[error("no exit fits beside {avoiding:?}")]
    NoExit {
        /// The relays the exit had to be kept apart from.
        avoiding: Vec<RelayId>,
    },
    /// No Running, Valid relay fits as middle beside the relays already
    /// chosen. From [`select_path`]: no middle fits beside the guard and
    /// any exit that fits the guard; `avoiding` names the guard and the last
    /// exit tried.
    #[error("no middle fits beside {avoiding:?}")]
    NoMiddle {
        /// The relays the middle had to be kept apart from.
        avoiding: Vec<RelayId>,
    },
}

/// Chooses a full path: reconciles `guards` with `candidates` (see
/// [`GuardState::update`]), takes the first usable guard, then a weighted
/// exit that fits beside it, then a weighted middle that fits beside both.
///
/// Only when no exit and middle fit beside the preferred guard at all is
/// the next usable guard tried. The error is the one met with the
/// preferred guard.
pub fn select_path<R: Rng + ?Sized>(
    candidates: &[Candidate],
    guards: &mut GuardState,
    now: u64,
    rng: &mut R,
    config: &PathConfig,
) -> Result<Path, PathError> {
    guards.update(candidates, now, rng);
    let weights = PositionWeights::compute(candidates);
    let mut first_error = None;
    for guard_id in guards.usable(now) {
        let listed_guard = candidates
            .iter()
            .find(|candidate| candidate.id == guard_id && candidate.is_guard_eligible());
        let Some(guard) = listed_guard else {
            continue;
        };
        match path_through(candidates, &weights, guard, config, rng) {
            Ok(path) => return Ok(path),
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
    }
    Err(first_error.unwrap_or(PathError::NoGuards))
}

/// Chooses an exit, weighted by its exit-position weight, among relays that
/// may be exits and fit beside every relay in `avoiding`.
pub fn select_exit<'a, R: Rng + ?Sized>(
    candidates: &'a [Candidate],
    avoiding: &[&Candidate],
    config: &PathConfig,
    rng: &mut R,
) -> Result<&'a Candidate, PathError> {
    let weights = PositionWeights::compute(candidates);
    let pool = fitting(candidates, Candidate::is_exit_eligible, avoiding, config);
    choice::choose(&pool, Position::Exit, &weights, rng)
        .map(|index| pool[index])
        .ok_or_else(|| PathError::NoExit {
            avoiding: ids(avoiding),
        })
}

/// Chooses a middle, weighted by its middle-position weight, among relays
/// that may be middles and fit beside every relay in `avoiding`.
pub fn select_middle<'a, R: Rng + ?Sized>(
    candidates: &'a [Candidate],
    avoiding: &[&Candidate],
    config: &PathConfig,
    rng: &mut R,
) -> Result<&'a Candidate, PathError> {
    let weights = PositionWeights::compute(candidates);
    let pool = fitting(candidates, Candidate::is_middle_eligible, avoiding, config);
    choice::choose(&pool, Position::Middle, &weights, rng)
        .map(|index| pool[index])
        .ok_or_else(|| PathError::NoMiddle {
            avoiding: ids(avoiding),
        })
}

/// The exit and middle for a fixed guard. An exit beside which no middle
/// fits is dropped and the exit drawn again from the rest, which is the
/// same as drawing only among exits that leave room for a middle.
fn path_through<R: Rng + ?Sized>(
    candidates: &[Candidate],
    weights: &PositionWeights,
    guard: &Candidate,
    config: &PathConfig,
    rng: &mut R,
) -> Result<Path, PathError> {
    let mut exits = fitting(candidates, Candidate::is_exit_eligible, &[guard], config);
    let mut last_exit = None;
    while let Some(exit_index) = choice::choose(&exits, Position::Exit, weights, rng) {
        let exit = exits.remove(exit_index);
        let middles = fitting(
            candidates,
            Candidate::is_middle_eligible,
            &[guard, exit],
            config,
        );
        if let Some(middle_index) = choice::choose(&middles, Position::Middle, weights, rng) {
            return Ok(Path {
                guard: guard.id,
                middle: middles[middle_index].id,
                exit: exit.id,
            });
        }
        last_exit = Some(exit.id);
    }
    Err(match last_exit {
        None => PathError::NoExit {
            avoiding: vec![guard.id],
        },
        Some(exit) => PathError::NoMiddle {
            avoiding: vec![guard.id, exit],
        },
    })
}

/// The candidates that pass `eligible` and fit beside every relay in
/// `avoiding`, in consensus order.
fn fitting<'a>(
    candidates: &'a [Candidate],
    eligible: fn(&Candidate) -> bool,
    avoiding: &[&Candidate],
    config: &PathConfig,
) -> Vec<&'a Candidate> {
    candidates
        .iter()
        .filter(|candidate| eligible(candidate))
        .filter(|candidate| {
            avoiding
                .iter()
                .all(|other| !candidate.conflicts_with(other, config))
        })
        .collect()
}

fn ids(relays: &[&Candidate]) -> Vec<RelayId> {
    relays.iter().map(|relay| relay.id).collect()
}
