//! [`CircuitStream`]: one circuit on one link, a QUIC bidirectional stream
//! carrying the circuit's control cells, each framed by a big-endian `u16`
//! length. Split it into a [`CircuitSender`] and a [`CircuitReceiver`] to
//! read and write from different tasks.

use crate::error::LinkError;

/// The largest control cell a circuit stream carries (the frame's `u16`
/// length never exceeds it), equal to `trine_circuit::cell::MAX_CELL_LEN`.
pub const MAX_CONTROL_CELL_LEN: usize = trine_circuit::cell::MAX_CELL_LEN;

/// Bytes of the length prefix in front of every control cell.
const FRAME_HEADER_LEN: usize = 2;

/// A circuit's control channel on one link.
///
/// The circuit's id is its QUIC stream id, the same on both ends of the link
/// and only meaningful on it; data cells for the circuit travel as datagrams
/// tagged with it ([`Link::send_datagram`](crate::Link::send_datagram)).
///
/// A freshly opened stream is invisible to the peer until the first
/// [`write_cell`](Self::write_cell). Finishing or resetting the stream (or
/// dropping it, which finishes) destroys the circuit on this link.
#[derive(Debug)]
pub struct CircuitStream {
    send: CircuitSender,
    recv: CircuitReceiver,
}

impl CircuitStream {
    pub(crate) fn new(send: quinn::SendStream, recv: quinn::RecvStream) -> Self {
        let id = u64::from(send.id());
        Self {
            send: CircuitSender { id, send },
            recv: CircuitReceiver::new(id, recv),
        }
    }

    /// The circuit's id on this link: its QUIC stream id.
    pub fn id(&self) -> u64 {
        self.send.id
    }

    /// Sends one control cell. See [`CircuitSender::write_cell`].
    pub async fn write_cell(&mut self, cell: &[u8]) -> Result<(), LinkError> {
        self.send.write_cell(cell).await
    }

    /// Receives one control cell. See [`CircuitReceiver::read_cell`].
    pub async fn read_cell(&mut self, buf: &mut Vec<u8>) -> Result<bool, LinkError> {
        self.recv.read_cell(buf).await
    }

    /// Ends our direction cleanly: the peer reads the cells already written,
    /// then sees the end. See [`CircuitSender::finish`].
    pub fn finish(&mut self) {
        self.send.finish();
    }

    /// Abandons the circuit in both directions at once with an application
    /// error `code`: unsent cells are discarded, the peer's reads fail.
    pub fn reset(&mut self, code: u32) {
        self.send.reset(code);
        self.recv.stop(code);
    }

    /// Splits into halves that can be moved to different tasks.
    pub fn split(self) -> (CircuitSender, CircuitReceiver) {
        (self.send, self.recv)
    }
}

/// The sending half of a [`CircuitStream`].
#[derive(Debug)]
pub struct CircuitSender {
    id: u64,
    send: quinn::SendStream,
}

impl CircuitSender {
    /// The circuit's id on this link.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Sends one control cell (at most [`MAX_CONTROL_CELL_LEN`] bytes),
    /// waiting while the stream's flow control is full.
    ///
    /// Not cancel-safe: dropping the future part-way may leave half a frame
    /// on the stream, after which the circuit must be reset.
    pub async fn write_cell(&mut self, cell: &[u8]) -> Result<(), LinkError> {
        let len = u16::try_from(cell.len())
            .ok()
            .filter(|&len| usize::from(len) <= MAX_CONTROL_CELL_LEN)
            .ok_or(LinkError::CellTooLarge {
                circuit: self.id,
                len: cell.len(),
                max: MAX_CONTROL_CELL_LEN,
            })?;
        let circuit = self.id;
        let map = |source| LinkError::StreamWrite { circuit, source };
        // Two writes into quinn's stream buffer, no copy of the cell; they
        // normally leave in one packet.
        self.send.write_all(&len.to_be_bytes()).await.map_err(map)?;
        self.send.write_all(cell).await.map_err(map)
    }

    /// Ends our direction cleanly. The peer's
    /// [`read_cell`](CircuitReceiver::read_cell) returns `Ok(false)` after the
    /// last cell. Finishing twice, or after a reset, does nothing.
    pub fn finish(&mut self) {
        // The only error is "already finished or reset", which is the goal.
        let _ = self.send.finish();
    }

    /// Abandons our direction with an application error `code`; the peer's
    /// reads fail with [`LinkError::StreamRead`].
    pub fn reset(&mut self, code: u32) {
        let _ = self.send.reset(quinn::VarInt::from_u32(code));
    }
}

/// The receiving half of a [`CircuitStream`].
#[derive(Debug)]
pub struct CircuitReceiver {
    id: u64,
    recv: quinn::RecvStream,
    /// The current frame's length prefix and how much of it has arrived.
    header: [u8; FRAME_HEADER_LEN],
    header_filled: usize,
    /// The current frame's body once the prefix is complete, and how much
    /// of it has arrived. Kept here so `read_cell` is cancel-safe.
    in_body: bool,
    body: Vec<u8>,
    body_filled: usize,
}

impl CircuitReceiver {
    fn new(id: u64, recv: quinn::RecvStream) -> Self {
        Self {
            id,
            recv,
            header: [0; FRAME_HEADER_LEN],
            header_filled: 0,
            in_body: false,
            body: Vec::new(),
            body_filled: 0,
        }
    }

    /// The circuit's id on this link.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Receives one control cell into `buf` (replacing its contents).
    ///
    /// Returns `Ok(true)` with a cell, or `Ok(false)` when the peer finished
    /// its direction cleanly between cells: the circuit is gone. A reset
    /// stream, a lost link, a cell over [`MAX_CONTROL_CELL_LEN`] or a stream
    /// ending mid-cell is an error; the circuit is then unusable too.
    ///
    /// Cancel-safe: a partly received cell is kept inside and completed by
    /// the next call, so this can sit in a `tokio::select!` loop. `buf`'s
    /// allocation is recycled for later cells.
    pub async fn read_cell(&mut self, buf: &mut Vec<u8>) -> Result<bool, LinkError> {
        let circuit = self.id;
        let map = |source| LinkError::StreamRead { circuit, source };
        loop {
            if !self.in_body {
                if self.header_filled < FRAME_HEADER_LEN {
                    let read = self.recv.read(&mut self.header[self.header_filled..]).await;
                    match read.map_err(map)? {
                        Some(n) => self.header_filled += n,
                        None if self.header_filled == 0 => return Ok(false),
                        None => {
                            return Err(LinkError::TruncatedCell {
                                circuit,
                                expected: FRAME_HEADER_LEN,
                                got: self.header_filled,
                            });
                        }
                    }
                    continue;
                }
                let len = usize::from(u16::from_be_bytes(self.header));
                if len > MAX_CONTROL_CELL_LEN {
                    return Err(LinkError::CellTooLarge {
                        circuit,
                        len,
                        max: MAX_CONTROL_CELL_LEN,
                    });
                }
                self.body.clear();
                self.body.resize(len, 0);
                self.body_filled = 0;
                self.in_body = true;
            }
            if self.body_filled < self.body.len() {
                let read = self.recv.read(&mut self.body[self.body_filled..]).await;
                match read.map_err(map)? {
                    Some(n) => self.body_filled += n,
                    None => {
                        return Err(LinkError::TruncatedCell {
                            circuit,
                            expected: self.body.len(),
                            got: self.body_filled,
                        });
                    }
                }
                continue;
            }
            self.in_body = false;
            self.header_filled = 0;
            // Hand over the cell; keep the caller's old buffer for the next.
            std::mem::swap(buf, &mut self.body);
            return Ok(true);
        }
    }

    /// Tells the peer to stop sending on this circuit, with an application
    /// error `code`; its writes fail with [`LinkError::StreamWrite`].
    pub fn stop(&mut self, code: u32) {
        let _ = self.recv.stop(quinn::VarInt::from_u32(code));
    }
}
