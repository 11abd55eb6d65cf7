//! The relay's side of every circuit through it: one [`RelayTable`] per
//! relay process.
//!
//! Circuits are addressed per link: a [`CircuitRef`] is (the shell's link id,
//! the circuit's id on that link), so ids never cross a hop. A circuit has a
//! previous end (toward the client) and, once extended, a next end.
//!
//! The table answers CREATE, opens one forward layer per cell and either
//! forwards the rest, delivers it to this hop (EXTEND, DATA at an exit,
//! PING, PADDING, END), and seals one backward layer on cells coming back.
//!
//! An exit sends DATA out only on circuits whose previous hop is a relay
//! (Tor's rule): the shell says which links are to a relay it recognises
//! (listed in its consensus at the link's address, or trusted by
//! configuration) with [`RelayTable::set_link_is_relay`], and says it again
//! whenever that changes (a newer consensus). Each circuit carries the
//! current answer for its previous link, so a circuit built while the
//! shell's consensus lagged exits once it catches up, and the DATA path
//! reads one flag. DATA whose previous hop is not a recognised relay (a
//! client straight to the exit, or a peer with an identity of its own
//! making) is dropped as [`DropReason::OneHop`]. Otherwise any exit would
//! be a non-anonymous one-hop proxy.
//! The data path works in place in the caller's buffer and returns a
//! [`RelayAction`]; everything the table produces on its own (CREATED,
//! EXTENDED, TRUNCATED, DESTROY, PONG) is queued for
//! [`RelayTable::poll_transmit`].
//!
//! Backward messages originate only at the circuit's last hop, with sequence
//! numbers above everything earlier hops sealed (CREATE carries the floor),
//! and every hop refuses to seal a backward sequence number twice. So no
//! (key, nonce) pair is ever used twice, whatever a later hop sends.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::ops::Range;
use std::time::{Duration, Instant};

use rand::{CryptoRng, RngCore};

use crate::Channel;
use crate::cell::{
    self, Create, DATA_OFFSET, LinkCell, MAX_CELL_LEN, RELAY_HEADER_LEN, Reason, RelayMsg,
};
use crate::client::MAX_PATH_LEN;
use crate::keys::{OnionSecretKey, RelayId};
use crate::ntor::{self, NtorProtocol};
use crate::onion::{self, Flag, HopCrypto, LAYER_OVERHEAD, LayerError};
use crate::replay::ReplayWindow;

/// The shell's name for one link (one QUIC connection).
pub type LinkId = u64;

/// One end of a circuit on one link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CircuitRef {
    /// The link.
    pub link: LinkId,
    /// The circuit's id on that link (its QUIC stream id).
    pub circ: u64,
}

/// The table's own name for a circuit, stable for its lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CircuitHandle(u64);

/// Relay limits and timeouts.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Circuits through this relay, in total.
    pub max_circuits: usize,
    /// Circuits created by one incoming link.
    pub max_circuits_per_link: usize,
    /// Time allowed for an EXTEND to be answered by the next relay.
    pub extend_timeout: Duration,
    /// A circuit with no cell in either direction for this long is destroyed.
    pub idle_timeout: Duration,
    /// Whether DATA at the last hop leaves for the internet.
    pub exit: bool,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            max_circuits: 16_384,
            max_circuits_per_link: 1_024,
            extend_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(600),
            exit: false,
        }
    }
}

/// Most RELAY_EARLY cells forwarded per circuit: bounds path length.
pub const MAX_RELAY_EARLY: u32 = MAX_PATH_LEN as u32;

/// The one backward sequence number never sealed: with it out of use, "one
/// above the highest sealed" always exists (or is this value, meaning none
/// are left), so no hop can be pushed into reusing the top number.
const SEQ_EXHAUSTED: u64 = u64::MAX;

/// How often timeouts are checked.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Most cells the table queues before the shell drains them.
const MAX_QUEUED: usize = 65_536;

/// Why a cell was dropped. Each is counted in [`RelayStats::drops`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DropReason {
    /// Not a well-formed cell or message.
    Malformed,
    /// No circuit with that id on that link.
    UnknownCircuit,
    /// An onion layer failed authentication.
    Auth,
    /// A sequence number seen before or too old.
    Replay,
    /// A message not allowed here or now.
    Protocol,
    /// More RELAY_EARLY cells than a path may need; circuit destroyed.
    EarlyLimit,
    /// The relay's circuit limit was reached.
    CircuitLimit,
    /// The incoming link's circuit limit was reached.
    LinkCircuitLimit,
    /// A CREATE whose handshake failed.
    HandshakeFailed,
    /// DATA for the internet at a relay that is not an exit.
    NotExit,
    /// DATA for the internet on a circuit whose previous hop is not a
    /// relay (a one-hop circuit): exits carry only multi-hop circuits.
    OneHop,
    /// A cell to forward on a circuit that has no next hop yet.
    NoNextHop,
    /// The outgoing queue was full.
    QueueFull,
}

impl DropReason {
    /// Every reason, for metrics.
    pub const ALL: [Self; 13] = [
        Self::Malformed,
        Self::UnknownCircuit,
        Self::Auth,
        Self::Replay,
        Self::Protocol,
        Self::EarlyLimit,
        Self::CircuitLimit,
        Self::LinkCircuitLimit,
        Self::HandshakeFailed,
        Self::NotExit,
        Self::OneHop,
        Self::NoNextHop,
        Self::QueueFull,
    ];

    /// A stable snake_case name, for metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::UnknownCircuit => "unknown_circuit",
            Self::Auth => "auth",
            Self::Replay => "replay",
            Self::Protocol => "protocol",
            Self::EarlyLimit => "early_limit",
            Self::CircuitLimit => "circuit_limit",
            Self::LinkCircuitLimit => "link_circuit_limit",
            Self::HandshakeFailed => "handshake_failed",
            Self::NotExit => "not_exit",
            Self::OneHop => "one_hop",
            Self::NoNextHop => "no_next_hop",
            Self::QueueFull => "queue_full",
        }
    }
}

/// Counters for the whole table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Circuits created (CREATE answered).
    pub circuits_created: u64,
    /// Circuits removed.
    pub circuits_closed: u64,
    /// CREATE handshakes that failed.
    pub handshakes_failed: u64,
    /// Cells forwarded toward the exit, and their bytes.
    pub forward_cells: u64,
    /// Bytes of forwarded forward cells.
    pub forward_bytes: u64,
    /// Cells forwarded toward the client, and their bytes.
    pub backward_cells: u64,
    /// Bytes of forwarded backward cells.
    pub backward_bytes: u64,
    /// Packets delivered to the internet (exit).
    pub exit_packets: u64,
    /// Packets sealed back toward clients (exit).
    pub exit_replies: u64,
    /// PADDING messages received and discarded.
    pub padding: u64,
    /// Dropped cells by reason.
    pub drops: BTreeMap<DropReason, u64>,
}

/// What to do with a cell after [`RelayTable::handle_cell`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayAction {
    /// Send the rewritten buffer to `to`, on `channel`.
    Forward {
        /// Destination circuit end.
        to: CircuitRef,
        /// Same channel the cell arrived on.
        channel: Channel,
    },
    /// Exit only: an IP packet from `circuit` for the internet, at `packet`
    /// within the buffer.
    Exit {
        /// The circuit it came from (to route replies back).
        circuit: CircuitHandle,
        /// The packet's range in the buffer.
        packet: Range<usize>,
    },
    /// Consumed; see [`RelayTable::poll_transmit`] and [`RelayTable::poll_event`].
    Handled,
    /// Dropped and counted.
    Dropped(DropReason),
}

/// A cell the table wants sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayTransmit {
    /// Destination circuit end. After a DESTROY, nothing more is sent on
    /// it: the shell may close that stream.
    pub to: CircuitRef,
    /// Reliable stream or datagram.
    pub channel: Channel,
    /// The link cell.
    pub bytes: Vec<u8>,
}

/// Something the shell must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayEvent {
    /// Open (or reuse) a link to `target` at one of `addresses`, verify its
    /// identity, open a circuit on it, then call
    /// [`RelayTable::extend_ready`] or [`RelayTable::extend_failed`].
    Extend {
        /// The circuit to extend.
        circuit: CircuitHandle,
        /// The identity the next relay must prove.
        target: RelayId,
        /// Where to reach it.
        addresses: Vec<SocketAddr>,
    },
    /// The circuit is gone (release anything keyed by it, e.g. exit NAT).
    Closed {
        /// The circuit.
        circuit: CircuitHandle,
    },
}

#[derive(Debug)]
enum Next {
    None,
    Connecting {
        deadline: Instant,
        handshake: Box<[u8; cell::CREATE_HANDSHAKE_LEN]>,
    },
    AwaitingCreated {
        to: CircuitRef,
        deadline: Instant,
        /// Reserved before the CREATE went out, so the next hop's backward
        /// sequence numbers start above it.
        extended_seq: u64,
    },
    Open(CircuitRef),
}

impl Next {
    fn end(&self) -> Option<CircuitRef> {
        match self {
            Self::AwaitingCreated { to, .. } | Self::Open(to) => Some(*to),
            Self::None | Self::Connecting { .. } => None,
        }
    }
}

#[derive(Debug)]
struct Circuit {
    prev: CircuitRef,
    /// Whether `prev` is on a link the shell says is to a relay, kept
    /// current by [`RelayTable::set_link_is_relay`].
    prev_is_relay: bool,
    next: Next,
    crypto: HopCrypto,
    forward_replay: ReplayWindow,
    /// Every backward sequence number this hop sealed.
    backward_replay: ReplayWindow,
    /// Lowest sequence number this hop may originate with.
    origin_floor: u64,
    early_cells: u32,
    last_active: Instant,
}

impl Circuit {
    /// Lowest backward sequence number neither this hop nor any earlier
    /// one has sealed; [`SEQ_EXHAUSTED`] when none are left.
    fn origin_start(&self) -> u64 {
        let above_sealed = self
            .backward_replay
            .highest()
            .map_or(0, |top| top.saturating_add(1));
        above_sealed.max(self.origin_floor)
    }

    /// The next sequence number for a message this hop originates, marked
    /// as used; `None` once the sequence space is used up (the caller must
    /// then give up the circuit rather than seal anything).
    fn take_origin_seq(&mut self) -> Option<u64> {
        let seq = self.origin_start();
        if seq == SEQ_EXHAUSTED {
            return None;
        }
        self.backward_replay.mark(seq);
        self.origin_floor = seq + 1;
        Some(seq)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Prev,
    Next,
}

/// Every circuit end on `link`.
fn ends_on(
    ends: &BTreeMap<CircuitRef, (CircuitHandle, Side)>,
    link: LinkId,
) -> std::collections::btree_map::Range<'_, CircuitRef, (CircuitHandle, Side)> {
    ends.range(
        CircuitRef { link, circ: 0 }..=CircuitRef {
            link,
            circ: u64::MAX,
        },
    )
}

/// All circuits through one relay.
pub struct RelayTable<R> {
    id: RelayId,
    onion_keys: Vec<OnionSecretKey>,
    config: RelayConfig,
    rng: R,
    circuits: BTreeMap<CircuitHandle, Circuit>,
    ends: BTreeMap<CircuitRef, (CircuitHandle, Side)>,
    per_link: BTreeMap<LinkId, usize>,
    /// Links the shell says are to a recognised relay.
    relay_links: BTreeSet<LinkId>,
    next_handle: u64,
    next_sweep: Option<Instant>,
    transmits: VecDeque<RelayTransmit>,
    events: VecDeque<RelayEvent>,
    stats: RelayStats,
}

impl<R> std::fmt::Debug for RelayTable<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayTable")
            .field("id", &self.id)
            .field("circuits", &self.circuits.len())
            .finish_non_exhaustive()
    }
}

impl<R: RngCore + CryptoRng> RelayTable<R> {
    /// A table for the relay `id` holding `onion_keys` (current first, then
    /// any previous key still accepted). `rng` supplies handshake ephemerals.
    pub fn new(id: RelayId, onion_keys: Vec<OnionSecretKey>, config: RelayConfig, rng: R) -> Self {
        Self {
            id,
            onion_keys,
            config,
            rng,
            circuits: BTreeMap::new(),
            ends: BTreeMap::new(),
            per_link: BTreeMap::new(),
            relay_links: BTreeSet::new(),
            next_handle: 0,
            next_sweep: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: RelayStats::default(),
        }
    }

    /// Replaces the accepted onion keys (rotation): current first.
    pub fn set_onion_keys(&mut self, onion_keys: Vec<OnionSecretKey>) {
        self.onion_keys = onion_keys;
    }

    /// Whether the shell's link `link` is to a relay it recognises (its
    /// peer proved an identity the consensus lists at the link's address,
    /// or one configured as trusted). Circuits whose previous hop is on
    /// such a link may send DATA out of an exit; others (clients, unknown
    /// identities) may not. Applies at once to the circuits already on the
    /// link; may be called again whenever the answer changes. Forgotten
    /// when [`RelayTable::link_closed`] is called.
    pub fn set_link_is_relay(&mut self, link: LinkId, is_relay: bool) {
        let changed = if is_relay {
            self.relay_links.insert(link)
        } else {
            self.relay_links.remove(&link)
        };
        if !changed {
            return;
        }
        for (_, (handle, side)) in ends_on(&self.ends, link) {
            if *side == Side::Prev {
                if let Some(circuit) = self.circuits.get_mut(handle) {
                    circuit.prev_is_relay = is_relay;
                }
            }
        }
    }

    /// Counters.
    pub fn stats(&self) -> &RelayStats {
        &self.stats
    }

    /// Circuits currently open (or being extended).
    pub fn circuit_count(&self) -> usize {
        self.circuits.len()
    }

    /// Next cell to send.
    pub fn poll_transmit(&mut self) -> Option<RelayTransmit> {
        self.transmits.pop_front()
    }

    /// Next event.
    pub fn poll_event(&mut self) -> Option<RelayEvent> {
        self.events.pop_front()
    }

    /// When [`RelayTable::handle_timeout`] must next be called, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.circuits.is_empty() {
            None
        } else {
            self.next_sweep
        }
    }

    /// Handles one cell that arrived on `from` over `channel`. Forwarded
    /// cells are rewritten in place in `cell`.
    pub fn handle_cell(
        &mut self,
        now: Instant,
        from: CircuitRef,
        channel: Channel,
        cell: &mut Vec<u8>,
    ) -> RelayAction {
        let action = self.dispatch(now, from, channel, cell);
        if let RelayAction::Dropped(reason) = action {
            *self.stats.drops.entry(reason).or_default() += 1;
        }
        action
    }

    fn dispatch(
        &mut self,
        now: Instant,
        from: CircuitRef,
        channel: Channel,
        cell: &mut Vec<u8>,
    ) -> RelayAction {
        let Ok(parsed) = LinkCell::parse(cell) else {
            return RelayAction::Dropped(DropReason::Malformed);
        };
        // Only RELAY cells may travel as datagrams: CREATE, CREATED and
        // DESTROY belong on the circuit's stream (a datagram CREATE would
        // open a circuit no stream can ever answer or close).
        if channel == Channel::Datagram && !matches!(parsed, LinkCell::Relay { .. }) {
            return RelayAction::Dropped(DropReason::Protocol);
        }
        let Some(&(handle, side)) = self.ends.get(&from) else {
            return match parsed {
                LinkCell::Create(create) => self.create(now, from, &create),
                _ => RelayAction::Dropped(DropReason::UnknownCircuit),
            };
        };
        if let Some(circuit) = self.circuits.get_mut(&handle) {
            circuit.last_active = now;
        }
        match (side, parsed) {
            (Side::Prev, LinkCell::Relay { early, seq }) => {
                self.forward(handle, early, seq, channel, cell)
            }
            (Side::Next, LinkCell::Relay { early: false, seq }) => {
                self.backward(handle, seq, channel, cell)
            }
            (Side::Prev, LinkCell::Destroy(_)) => {
                self.remove(handle, Reason::Finished, false, true);
                RelayAction::Handled
            }
            (Side::Next, LinkCell::Destroy(reason)) => {
                self.truncate(handle, reason.unwrap_or(Reason::Protocol), false);
                RelayAction::Handled
            }
            (Side::Next, LinkCell::Created(reply)) => self.created(handle, from, &reply),
            _ => RelayAction::Dropped(DropReason::Protocol),
        }
    }

    fn create(&mut self, now: Instant, from: CircuitRef, create: &Create) -> RelayAction {
        let on_link = self.per_link.get(&from.link).copied().unwrap_or(0);
        let refusal = if self.circuits.len() >= self.config.max_circuits {
            Some(DropReason::CircuitLimit)
        } else if on_link >= self.config.max_circuits_per_link {
            Some(DropReason::LinkCircuitLimit)
        } else {
            None
        };
        if let Some(reason) = refusal {
            self.queue(
                from,
                Channel::Control,
                LinkCell::Destroy(Some(Reason::ResourceLimit)).to_bytes(),
            );
            return RelayAction::Dropped(reason);
        }
        // A floor with no room left would leave this hop nothing to seal.
        if create.backward_seq_start == SEQ_EXHAUSTED {
            self.queue(
                from,
                Channel::Control,
                LinkCell::Destroy(Some(Reason::Protocol)).to_bytes(),
            );
            return RelayAction::Dropped(DropReason::Protocol);
        }
        let ephemeral = OnionSecretKey::generate(&mut self.rng);
        let keys: Vec<&OnionSecretKey> = self.onion_keys.iter().collect();
        let result = ntor::server_handshake(
            NtorProtocol::TRINE,
            self.id.as_bytes(),
            &keys,
            ephemeral,
            create.handshake.as_slice(),
        );
        let (reply, key_generator) = match result {
            Ok(done) => done,
            Err(_) => {
                self.stats.handshakes_failed += 1;
                self.queue(
                    from,
                    Channel::Control,
                    LinkCell::Destroy(Some(Reason::HandshakeFailed)).to_bytes(),
                );
                return RelayAction::Dropped(DropReason::HandshakeFailed);
            }
        };
        let handle = CircuitHandle(self.next_handle);
        self.next_handle += 1;
        self.circuits.insert(
            handle,
            Circuit {
                prev: from,
                prev_is_relay: self.relay_links.contains(&from.link),
                next: Next::None,
                crypto: HopCrypto::derive(&key_generator),
                forward_replay: ReplayWindow::new(),
                backward_replay: ReplayWindow::new(),
                origin_floor: create.backward_seq_start,
                early_cells: 0,
                last_active: now,
            },
        );
        self.ends.insert(from, (handle, Side::Prev));
        *self.per_link.entry(from.link).or_default() += 1;
        self.stats.circuits_created += 1;
        if self.next_sweep.is_none() {
            self.next_sweep = Some(now + SWEEP_INTERVAL);
        }
        self.queue(from, Channel::Control, LinkCell::Created(reply).to_bytes());
        RelayAction::Handled
    }

    fn forward(
        &mut self,
        handle: CircuitHandle,
        early: bool,
        seq: u64,
        channel: Channel,
        cell: &mut Vec<u8>,
    ) -> RelayAction {
        let Some(circuit) = self.circuits.get_mut(&handle) else {
            return RelayAction::Dropped(DropReason::UnknownCircuit);
        };
        if circuit.forward_replay.check(seq).is_err() {
            return RelayAction::Dropped(DropReason::Replay);
        }
        let flag = match onion::open_layer(&circuit.crypto.forward, seq, cell) {
            Ok(flag) => flag,
            Err(LayerError::Auth) => return RelayAction::Dropped(DropReason::Auth),
            Err(LayerError::TooShort | LayerError::BadFlag) => {
                return RelayAction::Dropped(DropReason::Malformed);
            }
        };
        circuit.forward_replay.mark(seq);
        if early {
            circuit.early_cells += 1;
            if circuit.early_cells > MAX_RELAY_EARLY {
                self.remove(handle, Reason::Protocol, true, true);
                return RelayAction::Dropped(DropReason::EarlyLimit);
            }
        }
        match flag {
            Flag::Pass => match circuit.next {
                Next::Open(to) => {
                    self.stats.forward_cells += 1;
                    self.stats.forward_bytes += cell.len() as u64;
                    RelayAction::Forward { to, channel }
                }
                _ => RelayAction::Dropped(DropReason::NoNextHop),
            },
            Flag::Here => self.deliver(handle, early, cell),
        }
    }

    /// A message addressed to this hop.
    fn deliver(&mut self, handle: CircuitHandle, early: bool, cell: &[u8]) -> RelayAction {
        let Some(circuit) = self.circuits.get_mut(&handle) else {
            return RelayAction::Dropped(DropReason::UnknownCircuit);
        };
        let is_last = matches!(circuit.next, Next::None);
        let Ok(message) = RelayMsg::parse(&cell[RELAY_HEADER_LEN..]) else {
            return RelayAction::Dropped(DropReason::Malformed);
        };
        match message {
            RelayMsg::Data(_) if is_last => {
                if !self.config.exit {
                    return RelayAction::Dropped(DropReason::NotExit);
                }
                if !circuit.prev_is_relay {
                    return RelayAction::Dropped(DropReason::OneHop);
                }
                self.stats.exit_packets += 1;
                RelayAction::Exit {
                    circuit: handle,
                    packet: DATA_OFFSET..cell.len(),
                }
            }
            RelayMsg::Extend(extend) if early && is_last => {
                if extend.target == self.id {
                    self.originate(handle, None, &RelayMsg::Truncated(Reason::Protocol));
                    return RelayAction::Dropped(DropReason::Protocol);
                }
                circuit.next = Next::Connecting {
                    deadline: circuit.last_active + self.config.extend_timeout,
                    handshake: Box::new(extend.handshake),
                };
                self.events.push_back(RelayEvent::Extend {
                    circuit: handle,
                    target: extend.target,
                    addresses: extend.addresses,
                });
                RelayAction::Handled
            }
            RelayMsg::Ping(echo) if is_last => {
                self.originate(handle, None, &RelayMsg::Pong(echo));
                RelayAction::Handled
            }
            RelayMsg::Padding(_) => {
                self.stats.padding += 1;
                RelayAction::Handled
            }
            RelayMsg::End(_) => {
                self.remove(handle, Reason::Finished, false, true);
                RelayAction::Handled
            }
            RelayMsg::Data(_)
            | RelayMsg::Extend(_)
            | RelayMsg::Ping(_)
            | RelayMsg::Pong(_)
            | RelayMsg::Extended(_)
            | RelayMsg::Truncated(_) => RelayAction::Dropped(DropReason::Protocol),
        }
    }

    fn backward(
        &mut self,
        handle: CircuitHandle,
        seq: u64,
        channel: Channel,
        cell: &mut Vec<u8>,
    ) -> RelayAction {
        let Some(circuit) = self.circuits.get_mut(&handle) else {
            return RelayAction::Dropped(DropReason::UnknownCircuit);
        };
        if !matches!(circuit.next, Next::Open(_)) {
            return RelayAction::Dropped(DropReason::Protocol);
        }
        if cell.len() + LAYER_OVERHEAD > MAX_CELL_LEN {
            return RelayAction::Dropped(DropReason::Malformed);
        }
        // Never seal one sequence number twice under this hop's key.
        if seq == SEQ_EXHAUSTED || circuit.backward_replay.accept(seq).is_err() {
            return RelayAction::Dropped(DropReason::Replay);
        }
        onion::seal_layer(&circuit.crypto.backward, seq, cell, Flag::Pass);
        self.stats.backward_cells += 1;
        self.stats.backward_bytes += cell.len() as u64;
        RelayAction::Forward {
            to: circuit.prev,
            channel,
        }
    }

    fn created(
        &mut self,
        handle: CircuitHandle,
        from: CircuitRef,
        reply: &[u8; 64],
    ) -> RelayAction {
        let Some(circuit) = self.circuits.get_mut(&handle) else {
            return RelayAction::Dropped(DropReason::UnknownCircuit);
        };
        match circuit.next {
            Next::AwaitingCreated {
                to, extended_seq, ..
            } if to == from => {
                circuit.next = Next::Open(to);
                self.originate(handle, Some(extended_seq), &RelayMsg::Extended(*reply));
                RelayAction::Handled
            }
            _ => RelayAction::Dropped(DropReason::Protocol),
        }
    }

    /// Exit only: seals a DATA cell prepared with [`cell::data_cell`] (a
    /// packet from the internet) for the client of `circuit`, in place.
    /// Returns where to send it (as a datagram), or `None` if the circuit is
    /// gone or no longer ends here.
    pub fn seal_exit_reply(
        &mut self,
        circuit: CircuitHandle,
        cell: &mut Vec<u8>,
    ) -> Option<CircuitRef> {
        let entry = self.circuits.get_mut(&circuit)?;
        if !matches!(entry.next, Next::None) || cell.len() < DATA_OFFSET {
            return None;
        }
        let prev = entry.prev;
        let Some(seq) = entry.take_origin_seq() else {
            self.remove(circuit, Reason::Protocol, true, true);
            return None;
        };
        Self::seal_origin(entry, seq, cell);
        self.stats.exit_replies += 1;
        Some(prev)
    }

    /// The shell opened circuit `to` toward the relay an
    /// [`RelayEvent::Extend`] asked for. Queues the CREATE on it. Returns
    /// `false` if the circuit no longer wants it (then close `to`).
    pub fn extend_ready(&mut self, circuit: CircuitHandle, to: CircuitRef) -> bool {
        let Some(entry) = self.circuits.get_mut(&circuit) else {
            return false;
        };
        let Next::Connecting {
            deadline,
            handshake,
        } = &entry.next
        else {
            return false;
        };
        if self.ends.contains_key(&to) {
            return false;
        }
        let (deadline, handshake) = (*deadline, **handshake);
        let Some(extended_seq) = entry.take_origin_seq() else {
            self.remove(circuit, Reason::Protocol, true, false);
            return false;
        };
        let create = LinkCell::Create(Box::new(Create {
            handshake,
            backward_seq_start: entry.origin_start(),
        }));
        entry.next = Next::AwaitingCreated {
            to,
            deadline,
            extended_seq,
        };
        self.ends.insert(to, (circuit, Side::Next));
        self.queue(to, Channel::Control, create.to_bytes());
        true
    }

    /// The link `circuit` came in on (toward the client), and whether the
    /// shell currently says its peer is a relay.
    pub fn previous_hop(&self, circuit: CircuitHandle) -> Option<(LinkId, bool)> {
        let entry = self.circuits.get(&circuit)?;
        Some((entry.prev.link, entry.prev_is_relay))
    }

    /// The shell could not reach the relay an [`RelayEvent::Extend`] named
    /// (or it was not who it should be). Tells the client.
    pub fn extend_failed(&mut self, circuit: CircuitHandle, reason: Reason) {
        if let Some(entry) = self.circuits.get(&circuit) {
            if matches!(entry.next, Next::Connecting { .. }) {
                self.truncate(circuit, reason, false);
            }
        }
    }

    /// A circuit's stream on `from` closed without a DESTROY.
    pub fn stream_closed(&mut self, from: CircuitRef) {
        if let Some(&(handle, side)) = self.ends.get(&from) {
            match side {
                Side::Prev => self.remove(handle, Reason::LinkClosed, false, true),
                Side::Next => self.truncate(handle, Reason::LinkClosed, false),
            }
        }
    }

    /// A whole link closed: every circuit end on it is gone.
    pub fn link_closed(&mut self, link: LinkId) {
        self.relay_links.remove(&link);
        let on_link: Vec<CircuitRef> = ends_on(&self.ends, link).map(|(end, _)| *end).collect();
        for end in on_link {
            self.stream_closed(end);
        }
    }

    /// Destroys every circuit (graceful shutdown), with DESTROY both ways.
    pub fn shutdown(&mut self) {
        let handles: Vec<CircuitHandle> = self.circuits.keys().copied().collect();
        for handle in handles {
            self.remove(handle, Reason::Finished, true, true);
        }
    }

    /// Advances time: expires extensions and idle circuits.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.next_sweep {
            Some(at) if now >= at => {}
            _ => return,
        }
        self.next_sweep = Some(now + SWEEP_INTERVAL);
        let mut idle = Vec::new();
        let mut late = Vec::new();
        for (handle, circuit) in &self.circuits {
            if now.saturating_duration_since(circuit.last_active) >= self.config.idle_timeout {
                idle.push(*handle);
                continue;
            }
            match circuit.next {
                Next::Connecting { deadline, .. } | Next::AwaitingCreated { deadline, .. }
                    if now >= deadline =>
                {
                    late.push(*handle);
                }
                _ => {}
            }
        }
        for handle in idle {
            self.remove(handle, Reason::Timeout, true, true);
        }
        for handle in late {
            self.truncate(handle, Reason::Timeout, true);
        }
    }

    /// Seals `message` as originating here (with a fresh sequence number,
    /// or the one reserved for it) and queues it toward the client.
    fn originate(&mut self, handle: CircuitHandle, reserved: Option<u64>, message: &RelayMsg<'_>) {
        let Some(circuit) = self.circuits.get_mut(&handle) else {
            return;
        };
        let mut bytes = Vec::new();
        cell::begin_relay_cell(&mut bytes, false, 0);
        message.encode_into(&mut bytes);
        let Some(seq) = reserved.or_else(|| circuit.take_origin_seq()) else {
            self.remove(handle, Reason::Protocol, true, true);
            return;
        };
        Self::seal_origin(circuit, seq, &mut bytes);
        let channel = if message.is_control() {
            Channel::Control
        } else {
            Channel::Datagram
        };
        let prev = circuit.prev;
        self.queue(prev, channel, bytes);
    }

    fn seal_origin(circuit: &Circuit, seq: u64, cell: &mut Vec<u8>) {
        cell::set_relay_seq(cell, seq);
        onion::seal_layer(&circuit.crypto.backward, seq, cell, Flag::Here);
    }

    /// The circuit beyond this hop is gone: forget the next end (sending it
    /// a DESTROY if `notify_next`) and tell the client with TRUNCATED. The
    /// circuit stays, ending here, until the client destroys it.
    fn truncate(&mut self, handle: CircuitHandle, reason: Reason, notify_next: bool) {
        let Some(circuit) = self.circuits.get_mut(&handle) else {
            return;
        };
        let next = std::mem::replace(&mut circuit.next, Next::None);
        if let Some(end) = next.end() {
            self.ends.remove(&end);
            if notify_next {
                self.queue(
                    end,
                    Channel::Control,
                    LinkCell::Destroy(Some(reason)).to_bytes(),
                );
            }
        }
        self.originate(handle, None, &RelayMsg::Truncated(reason));
    }

    /// Removes a circuit, sending DESTROY to the ends asked for.
    fn remove(
        &mut self,
        handle: CircuitHandle,
        reason: Reason,
        notify_prev: bool,
        notify_next: bool,
    ) {
        let Some(circuit) = self.circuits.remove(&handle) else {
            return;
        };
        self.ends.remove(&circuit.prev);
        if let Some(count) = self.per_link.get_mut(&circuit.prev.link) {
            *count -= 1;
            if *count == 0 {
                self.per_link.remove(&circuit.prev.link);
            }
        }
        let destroy = LinkCell::Destroy(Some(reason)).to_bytes();
        if let Some(end) = circuit.next.end() {
            self.ends.remove(&end);
            if notify_next {
                self.queue(end, Channel::Control, destroy.clone());
            }
        }
        if notify_prev {
            self.queue(circuit.prev, Channel::Control, destroy);
        }
        self.stats.circuits_closed += 1;
        self.events
            .push_back(RelayEvent::Closed { circuit: handle });
    }

    fn queue(&mut self, to: CircuitRef, channel: Channel, bytes: Vec<u8>) {
        if self.transmits.len() >= MAX_QUEUED {
            *self.stats.drops.entry(DropReason::QueueFull).or_default() += 1;
            return;
        }
        self.transmits
            .push_back(RelayTransmit { to, channel, bytes });
    }
}
