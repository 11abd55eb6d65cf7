//! The `chosen` adversary (listed existing relays): it owns exactly the
//! relays listed, by nickname or fingerprint, on generated and imported
//! networks; an entry matching nothing or several relays, or naming a
//! relay twice, is refused naming the entry; runs are deterministic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use trine_circuit::RelayId;
use trine_directory::Position;
use trine_sim::{Network, Scenario, SimError};

use common::{adversary_share, owned};

fn body(entries: &[&str]) -> String {
    let quoted: Vec<String> = entries.iter().map(|entry| format!("{entry:?}")).collect();
    format!("kind = \"chosen\"\nrelays = [{}]", quoted.join(", "))
}

fn generated(entries: &[&str]) -> Scenario {
    let text = common::small_text(2, 2.0, 2.0, 0.0, &body(entries));
    Scenario::from_toml(&text).unwrap_or_else(|error| panic!("{error}"))
}

fn imported(source: &str, path: &std::path::Path, entries: &[&str]) -> Scenario {
    let path = path.to_str().unwrap();
    let text = common::imported_text(source, path, 2, 2.0, 0.0, &body(entries));
    Scenario::from_toml(&text).unwrap_or_else(|error| panic!("{error}"))
}

fn network(scenario: &Scenario) -> Result<Network, SimError> {
    Network::initial(scenario, &mut ChaCha8Rng::seed_from_u64(3))
}

/// The fingerprint of generated relay `serial`: its serial number in the
/// first 8 bytes of the identity.
fn generated_fingerprint(serial: u64) -> String {
    format!("{serial:016x}{}", "0".repeat(48))
}

/// Identities of the relays named `names` in a parsed document, in order.
fn ids_of(relays: &[trine_sim::import::ImportedRelay], names: &[&str]) -> Vec<RelayId> {
    let mut ids = Vec::new();
    for relay in relays {
        if names.contains(&relay.nickname.as_str()) {
            ids.push(relay.relay.id);
        }
    }
    assert_eq!(ids.len(), names.len(), "fixture nicknames changed");
    ids
}

fn assert_refused(scenario: &Scenario, field: &str, entry: &str, reason: &str) {
    let error = trine_sim::run(scenario, 1).unwrap_err();
    match &error {
        SimError::Adversary {
            field: got,
            reason: why,
        } => {
            assert_eq!(got, field, "{error}");
            assert!(why.contains(&format!("{entry:?}")), "{error}");
            assert!(why.contains(reason), "{error}");
        }
        other => panic!("{field}: expected Adversary, got {other:?}"),
    }
    assert!(error.to_string().contains(field), "{error}");
}

#[test]
fn generated_relays_by_nickname_and_fingerprint() {
    let upper = generated_fingerprint(57).to_uppercase();
    let scenario = generated(&["relay3", "relay0", &upper, "relay119"]);
    // The run draws the network from stream `u64::MAX` of the seed.
    let network = Network::initial(&scenario, &mut trine_sim::engine::stream(3, u64::MAX)).unwrap();
    let relays = network.candidates();
    assert_eq!(relays.len(), 120);
    for (serial, relay) in relays.iter().enumerate() {
        assert_eq!(relay.id.fingerprint(), generated_fingerprint(serial as u64));
    }
    let expected: Vec<RelayId> = [0, 3, 57, 119].iter().map(|&at| relays[at].id).collect();
    assert_eq!(owned(&network), expected);
    // The run reports the shares of exactly these relays.
    let result = trine_sim::run(&scenario, 3).unwrap();
    let g = adversary_share(&network, Position::Guard, &[]);
    let e = adversary_share(&network, Position::Exit, &[]);
    assert!(
        g > 0.0 || e > 0.0,
        "four relays with no guard or exit weight"
    );
    assert_eq!(
        (result.adversary_guard_share, result.adversary_exit_share),
        (g, e)
    );
    // Owning nothing.
    assert!(owned(&network_of(&[])).is_empty());
}

fn network_of(entries: &[&str]) -> Network {
    network(&generated(entries)).unwrap()
}

#[test]
fn tor_relays_by_nickname_and_tor_fingerprint() {
    let path = common::data("tor-consensus.txt");
    let text = std::fs::read_to_string(&path).unwrap();
    let parsed = trine_sim::import::parse_tor(&text).unwrap();
    let ids = ids_of(&parsed, &["DualOak", "ElmExit", "MapleMiddle"]);
    // DualOak by its Tor fingerprint (40 upper-case hex digits), the
    // others by nickname.
    let dual_oak = ids[0].fingerprint()[..40].to_uppercase();
    let scenario = imported("tor", &path, &["ElmExit", &dual_oak, "MapleMiddle"]);
    let network = network(&scenario).unwrap();
    assert_eq!(network.candidates().len(), 8);
    assert_eq!(owned(&network), ids);
    // The adversary owns both general exits (DualOak, ElmExit) and one
    // guard (DualOak): every circuit through DualOak exits at ElmExit and
    // is compromised, no other circuit is.
    let adversary = body(&["ElmExit", &dual_oak, "MapleMiddle"]);
    let text = common::imported_text("tor", path.to_str().unwrap(), 30, 2.0, 0.0, &adversary);
    let result = trine_sim::run(&Scenario::from_toml(&text).unwrap(), 4).unwrap();
    assert!(result.adversary_guard_share > 0.0 && result.adversary_guard_share < 1.0);
    assert_eq!(result.adversary_exit_share, 1.0);
    let on_dual_oak = result.guard_counts.get(&ids[0]).copied().unwrap_or(0);
    assert!(on_dual_oak > 0, "no client chose DualOak as guard");
    let compromised: u64 = result.clients.iter().map(|c| c.compromised).sum();
    assert_eq!(compromised, on_dual_oak);
    for client in &result.clients {
        assert_eq!(client.compromised, client.adversary_guard);
    }
}

#[test]
fn trine_relays_by_nickname_and_full_fingerprint() {
    let path = common::data("trine-consensus.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let parsed = trine_sim::import::parse_trine_json(&text).unwrap();
    let ids = ids_of(&parsed, &["alder", "elder"]);
    let elder = ids[1].fingerprint();
    let network = network(&imported("trine-json", &path, &[&elder, "alder"])).unwrap();
    assert_eq!(owned(&network), ids);
}

#[test]
fn bad_entries_are_refused_naming_the_entry() {
    let relay3 = generated_fingerprint(3);
    let unknown = "ab".repeat(32);
    let cases: [(&[&str], &str, &str, &str); 5] = [
        (
            &["relay3", "relay120"],
            "adversary.relays[1]",
            "relay120",
            "matches no relay",
        ),
        (
            &["Relay3"],
            "adversary.relays[0]",
            "Relay3",
            "matches no relay",
        ),
        (
            &[&unknown],
            "adversary.relays[0]",
            &unknown,
            "matches no relay",
        ),
        (
            &["relay0", "relay3", &relay3],
            "adversary.relays[2]",
            &relay3,
            "adversary.relays[1]",
        ),
        (
            &["relay7", "relay7"],
            "adversary.relays[1]",
            "relay7",
            "same relay",
        ),
    ];
    for (entries, field, entry, reason) in cases {
        assert_refused(&generated(entries), field, entry, reason);
    }

    // Two relays of a document with one nickname.
    let dir = common::scratch("chosen-ambiguous");
    let text = std::fs::read_to_string(common::data("trine-consensus.json")).unwrap();
    let twice = text.replacen("\"cherry\"", "\"beech\"", 1);
    assert_ne!(twice, text);
    std::fs::write(dir.join("net.json"), twice).unwrap();
    let scenario = imported("trine-json", &dir.join("net.json"), &["alder", "beech"]);
    assert_refused(
        &scenario,
        "adversary.relays[1]",
        "beech",
        "matches 2 relays",
    );
    // Either of them can still be named by fingerprint.
    let beech = "2a717b06cf073c3a6dbb37dedc157bdbfc061f7477a5118a424e982eced00ea1";
    let scenario = imported("trine-json", &dir.join("net.json"), &["alder", beech]);
    assert_eq!(owned(&network(&scenario).unwrap()).len(), 2);
    // On an imported network generated names mean nothing.
    let path = common::data("tor-consensus.txt");
    assert_refused(
        &imported("tor", &path, &["relay0"]),
        "adversary.relays[0]",
        "relay0",
        "no relay",
    );
    let _ = std::fs::remove_dir_all(&dir);

    // `relays` is required and nothing else is allowed.
    for (adversary, key) in [
        ("kind = \"chosen\"", "relays"),
        ("kind = \"chosen\"\nrelays = []\nfraction = 0.1", "fraction"),
    ] {
        let text = common::small_text(1, 1.0, 1.0, 0.0, adversary);
        match Scenario::from_toml(&text) {
            Err(SimError::Parse(error)) => assert!(error.to_string().contains(key), "{error}"),
            other => panic!("{key}: expected a parse error, got {other:?}"),
        }
    }
}

#[test]
fn runs_are_deterministic_and_the_scenario_round_trips() {
    let dir = common::scratch("chosen-binary");
    std::fs::copy(common::data("tor-consensus.txt"), dir.join("consensus.txt")).unwrap();
    let adversary = body(&["DualOak", "ElmExit", "BirchGuard"]);
    let text = common::imported_text("tor", "consensus.txt", 20, 12.0, 5.0, &adversary);
    std::fs::write(dir.join("scenario.toml"), &text).unwrap();
    let scenario = Scenario::from_file(&dir.join("scenario.toml")).unwrap();
    let written = scenario.to_toml().unwrap();
    assert!(
        written.contains("relays = [\"DualOak\", \"ElmExit\", \"BirchGuard\"]"),
        "{written}"
    );
    assert_eq!(Scenario::from_toml(&written).unwrap(), scenario);
    let summary = common::binary_twice(&dir.join("scenario.toml"), 4);
    let network = Network::initial(&scenario, &mut trine_sim::engine::stream(4, u64::MAX)).unwrap();
    assert_eq!(owned(&network).len(), 3);
    let g = adversary_share(&network, Position::Guard, &[]);
    assert!(
        summary.contains(&format!("\"adversary_guard_weight_share\": {g:.6}")),
        "{summary}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
