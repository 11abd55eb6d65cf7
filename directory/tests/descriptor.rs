//! Relay descriptors: signing, the canonical encoding, and every reason an
//! authority refuses one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod dirtest;

use dirtest::*;
use trine_circuit::OnionKeyCert;
use trine_circuit::keys::KeyError;
use trine_directory::descriptor::MAX_DESCRIPTOR_LEN;
use trine_directory::{
    CLOCK_SKEW_SECS, DescriptorError, DescriptorRules, ExitSummary, FormatError, PortRange,
    UnverifiedDescriptor,
};

const NOW: u64 = VALID_AFTER;

fn rules() -> DescriptorRules {
    DescriptorRules::default()
}

fn check(bytes: &[u8], now: u64) -> Result<trine_directory::SignedDescriptor, DescriptorError> {
    UnverifiedDescriptor::from_bytes(bytes)?.verify(now, &rules())
}

#[test]
fn a_signed_descriptor_verifies_and_re_encodes_to_the_same_bytes() {
    let mut fields = descriptor_fields(1);
    fields.addresses.push("[2001:db8::1]:443".parse().unwrap());
    fields.family = vec![id(3), id(2)];
    fields.exit = ExitSummary::new(
        true,
        vec![PortRange::single(25), PortRange::new(6_881, 6_999).unwrap()],
    );
    let signed = fields.sign(&relay_key(1)).unwrap();
    let bytes = signed.to_bytes();
    let verified = check(&bytes, NOW).unwrap();
    assert_eq!(verified, signed);
    assert_eq!(verified.to_bytes(), bytes);
    assert_eq!(verified.digest(), signed.digest());
    assert!(bytes.len() < MAX_DESCRIPTOR_LEN);
}

#[test]
fn signing_sorts_and_deduplicates_the_collections() {
    let mut fields = descriptor_fields(1);
    fields.family = vec![id(3), id(2), id(3)];
    fields.addresses = vec!["[2001:db8::1]:443".parse().unwrap(), ip_of(1), ip_of(1)];
    let signed = fields.sign(&relay_key(1)).unwrap();
    let mut family = vec![id(2), id(3)];
    family.sort();
    assert_eq!(signed.descriptor().family, family);
    assert_eq!(signed.descriptor().addresses[0], ip_of(1));
    assert_eq!(signed.descriptor().addresses.len(), 2);
}

#[test]
fn signing_with_another_key_is_refused() {
    let error = descriptor_fields(1).sign(&relay_key(2)).unwrap_err();
    assert_eq!(
        error,
        DescriptorError::WrongKey {
            identity: id(1),
            signer: id(2)
        }
    );
}

#[test]
fn a_signature_by_a_different_key_is_refused() {
    // Relay 2's fields carrying relay 1's signature: the descriptor names
    // relay 2, but relay 2 never signed it.
    let ones = descriptor(1).to_bytes();
    let twos = descriptor(2).to_bytes();
    let mut spliced = twos[..twos.len() - 64].to_vec();
    spliced.extend_from_slice(&ones[ones.len() - 64..]);
    assert_eq!(
        check(&spliced, NOW),
        Err(DescriptorError::BadSignature(id(2)))
    );
}

#[test]
fn a_tampered_field_breaks_the_signature() {
    let mut bytes = descriptor(1).to_bytes();
    let published_at = bytes.len() - 64 - 8;
    bytes[published_at + 7] ^= 1;
    assert_eq!(
        check(&bytes, NOW),
        Err(DescriptorError::BadSignature(id(1)))
    );
}

#[test]
fn an_expired_onion_cert_is_refused() {
    let mut fields = descriptor_fields(1);
    fields.onion_cert = OnionKeyCert::issue(&relay_key(1), fields.onion_key, NOW);
    let bytes = fields.sign(&relay_key(1)).unwrap().to_bytes();
    assert_eq!(
        check(&bytes, NOW),
        Err(DescriptorError::OnionCert(KeyError::Expired {
            expired_at: NOW,
            now: NOW
        }))
    );
    assert!(check(&bytes, NOW - 1).is_ok());
}

#[test]
fn an_onion_cert_for_another_identity_or_key_is_refused() {
    let mut fields = descriptor_fields(1);
    fields.onion_cert = OnionKeyCert::issue(&relay_key(2), fields.onion_key, CERT_EXPIRES);
    assert_eq!(
        fields.sign(&relay_key(1)),
        Err(DescriptorError::Invalid(FormatError::OnionCertMismatch))
    );
    let mut fields = descriptor_fields(1);
    fields.onion_key = onion(9).public_key();
    assert_eq!(
        fields.sign(&relay_key(1)),
        Err(DescriptorError::Invalid(FormatError::OnionCertMismatch))
    );
}

#[test]
fn a_descriptor_published_in_the_future_is_refused() {
    let published = descriptor(1).descriptor().published;
    let bytes = descriptor(1).to_bytes();
    let now = published - CLOCK_SKEW_SECS - 1;
    assert_eq!(
        check(&bytes, now),
        Err(DescriptorError::PublishedInFuture { published, now })
    );
    assert!(check(&bytes, published - CLOCK_SKEW_SECS).is_ok());
}

#[test]
fn a_descriptor_older_than_the_maximum_age_is_refused() {
    let published = descriptor(1).descriptor().published;
    let bytes = descriptor(1).to_bytes();
    let now = published + rules().max_age_secs + 1;
    assert_eq!(
        check(&bytes, now),
        Err(DescriptorError::TooOld { published, now })
    );
    assert!(check(&bytes, published + rules().max_age_secs).is_ok());
}

#[test]
fn an_unsorted_family_on_the_wire_is_refused() {
    let mut fields = descriptor_fields(1);
    fields.family = vec![id(2), id(3)];
    let signed = fields.sign(&relay_key(1)).unwrap();
    let (first, second) = (signed.descriptor().family[0], signed.descriptor().family[1]);
    let mut bytes = signed.to_bytes();
    let at = bytes
        .windows(32)
        .position(|window| window == first.as_bytes())
        .unwrap();
    assert_eq!(&bytes[at + 32..at + 64], second.as_bytes());
    bytes[at..at + 32].copy_from_slice(second.as_bytes());
    bytes[at + 32..at + 64].copy_from_slice(first.as_bytes());
    assert_eq!(
        UnverifiedDescriptor::from_bytes(&bytes).unwrap_err(),
        DescriptorError::Invalid(FormatError::Unsorted { field: "family" })
    );
}

#[test]
fn bad_fields_are_refused_when_signing() {
    type Mutation = fn(&mut trine_directory::Descriptor);
    let cases: Vec<(Mutation, FormatError)> = vec![
        (|d| d.nickname = "bad name".into(), FormatError::BadNickname),
        (|d| d.version = "\u{7f}".into(), FormatError::BadVersion),
        (
            |d| d.addresses.clear(),
            FormatError::Empty { field: "addresses" },
        ),
        (
            |d| d.family = vec![d.identity],
            FormatError::SelfInFamily(id(1)),
        ),
        (
            |d| d.addresses = (1..=5).map(ip_of).collect(),
            FormatError::TooMany {
                field: "addresses",
                len: 5,
                max: 4,
            },
        ),
    ];
    for (mutate, expected) in cases {
        let mut fields = descriptor_fields(1);
        mutate(&mut fields);
        assert_eq!(
            fields.sign(&relay_key(1)),
            Err(DescriptorError::Invalid(expected))
        );
    }
}

#[test]
fn oversized_truncated_and_padded_bytes_are_refused() {
    let bytes = descriptor(1).to_bytes();
    assert!(matches!(
        UnverifiedDescriptor::from_bytes(&vec![0; MAX_DESCRIPTOR_LEN + 1]),
        Err(DescriptorError::TooLarge { .. })
    ));
    for cut in [0, 1, 31, bytes.len() / 2, bytes.len() - 1] {
        assert!(matches!(
            UnverifiedDescriptor::from_bytes(&bytes[..cut]),
            Err(DescriptorError::Malformed(_))
        ));
    }
    let mut padded = bytes;
    padded.push(0);
    assert!(matches!(
        UnverifiedDescriptor::from_bytes(&padded),
        Err(DescriptorError::Malformed(_))
    ));
}
