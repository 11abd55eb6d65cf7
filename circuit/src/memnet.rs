//! An in-memory network: one [`ClientCircuit`] and N [`RelayTable`]s joined
//! by a FIFO of cells in flight. Deterministic, no I/O; used by the tests,
//! the benchmarks and the simulator to drive exactly the code that ships.
//!
//! Links are created on demand (the client's to its guard, and one per
//! EXTEND between two relays); a link id names both ends. Links between
//! relays are marked as relay links in both tables (the client's is not),
//! so an exit refuses DATA on a one-hop circuit here as it does for real. Tests can take a
//! cell out of flight with [`MemNet::pop`], change it, and deliver it with
//! [`MemNet::deliver`].

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use rand::{CryptoRng, RngCore};

use crate::Channel;
use crate::cell::Reason;
use crate::client::{ClientCircuit, ClientDrop, Received};
use crate::keys::RelayId;
use crate::relay::{
    CircuitHandle, CircuitRef, DropReason, LinkId, RelayAction, RelayEvent, RelayTable,
};

/// A node of the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Node {
    /// The client.
    Client,
    /// Relay number `n` (index into [`MemNet::relays`]).
    Relay(usize),
}

/// A cell on its way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InFlight {
    /// Who receives it.
    pub to: Node,
    /// The circuit end it arrives on.
    pub on: CircuitRef,
    /// Stream or datagram.
    pub channel: Channel,
    /// The link cell.
    pub bytes: Vec<u8>,
}

/// What happened to one delivered cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted (forwarded, handled or delivered).
    Accepted,
    /// Dropped by a relay.
    RelayDropped(usize, DropReason),
    /// Dropped by the client.
    ClientDropped(ClientDrop),
}

/// The network.
#[derive(Debug)]
pub struct MemNet<R> {
    /// The client's circuit.
    pub client: ClientCircuit,
    /// The relays.
    pub relays: Vec<RelayTable<R>>,
    ids: Vec<RelayId>,
    in_flight: VecDeque<InFlight>,
    links: BTreeMap<LinkId, (Node, Node)>,
    client_link: Option<CircuitRef>,
    next_circ: u64,
    /// Packets that left through an exit: (relay, circuit, packet).
    pub exited: Vec<(usize, CircuitHandle, Vec<u8>)>,
    /// Packets the client received from its last hop.
    pub received: Vec<Vec<u8>>,
    /// Every drop, in order.
    pub drops: Vec<Outcome>,
    /// Relay events other than EXTEND (which the network answers itself).
    pub relay_events: Vec<(usize, RelayEvent)>,
    buf: Vec<u8>,
}

impl<R: RngCore + CryptoRng> MemNet<R> {
    /// Joins `client` (whose path must name relays in `relays`, by `ids`).
    pub fn new(client: ClientCircuit, relays: Vec<RelayTable<R>>, ids: Vec<RelayId>) -> Self {
        Self {
            client,
            relays,
            ids,
            in_flight: VecDeque::new(),
            links: BTreeMap::new(),
            client_link: None,
            next_circ: 0,
            exited: Vec::new(),
            received: Vec::new(),
            drops: Vec::new(),
            relay_events: Vec::new(),
            buf: Vec::with_capacity(crate::cell::MAX_CELL_LEN),
        }
    }

    /// Cells waiting to be delivered.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Takes the next cell out of flight (after collecting what every node
    /// queued).
    pub fn pop(&mut self) -> Option<InFlight> {
        self.collect();
        self.in_flight.pop_front()
    }

    /// Puts a cell in flight as if a node had sent it.
    pub fn inject(&mut self, cell: InFlight) {
        self.in_flight.push_back(cell);
    }

    /// Delivers every cell until the network is quiet; returns how many.
    pub fn run(&mut self, now: Instant) -> usize {
        let mut delivered = 0;
        while let Some(cell) = self.pop() {
            self.deliver(now, cell);
            delivered += 1;
        }
        delivered
    }

    /// Delivers one cell to its node and returns what happened.
    pub fn deliver(&mut self, now: Instant, cell: InFlight) -> Outcome {
        let mut bytes = std::mem::take(&mut self.buf);
        bytes.clear();
        bytes.extend_from_slice(&cell.bytes);
        let outcome = match cell.to {
            Node::Client => match self.client.handle_cell(now, &mut bytes) {
                Ok(Received::Packet(range)) => {
                    self.received.push(bytes[range].to_vec());
                    Outcome::Accepted
                }
                Ok(Received::Control) => Outcome::Accepted,
                Err(error) => Outcome::ClientDropped(error),
            },
            Node::Relay(index) => {
                match self.relays[index].handle_cell(now, cell.on, cell.channel, &mut bytes) {
                    RelayAction::Forward { to, channel } => {
                        let next = self.other_end(to.link, cell.to);
                        self.in_flight.push_back(InFlight {
                            to: next,
                            on: to,
                            channel,
                            bytes: bytes.clone(),
                        });
                        Outcome::Accepted
                    }
                    RelayAction::Exit { circuit, packet } => {
                        self.exited.push((index, circuit, bytes[packet].to_vec()));
                        Outcome::Accepted
                    }
                    RelayAction::Handled => Outcome::Accepted,
                    RelayAction::Dropped(reason) => Outcome::RelayDropped(index, reason),
                }
            }
        };
        self.buf = bytes;
        if outcome != Outcome::Accepted {
            self.drops.push(outcome.clone());
        }
        self.collect();
        outcome
    }

    /// Seals `packet` on the client and puts it in flight. Returns `false`
    /// if the circuit is not ready.
    pub fn client_send(&mut self, packet: &[u8]) -> bool {
        let mut cell = Vec::with_capacity(packet.len() + 128);
        crate::cell::data_cell(&mut cell, packet);
        if !self.client.seal_data(&mut cell) {
            return false;
        }
        let on = self.client_end();
        self.in_flight.push_back(InFlight {
            to: Node::Relay(0),
            on,
            channel: Channel::Datagram,
            bytes: cell,
        });
        true
    }

    /// Sends `packet` back from exit `relay` on `circuit`.
    pub fn exit_send(&mut self, relay: usize, circuit: CircuitHandle, packet: &[u8]) -> bool {
        let mut cell = Vec::with_capacity(packet.len() + 128);
        crate::cell::data_cell(&mut cell, packet);
        let Some(to) = self.relays[relay].seal_exit_reply(circuit, &mut cell) else {
            return false;
        };
        let next = self.other_end(to.link, Node::Relay(relay));
        self.in_flight.push_back(InFlight {
            to: next,
            on: to,
            channel: Channel::Datagram,
            bytes: cell,
        });
        true
    }

    /// Moves everything every node queued into flight, and answers EXTEND
    /// requests by opening links.
    fn collect(&mut self) {
        while let Some(transmit) = self.client.poll_transmit() {
            let on = self.client_end();
            self.in_flight.push_back(InFlight {
                to: Node::Relay(0),
                on,
                channel: transmit.channel,
                bytes: transmit.bytes,
            });
        }
        for index in 0..self.relays.len() {
            while let Some(event) = self.relays[index].poll_event() {
                let RelayEvent::Extend {
                    circuit, target, ..
                } = event
                else {
                    self.relay_events.push((index, event));
                    continue;
                };
                match self.ids.iter().position(|id| *id == target) {
                    Some(next) => {
                        let end = self.open(Node::Relay(index), Node::Relay(next));
                        // Both ends proved relay identities (as QUIC links
                        // between relays do); the client's link never does.
                        self.relays[index].set_link_is_relay(end.link, true);
                        self.relays[next].set_link_is_relay(end.link, true);
                        self.relays[index].extend_ready(circuit, end);
                    }
                    None => self.relays[index].extend_failed(circuit, Reason::ConnectFailed),
                }
            }
            while let Some(transmit) = self.relays[index].poll_transmit() {
                let to = self.other_end(transmit.to.link, Node::Relay(index));
                self.in_flight.push_back(InFlight {
                    to,
                    on: transmit.to,
                    channel: transmit.channel,
                    bytes: transmit.bytes,
                });
            }
        }
    }

    /// The link between two nodes, if one was opened.
    pub fn link_between(&self, a: Node, b: Node) -> Option<LinkId> {
        self.links
            .iter()
            .find(|(_, ends)| **ends == (a, b) || **ends == (b, a))
            .map(|(link, _)| *link)
    }

    fn client_end(&mut self) -> CircuitRef {
        match self.client_link {
            Some(end) => end,
            None => {
                let end = self.open(Node::Client, Node::Relay(0));
                self.client_link = Some(end);
                end
            }
        }
    }

    /// A new circuit end on a new link between `a` and `b`.
    fn open(&mut self, a: Node, b: Node) -> CircuitRef {
        let link = self.links.len() as LinkId;
        self.links.insert(link, (a, b));
        self.next_circ += 1;
        CircuitRef {
            link,
            circ: self.next_circ,
        }
    }

    fn other_end(&self, link: LinkId, this: Node) -> Node {
        match self.links.get(&link) {
            Some(&(a, b)) if a == this => b,
            Some(&(a, _)) => a,
            None => this,
        }
    }
}
