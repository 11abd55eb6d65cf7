//! The exit-policy summary a relay publishes in its descriptor and the
//! consensus repeats: whether it lets general traffic out, and which port
//! ranges it refuses even then. Clients pick exits by it; the exit's full
//! policy (networks, explicit allows) stays in the relay's own config.
//!
//! Canonical form: ranges sorted, each `first <= last`, neither overlapping
//! nor touching (`a.last + 1 < b.first`), at most [`MAX_REJECT_RANGES`],
//! and none at all when `allows_general` is false. [`ExitSummary::new`]
//! normalizes any input to that form; decoders refuse anything else.

use bincode::de::Decoder;
use bincode::enc::Encoder;
use bincode::error::{DecodeError, EncodeError};
use bincode::{Decode, Encode};

use crate::rules::FormatError;

/// Most port ranges one summary may refuse.
pub const MAX_REJECT_RANGES: usize = 16;

/// An inclusive range of TCP/UDP ports, `first..=last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub struct PortRange {
    /// First port in the range.
    pub first: u16,
    /// Last port in the range (inclusive).
    pub last: u16,
}

impl PortRange {
    /// `first..=last`; `None` if `first > last`.
    pub fn new(first: u16, last: u16) -> Option<Self> {
        (first <= last).then_some(Self { first, last })
    }

    /// The range holding only `port`.
    pub fn single(port: u16) -> Self {
        Self {
            first: port,
            last: port,
        }
    }

    /// Whether `port` lies inside.
    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

/// What an exit lets out, in the compact form clients choose exits by.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ExitSummary {
    /// Whether the relay exits general traffic to public addresses at all.
    /// `false` for a middle-only relay.
    pub allows_general: bool,
    /// Ports refused even when `allows_general` (canonical form: see the
    /// module documentation).
    pub reject_ports: Vec<PortRange>,
}

impl ExitSummary {
    /// A relay that exits nothing.
    pub const REJECT_ALL: Self = Self {
        allows_general: false,
        reject_ports: Vec::new(),
    };

    /// A summary in canonical form: ranges sorted and merged where they
    /// overlap or touch; dropped entirely if `allows_general` is false.
    /// The result may still hold more than [`MAX_REJECT_RANGES`] ranges,
    /// which [`ExitSummary::validate`] refuses.
    pub fn new(allows_general: bool, mut reject_ports: Vec<PortRange>) -> Self {
        if !allows_general {
            return Self::REJECT_ALL;
        }
        reject_ports.retain(|range| range.first <= range.last);
        reject_ports.sort_unstable();
        let mut merged: Vec<PortRange> = Vec::with_capacity(reject_ports.len());
        for range in reject_ports {
            match merged.last_mut() {
                Some(last) if u32::from(range.first) <= u32::from(last.last) + 1 => {
                    last.last = last.last.max(range.last);
                }
                _ => merged.push(range),
            }
        }
        Self {
            allows_general,
            reject_ports: merged,
        }
    }

    /// Whether a connection to a public address on `port` may leave.
    pub fn allows_port(&self, port: u16) -> bool {
        self.allows_general && !self.reject_ports.iter().any(|range| range.contains(port))
    }

    /// Checks the canonical form.
    pub fn validate(&self) -> Result<(), FormatError> {
        if !self.allows_general && !self.reject_ports.is_empty() {
            return Err(FormatError::BadExitSummary);
        }
        if self.reject_ports.len() > MAX_REJECT_RANGES {
            return Err(FormatError::TooMany {
                field: "exit reject_ports",
                len: self.reject_ports.len(),
                max: MAX_REJECT_RANGES,
            });
        }
        if self.reject_ports.iter().any(|r| r.first > r.last) {
            return Err(FormatError::BadExitSummary);
        }
        let separated = self
            .reject_ports
            .windows(2)
            .all(|pair| u32::from(pair[0].last) + 1 < u32::from(pair[1].first));
        if !separated {
            return Err(FormatError::Unsorted {
                field: "exit reject_ports",
            });
        }
        Ok(())
    }
}

/// Encoding: one byte, 0 for a relay that exits nothing, else 1 + the
/// number of ranges; then the ranges (4 bytes each). A reject-all summary
/// with ranges cannot be written at all.
impl Encode for ExitSummary {
    fn encode<E: Encoder>(&self, encoder: &mut E) -> Result<(), EncodeError> {
        if !self.allows_general {
            return 0u8.encode(encoder);
        }
        let header = u8::try_from(self.reject_ports.len() + 1)
            .map_err(|_| EncodeError::Other("too many port ranges"))?;
        header.encode(encoder)?;
        self.reject_ports
            .iter()
            .try_for_each(|range| range.encode(encoder))
    }
}

impl<C> Decode<C> for ExitSummary {
    fn decode<D: Decoder<Context = C>>(decoder: &mut D) -> Result<Self, DecodeError> {
        let header = u8::decode(decoder)?;
        if header == 0 {
            return Ok(Self::REJECT_ALL);
        }
        let reject_ports = (1..header)
            .map(|_| PortRange::decode(decoder))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            allows_general: true,
            reject_ports,
        })
    }
}
bincode::impl_borrow_decode!(ExitSummary);

#[cfg(test)]
mod tests {
    use super::*;

    fn range(first: u16, last: u16) -> PortRange {
        PortRange { first, last }
    }

    #[test]
    fn new_sorts_and_merges_overlapping_and_touching_ranges() {
        let summary = ExitSummary::new(
            true,
            vec![range(30, 40), range(1, 10), range(11, 12), range(35, 50)],
        );
        assert_eq!(summary.reject_ports, vec![range(1, 12), range(30, 50)]);
        assert_eq!(summary.validate(), Ok(()));
        assert!(summary.allows_port(443) && !summary.allows_port(12));
        assert_eq!(
            ExitSummary::new(false, vec![range(1, 2)]),
            ExitSummary::REJECT_ALL
        );
        assert!(!ExitSummary::REJECT_ALL.allows_port(80));
    }

    #[test]
    fn validate_refuses_non_canonical_summaries() {
        let touching = ExitSummary {
            allows_general: true,
            reject_ports: vec![range(1, 10), range(11, 12)],
        };
        assert!(touching.validate().is_err());
        let reject_all_with_ranges = ExitSummary {
            allows_general: false,
            reject_ports: vec![range(1, 10)],
        };
        assert_eq!(
            reject_all_with_ranges.validate(),
            Err(FormatError::BadExitSummary)
        );
        let top = ExitSummary::new(true, vec![range(65_535, 65_535), range(1, 65_534)]);
        assert_eq!(top.reject_ports, vec![range(1, 65_535)]);
    }

    #[test]
    fn the_encoding_is_one_header_byte_then_the_ranges() {
        use trine_circuit::codec;
        assert_eq!(codec::encode(&ExitSummary::REJECT_ALL), vec![0]);
        let open = ExitSummary::new(true, Vec::new());
        assert_eq!(codec::encode(&open), vec![1]);
        let some = ExitSummary::new(true, vec![range(25, 25), range(6_881, 6_999)]);
        let bytes = codec::encode(&some);
        assert_eq!(bytes, vec![3, 0, 25, 0, 25, 0x1a, 0xe1, 0x1b, 0x57]);
        assert_eq!(codec::decode::<ExitSummary>(&bytes, 64), Ok(some));
        assert_eq!(
            codec::decode::<ExitSummary>(&[0], 64),
            Ok(ExitSummary::REJECT_ALL)
        );
        assert!(codec::decode::<ExitSummary>(&[2, 0, 1], 64).is_err());
    }
}
