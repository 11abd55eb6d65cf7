//! Trine's ntor implementation, run with Tor's protocol id, must reproduce
//! Tor's published vectors byte for byte (`shared/testdata/`, outside this
//! repository, beside it: `../shared/testdata`; set TRINE_TESTDATA to point
//! elsewhere). A missing vector file fails the test: it never skips.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use trine_circuit::keys::{OnionPublicKey, OnionSecretKey};
use trine_circuit::ntor::{KeyGenerator, NtorClient, NtorProtocol, server_handshake};

fn testdata(name: &str) -> String {
    let candidates: Vec<PathBuf> = match std::env::var_os("TRINE_TESTDATA") {
        Some(dir) => vec![PathBuf::from(dir)],
        None => vec![
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata"),
            PathBuf::from("/work/shared/testdata"),
        ],
    };
    for dir in &candidates {
        if let Ok(text) = std::fs::read_to_string(dir.join(name)) {
            return text;
        }
    }
    panic!("{name} not found in {candidates:?}; set TRINE_TESTDATA to its directory");
}

fn unhex(text: &str) -> Vec<u8> {
    assert!(text.len() % 2 == 0, "odd hex length");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn key32(bytes: &[u8]) -> [u8; 32] {
    bytes.try_into().unwrap()
}

#[test]
fn ntor_with_tor_protocol_id_reproduces_tor_vector() {
    let vector: BTreeMap<String, Vec<u8>> = testdata("ntor-v1-tor.txt")
        .lines()
        .filter(|line| !line.starts_with('#') && line.contains('='))
        .map(|line| {
            let (name, value) = line.split_once('=').unwrap();
            (name.trim().to_string(), unhex(value.trim()))
        })
        .collect();
    let get = |name: &str| {
        vector
            .get(name)
            .unwrap_or_else(|| panic!("vector lacks {name}"))
            .clone()
    };
    let protocol_id = get("protoid");
    let protocol = NtorProtocol::with_id(&protocol_id);
    let relay_onion = OnionSecretKey::from_secret_bytes(key32(&get("b")));
    assert_eq!(relay_onion.public_key().as_bytes().as_slice(), get("B"));
    let x = OnionSecretKey::from_secret_bytes(key32(&get("x")));
    assert_eq!(x.public_key().as_bytes().as_slice(), get("X"));
    let y = OnionSecretKey::from_secret_bytes(key32(&get("y")));
    assert_eq!(y.public_key().as_bytes().as_slice(), get("Y"));
    let node_id = get("id");

    let (client, client_message) = NtorClient::start(
        protocol,
        &node_id,
        OnionPublicKey::from_bytes(key32(&get("B"))),
        x,
    );
    assert_eq!(client_message, get("client_message"));

    let (server_message, server_keys) =
        server_handshake(protocol, &node_id, &[&relay_onion], y, &client_message).unwrap();
    assert_eq!(server_message.as_slice(), get("server_message"));

    let client_keys = client.finish(&server_message).unwrap();
    let expected = get("key_material_72");
    for keys in [client_keys, server_keys] {
        let mut material = [0u8; 72];
        keys.expand(b"", &mut material).unwrap();
        assert_eq!(material.as_slice(), expected);
    }
}

#[test]
fn ntor_kdf_reproduces_tor_hkdf_vectors() {
    let protocol = NtorProtocol::with_id(b"ntor-curve25519-sha256-1");
    let mut checked = 0;
    for line in testdata("ntor-kdf-tor.txt")
        .lines()
        .filter(|l| !l.starts_with('#'))
    {
        let Some((ikm, okm)) = line.split_once('|') else {
            continue;
        };
        let expected = unhex(okm.trim());
        let mut out = vec![0u8; expected.len()];
        KeyGenerator::extract(&protocol, ikm.as_bytes())
            .expand(b"", &mut out)
            .unwrap();
        assert_eq!(out, expected, "HKDF vector for {ikm:?}");
        checked += 1;
    }
    assert_eq!(checked, 2, "expected both of Tor's KDF vectors");
}
