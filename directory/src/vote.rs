//! Votes: one authority's signed view of the network for one period: the
//! relays it accepts (with the flags it assigns and the bandwidth it
//! measured) and the network parameters it proposes.
//!
//! A vote names each relay's descriptor by digest and repeats only what the
//! consensus needs from it ([`VoteEntry`]), so a vote on 10,000 relays
//! stays near 1.5 MB instead of carrying every descriptor.
//!
//! Wire form (canonical encoding, in order): authority id, [`Period`],
//! [`NetParams`], entries (4-byte count, ascending by relay identity, one
//! per relay), then the Ed25519 signature by the authority over
//! `"trine vote v1\0" || SHA-256(everything before the signature)`.

use bincode::{Decode, Encode};
use trine_circuit::codec::{self, CodecError};
use trine_circuit::keys::SIGNATURE_LEN;
use trine_circuit::{IdentityKey, RelayId};

use crate::authority::AuthoritySet;
use crate::compact::{LongList, LongSlice};
use crate::descriptor::SignedDescriptor;
use crate::digest::{self, Digest, VOTE_CONTEXT};
use crate::entry::RelayEntry;
use crate::flags::Flags;
use crate::params::{NetParams, Period};
use crate::rules::FormatError;

/// Largest encoded vote accepted: the codec's document limit, 4 MiB.
pub const MAX_VOTE_LEN: usize = codec::MAX_DOCUMENT_LEN;

/// One relay in a vote.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Encode, Decode)]
pub struct VoteEntry {
    /// The relay as this authority lists it: `flags` are the authority's
    /// (see [`crate::assign_flags`]), `weight` its bandwidth measurement.
    pub relay: RelayEntry,
    /// Digest of the signed descriptor the entry was made from.
    pub digest: Digest,
    /// The descriptor's publication time.
    pub published: u64,
    /// Expiry of the descriptor's onion-key certificate.
    pub onion_key_expires: u64,
}

impl VoteEntry {
    /// The entry for a verified descriptor.
    pub fn new(descriptor: &SignedDescriptor, flags: Flags, measured_bandwidth: u64) -> Self {
        let fields = descriptor.descriptor();
        Self {
            relay: RelayEntry::from_descriptor(fields, flags, measured_bandwidth),
            digest: descriptor.digest(),
            published: fields.published,
            onion_key_expires: fields.onion_cert.expires,
        }
    }
}

/// An unsigned vote whose fields obey every rule. Only [`Vote::new`]
/// creates one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vote {
    period: Period,
    params: NetParams,
    entries: Vec<VoteEntry>,
}

impl Vote {
    /// A vote for `period`: entries are sorted by relay identity, and each
    /// checked; two entries for one relay are refused.
    pub fn new(
        period: Period,
        params: NetParams,
        mut entries: Vec<VoteEntry>,
    ) -> Result<Self, FormatError> {
        entries.sort_by_key(|entry| entry.relay.identity);
        let vote = Self {
            period,
            params,
            entries,
        };
        vote.validate()?;
        Ok(vote)
    }

    fn validate(&self) -> Result<(), FormatError> {
        self.period.validate()?;
        self.params.validate()?;
        let ascending = self
            .entries
            .windows(2)
            .all(|pair| pair[0].relay.identity < pair[1].relay.identity);
        if !ascending {
            return Err(FormatError::Unsorted {
                field: "vote entries",
            });
        }
        self.entries
            .iter()
            .try_for_each(|entry| entry.relay.validate())
    }

    /// The period voted for.
    pub fn period(&self) -> &Period {
        &self.period
    }

    /// The proposed network parameters.
    pub fn params(&self) -> &NetParams {
        &self.params
    }

    /// The entries, ascending by relay identity.
    pub fn entries(&self) -> &[VoteEntry] {
        &self.entries
    }

    /// Signs as the authority `key`.
    pub fn sign(self, key: &IdentityKey) -> SignedVote {
        let authority = key.relay_id();
        let signature = digest::sign(VOTE_CONTEXT, &signed_digest(&authority, &self), key);
        SignedVote {
            authority,
            vote: self,
            signature,
        }
    }
}

/// Digest of the signed part of a vote.
fn signed_digest(authority: &RelayId, vote: &Vote) -> Digest {
    Digest::of(&codec::encode(&(
        authority,
        &vote.period,
        &vote.params,
        LongSlice(&vote.entries),
    )))
}

/// A vote with its authority's signature, made here or verified against an
/// [`AuthoritySet`]. The input of [`crate::compute`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedVote {
    authority: RelayId,
    vote: Vote,
    signature: [u8; SIGNATURE_LEN],
}

impl SignedVote {
    /// The authority that signed.
    pub fn authority(&self) -> RelayId {
        self.authority
    }

    /// The vote.
    pub fn vote(&self) -> &Vote {
        &self.vote
    }

    /// The canonical encoding, signature included.
    pub fn to_bytes(&self) -> Vec<u8> {
        codec::encode(&(
            &self.authority,
            &self.vote.period,
            &self.vote.params,
            LongSlice(&self.vote.entries),
            &self.signature,
        ))
    }
}

/// Why a vote was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VoteError {
    /// More bytes than [`MAX_VOTE_LEN`].
    #[error("vote is {len} bytes, limit is {max}")]
    TooLarge {
        /// Bytes offered.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not a vote encoding.
    #[error("malformed vote: {0}")]
    Malformed(CodecError),
    /// Decodes, but breaks a rule (unsorted entries, bad period, …).
    #[error("invalid vote: {0}")]
    Invalid(#[from] FormatError),
    /// Signed by a key that is not one of the configured authorities.
    #[error("vote by {0}, which is not a configured authority")]
    UnknownAuthority(RelayId),
    /// The signature does not verify under the authority it names.
    #[error("vote signature does not verify under {0}")]
    BadSignature(RelayId),
}

/// A decoded vote not yet checked against the authorities. Its contents are
/// not exposed.
#[derive(Debug, Clone)]
pub struct UnverifiedVote(SignedVote);

impl UnverifiedVote {
    /// Decodes untrusted bytes: size limit, canonical encoding, rules.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, VoteError> {
        if bytes.len() > MAX_VOTE_LEN {
            return Err(VoteError::TooLarge {
                len: bytes.len(),
                max: MAX_VOTE_LEN,
            });
        }
        type Wire = (
            RelayId,
            Period,
            NetParams,
            LongList<VoteEntry>,
            [u8; SIGNATURE_LEN],
        );
        let (authority, period, params, LongList(entries), signature): Wire =
            codec::decode(bytes, MAX_VOTE_LEN).map_err(VoteError::Malformed)?;
        let vote = Vote {
            period,
            params,
            entries,
        };
        vote.validate()?;
        Ok(Self(SignedVote {
            authority,
            vote,
            signature,
        }))
    }

    /// The canonical encoding: the very bytes it was decoded from.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.to_bytes()
    }

    /// The authority the vote claims to be from (unverified; for logs).
    pub fn claimed_authority(&self) -> RelayId {
        self.0.authority
    }

    /// Checks that the signer is one of `authorities` and that the
    /// signature verifies.
    pub fn verify(self, authorities: &AuthoritySet) -> Result<SignedVote, VoteError> {
        let signed = self.0;
        if !authorities.contains(&signed.authority) {
            return Err(VoteError::UnknownAuthority(signed.authority));
        }
        let digest = signed_digest(&signed.authority, &signed.vote);
        if !digest::verify(VOTE_CONTEXT, &digest, &signed.authority, &signed.signature) {
            return Err(VoteError::BadSignature(signed.authority));
        }
        Ok(signed)
    }
}
