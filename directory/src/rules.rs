//! The field rules every directory document obeys, and [`FormatError`],
//! the error naming the rule a decoded (or about to be signed) value broke.
//!
//! Collections are sorted and free of duplicates, so a value has exactly
//! one encoding; builders ([`crate::Descriptor::sign`],
//! [`crate::Vote::new`]) sort for the caller, decoders refuse unsorted input.

use std::net::SocketAddr;

use trine_circuit::RelayId;

/// Most addresses one relay may publish.
pub const MAX_ADDRESSES: usize = 4;
/// Longest nickname, in bytes (ASCII letters and digits only).
pub const MAX_NICKNAME_LEN: usize = 19;
/// Most relays a relay may declare as its family.
pub const MAX_FAMILY: usize = 16;
/// Longest software version string, in bytes (printable ASCII).
pub const MAX_VERSION_LEN: usize = 32;

/// A rule of the directory formats that a value breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// A collection is not in strictly ascending order (unsorted, or holds
    /// a duplicate).
    #[error("{field} is not sorted or holds duplicates")]
    Unsorted {
        /// The field.
        field: &'static str,
    },
    /// A collection holds more items than allowed.
    #[error("{field} holds {len} items, at most {max} allowed")]
    TooMany {
        /// The field.
        field: &'static str,
        /// Items present.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// A collection that needs at least one item is empty.
    #[error("{field} is empty")]
    Empty {
        /// The field.
        field: &'static str,
    },
    /// The nickname is empty, too long or not ASCII letters and digits.
    #[error("nickname must be 1-{MAX_NICKNAME_LEN} ASCII letters or digits")]
    BadNickname,
    /// The version string is too long or not printable ASCII.
    #[error("version must be at most {MAX_VERSION_LEN} bytes of printable ASCII")]
    BadVersion,
    /// An address has an unspecified IP, port 0, or IPv6 flow info or
    /// scope id (which the encoding does not carry).
    #[error("unusable address {0}")]
    BadAddress(SocketAddr),
    /// The exit summary has ranges with `first > last`, or ranges while it
    /// exits nothing.
    #[error("malformed exit summary")]
    BadExitSummary,
    /// A relay lists itself in its own family.
    #[error("relay {0} lists itself as family")]
    SelfInFamily(RelayId),
    /// A consensus family position points outside the relay list or at the
    /// relay itself.
    #[error("family position {0} is not another listed relay")]
    BadFamilyPosition(u32),
    /// The onion-key certificate is for another identity or another key.
    #[error("onion-key certificate does not match the descriptor's identity and onion key")]
    OnionCertMismatch,
    /// The validity period is not `valid_after < fresh_until <= valid_until`.
    #[error("bad validity period {valid_after}/{fresh_until}/{valid_until}")]
    BadPeriod {
        /// Start.
        valid_after: u64,
        /// End of freshness.
        fresh_until: u64,
        /// End of validity.
        valid_until: u64,
    },
    /// A network parameter is out of range.
    #[error("network parameter {0} out of range")]
    BadParam(&'static str),
}

/// Checks a nickname: 1 to [`MAX_NICKNAME_LEN`] ASCII letters or digits.
pub fn check_nickname(nickname: &str) -> Result<(), FormatError> {
    let ok = (1..=MAX_NICKNAME_LEN).contains(&nickname.len())
        && nickname.bytes().all(|b| b.is_ascii_alphanumeric());
    ok.then_some(()).ok_or(FormatError::BadNickname)
}

/// Checks a version string: at most [`MAX_VERSION_LEN`] bytes of printable
/// ASCII (space to `~`).
pub fn check_version(version: &str) -> Result<(), FormatError> {
    let ok =
        version.len() <= MAX_VERSION_LEN && version.bytes().all(|b| (b' '..=b'~').contains(&b));
    ok.then_some(()).ok_or(FormatError::BadVersion)
}

/// Checks addresses: 1 to [`MAX_ADDRESSES`], strictly ascending, each with
/// a specified IP, a non-zero port, and no IPv6 flow info or scope id.
pub fn check_addresses(addresses: &[SocketAddr]) -> Result<(), FormatError> {
    if addresses.is_empty() {
        return Err(FormatError::Empty { field: "addresses" });
    }
    check_len("addresses", addresses.len(), MAX_ADDRESSES)?;
    check_ascending("addresses", addresses)?;
    for addr in addresses {
        let extra = match addr {
            SocketAddr::V4(_) => false,
            SocketAddr::V6(v6) => v6.flowinfo() != 0 || v6.scope_id() != 0,
        };
        if addr.ip().is_unspecified() || addr.port() == 0 || extra {
            return Err(FormatError::BadAddress(*addr));
        }
    }
    Ok(())
}

/// Checks a declared family: at most [`MAX_FAMILY`], strictly ascending,
/// without the relay itself.
pub fn check_family(identity: &RelayId, family: &[RelayId]) -> Result<(), FormatError> {
    check_len("family", family.len(), MAX_FAMILY)?;
    check_ascending("family", family)?;
    if family.binary_search(identity).is_ok() {
        return Err(FormatError::SelfInFamily(*identity));
    }
    Ok(())
}

/// Refuses more than `max` items.
pub(crate) fn check_len(field: &'static str, len: usize, max: usize) -> Result<(), FormatError> {
    if len > max {
        return Err(FormatError::TooMany { field, len, max });
    }
    Ok(())
}

/// Refuses anything but strictly ascending order.
pub(crate) fn check_ascending<T: Ord>(field: &'static str, items: &[T]) -> Result<(), FormatError> {
    if items.windows(2).all(|pair| pair[0] < pair[1]) {
        Ok(())
    } else {
        Err(FormatError::Unsorted { field })
    }
}

/// Sorts and removes duplicates: the builders' half of the canonical form.
pub(crate) fn sort_dedup<T: Ord>(items: &mut Vec<T>) {
    items.sort_unstable();
    items.dedup();
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn nicknames_are_short_ascii_alphanumerics() {
        assert_eq!(check_nickname("Relay42"), Ok(()));
        assert_eq!(check_nickname(&"a".repeat(19)), Ok(()));
        for bad in ["", "with space", "dash-ed", "é", &"a".repeat(20)] {
            assert_eq!(check_nickname(bad), Err(FormatError::BadNickname), "{bad}");
        }
    }

    #[test]
    fn addresses_must_be_sorted_specified_and_few() {
        let a: SocketAddr = "198.18.0.1:443".parse().unwrap();
        let b: SocketAddr = "[2001:db8::1]:443".parse().unwrap();
        assert_eq!(check_addresses(&[a, b]), Ok(()));
        assert!(check_addresses(&[b, a]).is_err());
        assert!(check_addresses(&[a, a]).is_err());
        assert!(check_addresses(&[]).is_err());
        assert!(check_addresses(&["0.0.0.0:443".parse().unwrap()]).is_err());
        assert!(check_addresses(&["198.18.0.1:0".parse().unwrap()]).is_err());
        let scoped = SocketAddr::V6(std::net::SocketAddrV6::new(
            "fe80::1".parse().unwrap(),
            443,
            0,
            2,
        ));
        assert_eq!(
            check_addresses(&[scoped]),
            Err(FormatError::BadAddress(scoped))
        );
    }

    #[test]
    fn versions_are_short_printable_ascii() {
        assert_eq!(check_version("trine 0.1.0"), Ok(()));
        assert_eq!(check_version(""), Ok(()));
        assert!(check_version("tab\there").is_err());
        assert!(check_version(&"v".repeat(33)).is_err());
    }
}
