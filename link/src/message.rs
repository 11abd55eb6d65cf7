//! Request/response exchanges on a link, beside circuits: the directory
//! (descriptor uploads, votes, consensus downloads) uses them.
//!
//! An exchange is one bidirectional stream whose cells all start with
//! [`MESSAGE_CELL`], a byte no circuit cell starts with, so the acceptor
//! tells an exchange from a circuit by its first cell. A message is the
//! concatenation of its cells' payloads (after that byte), ended by the
//! sender finishing its direction: the requester writes the request and
//! finishes, the responder reads it, writes the response and finishes.
//! Messages are bounded by a limit the reader chooses.

use crate::error::LinkError;
use crate::link::Link;
use crate::stream::{CircuitStream, MAX_CONTROL_CELL_LEN};

/// First byte of every cell of a request/response stream. Circuit link
/// cells use 1 to 5 (`trine_circuit::cell::LinkCommand`).
pub const MESSAGE_CELL: u8 = 0x20;

/// Payload bytes per cell.
const CHUNK: usize = MAX_CONTROL_CELL_LEN - 1;

/// Whether `cell` (the first of a new stream) starts an exchange rather
/// than a circuit.
pub fn is_message_cell(cell: &[u8]) -> bool {
    cell.first() == Some(&MESSAGE_CELL)
}

impl Link {
    /// Sends `request` on a new stream and returns the peer's response (at
    /// most `limit` bytes).
    pub async fn request(&self, request: &[u8], limit: usize) -> Result<Vec<u8>, LinkError> {
        let mut stream = self.open_circuit().await?;
        write_message(&mut stream, request).await?;
        let mut first = Vec::new();
        if !stream.read_cell(&mut first).await? {
            return Err(LinkError::MessageTruncated);
        }
        read_message(&mut stream, first, limit).await
    }
}

/// Writes `message` as cells and finishes the stream's sending direction.
pub async fn write_message(stream: &mut CircuitStream, message: &[u8]) -> Result<(), LinkError> {
    let mut cell = Vec::with_capacity(MAX_CONTROL_CELL_LEN);
    let mut chunks = message.chunks(CHUNK);
    // An empty message is still one cell, so the reader sees an exchange.
    let first = chunks.next().unwrap_or_default();
    for chunk in std::iter::once(first).chain(chunks) {
        cell.clear();
        cell.push(MESSAGE_CELL);
        cell.extend_from_slice(chunk);
        stream.write_cell(&cell).await?;
    }
    stream.finish();
    Ok(())
}

/// Reads a message whose first cell, `first`, was already read, until the
/// peer finishes. Refuses more than `limit` bytes and cells without the
/// [`MESSAGE_CELL`] byte.
pub async fn read_message(
    stream: &mut CircuitStream,
    first: Vec<u8>,
    limit: usize,
) -> Result<Vec<u8>, LinkError> {
    let mut message = Vec::new();
    let mut cell = first;
    loop {
        let Some((&MESSAGE_CELL, payload)) = cell.split_first() else {
            return Err(LinkError::MessageMalformed);
        };
        if message.len() + payload.len() > limit {
            return Err(LinkError::MessageTooLarge { limit });
        }
        message.extend_from_slice(payload);
        if !stream.read_cell(&mut cell).await? {
            return Ok(message);
        }
    }
}
