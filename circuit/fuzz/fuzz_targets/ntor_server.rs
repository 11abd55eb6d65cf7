//! Both halves of ntor on hostile input, with fixed keys.
//!
//! First byte, bit 0 clear: `server_handshake` for a fixed relay (current and
//! previous onion key) on a client message made of the rest of the input,
//! optionally after the relay's real id (bit 1) and onion key (bit 2), so
//! the Diffie-Hellman and key derivation paths are reached. Bit 0 set:
//! `NtorClient::finish` on a reply made of the rest of the input, XORed
//! onto the relay's genuine reply when bit 1 is set. Any reply but the
//! genuine one must be refused (AUTH binds Y), and the genuine one must be
//! accepted and give both sides the same keys.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use trine_circuit::keys::{IdentityKey, OnionSecretKey, RelayId};
use trine_circuit::ntor::{self, NtorClient, NtorProtocol};

struct Relay {
    id: RelayId,
    onion: OnionSecretKey,
    previous: OnionSecretKey,
}

static RELAY: LazyLock<Relay> = LazyLock::new(|| Relay {
    id: IdentityKey::from_secret_bytes(&[1; 32]).relay_id(),
    onion: OnionSecretKey::from_secret_bytes([2; 32]),
    previous: OnionSecretKey::from_secret_bytes([3; 32]),
});

fn server(message: &[u8]) -> Result<([u8; 64], ntor::KeyGenerator), ntor::HandshakeError> {
    ntor::server_handshake(
        NtorProtocol::TRINE,
        RELAY.id.as_bytes(),
        &[&RELAY.onion, &RELAY.previous],
        OnionSecretKey::from_secret_bytes([4; 32]),
        message,
    )
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        let mut message = Vec::with_capacity(96);
        if mode & 2 != 0 {
            message.extend_from_slice(RELAY.id.as_bytes());
        }
        if mode & 4 != 0 {
            message.extend_from_slice(RELAY.onion.public_key().as_bytes());
        }
        message.extend_from_slice(rest);
        let _ = server(&message);
        return;
    }
    let (client, message) = NtorClient::start(
        NtorProtocol::TRINE,
        RELAY.id.as_bytes(),
        RELAY.onion.public_key(),
        OnionSecretKey::from_secret_bytes([5; 32]),
    );
    let mut reply = rest.to_vec();
    let mut genuine = None;
    if mode & 2 != 0 {
        let Ok((real, keys)) = server(&message) else {
            panic!("the relay refused a genuine client message");
        };
        reply.resize(reply.len().max(real.len()), 0);
        for (byte, real) in reply.iter_mut().zip(real) {
            *byte ^= real;
        }
        genuine = Some((real, keys));
    }
    let result = client.finish(&reply);
    match (result, genuine) {
        (Ok(client_keys), Some((real, server_keys))) => {
            assert_eq!(reply, real, "a reply other than the relay's was accepted");
            let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
            let _ = client_keys.expand(b"fuzz", &mut a);
            let _ = server_keys.expand(b"fuzz", &mut b);
            assert_eq!(a, b, "client and relay derived different keys");
        }
        (Ok(_), None) => {
            let real = server(&message).map(|(real, _)| real);
            assert_eq!(
                Ok(reply.as_slice()),
                real.as_ref().map(|r| r.as_slice()),
                "a forged reply was accepted"
            );
        }
        (Err(error), Some((real, _))) => {
            assert_ne!(reply, real, "the genuine reply was refused: {error}");
        }
        (Err(_), None) => {}
    }
});
