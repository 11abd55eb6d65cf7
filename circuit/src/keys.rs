//! Relay keys: the Ed25519 identity (whose public half *is* the relay's name),
//! the X25519 onion key used by ntor, and the certificate that binds the two.
//!
//! Secret types zeroize on drop and never print their contents. Parsing a key
//! from bytes or text is the only place a malformed key can enter; it returns
//! [`KeyError`].

use std::fmt;

use bincode::{Decode, Encode};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use rand::{CryptoRng, RngCore};
use zeroize::Zeroizing;

use crate::codec;

/// Length of every public and secret key in this module, in bytes.
pub const KEY_LEN: usize = 32;
/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// Domain separation prefix for onion-key certificates.
const ONION_CERT_CONTEXT: &[u8] = b"trine onion-key certificate v1\0";

/// Why a key, certificate or signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Text that should have been a key was not 64 hex digits.
    #[error("not a key: expected {expected} hex digits")]
    BadHex {
        /// Number of hex digits expected.
        expected: usize,
    },
    /// The bytes are not a valid Ed25519 public key (not a curve point).
    #[error("not a valid Ed25519 public key")]
    BadIdentity,
    /// A signature did not verify under the claimed identity.
    #[error("signature does not verify")]
    BadSignature,
    /// A certificate's expiry is at or before the time it was checked.
    #[error("onion-key certificate expired at {expired_at} (checked at {now})")]
    Expired {
        /// Expiry, UNIX seconds.
        expired_at: u64,
        /// Time of the check, UNIX seconds.
        now: u64,
    },
}

/// A relay's name: its Ed25519 identity public key.
///
/// The fingerprint shown to people is the lowercase hex of these 32 bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Encode, Decode)]
pub struct RelayId([u8; KEY_LEN]);

/// Hashed as four 64-bit words: equal identities give equal words, and a
/// fast hasher (path selection's lookups) handles words far quicker than a
/// byte slice.
impl std::hash::Hash for RelayId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        for word in self.0.chunks_exact(8) {
            let mut bytes = [0; 8];
            bytes.copy_from_slice(word);
            state.write_u64(u64::from_le_bytes(bytes));
        }
    }
}

impl RelayId {
    /// Wraps raw bytes. Whether they form a valid point is checked when a
    /// signature is verified.
    pub const fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// The raw 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// Parses a fingerprint (64 hex digits, either case).
    pub fn from_hex(text: &str) -> Result<Self, KeyError> {
        decode_hex32(text).map(Self)
    }

    /// The fingerprint: 64 lowercase hex digits.
    pub fn fingerprint(&self) -> String {
        encode_hex(&self.0)
    }

    /// Verifies an Ed25519 signature by this identity (strict verification:
    /// no malleable or small-order encodings).
    pub fn verify(&self, message: &[u8], signature: &[u8; SIGNATURE_LEN]) -> Result<(), KeyError> {
        let key = VerifyingKey::from_bytes(&self.0).map_err(|_| KeyError::BadIdentity)?;
        let signature = ed25519_dalek::Signature::from_bytes(signature);
        key.verify_strict(message, &signature)
            .map_err(|_| KeyError::BadSignature)
    }
}

impl fmt::Display for RelayId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.fingerprint())
    }
}

impl fmt::Debug for RelayId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Eight hex digits are enough to tell relays apart in logs.
        write!(f, "RelayId({}…)", &self.fingerprint()[..8])
    }
}

/// A relay's Ed25519 identity secret key. Zeroized on drop.
pub struct IdentityKey(SigningKey);

impl IdentityKey {
    /// Generates a fresh identity.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        Self(SigningKey::generate(rng))
    }

    /// Rebuilds an identity from its 32-byte secret seed.
    pub fn from_secret_bytes(secret: &[u8; KEY_LEN]) -> Self {
        Self(SigningKey::from_bytes(secret))
    }

    /// The 32-byte secret seed, for writing to a key file.
    pub fn to_secret_bytes(&self) -> Zeroizing<[u8; KEY_LEN]> {
        Zeroizing::new(self.0.to_bytes())
    }

    /// This identity's public name.
    pub fn relay_id(&self) -> RelayId {
        RelayId(self.0.verifying_key().to_bytes())
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.0.sign(message).to_bytes()
    }
}

impl fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdentityKey(secret for {:?})", self.relay_id())
    }
}

/// An X25519 onion public key (ntor's `B`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub struct OnionPublicKey([u8; KEY_LEN]);

impl OnionPublicKey {
    /// Wraps raw bytes (every 32-byte string is an X25519 public key).
    pub const fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// The raw 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// Parses 64 hex digits.
    pub fn from_hex(text: &str) -> Result<Self, KeyError> {
        decode_hex32(text).map(Self)
    }

    /// 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        encode_hex(&self.0)
    }
}

impl fmt::Debug for OnionPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OnionPublicKey({}…)", &self.to_hex()[..8])
    }
}

/// An X25519 secret: a relay's onion key, or an ntor ephemeral. Zeroized on
/// drop (x25519-dalek's `zeroize` feature).
pub struct OnionSecretKey {
    secret: x25519_dalek::StaticSecret,
    public: OnionPublicKey,
}

impl OnionSecretKey {
    /// Generates a fresh secret.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        Self::from_secret(x25519_dalek::StaticSecret::random_from_rng(rng))
    }

    /// Rebuilds a secret from 32 raw bytes (clamping happens inside X25519,
    /// so any 32 bytes are accepted; this is also how test vectors inject
    /// fixed ephemerals).
    pub fn from_secret_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self::from_secret(x25519_dalek::StaticSecret::from(bytes))
    }

    fn from_secret(secret: x25519_dalek::StaticSecret) -> Self {
        let public = OnionPublicKey(x25519_dalek::PublicKey::from(&secret).to_bytes());
        Self { secret, public }
    }

    /// The 32 raw secret bytes, for writing to a key file.
    pub fn to_secret_bytes(&self) -> Zeroizing<[u8; KEY_LEN]> {
        Zeroizing::new(self.secret.to_bytes())
    }

    /// The matching public key.
    pub fn public_key(&self) -> OnionPublicKey {
        self.public
    }

    /// X25519 with `peer`. The caller must refuse an all-zero result.
    pub(crate) fn diffie_hellman(&self, peer: &OnionPublicKey) -> Zeroizing<[u8; KEY_LEN]> {
        let peer = x25519_dalek::PublicKey::from(peer.0);
        Zeroizing::new(self.secret.diffie_hellman(&peer).to_bytes())
    }
}

impl fmt::Debug for OnionSecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OnionSecretKey(secret for {:?})", self.public)
    }
}

/// The identity's statement "this onion key is mine until `expires`".
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct OnionKeyCert {
    /// The identity that signed.
    pub relay_id: RelayId,
    /// The certified onion key.
    pub onion_key: OnionPublicKey,
    /// Expiry, UNIX seconds.
    pub expires: u64,
    /// Ed25519 signature over [`OnionKeyCert::signed_bytes`].
    pub signature: [u8; SIGNATURE_LEN],
}

impl OnionKeyCert {
    /// Issues a certificate for `onion_key`, valid until `expires` (UNIX seconds).
    pub fn issue(identity: &IdentityKey, onion_key: OnionPublicKey, expires: u64) -> Self {
        let relay_id = identity.relay_id();
        let signature = identity.sign(&Self::signed_bytes(&relay_id, &onion_key, expires));
        Self {
            relay_id,
            onion_key,
            expires,
            signature,
        }
    }

    /// The exact bytes the identity signs: a context string, the identity,
    /// the onion key, and the expiry as a big-endian u64.
    pub fn signed_bytes(relay_id: &RelayId, onion_key: &OnionPublicKey, expires: u64) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(ONION_CERT_CONTEXT.len() + 2 * KEY_LEN + 8);
        bytes.extend_from_slice(ONION_CERT_CONTEXT);
        bytes.extend_from_slice(relay_id.as_bytes());
        bytes.extend_from_slice(onion_key.as_bytes());
        bytes.extend_from_slice(&expires.to_be_bytes());
        bytes
    }

    /// Checks the signature and that the certificate has not expired at
    /// `now` (UNIX seconds).
    pub fn verify(&self, now: u64) -> Result<(), KeyError> {
        self.relay_id.verify(
            &Self::signed_bytes(&self.relay_id, &self.onion_key, self.expires),
            &self.signature,
        )?;
        if now >= self.expires {
            return Err(KeyError::Expired {
                expired_at: self.expires,
                now,
            });
        }
        Ok(())
    }

    /// Canonical encoding (see [`crate::codec`]).
    pub fn to_bytes(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Decodes an untrusted encoding; call [`OnionKeyCert::verify`] before use.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, codec::CodecError> {
        codec::decode(bytes, codec::MAX_CONTROL_LEN)
    }
}

fn encode_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

fn decode_hex32(text: &str) -> Result<[u8; KEY_LEN], KeyError> {
    let error = KeyError::BadHex {
        expected: 2 * KEY_LEN,
    };
    let digits = text.trim().as_bytes();
    if digits.len() != 2 * KEY_LEN {
        return Err(error);
    }
    let mut out = [0u8; KEY_LEN];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let text = std::str::from_utf8(pair).map_err(|_| error.clone())?;
        *byte = u8::from_str_radix(text, 16).map_err(|_| error.clone())?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rand::SeedableRng;

    fn rng() -> rand_chacha::ChaCha20Rng {
        rand_chacha::ChaCha20Rng::seed_from_u64(7)
    }

    #[test]
    fn fingerprint_round_trips_through_hex() {
        let id = IdentityKey::generate(&mut rng()).relay_id();
        assert_eq!(RelayId::from_hex(&id.fingerprint()).unwrap(), id);
        assert_eq!(
            RelayId::from_hex(&id.fingerprint().to_uppercase()).unwrap(),
            id
        );
        assert!(RelayId::from_hex("abc").is_err());
        assert!(RelayId::from_hex(&"zz".repeat(32)).is_err());
        assert!(RelayId::from_hex(&"é".repeat(32)).is_err());
    }

    #[test]
    fn identity_survives_secret_round_trip() {
        let key = IdentityKey::generate(&mut rng());
        let again = IdentityKey::from_secret_bytes(&key.to_secret_bytes());
        assert_eq!(key.relay_id(), again.relay_id());
        let sig = again.sign(b"hello");
        key.relay_id().verify(b"hello", &sig).unwrap();
    }

    #[test]
    fn onion_cert_verifies_and_refuses_tampering_and_expiry() {
        let mut rng = rng();
        let identity = IdentityKey::generate(&mut rng);
        let onion = OnionSecretKey::generate(&mut rng);
        let cert = OnionKeyCert::issue(&identity, onion.public_key(), 1_000);
        cert.verify(999).unwrap();
        assert_eq!(
            cert.verify(1_000),
            Err(KeyError::Expired {
                expired_at: 1_000,
                now: 1_000
            })
        );
        let decoded = OnionKeyCert::from_bytes(&cert.to_bytes()).unwrap();
        assert_eq!(decoded, cert);

        let mut later = cert.clone();
        later.expires = 2_000;
        assert_eq!(later.verify(0), Err(KeyError::BadSignature));

        let mut other_key = cert.clone();
        other_key.onion_key = OnionSecretKey::generate(&mut rng).public_key();
        assert_eq!(other_key.verify(0), Err(KeyError::BadSignature));

        let mut other_signer = cert;
        other_signer.relay_id = IdentityKey::generate(&mut rng).relay_id();
        assert_eq!(other_signer.verify(0), Err(KeyError::BadSignature));
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let onion = OnionSecretKey::generate(&mut rng());
        let secret_hex = encode_hex(&*onion.to_secret_bytes());
        let shown = format!("{onion:?}");
        assert!(!shown.contains(&secret_hex[..16]));
        let identity = IdentityKey::generate(&mut rng());
        let secret_hex = encode_hex(&*identity.to_secret_bytes());
        assert!(!format!("{identity:?}").contains(&secret_hex[..16]));
    }
}
