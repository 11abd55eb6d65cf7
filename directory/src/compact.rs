//! Compact building blocks for directory documents, written as bincode
//! `Encode`/`Decode` impls so every document still goes through the one
//! [`trine_circuit::codec`] configuration.
//!
//! The codec gives every `Vec` and `String` an 8-byte length and every enum
//! a 4-byte tag. Directory collections are small and bounded (≤ 4
//! addresses, ≤ 16 family members, ≤ 19-byte nicknames), and a consensus
//! repeats them for every relay, so here:
//!
//! - short lists and text carry a 1-byte length ([`encode_short_list`],
//!   [`encode_text`]);
//! - the long lists (relays, vote entries) carry a 4-byte length and are
//!   decoded without reserving memory up front ([`LongList`]);
//! - a socket address is `4 | a.b.c.d | port` or `6 | 16 bytes | port`
//!   (IPv6 flow info and scope id are not carried, so only addresses with
//!   both zero are valid);
//! - [`Flags`] is its byte, unknown bits refused.
//!
//! Lengths and bounds are checked where values are validated (see
//! [`crate::rules`]); an encoder here fails only on a length that does not
//! fit its prefix, which validation rules out first.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use bincode::de::Decoder;
use bincode::de::read::Reader;
use bincode::enc::Encoder;
use bincode::enc::write::Writer;
use bincode::error::{DecodeError, EncodeError};
use bincode::{Decode, Encode};

use crate::flags::Flags;

/// Address family tag for IPv4.
const TAG_V4: u8 = 4;
/// Address family tag for IPv6.
const TAG_V6: u8 = 6;
/// Most elements a [`LongList`] reserves room for before decoding them.
const MAX_PREALLOC: usize = 1024;

/// Writes a 1-byte length, then each item.
pub(crate) fn encode_short_list<T: Encode, E: Encoder>(
    items: &[T],
    encoder: &mut E,
) -> Result<(), EncodeError> {
    let len = u8::try_from(items.len()).map_err(|_| EncodeError::Other("short list too long"))?;
    len.encode(encoder)?;
    items.iter().try_for_each(|item| item.encode(encoder))
}

/// Reads what [`encode_short_list`] wrote (at most 255 items).
pub(crate) fn decode_short_list<C, T: Decode<C>, D: Decoder<Context = C>>(
    decoder: &mut D,
) -> Result<Vec<T>, DecodeError> {
    let len = u8::decode(decoder)?;
    (0..len).map(|_| T::decode(decoder)).collect()
}

/// Writes a 1-byte length, then the UTF-8 bytes.
pub(crate) fn encode_text<E: Encoder>(text: &str, encoder: &mut E) -> Result<(), EncodeError> {
    let len = u8::try_from(text.len()).map_err(|_| EncodeError::Other("text too long"))?;
    len.encode(encoder)?;
    encoder.writer().write(text.as_bytes())
}

/// Reads what [`encode_text`] wrote, refusing invalid UTF-8.
pub(crate) fn decode_text<C, D: Decoder<Context = C>>(
    decoder: &mut D,
) -> Result<String, DecodeError> {
    let len = usize::from(u8::decode(decoder)?);
    decoder.claim_bytes_read(len)?;
    let mut bytes = vec![0; len];
    decoder.reader().read(&mut bytes)?;
    String::from_utf8(bytes).map_err(|error| DecodeError::Utf8 {
        inner: error.utf8_error(),
    })
}

/// Writes one socket address in the compact form.
fn encode_addr<E: Encoder>(addr: &SocketAddr, encoder: &mut E) -> Result<(), EncodeError> {
    match addr {
        SocketAddr::V4(v4) => {
            TAG_V4.encode(encoder)?;
            v4.ip().octets().encode(encoder)?;
        }
        SocketAddr::V6(v6) => {
            TAG_V6.encode(encoder)?;
            v6.ip().octets().encode(encoder)?;
        }
    }
    addr.port().encode(encoder)
}

/// Reads one socket address in the compact form.
fn decode_addr<C, D: Decoder<Context = C>>(decoder: &mut D) -> Result<SocketAddr, DecodeError> {
    Ok(match u8::decode(decoder)? {
        TAG_V4 => {
            let ip = Ipv4Addr::from(<[u8; 4]>::decode(decoder)?);
            SocketAddr::V4(SocketAddrV4::new(ip, u16::decode(decoder)?))
        }
        TAG_V6 => {
            let ip = Ipv6Addr::from(<[u8; 16]>::decode(decoder)?);
            SocketAddr::V6(SocketAddrV6::new(ip, u16::decode(decoder)?, 0, 0))
        }
        _ => return Err(DecodeError::Other("unknown address family")),
    })
}

/// Writes a 1-byte count, then each address.
pub(crate) fn encode_addrs<E: Encoder>(
    addrs: &[SocketAddr],
    encoder: &mut E,
) -> Result<(), EncodeError> {
    let len = u8::try_from(addrs.len()).map_err(|_| EncodeError::Other("too many addresses"))?;
    len.encode(encoder)?;
    addrs.iter().try_for_each(|addr| encode_addr(addr, encoder))
}

/// Reads what [`encode_addrs`] wrote.
pub(crate) fn decode_addrs<C, D: Decoder<Context = C>>(
    decoder: &mut D,
) -> Result<Vec<SocketAddr>, DecodeError> {
    let len = u8::decode(decoder)?;
    (0..len).map(|_| decode_addr(decoder)).collect()
}

/// A list with a 4-byte length, for relays and vote entries. Decoding
/// reserves room for at most [`MAX_PREALLOC`] items and grows as items
/// actually decode, so a false length costs no memory, and the size limit
/// applies to the encoded bytes only (bincode's own `Vec` would also count
/// each element's in-memory size against it).
pub(crate) struct LongList<T>(pub(crate) Vec<T>);

/// The encoding side of [`LongList`], borrowing its items.
pub(crate) struct LongSlice<'a, T>(pub(crate) &'a [T]);

impl<T: Encode> Encode for LongSlice<'_, T> {
    fn encode<E: Encoder>(&self, encoder: &mut E) -> Result<(), EncodeError> {
        let len = u32::try_from(self.0.len()).map_err(|_| EncodeError::Other("list too long"))?;
        len.encode(encoder)?;
        self.0.iter().try_for_each(|item| item.encode(encoder))
    }
}

impl<C, T: Decode<C>> Decode<C> for LongList<T> {
    fn decode<D: Decoder<Context = C>>(decoder: &mut D) -> Result<Self, DecodeError> {
        let len = u32::decode(decoder)?;
        let len = usize::try_from(len).map_err(|_| DecodeError::Other("list too long"))?;
        let mut items = Vec::with_capacity(len.min(MAX_PREALLOC));
        for _ in 0..len {
            items.push(T::decode(decoder)?);
        }
        Ok(Self(items))
    }
}

impl<'de, C, T: Decode<C>> bincode::BorrowDecode<'de, C> for LongList<T> {
    fn borrow_decode<D: bincode::de::BorrowDecoder<'de, Context = C>>(
        decoder: &mut D,
    ) -> Result<Self, DecodeError> {
        Decode::decode(decoder)
    }
}

impl Encode for Flags {
    fn encode<E: Encoder>(&self, encoder: &mut E) -> Result<(), EncodeError> {
        self.bits().encode(encoder)
    }
}

impl<C> Decode<C> for Flags {
    fn decode<D: Decoder<Context = C>>(decoder: &mut D) -> Result<Self, DecodeError> {
        Flags::from_bits(u8::decode(decoder)?).ok_or(DecodeError::Other("unknown flag bit"))
    }
}
bincode::impl_borrow_decode!(Flags);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use trine_circuit::codec;

    struct Addrs(Vec<SocketAddr>);

    impl Encode for Addrs {
        fn encode<E: Encoder>(&self, encoder: &mut E) -> Result<(), EncodeError> {
            encode_addrs(&self.0, encoder)
        }
    }

    impl<C> Decode<C> for Addrs {
        fn decode<D: Decoder<Context = C>>(decoder: &mut D) -> Result<Self, DecodeError> {
            decode_addrs(decoder).map(Self)
        }
    }
    bincode::impl_borrow_decode!(Addrs);

    #[test]
    fn addresses_take_seven_or_nineteen_bytes_and_round_trip() {
        let addrs = Addrs(vec![
            "198.18.0.1:443".parse().unwrap(),
            "[2001:db8::1]:9001".parse().unwrap(),
        ]);
        let bytes = codec::encode(&addrs);
        assert_eq!(bytes.len(), 1 + 7 + 19);
        assert_eq!(&bytes[..8], &[2, 4, 198, 18, 0, 1, 1, 187]);
        let back: Addrs = codec::decode(&bytes, 64).unwrap();
        assert_eq!(back.0, addrs.0);
        let mut bad = bytes;
        bad[1] = 5;
        assert!(codec::decode::<Addrs>(&bad, 64).is_err());
    }

    #[test]
    fn a_false_long_list_length_fails_without_allocating() {
        let bytes = u32::MAX.to_be_bytes();
        assert!(codec::decode::<LongList<u64>>(&bytes, 64).is_err());
    }

    #[test]
    fn unknown_flag_bits_are_refused() {
        assert!(codec::decode::<Flags>(&[0x40], 1).is_err());
        assert_eq!(
            codec::decode::<Flags>(&[0x21], 1).unwrap(),
            Flags::from_bits(0x21).unwrap()
        );
    }
}
