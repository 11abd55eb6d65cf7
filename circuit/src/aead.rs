//! The one AEAD behind every onion layer: ChaCha20-Poly1305 (RFC 8439),
//! sealing and opening in place. Changing the cipher backend means changing
//! this file only.
//!
//! Nonce: four zero bytes followed by the cell's 64-bit sequence number,
//! big-endian. Every key is used in one direction of one hop only, and each
//! sequence number is sealed at most once per key (see [`crate::replay`]), so
//! a nonce never repeats under a key. The associated data is the cell's
//! command byte, so turning RELAY into RELAY_EARLY (or back) in transit
//! fails authentication like any other modification.

use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce, Tag};

/// Length of a layer key.
pub const KEY_LEN: usize = 32;
/// Length of the authentication tag each layer adds.
pub const TAG_LEN: usize = 16;

/// An opened layer failed authentication (or was too short to hold a tag).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("authentication failed")]
pub struct OpenError;

/// A ChaCha20-Poly1305 key for one direction of one hop. The underlying
/// cipher zeroizes its key on drop.
pub struct LayerCipher(ChaCha20Poly1305);

impl LayerCipher {
    /// Builds a cipher from 32 key bytes.
    pub fn new(key: &[u8; KEY_LEN]) -> Self {
        Self(ChaCha20Poly1305::new(key.into()))
    }

    fn nonce(seq: u64) -> Nonce {
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&seq.to_be_bytes());
        nonce.into()
    }

    /// Encrypts `data` in place under sequence number `seq`, authenticating
    /// `aad` too, and returns the tag.
    pub fn seal(&self, seq: u64, aad: &[u8], data: &mut [u8]) -> [u8; TAG_LEN] {
        // The RustCrypto implementation only fails for messages longer than
        // 256 GiB; cells are bounded far below that by `cell::MAX_CELL_LEN`.
        match self
            .0
            .encrypt_in_place_detached(&Self::nonce(seq), aad, data)
        {
            Ok(tag) => tag.into(),
            Err(_) => [0u8; TAG_LEN],
        }
    }

    /// Checks `tag` over `aad` and `data` and decrypts `data` in place. On
    /// failure `data` is left unchanged.
    pub fn open(
        &self,
        seq: u64,
        aad: &[u8],
        data: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), OpenError> {
        self.0
            .decrypt_in_place_detached(&Self::nonce(seq), aad, data, Tag::from_slice(tag))
            .map_err(|_| OpenError)
    }
}

impl std::fmt::Debug for LayerCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LayerCipher(..)")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn open_needs_the_same_sequence_number_and_aad() {
        let key = [7u8; KEY_LEN];
        let cipher = LayerCipher::new(&key);
        let mut data = *b"sixteen byte msg";
        let tag = cipher.seal(42, &[4], &mut data);
        assert_ne!(&data, b"sixteen byte msg");
        let mut wrong = data;
        assert_eq!(cipher.open(43, &[4], &mut wrong, &tag), Err(OpenError));
        assert_eq!(cipher.open(42, &[5], &mut wrong, &tag), Err(OpenError));
        assert_eq!(wrong, data, "failed open leaves data unchanged");
        cipher.open(42, &[4], &mut data, &tag).unwrap();
        assert_eq!(&data, b"sixteen byte msg");
    }

    #[test]
    fn nonce_is_zero_prefix_then_big_endian_sequence() {
        let nonce = LayerCipher::nonce(0x0102_0304_0506_0708);
        assert_eq!(nonce.as_slice(), &[0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
    }
}
