//! Onion layers: per-hop keys and the in-place seal/open of one layer.
//!
//! A RELAY cell is `command | seq | onion`. Each layer is
//! `AEAD(key, nonce(seq), aad = command, inner | flag) | tag`: the flag byte and the
//! 16-byte tag are appended, so the relay message always starts at
//! [`crate::cell::RELAY_HEADER_LEN`] and adding or removing a layer only
//! touches the tail of the buffer: no copies, and no allocation when the
//! buffer's capacity was reserved up front.
//!
//! Forward (client → hops): the flag says whether the hop opening the layer
//! is the message's destination ([`Flag::Here`]) or must pass the rest on
//! ([`Flag::Pass`]). Backward (hops → client): the flag says whether the
//! message originated at the hop that sealed the layer.

use crate::aead::{self, LayerCipher, TAG_LEN};
use crate::cell::RELAY_HEADER_LEN;
use crate::ntor::KeyGenerator;

/// Bytes each layer adds: one flag byte and one tag.
pub const LAYER_OVERHEAD: usize = 1 + TAG_LEN;

/// HKDF-Expand labels, appended to `PROTOID ":key_expand"`.
const FORWARD_LABEL: &[u8] = b":onion-forward";
const BACKWARD_LABEL: &[u8] = b":onion-backward";

/// The layer flag, inside the encryption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Flag {
    /// Forward: pass the inner cell to the next hop. Backward: the inner
    /// cell came from a later hop.
    Pass = 0,
    /// Forward: the message is for this hop. Backward: this hop wrote it.
    Here = 1,
}

/// Why a layer could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LayerError {
    /// Too short to hold a layer.
    #[error("cell too short for an onion layer")]
    TooShort,
    /// The tag did not verify: tampered, forged, or not for this key.
    #[error("onion layer failed authentication")]
    Auth,
    /// Authenticated, but the flag byte is neither 0 nor 1.
    #[error("onion layer has an unknown flag")]
    BadFlag,
}

impl From<aead::OpenError> for LayerError {
    fn from(_: aead::OpenError) -> Self {
        Self::Auth
    }
}

/// Both directions' ciphers for one hop of one circuit.
#[derive(Debug)]
pub struct HopCrypto {
    /// Client → hop.
    pub(crate) forward: LayerCipher,
    /// Hop → client.
    pub(crate) backward: LayerCipher,
}

impl HopCrypto {
    /// Derives the hop's keys from the handshake's key generator.
    pub fn derive(keys: &KeyGenerator) -> Self {
        let mut forward = zeroize::Zeroizing::new([0u8; aead::KEY_LEN]);
        let mut backward = zeroize::Zeroizing::new([0u8; aead::KEY_LEN]);
        // 32 bytes is far below HKDF's limit; expansion cannot fail.
        let _ = keys.expand(FORWARD_LABEL, forward.as_mut_slice());
        let _ = keys.expand(BACKWARD_LABEL, backward.as_mut_slice());
        Self {
            forward: LayerCipher::new(&forward),
            backward: LayerCipher::new(&backward),
        }
    }
}

/// Adds one layer over everything after the RELAY header of `cell`.
pub(crate) fn seal_layer(cipher: &LayerCipher, seq: u64, cell: &mut Vec<u8>, flag: Flag) {
    cell.push(flag as u8);
    let Some((command, rest)) = cell.split_first_mut() else {
        return;
    };
    let Some(body) = rest.get_mut(RELAY_HEADER_LEN - 1..) else {
        return;
    };
    let tag = cipher.seal(seq, &[*command], body);
    cell.extend_from_slice(&tag);
}

/// Removes one layer from `cell` in place and returns its flag. On error
/// the cell must be dropped.
pub(crate) fn open_layer(
    cipher: &LayerCipher,
    seq: u64,
    cell: &mut Vec<u8>,
) -> Result<Flag, LayerError> {
    if cell.len() < RELAY_HEADER_LEN + LAYER_OVERHEAD {
        return Err(LayerError::TooShort);
    }
    let tag_at = cell.len() - TAG_LEN;
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&cell[tag_at..]);
    let command = [cell[0]];
    cipher.open(seq, &command, &mut cell[RELAY_HEADER_LEN..tag_at], &tag)?;
    let flag = match cell[tag_at - 1] {
        0 => Flag::Pass,
        1 => Flag::Here,
        _ => return Err(LayerError::BadFlag),
    };
    cell.truncate(tag_at - 1);
    Ok(flag)
}
