//! Importing a Trine consensus from `trine-dir show --json` output: the
//! hand-written fixture `tests/data/trine-consensus.json` (5 relays, in
//! the exact shape `directory/authority/src/show.rs` prints) and
//! malformed documents.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::net::SocketAddr;

use trine_circuit::RelayId;
use trine_directory::Flag;
use trine_sim::import::{ImportError, parse_trine_json};

fn fixture() -> String {
    std::fs::read_to_string(common::data("trine-consensus.json")).unwrap()
}

#[test]
fn relays_are_imported_with_their_fields() {
    let relays = parse_trine_json(&fixture()).unwrap_or_else(|error| panic!("{error}"));
    let nicknames: Vec<&str> = relays.iter().map(|r| r.nickname.as_str()).collect();
    assert_eq!(nicknames, ["alder", "beech", "cherry", "damson", "elder"]);
    let alder = &relays[0].relay;
    assert_eq!(
        alder.id,
        RelayId::from_hex("d969e21717e11fc8a3f129995d7471207348d33ff19e19d9481cd93fee1857aa")
            .unwrap()
    );
    let addresses: Vec<SocketAddr> = ["203.0.113.5:443", "[2001:db8:5::1]:443"]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
    assert_eq!(alder.addresses, addresses);
    let weights: Vec<u64> = relays.iter().map(|r| r.relay.weight).collect();
    assert_eq!(
        weights,
        [5_000_000, 8_000_000, 3_000_000, 1_000_000, 2_000_000]
    );
    let guards: Vec<bool> = relays
        .iter()
        .map(|r| r.relay.flags.has(Flag::Guard))
        .collect();
    assert_eq!(guards, [true, true, false, false, false]);
    let exits: Vec<bool> = relays.iter().map(|r| r.relay.is_exit_eligible()).collect();
    assert_eq!(exits, [false, true, true, false, false]);
    assert!(!relays[3].relay.flags.has(Flag::Fast));
    assert!(relays[3].relay.flags.has(Flag::Stable));
}

#[test]
fn malformed_documents_are_refused_saying_where() {
    let text = fixture();
    let field_cases = [
        (
            "\"guard\",\"exit\"",
            "\"guard\",\"exitt\"",
            "relays[1].flags",
        ),
        ("\"weight\":3000000", "\"weight\":-3", "relays[2].weight"),
        ("\"weight\":1000000,", "", "relays[3].weight"),
        ("\"192.0.2.9:9001\"", "\"192.0.2.9\"", "relays[2].addresses"),
        ("\"exit\":false,", "\"exit\":0,", "relays[0].exit"),
        (
            "\"identity\":\"d969",
            "\"identity\":\"zz69",
            "relays[0].identity",
        ),
        // Beech listed under alder's identity.
        (
            "2a717b06cf073c3a6dbb37dedc157bdbfc061f7477a5118a424e982eced00ea1",
            "d969e21717e11fc8a3f129995d7471207348d33ff19e19d9481cd93fee1857aa",
            "relays[1].identity",
        ),
        ("\"relays\":[", "\"relayz\":[", "relays"),
    ];
    for (from, to, field) in field_cases {
        let broken = text.replacen(from, to, 1);
        assert_ne!(broken, text, "case {to:?} did not apply");
        match parse_trine_json(&broken) {
            Err(ImportError::Field { field: got, .. }) => assert_eq!(got, field, "{to:?}"),
            other => panic!("{to:?}: expected a field error, got {other:?}"),
        }
    }
    // Syntax errors give line and column.
    let broken = text.replacen("\"nickname\":\"cherry\"", "\"nickname\" \"cherry\"", 1);
    let column = broken.find(" \"cherry\"").unwrap() + 2;
    assert!(matches!(
        parse_trine_json(&broken),
        Err(ImportError::Syntax { line: 1, column: c, .. }) if c == column
    ));
    let two_lines = "{\n  \"relays\": [1,]\n}";
    assert!(matches!(
        parse_trine_json(two_lines),
        Err(ImportError::Syntax {
            line: 2,
            column: 16,
            ..
        })
    ));
}

#[test]
fn empty_and_relay_less_documents_are_errors() {
    assert_eq!(parse_trine_json(""), Err(ImportError::Empty));
    assert_eq!(
        parse_trine_json("{\"valid_after\":1,\"relays\":[]}"),
        Err(ImportError::NoRelays)
    );
    assert!(matches!(
        parse_trine_json("[]"),
        Err(ImportError::Field { .. })
    ));
}

#[test]
fn every_truncation_fails_without_panicking() {
    let text = fixture();
    let text = text.trim_end();
    for (cut, _) in text.char_indices() {
        assert!(
            parse_trine_json(&text[..cut]).is_err(),
            "cut at {cut} parsed"
        );
    }
    assert!(parse_trine_json(text).is_ok());
}
