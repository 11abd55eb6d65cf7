//! [`Link`]: one QUIC connection between two nodes, shared by every circuit
//! between them. Circuits are streams ([`CircuitStream`]); their data cells
//! are datagrams tagged with the circuit's stream id.

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use trine_circuit::RelayId;

use crate::error::LinkError;
use crate::stream::CircuitStream;
use crate::tag;

/// A link to one peer. Cheap to clone: every clone is the same connection,
/// so one link can serve all circuits to that peer from many tasks.
#[derive(Debug, Clone)]
pub struct Link {
    conn: quinn::Connection,
    peer: Option<RelayId>,
}

impl Link {
    pub(crate) fn new(conn: quinn::Connection, peer: Option<RelayId>) -> Self {
        Self { conn, peer }
    }

    /// The peer's verified identity: the relay dialled, or on an accepted
    /// link the relay that presented a client certificate. `None` for a
    /// client, which presents no identity.
    pub fn peer_identity(&self) -> Option<RelayId> {
        self.peer
    }

    /// The peer's current UDP address.
    pub fn remote_address(&self) -> SocketAddr {
        self.conn.remote_address()
    }

    /// Opens a new circuit on this link, waiting while the peer's circuit
    /// limit ([`LinkConfig::max_circuits_per_link`](crate::LinkConfig)) is
    /// reached. The peer learns of it with the first cell written.
    pub async fn open_circuit(&self) -> Result<CircuitStream, LinkError> {
        let (send, recv) = self.conn.open_bi().await.map_err(|e| self.lost(e))?;
        Ok(CircuitStream::new(send, recv))
    }

    /// Waits for the peer to open a circuit (and send its first cell).
    /// Fails only when the link is closed or lost.
    pub async fn accept_circuit(&self) -> Result<CircuitStream, LinkError> {
        let (send, recv) = self.conn.accept_bi().await.map_err(|e| self.lost(e))?;
        Ok(CircuitStream::new(send, recv))
    }

    /// Sends a data cell for `circuit_id` as one QUIC datagram, without
    /// waiting. Delivery is unreliable: if the send buffer is full, the
    /// oldest queued datagrams are dropped.
    ///
    /// A datagram that does not fit is refused, not lost: the error
    /// [`LinkError::DatagramTooLarge`] carries the current maximum; use
    /// [`max_cell_len`](Self::max_cell_len) for the limit on the cell itself.
    pub fn send_datagram(&self, circuit_id: u64, cell: &[u8]) -> Result<(), LinkError> {
        let size = tag::encoded_len(circuit_id)? + cell.len();
        let max = self
            .conn
            .max_datagram_size()
            .ok_or(LinkError::DatagramsUnsupported)?;
        if size > max {
            return Err(LinkError::DatagramTooLarge { size, max });
        }
        // One exact-size allocation and one copy of the cell per datagram:
        // quinn keeps the `Bytes` until it is sent, so a buffer cannot be
        // reused here without the caller handing over ownership.
        let mut datagram = BytesMut::with_capacity(size);
        tag::encode(circuit_id, &mut datagram)?;
        datagram.extend_from_slice(cell);
        self.conn
            .send_datagram(datagram.freeze())
            .map_err(|error| match error {
                quinn::SendDatagramError::TooLarge => LinkError::DatagramTooLarge {
                    // The path MTU shrank since the check above.
                    size,
                    max: self.conn.max_datagram_size().unwrap_or(0),
                },
                quinn::SendDatagramError::UnsupportedByPeer
                | quinn::SendDatagramError::Disabled => LinkError::DatagramsUnsupported,
                quinn::SendDatagramError::ConnectionLost(e) => self.lost(e),
            })
    }

    /// Waits for the next datagram: the circuit id it is tagged with and the
    /// cell (a view into the received buffer, no copy).
    ///
    /// A malformed tag gives [`LinkError::Tag`] for that datagram only; keep
    /// reading. Any other error means the link is gone. The id is the
    /// peer's claim: look it up among this link's circuits and drop the
    /// cell if there is none.
    pub async fn read_datagram(&self) -> Result<(u64, Bytes), LinkError> {
        let datagram = self.conn.read_datagram().await.map_err(|e| self.lost(e))?;
        let (circuit_id, tag_len) = tag::decode(&datagram)?;
        Ok((circuit_id, datagram.slice(tag_len..)))
    }

    /// The largest datagram (tag + cell) the link accepts right now; it
    /// follows path-MTU discovery. `None` if the peer refuses datagrams.
    pub fn max_datagram_size(&self) -> Option<usize> {
        self.conn.max_datagram_size()
    }

    /// The largest data cell [`send_datagram`](Self::send_datagram) accepts
    /// for `circuit_id` right now (the maximum less that id's tag).
    pub fn max_cell_len(&self, circuit_id: u64) -> Option<usize> {
        let tag_len = tag::encoded_len(circuit_id).ok()?;
        self.max_datagram_size()?.checked_sub(tag_len)
    }

    /// Closes the link at once, destroying every circuit on it. `reason` is
    /// sent to the peer (keep it short; it is for logs).
    pub fn close(&self, reason: &str) {
        self.conn
            .close(quinn::VarInt::from_u32(0), reason.as_bytes());
    }

    /// Waits until the link is closed by either side or lost, and says why.
    pub async fn closed(&self) -> LinkError {
        let error = self.conn.closed().await;
        self.lost(error)
    }

    fn lost(&self, source: quinn::ConnectionError) -> LinkError {
        LinkError::Connection {
            addr: self.conn.remote_address(),
            source,
        }
    }
}
