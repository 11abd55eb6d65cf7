//! The client's side of one circuit: telescoping construction through N hops
//! (1 to [`MAX_PATH_LEN`]), then sealing packets forward and opening cells
//! coming back.
//!
//! Sans-IO: the caller feeds cells from the first hop and the time, and
//! drains [`ClientCircuit::poll_transmit`] (cells to send to the first hop),
//! [`ClientCircuit::poll_event`] and [`ClientCircuit::poll_timeout`]. The
//! DATA path works in place on the caller's buffer.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::{Duration, Instant};

use rand::{CryptoRng, RngCore};

use crate::cell::{
    self, CellError, Create, DATA_OFFSET, Extend, LinkCell, MAX_EXTEND_ADDRESSES, RELAY_HEADER_LEN,
    Reason, RelayMsg,
};
use crate::keys::{OnionPublicKey, OnionSecretKey, RelayId};
use crate::ntor::{HandshakeError, NtorClient, NtorProtocol};
use crate::onion::{self, Flag, HopCrypto, LayerError};
use crate::replay::{ReplayError, ReplayWindow};
use crate::{Channel, Transmit};

/// Longest path a client builds (and the most RELAY_EARLY cells a relay
/// forwards per circuit).
pub const MAX_PATH_LEN: usize = 8;
/// Path length used unless configured otherwise.
pub const DEFAULT_PATH_LEN: usize = 3;

/// One relay of a path, as the directory lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HopSpec {
    /// The relay's identity; the link and the handshake are checked against it.
    pub id: RelayId,
    /// Its current onion key.
    pub onion_key: OnionPublicKey,
    /// Where it listens (1 to 4 addresses).
    pub addresses: Vec<SocketAddr>,
}

/// Client circuit settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Time allowed from the first CREATE to the last hop's answer.
    pub build_timeout: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            build_timeout: Duration::from_secs(10),
        }
    }
}

/// A path the client refuses to build.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Not 1 to [`MAX_PATH_LEN`] hops.
    #[error("path has {0} hops; allowed are 1 to {MAX_PATH_LEN}")]
    Length(usize),
    /// The same relay appears twice.
    #[error("relay {0} appears twice in the path")]
    RepeatedRelay(RelayId),
    /// A hop after the first has no address or more than four.
    #[error("hop {hop} lists {count} addresses (allowed: 1 to {MAX_EXTEND_ADDRESSES})")]
    Addresses {
        /// 1-based hop number.
        hop: usize,
        /// Addresses listed.
        count: usize,
    },
}

/// Where the circuit is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// `hops_done` of the path's hops have answered.
    Building {
        /// Hops with keys so far.
        hops_done: usize,
    },
    /// All hops built; packets may flow.
    Ready,
    /// Failed or closed; nothing more will be sent or accepted.
    Closed,
}

/// Why a circuit stopped, and which hop (1-based) is to blame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("circuit failed at hop {hop}: {cause}")]
pub struct CircuitFailure {
    /// 1-based position of the hop that failed.
    pub hop: usize,
    /// What happened.
    pub cause: FailureCause,
}

/// What ended a circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FailureCause {
    /// The hop's handshake answer did not verify.
    #[error("{0}")]
    Handshake(HandshakeError),
    /// The previous hop reports the circuit broken at this hop.
    #[error("truncated: {0}")]
    Truncated(Reason),
    /// The first hop destroyed the circuit (reason if it sent a known one).
    #[error("destroyed ({0:?})")]
    Destroyed(Option<Reason>),
    /// The hop ended the circuit.
    #[error("ended: {0}")]
    Ended(Reason),
    /// The build deadline passed with this hop unanswered.
    #[error("timed out")]
    Timeout,
}

/// Something the circuit wants its owner to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// Hop `hop` (1-based) answered; its keys are in place.
    HopAdded {
        /// 1-based hop number.
        hop: usize,
    },
    /// Every hop is built: packets may flow.
    Ready,
    /// The circuit stopped; a DESTROY for the remaining hops is queued.
    Failed(CircuitFailure),
    /// The last hop answered a keepalive.
    Pong {
        /// Round trip since [`ClientCircuit::send_ping`].
        rtt: Duration,
    },
}

/// What a cell from the first hop turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// An IP packet from the last hop, at this range of the cell buffer.
    Packet(Range<usize>),
    /// A control message, handled; see [`ClientCircuit::poll_event`].
    Control,
}

/// Why a cell from the first hop was dropped. The circuit is unaffected
/// unless noted; every drop is counted in [`ClientStats`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientDrop {
    /// Not a well-formed cell or message.
    #[error("malformed: {0}")]
    Malformed(#[from] CellError),
    /// An onion layer did not open (tampered, forged, misrouted).
    #[error("layer of hop {hop}: {error}")]
    Layer {
        /// 1-based hop whose layer failed.
        hop: usize,
        /// What failed.
        error: LayerError,
    },
    /// A sequence number seen before or too old.
    #[error("replay: {0}")]
    Replay(#[from] ReplayError),
    /// A cell only relays should receive (CREATE, RELAY_EARLY backward).
    #[error("cell not valid toward a client")]
    NotForClient,
    /// A message that makes no sense in the circuit's current state.
    #[error("unexpected message in state {0:?}")]
    Unexpected(CircuitState),
}

/// Counters for one circuit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Cells produced (control and data).
    pub cells_sent: u64,
    /// Cells accepted.
    pub cells_received: u64,
    /// Cells dropped.
    pub cells_dropped: u64,
}

struct Hop {
    spec: HopSpec,
    /// The handshake secret for this hop, until its handshake starts.
    ephemeral: Option<OnionSecretKey>,
    crypto: Option<HopCrypto>,
    /// Sequence numbers of backward messages this hop originated.
    replay: ReplayWindow,
}

/// The client end of one circuit.
pub struct ClientCircuit {
    hops: Vec<Hop>,
    pending: Option<NtorClient<'static>>,
    state: CircuitState,
    deadline: Instant,
    next_seq: u64,
    ping: Option<(u64, Instant)>,
    next_ping: u64,
    transmits: VecDeque<Transmit>,
    events: VecDeque<ClientEvent>,
    stats: ClientStats,
}

impl std::fmt::Debug for ClientCircuit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCircuit")
            .field("hops", &self.hops.len())
            .field("state", &self.state)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl ClientCircuit {
    /// Starts building a circuit through `path` (first element: the guard).
    /// The CREATE for the first hop is queued at once. All ephemeral secrets
    /// are drawn from `rng` here; nothing later needs randomness.
    pub fn new<R: RngCore + CryptoRng>(
        path: Vec<HopSpec>,
        config: &ClientConfig,
        now: Instant,
        rng: &mut R,
    ) -> Result<Self, PathError> {
        if path.is_empty() || path.len() > MAX_PATH_LEN {
            return Err(PathError::Length(path.len()));
        }
        for (index, hop) in path.iter().enumerate() {
            if path[..index].iter().any(|earlier| earlier.id == hop.id) {
                return Err(PathError::RepeatedRelay(hop.id));
            }
            let count = hop.addresses.len();
            if index > 0 && (count == 0 || count > MAX_EXTEND_ADDRESSES) {
                return Err(PathError::Addresses {
                    hop: index + 1,
                    count,
                });
            }
        }
        let hops = path
            .into_iter()
            .map(|spec| Hop {
                spec,
                ephemeral: Some(OnionSecretKey::generate(rng)),
                crypto: None,
                replay: ReplayWindow::new(),
            })
            .collect();
        let mut circuit = Self {
            hops,
            pending: None,
            state: CircuitState::Building { hops_done: 0 },
            deadline: now + config.build_timeout,
            next_seq: 0,
            ping: None,
            next_ping: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: ClientStats::default(),
        };
        match circuit.start_handshake(0) {
            Some(handshake) => {
                let create = LinkCell::Create(Box::new(Create {
                    handshake,
                    backward_seq_start: 0,
                }));
                circuit.queue(Channel::Control, create.to_bytes());
            }
            None => circuit.fail(1, FailureCause::Ended(Reason::Internal), Reason::Internal),
        }
        Ok(circuit)
    }

    /// The circuit's state.
    pub fn state(&self) -> CircuitState {
        self.state
    }

    /// The path, first hop first.
    pub fn path(&self) -> impl Iterator<Item = &HopSpec> {
        self.hops.iter().map(|hop| &hop.spec)
    }

    /// Counters.
    pub fn stats(&self) -> ClientStats {
        self.stats
    }

    /// Next cell to send to the first hop.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Next event.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// When [`ClientCircuit::handle_timeout`] must next be called, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        matches!(self.state, CircuitState::Building { .. }).then_some(self.deadline)
    }

    /// Advances time: a build past its deadline fails.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let CircuitState::Building { hops_done } = self.state {
            if now >= self.deadline {
                self.fail(hops_done + 1, FailureCause::Timeout, Reason::Timeout);
            }
        }
    }

    /// Closes the circuit: queues a DESTROY for the first hop (which
    /// propagates it along the path). Idempotent.
    pub fn close(&mut self) {
        if self.state != CircuitState::Closed {
            self.state = CircuitState::Closed;
            self.queue_destroy(Reason::Finished);
        }
    }

    /// Seals a DATA cell prepared with [`cell::data_cell`] or
    /// [`cell::data_cell_slot`] for the last hop, in place. Send the result
    /// as a datagram. Returns `false` (and leaves the cell) when the circuit
    /// is not ready.
    pub fn seal_data(&mut self, cell: &mut Vec<u8>) -> bool {
        if self.state != CircuitState::Ready || cell.len() < DATA_OFFSET {
            return false;
        }
        let last = self.hops.len() - 1;
        self.seal_to(last, cell)
    }

    /// Sends a keepalive to the last hop (as a datagram); its answer comes
    /// back as [`ClientEvent::Pong`]. A new ping replaces an unanswered one.
    pub fn send_ping(&mut self, now: Instant) {
        if self.state != CircuitState::Ready {
            return;
        }
        let echo = self.next_ping;
        self.next_ping += 1;
        self.ping = Some((echo, now));
        let last = self.hops.len() - 1;
        self.send_message(last, false, &RelayMsg::Ping(echo));
    }

    /// Handles one cell from the first hop. DATA is opened in place; its
    /// packet is at the returned range of `cell`.
    pub fn handle_cell(
        &mut self,
        now: Instant,
        cell: &mut Vec<u8>,
    ) -> Result<Received, ClientDrop> {
        let result = self.handle_cell_inner(now, cell);
        match result {
            Ok(_) => self.stats.cells_received += 1,
            Err(_) => self.stats.cells_dropped += 1,
        }
        result
    }

    fn handle_cell_inner(
        &mut self,
        now: Instant,
        cell: &mut Vec<u8>,
    ) -> Result<Received, ClientDrop> {
        if self.state == CircuitState::Closed {
            return Err(ClientDrop::Unexpected(self.state));
        }
        match LinkCell::parse(cell)? {
            LinkCell::Created(reply) => {
                if self.state != (CircuitState::Building { hops_done: 0 }) {
                    return Err(ClientDrop::Unexpected(self.state));
                }
                self.finish_handshake(0, &reply);
                Ok(Received::Control)
            }
            LinkCell::Destroy(reason) => {
                self.state = CircuitState::Closed;
                self.events.push_back(ClientEvent::Failed(CircuitFailure {
                    hop: 1,
                    cause: FailureCause::Destroyed(reason),
                }));
                Ok(Received::Control)
            }
            LinkCell::Create(_) | LinkCell::Relay { early: true, .. } => {
                Err(ClientDrop::NotForClient)
            }
            LinkCell::Relay { early: false, seq } => self.handle_relay(now, seq, cell),
        }
    }

    fn handle_relay(
        &mut self,
        now: Instant,
        seq: u64,
        cell: &mut Vec<u8>,
    ) -> Result<Received, ClientDrop> {
        let origin = self.open_backward(seq, cell)?;
        self.hops[origin].replay.check(seq)?;
        let message = RelayMsg::parse(&cell[RELAY_HEADER_LEN..])?;
        let last = self.hops.len() - 1;
        let received = match message {
            RelayMsg::Data(_) if self.state == CircuitState::Ready && origin == last => {
                Received::Packet(DATA_OFFSET..cell.len())
            }
            RelayMsg::Pong(echo) => {
                match self.ping {
                    Some((expected, sent)) if expected == echo && origin == last => {
                        self.ping = None;
                        self.events.push_back(ClientEvent::Pong {
                            rtt: now.saturating_duration_since(sent),
                        });
                    }
                    _ => return Err(ClientDrop::Unexpected(self.state)),
                }
                Received::Control
            }
            RelayMsg::Extended(reply) => {
                match self.state {
                    CircuitState::Building { hops_done } if hops_done == origin + 1 => {
                        self.finish_handshake(hops_done, &reply);
                    }
                    _ => return Err(ClientDrop::Unexpected(self.state)),
                }
                Received::Control
            }
            RelayMsg::Truncated(reason) => {
                self.fail(
                    origin + 2,
                    FailureCause::Truncated(reason),
                    Reason::Finished,
                );
                Received::Control
            }
            RelayMsg::End(reason) => {
                self.fail(origin + 1, FailureCause::Ended(reason), Reason::Finished);
                Received::Control
            }
            RelayMsg::Padding(_) => Received::Control,
            RelayMsg::Data(_) | RelayMsg::Ping(_) | RelayMsg::Extend(_) => {
                return Err(ClientDrop::Unexpected(self.state));
            }
        };
        self.hops[origin].replay.mark(seq);
        Ok(received)
    }

    /// Peels backward layers until one says "written here"; returns that
    /// hop's index.
    fn open_backward(&mut self, seq: u64, cell: &mut Vec<u8>) -> Result<usize, ClientDrop> {
        for (index, hop) in self.hops.iter().enumerate() {
            let Some(crypto) = &hop.crypto else {
                break;
            };
            match onion::open_layer(&crypto.backward, seq, cell) {
                Ok(Flag::Here) => return Ok(index),
                Ok(Flag::Pass) => {}
                Err(error) => {
                    return Err(ClientDrop::Layer {
                        hop: index + 1,
                        error,
                    });
                }
            }
        }
        // "Pass" from the last hop with keys: nobody is left to have written it.
        Err(ClientDrop::Unexpected(self.state))
    }

    /// Starts hop `hop`'s handshake with its own ephemeral secret (each is
    /// used once: a second start for the same hop finds none).
    fn start_handshake(&mut self, hop: usize) -> Option<[u8; cell::CREATE_HANDSHAKE_LEN]> {
        let entry = self.hops.get_mut(hop)?;
        let ephemeral = entry.ephemeral.take()?;
        let (client, message) = NtorClient::start(
            NtorProtocol::TRINE,
            entry.spec.id.as_bytes(),
            entry.spec.onion_key,
            ephemeral,
        );
        self.pending = Some(client);
        // Trine node ids are 32 bytes, so the message is exactly 96 bytes.
        message.try_into().ok()
    }

    fn finish_handshake(&mut self, hop: usize, reply: &[u8]) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        match pending.finish(reply) {
            Ok(keys) => {
                self.hops[hop].crypto = Some(HopCrypto::derive(&keys));
                self.events
                    .push_back(ClientEvent::HopAdded { hop: hop + 1 });
                let done = hop + 1;
                if done == self.hops.len() {
                    self.state = CircuitState::Ready;
                    self.events.push_back(ClientEvent::Ready);
                } else {
                    self.state = CircuitState::Building { hops_done: done };
                    let Some(handshake) = self.start_handshake(done) else {
                        self.fail(
                            done + 1,
                            FailureCause::Ended(Reason::Internal),
                            Reason::Internal,
                        );
                        return;
                    };
                    let next = &self.hops[done].spec;
                    let extend = Extend {
                        target: next.id,
                        addresses: next.addresses.clone(),
                        handshake,
                    };
                    self.send_message(hop, true, &RelayMsg::Extend(Box::new(extend)));
                }
            }
            Err(error) => self.fail(
                hop + 1,
                FailureCause::Handshake(error),
                Reason::HandshakeFailed,
            ),
        }
    }

    /// Encodes `message` for hop `target` (0-based), seals and queues it.
    fn send_message(&mut self, target: usize, early: bool, message: &RelayMsg<'_>) {
        let mut bytes = Vec::new();
        cell::begin_relay_cell(&mut bytes, early, 0);
        message.encode_into(&mut bytes);
        if self.seal_to(target, &mut bytes) {
            let channel = if message.is_control() {
                Channel::Control
            } else {
                Channel::Datagram
            };
            self.transmits.push_back(Transmit { channel, bytes });
        }
    }

    /// Sets the next sequence number and adds layers `target..=0`.
    fn seal_to(&mut self, target: usize, cell: &mut Vec<u8>) -> bool {
        let seq = self.next_seq;
        let Some(next) = seq.checked_add(1) else {
            // 2^64 cells: never reuse a nonce; the circuit must be replaced.
            self.fail(
                1,
                FailureCause::Ended(Reason::ResourceLimit),
                Reason::ResourceLimit,
            );
            return false;
        };
        self.next_seq = next;
        cell::set_relay_seq(cell, seq);
        for (index, hop) in self.hops[..=target].iter().enumerate().rev() {
            let Some(crypto) = &hop.crypto else {
                return false;
            };
            let flag = if index == target {
                Flag::Here
            } else {
                Flag::Pass
            };
            onion::seal_layer(&crypto.forward, seq, cell, flag);
        }
        self.stats.cells_sent += 1;
        true
    }

    fn fail(&mut self, hop: usize, cause: FailureCause, destroy: Reason) {
        if self.state == CircuitState::Closed {
            return;
        }
        self.state = CircuitState::Closed;
        self.pending = None;
        for hop in &mut self.hops {
            hop.ephemeral = None;
        }
        self.events
            .push_back(ClientEvent::Failed(CircuitFailure { hop, cause }));
        self.queue_destroy(destroy);
    }

    fn queue_destroy(&mut self, reason: Reason) {
        self.queue(Channel::Control, LinkCell::Destroy(Some(reason)).to_bytes());
    }

    fn queue(&mut self, channel: Channel, bytes: Vec<u8>) {
        self.stats.cells_sent += 1;
        self.transmits.push_back(Transmit { channel, bytes });
    }
}
