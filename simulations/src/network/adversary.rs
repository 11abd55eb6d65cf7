//! Which existing relays the adversary owns when it takes them over rather
//! than adding its own: the relays a scenario lists by name (`kind =
//! "chosen"`), or random relays until it holds given shares of guard- and
//! exit-position weight (`kind = "bandwidth"`). Both answer with positions
//! in the initial relay list, checked against the actual network, and fail
//! with [`SimError::Adversary`] naming the field or entry when the network
//! cannot give what the scenario asks.

use rand::Rng;
use rand::seq::SliceRandom;
use trine_directory::{Candidate, Position, PositionWeights};

use crate::engine::ratio;
use crate::error::SimError;

/// The positions of the relays `entries` name, in entry order. An entry of
/// 64 hex digits (either case) is a full fingerprint, one of 40 hex digits
/// the first 20 bytes of an identity (a Tor relay's fingerprint); anything
/// else is a nickname from `names` (parallel to `relays`), matched exactly.
/// An entry matching no relay or several, or a relay named twice, is an
/// error naming the entry.
pub fn chosen(
    relays: &[Candidate],
    names: &[String],
    entries: &[String],
) -> Result<Vec<usize>, SimError> {
    let mut owned: Vec<usize> = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let field = || format!("adversary.relays[{index}]");
        let matching: Vec<usize> = match fingerprint_bytes(entry) {
            Some(prefix) => (0..relays.len())
                .filter(|&at| relays[at].id.as_bytes().starts_with(&prefix))
                .collect(),
            None => (0..names.len().min(relays.len()))
                .filter(|&at| names[at] == *entry)
                .collect(),
        };
        let position = match matching[..] {
            [position] => position,
            [] => return Err(adversary(field(), format!("{entry:?} matches no relay"))),
            _ => {
                let ids: Vec<String> = matching
                    .iter()
                    .map(|&at| relays[at].id.fingerprint())
                    .collect();
                return Err(adversary(
                    field(),
                    format!(
                        "{entry:?} matches {} relays ({}); name one by its 64-digit fingerprint",
                        matching.len(),
                        ids.join(", ")
                    ),
                ));
            }
        };
        if let Some(earlier) = owned.iter().position(|&at| at == position) {
            return Err(adversary(
                field(),
                format!("{entry:?} names the same relay as adversary.relays[{earlier}]"),
            ));
        }
        owned.push(position);
    }
    Ok(owned)
}

/// One position's target: the share wanted, every relay's weight in that
/// position, and their total.
struct Target {
    field: &'static str,
    share: f64,
    weights: Vec<u128>,
    total: u128,
}

impl Target {
    fn new(field: &'static str, share: f64, relays: &[Candidate], position: Position) -> Self {
        let all = PositionWeights::compute(relays);
        let weights: Vec<u128> = relays.iter().map(|r| all.weight_of(r, position)).collect();
        let total = weights.iter().sum();
        Self {
            field,
            share,
            weights,
            total,
        }
    }

    /// Whether `owned` weight reaches the share, computed as the run
    /// reports it (`adversary_*_weight_share`).
    fn met(&self, owned: u128) -> bool {
        ratio(owned, self.total) >= self.share
    }
}

/// Relays, as positions in `relays`, that together hold at least
/// `guard_share` of the guard-position weight and `exit_share` of the
/// exit-position weight (position weights as [`PositionWeights`] computes
/// them over `relays`).
///
/// The relays are walked in a uniformly random order drawn from `rng`;
/// one is taken when it has weight in a position whose target is not yet
/// met, and the walk stops when both are. Then the taken relays are
/// revisited in the order taken and each is given back if both targets
/// stay met without it. So every relay returned is needed: without any one
/// of them, at least one target is missed. A positive target in a
/// position the network gives no weight to is an error naming the field.
pub fn by_bandwidth<R: Rng + ?Sized>(
    relays: &[Candidate],
    guard_share: f64,
    exit_share: f64,
    rng: &mut R,
) -> Result<Vec<usize>, SimError> {
    let targets = [
        Target::new(
            "adversary.guard_share",
            guard_share,
            relays,
            Position::Guard,
        ),
        Target::new("adversary.exit_share", exit_share, relays, Position::Exit),
    ];
    for target in &targets {
        if target.share > 0.0 && target.total == 0 {
            let reason = "is positive but the network has no weight in that position";
            return Err(adversary(target.field.to_owned(), reason.to_owned()));
        }
    }
    let all_met = |owned: &[u128; 2]| targets.iter().zip(owned).all(|(t, &o)| t.met(o));

    let mut order: Vec<usize> = (0..relays.len()).collect();
    order.shuffle(rng);
    let mut owned = [0u128; 2];
    let mut taken = Vec::new();
    for position in order {
        if all_met(&owned) {
            break;
        }
        let useful = targets
            .iter()
            .zip(&owned)
            .any(|(t, &o)| !t.met(o) && t.weights[position] > 0);
        if useful {
            taken.push(position);
            for (sum, target) in owned.iter_mut().zip(&targets) {
                *sum += target.weights[position];
            }
        }
    }
    // Taking every relay with weight in a position gives that position a
    // share of exactly 1, so the walk always ends with both targets met.
    if let Some((target, _)) = targets.iter().zip(owned).find(|(t, o)| !t.met(*o)) {
        return Err(adversary(
            target.field.to_owned(),
            "cannot be reached on this network".to_owned(),
        ));
    }

    let mut kept = Vec::with_capacity(taken.len());
    for position in taken {
        let mut without = owned;
        for (sum, target) in without.iter_mut().zip(&targets) {
            *sum -= target.weights[position];
        }
        if all_met(&without) {
            owned = without;
        } else {
            kept.push(position);
        }
    }
    Ok(kept)
}

/// The identity bytes an entry of 64 or 40 hex digits gives; `None` for
/// anything else (a nickname).
fn fingerprint_bytes(entry: &str) -> Option<Vec<u8>> {
    if !matches!(entry.len(), 40 | 64) || !entry.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    entry
        .as_bytes()
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}

fn adversary(field: String, reason: String) -> SimError {
    SimError::Adversary { field, reason }
}
