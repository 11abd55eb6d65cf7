//! `UnverifiedVote::from_bytes` on arbitrary bytes, or on a valid vote by a
//! fixed authority with input edits (see `common/mod.rs`), must not panic;
//! a decoded vote must re-encode to the document, and `verify` against the
//! fixed set of three authorities must not panic (and accept the unedited
//! vote).
#![no_main]

mod common;

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use trine_directory::{AuthoritySet, UnverifiedVote};

static AUTHORITIES: LazyLock<AuthoritySet> = LazyLock::new(|| {
    let keys = (1..=3u8).map(|n| common::authority(n).relay_id());
    let Ok(set) = AuthoritySet::new(keys, 2) else {
        panic!("fixed authority set refused");
    };
    set
});

static VALID: LazyLock<Vec<u8>> =
    LazyLock::new(|| common::vote().sign(&common::authority(1)).to_bytes());

fuzz_target!(|data: &[u8]| {
    let doc = common::document(data, &VALID);
    let Ok(vote) = UnverifiedVote::from_bytes(&doc) else {
        return;
    };
    assert_eq!(vote.to_bytes(), *doc, "not the canonical encoding");
    let verified = vote.verify(&AUTHORITIES);
    if let Ok(verified) = &verified {
        assert_eq!(verified.to_bytes(), *doc);
    }
    if *doc == **VALID {
        assert!(verified.is_ok(), "the fixed vote was refused: {verified:?}");
    }
});
