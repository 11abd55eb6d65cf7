//! How a client (or relay cache) accepts a consensus: untrusted bytes
//! become an [`UnverifiedConsensus`], which exposes nothing of the relays;
//! [`UnverifiedConsensus::verify`] is the only way to a
//! [`VerifiedConsensus`]. Each refusal is its own [`DirError`] variant.
//!
//! Decoding ([`UnverifiedConsensus::from_bytes`]), in order:
//!
//! 1. at most [`MAX_CONSENSUS_LEN`] bytes, else `TooLarge`;
//! 2. the envelope decodes; if the bytes end before its lengths say,
//!    `Truncated`, if it is anything else that is not the canonical
//!    encoding, `Malformed`;
//! 3. at most [`MAX_SIGNATURES`] signatures, else `TooManySignatures`;
//! 4. the body decodes (`Malformed`) and obeys the format rules
//!    (`Invalid`).
//!
//! Verification, in order:
//!
//! 1. **Signatures.** Signatures by keys outside the [`AuthoritySet`] are
//!    ignored. Every signature by a configured authority must verify, else
//!    `ForgedSignature` (even if enough others do: a bad signature by a
//!    trusted key means tampering). Each authority counts once, however
//!    often it appears. Fewer than the threshold: `UnknownAuthority` if
//!    signatures by unknown keys were ignored, else `TooFewSignatures`.
//! 2. **Time**, with [`CLOCK_SKEW_SECS`] of slack: `NotYetValid` if
//!    `now + skew < valid_after`; `Expired` if `now >= valid_until + skew`.
//! 3. **No rollback**, against the consensus the caller holds: an older
//!    `valid_after` is `Rollback`; the same `valid_after` with a different
//!    body is `Equivocation` (two signed consensuses for one period mean an
//!    authority misbehaved; the one held stays). The same body again is
//!    accepted (it may carry more signatures).
//!
//! The caller keeps its [`VerifiedConsensus`] and replaces it only on `Ok`.

use trine_circuit::RelayId;
use trine_circuit::codec::{self, CodecError};

use crate::authority::AuthoritySet;
use crate::consensus::{AuthoritySignature, BodyError, Consensus, ConsensusBody};
use crate::digest::Digest;
use crate::entry::RelayEntry;
use crate::params::{CLOCK_SKEW_SECS, NetParams, Period};
use crate::rules::FormatError;

/// Largest encoded consensus accepted: the codec's document limit, 4 MiB
/// (about 40,000 typical relays).
pub const MAX_CONSENSUS_LEN: usize = codec::MAX_DOCUMENT_LEN;

/// Most signatures a consensus may carry (configured authorities are a
/// handful; this bounds the work a hostile document can ask for).
pub const MAX_SIGNATURES: usize = 32;

/// Bytes of one signature entry on the wire: authority key and signature.
const SIGNATURE_ENTRY_LEN: u64 = 32 + 64;

/// Why a consensus was refused. Each variant names one rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirError {
    /// More bytes than [`MAX_CONSENSUS_LEN`].
    #[error("consensus is {len} bytes, limit is {max}")]
    TooLarge {
        /// Bytes offered.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The bytes end before the envelope's lengths say they should.
    #[error("consensus truncated at {len} bytes")]
    Truncated {
        /// Bytes offered.
        len: usize,
    },
    /// Not the canonical encoding of a consensus.
    #[error("malformed consensus: {0}")]
    Malformed(CodecError),
    /// Decodes, but breaks a format rule (unsorted relays, bad period, …).
    #[error("invalid consensus: {0}")]
    Invalid(FormatError),
    /// More than [`MAX_SIGNATURES`] signatures.
    #[error("{count} signatures, at most {max} allowed")]
    TooManySignatures {
        /// Signatures present.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A signature by a configured authority does not verify.
    #[error("signature by authority {authority} does not verify")]
    ForgedSignature {
        /// The authority named.
        authority: RelayId,
    },
    /// Too few valid signatures once signatures by unknown keys are ignored.
    #[error("{unknown} signatures by unknown keys ignored, leaving {valid} valid, {needed} needed")]
    UnknownAuthority {
        /// Signatures by keys outside the authority set.
        unknown: usize,
        /// Distinct configured authorities whose signature verified.
        valid: usize,
        /// The threshold.
        needed: usize,
    },
    /// Too few distinct configured authorities signed.
    #[error("{valid} valid authority signatures, {needed} needed")]
    TooFewSignatures {
        /// Distinct configured authorities whose signature verified.
        valid: usize,
        /// The threshold.
        needed: usize,
    },
    /// `valid_after` is still in the future, beyond the clock skew.
    #[error("consensus valid after {valid_after}, now is {now}")]
    NotYetValid {
        /// Start of validity.
        valid_after: u64,
        /// Time of the check.
        now: u64,
    },
    /// `valid_until` has passed, beyond the clock skew.
    #[error("consensus expired at {valid_until}, now is {now}")]
    Expired {
        /// End of validity.
        valid_until: u64,
        /// Time of the check.
        now: u64,
    },
    /// Older than the consensus already held.
    #[error("consensus valid after {valid_after} is older than the one held ({held_valid_after})")]
    Rollback {
        /// `valid_after` of the held consensus.
        held_valid_after: u64,
        /// `valid_after` of the offered one.
        valid_after: u64,
    },
    /// Same period as the consensus held, different content.
    #[error("a different consensus for valid_after {valid_after} is already held")]
    Equivocation {
        /// The shared `valid_after`.
        valid_after: u64,
    },
}

/// A decoded consensus whose signatures and times are not yet checked. It
/// exposes only what is needed to decide whether to verify it.
#[derive(Debug, Clone)]
pub struct UnverifiedConsensus(Consensus);

impl UnverifiedConsensus {
    /// Decodes untrusted bytes (see the module documentation).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DirError> {
        if bytes.len() > MAX_CONSENSUS_LEN {
            return Err(DirError::TooLarge {
                len: bytes.len(),
                max: MAX_CONSENSUS_LEN,
            });
        }
        let (body_bytes, signatures): (Vec<u8>, Vec<AuthoritySignature>) =
            codec::decode(bytes, MAX_CONSENSUS_LEN).map_err(|error| {
                if is_truncated(bytes) {
                    DirError::Truncated { len: bytes.len() }
                } else {
                    DirError::Malformed(error)
                }
            })?;
        if signatures.len() > MAX_SIGNATURES {
            return Err(DirError::TooManySignatures {
                count: signatures.len(),
                max: MAX_SIGNATURES,
            });
        }
        let body = ConsensusBody::decode(&body_bytes, MAX_CONSENSUS_LEN).map_err(|e| match e {
            BodyError::Malformed(error) => DirError::Malformed(error),
            BodyError::Invalid(error) => DirError::Invalid(error),
        })?;
        Ok(Self(Consensus::from_checked_parts(
            body, body_bytes, signatures,
        )))
    }

    /// The canonical encoding: the very bytes it was decoded from.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.to_bytes()
    }

    /// The claimed start of validity (unverified).
    pub fn valid_after(&self) -> u64 {
        self.0.body().period().valid_after
    }

    /// SHA-256 of the body: an authority compares it with its own body's
    /// before taking the signatures.
    pub fn digest(&self) -> &Digest {
        self.0.digest()
    }

    /// The body, unchecked: for tools that display a document (`trine-dir
    /// show`), never for choosing relays.
    pub fn inspect(&self) -> &crate::ConsensusBody {
        self.0.body()
    }

    /// The signatures as received (unverified).
    pub fn signatures(&self) -> &[AuthoritySignature] {
        self.0.signatures()
    }

    /// Checks signatures, time and rollback (see the module documentation)
    /// at `now` (UNIX seconds), against `held`, the consensus the caller
    /// currently uses, if any.
    pub fn verify(
        self,
        authorities: &AuthoritySet,
        now: u64,
        held: Option<&VerifiedConsensus>,
    ) -> Result<VerifiedConsensus, DirError> {
        let consensus = self.0;
        let signers = check_signatures(&consensus, authorities)?;
        let period = *consensus.body().period();
        if now.saturating_add(CLOCK_SKEW_SECS) < period.valid_after {
            return Err(DirError::NotYetValid {
                valid_after: period.valid_after,
                now,
            });
        }
        if now >= period.valid_until.saturating_add(CLOCK_SKEW_SECS) {
            return Err(DirError::Expired {
                valid_until: period.valid_until,
                now,
            });
        }
        if let Some(held) = held {
            let held_valid_after = held.period().valid_after;
            if period.valid_after < held_valid_after {
                return Err(DirError::Rollback {
                    held_valid_after,
                    valid_after: period.valid_after,
                });
            }
            if period.valid_after == held_valid_after && consensus.digest() != held.digest() {
                return Err(DirError::Equivocation {
                    valid_after: period.valid_after,
                });
            }
        }
        Ok(VerifiedConsensus { consensus, signers })
    }
}

/// The distinct configured authorities whose signatures verify, if at
/// least the threshold.
fn check_signatures(
    consensus: &Consensus,
    authorities: &AuthoritySet,
) -> Result<Vec<RelayId>, DirError> {
    let mut signers: Vec<RelayId> = Vec::new();
    let mut checked: Vec<&AuthoritySignature> = Vec::new();
    let mut unknown = 0;
    for signature in consensus.signatures() {
        if !authorities.contains(&signature.authority) {
            unknown += 1;
            continue;
        }
        if checked.contains(&signature) {
            continue; // the very same signature again: counted once
        }
        if signature.verify(consensus.digest()).is_err() {
            return Err(DirError::ForgedSignature {
                authority: signature.authority,
            });
        }
        checked.push(signature);
        if !signers.contains(&signature.authority) {
            signers.push(signature.authority);
        }
    }
    let (valid, needed) = (signers.len(), authorities.threshold());
    if valid < needed {
        return Err(if unknown > 0 {
            DirError::UnknownAuthority {
                unknown,
                valid,
                needed,
            }
        } else {
            DirError::TooFewSignatures { valid, needed }
        });
    }
    signers.sort_unstable();
    Ok(signers)
}

/// Whether `bytes` end before the envelope's length prefixes say they
/// should (`body_len: u64 | body | count: u64 | count × 96 bytes`). A
/// length beyond the document limit is malformed, not truncated.
fn is_truncated(bytes: &[u8]) -> bool {
    let read_u64 = |at: usize| -> Option<u64> {
        let field = bytes.get(at..at.checked_add(8)?)?;
        Some(u64::from_be_bytes(field.try_into().ok()?))
    };
    let limit = MAX_CONSENSUS_LEN as u64;
    let Some(body_len) = read_u64(0) else {
        return true;
    };
    if body_len > limit {
        return false;
    }
    // body_len <= 4 MiB, so this fits in usize.
    let count_at = 8 + body_len as usize;
    let Some(count) = read_u64(count_at) else {
        return true;
    };
    if count > MAX_SIGNATURES as u64 {
        return false;
    }
    (bytes.len() as u64) < count_at as u64 + 8 + count * SIGNATURE_ENTRY_LEN
}

/// A consensus whose signatures, times and freshness against the one held
/// were checked. The only type that exposes the relays to clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedConsensus {
    consensus: Consensus,
    signers: Vec<RelayId>,
}

impl VerifiedConsensus {
    /// When it applies.
    pub fn period(&self) -> &Period {
        self.consensus.body().period()
    }

    /// The network parameters.
    pub fn params(&self) -> &NetParams {
        self.consensus.body().params()
    }

    /// The relays, ascending by identity.
    pub fn relays(&self) -> &[RelayEntry] {
        self.consensus.body().relays()
    }

    /// The entry for `identity`, if listed.
    pub fn relay(&self, identity: &RelayId) -> Option<&RelayEntry> {
        let relays = self.relays();
        relays
            .binary_search_by(|relay| relay.identity.cmp(identity))
            .ok()
            .and_then(|index| relays.get(index))
    }

    /// Whether a newer consensus should be fetched at `now`.
    pub fn is_fresh(&self, now: u64) -> bool {
        now < self.period().fresh_until
    }

    /// Whether it may still be used at `now` (with the clock skew).
    pub fn is_usable(&self, now: u64) -> bool {
        now < self.period().valid_until.saturating_add(CLOCK_SKEW_SECS)
    }

    /// SHA-256 of the body.
    pub fn digest(&self) -> &Digest {
        self.consensus.digest()
    }

    /// The configured authorities whose signatures verified, ascending.
    pub fn signers(&self) -> &[RelayId] {
        &self.signers
    }

    /// The wire form as received, to cache and serve to others.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.consensus.to_bytes()
    }
}
