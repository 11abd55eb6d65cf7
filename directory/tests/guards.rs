//! The guard state: persistence round-trips and refuses garbage; guards
//! rotate after their lifetime, are replaced when unlisted, are skipped
//! while failing until their retry time, and are never dropped for
//! failing; path selection always goes through the preferred guard.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use proptest::prelude::*;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use trine_circuit::RelayId;
use trine_circuit::codec;
use trine_directory::guards::MAX_STORED_GUARDS;
use trine_directory::{
    Candidate, Flag, Flags, GuardParams, GuardState, GuardStateError, PathConfig, PathError,
    PathIndex, select_path,
};

const NOW: u64 = 1_700_000_000;
const DAY: u64 = 24 * 60 * 60;

fn id(n: u16) -> RelayId {
    let mut bytes = [0u8; 32];
    bytes[..2].copy_from_slice(&n.to_be_bytes());
    RelayId::from_bytes(bytes)
}

const GUARD: &[Flag] = &[Flag::Running, Flag::Valid, Flag::Guard, Flag::Stable];
const EXIT: &[Flag] = &[Flag::Running, Flag::Valid, Flag::Exit];
const MIDDLE: &[Flag] = &[Flag::Running, Flag::Valid];

fn relay(n: u16, list: &[Flag]) -> Candidate {
    let [high, low] = n.to_be_bytes();
    Candidate {
        id: id(n),
        addresses: vec![SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(10 + high, low, 0, 1)),
            443,
        )],
        family: Vec::new(),
        flags: list.iter().copied().collect(),
        weight: 100 + u64::from(n),
        exit_allows_general: true,
    }
}

/// 30 guards (ids 1–30), 10 exits (101–110), 10 middles (201–210).
fn network() -> Vec<Candidate> {
    (1..=30)
        .map(|n| relay(n, GUARD))
        .chain((101..=110).map(|n| relay(n, EXIT)))
        .chain((201..=210).map(|n| relay(n, MIDDLE)))
        .collect()
}

fn sampled(state: &GuardState) -> Vec<RelayId> {
    state.entries().iter().map(|entry| entry.id).collect()
}

fn fresh(seed: u64, params: GuardParams) -> (GuardState, ChaCha20Rng) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut state = GuardState::new(params);
    state.update(&PathIndex::new(network()), NOW, &mut rng);
    (state, rng)
}

#[test]
fn a_new_state_samples_weighted_guards_and_names_three_primaries() {
    let (state, _) = fresh(1, GuardParams::default());
    assert_eq!(state.entries().len(), 20);
    let network = network();
    for entry in state.entries() {
        let relay = network.iter().find(|c| c.id == entry.id).unwrap();
        assert!(relay.flags.has(Flag::Guard));
        assert!(entry.listed_usable && entry.failures == 0 && entry.added_at == NOW);
    }
    let primary: Vec<RelayId> = state.primary(NOW).map(|e| e.id).collect();
    assert_eq!(primary, sampled(&state)[..3]);
    assert_eq!(state.pick(NOW), Some(primary[0]));
}

#[test]
fn the_state_round_trips_through_its_bytes() {
    let (mut state, _) = fresh(2, GuardParams::default());
    let ids = sampled(&state);
    state.mark_failed(ids[0], NOW + 5);
    state.mark_failed(ids[0], NOW + 700);
    state.mark_succeeded(ids[1], NOW + 9);
    let bytes = state.to_bytes();
    let back = GuardState::from_bytes(&bytes, GuardParams::default()).unwrap();
    assert_eq!(back, state);
    assert_eq!(back.to_bytes(), bytes);
    assert_eq!(back.pick(NOW + 800), Some(ids[1]));
    let empty = GuardState::default();
    assert_eq!(
        GuardState::from_bytes(&empty.to_bytes(), GuardParams::default()).unwrap(),
        empty
    );
}

#[test]
fn guards_rotate_when_their_lifetime_is_over() {
    let params = GuardParams {
        min_lifetime: 30 * DAY,
        max_lifetime: 60 * DAY,
        ..GuardParams::default()
    };
    let (mut state, mut rng) = fresh(3, params);
    let original = sampled(&state);
    let lifetimes: Vec<u64> = state
        .entries()
        .iter()
        .map(|e| e.expires_at - e.added_at)
        .collect();
    assert!(lifetimes.iter().all(|l| (30 * DAY..=60 * DAY).contains(l)));
    assert!(lifetimes.iter().any(|l| *l != lifetimes[0]), "randomised");

    // Before the shortest lifetime is over, nothing changes.
    state.update(&PathIndex::new(network()), NOW + 30 * DAY - 1, &mut rng);
    assert_eq!(sampled(&state), original);

    // The first guard to expire is replaced; the one after it takes its place.
    let first_expiry = state.entries().iter().map(|e| e.expires_at).min().unwrap();
    let expiring = state
        .entries()
        .iter()
        .find(|e| e.expires_at == first_expiry)
        .unwrap()
        .id;
    // An expired guard is not used even before update() drops it.
    assert!(state.usable(first_expiry).all(|g| g != expiring));
    state.update(&PathIndex::new(network()), first_expiry, &mut rng);
    assert!(!sampled(&state).contains(&expiring));
    assert_eq!(state.entries().len(), 20);
    assert_eq!(state.entries().last().unwrap().added_at, first_expiry);

    // After the longest lifetime every original entry is gone (a relay may
    // be sampled again, as a new entry with a new lifetime).
    let later = NOW + 60 * DAY;
    state.update(&PathIndex::new(network()), later, &mut rng);
    assert!(state.entries().iter().all(|e| e.added_at > NOW));
    assert_eq!(state.entries().len(), 20);
    assert!(state.pick(later).is_some());
}

#[test]
fn an_unlisted_guard_is_replaced_and_the_next_primary_takes_over() {
    let (mut state, mut rng) = fresh(4, GuardParams::default());
    let before = sampled(&state);
    let network: Vec<Candidate> = network()
        .into_iter()
        .filter(|c| c.id != before[0])
        .collect();
    state.update(&PathIndex::new(network.clone()), NOW + 60, &mut rng);
    let after = sampled(&state);
    assert!(!after.contains(&before[0]));
    assert_eq!(after[..19], before[1..]);
    assert_eq!(after.len(), 20);
    assert_eq!(state.pick(NOW + 60), Some(before[1]));
    let primary: Vec<RelayId> = state.primary(NOW + 60).map(|e| e.id).collect();
    assert_eq!(primary, before[1..4]);
}

#[test]
fn an_empty_consensus_leaves_the_guards_alone() {
    let (mut state, mut rng) = fresh(11, GuardParams::default());
    let before = state.clone();
    state.update(&PathIndex::new(Vec::new()), NOW + 60, &mut rng);
    assert_eq!(state, before);
}

#[test]
fn a_guard_that_loses_its_flags_is_kept_but_skipped_until_it_regains_them() {
    let (mut state, mut rng) = fresh(5, GuardParams::default());
    let before = sampled(&state);
    let mut network = network();
    let demoted = network.iter_mut().find(|c| c.id == before[0]).unwrap();
    demoted.flags = MIDDLE.iter().copied().collect::<Flags>();
    state.update(&PathIndex::new(network.clone()), NOW + 60, &mut rng);
    assert_eq!(sampled(&state)[..20], before[..]);
    assert_eq!(
        state.entries().len(),
        21,
        "one more sampled to keep 20 usable"
    );
    assert_eq!(state.pick(NOW + 60), Some(before[1]));
    state.update(&PathIndex::new(self::network()), NOW + 120, &mut rng);
    assert_eq!(state.pick(NOW + 120), Some(before[0]));
}

#[test]
fn the_sample_never_grows_past_its_bound() {
    let params = GuardParams {
        max_sampled: 25,
        ..GuardParams::default()
    };
    let (mut state, mut rng) = fresh(6, params);
    let mut network = network();
    // 15 of the 20 sampled guards lose their flag: 15 more are wanted and
    // 10 unsampled guards are there, but the state may add only 5.
    let held = sampled(&state);
    for relay in network.iter_mut().filter(|r| held.contains(&r.id)).take(15) {
        relay.flags = MIDDLE.iter().copied().collect();
    }
    state.update(&PathIndex::new(network.clone()), NOW + 1, &mut rng);
    assert_eq!(state.entries().len(), 25);
}

/// Paths go through the first usable guard, which the state keeps at hand
/// between circuits: a marked failure moves them to the next guard at
/// once, and the failed guard is first again as soon as its retry time
/// has come, with nothing else happening in between.
#[test]
fn paths_follow_the_first_usable_guard_through_failures_and_retries() {
    let params = GuardParams::default();
    let (mut state, mut rng) = fresh(8, params.clone());
    let ids = sampled(&state);
    let index = PathIndex::new(network());
    let config = PathConfig::default();
    let mut guard_at = |state: &mut GuardState, at: u64| {
        select_path(&index, state, at, &mut rng, &config)
            .unwrap()
            .guard
    };
    assert_eq!(guard_at(&mut state, NOW), ids[0]);
    assert_eq!(guard_at(&mut state, NOW + 1), ids[0]);
    state.mark_failed(ids[0], NOW + 2);
    assert_eq!(guard_at(&mut state, NOW + 3), ids[1]);
    let retry = NOW + 2 + params.first_retry_delay;
    assert_eq!(guard_at(&mut state, retry - 1), ids[1]);
    assert_eq!(guard_at(&mut state, retry), ids[0]);
    state.mark_failed(ids[0], retry);
    state.mark_failed(ids[1], retry);
    assert_eq!(guard_at(&mut state, retry + 1), ids[2]);
    state.mark_succeeded(ids[0], retry + 2);
    assert_eq!(guard_at(&mut state, retry + 3), ids[0]);
}

#[test]
fn a_failing_guard_is_skipped_until_its_retry_time_with_doubling_backoff() {
    let params = GuardParams::default();
    let (mut state, _) = fresh(7, params.clone());
    let ids = sampled(&state);
    let first_delay = params.first_retry_delay;

    state.mark_failed(ids[0], NOW);
    assert_eq!(state.pick(NOW), Some(ids[1]));
    assert_eq!(state.pick(NOW + first_delay - 1), Some(ids[1]));
    assert_eq!(state.pick(NOW + first_delay), Some(ids[0]));
    // Still primary, still sampled: failures never drop a guard.
    assert_eq!(state.primary(NOW).next().unwrap().id, ids[0]);

    let again = NOW + first_delay;
    state.mark_failed(ids[0], again);
    assert_eq!(state.entries()[0].failures, 2);
    assert_eq!(state.entries()[0].retry_at, Some(again + 2 * first_delay));
    for _ in 0..40 {
        state.mark_failed(ids[0], again);
    }
    assert_eq!(
        state.entries()[0].retry_at,
        Some(again + params.max_retry_delay)
    );

    state.mark_succeeded(ids[0], again + 1);
    let entry = &state.entries()[0];
    assert_eq!((entry.failures, entry.retry_at), (0, None));
    assert_eq!(entry.last_success_at, Some(again + 1));
    assert_eq!(state.pick(again + 1), Some(ids[0]));

    // Unknown guards are ignored.
    let unchanged = state.clone();
    state.mark_failed(id(999), NOW);
    state.mark_succeeded(id(999), NOW);
    assert_eq!(state, unchanged);
}

#[test]
fn when_every_guard_is_failing_there_is_no_guard_and_no_path() {
    let (mut state, mut rng) = fresh(8, GuardParams::default());
    for guard in sampled(&state) {
        state.mark_failed(guard, NOW);
    }
    assert_eq!(state.pick(NOW), None);
    let result = select_path(
        &PathIndex::new(network()),
        &mut state,
        NOW,
        &mut rng,
        &PathConfig::default(),
    );
    assert_eq!(result, Err(PathError::NoGuards));
    assert!(
        state
            .pick(NOW + GuardParams::default().first_retry_delay)
            .is_some()
    );
}

#[test]
fn paths_go_through_the_preferred_guard_even_when_exits_share_its_subnet() {
    let (mut state, mut rng) = fresh(9, GuardParams::default());
    let preferred = state.pick(NOW).unwrap();
    let mut network = network();
    let guard_address = network
        .iter()
        .find(|c| c.id == preferred)
        .unwrap()
        .addresses[0];
    // Half the exits sit in the preferred guard's /16.
    for exit in network
        .iter_mut()
        .filter(|c| c.flags.has(Flag::Exit))
        .take(5)
    {
        exit.addresses = vec![guard_address];
    }
    let crowded: Vec<RelayId> = network
        .iter()
        .filter(|c| c.flags.has(Flag::Exit) && c.addresses[0] == guard_address)
        .map(|c| c.id)
        .collect();
    for _ in 0..500 {
        let path = select_path(
            &PathIndex::new(network.clone()),
            &mut state,
            NOW,
            &mut rng,
            &PathConfig::default(),
        )
        .unwrap();
        assert_eq!(path.guard, preferred);
        assert!(!crowded.contains(&path.exit));
    }
}

// ---- Garbage is refused.

fn valid_bytes() -> Vec<u8> {
    fresh(10, GuardParams::default()).0.to_bytes()
}

/// One guard as the storage format lays it out (see `guards/storage.rs`).
type StoredEntry = (RelayId, u64, u64, bool, u32, Option<u64>, Option<u64>);

fn stored(entries: &[StoredEntry]) -> Vec<u8> {
    let mut bytes = b"TRINEGRD\x01".to_vec();
    bytes.extend(codec::encode(&entries.to_vec()));
    bytes
}

fn read(bytes: &[u8]) -> Result<GuardState, GuardStateError> {
    GuardState::from_bytes(bytes, GuardParams::default())
}

#[test]
fn garbage_state_bytes_are_refused() {
    let good = valid_bytes();
    assert!(read(&good).is_ok());
    assert_eq!(read(b""), Err(GuardStateError::NotGuardState));
    assert_eq!(read(b"TRINEGRD"), Err(GuardStateError::NotGuardState));
    assert_eq!(
        read(b"{\"guards\": []}"),
        Err(GuardStateError::NotGuardState)
    );
    let mut other_version = good.clone();
    other_version[8] = 2;
    assert_eq!(
        read(&other_version),
        Err(GuardStateError::UnsupportedVersion {
            found: 2,
            supported: 1
        })
    );
    assert!(matches!(
        read(&good[..good.len() - 1]),
        Err(GuardStateError::Malformed(_))
    ));
    let mut trailing = good.clone();
    trailing.push(0);
    assert!(matches!(
        read(&trailing),
        Err(GuardStateError::Malformed(
            codec::CodecError::TrailingBytes { extra: 1 }
        ))
    ));
    let entry = (id(1), NOW, NOW + DAY, true, 0, None, None);
    assert!(read(&stored(&[entry])).is_ok());
    assert_eq!(
        read(&stored(&[entry, entry])),
        Err(GuardStateError::DuplicateGuard(id(1)))
    );
    let backwards = (id(2), NOW, NOW - 1, true, 0, None, None);
    assert_eq!(
        read(&stored(&[backwards])),
        Err(GuardStateError::ExpiresBeforeAdded(id(2)))
    );
    let too_many: Vec<_> = (0..=MAX_STORED_GUARDS as u16)
        .map(|n| (id(n), NOW, NOW, false, 0, None, None))
        .collect();
    assert!(matches!(
        read(&stored(&too_many)),
        Err(GuardStateError::TooManyGuards { .. } | GuardStateError::Malformed(_))
    ));
    // A boolean that is neither 0 nor 1 is not a canonical encoding.
    let mut bad_bool = stored(&[entry]);
    let flag_at = 9 + 8 + 32 + 8 + 8;
    bad_bool[flag_at] = 2;
    assert!(matches!(
        read(&bad_bool),
        Err(GuardStateError::Malformed(_))
    ));
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = read(&bytes);
        let mut prefixed = b"TRINEGRD\x01".to_vec();
        prefixed.extend(&bytes);
        if let Ok(state) = read(&prefixed) {
            prop_assert_eq!(state.to_bytes(), prefixed);
        }
    }

    #[test]
    fn flipped_bytes_are_refused_or_read_canonically(index in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let mut bytes = valid_bytes();
        let at = index.index(bytes.len());
        bytes[at] ^= flip;
        if let Ok(state) = read(&bytes) {
            prop_assert_eq!(state.to_bytes(), bytes);
        }
    }
}

/// A consensus prepared as following the one a state last reconciled with
/// lets `update` skip looking guards up when none of them changed; in every
/// case the state, the random numbers it uses and the path it then picks
/// must be exactly those of a full reconciliation (the state remembers
/// where its guard was in the consensus before, which must not leak into
/// the next even when every relay moves).
#[test]
fn reconciling_with_a_following_consensus_equals_a_full_reconciliation() {
    let base = network();
    let mut rng = ChaCha20Rng::seed_from_u64(40);
    let first = PathIndex::new(base.clone());
    let mut reconciled = GuardState::new(GuardParams::default());
    let config = PathConfig::default();
    select_path(&first, &mut reconciled, NOW, &mut rng, &config).unwrap();
    let held = sampled(&reconciled);
    let unheld_guard = (1..=30).map(id).find(|g| !held.contains(g)).unwrap();

    let without = |gone: RelayId| -> Vec<Candidate> {
        base.iter().filter(|c| c.id != gone).cloned().collect()
    };
    let mut demoted = base.clone();
    demoted.iter_mut().find(|c| c.id == held[0]).unwrap().flags = MIDDLE.iter().copied().collect();
    let mut grown = base.clone();
    grown.extend((31..=40).map(|n| relay(n, GUARD)));
    let cases: Vec<(&str, Vec<Candidate>)> = vec![
        ("unchanged", base.clone()),
        ("every relay moves", base.iter().rev().cloned().collect()),
        ("the relay listed first leaves", base[1..].to_vec()),
        ("an unsampled guard leaves", without(unheld_guard)),
        ("a middle leaves", without(id(205))),
        ("a sampled guard leaves", without(held[3])),
        ("a sampled guard loses its flag", demoted),
        ("new guards join", grown),
    ];
    for (name, candidates) in cases {
        let (mut fast, mut full) = (reconciled.clone(), reconciled.clone());
        let (mut fast_rng, mut full_rng) = (rng.clone(), rng.clone());
        let following = PathIndex::following(&first, candidates.clone());
        fast.update(&following, NOW + 3_600, &mut fast_rng);
        full.update(
            &PathIndex::new(candidates.clone()),
            NOW + 3_600,
            &mut full_rng,
        );
        assert_eq!(fast.entries(), full.entries(), "{name}");
        assert_eq!(
            fast_rng.next_u64(),
            full_rng.next_u64(),
            "{name}: draws differ"
        );
        let at = NOW + 3_700;
        assert_eq!(
            select_path(&following, &mut fast, at, &mut fast_rng, &config).unwrap(),
            select_path(
                &PathIndex::new(candidates.clone()),
                &mut full,
                at,
                &mut full_rng,
                &config
            )
            .unwrap(),
            "{name}: paths differ"
        );
    }
}

/// A state that still wants guards (too few listed) must sample the new
/// ones a following consensus brings, as a full reconciliation does.
#[test]
fn an_unsettled_state_samples_what_a_following_consensus_adds() {
    let few: Vec<Candidate> = network()
        .into_iter()
        .filter(|c| c.id > id(25) || !c.flags.has(Flag::Guard))
        .collect();
    let first = PathIndex::new(few.clone());
    let mut rng = ChaCha20Rng::seed_from_u64(41);
    let mut state = GuardState::new(GuardParams::default());
    state.update(&first, NOW, &mut rng);
    assert_eq!(state.entries().len(), 5, "only 5 guards to sample");
    let mut full = state.clone();
    let mut full_rng = rng.clone();
    let all = network();
    state.update(
        &PathIndex::following(&first, all.clone()),
        NOW + 60,
        &mut rng,
    );
    full.update(&PathIndex::new(all), NOW + 60, &mut full_rng);
    assert_eq!(state.entries().len(), 20);
    assert_eq!(state.entries(), full.entries());
}
