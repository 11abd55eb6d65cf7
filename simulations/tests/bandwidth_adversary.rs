//! The `bandwidth` adversary (existing relays taken until they hold given
//! shares of guard- and exit-position weight): it reaches the shares with
//! no relay to spare, on generated and imported networks; the engine
//! reports the shares it reached, and its compromised circuits match the
//! closed forms from them; impossible targets are refused naming the
//! field; runs are deterministic per seed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::collections::HashSet;
use std::fmt::Write as _;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use trine_circuit::RelayId;
use trine_directory::{PathConfig, PathIndex, Position, PositionWeights, select_exit};
use trine_sim::{Network, Scenario, SimError};

use common::{adversary_share, assert_binomial, owned};

fn body(guard: f64, exit: f64) -> String {
    format!("kind = \"bandwidth\"\nguard_share = {guard:?}\nexit_share = {exit:?}")
}

fn generated(guard: f64, exit: f64) -> Scenario {
    let text = common::small_text(1, 1.0, 1.0, 0.0, &body(guard, exit));
    Scenario::from_toml(&text).unwrap_or_else(|error| panic!("{error}"))
}

fn imported(source: &str, file: &str, guard: f64, exit: f64, clients: u32) -> Scenario {
    let path = common::data(file);
    let path = path.to_str().unwrap();
    let text = common::imported_text(source, path, clients, 1.0, 0.0, &body(guard, exit));
    Scenario::from_toml(&text).unwrap_or_else(|error| panic!("{error}"))
}

fn network(scenario: &Scenario, seed: u64) -> Network {
    Network::initial(scenario, &mut ChaCha8Rng::seed_from_u64(seed))
        .unwrap_or_else(|error| panic!("{error}"))
}

/// Both shares reached; without any one owned relay a share is missed;
/// with a single target, the share less the smallest owned relay's is
/// below it. Returns the shares.
fn check_selection(network: &Network, guard: f64, exit: f64, what: &str) -> (f64, f64) {
    let g = adversary_share(network, Position::Guard, &[]);
    let e = adversary_share(network, Position::Exit, &[]);
    assert!(g >= guard, "{what}: guard share {g} < {guard}");
    assert!(e >= exit, "{what}: exit share {e} < {exit}");
    let mut smallest = (f64::INFINITY, f64::INFINITY);
    for id in owned(network) {
        let g_without = adversary_share(network, Position::Guard, &[id]);
        let e_without = adversary_share(network, Position::Exit, &[id]);
        assert!(
            g_without < guard || e_without < exit,
            "{what}: {id:?} is spare ({g_without} ≥ {guard}, {e_without} ≥ {exit})"
        );
        smallest.0 = smallest.0.min(g - g_without);
        smallest.1 = smallest.1.min(e - e_without);
    }
    if exit == 0.0 && guard > 0.0 {
        assert!(g - smallest.0 < guard, "{what}: guard overshoot {g}");
    }
    if guard == 0.0 && exit > 0.0 {
        assert!(e - smallest.1 < exit, "{what}: exit overshoot {e}");
    }
    (g, e)
}

#[test]
fn generated_shares_are_reached_with_no_relay_to_spare() {
    let targets = [
        (0.1, 0.1),
        (0.3, 0.05),
        (0.5, 0.0),
        (0.0, 0.25),
        (0.0, 0.0),
        (1.0, 1.0),
    ];
    for (guard, exit) in targets {
        let scenario = generated(guard, exit);
        let mut sets = HashSet::new();
        for seed in 1..=4 {
            let network = network(&scenario, seed);
            assert_eq!(network.candidates().len(), 120, "relays were added");
            let what = format!("({guard}, {exit}) seed {seed}");
            check_selection(&network, guard, exit, &what);
            sets.insert(owned(&network));
        }
        if (guard, exit) == (0.1, 0.1) {
            assert!(sets.len() >= 3, "4 seeds chose {} sets", sets.len());
        }
    }
    // Owning nothing and owning every relay with guard or exit weight.
    let none = network(&generated(0.0, 0.0), 1);
    assert!(owned(&none).is_empty());
    let all = network(&generated(1.0, 1.0), 1);
    let weights = PositionWeights::compute(all.candidates());
    let useful = all.candidates().iter().filter(|r| {
        weights.weight_of(r, Position::Guard) > 0 || weights.weight_of(r, Position::Exit) > 0
    });
    let useful: Vec<RelayId> = useful.map(|r| r.id).collect();
    assert_eq!(owned(&all), useful);
    assert!(useful.len() < 120, "no middle-only relay to leave out");
}

#[test]
fn imported_shares_are_reached_with_no_relay_to_spare() {
    for (guard, exit) in [(0.3, 0.5), (0.6, 0.0), (0.0, 0.9), (1.0, 1.0)] {
        for (source, file, relays) in [
            ("tor", "tor-consensus.txt", 8),
            ("trine-json", "trine-consensus.json", 5),
        ] {
            let network = network(&imported(source, file, guard, exit, 1), 7);
            assert_eq!(network.candidates().len(), relays);
            check_selection(&network, guard, exit, &format!("{file} ({guard}, {exit})"));
        }
    }
}

/// The shares in the run's results (and `summary.json`) are those of the
/// relays the adversary owns.
#[test]
fn the_run_reports_the_shares_reached() {
    let scenario = common::small_text(10, 2.0, 2.0, 0.0, &body(0.15, 0.2));
    let scenario = Scenario::from_toml(&scenario).unwrap();
    let result = trine_sim::run(&scenario, 8).unwrap();
    // The run draws the network from stream `u64::MAX` of the seed.
    let network = Network::initial(&scenario, &mut trine_sim::engine::stream(8, u64::MAX)).unwrap();
    let (g, e) = check_selection(&network, 0.15, 0.2, "run");
    assert_eq!(result.adversary_guard_share, g);
    assert_eq!(result.adversary_exit_share, e);
    assert!(g < 0.5 && e < 0.5, "implausible overshoot: {g}, {e}");
}

#[test]
fn exit_draws_match_the_actual_exit_share() {
    let network = network(&generated(0.0, 0.2), 13);
    let p = adversary_share(&network, Position::Exit, &[]);
    let mut rng = ChaCha8Rng::seed_from_u64(14);
    let index = PathIndex::new(network.candidates().to_vec());
    let config = PathConfig::default();
    let draws = 20_000;
    let mut hits = 0;
    for _ in 0..draws {
        let exit = select_exit(&index, &[], &config, &mut rng).unwrap();
        hits += u64::from(network.is_adversary(&exit.id));
    }
    assert_binomial("adversary exits", hits, draws, p);
}

/// 90 relays in `show --json` form, each on its own /16, no families: a
/// third guard-only, a third exit-only, a third middle-only, so that no
/// exit is ever excluded beside a guard.
fn separated_network() -> String {
    let mut relays = Vec::new();
    for i in 0..90u32 {
        let (flags, exit) = match i % 3 {
            0 => (r#""running","valid","guard","stable","fast""#, false),
            1 => (r#""running","valid","exit","stable","fast""#, true),
            _ => (r#""running","valid","stable","fast""#, false),
        };
        let mut relay = String::new();
        let _ = write!(
            relay,
            r#"{{"identity":"ff{i:062x}","nickname":"n{i}","addresses":["10.{i}.0.1:443"],"flags":[{flags}],"weight":{},"exit":{exit}}}"#,
            1_000 + (i * 7_919) % 9_000
        );
        relays.push(relay);
    }
    format!("{{\"relays\":[{}]}}", relays.join(","))
}

/// Through the full engine, as in `closed_form.rs`: a client's guard is
/// the adversary's with the guard-weight share reached, and a circuit
/// through an adversary guard is compromised with the exit-weight share
/// reached (exits are never excluded beside a guard in this network).
#[test]
fn engine_compromise_matches_the_closed_form_of_the_shares_reached() {
    let dir = common::scratch("bandwidth-engine");
    std::fs::write(dir.join("net.json"), separated_network()).unwrap();
    let text = common::imported_text("trine-json", "net.json", 4_000, 1.0, 0.0, &body(0.2, 0.3))
        .replacen("circuits_per_hour = 4.0", "circuits_per_hour = 12.0", 1);
    std::fs::write(dir.join("scenario.toml"), text).unwrap();
    let scenario = Scenario::from_file(&dir.join("scenario.toml")).unwrap();
    let result = trine_sim::run(&scenario, 31).unwrap();
    let network =
        Network::initial(&scenario, &mut trine_sim::engine::stream(31, u64::MAX)).unwrap();
    let (g, e) = check_selection(&network, 0.2, 0.3, "separated");
    assert_eq!(
        (result.adversary_guard_share, result.adversary_exit_share),
        (g, e)
    );

    let active = common::assert_compromise_matches_shares(&result, g, e, 6_000);
    assert!(active.len() > 3_900, "{} active clients", active.len());
    assert!(active.iter().all(|c| c.failures == 0));
    // Circuits through honest guards are never compromised.
    let honest: u64 = active
        .iter()
        .filter(|c| c.adversary_guard == 0)
        .map(|c| c.compromised)
        .sum();
    assert_eq!(honest, 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn impossible_targets_are_refused_naming_the_field() {
    for (guard, exit, field) in [
        ("1.5", "0.1", "adversary.guard_share"),
        ("0.1", "-0.1", "adversary.exit_share"),
        ("0.1", "nan", "adversary.exit_share"),
        ("0.1", "1.0000001", "adversary.exit_share"),
    ] {
        let adversary = format!("kind = \"bandwidth\"\nguard_share = {guard}\nexit_share = {exit}");
        let text = common::small_text(1, 1.0, 1.0, 0.0, &adversary);
        match Scenario::from_toml(&text) {
            Err(SimError::Invalid { field: got, .. }) => assert_eq!(got, field),
            other => panic!("{field}: expected Invalid, got {other:?}"),
        }
    }
    for (adversary, key) in [
        (body(0.1, 0.1) + "\nshare = 0.1", "share"),
        (
            "kind = \"bandwidth\"\nguard_share = 0.1".to_owned(),
            "exit_share",
        ),
    ] {
        let text = common::small_text(1, 1.0, 1.0, 0.0, &adversary);
        match Scenario::from_toml(&text) {
            Err(SimError::Parse(error)) => assert!(error.to_string().contains(key), "{error}"),
            other => panic!("{key}: expected a parse error, got {other:?}"),
        }
    }
    // More than the network holds: a share of exit weight where no relay
    // may be an exit (and of guard weight where none may be a guard).
    let no_exits = common::small_text(1, 1.0, 1.0, 0.0, &body(0.1, 0.1)).replacen(
        "exit_share = 0.3",
        "exit_share = 0.0",
        1,
    );
    let no_guards = common::small_text(1, 1.0, 1.0, 0.0, &body(0.1, 0.0)).replacen(
        "guard_share = 0.4",
        "guard_share = 0.0",
        1,
    );
    for (text, field) in [
        (no_exits.clone(), "adversary.exit_share"),
        (no_guards, "adversary.guard_share"),
    ] {
        let scenario = Scenario::from_toml(&text).unwrap();
        let error = trine_sim::run(&scenario, 1).unwrap_err();
        assert!(
            matches!(&error, SimError::Adversary { field: got, .. } if got == field),
            "{field}: {error:?}"
        );
        assert!(error.to_string().contains(field), "{error}");
    }
    // A zero target in a position the network lacks is no error.
    let fine = no_exits.replacen("exit_share = 0.1", "exit_share = 0.0", 1);
    assert!(trine_sim::run(&Scenario::from_toml(&fine).unwrap(), 1).is_ok());
}

#[test]
fn runs_are_deterministic_and_the_scenario_round_trips() {
    let dir = common::scratch("bandwidth-binary");
    let text = common::small_text(20, 12.0, 2.0, 5.0, &body(0.1, 0.15));
    let scenario = Scenario::from_toml(&text).unwrap();
    let written = scenario.to_toml().unwrap();
    assert!(written.contains("kind = \"bandwidth\""), "{written}");
    assert_eq!(Scenario::from_toml(&written).unwrap(), scenario);
    std::fs::write(dir.join("scenario.toml"), written).unwrap();
    let summary = common::binary_twice(&dir.join("scenario.toml"), 5);
    let network = Network::initial(&scenario, &mut trine_sim::engine::stream(5, u64::MAX)).unwrap();
    let (g, e) = check_selection(&network, 0.1, 0.15, "binary");
    assert!(
        summary.contains(&format!("\"adversary_guard_weight_share\": {g:.6}")),
        "{summary}"
    );
    assert!(
        summary.contains(&format!("\"adversary_exit_weight_share\": {e:.6}")),
        "{summary}"
    );
    // Same seed, same relays; another seed, (here) others.
    let again = Network::initial(&scenario, &mut trine_sim::engine::stream(5, u64::MAX)).unwrap();
    let other = Network::initial(&scenario, &mut trine_sim::engine::stream(6, u64::MAX)).unwrap();
    assert_eq!(owned(&network), owned(&again));
    assert_ne!(owned(&network), owned(&other));
    let _ = std::fs::remove_dir_all(&dir);
}
