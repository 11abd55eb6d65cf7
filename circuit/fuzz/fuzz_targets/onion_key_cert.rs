//! `OnionKeyCert::from_bytes` on arbitrary bytes, then `verify` (at time 0
//! and at the end of time) must not panic, and a decoded certificate must
//! re-encode to the input (one encoding per value).
#![no_main]

use libfuzzer_sys::fuzz_target;
use trine_circuit::keys::OnionKeyCert;

fuzz_target!(|data: &[u8]| {
    let Ok(cert) = OnionKeyCert::from_bytes(data) else {
        return;
    };
    assert_eq!(cert.to_bytes(), data, "not the canonical encoding");
    let _ = cert.verify(0);
    let _ = cert.verify(u64::MAX);
});
