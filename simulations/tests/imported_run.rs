//! Runs on an imported relay population (the Tor fixture): the scenario
//! keys, relative paths, determinism, guards only among Guard relays,
//! exits only among general exits, both adversary kinds and churn joins.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use trine_circuit::RelayId;
use trine_directory::{Candidate, Flag};
use trine_sim::import::ImportedRelay;
use trine_sim::scenario::{AdversarySpec, ImportFormat, RelaySource};
use trine_sim::{Network, Scenario, SimError};

const EXISTING: &str = "kind = \"existing\"\nfraction = 0.25";
const ADDED: &str =
    "kind = \"added\"\nrelays = 4\nbandwidth = 40000\nguard_fraction = 0.5\nsubnets = 2";

fn tor_imported() -> Vec<ImportedRelay> {
    let text = std::fs::read_to_string(common::data("tor-consensus.txt")).unwrap();
    trine_sim::import::parse_tor(&text).unwrap()
}

fn tor_relays() -> Vec<Candidate> {
    let relays = tor_imported();
    relays.into_iter().map(|imported| imported.relay).collect()
}

/// A scenario on the Tor fixture, by absolute path.
fn scenario(clients: u32, hours: f64, joins: f64, adversary: &str) -> Scenario {
    let path = common::data("tor-consensus.txt");
    let text = common::imported_text(
        "tor",
        path.to_str().unwrap(),
        clients,
        hours,
        joins,
        adversary,
    );
    Scenario::from_toml(&text).unwrap_or_else(|error| panic!("{error}"))
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("trine-sim-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn slash16(address: IpAddr) -> Option<[u8; 2]> {
    match address {
        IpAddr::V4(ip) => Some([ip.octets()[0], ip.octets()[1]]),
        IpAddr::V6(_) => None,
    }
}

#[test]
fn relative_paths_resolve_against_the_scenario_file() {
    let dir = scratch("import-path");
    std::fs::copy(common::data("tor-consensus.txt"), dir.join("consensus")).unwrap();
    let text = common::imported_text("tor", "consensus", 5, 2.0, 0.0, EXISTING);
    std::fs::write(dir.join("scenario.toml"), &text).unwrap();
    let scenario = Scenario::from_file(&dir.join("scenario.toml")).unwrap();
    match &scenario.relays.source {
        RelaySource::Imported(import) => {
            assert_eq!(import.format, ImportFormat::Tor);
            assert!(import.path.is_absolute(), "{}", import.path.display());
            assert_eq!(
                import.path,
                std::path::absolute(dir.join("consensus")).unwrap()
            );
        }
        other => panic!("not imported: {other:?}"),
    }
    // The resolved scenario writes `source` and `path` back and reads the
    // same.
    let written = scenario.to_toml().unwrap();
    assert!(written.contains("source = \"tor\""), "{written}");
    assert_eq!(Scenario::from_toml(&written).unwrap(), scenario);
    // Parsed from text alone, the path stays relative (to the working
    // directory), where there is no such file.
    let unresolved = Scenario::from_toml(&text).unwrap();
    assert!(matches!(
        trine_sim::run(&unresolved, 1),
        Err(SimError::Io { path, .. }) if path == Path::new("consensus")
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_malformed_document_fails_the_run_naming_file_and_line() {
    let dir = scratch("import-bad");
    let text = std::fs::read_to_string(common::data("tor-consensus.txt")).unwrap();
    let broken = text.replacen("w Bandwidth=8000", "w Bandwidth=-8000", 1);
    let line = broken
        .lines()
        .position(|l| l == "w Bandwidth=-8000")
        .unwrap()
        + 1;
    std::fs::write(dir.join("consensus"), broken).unwrap();
    let scenario = common::imported_text("tor", "consensus", 5, 2.0, 0.0, EXISTING);
    std::fs::write(dir.join("scenario.toml"), scenario).unwrap();
    let scenario = Scenario::from_file(&dir.join("scenario.toml")).unwrap();
    let error = trine_sim::run(&scenario, 1).unwrap_err();
    let message = error.to_string();
    assert!(message.contains(&format!("line {line}:")), "{message}");
    assert!(message.contains("consensus"), "{message}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn runs_are_deterministic_and_use_only_guard_relays_as_guards() {
    let scenario = scenario(40, 24.0, 0.0, EXISTING);
    let first = trine_sim::run(&scenario, 9).unwrap();
    let again = trine_sim::run(&scenario, 9).unwrap();
    let other = trine_sim::run(&scenario, 10).unwrap();
    assert_eq!(first, again);
    assert_ne!(first.clients, other.clients);

    // By nickname, from the fixture's `s` and `p` lines, not from the parser.
    let text = std::fs::read_to_string(common::data("tor-consensus.txt")).unwrap();
    let imported = trine_sim::import::parse_tor(&text).unwrap();
    let ids = |names: &[&str]| -> HashSet<RelayId> {
        imported
            .iter()
            .filter(|r| names.contains(&r.nickname.as_str()))
            .map(|r| r.relay.id)
            .collect()
    };
    let guards = ids(&["BirchGuard", "CedarGuard", "DualOak"]);
    let exits = ids(&["DualOak", "ElmExit"]);
    let circuits: u64 = first.clients.iter().map(|c| c.circuits).sum();
    let failures: u64 = first.clients.iter().map(|c| c.failures).sum();
    assert!(circuits > 2_000, "only {circuits} circuits");
    assert_eq!(failures, 0);
    assert_eq!(first.relays, (8, 8));
    let used_guards: HashSet<RelayId> = first.guard_counts.keys().copied().collect();
    let used_exits: HashSet<RelayId> = first.exit_counts.keys().copied().collect();
    assert!(
        used_guards.is_subset(&guards),
        "a non-Guard relay was a guard"
    );
    assert!(used_guards.len() >= 2, "40 clients all on one guard");
    assert_eq!(used_exits, exits);
    assert_eq!(first.guard_counts.values().sum::<u64>(), circuits);
}

#[test]
fn existing_adversary_marks_imported_relays() {
    let relays = tor_relays();
    let imported: HashSet<RelayId> = relays.iter().map(|r| r.id).collect();
    let adversary = AdversarySpec::Existing { fraction: 0.5 };
    let network = Network::imported(
        tor_imported(),
        &adversary,
        &mut ChaCha8Rng::seed_from_u64(4),
    )
    .unwrap();
    assert_eq!(network.candidates().len(), 8);
    let marked: Vec<RelayId> = network
        .candidates()
        .iter()
        .map(|r| r.id)
        .filter(|id| network.is_adversary(id))
        .collect();
    assert_eq!(marked.len(), 4);
    assert!(marked.iter().all(|id| imported.contains(id)));
}

#[test]
fn added_adversary_relays_get_subnets_of_their_own() {
    let relays = tor_relays();
    let taken: HashSet<[u8; 2]> = relays
        .iter()
        .flat_map(|r| &r.addresses)
        .filter_map(|a| slash16(a.ip()))
        .collect();
    let scenario = scenario(1, 1.0, 0.0, ADDED);
    let network = Network::initial(&scenario, &mut ChaCha8Rng::seed_from_u64(5)).unwrap();
    let all = network.candidates();
    assert_eq!(all.len(), 12);
    assert_eq!(&all[..8], &relays[..]);
    let added = &all[8..];
    assert!(added.iter().all(|r| network.is_adversary(&r.id)));
    assert!(all[..8].iter().all(|r| !network.is_adversary(&r.id)));
    let subnets: HashSet<[u8; 2]> = added
        .iter()
        .filter_map(|r| slash16(r.addresses[0].ip()))
        .collect();
    assert_eq!(subnets.len(), 2);
    assert!(subnets.is_disjoint(&taken));
    let guards = added.iter().filter(|r| r.flags.has(Flag::Guard)).count();
    assert_eq!(guards, 2);
    assert_eq!(added.iter().map(|r| r.weight).sum::<u64>(), 40_000);
}

#[test]
fn joins_copy_imported_relays_under_new_identities() {
    let relays = tor_relays();
    let adversary = AdversarySpec::Existing { fraction: 0.0 };
    let mut network = Network::imported(
        tor_imported(),
        &adversary,
        &mut ChaCha8Rng::seed_from_u64(6),
    )
    .unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for _ in 0..40 {
        network.join(&mut rng);
    }
    let all = network.candidates();
    assert_eq!(all.len(), 48);
    let mut ids: HashSet<RelayId> = HashSet::new();
    for relay in all {
        assert!(ids.insert(relay.id), "identity reused");
    }
    let mut templates_used = HashSet::new();
    for joined in &all[8..] {
        let template = relays
            .iter()
            .find(|t| {
                t.flags == joined.flags
                    && t.weight == joined.weight
                    && t.exit_allows_general == joined.exit_allows_general
                    && slash16(t.addresses[0].ip()) == slash16(joined.addresses[0].ip())
            })
            .unwrap_or_else(|| panic!("{joined:?} copies no imported relay"));
        assert_ne!(template.addresses, joined.addresses);
        templates_used.insert(template.id);
    }
    assert!(
        templates_used.len() >= 5,
        "joins drew {} templates",
        templates_used.len()
    );
    // Through the engine: joins over a day grow the network.
    let result = trine_sim::run(&scenario(2, 24.0, 48.0, EXISTING), 3).unwrap();
    assert_eq!(result.relays.0, 8);
    assert!(result.relays.1 > 8 + 20, "{:?}", result.relays);
}

#[test]
fn binary_runs_on_an_imported_network_give_the_same_bytes() {
    let dir = scratch("import-binary");
    std::fs::copy(common::data("tor-consensus.txt"), dir.join("consensus.txt")).unwrap();
    let text = common::imported_text("tor", "consensus.txt", 20, 12.0, 5.0, ADDED);
    std::fs::write(dir.join("scenario.toml"), text).unwrap();
    let run = |out: &str| {
        let status = Command::new(env!("CARGO_BIN_EXE_trine-sim"))
            .arg("run")
            .arg(dir.join("scenario.toml"))
            .args(["--seed", "4", "--out"])
            .arg(dir.join(out))
            .status()
            .unwrap();
        assert!(status.success());
    };
    run("a");
    run("b");
    for name in [
        "scenario.toml",
        "clients.csv",
        "summary.json",
        "compromise_by_day.csv",
    ] {
        let a = std::fs::read(dir.join("a").join(name)).unwrap();
        let b = std::fs::read(dir.join("b").join(name)).unwrap();
        assert_eq!(a, b, "{name} differs");
    }
    let summary = std::fs::read_to_string(dir.join("a/summary.json")).unwrap();
    assert!(
        summary.contains("\"relays_first_consensus\": 12"),
        "{summary}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn trine_json_runs_and_new_relays_never_take_an_imported_identity() {
    let path = common::data("trine-consensus.json");
    let text = common::imported_text(
        "trine-json",
        path.to_str().unwrap(),
        20,
        12.0,
        0.0,
        EXISTING,
    );
    let scenario = Scenario::from_toml(&text).unwrap();
    let result = trine_sim::run(&scenario, 2).unwrap();
    assert_eq!(result, trine_sim::run(&scenario, 2).unwrap());
    let json = std::fs::read_to_string(&path).unwrap();
    let relays = trine_sim::import::parse_trine_json(&json).unwrap();
    let guards: HashSet<RelayId> = relays[..2].iter().map(|r| r.relay.id).collect();
    let exits: HashSet<RelayId> = relays[1..3].iter().map(|r| r.relay.id).collect();
    assert!(result.guard_counts.keys().all(|id| guards.contains(id)));
    assert!(result.exit_counts.keys().all(|id| exits.contains(id)));
    assert!(
        result
            .clients
            .iter()
            .all(|c| c.failures == 0 && c.circuits > 0)
    );

    // Identities a generated relay would get (serials 0 and 1).
    let zero = "0".repeat(64);
    let one = format!("{}1{}", "0".repeat(15), "0".repeat(48));
    let mut clashing = json.replacen(&relays[0].relay.id.fingerprint(), &zero, 1);
    clashing = clashing.replacen(&relays[1].relay.id.fingerprint(), &one, 1);
    let relays = trine_sim::import::parse_trine_json(&clashing).unwrap();
    let adversary = AdversarySpec::Added {
        relays: 4,
        bandwidth: 1_000,
        guard_fraction: 0.5,
        subnets: 1,
    };
    let mut network =
        Network::imported(relays, &adversary, &mut ChaCha8Rng::seed_from_u64(1)).unwrap();
    network.join(&mut ChaCha8Rng::seed_from_u64(2));
    let ids: HashSet<RelayId> = network.candidates().iter().map(|r| r.id).collect();
    assert_eq!(network.candidates().len(), 10);
    assert_eq!(ids.len(), 10);
    let honest = network
        .candidates()
        .iter()
        .filter(|r| !network.is_adversary(&r.id));
    assert_eq!(honest.count(), 6);
}
