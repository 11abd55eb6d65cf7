//! Relay descriptors: what a relay says about itself, signed by its
//! identity key, and the checks an authority runs before believing it.
//!
//! [`Descriptor`] is the plain set of fields; [`Descriptor::sign`] sorts
//! its collections, checks every rule and signs, giving a
//! [`SignedDescriptor`]. Bytes from the network become an
//! [`UnverifiedDescriptor`], whose only way out is
//! [`UnverifiedDescriptor::verify`]: signature, onion-key certificate and
//! publication time.
//!
//! Wire form: the canonical encoding of the fields (in declaration order,
//! compact collections from [`crate::compact`]) followed by the 64-byte
//! Ed25519 signature over `"trine relay descriptor v1\0" ||
//! SHA-256(fields)`.

use std::net::SocketAddr;

use bincode::de::Decoder;
use bincode::enc::Encoder;
use bincode::error::{DecodeError, EncodeError};
use bincode::{Decode, Encode};
use trine_circuit::codec::{self, CodecError};
use trine_circuit::keys::{KeyError, SIGNATURE_LEN};
use trine_circuit::{IdentityKey, OnionKeyCert, OnionPublicKey, RelayId};

use crate::compact;
use crate::digest::{self, DESCRIPTOR_CONTEXT, Digest};
use crate::params::CLOCK_SKEW_SECS;
use crate::policy::ExitSummary;
use crate::rules::{self, FormatError};

/// Largest encoded descriptor accepted, in bytes (the largest valid one is
/// about 1 KiB: 4 IPv6 addresses, 16 family members, 16 port ranges).
pub const MAX_DESCRIPTOR_LEN: usize = 2048;

/// A relay's declared bandwidth, bytes per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Encode, Decode)]
pub struct Bandwidth {
    /// Sustained rate limit the operator configured.
    pub rate: u64,
    /// Burst limit.
    pub burst: u64,
    /// Highest rate the relay observed itself sustaining recently.
    pub observed: u64,
}

/// The fields of a relay descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// The relay's identity; the descriptor is signed by it.
    pub identity: RelayId,
    /// The current onion key (ntor's `B`).
    pub onion_key: OnionPublicKey,
    /// The identity's certificate for `onion_key`.
    pub onion_cert: OnionKeyCert,
    /// Where to reach the relay: 1 to 4 QUIC addresses, ascending, no
    /// duplicates (typically one IPv4 and one IPv6).
    pub addresses: Vec<SocketAddr>,
    /// 1 to 19 ASCII letters or digits, for people; not unique.
    pub nickname: String,
    /// Relays run by the same operator: ascending, at most 16, not itself.
    pub family: Vec<RelayId>,
    /// Declared bandwidth.
    pub bandwidth: Bandwidth,
    /// Exit-policy summary.
    pub exit: ExitSummary,
    /// Software version, at most 32 bytes of printable ASCII.
    pub version: String,
    /// When the relay signed this, UNIX seconds.
    pub published: u64,
}

impl Descriptor {
    /// Sorts and deduplicates the collections and merges the exit ranges:
    /// the canonical form, which [`Descriptor::sign`] applies itself.
    pub fn normalize(&mut self) {
        rules::sort_dedup(&mut self.addresses);
        rules::sort_dedup(&mut self.family);
        self.exit = ExitSummary::new(
            self.exit.allows_general,
            std::mem::take(&mut self.exit.reject_ports),
        );
    }

    /// Checks every field rule (see [`crate::rules`]) and that the
    /// certificate names this identity and onion key. Does not check any
    /// signature or time.
    pub fn validate(&self) -> Result<(), FormatError> {
        rules::check_addresses(&self.addresses)?;
        rules::check_nickname(&self.nickname)?;
        rules::check_family(&self.identity, &self.family)?;
        rules::check_version(&self.version)?;
        self.exit.validate()?;
        if self.onion_cert.relay_id != self.identity || self.onion_cert.onion_key != self.onion_key
        {
            return Err(FormatError::OnionCertMismatch);
        }
        Ok(())
    }

    /// Normalizes, validates and signs with `key`, which must be this
    /// descriptor's identity.
    pub fn sign(mut self, key: &IdentityKey) -> Result<SignedDescriptor, DescriptorError> {
        if key.relay_id() != self.identity {
            return Err(DescriptorError::WrongKey {
                identity: self.identity,
                signer: key.relay_id(),
            });
        }
        self.normalize();
        self.validate()?;
        let signature = digest::sign(DESCRIPTOR_CONTEXT, &self.digest_of_fields(), key);
        Ok(SignedDescriptor {
            descriptor: self,
            signature,
        })
    }

    fn digest_of_fields(&self) -> Digest {
        Digest::of(&codec::encode(self))
    }
}

impl Encode for Descriptor {
    fn encode<E: Encoder>(&self, encoder: &mut E) -> Result<(), EncodeError> {
        self.identity.encode(encoder)?;
        self.onion_key.encode(encoder)?;
        self.onion_cert.encode(encoder)?;
        compact::encode_addrs(&self.addresses, encoder)?;
        compact::encode_text(&self.nickname, encoder)?;
        compact::encode_short_list(&self.family, encoder)?;
        self.bandwidth.encode(encoder)?;
        self.exit.encode(encoder)?;
        compact::encode_text(&self.version, encoder)?;
        self.published.encode(encoder)
    }
}

impl<C> Decode<C> for Descriptor {
    fn decode<D: Decoder<Context = C>>(decoder: &mut D) -> Result<Self, DecodeError> {
        Ok(Self {
            identity: Decode::decode(decoder)?,
            onion_key: Decode::decode(decoder)?,
            onion_cert: Decode::decode(decoder)?,
            addresses: compact::decode_addrs(decoder)?,
            nickname: compact::decode_text(decoder)?,
            family: compact::decode_short_list(decoder)?,
            bandwidth: Decode::decode(decoder)?,
            exit: Decode::decode(decoder)?,
            version: compact::decode_text(decoder)?,
            published: Decode::decode(decoder)?,
        })
    }
}
bincode::impl_borrow_decode!(Descriptor);

/// Why a descriptor was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DescriptorError {
    /// More bytes than [`MAX_DESCRIPTOR_LEN`].
    #[error("descriptor is {len} bytes, limit is {max}")]
    TooLarge {
        /// Bytes offered.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not a descriptor encoding (truncated, trailing bytes, bad tag, …).
    #[error("malformed descriptor: {0}")]
    Malformed(CodecError),
    /// Decodes, but breaks a field rule (e.g. an unsorted family).
    #[error("invalid descriptor: {0}")]
    Invalid(#[from] FormatError),
    /// [`Descriptor::sign`] was given a key other than the descriptor's identity.
    #[error("descriptor for {identity} cannot be signed by {signer}")]
    WrongKey {
        /// The descriptor's identity.
        identity: RelayId,
        /// The key offered.
        signer: RelayId,
    },
    /// The signature does not verify under the identity the descriptor names.
    #[error("descriptor signature does not verify under {0}")]
    BadSignature(RelayId),
    /// The onion-key certificate's signature is bad or it has expired.
    #[error("onion-key certificate refused: {0}")]
    OnionCert(KeyError),
    /// Published further in the future than the allowed clock skew.
    #[error("descriptor published at {published}, in the future (now {now})")]
    PublishedInFuture {
        /// Claimed publication time.
        published: u64,
        /// Time of the check.
        now: u64,
    },
    /// Published longer ago than the rules allow.
    #[error("descriptor published at {published} is too old (now {now})")]
    TooOld {
        /// Claimed publication time.
        published: u64,
        /// Time of the check.
        now: u64,
    },
}

/// Time limits for accepting a descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DescriptorRules {
    /// How far in the future `published` may lie, seconds.
    pub max_skew_secs: u64,
    /// How long after `published` the descriptor is still accepted, seconds.
    pub max_age_secs: u64,
}

impl Default for DescriptorRules {
    /// [`CLOCK_SKEW_SECS`] of skew; descriptors live one day (relays
    /// republish well within that).
    fn default() -> Self {
        Self {
            max_skew_secs: CLOCK_SKEW_SECS,
            max_age_secs: 86_400,
        }
    }
}

/// A descriptor with a signature by its identity that verified (or that
/// this process made). Only [`Descriptor::sign`] and
/// [`UnverifiedDescriptor::verify`] create one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedDescriptor {
    descriptor: Descriptor,
    signature: [u8; SIGNATURE_LEN],
}

impl SignedDescriptor {
    /// The fields.
    pub fn descriptor(&self) -> &Descriptor {
        &self.descriptor
    }

    /// The relay's identity.
    pub fn identity(&self) -> RelayId {
        self.descriptor.identity
    }

    /// The signature.
    pub fn signature(&self) -> &[u8; SIGNATURE_LEN] {
        &self.signature
    }

    /// The canonical encoding: fields then signature.
    pub fn to_bytes(&self) -> Vec<u8> {
        codec::encode(&(&self.descriptor, &self.signature))
    }

    /// SHA-256 of [`SignedDescriptor::to_bytes`]: names this exact
    /// document in votes.
    pub fn digest(&self) -> Digest {
        Digest::of(&self.to_bytes())
    }
}

/// A decoded descriptor whose signature, certificate and times are not yet
/// checked. Its fields are not exposed.
#[derive(Debug, Clone)]
pub struct UnverifiedDescriptor {
    descriptor: Descriptor,
    signature: [u8; SIGNATURE_LEN],
}

impl UnverifiedDescriptor {
    /// Decodes untrusted bytes: size limit, canonical encoding, field rules.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DescriptorError> {
        if bytes.len() > MAX_DESCRIPTOR_LEN {
            return Err(DescriptorError::TooLarge {
                len: bytes.len(),
                max: MAX_DESCRIPTOR_LEN,
            });
        }
        let (descriptor, signature): (Descriptor, [u8; SIGNATURE_LEN]) =
            codec::decode(bytes, MAX_DESCRIPTOR_LEN).map_err(DescriptorError::Malformed)?;
        descriptor.validate()?;
        Ok(Self {
            descriptor,
            signature,
        })
    }

    /// The canonical encoding: the very bytes it was decoded from.
    pub fn to_bytes(&self) -> Vec<u8> {
        codec::encode(&(&self.descriptor, &self.signature))
    }

    /// The identity the descriptor claims (unverified; for logs).
    pub fn claimed_identity(&self) -> RelayId {
        self.descriptor.identity
    }

    /// Checks, in order: the signature under the identity the descriptor
    /// names, the onion-key certificate (signature and expiry at `now`),
    /// and that `published` is neither beyond `now + max_skew_secs` nor
    /// older than `now - max_age_secs`.
    pub fn verify(
        self,
        now: u64,
        rules: &DescriptorRules,
    ) -> Result<SignedDescriptor, DescriptorError> {
        let Self {
            descriptor,
            signature,
        } = self;
        let identity = descriptor.identity;
        let digest = descriptor.digest_of_fields();
        if !digest::verify(DESCRIPTOR_CONTEXT, &digest, &identity, &signature) {
            return Err(DescriptorError::BadSignature(identity));
        }
        descriptor
            .onion_cert
            .verify(now)
            .map_err(DescriptorError::OnionCert)?;
        let published = descriptor.published;
        if published > now.saturating_add(rules.max_skew_secs) {
            return Err(DescriptorError::PublishedInFuture { published, now });
        }
        if published.saturating_add(rules.max_age_secs) < now {
            return Err(DescriptorError::TooOld { published, now });
        }
        Ok(SignedDescriptor {
            descriptor,
            signature,
        })
    }
}
