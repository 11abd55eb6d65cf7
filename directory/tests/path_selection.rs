//! Path selection: the same seed gives the same paths; relays are drawn as
//! often as their position weights say (checked against a binomial bound);
//! every path drawn from random networks obeys every rule; and selection
//! fails only when brute force finds no valid path either.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use trine_circuit::RelayId;
use trine_directory::path::WEIGHT_SCALE;
use trine_directory::{
    Candidate, Flag, Flags, GuardParams, GuardState, Path, PathConfig, PathError, PathIndex,
    Position, PositionWeights, select_exit, select_middle, select_path,
};

const NOW: u64 = 1_700_000_000;
const DRAWS: usize = 20_000;

fn id(n: u16) -> RelayId {
    let mut bytes = [0u8; 32];
    bytes[..2].copy_from_slice(&n.to_be_bytes());
    RelayId::from_bytes(bytes)
}

fn flags(list: &[Flag]) -> Flags {
    list.iter().copied().collect()
}

const MIDDLE: &[Flag] = &[Flag::Running, Flag::Valid, Flag::Fast];
const GUARD: &[Flag] = &[Flag::Running, Flag::Valid, Flag::Fast, Flag::Guard];
const EXIT: &[Flag] = &[Flag::Running, Flag::Valid, Flag::Fast, Flag::Exit];
const DUAL: &[Flag] = &[Flag::Running, Flag::Valid, Flag::Guard, Flag::Exit];

/// A relay alone in its own /16 (10.n.0.1) with no family.
fn relay(n: u16, list: &[Flag], weight: u64) -> Candidate {
    let [high, low] = n.to_be_bytes();
    Candidate {
        id: id(n),
        addresses: vec![SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(10 + high, low, 0, 1)),
            443,
        )],
        family: Vec::new(),
        flags: flags(list),
        weight,
        exit_allows_general: true,
    }
}

/// 10 exit-only, 5 dual, 10 guard-only and 20 middle-only relays, all in
/// distinct /16s, with varied bandwidths.
fn mixed_network() -> Vec<Candidate> {
    let mut relays = Vec::new();
    let mut next = 1u16;
    for (count, list, base) in [
        (10, EXIT, 300),
        (5, DUAL, 700),
        (10, GUARD, 500),
        (20, MIDDLE, 200),
    ] {
        for index in 0..count {
            relays.push(relay(next, list, base + 97 * index));
            next += 1;
        }
    }
    relays
}

fn find(candidates: &[Candidate], wanted: RelayId) -> &Candidate {
    candidates.iter().find(|c| c.id == wanted).unwrap()
}

/// Asserts that `counts[i]` out of `draws` is within five binomial standard
/// deviations of `draws * weights[i] / sum(weights)`, and exactly zero when
/// the weight is zero.
fn assert_binomial(counts: &[usize], weights: &[u128], draws: usize) {
    let total: u128 = weights.iter().sum();
    assert!(total > 0);
    for (index, (&count, &weight)) in counts.iter().zip(weights).enumerate() {
        let p = weight as f64 / total as f64;
        let expected = draws as f64 * p;
        let sigma = (draws as f64 * p * (1.0 - p)).sqrt();
        let bound = 5.0 * sigma;
        assert!(
            (count as f64 - expected).abs() <= bound,
            "relay {index}: drawn {count} times, expected {expected:.1} ± {bound:.1}"
        );
        if weight == 0 {
            assert_eq!(count, 0, "relay {index} has weight 0");
        }
    }
}

#[test]
fn the_same_seed_gives_the_same_paths() {
    let network = mixed_network();
    let run = |seed: u64| {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let mut guards = GuardState::default();
        let paths: Vec<Path> = (0..300)
            .map(|_| {
                select_path(
                    &PathIndex::new(network.clone()),
                    &mut guards,
                    NOW,
                    &mut rng,
                    &PathConfig::default(),
                )
                .unwrap()
            })
            .collect();
        (paths, guards.to_bytes())
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7).0, run(8).0);
}

#[test]
fn exits_are_drawn_as_often_as_their_exit_weight_says() {
    let network = mixed_network();
    let weights = PositionWeights::compute(&network);
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let mut counts = vec![0; network.len()];
    let index = PathIndex::new(network.clone());
    for _ in 0..DRAWS {
        let exit = select_exit(&index, &[], &PathConfig::default(), &mut rng).unwrap();
        counts[network.iter().position(|c| c.id == exit.id).unwrap()] += 1;
    }
    let expected: Vec<u128> = network
        .iter()
        .map(|c| weights.weight_of(c, Position::Exit))
        .collect();
    assert_binomial(&counts, &expected, DRAWS);
    // Exit and guard capacity are both under a third of the total here:
    // exit-only relays give everything to the exit position, and dual
    // relays are shared between guard and exit, none of them to the middle.
    assert_eq!(weights.exit_as_exit, WEIGHT_SCALE);
    assert_eq!(weights.guard_as_guard, WEIGHT_SCALE);
    assert_eq!(weights.dual_as_middle, 0);
    assert!(weights.dual_as_exit > 0 && weights.dual_as_guard > 0);
}

#[test]
fn middles_are_drawn_by_middle_weight_among_relays_that_fit() {
    let mut network = mixed_network();
    // Two middles share the guard's /16 and one declares mutual family with
    // the exit: those three must never be drawn.
    let guard = network[20].clone();
    let exit = network[0].clone();
    network[30].addresses = guard.addresses.clone();
    network[31].addresses = vec!["192.0.2.1:9001".parse().unwrap(), guard.addresses[0]];
    network[32].family = vec![exit.id];
    network[0].family = vec![network[32].id];
    let exit = network[0].clone();
    let config = PathConfig::default();
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let mut counts = vec![0; network.len()];
    let index = PathIndex::new(network.clone());
    for _ in 0..DRAWS {
        let middle = select_middle(&index, &[&guard, &exit], &config, &mut rng).unwrap();
        counts[network.iter().position(|c| c.id == middle.id).unwrap()] += 1;
    }
    let expected = middle_weights_beside(&network, &[&guard, &exit], &config);
    for excluded in [0, 20, 30, 31, 32] {
        assert_eq!(expected[excluded], 0);
    }
    assert_binomial(&counts, &expected, DRAWS);
}

/// Each relay's middle-position weight if it fits beside every relay in
/// `avoiding`, else 0: what middle draws must be proportional to.
fn middle_weights_beside(
    network: &[Candidate],
    avoiding: &[&Candidate],
    config: &PathConfig,
) -> Vec<u128> {
    let weights = PositionWeights::compute(network);
    network
        .iter()
        .map(|c| {
            if avoiding.iter().any(|other| c.conflicts_with(other, config)) {
                0
            } else {
                weights.weight_of(c, Position::Middle)
            }
        })
        .collect()
}

/// When almost all middle weight sits beside the guard, most rejection
/// draws miss and the index falls back to its exact scan: the draw must
/// still be proportional to weight among the few middles that fit.
#[test]
fn middles_are_drawn_by_weight_when_almost_none_fit() {
    let mut network = mixed_network();
    let guard = network[20].clone();
    let exit = network[0].clone();
    // Every middle but three shares the guard's /16 and has far more weight.
    for relay in network.iter_mut().skip(28) {
        relay.addresses = guard.addresses.clone();
        relay.weight = 1_000_000;
    }
    let config = PathConfig::default();
    let index = PathIndex::new(network.clone());
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let mut counts = vec![0; network.len()];
    for _ in 0..DRAWS {
        let middle = select_middle(&index, &[&guard, &exit], &config, &mut rng).unwrap();
        counts[network.iter().position(|c| c.id == middle.id).unwrap()] += 1;
    }
    let expected = middle_weights_beside(&network, &[&guard, &exit], &config);
    assert_binomial(&counts, &expected, DRAWS);
}

/// Reconciling a guard state twice with one prepared consensus is the same
/// as once, and a new consensus without some sampled guard drops it.
#[test]
fn repeating_an_update_changes_nothing_until_the_consensus_changes() {
    let network = mixed_network();
    let index = PathIndex::new(network.clone());
    let mut rng = ChaCha20Rng::seed_from_u64(10);
    let mut guards = GuardState::new(GuardParams::default());
    guards.update(&index, NOW, &mut rng);
    let once = guards.clone();
    guards.update(&index, NOW + 60, &mut rng);
    assert_eq!(guards, once);
    let first = guards.entries()[0].id;
    let without: Vec<Candidate> = network.into_iter().filter(|c| c.id != first).collect();
    guards.update(&PathIndex::new(without), NOW + 120, &mut rng);
    assert!(guards.entries().iter().all(|entry| entry.id != first));
}

#[test]
fn full_paths_keep_the_primary_guard_and_draw_exits_by_weight() {
    let network = mixed_network();
    let weights = PositionWeights::compute(&network);
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let mut guards = GuardState::default();
    let mut counts = vec![0; network.len()];
    let mut used_guard = None;
    for _ in 0..DRAWS {
        let path = select_path(
            &PathIndex::new(network.clone()),
            &mut guards,
            NOW,
            &mut rng,
            &PathConfig::default(),
        )
        .unwrap();
        assert_eq!(*used_guard.get_or_insert(path.guard), path.guard);
        counts[network.iter().position(|c| c.id == path.exit).unwrap()] += 1;
    }
    let guard = find(&network, used_guard.unwrap()).clone();
    let expected: Vec<u128> = network
        .iter()
        .map(|c| {
            if c.id == guard.id {
                0
            } else {
                weights.weight_of(c, Position::Exit)
            }
        })
        .collect();
    assert_binomial(&counts, &expected, DRAWS);
}

#[test]
fn guards_are_sampled_by_guard_weight() {
    let network = mixed_network();
    let weights = PositionWeights::compute(&network);
    let params = GuardParams {
        sample_size: 1,
        ..GuardParams::default()
    };
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let mut counts = vec![0; network.len()];
    for _ in 0..DRAWS {
        let mut guards = GuardState::new(params.clone());
        guards.update(&PathIndex::new(network.clone()), NOW, &mut rng);
        let guard = guards.pick(NOW).unwrap();
        counts[network.iter().position(|c| c.id == guard).unwrap()] += 1;
    }
    let expected: Vec<u128> = network
        .iter()
        .map(|c| weights.weight_of(c, Position::Guard))
        .collect();
    assert_binomial(&counts, &expected, DRAWS);
}

#[test]
fn family_counts_only_when_declared_both_ways() {
    let config = PathConfig::default();
    let mut a = relay(1, MIDDLE, 1);
    let mut b = relay(2, MIDDLE, 1);
    a.family = vec![b.id];
    assert!(!a.conflicts_with(&b, &config), "one-sided");
    b.family = vec![a.id];
    assert!(a.conflicts_with(&b, &config) && b.conflicts_with(&a, &config));
    assert!(a.conflicts_with(&a.clone(), &config), "same identity");
}

#[test]
fn subnets_are_ipv4_slash_16_and_ipv6_slash_32() {
    let config = PathConfig::default();
    let at = |n, addresses: &[&str]| Candidate {
        addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
        ..relay(n, MIDDLE, 1)
    };
    let pairs = [
        ("192.0.2.1:1", "192.0.200.9:2", true),
        ("192.0.2.1:1", "192.1.2.1:1", false),
        ("[2001:db8:1::1]:1", "[2001:db8:ffff::2]:1", true),
        ("[2001:db8::1]:1", "[2001:db9::1]:1", false),
        ("[::ffff:192.0.2.1]:1", "192.0.77.1:1", true),
        ("192.0.2.1:1", "[2001:db8::1]:1", false),
    ];
    for (left, right, shared) in pairs {
        let (a, b) = (at(1, &[left]), at(2, &[right]));
        assert_eq!(a.conflicts_with(&b, &config), shared, "{left} vs {right}");
        let relaxed = PathConfig {
            enforce_distinct_subnets: false,
        };
        assert!(!a.conflicts_with(&b, &relaxed));
    }
    // Any pair of addresses counts.
    let a = at(1, &["198.51.100.1:1", "[2001:db8::1]:1"]);
    let b = at(2, &["203.0.113.1:1", "[2001:db8:5::1]:1"]);
    assert!(a.conflicts_with(&b, &config));
}

#[test]
fn a_network_without_measured_bandwidth_still_gives_paths() {
    let network: Vec<Candidate> = [GUARD, MIDDLE, EXIT, DUAL]
        .iter()
        .enumerate()
        .map(|(n, list)| relay(n as u16 + 1, list, 0))
        .collect();
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let mut guards = GuardState::default();
    for _ in 0..50 {
        let path = select_path(
            &PathIndex::new(network.clone()),
            &mut guards,
            NOW,
            &mut rng,
            &PathConfig::default(),
        )
        .unwrap();
        assert!(path.guard != path.middle && path.middle != path.exit && path.guard != path.exit);
    }
}

#[test]
fn missing_positions_give_typed_errors() {
    let config = PathConfig::default();
    let mut rng = ChaCha20Rng::seed_from_u64(6);
    let only_middles: Vec<Candidate> = (1..5).map(|n| relay(n, MIDDLE, 10)).collect();
    let mut guards = GuardState::default();
    assert_eq!(
        select_path(
            &PathIndex::new(only_middles.clone()),
            &mut guards,
            NOW,
            &mut rng,
            &config
        ),
        Err(PathError::NoGuards)
    );
    let no_exit = vec![relay(1, GUARD, 10), relay(2, MIDDLE, 10)];
    let mut guards = GuardState::default();
    assert_eq!(
        select_path(
            &PathIndex::new(no_exit.clone()),
            &mut guards,
            NOW,
            &mut rng,
            &config
        ),
        Err(PathError::NoExit {
            avoiding: vec![id(1)]
        })
    );
    let no_middle = vec![relay(1, GUARD, 10), relay(2, EXIT, 10)];
    let mut guards = GuardState::default();
    assert_eq!(
        select_path(
            &PathIndex::new(no_middle.clone()),
            &mut guards,
            NOW,
            &mut rng,
            &config
        ),
        Err(PathError::NoMiddle {
            avoiding: vec![id(1), id(2)]
        })
    );
    let mut refusing = relay(3, EXIT, 10);
    refusing.exit_allows_general = false;
    assert!(matches!(
        select_exit(&PathIndex::new(vec![refusing]), &[], &config, &mut rng),
        Err(PathError::NoExit { .. })
    ));
}

// ---- Random networks: every path obeys every rule; errors only when no
// ---- path exists at all.

/// The rules, written out again independently of the library.
mod reference {
    use super::*;

    fn has(c: &Candidate, list: &[Flag]) -> bool {
        list.iter().all(|flag| c.flags.has(*flag))
    }

    pub fn guard_ok(c: &Candidate) -> bool {
        has(c, &[Flag::Guard, Flag::Running, Flag::Valid])
    }

    pub fn middle_ok(c: &Candidate) -> bool {
        has(c, &[Flag::Running, Flag::Valid])
    }

    pub fn exit_ok(c: &Candidate) -> bool {
        has(c, &[Flag::Exit, Flag::Running, Flag::Valid]) && c.exit_allows_general
    }

    fn prefix(address: &SocketAddr) -> Vec<u8> {
        match address.ip() {
            IpAddr::V4(v4) => v4.octets()[..2].to_vec(),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => v4.octets()[..2].to_vec(),
                None => v6.octets()[..4].to_vec(),
            },
        }
    }

    pub fn apart(a: &Candidate, b: &Candidate, subnets: bool) -> bool {
        let family = a.family.contains(&b.id) && b.family.contains(&a.id);
        let subnet = subnets
            && a.addresses
                .iter()
                .any(|x| b.addresses.iter().any(|y| prefix(x) == prefix(y)));
        a.id != b.id && !family && !subnet
    }

    pub fn valid(g: &Candidate, m: &Candidate, e: &Candidate, subnets: bool) -> bool {
        guard_ok(g)
            && middle_ok(m)
            && exit_ok(e)
            && apart(g, m, subnets)
            && apart(g, e, subnets)
            && apart(m, e, subnets)
    }
}

fn random_network(seed: u64, size: usize) -> Vec<Candidate> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let pool: Vec<IpAddr> = vec![
        IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)),
        IpAddr::V4(Ipv4Addr::new(198, 18, 9, 9)),
        IpAddr::V4(Ipv4Addr::new(198, 19, 0, 1)),
        IpAddr::V4(Ipv4Addr::new(203, 0, 113, 5)),
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1)),
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 1)),
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb9, 0, 0, 0, 0, 0, 1)),
        Ipv4Addr::new(203, 0, 7, 7).to_ipv6_mapped().into(),
    ];
    let mut relays: Vec<Candidate> = (0..size)
        .map(|n| {
            let address_count = rng.gen_range(1..=2);
            Candidate {
                id: id(n as u16),
                addresses: (0..address_count)
                    .map(|_| SocketAddr::new(pool[rng.gen_range(0..pool.len())], 9001))
                    .collect(),
                family: Vec::new(),
                flags: random_flags(&mut rng),
                weight: if rng.gen_bool(0.2) {
                    0
                } else {
                    rng.gen_range(1..1000)
                },
                exit_allows_general: rng.gen_bool(0.8),
            }
        })
        .collect();
    for relay in &mut relays {
        relay.family = (0..size)
            .filter(|_| rng.gen_bool(0.15))
            .map(|other| id(other as u16))
            .collect();
    }
    relays
}

/// Any flags, but mostly with Running and Valid so that paths are often
/// possible.
fn random_flags(rng: &mut ChaCha20Rng) -> Flags {
    let mut flags = Flags::from_bits(rng.r#gen::<u8>() & 0x3f).unwrap();
    if rng.gen_bool(0.8) {
        flags = flags.with(Flag::Running).with(Flag::Valid);
    }
    flags
}

proptest! {
    /// Neither the guard nor the exit position is offered more than a third
    /// of the total, and guard- or exit-capable bandwidth reaches the middle
    /// only once the position it could fill has its third (up to rounding).
    #[test]
    fn position_weights_never_waste_scarce_capacity_in_the_middle(
        guard in 0u128..1_000_000,
        exit in 0u128..1_000_000,
        dual in 0u128..1_000_000,
        other in 0u128..1_000_000,
    ) {
        let w = PositionWeights::from_totals(guard, exit, dual, other);
        let scale = u128::from(WEIGHT_SCALE);
        prop_assert_eq!(w.guard_as_guard + w.guard_as_middle, WEIGHT_SCALE);
        prop_assert_eq!(w.exit_as_exit + w.exit_as_middle, WEIGHT_SCALE);
        prop_assert_eq!(w.dual_as_guard + w.dual_as_middle + w.dual_as_exit, WEIGHT_SCALE);
        let total = guard + exit + dual + other;
        // Everything times three, so that a third of the total is exact.
        let exit_position = 3 * (exit * u128::from(w.exit_as_exit) + dual * u128::from(w.dual_as_exit));
        let guard_position = 3 * (guard * u128::from(w.guard_as_guard) + dual * u128::from(w.dual_as_guard));
        let full = scale * total;
        // Dual relays' guard share is the complement of their rounded-down
        // exit share, so it may round up by one unit of WEIGHT_SCALE per
        // byte: over by at most `3 * dual` (proptest found such a case:
        // guard 735347, exit 425937, dual 495214, other 828249).
        let rounding = 3 * (guard + exit + dual) + 3;
        prop_assert!(exit_position <= full + 3 * dual && guard_position <= full + 3 * dual);
        let exit_full = exit_position + rounding >= full;
        let guard_full = guard_position + rounding >= full;
        prop_assert!(w.exit_as_middle == 0 || exit_full);
        prop_assert!(w.guard_as_middle == 0 || guard_full);
        prop_assert!(w.dual_as_middle == 0 || (exit_full && guard_full));
    }

    #[test]
    fn position_weights_are_defined_for_any_totals(totals in any::<[u64; 4]>()) {
        let [guard, exit, dual, other] = totals.map(u128::from);
        let w = PositionWeights::from_totals(guard, exit, dual, other);
        prop_assert_eq!(w.dual_as_guard + w.dual_as_middle + w.dual_as_exit, WEIGHT_SCALE);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_path_obeys_the_rules_and_errors_mean_no_path_exists(
        network_seed in any::<u64>(),
        size in 1usize..10,
        draw_seed in any::<u64>(),
        subnets in any::<bool>(),
        failed in proptest::collection::vec(any::<bool>(), 0..4),
    ) {
        let network = random_network(network_seed, size);
        let config = PathConfig { enforce_distinct_subnets: subnets };
        let mut rng = ChaCha20Rng::seed_from_u64(draw_seed);
        let mut guards = GuardState::new(GuardParams { sample_size: 4, ..GuardParams::default() });
        guards.update(&PathIndex::new(network.clone()), NOW, &mut rng);
        let sampled: Vec<RelayId> = guards.entries().iter().map(|e| e.id).collect();
        for (guard, fail) in sampled.iter().zip(&failed) {
            if *fail {
                guards.mark_failed(*guard, NOW);
            }
        }
        let result = select_path(&PathIndex::new(network.clone()), &mut guards, NOW, &mut rng, &config);
        let usable: Vec<&Candidate> = guards
            .usable(NOW)
            .map(|guard| find(&network, guard))
            .filter(|c| reference::guard_ok(c))
            .collect();
        match result {
            Ok(path) => {
                let (g, m, e) = (find(&network, path.guard), find(&network, path.middle), find(&network, path.exit));
                prop_assert!(usable.iter().any(|u| u.id == g.id), "guard not from the guard state");
                prop_assert!(reference::valid(g, m, e, subnets), "{path:?} breaks a rule");
                // Guard first: the most preferred usable guard that admits any path.
                let preferred = usable.iter().find(|u| {
                    network.iter().any(|m| network.iter().any(|e| reference::valid(u, m, e, subnets)))
                });
                prop_assert_eq!(preferred.map(|u| u.id), Some(g.id));
            }
            Err(error) => {
                let possible = usable.iter().any(|g| {
                    network.iter().any(|m| network.iter().any(|e| reference::valid(g, m, e, subnets)))
                });
                prop_assert!(!possible, "{error:?} but a path exists");
                prop_assert_eq!(usable.is_empty(), error == PathError::NoGuards);
            }
        }
    }

    #[test]
    fn single_hop_choices_obey_the_rules_and_errors_mean_none_fits(
        network_seed in any::<u64>(),
        size in 1usize..10,
        draw_seed in any::<u64>(),
        avoid in proptest::collection::vec(0usize..10, 0..3),
    ) {
        let network = random_network(network_seed, size);
        let config = PathConfig::default();
        let avoiding: Vec<&Candidate> = avoid.iter().map(|&n| &network[n % size]).collect();
        let fits = |c: &Candidate| avoiding.iter().all(|a| reference::apart(c, a, true));
        let mut rng = ChaCha20Rng::seed_from_u64(draw_seed);
        match select_exit(&PathIndex::new(network.clone()), &avoiding, &config, &mut rng) {
            Ok(exit) => prop_assert!(reference::exit_ok(exit) && fits(exit)),
            Err(_) => prop_assert!(!network.iter().any(|c| reference::exit_ok(c) && fits(c))),
        }
        match select_middle(&PathIndex::new(network.clone()), &avoiding, &config, &mut rng) {
            Ok(middle) => prop_assert!(reference::middle_ok(middle) && fits(middle)),
            Err(_) => prop_assert!(!network.iter().any(|c| reference::middle_ok(c) && fits(c))),
        }
    }
}

/// The case proptest found: duals exactly cover both shortfalls; the
/// guard position may pass its third only by the rounding of the duals'
/// complementary guard share (under one unit of WEIGHT_SCALE per byte).
#[test]
fn duals_exactly_covering_both_shortfalls_overfill_only_by_rounding() {
    let (guard, exit, dual, other) = (735_347u128, 425_937u128, 495_214u128, 828_249u128);
    let w = PositionWeights::from_totals(guard, exit, dual, other);
    let full = u128::from(WEIGHT_SCALE) * (guard + exit + dual + other);
    let guard_position =
        3 * (guard * u128::from(w.guard_as_guard) + dual * u128::from(w.dual_as_guard));
    let exit_position = 3 * (exit * u128::from(w.exit_as_exit) + dual * u128::from(w.dual_as_exit));
    assert!(exit_position <= full);
    assert!(
        guard_position <= full + 3 * dual,
        "{guard_position} vs {full}"
    );
}
