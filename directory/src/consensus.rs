//! The consensus as authorities build it: [`ConsensusBody`] (what is
//! signed), [`AuthoritySignature`], and [`Consensus`] (body plus the
//! signatures collected so far). The algorithm that makes a body from votes
//! is [`crate::compute`]; how clients check a consensus is
//! [`crate::verify`].
//!
//! Wire form of a consensus, an envelope in the canonical encoding:
//!
//! ```text
//! body_len: u64 | body: body_len bytes | sig_count: u64 | sig_count × (authority: 32 | signature: 64)
//! ```
//!
//! `body` is the canonical encoding of the body: [`Period`], [`NetParams`],
//! relays (4-byte count, then [`RelayEntry`]s ascending by identity). In
//! the body, a relay's family members (always relays the consensus lists)
//! are written as their positions in the relay list, 4 bytes each, not as
//! 32-byte identities; the decoder turns them back into identities. Each
//! signature is Ed25519 by an authority over `"trine consensus v1\0" ||
//! SHA-256(body)`. The body travels as opaque bytes so that a verifier
//! hashes exactly the bytes that were signed, and signatures can be added
//! without touching it.

use bincode::de::Decoder;
use bincode::enc::Encoder;
use bincode::error::{DecodeError, EncodeError};
use bincode::{Decode, Encode};
use trine_circuit::codec;
use trine_circuit::keys::{KeyError, SIGNATURE_LEN};
use trine_circuit::{IdentityKey, RelayId};

use crate::compact::LongList;
use crate::digest::{self, CONSENSUS_CONTEXT, Digest};
use crate::entry::RelayEntry;
use crate::params::{NetParams, Period};
use crate::rules::{self, FormatError};

/// What the authorities sign: period, parameters and relays. Made by
/// [`crate::compute`]; every value obeys the format rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsensusBody {
    period: Period,
    params: NetParams,
    relays: Vec<RelayEntry>,
}

impl ConsensusBody {
    /// A body from parts that [`crate::compute`] produced (already valid).
    pub(crate) fn from_parts(period: Period, params: NetParams, relays: Vec<RelayEntry>) -> Self {
        Self {
            period,
            params,
            relays,
        }
    }

    /// Decodes and checks a body from untrusted bytes.
    pub(crate) fn decode(bytes: &[u8], limit: usize) -> Result<Self, BodyError> {
        let (period, params, LongList(wire)): (Period, NetParams, LongList<WireRelay>) =
            codec::decode(bytes, limit).map_err(BodyError::Malformed)?;
        let relays = resolve_families(wire).map_err(BodyError::Invalid)?;
        let body = Self {
            period,
            params,
            relays,
        };
        body.validate().map_err(BodyError::Invalid)?;
        Ok(body)
    }

    fn validate(&self) -> Result<(), FormatError> {
        self.period.validate()?;
        self.params.validate()?;
        let ascending = self
            .relays
            .windows(2)
            .all(|pair| pair[0].identity < pair[1].identity);
        if !ascending {
            return Err(FormatError::Unsorted { field: "relays" });
        }
        self.relays.iter().try_for_each(RelayEntry::validate)
    }

    /// When the consensus applies.
    pub fn period(&self) -> &Period {
        &self.period
    }

    /// The network parameters.
    pub fn params(&self) -> &NetParams {
        &self.params
    }

    /// The relays, ascending by identity.
    pub fn relays(&self) -> &[RelayEntry] {
        &self.relays
    }

    /// The canonical encoding (the bytes authorities sign the digest of).
    pub fn to_bytes(&self) -> Vec<u8> {
        codec::encode(&(&self.period, &self.params, BodyRelays(&self.relays)))
    }

    /// SHA-256 of [`ConsensusBody::to_bytes`].
    pub fn digest(&self) -> Digest {
        Digest::of(&self.to_bytes())
    }

    /// This authority's signature on the body.
    pub fn sign(&self, key: &IdentityKey) -> AuthoritySignature {
        AuthoritySignature::new(&self.digest(), key)
    }
}

/// The body's relay list as encoded: family members as positions.
struct BodyRelays<'a>(&'a [RelayEntry]);

impl Encode for BodyRelays<'_> {
    fn encode<E: Encoder>(&self, encoder: &mut E) -> Result<(), EncodeError> {
        let relays = self.0;
        let len = u32::try_from(relays.len()).map_err(|_| EncodeError::Other("too many relays"))?;
        len.encode(encoder)?;
        for relay in relays {
            let positions = relay
                .family
                .iter()
                .map(|member| {
                    let position = relays
                        .binary_search_by(|other| other.identity.cmp(member))
                        .map_err(|_| EncodeError::Other("family member not listed"))?;
                    u32::try_from(position).map_err(|_| EncodeError::Other("too many relays"))
                })
                .collect::<Result<Vec<u32>, _>>()?;
            relay.encode_with_family(&positions, encoder)?;
        }
        Ok(())
    }
}

/// One relay as decoded from a body, family members still positions.
struct WireRelay(RelayEntry, Vec<u32>);

impl<C> Decode<C> for WireRelay {
    fn decode<D: Decoder<Context = C>>(decoder: &mut D) -> Result<Self, DecodeError> {
        let (entry, positions) = RelayEntry::decode_with_family(decoder)?;
        Ok(Self(entry, positions))
    }
}
bincode::impl_borrow_decode!(WireRelay);

/// Turns family positions back into identities: each must name another
/// relay of the list, in ascending order (the list is sorted by identity,
/// so ascending positions are ascending identities).
fn resolve_families(wire: Vec<WireRelay>) -> Result<Vec<RelayEntry>, FormatError> {
    let ids: Vec<RelayId> = wire
        .iter()
        .map(|WireRelay(entry, _)| entry.identity)
        .collect();
    wire.into_iter()
        .enumerate()
        .map(|(index, WireRelay(mut entry, positions))| {
            rules::check_ascending("family", &positions)?;
            entry.family = positions
                .into_iter()
                .map(|position| {
                    usize::try_from(position)
                        .ok()
                        .filter(|p| *p != index)
                        .and_then(|p| ids.get(p).copied())
                        .ok_or(FormatError::BadFamilyPosition(position))
                })
                .collect::<Result<_, _>>()?;
            Ok(entry)
        })
        .collect()
}

/// Why a consensus body failed to decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BodyError {
    /// Not a body encoding.
    Malformed(codec::CodecError),
    /// Decodes but breaks a rule.
    Invalid(FormatError),
}

/// One authority's signature on a consensus body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub struct AuthoritySignature {
    /// The authority's key.
    pub authority: RelayId,
    /// Ed25519 over `"trine consensus v1\0" || digest`.
    pub signature: [u8; SIGNATURE_LEN],
}

impl AuthoritySignature {
    /// Signs the body with digest `digest`.
    pub fn new(digest: &Digest, key: &IdentityKey) -> Self {
        Self {
            authority: key.relay_id(),
            signature: digest::sign(CONSENSUS_CONTEXT, digest, key),
        }
    }

    /// Checks the signature against the body with digest `digest` (for an
    /// authority collecting its peers' signatures).
    pub fn verify(&self, digest: &Digest) -> Result<(), KeyError> {
        if digest::verify(CONSENSUS_CONTEXT, digest, &self.authority, &self.signature) {
            Ok(())
        } else {
            Err(KeyError::BadSignature)
        }
    }
}

/// A body and the signatures collected for it, as an authority assembles
/// and serves it. Clients do not use this type: they decode an
/// [`crate::UnverifiedConsensus`] and verify it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consensus {
    body: ConsensusBody,
    body_bytes: Vec<u8>,
    digest: Digest,
    signatures: Vec<AuthoritySignature>,
}

impl Consensus {
    /// An unsigned consensus for `body`.
    pub fn new(body: ConsensusBody) -> Self {
        let body_bytes = body.to_bytes();
        let digest = Digest::of(&body_bytes);
        Self {
            body,
            body_bytes,
            digest,
            signatures: Vec::new(),
        }
    }

    /// Parts already checked by [`crate::UnverifiedConsensus::from_bytes`].
    pub(crate) fn from_checked_parts(
        body: ConsensusBody,
        body_bytes: Vec<u8>,
        signatures: Vec<AuthoritySignature>,
    ) -> Self {
        let digest = Digest::of(&body_bytes);
        Self {
            body,
            body_bytes,
            digest,
            signatures,
        }
    }

    /// Adds `signatures`, then sorts them by authority and drops exact
    /// duplicates. They are not checked here (see
    /// [`AuthoritySignature::verify`]); a client refuses the whole
    /// consensus if one by a configured authority does not verify.
    #[must_use]
    pub fn with_signatures(
        mut self,
        signatures: impl IntoIterator<Item = AuthoritySignature>,
    ) -> Self {
        self.signatures.extend(signatures);
        rules::sort_dedup(&mut self.signatures);
        self
    }

    /// The body.
    pub fn body(&self) -> &ConsensusBody {
        &self.body
    }

    /// The body's canonical encoding.
    pub fn body_bytes(&self) -> &[u8] {
        &self.body_bytes
    }

    /// SHA-256 of the body's encoding: what the signatures cover.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// The signatures, in the order they travel.
    pub fn signatures(&self) -> &[AuthoritySignature] {
        &self.signatures
    }

    /// The wire form (see the module documentation).
    pub fn to_bytes(&self) -> Vec<u8> {
        codec::encode(&(&self.body_bytes, &self.signatures))
    }
}
