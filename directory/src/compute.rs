//! The consensus algorithm: votes in, one [`ConsensusBody`] out. Every
//! authority runs it on the same votes and must get the same bytes, so it
//! is deterministic and independent of the order of the votes (they are
//! sorted by authority first, and every choice below has a total order).
//!
//! With `n` votes (all for the same period, from distinct authorities):
//!
//! 1. **Period**: `valid_after` as requested; `fresh_until` and
//!    `valid_until` are the low medians of the votes' (each vote is
//!    ordered, so the result is too).
//! 2. **Parameters**: each [`NetParams`] field is the low median of the
//!    votes'.
//! 3. **Listing**: a relay is a candidate when a strict majority of the
//!    votes given list it: `2 × listing > n`. "Of the votes given", not of
//!    the configured authorities: a missing vote counts against nobody
//!    (require enough votes with [`ComputeParams::min_votes`]).
//! 4. **Descriptor**: when the listing votes disagree on the descriptor,
//!    the variant (descriptor digest, publication time, certificate expiry
//!    and every listed field) carried by the most votes wins; ties go to the
//!    newest `published`, then to the smallest digest, then to the
//!    smallest fields. A relay whose chosen onion-key certificate expires
//!    before `valid_until` is dropped, so every listed key lasts the
//!    consensus' life.
//! 5. **Flags**: each flag is set when a strict majority of the votes
//!    listing the relay set it.
//! 6. **Weight**: the low median of the listing votes' measured bandwidths
//!    (for an even count, the lower of the two middle values: a minority
//!    cannot raise it).
//! 7. **Per-IP cap**: at most `max_relays_per_ip` relays per IP address.
//!    Relays are taken by weight (highest first, ties to the smallest
//!    identity); one is kept only if every IP it lists is still under the
//!    cap, and then counts against each.
//! 8. **Family**: each kept relay's family is cut down to relays the
//!    consensus lists.
//!
//! The relays come out ascending by identity.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};

use trine_circuit::{OnionPublicKey, RelayId};

use crate::consensus::ConsensusBody;
use crate::digest::Digest;
use crate::entry::RelayEntry;
use crate::flags::{Flag, Flags};
use crate::params::{NetParams, Period};
use crate::policy::ExitSummary;
use crate::vote::{SignedVote, VoteEntry};

/// What the caller decides: which period, and how many votes are enough.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ComputeParams {
    /// Start of the period being computed; every vote must be for it.
    pub valid_after: u64,
    /// Fewest votes to compute from (at least 1 whatever this says). A
    /// majority of the configured authorities is the usual choice.
    pub min_votes: usize,
}

/// Why no consensus could be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ComputeError {
    /// Not enough votes.
    #[error("{votes} votes, at least {needed} needed")]
    TooFewVotes {
        /// Votes given.
        votes: usize,
        /// Votes needed.
        needed: usize,
    },
    /// Two votes by one authority (the caller must keep one).
    #[error("two votes by authority {0}")]
    DuplicateAuthority(RelayId),
    /// A vote for another period.
    #[error("vote by {authority} is for valid_after {valid_after}, not {expected}")]
    WrongPeriod {
        /// The vote's authority.
        authority: RelayId,
        /// Its `valid_after`.
        valid_after: u64,
        /// The period being computed.
        expected: u64,
    },
}

/// Computes the consensus body from `votes` (see the module
/// documentation for the rules).
pub fn compute(
    votes: &[SignedVote],
    params: &ComputeParams,
) -> Result<ConsensusBody, ComputeError> {
    let needed = params.min_votes.max(1);
    if votes.len() < needed {
        return Err(ComputeError::TooFewVotes {
            votes: votes.len(),
            needed,
        });
    }
    let mut votes: Vec<&SignedVote> = votes.iter().collect();
    votes.sort_by_key(|vote| vote.authority());
    if let Some(pair) = votes
        .windows(2)
        .find(|pair| pair[0].authority() == pair[1].authority())
    {
        return Err(ComputeError::DuplicateAuthority(pair[0].authority()));
    }
    if let Some(vote) = votes
        .iter()
        .find(|vote| vote.vote().period().valid_after != params.valid_after)
    {
        return Err(ComputeError::WrongPeriod {
            authority: vote.authority(),
            valid_after: vote.vote().period().valid_after,
            expected: params.valid_after,
        });
    }
    let period = Period {
        valid_after: params.valid_after,
        fresh_until: low_median(votes.iter().map(|v| v.vote().period().fresh_until)),
        valid_until: low_median(votes.iter().map(|v| v.vote().period().valid_until)),
    };
    let net = median_params(&votes);

    let mut by_relay: BTreeMap<RelayId, Vec<&VoteEntry>> = BTreeMap::new();
    for vote in &votes {
        for entry in vote.vote().entries() {
            by_relay
                .entry(entry.relay.identity)
                .or_default()
                .push(entry);
        }
    }
    let candidates = by_relay
        .values()
        .filter(|entries| 2 * entries.len() > votes.len())
        .filter_map(|entries| candidate(entries, &period))
        .collect();
    let mut relays = cap_per_ip(candidates, net.max_relays_per_ip);
    relays.sort_by_key(|relay| relay.identity);
    let listed: BTreeSet<RelayId> = relays.iter().map(|relay| relay.identity).collect();
    for relay in &mut relays {
        relay.family.retain(|member| listed.contains(member));
    }
    Ok(ConsensusBody::from_parts(period, net, relays))
}

/// The consensus entry for one relay listed by a majority, or `None` if its
/// chosen onion key expires too early or a majority of its votes did not
/// see it running (a relay that stopped leaves the next consensus).
fn candidate(entries: &[&VoteEntry], period: &Period) -> Option<RelayEntry> {
    let chosen = choose_variant(entries)?;
    if chosen.onion_key_expires < period.valid_until {
        return None;
    }
    let flags: Flags = Flag::ALL
        .into_iter()
        .filter(|flag| {
            let set = entries.iter().filter(|e| e.relay.flags.has(*flag)).count();
            2 * set > entries.len()
        })
        .collect();
    if !flags.has(Flag::Running) {
        return None;
    }
    Some(RelayEntry {
        flags,
        weight: low_median(entries.iter().map(|entry| entry.relay.weight)),
        ..chosen.relay.clone()
    })
}

/// The descriptor variant most entries carry; ties to the newest
/// `published`, then the smallest digest, then the smallest fields.
fn choose_variant<'a>(entries: &[&'a VoteEntry]) -> Option<&'a VoteEntry> {
    let mut variants: BTreeMap<(&Digest, u64, u64, VariantFields<'a>), (usize, &'a VoteEntry)> =
        BTreeMap::new();
    for entry in entries {
        let key = (
            &entry.digest,
            entry.published,
            entry.onion_key_expires,
            VariantFields::of(&entry.relay),
        );
        variants.entry(key).or_insert((0, entry)).0 += 1;
    }
    // Ascending key order, so on equal (count, published) the first seen,
    // i.e. the smallest digest and fields, is kept.
    let mut best: Option<(usize, u64, &'a VoteEntry)> = None;
    for (count, entry) in variants.into_values() {
        let better = best.is_none_or(|(best_count, best_published, _)| {
            (count, entry.published) > (best_count, best_published)
        });
        if better {
            best = Some((count, entry.published, entry));
        }
    }
    best.map(|(_, _, entry)| entry)
}

/// The descriptor-derived fields of an entry, in a total order.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct VariantFields<'a> {
    onion_key: &'a OnionPublicKey,
    addresses: &'a [SocketAddr],
    nickname: &'a str,
    family: &'a [RelayId],
    exit: &'a ExitSummary,
}

impl<'a> VariantFields<'a> {
    fn of(relay: &'a RelayEntry) -> Self {
        Self {
            onion_key: &relay.onion_key,
            addresses: &relay.addresses,
            nickname: &relay.nickname,
            family: &relay.family,
            exit: &relay.exit,
        }
    }
}

/// Keeps at most `max` relays per IP address, highest weight first.
fn cap_per_ip(mut candidates: Vec<RelayEntry>, max: u32) -> Vec<RelayEntry> {
    candidates.sort_by(|a, b| b.weight.cmp(&a.weight).then(a.identity.cmp(&b.identity)));
    let mut per_ip: HashMap<IpAddr, u32> = HashMap::new();
    let mut kept = Vec::with_capacity(candidates.len());
    for relay in candidates {
        let mut ips: Vec<IpAddr> = relay.addresses.iter().map(|a| a.ip()).collect();
        ips.sort_unstable();
        ips.dedup();
        if ips
            .iter()
            .all(|ip| per_ip.get(ip).copied().unwrap_or(0) < max)
        {
            for ip in ips {
                *per_ip.entry(ip).or_insert(0) += 1;
            }
            kept.push(relay);
        }
    }
    kept
}

/// Each field of the votes' parameters, low median.
fn median_params(votes: &[&SignedVote]) -> NetParams {
    let field =
        |get: fn(&NetParams) -> u64| low_median(votes.iter().map(|v| get(v.vote().params())));
    NetParams {
        fast_min_bandwidth: field(|p| p.fast_min_bandwidth),
        stable_min_uptime_secs: field(|p| p.stable_min_uptime_secs),
        guard_min_bandwidth: field(|p| p.guard_min_bandwidth),
        guard_min_uptime_secs: field(|p| p.guard_min_uptime_secs),
        max_relays_per_ip: u32::try_from(field(|p| u64::from(p.max_relays_per_ip)))
            .unwrap_or(u32::MAX),
    }
}

/// The low median: for an even count, the lower middle value. 0 for no
/// values (never the case here: every caller has at least one).
fn low_median(values: impl Iterator<Item = u64>) -> u64 {
    let mut values: Vec<u64> = values.collect();
    values.sort_unstable();
    values
        .get(values.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_median_takes_the_lower_middle() {
        assert_eq!(low_median([5].into_iter()), 5);
        assert_eq!(low_median([9, 1].into_iter()), 1);
        assert_eq!(low_median([3, 1, 2].into_iter()), 2);
        assert_eq!(low_median([4, 1, 3, 2].into_iter()), 2);
        assert_eq!(low_median(std::iter::empty()), 0);
    }
}
