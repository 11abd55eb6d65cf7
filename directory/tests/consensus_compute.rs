//! The consensus algorithm: listing, descriptor choice, flags and weight by
//! majority and median, the per-IP cap, and (property tests) independence
//! from vote order and from a minority of votes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod dirtest;

use std::sync::OnceLock;

use dirtest::*;
use proptest::prelude::*;
use trine_directory::{
    ComputeError, ComputeParams, Digest, Flag, Flags, NetParams, Period, RelayEntry, SignedVote,
    VoteEntry, compute,
};

fn flags(list: &[Flag]) -> Flags {
    list.iter().copied().collect()
}

fn relay(body: &trine_directory::ConsensusBody, n: u16) -> RelayEntry {
    body.relays()
        .iter()
        .find(|relay| relay.identity == id(n))
        .cloned()
        .expect("relay not listed")
}

fn sorted_ids(ns: &[u16]) -> Vec<trine_circuit::RelayId> {
    let mut ids: Vec<_> = ns.iter().map(|n| id(*n)).collect();
    ids.sort();
    ids
}

#[test]
fn a_relay_is_listed_only_by_a_strict_majority_of_the_votes_given() {
    let votes = vec![
        vote(
            0,
            vec![
                entry(1, healthy(), 1),
                entry(2, healthy(), 1),
                entry(3, healthy(), 1),
            ],
        ),
        vote(1, vec![entry(1, healthy(), 1), entry(2, healthy(), 1)]),
        vote(2, vec![entry(1, healthy(), 1)]),
    ];
    assert_eq!(listed(&body(&votes)), sorted_ids(&[1, 2]));

    // Two of four is not a majority.
    let votes = vec![
        vote(0, vec![entry(1, healthy(), 1), entry(2, healthy(), 1)]),
        vote(1, vec![entry(1, healthy(), 1), entry(2, healthy(), 1)]),
        vote(2, vec![entry(1, healthy(), 1)]),
        vote(3, vec![]),
    ];
    assert_eq!(listed(&body(&votes)), sorted_ids(&[1]));
}

#[test]
fn each_flag_needs_a_majority_of_the_votes_listing_the_relay() {
    let guard = flags(&[Flag::Running, Flag::Guard]);
    let exit = flags(&[Flag::Running, Flag::Exit]);
    let votes = vec![
        vote(0, vec![entry(1, guard, 1)]),
        vote(1, vec![entry(1, guard, 1)]),
        vote(2, vec![entry(1, exit, 1)]),
    ];
    assert_eq!(relay(&body(&votes), 1).flags, guard);

    // With four listing votes, two are not enough.
    let votes = vec![
        vote(0, vec![entry(1, guard, 1)]),
        vote(1, vec![entry(1, guard, 1)]),
        vote(2, vec![entry(1, exit, 1)]),
        vote(3, vec![entry(1, exit, 1)]),
    ];
    assert_eq!(relay(&body(&votes), 1).flags, flags(&[Flag::Running]));
}

#[test]
fn a_relay_most_authorities_did_not_see_running_is_left_out() {
    let down = flags(&[Flag::Valid, Flag::Guard]);
    let votes = vec![
        vote(0, vec![entry(1, healthy(), 1), entry(2, healthy(), 1)]),
        vote(1, vec![entry(1, healthy(), 1), entry(2, down, 1)]),
        vote(2, vec![entry(1, down, 1), entry(2, down, 1)]),
    ];
    // Relay 1: two of three saw it running; relay 2: one of three.
    assert_eq!(listed(&body(&votes)), sorted_ids(&[1]));
}

#[test]
fn weight_is_the_low_median_of_the_measurements() {
    let votes: Vec<_> = [10, 30, 20]
        .into_iter()
        .enumerate()
        .map(|(a, bw)| vote(a as u16, vec![entry(1, healthy(), bw)]))
        .collect();
    assert_eq!(relay(&body(&votes), 1).weight, 20);

    let votes: Vec<_> = [10, 40, 20, 30]
        .into_iter()
        .enumerate()
        .map(|(a, bw)| vote(a as u16, vec![entry(1, healthy(), bw)]))
        .collect();
    assert_eq!(relay(&body(&votes), 1).weight, 20);

    // A minority of huge claims cannot raise it.
    let votes: Vec<_> = [10, 10, 10, u64::MAX, u64::MAX]
        .into_iter()
        .enumerate()
        .map(|(a, bw)| vote(a as u16, vec![entry(1, healthy(), bw)]))
        .collect();
    assert_eq!(relay(&body(&votes), 1).weight, 10);
}

/// `entry` with its address replaced.
fn at(mut entry: VoteEntry, addresses: &[&str]) -> VoteEntry {
    entry.relay.addresses = addresses.iter().map(|a| a.parse().unwrap()).collect();
    entry.relay.addresses.sort();
    entry
}

#[test]
fn at_most_two_relays_per_ip_keeping_the_heaviest() {
    let same = "198.18.5.5:443";
    let entries = vec![
        at(entry(1, healthy(), 100), &[same]),
        at(entry(2, healthy(), 300), &[same]),
        at(entry(3, healthy(), 200), &["198.18.5.5:9001"]),
        at(entry(4, healthy(), 50), &["198.18.5.6:443"]),
    ];
    let body = body(&[vote(0, entries)]);
    assert_eq!(listed(&body), sorted_ids(&[2, 3, 4]));
    assert_eq!(body.params().max_relays_per_ip, 2);
}

#[test]
fn equal_weights_on_one_ip_keep_the_smallest_identities() {
    let entries: Vec<_> = (1..=4)
        .map(|n| at(entry(n, healthy(), 100), &["198.18.5.5:443"]))
        .collect();
    let mut expected = sorted_ids(&[1, 2, 3, 4]);
    expected.truncate(2);
    assert_eq!(listed(&body(&[vote(0, entries)])), expected);
}

#[test]
fn a_relay_counts_against_every_ip_it_lists() {
    let v4 = "198.18.5.5:443";
    let v6 = "[2001:db8::5]:443";
    let entries = vec![
        at(entry(1, healthy(), 300), &[v4, v6]),
        at(entry(2, healthy(), 200), &[v6]),
        at(entry(3, healthy(), 100), &[v4, v6]), // v6 already holds two
        at(entry(4, healthy(), 50), &[v4]),
    ];
    assert_eq!(listed(&body(&[vote(0, entries)])), sorted_ids(&[1, 2, 4]));
}

#[test]
fn the_cap_comes_from_the_voted_parameters() {
    let one = NetParams {
        max_relays_per_ip: 1,
        ..NetParams::default()
    };
    let entries = vec![
        at(entry(1, healthy(), 100), &["198.18.5.5:443"]),
        at(entry(2, healthy(), 200), &["198.18.5.5:443"]),
    ];
    let votes = vec![
        vote_with(0, period(), one, entries.clone()),
        vote_with(1, period(), one, entries.clone()),
        vote_with(2, period(), NetParams::default(), entries),
    ];
    let body = body(&votes);
    assert_eq!(body.params().max_relays_per_ip, 1);
    assert_eq!(listed(&body), sorted_ids(&[2]));
}

/// Relay 1's entry as another descriptor: new nickname, digest, time.
fn variant(nickname: &str, published_delta: u64, digest: u8) -> VoteEntry {
    let mut e = entry(1, healthy(), 10);
    e.relay.nickname = nickname.into();
    e.published += published_delta;
    e.digest = Digest([digest; 32]);
    e
}

#[test]
fn the_descriptor_most_votes_carry_wins() {
    let votes = vec![
        vote(0, vec![variant("old", 0, 1)]),
        vote(1, vec![variant("old", 0, 1)]),
        vote(2, vec![variant("new", 100, 2)]),
    ];
    assert_eq!(relay(&body(&votes), 1).nickname, "old");
}

#[test]
fn descriptor_ties_go_to_the_newest_then_the_smallest_digest() {
    let votes = vec![
        vote(0, vec![variant("old", 0, 1)]),
        vote(1, vec![variant("new", 100, 2)]),
    ];
    assert_eq!(relay(&body(&votes), 1).nickname, "new");

    let votes = vec![
        vote(0, vec![variant("big", 100, 9)]),
        vote(1, vec![variant("small", 100, 3)]),
    ];
    assert_eq!(relay(&body(&votes), 1).nickname, "small");
}

#[test]
fn a_relay_whose_onion_key_expires_during_the_consensus_is_dropped() {
    let mut short = entry(2, healthy(), 10);
    short.onion_key_expires = VALID_UNTIL - 1;
    let mut exact = entry(3, healthy(), 10);
    exact.onion_key_expires = VALID_UNTIL;
    let body = body(&[vote(0, vec![entry(1, healthy(), 10), short, exact])]);
    assert_eq!(listed(&body), sorted_ids(&[1, 3]));
}

#[test]
fn families_only_name_listed_relays() {
    let mut one = entry(1, healthy(), 10);
    one.relay.family = vec![id(2), id(99)];
    one.relay.family.sort();
    let body = body(&[vote(0, vec![one, entry(2, healthy(), 10)])]);
    assert_eq!(relay(&body, 1).family, vec![id(2)]);
}

#[test]
fn period_and_parameters_are_low_medians_of_the_votes() {
    let votes: Vec<_> = [(1, 3, 5u32), (2, 1, 1), (3, 2, 2)]
        .into_iter()
        .enumerate()
        .map(|(a, (hours, fast, per_ip))| {
            let period = Period {
                fresh_until: VALID_AFTER + hours * 600,
                valid_until: VALID_AFTER + hours * 3_600,
                ..period()
            };
            let params = NetParams {
                fast_min_bandwidth: fast,
                max_relays_per_ip: per_ip,
                ..NetParams::default()
            };
            vote_with(a as u16, period, params, vec![])
        })
        .collect();
    let body = body(&votes);
    assert_eq!(body.period().fresh_until, VALID_AFTER + 1_200);
    assert_eq!(body.period().valid_until, VALID_AFTER + 7_200);
    assert_eq!(body.params().fast_min_bandwidth, 2);
    assert_eq!(body.params().max_relays_per_ip, 2);
}

#[test]
fn unusable_vote_sets_are_refused() {
    assert_eq!(
        compute(&[], &compute_params()),
        Err(ComputeError::TooFewVotes {
            votes: 0,
            needed: 1
        })
    );
    let params = ComputeParams {
        min_votes: 3,
        ..compute_params()
    };
    assert_eq!(
        compute(&[vote(0, vec![]), vote(1, vec![])], &params),
        Err(ComputeError::TooFewVotes {
            votes: 2,
            needed: 3
        })
    );
    assert_eq!(
        compute(
            &[vote(0, vec![]), vote(0, vec![entry(1, healthy(), 1)])],
            &compute_params()
        ),
        Err(ComputeError::DuplicateAuthority(authority(0).relay_id()))
    );
    let other = vote_with(1, later_period(1), NetParams::default(), vec![]);
    assert_eq!(
        compute(&[vote(0, vec![]), other], &compute_params()),
        Err(ComputeError::WrongPeriod {
            authority: authority(1).relay_id(),
            valid_after: VALID_AFTER + 3_600,
            expected: VALID_AFTER
        })
    );
}

// ---- property tests ----

/// Relays the property tests draw from (distinct IPs), two descriptor
/// variants each, built once.
const POOL: u16 = 10;

fn pool() -> &'static Vec<[VoteEntry; 2]> {
    static POOL_ENTRIES: OnceLock<Vec<[VoteEntry; 2]>> = OnceLock::new();
    POOL_ENTRIES.get_or_init(|| {
        (0..POOL)
            .map(|n| {
                let base = entry(n, Flags::NONE, 0);
                let mut alt = base.clone();
                alt.relay.nickname = format!("alt{n}");
                alt.published += 60;
                alt.digest = Digest([n as u8; 32]);
                [base, alt]
            })
            .collect()
    })
}

/// One authority's vote: per pool relay, `None` (not listed) or
/// (variant, flag bits, measured bandwidth).
type VoteSpec = Vec<Option<(usize, u8, u64)>>;

fn vote_spec() -> impl Strategy<Value = VoteSpec> {
    prop::collection::vec(
        prop::option::of((0..2usize, 0..64u8, 0..1_000u64)),
        POOL as usize,
    )
}

fn build_vote(authority: u16, spec: &VoteSpec) -> SignedVote {
    let entries = spec
        .iter()
        .enumerate()
        .filter_map(|(n, choice)| {
            let (variant, bits, measured) = (*choice)?;
            let mut e = pool()[n][variant].clone();
            e.relay.flags = Flags::from_bits(bits).unwrap();
            e.relay.weight = measured;
            Some(e)
        })
        .collect();
    vote(authority, entries)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn vote_order_does_not_matter(
        specs in prop::collection::vec(vote_spec(), 1..=5),
        order_seed in any::<u64>(),
    ) {
        let votes: Vec<SignedVote> = specs
            .iter()
            .enumerate()
            .map(|(a, spec)| build_vote(a as u16, spec))
            .collect();
        let reference = compute(&votes, &compute_params()).unwrap();
        // Every rotation and a seeded shuffle give the same bytes.
        let mut permuted = votes.clone();
        for _ in 0..votes.len() {
            permuted.rotate_left(1);
            prop_assert_eq!(compute(&permuted, &compute_params()).unwrap().to_bytes(), reference.to_bytes());
        }
        let mut state = order_seed | 1;
        for i in (1..permuted.len()).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            permuted.swap(i, (state % (i as u64 + 1)) as usize);
        }
        prop_assert_eq!(compute(&permuted, &compute_params()).unwrap(), reference);
    }

    #[test]
    fn a_minority_of_votes_cannot_add_or_remove_a_relay(
        honest_set in prop::collection::vec(any::<bool>(), POOL as usize),
        honest_count in 1..=4usize,
        minority in prop::collection::vec(vote_spec(), 0..=3),
    ) {
        prop_assume!(minority.len() < honest_count);
        let honest_spec: VoteSpec = honest_set
            .iter()
            .map(|&listed| listed.then_some((0, healthy().bits(), 500)))
            .collect();
        let mut votes: Vec<SignedVote> = (0..honest_count)
            .map(|a| build_vote(a as u16, &honest_spec))
            .collect();
        votes.extend(
            minority
                .iter()
                .enumerate()
                .map(|(i, spec)| build_vote((honest_count + i) as u16, spec)),
        );
        let body = compute(&votes, &compute_params()).unwrap();
        let mut expected: Vec<_> = honest_set
            .iter()
            .enumerate()
            .filter(|(_, listed)| **listed)
            .map(|(n, _)| id(n as u16))
            .collect();
        expected.sort();
        prop_assert_eq!(listed(&body), expected);
        for relay in body.relays() {
            // The honest majority's descriptor and flags win too.
            prop_assert!(!relay.nickname.starts_with("alt"));
            prop_assert_eq!(relay.flags, healthy());
        }
    }
}
