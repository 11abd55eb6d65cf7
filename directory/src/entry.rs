//! [`RelayEntry`]: one relay as a vote or the consensus lists it, and its
//! compact encoding. This is the per-relay record clients and path
//! selection read, so its layout decides the size of the consensus.

use std::net::SocketAddr;

use bincode::de::Decoder;
use bincode::enc::Encoder;
use bincode::error::{DecodeError, EncodeError};
use bincode::{Decode, Encode};
use trine_circuit::{OnionPublicKey, RelayId};

use crate::compact;
use crate::descriptor::Descriptor;
use crate::flags::{Flag, Flags};
use crate::policy::ExitSummary;
use crate::rules::{self, FormatError};

/// One relay in a vote or in the consensus.
///
/// # Layout, and why there is no onion-key certificate
///
/// Encoded in field order: identity (32 bytes), onion key (32), addresses
/// (1-byte count, then 7 bytes per IPv4 and 19 per IPv6 address), nickname
/// (1-byte length + bytes), family (1-byte count + 32 bytes each in votes;
/// 4-byte positions in the consensus' relay list inside a consensus body),
/// exit summary (1 byte, + 4 per refused port range), flags (1), weight
/// (8). A typical relay (one IPv4 address, 10-letter nickname, no family,
/// not an exit) takes 94 bytes, so 10,000 such relays take 0.94 MB.
///
/// The onion-key certificate is deliberately left out: authorities check it
/// (with the descriptor's signature) before voting, and the consensus
/// signatures vouch for the identity-to-onion-key binding, as they vouch for
/// everything else in the entry. Carrying it would add 72 bytes per relay
/// (expiry and signature; identity and key are already here), about +70% or
/// 0.7 MB at 10,000 relays, and a client would have to run 10,000 Ed25519
/// verifications (hundreds of milliseconds) to make any use of it. In its
/// place, [`crate::compute`] lists a relay only if its certificate is valid
/// until the consensus' `valid_until`, so every listed onion key is usable
/// for the consensus' whole life.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RelayEntry {
    /// The relay's identity.
    pub identity: RelayId,
    /// Its onion key, certified by the identity.
    pub onion_key: OnionPublicKey,
    /// Its addresses (as in the descriptor).
    pub addresses: Vec<SocketAddr>,
    /// Its nickname.
    pub nickname: String,
    /// Its declared family. In the consensus: only members the consensus
    /// lists too.
    pub family: Vec<RelayId>,
    /// Its exit-policy summary.
    pub exit: ExitSummary,
    /// Flags: an authority's own in a vote, the majority's in the consensus.
    pub flags: Flags,
    /// Bandwidth, bytes per second: the authority's measurement in a vote,
    /// the median of the votes' in the consensus (the path-selection
    /// weight).
    pub weight: u64,
}

impl RelayEntry {
    /// The entry for a descriptor, with `flags` and `weight`.
    pub fn from_descriptor(descriptor: &Descriptor, flags: Flags, weight: u64) -> Self {
        Self {
            identity: descriptor.identity,
            onion_key: descriptor.onion_key,
            addresses: descriptor.addresses.clone(),
            nickname: descriptor.nickname.clone(),
            family: descriptor.family.clone(),
            exit: descriptor.exit.clone(),
            flags,
            weight,
        }
    }

    /// Whether the entry carries `flag`.
    pub fn has(&self, flag: Flag) -> bool {
        self.flags.has(flag)
    }

    /// Checks the field rules (the same as for descriptors).
    pub fn validate(&self) -> Result<(), FormatError> {
        rules::check_addresses(&self.addresses)?;
        rules::check_nickname(&self.nickname)?;
        rules::check_family(&self.identity, &self.family)?;
        self.exit.validate()
    }
}

impl RelayEntry {
    /// Writes the entry with `family` standing in for the family field:
    /// identities in votes, positions in the consensus' relay list.
    pub(crate) fn encode_with_family<T: Encode, E: Encoder>(
        &self,
        family: &[T],
        encoder: &mut E,
    ) -> Result<(), EncodeError> {
        self.identity.encode(encoder)?;
        self.onion_key.encode(encoder)?;
        compact::encode_addrs(&self.addresses, encoder)?;
        compact::encode_text(&self.nickname, encoder)?;
        compact::encode_short_list(family, encoder)?;
        self.exit.encode(encoder)?;
        self.flags.encode(encoder)?;
        self.weight.encode(encoder)
    }

    /// Reads an entry written by [`RelayEntry::encode_with_family`]; the
    /// family field comes back separately, the entry's own is empty.
    pub(crate) fn decode_with_family<C, T: Decode<C>, D: Decoder<Context = C>>(
        decoder: &mut D,
    ) -> Result<(Self, Vec<T>), DecodeError> {
        let identity = Decode::decode(decoder)?;
        let onion_key = Decode::decode(decoder)?;
        let addresses = compact::decode_addrs(decoder)?;
        let nickname = compact::decode_text(decoder)?;
        let family = compact::decode_short_list(decoder)?;
        let entry = Self {
            identity,
            onion_key,
            addresses,
            nickname,
            family: Vec::new(),
            exit: Decode::decode(decoder)?,
            flags: Decode::decode(decoder)?,
            weight: Decode::decode(decoder)?,
        };
        Ok((entry, family))
    }
}

impl Encode for RelayEntry {
    fn encode<E: Encoder>(&self, encoder: &mut E) -> Result<(), EncodeError> {
        self.encode_with_family(&self.family, encoder)
    }
}

impl<C> Decode<C> for RelayEntry {
    fn decode<D: Decoder<Context = C>>(decoder: &mut D) -> Result<Self, DecodeError> {
        let (mut entry, family) = Self::decode_with_family(decoder)?;
        entry.family = family;
        Ok(entry)
    }
}
bincode::impl_borrow_decode!(RelayEntry);

impl From<&RelayEntry> for crate::path::Candidate {
    /// The consensus entry as path selection sees it.
    fn from(entry: &RelayEntry) -> Self {
        Self {
            id: entry.identity,
            addresses: entry.addresses.clone(),
            family: entry.family.clone(),
            flags: entry.flags,
            weight: entry.weight,
            exit_allows_general: entry.exit.allows_general,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use trine_circuit::codec;

    #[test]
    fn a_typical_entry_takes_94_bytes_and_round_trips() {
        let entry = RelayEntry {
            identity: RelayId::from_bytes([1; 32]),
            onion_key: OnionPublicKey::from_bytes([2; 32]),
            addresses: vec!["198.18.0.1:443".parse().unwrap()],
            nickname: "relay00001".into(),
            family: Vec::new(),
            exit: ExitSummary::REJECT_ALL,
            flags: Flags::NONE.with(Flag::Running),
            weight: 1_000_000,
        };
        let bytes = codec::encode(&entry);
        assert_eq!(bytes.len(), 94);
        assert_eq!(codec::decode::<RelayEntry>(&bytes, 200).unwrap(), entry);
    }
}
