//! Shared by the document targets: fixed keys and valid documents, and the
//! input convention that lets the fuzzer start from a valid document
//! instead of discovering the whole format from nothing.
//!
//! Input: if the first byte is even, the document is the rest of the
//! input. If it is odd, the document is a valid fixed one edited by the
//! rest: records of `offset: u16 (big-endian) | mask: u8`, each XORing
//! `mask` into the byte at `offset % len`, or truncating there when `mask`
//! is 0.
#![allow(dead_code)]

use std::borrow::Cow;
use std::net::SocketAddr;

use trine_circuit::{IdentityKey, OnionKeyCert, OnionSecretKey};
use trine_directory::{
    Bandwidth, Descriptor, ExitSummary, Flag, Flags, NetParams, Period, PortRange, RelayEntry,
    SignedDescriptor, Vote, VoteEntry,
};

/// `valid_after` of the fixed documents' period.
pub const VALID_AFTER: u64 = 1_700_000_000;

/// The fixed documents' period.
pub fn period() -> Period {
    Period {
        valid_after: VALID_AFTER,
        fresh_until: VALID_AFTER + 3_600,
        valid_until: VALID_AFTER + 10_800,
    }
}

/// Authority key `n` (1 to 3 are the fixed authority set).
pub fn authority(n: u8) -> IdentityKey {
    IdentityKey::from_secret_bytes(&[n; 32])
}

/// Relay `n`'s signed descriptor: two addresses, a family, an exit summary.
pub fn descriptor(n: u8) -> SignedDescriptor {
    let identity = IdentityKey::from_secret_bytes(&[0x40 + n; 32]);
    let onion_key = OnionSecretKey::from_secret_bytes([0x60 + n; 32]).public_key();
    let family = (1..=2)
        .map(|k| IdentityKey::from_secret_bytes(&[0x40 + n + k; 32]).relay_id())
        .collect();
    let addresses: Vec<SocketAddr> = vec![
        SocketAddr::from(([198, 18, 0, n], 443)),
        SocketAddr::from(([0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(n)], 443)),
    ];
    let fields = Descriptor {
        identity: identity.relay_id(),
        onion_key,
        onion_cert: OnionKeyCert::issue(&identity, onion_key, VALID_AFTER + 7 * 86_400),
        addresses,
        nickname: format!("fuzz{n}"),
        family,
        bandwidth: Bandwidth {
            rate: 1_000_000,
            burst: 2_000_000,
            observed: 500_000,
        },
        exit: ExitSummary::new(true, vec![PortRange::single(25)]),
        version: "trine 0.1.0".into(),
        published: VALID_AFTER - 600,
    };
    let Ok(signed) = fields.sign(&identity) else {
        panic!("fixed descriptor refused");
    };
    signed
}

/// A vote entry for relay `n`.
pub fn entry(n: u8) -> VoteEntry {
    let descriptor = descriptor(n);
    let flags: Flags = [Flag::Running, Flag::Valid, Flag::Fast].into_iter().collect();
    VoteEntry::new(&descriptor, flags, 1_000 * u64::from(n))
}

/// An unsigned vote on relays 1 to 3.
pub fn vote() -> Vote {
    let Ok(vote) = Vote::new(period(), NetParams::default(), (1..=3).map(entry).collect()) else {
        panic!("fixed vote refused");
    };
    vote
}

/// The consensus entry for relay `n` (used to check lookups).
pub fn relay_entry(n: u8) -> RelayEntry {
    entry(n).relay
}

/// The document an input stands for (see the module documentation).
pub fn document<'a>(data: &'a [u8], valid: &[u8]) -> Cow<'a, [u8]> {
    let Some((&mode, rest)) = data.split_first() else {
        return Cow::Borrowed(data);
    };
    if mode % 2 == 0 || valid.is_empty() {
        return Cow::Borrowed(rest);
    }
    let mut doc = valid.to_vec();
    for record in rest.chunks_exact(3) {
        if doc.is_empty() {
            break;
        }
        let at = usize::from(u16::from_be_bytes([record[0], record[1]])) % doc.len();
        match record[2] {
            0 => doc.truncate(at),
            mask => doc[at] ^= mask,
        }
    }
    Cow::Owned(doc)
}
