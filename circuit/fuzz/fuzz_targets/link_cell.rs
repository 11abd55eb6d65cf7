//! `LinkCell::parse` on arbitrary bytes. A CREATE, CREATED or DESTROY that
//! parses must re-encode to a cell that parses to the same value and, since
//! the codec promises one encoding per value, to the input bytes themselves
//! (except a DESTROY whose reason did not decode, which re-encodes without
//! one). A RELAY header re-encodes to the input's first nine bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trine_circuit::cell::{LinkCell, RELAY_HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    let Ok(cell) = LinkCell::parse(data) else {
        return;
    };
    let bytes = cell.to_bytes();
    match cell {
        LinkCell::Relay { .. } => assert_eq!(bytes, data[..RELAY_HEADER_LEN]),
        LinkCell::Destroy(None) => assert_eq!(bytes, [data[0]]),
        _ => assert_eq!(bytes, data, "not the canonical encoding"),
    }
    assert_eq!(LinkCell::parse(&bytes), Ok(cell));
});
