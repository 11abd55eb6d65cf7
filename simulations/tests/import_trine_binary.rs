//! Importing a binary Trine consensus: a consensus computed by the
//! directory's own code from votes (the directory tests' fixtures) imports
//! with its flags, weights, exits and mutual families, runs through the
//! engine, and every truncation or corruption of it is a typed error.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[path = "../../directory/tests/dirtest/mod.rs"]
mod dirtest;

use trine_directory::{
    Candidate, Consensus, ExitSummary, Flag, RelayEntry, SignedVote, VoteEntry, compute,
};
use trine_sim::import::{ImportError, parse_trine};

fn address(n: u16) -> std::net::SocketAddr {
    std::net::SocketAddr::from(([20 + n as u8, 1, 2, 3], 443))
}

/// Twelve relays, each on its own /16: 0–3 guards, 4–7 exits, the rest middles; 8 and 9 declare
/// each other as family.
fn consensus_bytes() -> Vec<u8> {
    let entries: Vec<VoteEntry> = (0..12u16)
        .map(|n| {
            let mut flags = dirtest::healthy();
            let mut fields = dirtest::descriptor_fields(n);
            // Each relay on its own /16, so the subnet rule leaves paths.
            fields.addresses = vec![address(n)];
            if n < 4 {
                flags = flags.with(Flag::Guard);
            } else if n < 8 {
                flags = flags.with(Flag::Exit);
                fields.exit = ExitSummary::new(true, Vec::new());
            } else if n < 10 {
                fields.family = vec![dirtest::id(17 - n)];
            }
            let mut entry = dirtest::entry(n, flags, 1_000 + u64::from(n));
            entry.relay = RelayEntry::from_descriptor(&fields, flags, 1_000 + u64::from(n));
            entry
        })
        .collect();
    let votes: Vec<SignedVote> = (0..3).map(|a| dirtest::vote(a, entries.clone())).collect();
    let body = compute(&votes, &dirtest::compute_params()).unwrap();
    let signatures: Vec<_> = (0..2).map(|a| body.sign(&dirtest::authority(a))).collect();
    Consensus::new(body).with_signatures(signatures).to_bytes()
}

#[test]
fn a_computed_consensus_imports_with_its_families() {
    let relays = parse_trine(&consensus_bytes()).unwrap();
    assert_eq!(relays.len(), 12);
    let by_n = |n: u16| {
        relays
            .iter()
            .find(|relay| relay.relay.id == dirtest::id(n))
            .unwrap_or_else(|| panic!("relay {n} missing"))
    };
    assert_eq!(by_n(3).nickname, "relay3");
    assert!(by_n(2).relay.is_guard_eligible());
    assert!(by_n(5).relay.is_exit_eligible());
    assert!(!by_n(11).relay.is_exit_eligible());
    assert_eq!(by_n(6).relay.addresses, vec![address(6)]);
    let (eight, nine): (&Candidate, &Candidate) = (&by_n(8).relay, &by_n(9).relay);
    assert!(
        eight.is_family_of(nine),
        "mutual family must survive import"
    );
    assert!(by_n(10).relay.family.is_empty());
}

#[test]
fn every_truncation_and_corruption_is_a_typed_error() {
    let bytes = consensus_bytes();
    assert_eq!(parse_trine(&[]), Err(ImportError::Empty));
    for cut in 1..bytes.len() {
        assert!(
            matches!(parse_trine(&bytes[..cut]), Err(ImportError::Binary(_))),
            "truncated to {cut} bytes"
        );
    }
    // Flipping any byte either still decodes (a value that stays valid) or
    // is refused with a typed error; it never panics.
    for at in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[at] ^= 0x5a;
        let _ = parse_trine(&bad);
    }
    let text = b"network-status-version 3\n";
    assert!(matches!(parse_trine(text), Err(ImportError::Binary(_))));
}

#[test]
fn a_scenario_runs_on_an_imported_binary_consensus() {
    let dir = std::env::temp_dir().join(format!("trine-sim-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("consensus.bin"), consensus_bytes()).unwrap();
    let scenario_path = dir.join("scenario.toml");
    std::fs::write(
        &scenario_path,
        "[time]\ndays = 1.0\nconsensus_hours = 1.0\n\
         [relays]\nsource = \"trine\"\npath = \"consensus.bin\"\n\
         [relays.churn]\njoin_per_day = 0.0\nleave_per_day = 0.0\n\
         [clients]\ncount = 20\ncircuits_per_hour = 2.0\n\
         [adversary]\nkind = \"chosen\"\nrelays = [\"relay0\", \"relay4\"]\n",
    )
    .unwrap();
    let scenario = trine_sim::Scenario::from_file(&scenario_path).unwrap();
    let result = trine_sim::run(&scenario, 3).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(result.relays, (12, 12));
    let circuits: u64 = result.clients.iter().map(|c| c.circuits).sum();
    assert!(circuits > 0);
    // Exits are only 4–7: every circuit left through one of them.
    let exits: Vec<_> = (4..8).map(dirtest::id).collect();
    assert!(result.exit_counts.keys().all(|id| exits.contains(id)));
    assert_eq!(result.exit_counts.values().sum::<u64>(), circuits);
}
