//! `UnverifiedDescriptor::from_bytes` on arbitrary bytes, or on a valid
//! descriptor with input edits (see `common/mod.rs`), must not panic; a
//! decoded descriptor must re-encode to the document (one encoding per
//! value); `verify` at the start of time, shortly after the fixed
//! descriptor's publication and at the end of time must not panic, and the
//! unedited descriptor must verify.
#![no_main]

mod common;

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use trine_directory::{DescriptorRules, UnverifiedDescriptor};

static VALID: LazyLock<Vec<u8>> = LazyLock::new(|| common::descriptor(1).to_bytes());

fuzz_target!(|data: &[u8]| {
    let doc = common::document(data, &VALID);
    let Ok(descriptor) = UnverifiedDescriptor::from_bytes(&doc) else {
        return;
    };
    assert_eq!(descriptor.to_bytes(), *doc, "not the canonical encoding");
    let rules = DescriptorRules::default();
    for now in [0, common::VALID_AFTER, u64::MAX] {
        let verified = descriptor.clone().verify(now, &rules);
        if let Ok(verified) = &verified {
            assert_eq!(verified.to_bytes(), *doc);
        }
        if *doc == **VALID && now == common::VALID_AFTER {
            assert!(verified.is_ok(), "the fixed descriptor was refused: {verified:?}");
        }
    }
});
