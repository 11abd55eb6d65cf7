//! `UnverifiedConsensus::from_bytes` on arbitrary bytes (or on the fixed
//! held consensus with input edits, see `common/mod.rs`), then `verify`
//! against a fixed set of three authorities (threshold 2), with and
//! without a held consensus, at several times: nothing may panic, and a
//! decoded consensus must re-encode to the input.
//!
//! The fuzzer cannot forge signatures, so a body that decodes is also
//! re-signed by two of the fixed authorities, which must take it past the
//! signature check: verified at its own `valid_after` with nothing held it
//! must be accepted, and against the held consensus it must be accepted,
//! refused as `Rollback` or refused as `Equivocation` exactly as the
//! periods and digests say.
#![no_main]

mod common;

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use trine_circuit::{IdentityKey, codec};
use trine_directory::{
    AuthoritySet, AuthoritySignature, ComputeParams, Consensus, DirError, UnverifiedConsensus,
    VerifiedConsensus, compute,
};

struct Fixed {
    keys: Vec<IdentityKey>,
    authorities: AuthoritySet,
    bytes: Vec<u8>,
    held: VerifiedConsensus,
}

const HELD_VALID_AFTER: u64 = common::VALID_AFTER;

static FIXED: LazyLock<Fixed> = LazyLock::new(|| {
    let keys: Vec<IdentityKey> = (1..=3u8).map(common::authority).collect();
    let Ok(authorities) = AuthoritySet::new(keys.iter().map(IdentityKey::relay_id), 2) else {
        panic!("fixed authority set refused");
    };
    let votes: Vec<_> = keys.iter().map(|key| common::vote().sign(key)).collect();
    let params = ComputeParams {
        valid_after: HELD_VALID_AFTER,
        min_votes: 1,
    };
    let Ok(body) = compute(&votes, &params) else {
        panic!("fixed consensus refused");
    };
    let signatures = keys.iter().map(|key| body.sign(key)).collect::<Vec<_>>();
    let bytes = Consensus::new(body).with_signatures(signatures).to_bytes();
    let held = UnverifiedConsensus::from_bytes(&bytes)
        .and_then(|c| c.verify(&authorities, HELD_VALID_AFTER, None));
    let Ok(held) = held else {
        panic!("fixed consensus does not verify: {held:?}");
    };
    Fixed {
        keys,
        authorities,
        bytes,
        held,
    }
});

fuzz_target!(|data: &[u8]| {
    let fixed = &*FIXED;
    let doc = common::document(data, &fixed.bytes);
    let data: &[u8] = &doc;
    let Ok(consensus) = UnverifiedConsensus::from_bytes(data) else {
        return;
    };
    assert_eq!(consensus.to_bytes(), data, "not the canonical encoding");
    if data == fixed.bytes.as_slice() {
        let again = consensus.clone().verify(&fixed.authorities, HELD_VALID_AFTER, None);
        assert!(again.is_ok_and(|c| c.relay(&common::relay_entry(2).identity).is_some()));
    }
    let valid_after = consensus.valid_after();
    for now in [0, HELD_VALID_AFTER, valid_after, u64::MAX] {
        for held in [None, Some(&fixed.held)] {
            if let Ok(verified) = consensus.clone().verify(&fixed.authorities, now, held) {
                assert_eq!(verified.to_bytes(), data);
            }
        }
    }

    // Re-sign the body with two real authorities.
    let Ok((body, _)) = codec::decode::<(Vec<u8>, Vec<AuthoritySignature>)>(
        data,
        codec::MAX_DOCUMENT_LEN,
    ) else {
        panic!("from_bytes accepted what the envelope decoder refuses");
    };
    let signatures: Vec<AuthoritySignature> = fixed.keys[..2]
        .iter()
        .map(|key| AuthoritySignature::new(consensus.digest(), key))
        .collect();
    let resigned = codec::encode(&(body, signatures));
    let Ok(resigned) = UnverifiedConsensus::from_bytes(&resigned) else {
        panic!("re-signed consensus no longer decodes");
    };
    let digest = *resigned.digest();
    let alone = resigned.clone().verify(&fixed.authorities, valid_after, None);
    assert!(alone.is_ok(), "re-signed consensus refused: {alone:?}");
    let held_after = fixed.held.period().valid_after;
    let against_held = resigned.verify(&fixed.authorities, valid_after, Some(&fixed.held));
    match against_held {
        Err(DirError::Rollback { .. }) => assert!(valid_after < held_after),
        Err(DirError::Equivocation { .. }) => {
            assert!(valid_after == held_after && digest != *fixed.held.digest());
        }
        Ok(_) => assert!(
            valid_after > held_after
                || (valid_after == held_after && digest == *fixed.held.digest())
        ),
        Err(other) => panic!("unexpected refusal against the held consensus: {other:?}"),
    }
});
