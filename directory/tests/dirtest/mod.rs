//! Shared fixtures for the directory tests: deterministic keys, relays,
//! descriptors, vote entries, votes and signed consensuses.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use trine_circuit::{IdentityKey, OnionKeyCert, OnionSecretKey, RelayId};
use trine_directory::{
    AuthoritySet, Bandwidth, ComputeParams, Consensus, ConsensusBody, Descriptor, Digest,
    ExitSummary, Flag, Flags, NetParams, Period, RelayEntry, SignedDescriptor, SignedVote, Vote,
    VoteEntry, compute,
};

/// Start of the period every test votes for.
pub const VALID_AFTER: u64 = 1_700_000_000;
/// `fresh_until` of that period.
pub const FRESH_UNTIL: u64 = VALID_AFTER + 3_600;
/// `valid_until` of that period.
pub const VALID_UNTIL: u64 = VALID_AFTER + 3 * 3_600;
/// Onion-key certificates made here expire a week after `VALID_AFTER`.
pub const CERT_EXPIRES: u64 = VALID_AFTER + 7 * 86_400;

/// The test period.
pub fn period() -> Period {
    Period {
        valid_after: VALID_AFTER,
        fresh_until: FRESH_UNTIL,
        valid_until: VALID_UNTIL,
    }
}

/// The period `hours` periods later (each one hour apart).
pub fn later_period(hours: u64) -> Period {
    let shift = hours * 3_600;
    Period {
        valid_after: VALID_AFTER + shift,
        fresh_until: FRESH_UNTIL + shift,
        valid_until: VALID_UNTIL + shift,
    }
}

/// A deterministic Ed25519 key; `domain` separates relays from authorities.
pub fn key(domain: u8, n: u16) -> IdentityKey {
    let mut secret = [domain; 32];
    secret[..2].copy_from_slice(&n.to_be_bytes());
    IdentityKey::from_secret_bytes(&secret)
}

/// Authority key `n`.
pub fn authority(n: u16) -> IdentityKey {
    key(0xa0, n)
}

/// Relay key `n`.
pub fn relay_key(n: u16) -> IdentityKey {
    key(0x10, n)
}

/// Relay `n`'s onion secret.
pub fn onion(n: u16) -> OnionSecretKey {
    let mut secret = [0x20; 32];
    secret[..2].copy_from_slice(&n.to_be_bytes());
    OnionSecretKey::from_secret_bytes(secret)
}

/// A distinct public-looking IPv4 address for relay `n` (198.18.0.0/15).
pub fn ip_of(n: u16) -> SocketAddr {
    let [hi, lo] = n.to_be_bytes();
    SocketAddr::from(([198, 18 + (hi & 1), hi >> 1, lo], 443))
}

/// The fields of relay `n`'s descriptor, published at `VALID_AFTER - 600`.
pub fn descriptor_fields(n: u16) -> Descriptor {
    let identity = relay_key(n);
    let onion_key = onion(n).public_key();
    Descriptor {
        identity: identity.relay_id(),
        onion_key,
        onion_cert: OnionKeyCert::issue(&identity, onion_key, CERT_EXPIRES),
        addresses: vec![ip_of(n)],
        nickname: format!("relay{n}"),
        family: Vec::new(),
        bandwidth: Bandwidth {
            rate: 10_000_000,
            burst: 20_000_000,
            observed: 5_000_000,
        },
        exit: ExitSummary::REJECT_ALL,
        version: "trine 0.1.0".into(),
        published: VALID_AFTER - 600,
    }
}

/// Relay `n`'s signed descriptor.
pub fn descriptor(n: u16) -> SignedDescriptor {
    descriptor_fields(n).sign(&relay_key(n)).unwrap()
}

/// The usual flags of a healthy relay.
pub fn healthy() -> Flags {
    [Flag::Running, Flag::Valid, Flag::Fast, Flag::Stable]
        .into_iter()
        .collect()
}

/// A vote entry for relay `n` built straight from its fields (no signing).
pub fn entry(n: u16, flags: Flags, measured: u64) -> VoteEntry {
    let fields = descriptor_fields(n);
    VoteEntry {
        relay: RelayEntry::from_descriptor(&fields, flags, measured),
        digest: Digest::of(&n.to_be_bytes()),
        published: fields.published,
        onion_key_expires: CERT_EXPIRES,
    }
}

/// Authority `n`'s signed vote for the test period.
pub fn vote(n: u16, entries: Vec<VoteEntry>) -> SignedVote {
    vote_with(n, period(), NetParams::default(), entries)
}

/// Authority `n`'s signed vote with its own period and parameters.
pub fn vote_with(n: u16, period: Period, params: NetParams, entries: Vec<VoteEntry>) -> SignedVote {
    Vote::new(period, params, entries)
        .unwrap()
        .sign(&authority(n))
}

/// Compute parameters for the test period, at least one vote.
pub fn compute_params() -> ComputeParams {
    ComputeParams {
        valid_after: VALID_AFTER,
        min_votes: 1,
    }
}

/// The consensus of `votes` for the test period.
pub fn body(votes: &[SignedVote]) -> ConsensusBody {
    compute(votes, &compute_params()).unwrap()
}

/// The identities a body lists.
pub fn listed(body: &ConsensusBody) -> Vec<RelayId> {
    body.relays().iter().map(|relay| relay.identity).collect()
}

/// Relay `n`'s identity.
pub fn id(n: u16) -> RelayId {
    relay_key(n).relay_id()
}

/// Authorities 0..count with threshold `threshold`.
pub fn authorities(count: u16, threshold: usize) -> AuthoritySet {
    AuthoritySet::new((0..count).map(|n| authority(n).relay_id()), threshold).unwrap()
}

/// A consensus over `relays` relays for `period`, signed by the
/// authorities in `signers`.
pub fn signed_consensus(period: Period, relays: u16, signers: &[u16]) -> Consensus {
    let entries: Vec<VoteEntry> = (0..relays)
        .map(|n| entry(n, healthy(), 1_000_000))
        .collect();
    let votes: Vec<SignedVote> = (0..3)
        .map(|a| vote_with(a, period, NetParams::default(), entries.clone()))
        .collect();
    let params = ComputeParams {
        valid_after: period.valid_after,
        min_votes: 1,
    };
    let body = compute(&votes, &params).unwrap();
    let signatures: Vec<_> = signers.iter().map(|a| body.sign(&authority(*a))).collect();
    Consensus::new(body).with_signatures(signatures)
}
