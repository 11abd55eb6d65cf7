//! Importing a Tor network-status consensus: the hand-written fixture
//! `tests/data/tor-consensus.txt` (8 relays) gives the expected relays,
//! flags, weights and exits, and malformed documents are refused naming
//! the line.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::net::SocketAddr;

use trine_directory::{Flag, Flags};
use trine_sim::import::{ImportError, ImportedRelay, parse_tor};

fn fixture() -> String {
    std::fs::read_to_string(common::data("tor-consensus.txt")).unwrap()
}

fn relays() -> Vec<ImportedRelay> {
    parse_tor(&fixture()).unwrap_or_else(|error| panic!("{error}"))
}

fn named<'a>(relays: &'a [ImportedRelay], nickname: &str) -> &'a ImportedRelay {
    relays
        .iter()
        .find(|relay| relay.nickname == nickname)
        .unwrap_or_else(|| panic!("{nickname} missing"))
}

fn flags(list: &[Flag]) -> Flags {
    list.iter().copied().collect()
}

/// The 1-based number of the fixture's line that contains `text`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|line| line.contains(needle))
        .unwrap_or_else(|| panic!("{needle} not in the fixture"))
        + 1
}

#[test]
fn relays_nicknames_identities_and_addresses() {
    let relays = relays();
    let nicknames: Vec<&str> = relays.iter().map(|r| r.nickname.as_str()).collect();
    assert_eq!(
        nicknames,
        [
            "BirchGuard",
            "CedarGuard",
            "DualOak",
            "ElmExit",
            "BadFir",
            "WebLessExit",
            "MapleMiddle",
            "SlowPine"
        ]
    );
    let birch = &named(&relays, "BirchGuard").relay;
    // The identity's 20 bytes, then the tag.
    assert_eq!(
        birch.id.fingerprint(),
        format!(
            "cedb558de89d7218aba2a219da3b6b936caee614{}",
            "746f722d6964656e74697479"
        )
    );
    // The `r` line's address, then the `a` line's (IPv6).
    assert_eq!(
        birch.addresses,
        vec![
            "185.220.101.4:9001".parse::<SocketAddr>().unwrap(),
            "[2001:db8:1::4]:9001".parse().unwrap()
        ]
    );
    let cedar = &named(&relays, "CedarGuard").relay;
    assert_eq!(cedar.addresses, ["95.216.10.3:443".parse().unwrap()]);
    // Both IPv6 addresses are in 2001:db8::/32: like Tor, path selection
    // keeps the two relays out of one circuit.
    let maple = &named(&relays, "MapleMiddle").relay;
    assert!(birch.shares_subnet_with(maple));
    assert!(!birch.shares_subnet_with(cedar));
    assert!(relays.iter().all(|r| r.relay.family.is_empty()));
}

#[test]
fn flags_weights_and_exits() {
    let relays = relays();
    let weights: Vec<u64> = relays.iter().map(|r| r.relay.weight).collect();
    assert_eq!(
        weights,
        [21_000, 15_000, 30_000, 25_000, 9_000, 4_000, 8_000, 20]
    );
    use Flag::{Exit, Fast, Guard, Running, Stable, Valid};
    let expected = [
        (
            "BirchGuard",
            flags(&[Running, Valid, Guard, Stable, Fast]),
            false,
        ),
        (
            "CedarGuard",
            flags(&[Running, Valid, Guard, Stable, Fast]),
            false,
        ),
        (
            "DualOak",
            flags(&[Running, Valid, Guard, Exit, Stable, Fast]),
            true,
        ),
        (
            "ElmExit",
            flags(&[Running, Valid, Exit, Stable, Fast]),
            true,
        ),
        // BadExit takes the Exit flag away.
        ("BadFir", flags(&[Running, Valid, Fast]), false),
        // Exit flag kept, but its policy refuses both 80 and 443.
        ("WebLessExit", flags(&[Running, Valid, Exit, Fast]), false),
        ("MapleMiddle", flags(&[Running, Valid, Stable, Fast]), false),
        ("SlowPine", flags(&[Running, Valid]), false),
    ];
    for (nickname, want_flags, general) in expected {
        let relay = &named(&relays, nickname).relay;
        assert_eq!(relay.flags, want_flags, "{nickname}");
        assert_eq!(relay.exit_allows_general, general, "{nickname}");
    }
    let guards = relays
        .iter()
        .filter(|r| r.relay.is_guard_eligible())
        .count();
    let exits: Vec<&str> = relays
        .iter()
        .filter(|r| r.relay.is_exit_eligible())
        .map(|r| r.nickname.as_str())
        .collect();
    assert_eq!(guards, 3);
    assert_eq!(exits, ["DualOak", "ElmExit"]);
}

#[test]
fn middle_only_and_microdesc_flavour() {
    let text = "network-status-version 3 microdesc\n\
        r Solo zttVjeidchiroqIZ2jtrk2yu5hQ 2024-05-01 08:14:02 10.1.2.3 9001 0\n\
        m sha256=xyz\n\
        s Exit Fast Guard MiddleOnly Running Valid\n\
        w Bandwidth=700\n";
    let relays = parse_tor(text).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(relays.len(), 1);
    let relay = &relays[0].relay;
    assert_eq!(
        relay.flags,
        flags(&[Flag::Running, Flag::Valid, Flag::Fast])
    );
    assert_eq!(relay.weight, 700);
    assert_eq!(relay.addresses[0], "10.1.2.3:9001".parse().unwrap());
}

#[test]
fn malformed_lines_are_refused_naming_the_line() {
    let text = fixture();
    let cases = [
        (
            "zttVjeidchiroqIZ2jtrk2yu5hQ DDK9",
            "zttVjeidchiroqIZ2jtrk2yu5h! DDK9",
            "BirchGuard",
        ),
        ("185.220.101.4 9001", "185.220.101.400 9001", "BirchGuard"),
        ("95.216.10.3 443 80", "95.216.10.3 0 80", "CedarGuard"),
        ("w Bandwidth=15000", "w Measured=15000", "w Measured=15000"),
        ("w Bandwidth=25000", "w Bandwidth=fast", "w Bandwidth=fast"),
        ("w Bandwidth=9000", "w Bandwidth 9000", "w Bandwidth 9000"),
        ("p accept 80,443", "p accept 80,,443", "p accept 80,,443"),
        ("p reject 80,443", "p drop 80,443", "p drop 80,443"),
        ("178.62.8.9 443 0", "178.62.8.9 443", "ElmExit"),
        ("r MapleMiddle", "r Maple-Middle", "Maple-Middle"),
        (
            "a [2001:db8:1::4]:9001",
            "a [2001:db8:1::4]",
            "a [2001:db8:1::4]",
        ),
        (
            "a [2001:db8::1]:9001",
            "a [2001:db8::1]:0",
            "a [2001:db8::1]:0",
        ),
        // A second `s` line in one entry.
        (
            "s Running Valid\n",
            "s Running Valid\ns Running Valid Stable\n",
            "s Running Valid Stable",
        ),
        // The same identity twice: the second entry is named.
        (
            "JoYRMdWI776Dl3Cj0IxJRZzpN9Y",
            "zttVjeidchiroqIZ2jtrk2yu5hQ",
            "CedarGuard",
        ),
        // A router line before any relay.
        ("vote-digest", "s Guard\nvote-digest", "s Guard"),
        ("vote-digest", "a [::1]:1\nvote-digest", "a [::1]:1"),
        (
            "network-status-version 3",
            "network-status-version 2",
            "network-status-version 2",
        ),
    ];
    for (from, to, marker) in cases {
        let broken = text.replacen(from, to, 1);
        assert_ne!(broken, text, "case {to:?} did not apply");
        let line = line_of(&broken, marker);
        match parse_tor(&broken) {
            Err(ImportError::Line { line: got, reason }) => {
                assert_eq!(got, line, "{to:?}: {reason}");
            }
            other => panic!("{to:?}: expected a line error, got {other:?}"),
        }
    }
}

#[test]
fn missing_lines_name_the_relay_entry() {
    let text = fixture();
    for (line, name) in [
        ("s Running Valid\n", "SlowPine"),
        ("w Bandwidth=30000\n", "DualOak"),
    ] {
        let broken = text.replacen(line, "", 1);
        let expected = line_of(&broken, &format!("r {name} "));
        match parse_tor(&broken) {
            Err(ImportError::Line { line: got, reason }) => {
                assert_eq!(got, expected, "{reason}");
                assert!(reason.contains(name), "{reason}");
            }
            other => panic!("{name}: expected a line error, got {other:?}"),
        }
    }
}

#[test]
fn empty_and_relay_less_documents_are_errors() {
    assert_eq!(parse_tor(""), Err(ImportError::Empty));
    assert_eq!(parse_tor(" \n\n"), Err(ImportError::Empty));
    let text = fixture();
    let header = &text[..text.find("\nr ").unwrap() + 1];
    assert_eq!(parse_tor(header), Err(ImportError::NoRelays));
    let no_entries = format!("{header}directory-footer\n");
    assert_eq!(parse_tor(&no_entries), Err(ImportError::NoRelays));
}

#[test]
fn every_truncation_parses_or_fails_without_panicking() {
    let text = fixture();
    let mut accepted = 0;
    for (cut, _) in text.char_indices() {
        accepted += usize::from(parse_tor(&text[..cut]).is_ok());
    }
    // Cuts just after a complete `w` (or `p`) line of an entry parse.
    assert!(accepted > 8, "only {accepted} truncations parsed");
}
