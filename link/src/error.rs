//! [`LinkError`], the one error type of this crate, and the smaller errors it
//! wraps ([`TagError`], [`CertError`]).

use std::io;
use std::net::SocketAddr;

use trine_circuit::RelayId;

/// Why a datagram's circuit tag could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    /// The datagram ended inside its varint tag (an empty datagram has no
    /// tag at all: `needed` 1, `got` 0).
    #[error("datagram ends inside its circuit tag: need {needed} bytes, have {got}")]
    Truncated {
        /// Bytes the tag's length prefix announced (1, 2, 4 or 8).
        needed: usize,
        /// Bytes the datagram had.
        got: usize,
    },
}

/// Why a peer's certificate cannot name a Trine node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    /// The certificate is not valid X.509 DER.
    #[error("certificate is not valid DER X.509")]
    Malformed,
    /// The certificate's key is not an Ed25519 key.
    #[error("certificate key is not Ed25519")]
    NotEd25519,
}

/// Everything that can go wrong on a link.
///
/// Errors from [`Link::read_datagram`](crate::Link::read_datagram) about one
/// malformed datagram ([`LinkError::Tag`]) leave the link usable; so do
/// [`LinkError::DatagramTooLarge`] and the per-circuit errors
/// ([`LinkError::CellTooLarge`], [`LinkError::TruncatedCell`],
/// [`LinkError::StreamRead`], [`LinkError::StreamWrite`] other than a lost
/// connection), which end only that circuit. Use [`LinkError::is_link_lost`]
/// to tell.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// A [`LinkConfig`](crate::LinkConfig) value is out of range.
    #[error("invalid link configuration: {0}")]
    InvalidConfig(&'static str),
    /// The UDP socket could not be bound (or no tokio runtime is running).
    #[error("cannot bind QUIC endpoint to {addr}: {source}")]
    Bind {
        /// The requested address.
        addr: SocketAddr,
        /// The underlying error.
        source: io::Error,
    },
    /// The endpoint's socket address could not be read.
    #[error("cannot read the endpoint's local address: {0}")]
    LocalAddr(#[source] io::Error),
    /// The self-signed link certificate could not be built.
    #[error("cannot build the link certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// rustls refused the TLS configuration.
    #[error("TLS configuration refused: {0}")]
    Tls(#[from] rustls::Error),
    /// quinn refused to start a connection (endpoint closing, bad address…).
    #[error("cannot dial {addr}: {source}")]
    Connect {
        /// The address dialled.
        addr: SocketAddr,
        /// The underlying error.
        source: quinn::ConnectError,
    },
    /// The dialled node proved a different identity than expected: wrong
    /// address in the directory, a re-keyed relay, or an impostor.
    #[error("relay at {addr} presented identity {presented}, expected {expected}")]
    WrongIdentity {
        /// The address dialled.
        addr: SocketAddr,
        /// The identity the caller asked for.
        expected: RelayId,
        /// The identity in the peer's certificate.
        presented: RelayId,
    },
    /// The peer's certificate does not carry a usable Ed25519 identity.
    #[error("peer at {addr} presented an unusable certificate: {reason}")]
    BadCertificate {
        /// The peer's address.
        addr: SocketAddr,
        /// What is wrong with it.
        reason: CertError,
    },
    /// The QUIC/TLS handshake failed for another reason (timeout, ALPN
    /// mismatch, bad handshake signature, refused client certificate…).
    #[error("handshake with {addr} failed: {source}")]
    Handshake {
        /// The peer's address.
        addr: SocketAddr,
        /// The underlying error.
        source: quinn::ConnectionError,
    },
    /// The link is closed or lost; every circuit on it is gone.
    #[error("link to {addr} lost: {source}")]
    Connection {
        /// The peer's address.
        addr: SocketAddr,
        /// The underlying error.
        source: quinn::ConnectionError,
    },
    /// A datagram (circuit tag + cell) does not fit the link's current
    /// maximum. Nothing was sent.
    #[error("datagram of {size} bytes exceeds the link's current maximum of {max} bytes")]
    DatagramTooLarge {
        /// Tag plus cell, in bytes.
        size: usize,
        /// The connection's current `max_datagram_size`.
        max: usize,
    },
    /// The peer did not enable QUIC DATAGRAM frames.
    #[error("the peer does not accept QUIC datagrams")]
    DatagramsUnsupported,
    /// A circuit id above 2^62 - 1 cannot be a QUIC stream id or a varint.
    #[error("circuit id {0} does not fit a QUIC varint")]
    CircuitIdOutOfRange(u64),
    /// A received datagram's circuit tag is malformed. The link is fine.
    #[error("malformed datagram from the peer: {0}")]
    Tag(#[from] TagError),
    /// A control cell is longer than [`MAX_CONTROL_CELL_LEN`](crate::MAX_CONTROL_CELL_LEN).
    #[error("cell of {len} bytes on circuit {circuit} exceeds the {max}-byte limit")]
    CellTooLarge {
        /// The circuit (stream id).
        circuit: u64,
        /// The cell's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The peer finished the circuit's stream in the middle of a cell.
    #[error("circuit {circuit} ended in the middle of a cell ({got} of {expected} bytes)")]
    TruncatedCell {
        /// The circuit (stream id).
        circuit: u64,
        /// Bytes the frame needed (2 for the length prefix, else the cell length).
        expected: usize,
        /// Bytes received.
        got: usize,
    },
    /// A request/response message had a cell without the message byte.
    #[error("malformed message on a request/response stream")]
    MessageMalformed,
    /// A request/response message was longer than the reader allows.
    #[error("message longer than {limit} bytes")]
    MessageTooLarge {
        /// The reader's limit.
        limit: usize,
    },
    /// The peer finished a request/response stream without answering.
    #[error("the peer closed the exchange without a response")]
    MessageTruncated,
    /// Writing a control cell failed (the peer stopped the stream, or the
    /// link is lost).
    #[error("cannot write to circuit {circuit}: {source}")]
    StreamWrite {
        /// The circuit (stream id).
        circuit: u64,
        /// The underlying error.
        source: quinn::WriteError,
    },
    /// Reading a control cell failed (the peer reset the stream, or the link
    /// is lost).
    #[error("cannot read from circuit {circuit}: {source}")]
    StreamRead {
        /// The circuit (stream id).
        circuit: u64,
        /// The underlying error.
        source: quinn::ReadError,
    },
}

impl LinkError {
    /// True when the error means the whole link (QUIC connection) is gone, so
    /// every circuit on it must be torn down and the link dropped.
    pub fn is_link_lost(&self) -> bool {
        matches!(
            self,
            Self::Connection { .. }
                | Self::StreamWrite {
                    source: quinn::WriteError::ConnectionLost(_),
                    ..
                }
                | Self::StreamRead {
                    source: quinn::ReadError::ConnectionLost(_),
                    ..
                }
        )
    }
}
