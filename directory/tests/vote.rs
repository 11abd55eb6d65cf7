//! Votes (signing, decoding, authority checks) and the flags an authority
//! assigns from its observations.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod dirtest;

use dirtest::*;
use trine_directory::{
    ExitSummary, Flag, Flags, FormatError, NetParams, Observation, Period, PortRange,
    UnverifiedVote, Vote, VoteEntry, VoteError, assign_flags,
};

#[test]
fn a_vote_round_trips_and_verifies_against_its_authorities() {
    let entries = vec![entry(3, healthy(), 10), entry(1, healthy(), 20)];
    let signed = vote(0, entries);
    let bytes = signed.to_bytes();
    let verified = UnverifiedVote::from_bytes(&bytes)
        .unwrap()
        .verify(&authorities(3, 2))
        .unwrap();
    assert_eq!(verified, signed);
    assert_eq!(verified.to_bytes(), bytes);
    assert_eq!(verified.authority(), authority(0).relay_id());
    let ids: Vec<_> = verified
        .vote()
        .entries()
        .iter()
        .map(|e| e.relay.identity)
        .collect();
    let mut sorted = vec![id(1), id(3)];
    sorted.sort();
    assert_eq!(ids, sorted);
}

#[test]
fn a_vote_from_a_key_outside_the_authority_set_is_refused() {
    let bytes = vote(7, vec![entry(1, healthy(), 10)]).to_bytes();
    let error = UnverifiedVote::from_bytes(&bytes)
        .unwrap()
        .verify(&authorities(3, 2))
        .unwrap_err();
    assert_eq!(error, VoteError::UnknownAuthority(authority(7).relay_id()));
}

#[test]
fn a_tampered_vote_is_refused() {
    let mut bytes = vote(1, vec![entry(1, healthy(), 10)]).to_bytes();
    // The last byte before the signature: the entry's certificate expiry.
    let at = bytes.len() - 65;
    bytes[at] ^= 1;
    let error = UnverifiedVote::from_bytes(&bytes)
        .unwrap()
        .verify(&authorities(3, 2))
        .unwrap_err();
    assert_eq!(error, VoteError::BadSignature(authority(1).relay_id()));
}

#[test]
fn two_entries_for_one_relay_are_refused() {
    let error = Vote::new(
        period(),
        NetParams::default(),
        vec![entry(1, healthy(), 10), entry(1, healthy(), 20)],
    )
    .unwrap_err();
    assert_eq!(
        error,
        FormatError::Unsorted {
            field: "vote entries"
        }
    );
}

#[test]
fn a_bad_period_or_parameter_is_refused() {
    let bad = Period {
        valid_after: 10,
        fresh_until: 10,
        valid_until: 20,
    };
    assert!(matches!(
        Vote::new(bad, NetParams::default(), vec![]),
        Err(FormatError::BadPeriod { .. })
    ));
    let params = NetParams {
        max_relays_per_ip: 0,
        ..NetParams::default()
    };
    assert_eq!(
        Vote::new(period(), params, vec![]),
        Err(FormatError::BadParam("max_relays_per_ip"))
    );
}

#[test]
fn garbage_and_truncated_votes_are_refused() {
    let bytes = vote(0, vec![entry(1, healthy(), 10)]).to_bytes();
    for cut in [0, 10, bytes.len() - 1] {
        assert!(matches!(
            UnverifiedVote::from_bytes(&bytes[..cut]),
            Err(VoteError::Malformed(_))
        ));
    }
    assert!(UnverifiedVote::from_bytes(&[0xff; 300]).is_err());
}

#[test]
fn vote_entries_come_from_verified_descriptors() {
    let descriptor = descriptor(5);
    let entry = VoteEntry::new(&descriptor, healthy(), 1234);
    assert_eq!(entry.digest, descriptor.digest());
    assert_eq!(entry.relay.identity, id(5));
    assert_eq!(entry.relay.weight, 1234);
    assert_eq!(entry.onion_key_expires, CERT_EXPIRES);
}

fn observation(reachable: bool, uptime_secs: u64, measured_bandwidth: u64) -> Observation {
    Observation {
        reachable,
        uptime_secs,
        measured_bandwidth,
    }
}

#[test]
fn flags_follow_the_thresholds() {
    let params = NetParams::default();
    let day = 86_400;
    let relay = descriptor(1);
    let flags = |obs| assign_flags(&relay, &obs, &params);

    let fresh = flags(observation(true, 60, 50_000));
    assert_eq!(
        fresh,
        [Flag::Running, Flag::Valid].into_iter().collect::<Flags>()
    );

    let fast_stable = flags(observation(true, 2 * day, 200_000));
    assert!(fast_stable.has(Flag::Fast) && fast_stable.has(Flag::Stable));
    assert!(!fast_stable.has(Flag::Guard));

    let guard = flags(observation(true, 9 * day, 2_000_000));
    assert!(guard.has(Flag::Guard));

    let down = flags(observation(false, 9 * day, 2_000_000));
    assert!(!down.has(Flag::Running) && down.has(Flag::Guard) && down.has(Flag::Valid));
    assert!(!down.has(Flag::Exit));
}

#[test]
fn measured_bandwidth_is_capped_at_the_declared_rate() {
    let mut fields = descriptor_fields(1);
    fields.bandwidth.rate = 500_000;
    let relay = fields.sign(&relay_key(1)).unwrap();
    let flags = assign_flags(
        &relay,
        &observation(true, 9 * 86_400, 50_000_000),
        &NetParams::default(),
    );
    assert!(flags.has(Flag::Fast));
    assert!(
        !flags.has(Flag::Guard),
        "rate 500 kB/s is under the guard minimum"
    );
}

#[test]
fn the_exit_flag_needs_web_ports() {
    let params = NetParams::default();
    let obs = observation(true, 0, 0);
    let exit = |summary: ExitSummary| {
        let mut fields = descriptor_fields(1);
        fields.exit = summary;
        assign_flags(&fields.sign(&relay_key(1)).unwrap(), &obs, &params).has(Flag::Exit)
    };
    assert!(exit(ExitSummary::new(true, vec![PortRange::single(25)])));
    assert!(!exit(ExitSummary::new(true, vec![PortRange::single(443)])));
    assert!(!exit(ExitSummary::REJECT_ALL));
}
