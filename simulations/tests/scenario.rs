//! The scenario format: the example parses, unknown keys and bad values
//! are refused naming the field, and extreme adversaries give the obvious
//! answers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use trine_sim::{EXAMPLE, Scenario, SimError};

#[test]
fn example_parses_and_round_trips() {
    let scenario = Scenario::from_toml(EXAMPLE).unwrap_or_else(|error| panic!("{error}"));
    let text = scenario.to_toml().unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(Scenario::from_toml(&text).ok(), Some(scenario));
}

#[test]
fn unknown_keys_are_refused_by_name() {
    let cases = [
        ("[time]\n", "[time]\nhourz = 3\n", "hourz"),
        ("[clients]\n", "[clients]\nbehaviour = 1\n", "behaviour"),
        ("subnets = 10\n", "subnets = 10\nextra = 1\n", "extra"),
        (
            "join_per_day = 5.0\n",
            "join_per_day = 5.0\njoins = 1\n",
            "joins",
        ),
    ];
    for (from, to, field) in cases {
        let text = EXAMPLE.replacen(from, to, 1);
        assert_ne!(text, EXAMPLE, "case {field} did not apply");
        match Scenario::from_toml(&text) {
            Err(SimError::Parse(error)) => {
                assert!(error.to_string().contains(field), "{field}: {error}");
            }
            other => panic!("{field}: expected a parse error, got {other:?}"),
        }
    }
}

#[test]
fn bad_values_are_refused_by_name() {
    let cases = [
        (
            "guard_share = 0.4",
            "guard_share = 1.5",
            "relays.guard_share",
        ),
        ("days = 7.0", "days = 0.0", "time.days"),
        (
            "[clients]\ncount = 200",
            "[clients]\ncount = 0",
            "clients.count",
        ),
        ("families = 20", "families = 400", "relays.families"),
    ];
    for (from, to, field) in cases {
        let text = EXAMPLE.replacen(from, to, 1);
        assert_ne!(text, EXAMPLE, "case {field} did not apply");
        match Scenario::from_toml(&text) {
            Err(SimError::Invalid { field: got, .. }) => assert_eq!(got, field),
            other => panic!("{field}: expected Invalid, got {other:?}"),
        }
    }
}

#[test]
fn extreme_adversaries() {
    let mut scenario = common::small(20, 6.0, 2.0, 0.0);
    scenario.adversary = trine_sim::scenario::AdversarySpec::Existing { fraction: 1.0 };
    let result = trine_sim::run(&scenario, 3).unwrap_or_else(|error| panic!("{error}"));
    for client in &result.clients {
        assert_eq!(client.compromised, client.circuits);
        assert!(client.exposed);
    }
    scenario.adversary = trine_sim::scenario::AdversarySpec::Existing { fraction: 0.0 };
    let result = trine_sim::run(&scenario, 3).unwrap_or_else(|error| panic!("{error}"));
    assert!(
        result
            .clients
            .iter()
            .all(|c| c.compromised == 0 && !c.exposed)
    );
    assert!(result.clients.iter().map(|c| c.circuits).sum::<u64>() > 0);
}

#[test]
fn relay_source_keys_are_checked() {
    let explicit = EXAMPLE.replacen("count = 500", "source = \"generated\"\ncount = 500", 1);
    let default = Scenario::from_toml(EXAMPLE).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(Scenario::from_toml(&explicit).ok(), Some(default.clone()));
    let written = default.to_toml().unwrap_or_else(|error| panic!("{error}"));
    assert!(!written.contains("source"), "{written}");

    let imported = common::imported_text(
        "tor",
        "c.txt",
        1,
        1.0,
        0.0,
        "kind = \"existing\"\nfraction = 0.1",
    );
    assert!(Scenario::from_toml(&imported).is_ok());
    let cases = [
        (
            EXAMPLE.replacen(
                "count = 500",
                "source = \"tor\"\npath = \"c\"\ncount = 500",
                1,
            ),
            "`count` does not apply to source = \"tor\"",
        ),
        (
            EXAMPLE.replacen("count = 500", "path = \"c\"\ncount = 500", 1),
            "`path` does not apply to source = \"generated\"",
        ),
        (
            EXAMPLE.replacen("count = 500", "source = \"i2p\"\ncount = 500", 1),
            "i2p",
        ),
        (
            EXAMPLE.replacen("guard_share = 0.4", "", 1),
            "missing field `guard_share`",
        ),
        (
            imported.replacen("path = \"c.txt\"", "", 1),
            "missing field `path`",
        ),
        (
            imported.replacen(
                "source = \"tor\"",
                "source = \"trine-json\"\nsubnets = 3",
                1,
            ),
            "`subnets` does not apply to source = \"trine-json\"",
        ),
    ];
    for (text, expected) in cases {
        match Scenario::from_toml(&text) {
            Err(SimError::Parse(error)) => {
                assert!(error.to_string().contains(expected), "{expected}: {error}");
            }
            other => panic!("{expected}: expected a parse error, got {other:?}"),
        }
    }
}

/// Every commented `# or: kind = …` adversary of the example is a valid
/// `[adversary]` table, and the network of
/// the example can place it.
#[test]
fn commented_example_adversaries_are_valid() {
    let start = EXAMPLE.find("[adversary]").unwrap();
    let mut kinds = Vec::new();
    for line in EXAMPLE[start..].lines() {
        let Some(rest) = line.strip_prefix("# or: ") else {
            continue;
        };
        let keys = rest.split("  (").next().unwrap().trim();
        let inline: toml::Table = toml::from_str(&format!("adversary = {{ {keys} }}"))
            .unwrap_or_else(|error| panic!("{keys}: {error}"));
        let table = toml::to_string(&inline).unwrap();
        let text = format!("{}{table}", &EXAMPLE[..start]);
        let scenario = Scenario::from_toml(&text).unwrap_or_else(|error| panic!("{keys}: {error}"));
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
        trine_sim::Network::initial(&scenario, &mut rng)
            .unwrap_or_else(|error| panic!("{keys}: {error}"));
        kinds.push(keys.split(',').next().unwrap().to_owned());
    }
    assert_eq!(
        kinds,
        [
            "kind = \"existing\"",
            "kind = \"bandwidth\"",
            "kind = \"chosen\""
        ]
    );
}
