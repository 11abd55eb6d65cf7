//! Document digests (SHA-256) and what exactly each signature covers.
//!
//! Every directory signature is Ed25519 over `context || SHA-256(bytes)`,
//! where `bytes` is the canonical encoding of the signed part and `context`
//! names the kind of document (ending in a NUL byte). Relays and
//! authorities both sign with Ed25519 identities, so the context keeps a
//! signature on one kind of document from passing as another; hashing
//! first keeps the signed message small even for a megabyte consensus.

use std::fmt;

use bincode::{Decode, Encode};
use sha2::{Digest as _, Sha256};
use trine_circuit::keys::SIGNATURE_LEN;
use trine_circuit::{IdentityKey, RelayId};

/// Signature context of relay descriptors.
pub(crate) const DESCRIPTOR_CONTEXT: &[u8] = b"trine relay descriptor v1\0";
/// Signature context of authority votes.
pub(crate) const VOTE_CONTEXT: &[u8] = b"trine vote v1\0";
/// Signature context of consensus documents.
pub(crate) const CONSENSUS_CONTEXT: &[u8] = b"trine consensus v1\0";

/// A SHA-256 digest of a document's canonical bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// SHA-256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|byte| format!("{byte:02x}")).collect()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({}…)", &self.to_hex()[..8])
    }
}

/// The message an Ed25519 key signs for a document of kind `context`
/// whose signed part has digest `digest`.
pub(crate) fn signed_message(context: &[u8], digest: &Digest) -> Vec<u8> {
    let mut message = Vec::with_capacity(context.len() + digest.0.len());
    message.extend_from_slice(context);
    message.extend_from_slice(&digest.0);
    message
}

/// Signs a document of kind `context` with digest `digest`.
pub(crate) fn sign(context: &[u8], digest: &Digest, key: &IdentityKey) -> [u8; SIGNATURE_LEN] {
    key.sign(&signed_message(context, digest))
}

/// Whether `signer` signed a document of kind `context` with digest `digest`.
pub(crate) fn verify(
    context: &[u8],
    digest: &Digest,
    signer: &RelayId,
    signature: &[u8; SIGNATURE_LEN],
) -> bool {
    signer
        .verify(&signed_message(context, digest), signature)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_does_not_carry_over_to_another_kind_of_document() {
        let key = IdentityKey::from_secret_bytes(&[9; 32]);
        let digest = Digest::of(b"document");
        let signature = sign(VOTE_CONTEXT, &digest, &key);
        assert!(verify(VOTE_CONTEXT, &digest, &key.relay_id(), &signature));
        assert!(!verify(
            CONSENSUS_CONTEXT,
            &digest,
            &key.relay_id(),
            &signature
        ));
        assert!(!verify(
            VOTE_CONTEXT,
            &Digest::of(b"other"),
            &key.relay_id(),
            &signature
        ));
    }

    #[test]
    fn digest_is_sha256() {
        assert_eq!(
            Digest::of(b"abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
