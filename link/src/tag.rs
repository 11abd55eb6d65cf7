//! The circuit tag in front of every data-cell datagram: the circuit's QUIC
//! stream id as a QUIC variable-length integer (RFC 9000 §16).
//!
//! The two most significant bits of the first byte give the length (1, 2, 4
//! or 8 bytes); the remaining bits are the value, big-endian. Values up to
//! 2^62 - 1 fit, exactly the range of stream ids.

use bytes::BufMut;

use crate::error::{LinkError, TagError};

/// The largest value a tag can carry: 2^62 - 1.
pub const MAX_TAG: u64 = (1 << 62) - 1;

/// Bytes the tag for `value` takes, or an error above [`MAX_TAG`].
pub fn encoded_len(value: u64) -> Result<usize, LinkError> {
    match value {
        0..0x40 => Ok(1),
        0x40..0x4000 => Ok(2),
        0x4000..0x4000_0000 => Ok(4),
        0x4000_0000..=MAX_TAG => Ok(8),
        _ => Err(LinkError::CircuitIdOutOfRange(value)),
    }
}

/// Appends the tag for `value` to `out`.
pub fn encode(value: u64, out: &mut impl BufMut) -> Result<(), LinkError> {
    match encoded_len(value)? {
        1 => out.put_u8(value as u8),
        2 => out.put_u16(0x4000 | value as u16),
        4 => out.put_u32(0x8000_0000 | value as u32),
        _ => out.put_u64(0xc000_0000_0000_0000 | value),
    }
    Ok(())
}

/// Reads a tag from the front of `bytes`: the value and the tag's length.
pub fn decode(bytes: &[u8]) -> Result<(u64, usize), TagError> {
    let first = *bytes
        .first()
        .ok_or(TagError::Truncated { needed: 1, got: 0 })?;
    let len = 1usize << (first >> 6);
    let tag = bytes.get(..len).ok_or(TagError::Truncated {
        needed: len,
        got: bytes.len(),
    })?;
    let value = tag[1..].iter().fold(u64::from(first & 0x3f), |acc, &byte| {
        (acc << 8) | u64::from(byte)
    });
    Ok((value, len))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn round_trip(value: u64) -> Vec<u8> {
        let mut out = Vec::new();
        encode(value, &mut out).unwrap();
        assert_eq!(out.len(), encoded_len(value).unwrap());
        assert_eq!(decode(&out).unwrap(), (value, out.len()));
        out
    }

    #[test]
    fn boundaries_round_trip_at_every_length() {
        for (value, len) in [
            (0, 1),
            (63, 1),
            (64, 2),
            (16_383, 2),
            (16_384, 4),
            (0x3fff_ffff, 4),
            (0x4000_0000, 8),
            (MAX_TAG, 8),
        ] {
            assert_eq!(round_trip(value).len(), len, "value {value}");
        }
        assert_eq!(round_trip(MAX_TAG), [0xff; 8]);
    }

    #[test]
    fn rfc9000_appendix_a_examples() {
        assert_eq!(
            decode(&[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c]).unwrap(),
            (151_288_809_941_952_652, 8)
        );
        assert_eq!(decode(&[0x9d, 0x7f, 0x3e, 0x7d]).unwrap(), (494_878_333, 4));
        assert_eq!(decode(&[0x7b, 0xbd]).unwrap(), (15_293, 2));
        assert_eq!(decode(&[0x25]).unwrap(), (37, 1));
        // A non-minimal encoding is accepted, as RFC 9000 allows.
        assert_eq!(decode(&[0x40, 0x25]).unwrap(), (37, 2));
        assert_eq!(round_trip(15_293), [0x7b, 0xbd]);
    }

    #[test]
    fn decode_leaves_the_cell_after_the_tag() {
        let mut datagram = Vec::new();
        encode(300, &mut datagram).unwrap();
        datagram.extend_from_slice(b"cell");
        let (value, len) = decode(&datagram).unwrap();
        assert_eq!((value, &datagram[len..]), (300, &b"cell"[..]));
    }

    #[test]
    fn truncated_and_empty_input_is_a_typed_error() {
        assert_eq!(decode(&[]), Err(TagError::Truncated { needed: 1, got: 0 }));
        assert_eq!(
            decode(&[0x40]),
            Err(TagError::Truncated { needed: 2, got: 1 })
        );
        assert_eq!(
            decode(&[0x80, 0, 0]),
            Err(TagError::Truncated { needed: 4, got: 3 })
        );
        assert_eq!(
            decode(&[0xff; 7]),
            Err(TagError::Truncated { needed: 8, got: 7 })
        );
    }

    #[test]
    fn values_above_2_pow_62_are_refused() {
        let mut out = Vec::new();
        assert!(matches!(
            encode(MAX_TAG + 1, &mut out),
            Err(LinkError::CircuitIdOutOfRange(v)) if v == MAX_TAG + 1
        ));
        assert!(matches!(
            encode(u64::MAX, &mut out),
            Err(LinkError::CircuitIdOutOfRange(_))
        ));
        assert!(out.is_empty());
    }
}
