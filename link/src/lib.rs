//! trine-link: QUIC links between Trine nodes (see README.md, included below).
#![doc = include_str!("../README.md")]

mod config;
mod endpoint;
mod error;
mod link;
pub mod message;
mod stream;
pub mod tag;
mod tls;

pub use config::{ALPN, DEFAULT_INITIAL_MTU, LinkConfig};
pub use endpoint::{Endpoint, Incoming};
pub use error::{CertError, LinkError, TagError};
pub use link::Link;
pub use stream::{CircuitReceiver, CircuitSender, CircuitStream, MAX_CONTROL_CELL_LEN};
