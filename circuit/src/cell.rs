//! Wire formats: link cells (what travels on one link, between two adjacent
//! nodes) and relay messages (what one hop says to the client or the client
//! to one hop, inside the onion layers).
//!
//! ```text
//! link cell     = command:u8 | body
//!   CREATE      = 1 | handshake[96] | backward_seq_start:u64   (ntor ID | B | X)
//!   CREATED     = 2 | handshake[64]              (ntor Y | AUTH)
//!   DESTROY     = 3 | reason:u32
//!   RELAY       = 4 | seq:u64 | onion            (onion: see crate::onion)
//!   RELAY_EARLY = 5 | seq:u64 | onion            (may carry EXTEND; ≤ 8 per circuit)
//! relay message = command:u8 | body
//!   DATA 1 (raw IP packet) · PING 2 · PONG 3 · EXTEND 4 · EXTENDED 5 · END 6
//!   TRUNCATED 7 · PADDING 8 (ignored bytes)
//! ```
//! Command bytes, sequence numbers and the DATA payload are laid out by hand
//! (the data path). Every other body is a struct in the canonical
//! [`crate::codec`] encoding. All integers are big-endian.

use std::net::SocketAddr;

use bincode::{Decode, Encode};

use crate::codec::{self, CodecError};
use crate::keys::RelayId;
use crate::ntor::SERVER_MESSAGE_LEN;

/// Length of the client's ntor message in Trine: node id (32) | B | X.
pub const CREATE_HANDSHAKE_LEN: usize = 96;
/// Bytes before the onion in a RELAY cell: command and sequence number.
pub const RELAY_HEADER_LEN: usize = 1 + 8;
/// Offset of a DATA cell's IP packet within the cell buffer.
pub const DATA_OFFSET: usize = RELAY_HEADER_LEN + 1;
/// Largest link cell accepted or produced, in bytes.
pub const MAX_CELL_LEN: usize = 16 * 1024;
/// Most addresses an EXTEND may name.
pub const MAX_EXTEND_ADDRESSES: usize = 4;

/// Why bytes were not a valid cell or message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CellError {
    /// Zero bytes.
    #[error("empty cell")]
    Empty,
    /// More than [`MAX_CELL_LEN`] bytes.
    #[error("cell of {0} bytes exceeds the maximum")]
    TooLong(usize),
    /// Shorter than its fixed header.
    #[error("cell too short for its header")]
    TooShort,
    /// A command byte this version does not know.
    #[error("unknown {layer} command {command}")]
    UnknownCommand {
        /// "link" or "relay".
        layer: &'static str,
        /// The byte received.
        command: u8,
    },
    /// An EXTEND with no address or too many.
    #[error("EXTEND names {0} addresses (allowed: 1 to {MAX_EXTEND_ADDRESSES})")]
    BadAddressCount(usize),
    /// The body did not decode.
    #[error("bad body: {0}")]
    Body(#[from] CodecError),
}

/// Why a circuit, or part of one, ended. Carried by DESTROY, TRUNCATED and END.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Encode, Decode)]
pub enum Reason {
    /// Closed on request; nothing went wrong.
    Finished,
    /// A peer broke the protocol.
    Protocol,
    /// Something took too long (build, idle, extend).
    Timeout,
    /// A relay limit (circuits, rate, memory) was reached.
    ResourceLimit,
    /// The next relay could not be reached, or was not who it should be.
    ConnectFailed,
    /// The link to a neighbour closed.
    LinkClosed,
    /// An ntor handshake failed.
    HandshakeFailed,
    /// The last hop does not carry traffic out to the internet.
    NotAnExit,
    /// A relay hit an internal error.
    Internal,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Finished => "finished",
            Self::Protocol => "protocol violation",
            Self::Timeout => "timeout",
            Self::ResourceLimit => "resource limit",
            Self::ConnectFailed => "could not connect to next relay",
            Self::LinkClosed => "link closed",
            Self::HandshakeFailed => "handshake failed",
            Self::NotAnExit => "not an exit",
            Self::Internal => "internal error",
        })
    }
}

/// The body of CREATE.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct Create {
    /// The client's ntor message `ID | B | X`.
    pub handshake: [u8; CREATE_HANDSHAKE_LEN],
    /// Lowest sequence number the new hop may use for backward messages it
    /// originates: above everything earlier hops have sealed backward, so no
    /// earlier hop is ever asked to seal a sequence number twice. 0 from a
    /// client.
    pub backward_seq_start: u64,
}

/// Link cell command bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum LinkCommand {
    /// Start a circuit with the receiving relay.
    Create = 1,
    /// Answer to CREATE.
    Created = 2,
    /// Tear the circuit down.
    Destroy = 3,
    /// An onion cell.
    Relay = 4,
    /// An onion cell that may carry EXTEND (counted and limited).
    RelayEarly = 5,
}

impl LinkCommand {
    fn from_byte(command: u8) -> Result<Self, CellError> {
        Ok(match command {
            1 => Self::Create,
            2 => Self::Created,
            3 => Self::Destroy,
            4 => Self::Relay,
            5 => Self::RelayEarly,
            _ => {
                return Err(CellError::UnknownCommand {
                    layer: "link",
                    command,
                });
            }
        })
    }
}

/// A decoded link cell. RELAY cells are described, not copied: their onion
/// stays in the caller's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkCell {
    /// CREATE with the client's ntor message.
    Create(Box<Create>),
    /// CREATED with the relay's ntor reply.
    Created([u8; SERVER_MESSAGE_LEN]),
    /// DESTROY. A DESTROY whose reason does not decode still destroys.
    Destroy(Option<Reason>),
    /// RELAY or RELAY_EARLY.
    Relay {
        /// True for RELAY_EARLY.
        early: bool,
        /// The cell's sequence number.
        seq: u64,
    },
}

impl LinkCell {
    /// Decodes untrusted bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, CellError> {
        let (&command, body) = bytes.split_first().ok_or(CellError::Empty)?;
        if bytes.len() > MAX_CELL_LEN {
            return Err(CellError::TooLong(bytes.len()));
        }
        Ok(match LinkCommand::from_byte(command)? {
            LinkCommand::Create => Self::Create(Box::new(codec::decode(body, MAX_CELL_LEN)?)),
            LinkCommand::Created => Self::Created(codec::decode(body, MAX_CELL_LEN)?),
            LinkCommand::Destroy => Self::Destroy(codec::decode(body, MAX_CELL_LEN).ok()),
            command @ (LinkCommand::Relay | LinkCommand::RelayEarly) => {
                let seq = body
                    .get(..8)
                    .and_then(|bytes| bytes.try_into().ok())
                    .map(u64::from_be_bytes)
                    .ok_or(CellError::TooShort)?;
                Self::Relay {
                    early: command == LinkCommand::RelayEarly,
                    seq,
                }
            }
        })
    }

    /// Encodes a non-RELAY cell into `out` (cleared first). RELAY cells are
    /// built in place by [`begin_relay_cell`] and the onion functions.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.clear();
        match self {
            Self::Create(handshake) => {
                out.push(LinkCommand::Create as u8);
                codec::encode_into(handshake.as_ref(), out);
            }
            Self::Created(handshake) => {
                out.push(LinkCommand::Created as u8);
                codec::encode_into(handshake, out);
            }
            Self::Destroy(reason) => {
                out.push(LinkCommand::Destroy as u8);
                if let Some(reason) = reason {
                    codec::encode_into(reason, out);
                }
            }
            Self::Relay { early, seq } => begin_relay_cell(out, *early, *seq),
        }
    }

    /// Encodes into a fresh buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }
}

/// Clears `cell` and writes a RELAY (or RELAY_EARLY) header with `seq`;
/// the relay message follows.
pub fn begin_relay_cell(cell: &mut Vec<u8>, early: bool, seq: u64) {
    cell.clear();
    cell.push(if early {
        LinkCommand::RelayEarly as u8
    } else {
        LinkCommand::Relay as u8
    });
    cell.extend_from_slice(&seq.to_be_bytes());
}

/// Writes `seq` into an existing RELAY cell header.
pub(crate) fn set_relay_seq(cell: &mut [u8], seq: u64) {
    if let Some(field) = cell.get_mut(1..RELAY_HEADER_LEN) {
        field.copy_from_slice(&seq.to_be_bytes());
    }
}

/// Prepares `cell` as an unsealed DATA cell whose packet is `len` bytes and
/// returns the packet's slot, so a packet can be read straight into it (from
/// a TUN device, say). Reserve capacity once and reuse the buffer: this does
/// not allocate when `cell.capacity()` suffices.
pub fn data_cell_slot(cell: &mut Vec<u8>, len: usize) -> &mut [u8] {
    begin_relay_cell(cell, false, 0);
    cell.push(RelayCommand::Data as u8);
    cell.resize(DATA_OFFSET + len, 0);
    &mut cell[DATA_OFFSET..]
}

/// Prepares `cell` as an unsealed DATA cell carrying a copy of `packet`.
pub fn data_cell(cell: &mut Vec<u8>, packet: &[u8]) {
    begin_relay_cell(cell, false, 0);
    cell.push(RelayCommand::Data as u8);
    cell.extend_from_slice(packet);
}

/// Relay message command bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RelayCommand {
    /// One IP packet.
    Data = 1,
    /// Keepalive request.
    Ping = 2,
    /// Keepalive answer.
    Pong = 3,
    /// Ask the last hop to extend the circuit.
    Extend = 4,
    /// The extension succeeded.
    Extended = 5,
    /// The circuit's end-to-end session ends.
    End = 6,
    /// The circuit broke beyond the sending hop.
    Truncated = 7,
    /// Ignored filler.
    Padding = 8,
}

/// EXTEND: connect onward to `target` and run the enclosed handshake with it.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct Extend {
    /// Identity the next relay must prove (checked on the link's TLS).
    pub target: RelayId,
    /// Where to reach it (1 to [`MAX_EXTEND_ADDRESSES`]).
    pub addresses: Vec<SocketAddr>,
    /// The client's ntor message for the next relay.
    pub handshake: [u8; CREATE_HANDSHAKE_LEN],
}

/// A decoded relay message, borrowing from the cell for DATA and PADDING.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayMsg<'a> {
    /// One IP packet.
    Data(&'a [u8]),
    /// Keepalive request with an echo value.
    Ping(u64),
    /// Keepalive answer echoing the request.
    Pong(u64),
    /// Extend request.
    Extend(Box<Extend>),
    /// Extension reply: the next relay's ntor answer.
    Extended([u8; SERVER_MESSAGE_LEN]),
    /// End of the circuit's session.
    End(Reason),
    /// Circuit broken beyond the sender.
    Truncated(Reason),
    /// Filler of the given length.
    Padding(usize),
}

impl<'a> RelayMsg<'a> {
    /// Decodes an untrusted relay message.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, CellError> {
        let (&command, body) = bytes.split_first().ok_or(CellError::Empty)?;
        if bytes.len() > MAX_CELL_LEN {
            return Err(CellError::TooLong(bytes.len()));
        }
        let limit = codec::MAX_CONTROL_LEN;
        Ok(match command {
            1 => Self::Data(body),
            2 => Self::Ping(codec::decode(body, limit)?),
            3 => Self::Pong(codec::decode(body, limit)?),
            4 => {
                let extend: Extend = codec::decode(body, limit)?;
                let count = extend.addresses.len();
                if count == 0 || count > MAX_EXTEND_ADDRESSES {
                    return Err(CellError::BadAddressCount(count));
                }
                Self::Extend(Box::new(extend))
            }
            5 => Self::Extended(codec::decode(body, limit)?),
            6 => Self::End(codec::decode(body, limit)?),
            7 => Self::Truncated(codec::decode(body, limit)?),
            8 => Self::Padding(body.len()),
            _ => {
                return Err(CellError::UnknownCommand {
                    layer: "relay",
                    command,
                });
            }
        })
    }

    /// Appends this message's encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Self::Data(packet) => {
                out.push(RelayCommand::Data as u8);
                out.extend_from_slice(packet);
            }
            Self::Ping(echo) => {
                out.push(RelayCommand::Ping as u8);
                codec::encode_into(echo, out);
            }
            Self::Pong(echo) => {
                out.push(RelayCommand::Pong as u8);
                codec::encode_into(echo, out);
            }
            Self::Extend(extend) => {
                out.push(RelayCommand::Extend as u8);
                codec::encode_into(extend.as_ref(), out);
            }
            Self::Extended(reply) => {
                out.push(RelayCommand::Extended as u8);
                codec::encode_into(reply, out);
            }
            Self::End(reason) => {
                out.push(RelayCommand::End as u8);
                codec::encode_into(reason, out);
            }
            Self::Truncated(reason) => {
                out.push(RelayCommand::Truncated as u8);
                codec::encode_into(reason, out);
            }
            Self::Padding(len) => {
                out.push(RelayCommand::Padding as u8);
                out.resize(out.len() + len, 0);
            }
        }
    }

    /// Whether this message travels on the circuit's reliable stream
    /// (control) rather than as a datagram.
    pub fn is_control(&self) -> bool {
        !matches!(
            self,
            Self::Data(_) | Self::Ping(_) | Self::Pong(_) | Self::Padding(_)
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn data_cell_layout_is_fixed() {
        let mut cell = Vec::new();
        data_cell(&mut cell, b"packet");
        set_relay_seq(&mut cell, 0x0102_0304_0506_0708);
        assert_eq!(
            cell,
            [&[4u8, 1, 2, 3, 4, 5, 6, 7, 8, 1][..], b"packet"].concat()
        );
        assert_eq!(
            LinkCell::parse(&cell).unwrap(),
            LinkCell::Relay {
                early: false,
                seq: 0x0102_0304_0506_0708
            }
        );
        assert_eq!(
            RelayMsg::parse(&cell[RELAY_HEADER_LEN..]).unwrap(),
            RelayMsg::Data(b"packet")
        );
    }

    #[test]
    fn create_is_command_then_raw_handshake() {
        let cell = LinkCell::Create(Box::new(Create {
            handshake: [7; CREATE_HANDSHAKE_LEN],
            backward_seq_start: 0x0102,
        }))
        .to_bytes();
        assert_eq!(cell.len(), 1 + CREATE_HANDSHAKE_LEN + 8);
        assert_eq!(cell[0], 1);
        assert_eq!(&cell[1..97], &[7; CREATE_HANDSHAKE_LEN]);
        assert_eq!(&cell[97..], &[0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(LinkCell::parse(&cell[..50]).ok(), None);
    }

    #[test]
    fn destroy_with_unknown_reason_still_parses_as_destroy() {
        assert_eq!(
            LinkCell::parse(&[3, 0, 0, 0, 200]).unwrap(),
            LinkCell::Destroy(None)
        );
        assert_eq!(
            LinkCell::parse(&LinkCell::Destroy(Some(Reason::Timeout)).to_bytes()).unwrap(),
            LinkCell::Destroy(Some(Reason::Timeout))
        );
    }

    #[test]
    fn extend_address_count_is_bounded() {
        let mut extend = Extend {
            target: RelayId::from_bytes([1; 32]),
            addresses: vec![],
            handshake: [2; CREATE_HANDSHAKE_LEN],
        };
        let mut bytes = Vec::new();
        RelayMsg::Extend(Box::new(extend.clone())).encode_into(&mut bytes);
        assert_eq!(RelayMsg::parse(&bytes), Err(CellError::BadAddressCount(0)));
        extend.addresses = vec!["198.18.0.1:443".parse().unwrap(); 5];
        bytes.clear();
        RelayMsg::Extend(Box::new(extend)).encode_into(&mut bytes);
        assert_eq!(RelayMsg::parse(&bytes), Err(CellError::BadAddressCount(5)));
    }

    #[test]
    fn extend_layout_matches_the_protocol_document() {
        let extend = Extend {
            target: RelayId::from_bytes([0xaa; 32]),
            addresses: vec!["198.18.0.1:443".parse().unwrap()],
            handshake: [0xbb; CREATE_HANDSHAKE_LEN],
        };
        let mut bytes = Vec::new();
        RelayMsg::Extend(Box::new(extend)).encode_into(&mut bytes);
        let expected = [
            &[4u8][..],
            &[0xaa; 32],
            &1u64.to_be_bytes(),
            &0u32.to_be_bytes(),
            &[198, 18, 0, 1],
            &443u16.to_be_bytes(),
            &[0xbb; CREATE_HANDSHAKE_LEN],
        ]
        .concat();
        assert_eq!(bytes, expected);
        let mut end = Vec::new();
        RelayMsg::End(Reason::ConnectFailed).encode_into(&mut end);
        assert_eq!(end, [6, 0, 0, 0, 4]);
    }

    #[test]
    fn unknown_commands_are_typed_errors() {
        assert_eq!(
            LinkCell::parse(&[99]),
            Err(CellError::UnknownCommand {
                layer: "link",
                command: 99
            })
        );
        assert_eq!(
            RelayMsg::parse(&[0]),
            Err(CellError::UnknownCommand {
                layer: "relay",
                command: 0
            })
        );
        assert_eq!(LinkCell::parse(&[]), Err(CellError::Empty));
        assert_eq!(LinkCell::parse(&[4, 1, 2]), Err(CellError::TooShort));
    }
}
