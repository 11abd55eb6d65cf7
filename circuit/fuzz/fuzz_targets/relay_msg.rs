//! `RelayMsg::parse` on arbitrary bytes. A message that parses must
//! re-encode (`encode_into`) to bytes that parse to the same value: the
//! input itself, except PADDING, whose filler re-encodes as zeros of the
//! same length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trine_circuit::cell::RelayMsg;

fuzz_target!(|data: &[u8]| {
    let Ok(message) = RelayMsg::parse(data) else {
        return;
    };
    let _ = message.is_control();
    let mut bytes = Vec::new();
    message.encode_into(&mut bytes);
    match message {
        RelayMsg::Padding(_) => assert_eq!(bytes.len(), data.len()),
        _ => assert_eq!(bytes, data, "not the canonical encoding"),
    }
    assert_eq!(RelayMsg::parse(&bytes), Ok(message));
});
