//! Link adversaries: an adversary watching links between address prefixes
//! sees a circuit's entry when it watches the client–guard link and its exit
//! when it watches the exit–destination link. Checked against closed forms
//! with binomial bounds, with no adversary relay at all.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use trine_sim::{Scenario, SimError, run};

const NO_RELAYS: &str = "kind = \"chosen\"\nrelays = []";

fn scenario(clients: &str, links: &str) -> Scenario {
    let text = common::small_text(200, 24.0, 2.0, 0.0, NO_RELAYS).replacen(
        "[adversary]",
        &format!("{clients}\n[adversary]"),
        1,
    ) + links;
    Scenario::from_toml(&text).unwrap_or_else(|error| panic!("{error}"))
}

fn compromised(scenario: &Scenario, seed: u64) -> (u64, u64) {
    let result = run(scenario, seed).unwrap();
    let circuits = result.clients.iter().map(|c| c.circuits).sum();
    let compromised = result.clients.iter().map(|c| c.compromised).sum();
    (compromised, circuits)
}

const CLIENTS: &str = "prefixes = [\"100.64.0.0/10\"]\n\
                       destinations = [\"203.0.113.0/24\", \"198.51.100.0/24\"]";

#[test]
fn watching_every_entry_and_one_of_two_destinations_sees_half_the_circuits() {
    // Every client–guard link is watched, and the exit side of the half of
    // the circuits going to 203.0.113.0/24.
    let links = "[[links]]\nbetween = [\"100.64.0.0/10\"]\nand = [\"0.0.0.0/0\"]\n\
                 [[links]]\nbetween = [\"0.0.0.0/0\"]\nand = [\"203.0.113.0/24\"]\n";
    let (hits, circuits) = compromised(&scenario(CLIENTS, links), 1);
    assert!(circuits > 5_000);
    common::assert_binomial("link-compromised circuits", hits, circuits, 0.5);
}

#[test]
fn one_side_watched_alone_compromises_nothing() {
    let entry_only = "[[links]]\nbetween = [\"100.64.0.0/10\"]\nand = [\"0.0.0.0/0\"]\n";
    assert_eq!(compromised(&scenario(CLIENTS, entry_only), 2).0, 0);
    let exit_only =
        "[[links]]\nbetween = [\"0.0.0.0/0\"]\nand = [\"203.0.113.0/24\", \"198.51.100.0/24\"]\n";
    assert_eq!(compromised(&scenario(CLIENTS, exit_only), 3).0, 0);
}

#[test]
fn watching_half_the_clients_sees_their_circuits_only() {
    // Clients split between two /11s; only the first is watched at the
    // entry, every destination at the exit.
    let clients = "prefixes = [\"100.64.0.0/11\", \"100.96.0.0/11\"]\n\
                   destinations = [\"203.0.113.0/24\"]";
    let links = "[[links]]\nbetween = [\"100.64.0.0/11\"]\nand = [\"0.0.0.0/0\"]\n\
                 [[links]]\nbetween = [\"203.0.113.0/24\"]\nand = [\"0.0.0.0/0\"]\n";
    let result = run(&scenario(clients, links), 4).unwrap();
    let watched = result.clients.iter().filter(|c| c.compromised > 0).count();
    // Each client is all or nothing: every one of its circuits, or none.
    for client in &result.clients {
        assert!(client.compromised == 0 || client.compromised == client.circuits);
    }
    common::assert_binomial("watched clients", watched as u64, 200, 0.5);
}

#[test]
fn links_need_client_prefixes_and_valid_prefixes() {
    let links = "[[links]]\nbetween = [\"100.64.0.0/10\"]\nand = [\"0.0.0.0/0\"]\n";
    let cases = [
        ("", links, "clients.prefixes"),
        (
            "prefixes = [\"100.64.0.0/10\"]",
            links,
            "clients.destinations",
        ),
        ("prefixes = [\"100.64.0.0/33\"]", "", "clients.prefixes"),
        (
            CLIENTS,
            "[[links]]\nbetween = []\nand = [\"0.0.0.0/0\"]\n",
            "links.between",
        ),
        (
            CLIENTS,
            "[[links]]\nbetween = [\"10.0.0.0/8\"]\nand = [\"banana\"]\n",
            "links.and",
        ),
    ];
    for (clients, links, field) in cases {
        let text = common::small_text(10, 24.0, 1.0, 0.0, NO_RELAYS).replacen(
            "[adversary]",
            &format!("{clients}\n[adversary]"),
            1,
        ) + links;
        match Scenario::from_toml(&text) {
            Err(SimError::Invalid { field: named, .. }) => assert_eq!(named, field),
            other => panic!("{field}: expected it refused, got {other:?}"),
        }
    }
}
