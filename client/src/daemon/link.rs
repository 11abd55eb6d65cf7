//! The I/O around one client circuit: dialing its guard on a link of its
//! own, and two tasks that move its cells (one writes control cells to the
//! circuit's stream, one reads the stream and the link's datagrams and
//! hands every cell to the engine). The protocol itself stays in
//! `trine_circuit::ClientCircuit`, owned by the engine.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use trine_circuit::{Channel, HopSpec, Transmit};
use trine_link::{CircuitStream, Endpoint, Link};

/// How long one dial of the guard may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// What the I/O tasks tell the engine; `generation` names the circuit.
#[derive(Debug)]
pub enum CircuitIo {
    /// The link to the guard is up (or could not be made).
    Dialed {
        /// The circuit.
        generation: u64,
        /// The link and the circuit's stream on it, or why not.
        result: Result<(Link, CircuitStream), String>,
    },
    /// A cell from the guard.
    Cell {
        /// The circuit.
        generation: u64,
        /// The link cell.
        cell: Vec<u8>,
    },
    /// The link or the stream ended.
    Gone {
        /// The circuit.
        generation: u64,
        /// Why, for the log and `last_error`.
        reason: String,
    },
}

/// Dials the guard (each of its addresses in turn) and opens the
/// circuit's stream; reports the outcome as [`CircuitIo::Dialed`].
pub fn dial(
    endpoint: Endpoint,
    guard: HopSpec,
    generation: u64,
    to_engine: mpsc::Sender<CircuitIo>,
) {
    tokio::spawn(async move {
        let mut failures = Vec::new();
        let mut result = Err(String::new());
        for address in &guard.addresses {
            let attempt = tokio::time::timeout(DIAL_TIMEOUT, async {
                let link = endpoint.connect(*address, guard.id).await?;
                let stream = link.open_circuit().await?;
                Ok::<_, trine_link::LinkError>((link, stream))
            })
            .await;
            match attempt {
                Ok(Ok(pair)) => {
                    result = Ok(pair);
                    break;
                }
                Ok(Err(error)) => failures.push(format!("{address}: {error}")),
                Err(_) => failures.push(format!("{address}: no answer within {DIAL_TIMEOUT:?}")),
            }
        }
        if result.is_err() {
            result = Err(failures.join("; "));
        }
        let _ = to_engine
            .send(CircuitIo::Dialed { generation, result })
            .await;
    });
}

/// One circuit's link and I/O tasks. Dropping it stops the tasks and
/// closes the link (the guard then tears the circuit down).
pub struct CircuitLink {
    link: Link,
    circuit_id: u64,
    control: mpsc::UnboundedSender<Vec<u8>>,
    tasks: [JoinHandle<()>; 2],
}

impl CircuitLink {
    /// Starts the I/O tasks for the circuit on `stream`.
    pub fn start(
        generation: u64,
        link: Link,
        stream: CircuitStream,
        to_engine: mpsc::Sender<CircuitIo>,
    ) -> Self {
        let circuit_id = stream.id();
        let (mut sender, mut receiver) = stream.split();
        let (control, mut control_rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let writer = tokio::spawn(async move {
            while let Some(cell) = control_rx.recv().await {
                if sender.write_cell(&cell).await.is_err() {
                    return;
                }
            }
        });
        let reader_link = link.clone();
        let reader = tokio::spawn(async move {
            let mut buf = Vec::new();
            let reason = loop {
                let cell = tokio::select! {
                    read = receiver.read_cell(&mut buf) => match read {
                        Ok(true) => std::mem::take(&mut buf),
                        Ok(false) => break "the guard closed the circuit".to_string(),
                        Err(error) => break format!("circuit stream: {error}"),
                    },
                    datagram = reader_link.read_datagram() => match datagram {
                        Ok((id, bytes)) if id == circuit_id => bytes.to_vec(),
                        Ok(_) => continue,
                        // One malformed datagram; the link is fine.
                        Err(trine_link::LinkError::Tag(_)) => continue,
                        Err(error) => break format!("link to the guard: {error}"),
                    },
                };
                if to_engine
                    .send(CircuitIo::Cell { generation, cell })
                    .await
                    .is_err()
                {
                    return;
                }
            };
            let _ = to_engine.send(CircuitIo::Gone { generation, reason }).await;
        });
        Self {
            link,
            circuit_id,
            control,
            tasks: [writer, reader],
        }
    }

    /// Puts one cell on the wire: control cells on the stream (in order),
    /// the rest as datagrams. Returns false if a datagram was refused.
    pub fn send(&self, transmit: &Transmit) -> bool {
        match transmit.channel {
            Channel::Control => self.control.send(transmit.bytes.clone()).is_ok(),
            Channel::Datagram => self.send_datagram(&transmit.bytes),
        }
    }

    /// Sends a sealed data cell.
    pub fn send_datagram(&self, cell: &[u8]) -> bool {
        self.link.send_datagram(self.circuit_id, cell).is_ok()
    }

    /// The largest cell a datagram carries on this link right now.
    pub fn max_cell_len(&self) -> Option<usize> {
        self.link.max_cell_len(self.circuit_id)
    }
}

impl Drop for CircuitLink {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        self.link.close("circuit closed");
    }
}
