//! Clients accepting a consensus: threshold signatures by configured
//! authorities, the validity window, no rollback. Each refusal has its own
//! error, and the consensus the client already holds stays in use.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod dirtest;

use dirtest::*;
use trine_circuit::codec;
use trine_directory::verify::{MAX_CONSENSUS_LEN, MAX_SIGNATURES};
use trine_directory::{
    AuthoritySet, AuthoritySignature, CLOCK_SKEW_SECS, Consensus, DirError, FormatError, Period,
    UnverifiedConsensus, VerifiedConsensus,
};

const NOW: u64 = VALID_AFTER + 60;

/// A client: its trusted authorities and the consensus it uses, replaced
/// only when a new one verifies.
struct Client {
    authorities: AuthoritySet,
    held: Option<VerifiedConsensus>,
}

impl Client {
    fn new() -> Self {
        Self {
            authorities: authorities(3, 2),
            held: None,
        }
    }

    fn holding(consensus: &Consensus, now: u64) -> Self {
        let mut client = Self::new();
        client.offer(&consensus.to_bytes(), now).unwrap();
        client
    }

    fn offer(&mut self, bytes: &[u8], now: u64) -> Result<(), DirError> {
        let verified = UnverifiedConsensus::from_bytes(bytes)?.verify(
            &self.authorities,
            now,
            self.held.as_ref(),
        )?;
        self.held = Some(verified);
        Ok(())
    }

    fn held_digest(&self) -> Option<trine_directory::Digest> {
        self.held.as_ref().map(|held| *held.digest())
    }
}

/// The held consensus (a valid one for the test period, 4 relays) and a
/// client holding it.
fn held_setup() -> (Consensus, Client) {
    let consensus = signed_consensus(period(), 4, &[0, 1]);
    let client = Client::holding(&consensus, NOW);
    (consensus, client)
}

/// Offers `bytes` to a client holding a consensus; expects `error` and the
/// held consensus unchanged.
fn assert_refused(bytes: &[u8], now: u64, error: DirError) {
    let (held, mut client) = held_setup();
    assert_eq!(client.offer(bytes, now), Err(error));
    assert_eq!(
        client.held_digest(),
        Some(*held.digest()),
        "held consensus replaced"
    );
}

/// The envelope with exactly these signatures, in this order.
fn envelope(consensus: &Consensus, signatures: Vec<AuthoritySignature>) -> Vec<u8> {
    codec::encode(&(consensus.body_bytes().to_vec(), signatures))
}

fn newer(signers: &[u16]) -> Consensus {
    signed_consensus(later_period(1), 5, signers)
}

#[test]
fn a_threshold_signed_consensus_is_accepted_and_exposes_its_relays() {
    let consensus = signed_consensus(period(), 4, &[0, 2]);
    let mut client = Client::new();
    client.offer(&consensus.to_bytes(), NOW).unwrap();
    let held = client.held.as_ref().unwrap();
    assert_eq!(held.relays().len(), 4);
    assert_eq!(held.relay(&id(2)).unwrap().nickname, "relay2");
    assert!(held.relay(&id(9)).is_none());
    let mut signers = vec![authority(0).relay_id(), authority(2).relay_id()];
    signers.sort();
    assert_eq!(held.signers(), signers.as_slice());
    assert_eq!(held.to_bytes(), consensus.to_bytes());
    assert_eq!(*held.period(), period());
    assert!(held.is_fresh(NOW) && !held.is_fresh(FRESH_UNTIL));
    assert!(held.is_usable(VALID_UNTIL) && !held.is_usable(VALID_UNTIL + CLOCK_SKEW_SECS));

    // A newer one replaces it.
    client
        .offer(&newer(&[0, 1, 2]).to_bytes(), NOW + 3_600)
        .unwrap();
    assert_eq!(client.held.as_ref().unwrap().relays().len(), 5);
}

#[test]
fn a_forged_signature_is_refused() {
    let consensus = newer(&[0]);
    let mut forged = consensus.body().sign(&authority(1));
    forged.signature[0] ^= 1;
    let bytes = consensus.clone().with_signatures([forged]).to_bytes();
    assert_refused(
        &bytes,
        NOW + 3_600,
        DirError::ForgedSignature {
            authority: authority(1).relay_id(),
        },
    );
}

#[test]
fn a_forged_signature_is_refused_even_when_enough_others_verify() {
    let consensus = newer(&[0, 1]);
    let mut forged = consensus.body().sign(&authority(2));
    forged.signature[63] ^= 0x40;
    let bytes = consensus.with_signatures([forged]).to_bytes();
    assert_refused(
        &bytes,
        NOW + 3_600,
        DirError::ForgedSignature {
            authority: authority(2).relay_id(),
        },
    );
}

#[test]
fn a_tampered_body_is_refused_as_forged() {
    let consensus = newer(&[0, 1]);
    let mut bytes = consensus.to_bytes();
    // The last byte of the body: the last relay's weight.
    let at = 8 + consensus.body_bytes().len() - 1;
    bytes[at] ^= 1;
    let error = UnverifiedConsensus::from_bytes(&bytes)
        .unwrap()
        .verify(&authorities(3, 2), NOW + 3_600, None)
        .unwrap_err();
    assert!(
        matches!(error, DirError::ForgedSignature { .. }),
        "{error:?}"
    );
    assert_refused(&bytes, NOW + 3_600, error);
}

#[test]
fn signatures_by_unknown_keys_are_ignored_and_named_when_too_few_remain() {
    let consensus = newer(&[0]);
    let stranger = consensus.body().sign(&authority(7));
    let bytes = consensus.clone().with_signatures([stranger]).to_bytes();
    assert_refused(
        &bytes,
        NOW + 3_600,
        DirError::UnknownAuthority {
            unknown: 1,
            valid: 1,
            needed: 2,
        },
    );
    // With the threshold met, the stranger's signature is simply ignored.
    let enough = newer(&[0, 1]).with_signatures([stranger]);
    let (_, mut client) = held_setup();
    client.offer(&enough.to_bytes(), NOW + 3_600).unwrap();
    assert_eq!(client.held.as_ref().unwrap().signers().len(), 2);
}

#[test]
fn fewer_signatures_than_the_threshold_are_refused() {
    assert_refused(
        &newer(&[2]).to_bytes(),
        NOW + 3_600,
        DirError::TooFewSignatures {
            valid: 1,
            needed: 2,
        },
    );
    assert_refused(
        &newer(&[]).to_bytes(),
        NOW + 3_600,
        DirError::TooFewSignatures {
            valid: 0,
            needed: 2,
        },
    );
}

#[test]
fn a_duplicated_signature_counts_once() {
    let consensus = newer(&[]);
    let once = consensus.body().sign(&authority(0));
    let bytes = envelope(&consensus, vec![once, once, once]);
    assert_refused(
        &bytes,
        NOW + 3_600,
        DirError::TooFewSignatures {
            valid: 1,
            needed: 2,
        },
    );
    // with_signatures drops exact duplicates itself.
    assert_eq!(
        consensus.with_signatures([once, once]).signatures().len(),
        1
    );
}

#[test]
fn an_expired_consensus_is_refused() {
    let bytes = signed_consensus(period(), 4, &[0, 1]).to_bytes();
    let now = VALID_UNTIL + CLOCK_SKEW_SECS;
    let mut client = Client::new();
    assert_eq!(
        client.offer(&bytes, now),
        Err(DirError::Expired {
            valid_until: VALID_UNTIL,
            now
        })
    );
    assert!(client.held.is_none());
    client.offer(&bytes, now - 1).unwrap();
}

#[test]
fn a_consensus_not_yet_valid_is_refused() {
    let later = later_period(5);
    let bytes = signed_consensus(later, 4, &[0, 1]).to_bytes();
    let now = later.valid_after - CLOCK_SKEW_SECS - 1;
    assert_refused(
        &bytes,
        now,
        DirError::NotYetValid {
            valid_after: later.valid_after,
            now,
        },
    );
    let (_, mut client) = held_setup();
    client.offer(&bytes, now + 1).unwrap();
}

#[test]
fn an_older_consensus_than_the_one_held_is_refused() {
    let mut client = Client::holding(&newer(&[0, 1]), NOW + 3_600);
    let held = client.held_digest();
    let older = signed_consensus(period(), 4, &[0, 1, 2]);
    assert_eq!(
        client.offer(&older.to_bytes(), NOW + 3_600),
        Err(DirError::Rollback {
            held_valid_after: VALID_AFTER + 3_600,
            valid_after: VALID_AFTER
        })
    );
    assert_eq!(client.held_digest(), held);
}

#[test]
fn a_different_consensus_for_the_held_period_is_refused() {
    let other = signed_consensus(period(), 7, &[1, 2]);
    assert_refused(
        &other.to_bytes(),
        NOW,
        DirError::Equivocation {
            valid_after: VALID_AFTER,
        },
    );
}

#[test]
fn the_held_consensus_again_is_accepted_with_more_signatures() {
    let (held, mut client) = held_setup();
    let more = held
        .clone()
        .with_signatures([held.body().sign(&authority(2))]);
    client.offer(&more.to_bytes(), NOW).unwrap();
    assert_eq!(client.held.as_ref().unwrap().signers().len(), 3);
    assert_eq!(client.held_digest(), Some(*held.digest()));
}

#[test]
fn truncated_consensuses_are_refused() {
    let bytes = newer(&[0, 1]).to_bytes();
    let body_end = bytes.len() - 8 - 2 * 96;
    for cut in [
        0,
        1,
        7,
        8,
        100,
        body_end - 1,
        body_end,
        body_end + 3,
        bytes.len() - 1,
    ] {
        assert_refused(&bytes[..cut], NOW + 3_600, DirError::Truncated { len: cut });
    }
}

#[test]
fn an_oversized_consensus_is_refused_before_decoding() {
    let bytes = vec![0u8; MAX_CONSENSUS_LEN + 1];
    assert_refused(
        &bytes,
        NOW,
        DirError::TooLarge {
            len: MAX_CONSENSUS_LEN + 1,
            max: MAX_CONSENSUS_LEN,
        },
    );
}

#[test]
fn garbage_is_refused_as_malformed() {
    let is_malformed = |bytes: &[u8]| {
        matches!(
            UnverifiedConsensus::from_bytes(bytes),
            Err(DirError::Malformed(_))
        )
    };
    assert!(is_malformed(&[0xff; 1_000]));
    let mut trailing = newer(&[0, 1]).to_bytes();
    trailing.push(0);
    assert!(is_malformed(&trailing));
    // A well-formed envelope around a body that is not one.
    let garbage_body = codec::encode(&(vec![0xabu8; 300], Vec::<AuthoritySignature>::new()));
    assert!(is_malformed(&garbage_body));

    let (held, mut client) = held_setup();
    let error = client.offer(&[0xff; 1_000], NOW).unwrap_err();
    assert!(matches!(error, DirError::Malformed(_)));
    assert_eq!(client.held_digest(), Some(*held.digest()));
}

#[test]
fn too_many_signatures_are_refused() {
    let consensus = newer(&[]);
    let signature = consensus.body().sign(&authority(0));
    let bytes = envelope(&consensus, vec![signature; MAX_SIGNATURES + 1]);
    assert_refused(
        &bytes,
        NOW + 3_600,
        DirError::TooManySignatures {
            count: MAX_SIGNATURES + 1,
            max: MAX_SIGNATURES,
        },
    );
}

#[test]
fn an_unsorted_relay_list_is_refused() {
    let consensus = newer(&[]);
    let body = consensus.body();
    let mut body_bytes = codec::encode(&(body.period(), body.params()));
    body_bytes.extend_from_slice(&(body.relays().len() as u32).to_be_bytes());
    for relay in body.relays().iter().rev() {
        body_bytes.extend(codec::encode(relay));
    }
    let digest = trine_directory::Digest::of(&body_bytes);
    let signatures: Vec<_> = (0..3)
        .map(|a| AuthoritySignature::new(&digest, &authority(a)))
        .collect();
    let bytes = codec::encode(&(body_bytes, signatures));
    assert_refused(
        &bytes,
        NOW + 3_600,
        DirError::Invalid(FormatError::Unsorted { field: "relays" }),
    );
}

#[test]
fn a_bad_period_in_a_signed_body_is_refused() {
    let consensus = newer(&[]);
    let body = consensus.body();
    let bad = Period {
        fresh_until: body.period().valid_after,
        ..*body.period()
    };
    let mut body_bytes = codec::encode(&(bad, body.params()));
    body_bytes.extend_from_slice(&0u32.to_be_bytes());
    let bytes = codec::encode(&(body_bytes, Vec::<AuthoritySignature>::new()));
    assert!(matches!(
        UnverifiedConsensus::from_bytes(&bytes),
        Err(DirError::Invalid(FormatError::BadPeriod { .. }))
    ));
}

#[test]
fn authorities_merge_signatures_for_the_same_body() {
    let theirs = UnverifiedConsensus::from_bytes(&newer(&[1, 2]).to_bytes()).unwrap();
    let mine = newer(&[0]);
    assert_eq!(theirs.digest(), mine.digest());
    assert_eq!(theirs.valid_after(), VALID_AFTER + 3_600);
    for signature in theirs.signatures() {
        signature.verify(mine.digest()).unwrap();
    }
    let merged = mine.with_signatures(theirs.signatures().iter().copied());
    assert_eq!(merged.signatures().len(), 3);
    let verified = UnverifiedConsensus::from_bytes(&merged.to_bytes())
        .unwrap()
        .verify(
            &AuthoritySet::new(authorities(3, 3).keys().iter().copied(), 3).unwrap(),
            NOW + 3_600,
            None,
        )
        .unwrap();
    assert_eq!(verified.signers().len(), 3);
}

/// A consensus over relays 1 and 2, declared family of each other.
fn family_consensus() -> Consensus {
    let mut one = entry(1, healthy(), 10);
    one.relay.family = vec![id(2)];
    let mut two = entry(2, healthy(), 10);
    two.relay.family = vec![id(1)];
    let votes: Vec<_> = (0..3)
        .map(|a| vote(a, vec![one.clone(), two.clone()]))
        .collect();
    let body = body(&votes);
    let signatures: Vec<_> = (0..2).map(|a| body.sign(&authority(a))).collect();
    Consensus::new(body).with_signatures(signatures)
}

#[test]
fn families_travel_as_positions_and_come_back_as_identities() {
    let consensus = family_consensus();
    let mut client = Client::new();
    client.offer(&consensus.to_bytes(), NOW).unwrap();
    let held = client.held.as_ref().unwrap();
    assert_eq!(held.relay(&id(1)).unwrap().family, vec![id(2)]);
    assert_eq!(held.relay(&id(2)).unwrap().family, vec![id(1)]);
    // 4 bytes per member in the body, not 32.
    let without = signed_consensus(period(), 0, &[]).body_bytes().len();
    let mut plain = entry(1, healthy(), 10).relay;
    plain.family.clear();
    let entry_len = codec::encode(&plain).len();
    assert_eq!(
        consensus.body_bytes().len(),
        without + 2 * entry_len + 2 * 4
    );
}

#[test]
fn a_family_position_naming_the_relay_itself_or_nobody_is_refused() {
    let consensus = family_consensus();
    let body = consensus.body_bytes().to_vec();
    // The first relay's family position sits after its identity, onion
    // key, address list (1 + 7), nickname (1 + len) and family count (1).
    let first = &consensus.body().relays()[0];
    let at = body
        .windows(32)
        .position(|w| w == first.identity.as_bytes())
        .unwrap()
        + 64
        + 8
        + 1
        + first.nickname.len()
        + 1;
    assert_eq!(&body[at..at + 4], &1u32.to_be_bytes());
    for (position, expected) in [(0u32, 0u32), (2, 2), (u32::MAX, u32::MAX)] {
        let mut bad = body.clone();
        bad[at..at + 4].copy_from_slice(&position.to_be_bytes());
        let bytes = codec::encode(&(bad, Vec::<AuthoritySignature>::new()));
        assert!(matches!(
            UnverifiedConsensus::from_bytes(&bytes),
            Err(DirError::Invalid(FormatError::BadFamilyPosition(p))) if p == expected
        ));
    }
}
