//! Engine 1 against closed forms, with binomial confidence bounds
//! computed here (five standard deviations), never fixed outputs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use trine_directory::{PathConfig, PathIndex, Position, PositionWeights, select_exit};
use trine_sim::Network;

use common::{assert_binomial, small};

/// The adversary's share of the exit-position weight, as path selection
/// computes it.
fn exit_share(network: &Network) -> f64 {
    let candidates = network.candidates();
    let weights = PositionWeights::compute(candidates);
    let (mut ours, mut total) = (0u128, 0u128);
    for relay in candidates {
        let weight = weights.weight_of(relay, Position::Exit);
        total += weight;
        if network.is_adversary(&relay.id) {
            ours += weight;
        }
    }
    ours as f64 / total as f64
}

fn network(seed: u64) -> Network {
    let scenario = small(1, 1.0, 1.0, 0.0);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Network::initial(&scenario, &mut rng).unwrap_or_else(|error| panic!("{error}"))
}

#[test]
fn adversary_exit_fraction_matches_its_exit_weight() {
    let network = network(11);
    let p = exit_share(&network);
    assert!(p > 0.01 && p < 0.99, "degenerate share {p}");
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let index = PathIndex::new(network.candidates().to_vec());
    let config = PathConfig::default();
    let draws = 20_000;
    let mut hits = 0;
    for _ in 0..draws {
        let exit = select_exit(&index, &[], &config, &mut rng)
            .unwrap_or_else(|error| panic!("no exit: {error}"));
        hits += u64::from(network.is_adversary(&exit.id));
    }
    assert_binomial("adversary exits", hits, draws, p);
}

#[test]
fn at_least_one_compromised_among_c_circuits() {
    let network = network(21);
    let p = exit_share(&network);
    let mut rng = ChaCha8Rng::seed_from_u64(22);
    let index = PathIndex::new(network.candidates().to_vec());
    let config = PathConfig::default();
    let (clients, circuits) = (2_000u64, 8);
    let mut compromised_clients = 0;
    for _ in 0..clients {
        let mut any = false;
        for _ in 0..circuits {
            let exit = select_exit(&index, &[], &config, &mut rng)
                .unwrap_or_else(|error| panic!("no exit: {error}"));
            any |= network.is_adversary(&exit.id);
        }
        compromised_clients += u64::from(any);
    }
    let expected = 1.0 - (1.0 - p).powi(circuits);
    assert_binomial(
        "clients with ≥1 adversary exit",
        compromised_clients,
        clients,
        expected,
    );
}

/// Through the full engine (guards, `select_path`): a client's guard is
/// the adversary's with the adversary's guard-weight share, and a client
/// with an adversary guard has each circuit compromised with the
/// adversary's exit-weight share (its guards and exits share no /16 or
/// family, so no exit is excluded beside its guard).
#[test]
fn engine_matches_guard_and_exit_shares() {
    let scenario = small(1_500, 1.0, 3.0, 0.0);
    let result = trine_sim::run(&scenario, 31).unwrap_or_else(|error| panic!("{error}"));
    common::assert_compromise_matches_shares(
        &result,
        result.adversary_guard_share,
        result.adversary_exit_share,
        100,
    );
}
