#![doc = include_str!("../README.md")]

pub mod aead;
pub mod cell;
pub mod client;
pub mod codec;
pub mod ip;
pub mod keys;
pub mod memnet;
pub mod ntor;
pub mod onion;
pub mod relay;
pub mod replay;

pub use cell::Reason;
pub use client::{ClientCircuit, ClientConfig, ClientEvent, HopSpec};
pub use keys::{IdentityKey, OnionKeyCert, OnionPublicKey, OnionSecretKey, RelayId};
pub use relay::{CircuitHandle, CircuitRef, RelayAction, RelayConfig, RelayEvent, RelayTable};

/// How a cell travels on a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// The circuit's reliable, ordered stream: CREATE, CREATED, DESTROY,
    /// EXTEND, EXTENDED, TRUNCATED, END.
    Control,
    /// An unreliable datagram: DATA, PING, PONG, PADDING.
    Datagram,
}

/// A cell a [`ClientCircuit`] wants sent to its first hop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Stream or datagram.
    pub channel: Channel,
    /// The link cell.
    pub bytes: Vec<u8>,
}
