//! Path selection: choosing the guard, middle and exit of a circuit from the
//! relays of a consensus.
//!
//! The input is a [`PathIndex`]: the consensus as [`Candidate`]s, a flat
//! view that carries only what the rules need, prepared once per
//! consensus, so the client and the simulator run exactly the same code. Nothing here does I/O or reads a clock: time is a
//! parameter (UNIX seconds) and every random choice comes from the caller's
//! RNG, so a seeded RNG reproduces every path.
//!
//! Order: the guard comes first, from the persistent [`GuardState`]; then an
//! exit that fits beside it; then a middle that fits beside both. The rules
//! and the reasons for this order are in `docs/path-selection.md`.

pub(crate) mod choice;
mod index;
mod rules;
mod weights;

use std::net::SocketAddr;

use rand::Rng;
use trine_circuit::RelayId;

use crate::flags::Flags;
use crate::guards::GuardState;

pub use index::{PathIndex, REJECTION_TRIES};
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

/// Chooses a full path: reconciles `guards` with the consensus in
/// `index` (see [`GuardState::update`]), takes the first usable guard, then
/// a weighted exit that fits beside it, then a weighted middle that fits
/// beside both.
///
/// Only when no exit and middle fit beside the preferred guard at all is
/// the next usable guard tried. The error is the one met with the
/// preferred guard.
pub fn select_path<R: Rng + ?Sized>(
    index: &PathIndex,
    guards: &mut GuardState,
    now: u64,
    rng: &mut R,
    config: &PathConfig,
) -> Result<Path, PathError> {
    select_path_positions(index, guards, now, rng, config).map(|chosen| {
        let id = |position: usize| index.candidates()[position].id;
        Path {
            guard: id(chosen.guard),
            middle: id(chosen.middle),
            exit: id(chosen.exit),
        }
    })
}

/// A path as positions in [`PathIndex::candidates`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PathPositions {
    /// Where the guard is.
    pub guard: usize,
    /// Where the middle is.
    pub middle: usize,
    /// Where the exit is.
    pub exit: usize,
}

/// [`select_path`], giving where the relays are in the index rather than
/// who they are (the simulator looks them up by position).
pub fn select_path_positions<R: Rng + ?Sized>(
    index: &PathIndex,
    guards: &mut GuardState,
    now: u64,
    rng: &mut R,
    config: &PathConfig,
) -> Result<PathPositions, PathError> {
    guards.update(index, now, rng);
    let mut first_error = None;
    // By rank rather than by iterator, so the state can keep its first
    // guard at hand; later ranks are reached only when no path fits.
    for rank in 0.. {
        let Some(listed) = guards.usable_listed(index, now, rank) else {
            break;
        };
        let Some(guard) = listed else {
            continue;
        };
        match path_through(index, guard, config, rng) {
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
    index: &'a PathIndex,
    avoiding: &[&Candidate],
    config: &PathConfig,
    rng: &mut R,
) -> Result<&'a Candidate, PathError> {
    index
        .draw(
            Position::Exit,
            Candidate::is_exit_eligible,
            |at| fits_beside(&index.candidates()[at], avoiding, config),
            rng,
        )
        .map(|at| &index.candidates()[at])
        .ok_or_else(|| PathError::NoExit {
            avoiding: ids(avoiding),
        })
}

/// Chooses a middle, weighted by its middle-position weight, among relays
/// that may be middles and fit beside every relay in `avoiding`.
pub fn select_middle<'a, R: Rng + ?Sized>(
    index: &'a PathIndex,
    avoiding: &[&Candidate],
    config: &PathConfig,
    rng: &mut R,
) -> Result<&'a Candidate, PathError> {
    index
        .draw(
            Position::Middle,
            Candidate::is_middle_eligible,
            |at| fits_beside(&index.candidates()[at], avoiding, config),
            rng,
        )
        .map(|at| &index.candidates()[at])
        .ok_or_else(|| PathError::NoMiddle {
            avoiding: ids(avoiding),
        })
}

/// The exit and middle for the guard at position `guard`. An exit beside
/// which no middle fits is set aside and the exit drawn again from the
/// rest, which is the same as drawing only among exits that leave room for
/// a middle.
fn path_through<R: Rng + ?Sized>(
    index: &PathIndex,
    guard: usize,
    config: &PathConfig,
    rng: &mut R,
) -> Result<PathPositions, PathError> {
    let candidates = index.candidates();
    let guard_relay = &candidates[guard];
    let mut set_aside: Vec<RelayId> = Vec::new();
    loop {
        let exit = index.draw(
            Position::Exit,
            Candidate::is_exit_eligible,
            |at| !set_aside.contains(&candidates[at].id) && index.fits_beside(at, &[guard], config),
            rng,
        );
        let Some(exit) = exit else {
            return Err(match set_aside.last() {
                None => PathError::NoExit {
                    avoiding: vec![guard_relay.id],
                },
                Some(exit) => PathError::NoMiddle {
                    avoiding: vec![guard_relay.id, *exit],
                },
            });
        };
        let exit_relay = &candidates[exit];
        let middle = index.draw(
            Position::Middle,
            Candidate::is_middle_eligible,
            |at| index.fits_beside(at, &[guard, exit], config),
            rng,
        );
        if let Some(middle) = middle {
            return Ok(PathPositions {
                guard,
                middle,
                exit,
            });
        }
        set_aside.push(exit_relay.id);
    }
}

/// Whether `candidate` may share a circuit with every relay in `avoiding`.
fn fits_beside(candidate: &Candidate, avoiding: &[&Candidate], config: &PathConfig) -> bool {
    avoiding
        .iter()
        .all(|other| !candidate.conflicts_with(other, config))
}

fn ids(relays: &[&Candidate]) -> Vec<RelayId> {
    relays.iter().map(|relay| relay.id).collect()
}
