//! The one bincode configuration every structured Trine message and
//! directory document is encoded with, and the only place it is named.
//!
//! Fixed-width big-endian integers, a hard byte limit checked before any
//! allocation, and decoding that refuses trailing bytes, so each value has
//! exactly one encoding and signatures can be computed over it. The hot
//! data-cell header does not go through here: it is laid out by hand in
//! [`crate::cell`].

use bincode::config::{self, BigEndian, Configuration, Fixint, Limit};
use bincode::{Decode, Encode};

/// Upper bound for any single encoded value (directory documents included).
pub const MAX_DOCUMENT_LEN: usize = 4 * 1024 * 1024;

/// Upper bound for the body of one control message.
pub const MAX_CONTROL_LEN: usize = 4 * 1024;

type Config = Configuration<BigEndian, Fixint, Limit<MAX_DOCUMENT_LEN>>;

const CONFIG: Config = config::standard()
    .with_big_endian()
    .with_fixed_int_encoding()
    .with_limit::<MAX_DOCUMENT_LEN>();

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// More bytes than the caller's limit for this kind of value.
    #[error("encoding is {len} bytes, limit is {limit}")]
    TooLong {
        /// Bytes offered.
        len: usize,
        /// Limit for this value.
        limit: usize,
    },
    /// The bytes are not a valid encoding (truncated, bad tag, bad UTF-8,
    /// a length over the limit, …).
    #[error("malformed encoding: {0}")]
    Malformed(String),
    /// A valid value followed by extra bytes: not the canonical encoding.
    #[error("{extra} trailing bytes after the value")]
    TrailingBytes {
        /// Bytes left over.
        extra: usize,
    },
}

/// Encodes `value` canonically.
pub fn encode<T: Encode>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(value, &mut out);
    out
}

/// Appends the canonical encoding of `value` to `out`.
pub fn encode_into<T: Encode>(value: &T, out: &mut Vec<u8>) {
    // Encoding into a Vec cannot fail except by exceeding the configured
    // limit, which no Trine message comes near; such a value is a bug in
    // the caller, and an empty result will be refused by every decoder.
    if let Err(error) = bincode::encode_into_std_write(value, out, CONFIG) {
        debug_assert!(false, "encoding failed: {error}");
    }
}

/// Decodes one value from untrusted bytes, refusing more than `limit` bytes
/// and any trailing bytes.
pub fn decode<T: Decode<()>>(bytes: &[u8], limit: usize) -> Result<T, CodecError> {
    if bytes.len() > limit {
        return Err(CodecError::TooLong {
            len: bytes.len(),
            limit,
        });
    }
    let (value, used) = bincode::decode_from_slice(bytes, CONFIG)
        .map_err(|error| CodecError::Malformed(error.to_string()))?;
    if used != bytes.len() {
        return Err(CodecError::TrailingBytes {
            extra: bytes.len() - used,
        });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[derive(Debug, PartialEq, Encode, Decode)]
    struct Sample {
        number: u32,
        items: Vec<u16>,
        name: String,
    }

    #[test]
    fn integers_are_fixed_width_big_endian() {
        assert_eq!(encode(&0x0102_0304u32), vec![1, 2, 3, 4]);
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut bytes = encode(&7u32);
        bytes.push(0);
        assert_eq!(
            decode::<u32>(&bytes, 64),
            Err(CodecError::TrailingBytes { extra: 1 })
        );
    }

    #[test]
    fn over_limit_input_is_refused_before_decoding() {
        let bytes = vec![0u8; 65];
        assert!(matches!(
            decode::<u32>(&bytes, 64),
            Err(CodecError::TooLong { .. })
        ));
    }

    #[test]
    fn huge_claimed_length_does_not_allocate() {
        // A Vec length prefix of 2^62 must be refused by the limit, not
        // attempted.
        let mut bytes = 1u32.to_be_bytes().to_vec();
        bytes.extend_from_slice(&(1u64 << 62).to_be_bytes());
        assert!(matches!(
            decode::<Sample>(&bytes, 1024),
            Err(CodecError::Malformed(_))
        ));
    }

    #[test]
    fn round_trip() {
        let value = Sample {
            number: 9,
            items: vec![1, 2, 3],
            name: "relay".into(),
        };
        assert_eq!(decode::<Sample>(&encode(&value), 1024).unwrap(), value);
    }
}
