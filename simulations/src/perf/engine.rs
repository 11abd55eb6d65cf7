//! Engine 2's event loop: the shipped `ClientCircuit` and `RelayTable`
//! state machines, the shipped `select_path` and `GuardState`, exchanging
//! real cells over the virtual links of `net.rs` in virtual time, with the
//! transport of `transport.rs` and the traffic of `traffic.rs` on top.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use trine_circuit::cell::data_cell;
use trine_circuit::client::{CircuitState, FailureCause};
use trine_circuit::relay::{LinkId, RelayTransmit};
use trine_circuit::{
    Channel, CircuitHandle, CircuitRef, ClientCircuit, ClientConfig, ClientEvent, HopSpec,
    OnionPublicKey, OnionSecretKey, Reason, RelayAction, RelayConfig, RelayEvent, RelayTable,
};
use trine_directory::{Candidate, GuardParams, GuardState, PathConfig, select_path};

use crate::engine::{START, stream};
use crate::error::SimError;
use crate::network::Network;
use crate::scenario::AdversarySpec;

use super::graph::{HostBandwidth, Topology};
use super::net::{CELL_OVERHEAD, Port};
use super::scenario::{PerfScenario, TopologySpec, latency};
use super::traffic::Model;
use super::transport::{HEADER_LEN, Header, Kind, Receiver, Segmenting, Sender};

/// Stream numbers of the seed: clients use their index, relays this plus
/// theirs, the network `u64::MAX` (as in Engine 1), the topology and host
/// placement `u64::MAX - 1`, link loss `u64::MAX - 2`.
const RELAY_STREAMS: u64 = 1 << 32;
const PLACEMENT_STREAM: u64 = u64::MAX - 1;
const LOSS_STREAM: u64 = u64::MAX - 2;

const SECOND: u64 = 1_000_000_000;
/// Wait before a client retries after a failed build or no path.
const RETRY_NS: u64 = SECOND;

/// One circuit build.
#[derive(Debug, Clone, PartialEq)]
pub struct CircuitRecord {
    /// The client.
    pub client: u32,
    /// When it started (ns).
    pub started: u64,
    /// When it became ready (ns).
    pub ready: Option<u64>,
    /// Why it failed while building: `hop<N>_<cause>`.
    pub failure: Option<String>,
}

/// One download (web response or bulk file).
#[derive(Debug, Clone, PartialEq)]
pub struct DownloadRecord {
    /// The client.
    pub client: u32,
    /// Web or bulk.
    pub model: Model,
    /// Response size, bytes.
    pub size: u64,
    /// When the request was sent (ns).
    pub started: u64,
    /// When the first response byte arrived.
    pub first_byte: Option<u64>,
    /// When the last one arrived.
    pub finished: Option<u64>,
    /// Response bytes the client received (each segment once).
    pub bytes: u64,
    /// Segments the server sent again.
    pub retransmissions: u64,
}

/// One constant-rate flow (a client's whole run).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlowRecord {
    /// Datagrams sent.
    pub sent: u64,
    /// Datagrams that reached the exit.
    pub received: u64,
    /// Sum of their one-way delays (ns).
    pub delay_sum: u64,
}

/// One relay over the run.
#[derive(Debug, Clone, PartialEq)]
pub struct RelayRecord {
    /// Fingerprint.
    pub fingerprint: String,
    /// Guard flag.
    pub guard: bool,
    /// May exit.
    pub exit: bool,
    /// Capacity each way, bytes per second.
    pub rate: u64,
    /// Bytes sent (upstream port) before the end.
    pub sent: u64,
    /// Bytes received (downstream port) before the end.
    pub received: u64,
    /// `sent / (rate × run length)`.
    pub utilisation: f64,
    /// Circuits created.
    pub circuits: u64,
    /// Cells relayed (forward and backward).
    pub cells: u64,
    /// Cells dropped by the relay's circuit table.
    pub table_drops: u64,
}

/// Everything a run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct PerfResult {
    /// Run length (ns).
    pub duration: u64,
    /// Every circuit build, in start order.
    pub circuits: Vec<CircuitRecord>,
    /// Every download started, in start order.
    pub downloads: Vec<DownloadRecord>,
    /// Per client with the constant-rate model: its flow.
    pub flows: BTreeMap<u32, FlowRecord>,
    /// Per relay, in consensus order.
    pub relays: Vec<RelayRecord>,
    /// Dropped packets or cells by cause.
    pub drops: BTreeMap<String, u64>,
    /// Clients per model.
    pub models: BTreeMap<&'static str, u64>,
    /// Circuit builds for which path selection found no path.
    pub path_failures: u64,
    /// Events processed.
    pub events: u64,
    /// Most events queued at once.
    pub peak_queue: usize,
}

/// A cell on a link.
#[derive(Debug)]
struct Packet {
    from: usize,
    to: usize,
    on: CircuitRef,
    channel: Channel,
    bytes: Vec<u8>,
}

#[derive(Debug)]
enum Event {
    /// The client builds a circuit.
    Build(u32),
    /// The packet reaches its receiver's downstream port.
    Arrive(Box<Packet>),
    /// The packet is handed to its receiver.
    Deliver(Box<Packet>),
    RelayTimer(u32),
    ClientTimer(u32),
    /// A retransmission timer of the client's transfer (server side or not).
    Rto {
        client: u32,
        transfer: u32,
        server: bool,
    },
    /// The client starts its next transfer.
    NextTransfer(u32),
    /// The client's next constant-rate datagram.
    Tick(u32),
}

struct Scheduled {
    at: u64,
    serial: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.serial) == (other.at, other.serial)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    /// Earliest first (the heap is a max-heap), then order of scheduling.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.serial).cmp(&(self.at, self.serial))
    }
}

struct Host {
    node: usize,
    up: Port,
    down: Port,
}

struct Relay {
    table: RelayTable<ChaCha8Rng>,
    onion_key: OnionPublicKey,
    timer_at: Option<u64>,
}

/// A transfer in progress: both ends' flows.
struct Transfer {
    id: u32,
    record: usize,
    request: Sender,
    request_rx: Receiver,
    response_shape: Segmenting,
    response: Option<Sender>,
    response_rx: Receiver,
    exit: Option<(usize, CircuitHandle)>,
    client_timer: bool,
    server_timer: bool,
}

struct Client {
    host: usize,
    rng: ChaCha8Rng,
    guards: GuardState,
    model: Model,
    circuit: Option<ClientCircuit>,
    end: Option<(CircuitRef, usize)>,
    build: usize,
    timer_at: Option<u64>,
    transfer: Option<Transfer>,
    next_transfer: u32,
    waiting: bool,
    ticking: bool,
    tick_seq: u32,
}

struct Sim<'a> {
    scenario: &'a PerfScenario,
    base: Instant,
    end: u64,
    heap: BinaryHeap<Scheduled>,
    serial: u64,
    hosts: Vec<Host>,
    topology: Topology,
    relays: Vec<Relay>,
    relay_index: HashMap<trine_circuit::RelayId, usize>,
    consensus: Vec<Candidate>,
    clients: Vec<Client>,
    links: Vec<(usize, usize)>,
    link_index: HashMap<(usize, usize), LinkId>,
    next_circ: u64,
    loss_rng: ChaCha8Rng,
    buf: Vec<u8>,
    result: PerfResult,
}

/// Runs Engine 2 for `scenario` with `seed`. Deterministic: every draw
/// comes from a ChaCha8 stream of the seed and virtual time never reads
/// the clock (the circuits' `Instant`s are one base plus virtual time).
pub fn run_performance(scenario: &PerfScenario, seed: u64) -> Result<PerfResult, SimError> {
    let mut network_rng = stream(seed, u64::MAX);
    let no_adversary = AdversarySpec::Chosen { relays: Vec::new() };
    let network = Network::from_relays(&scenario.relays, &no_adversary, &mut network_rng)?;
    let consensus = network.candidates().to_vec();
    let mut placement = stream(seed, PLACEMENT_STREAM);
    let topology = topology(scenario, &mut placement)?;
    let queue = scenario.network.queue_bytes;
    let mut hosts = Vec::new();
    let mut relays = Vec::new();
    let mut relay_index = HashMap::new();
    for (index, candidate) in consensus.iter().enumerate() {
        let node = placement.gen_range(0..topology.nodes());
        let rate = candidate.weight.saturating_mul(1000);
        hosts.push(Host {
            node,
            up: Port::new(rate, queue),
            down: Port::new(rate, queue),
        });
        let mut rng = stream(seed, RELAY_STREAMS + index as u64);
        let secret = OnionSecretKey::generate(&mut rng);
        let onion_key = secret.public_key();
        let config = RelayConfig {
            exit: candidate.is_exit_eligible(),
            ..RelayConfig::default()
        };
        relays.push(Relay {
            table: RelayTable::new(candidate.id, vec![secret], config, rng),
            onion_key,
            timer_at: None,
        });
        relay_index.insert(candidate.id, index);
    }
    let mut clients = Vec::new();
    let mut models = BTreeMap::new();
    for index in 0..scenario.clients.count {
        let node = placement.gen_range(0..topology.nodes());
        let HostBandwidth { up, down } = topology.bandwidth(node);
        let host = hosts.len();
        hosts.push(Host {
            node,
            up: Port::new(up, queue),
            down: Port::new(down, queue),
        });
        let mut rng = stream(seed, u64::from(index));
        let model = Model::draw(&scenario.traffic, &mut rng);
        *models.entry(model.name()).or_insert(0) += 1;
        clients.push(Client {
            host,
            rng,
            guards: GuardState::new(GuardParams::default()),
            model,
            circuit: None,
            end: None,
            build: 0,
            timer_at: None,
            transfer: None,
            next_transfer: 0,
            waiting: false,
            ticking: false,
            tick_seq: 0,
        });
    }
    let mut sim = Sim {
        scenario,
        base: Instant::now(),
        end: scenario.duration_ns(),
        heap: BinaryHeap::new(),
        serial: 0,
        hosts,
        topology,
        relays,
        relay_index,
        consensus,
        clients,
        links: Vec::new(),
        link_index: HashMap::new(),
        next_circ: 0,
        loss_rng: stream(seed, LOSS_STREAM),
        buf: Vec::with_capacity(2048),
        result: PerfResult {
            duration: scenario.duration_ns(),
            circuits: Vec::new(),
            downloads: Vec::new(),
            flows: BTreeMap::new(),
            relays: Vec::new(),
            drops: BTreeMap::new(),
            models,
            path_failures: 0,
            events: 0,
            peak_queue: 0,
        },
    };
    let spread = (scenario.clients.start_within_seconds * 1e9).round() as u64;
    for index in 0..scenario.clients.count {
        let client = &mut sim.clients[index as usize];
        let at = if spread == 0 {
            0
        } else {
            client.rng.gen_range(0..spread)
        };
        sim.push(at, Event::Build(index));
    }
    sim.run();
    Ok(sim.finish())
}

/// The topology the scenario names, generated from the placement stream
/// or read from its GML file.
fn topology(scenario: &PerfScenario, rng: &mut ChaCha8Rng) -> Result<Topology, SimError> {
    match &scenario.network.topology {
        TopologySpec::Coordinates {
            nodes,
            min_latency,
            max_latency,
            packet_loss,
            host_bandwidth_up,
            host_bandwidth_down,
        } => Ok(Topology::coordinates(
            *nodes as usize,
            latency("network.topology.min_latency", min_latency)?,
            latency("network.topology.max_latency", max_latency)?,
            *packet_loss,
            PerfScenario::coordinate_bandwidth(host_bandwidth_up, host_bandwidth_down)?,
            rng,
        )),
        TopologySpec::Gml { path } => {
            let text = std::fs::read_to_string(path).map_err(|source| SimError::Io {
                path: path.clone(),
                source,
            })?;
            Topology::from_gml(&text).map_err(|source| SimError::Graph {
                path: path.clone(),
                source,
            })
        }
    }
}

impl Sim<'_> {
    fn push(&mut self, at: u64, event: Event) {
        if at < self.end {
            self.heap.push(Scheduled {
                at,
                serial: self.serial,
                event,
            });
            self.serial += 1;
            self.result.peak_queue = self.result.peak_queue.max(self.heap.len());
        }
    }

    fn instant(&self, at: u64) -> Instant {
        self.base + Duration::from_nanos(at)
    }

    fn ns(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX)
    }

    fn drop(&mut self, cause: &str) {
        match self.result.drops.get_mut(cause) {
            Some(count) => *count += 1,
            None => {
                self.result.drops.insert(cause.to_owned(), 1);
            }
        }
    }

    fn run(&mut self) {
        while let Some(Scheduled { at, event, .. }) = self.heap.pop() {
            self.result.events += 1;
            match event {
                Event::Build(client) => self.build(at, client),
                Event::Arrive(packet) => self.arrive(at, packet),
                Event::Deliver(packet) => self.deliver(at, *packet),
                Event::RelayTimer(relay) => self.relay_timer(at, relay as usize),
                Event::ClientTimer(client) => self.client_timer(at, client),
                Event::Rto {
                    client,
                    transfer,
                    server,
                } => self.rto(at, client, transfer, server),
                Event::NextTransfer(client) => self.start_transfer(at, client),
                Event::Tick(client) => self.tick(at, client),
            }
        }
    }

    // --- links -----------------------------------------------------------

    /// A new circuit end on the link between hosts `a` and `b`.
    fn open(&mut self, a: usize, b: usize) -> CircuitRef {
        let key = (a.min(b), a.max(b));
        let link = match self.link_index.get(&key) {
            Some(&link) => link,
            None => {
                let link = self.links.len() as LinkId;
                self.links.push(key);
                self.link_index.insert(key, link);
                link
            }
        };
        self.next_circ += 1;
        CircuitRef {
            link,
            circ: self.next_circ,
        }
    }

    fn other_end(&self, link: LinkId, this: usize) -> usize {
        match self.links.get(link as usize) {
            Some(&(a, b)) if a == this => b,
            Some(&(a, _)) => a,
            None => this,
        }
    }

    /// Puts a cell on `packet.from`'s upstream port toward `packet.to`.
    fn send(&mut self, now: u64, packet: Packet) {
        let wire = packet.bytes.len() + CELL_OVERHEAD;
        let droppable = packet.channel == Channel::Datagram;
        let Some(left) = self.hosts[packet.from]
            .up
            .offer(now, wire, droppable, self.end)
        else {
            self.drop("queue_full_up");
            return;
        };
        let (from, to) = (self.hosts[packet.from].node, self.hosts[packet.to].node);
        let (latency, loss) = self.topology.path(from, to);
        if droppable && loss > 0.0 && self.loss_rng.r#gen::<f64>() < loss {
            self.drop("link_loss");
            return;
        }
        self.push(left + latency, Event::Arrive(Box::new(packet)));
    }

    fn arrive(&mut self, now: u64, packet: Box<Packet>) {
        let wire = packet.bytes.len() + CELL_OVERHEAD;
        let droppable = packet.channel == Channel::Datagram;
        match self.hosts[packet.to]
            .down
            .offer(now, wire, droppable, self.end)
        {
            Some(done) => self.push(done, Event::Deliver(packet)),
            None => self.drop("queue_full_down"),
        }
    }

    fn deliver(&mut self, now: u64, packet: Packet) {
        if packet.to < self.relays.len() {
            self.relay_receive(now, packet);
        } else {
            self.client_receive(now, packet);
        }
    }

    // --- relays ----------------------------------------------------------

    fn relay_receive(&mut self, now: u64, packet: Packet) {
        let relay = packet.to;
        let Packet {
            on,
            channel,
            mut bytes,
            ..
        } = packet;
        let instant = self.instant(now);
        match self.relays[relay]
            .table
            .handle_cell(instant, on, channel, &mut bytes)
        {
            RelayAction::Forward { to, channel } => {
                let next = self.other_end(to.link, relay);
                self.send(
                    now,
                    Packet {
                        from: relay,
                        to: next,
                        on: to,
                        channel,
                        bytes,
                    },
                );
            }
            RelayAction::Exit { circuit, packet } => {
                if let Some(payload) = bytes.get(packet) {
                    self.server_receive(now, relay, circuit, payload);
                }
            }
            // Counted in the table's statistics.
            RelayAction::Handled | RelayAction::Dropped(_) => {}
        }
        self.drain_relay(now, relay);
    }

    /// Answers EXTEND requests by opening circuits on links, sends what the
    /// table queued, and sets its timer.
    fn drain_relay(&mut self, now: u64, relay: usize) {
        while let Some(event) = self.relays[relay].table.poll_event() {
            let RelayEvent::Extend {
                circuit, target, ..
            } = event
            else {
                continue;
            };
            match self.relay_index.get(&target).copied() {
                Some(next) if next != relay => {
                    let end = self.open(relay, next);
                    self.relays[relay].table.extend_ready(circuit, end);
                }
                _ => self.relays[relay]
                    .table
                    .extend_failed(circuit, Reason::ConnectFailed),
            }
        }
        while let Some(RelayTransmit { to, channel, bytes }) =
            self.relays[relay].table.poll_transmit()
        {
            let next = self.other_end(to.link, relay);
            self.send(
                now,
                Packet {
                    from: relay,
                    to: next,
                    on: to,
                    channel,
                    bytes,
                },
            );
        }
        if let Some(at) = self.relays[relay].table.poll_timeout() {
            let at = self.ns(at);
            if self.relays[relay].timer_at.is_none_or(|set| at < set) {
                self.relays[relay].timer_at = Some(at);
                self.push(at, Event::RelayTimer(relay as u32));
            }
        }
    }

    fn relay_timer(&mut self, now: u64, relay: usize) {
        if self.relays[relay].timer_at != Some(now) {
            return;
        }
        self.relays[relay].timer_at = None;
        let instant = self.instant(now);
        self.relays[relay].table.handle_timeout(instant);
        self.drain_relay(now, relay);
    }

    // --- clients: circuits -----------------------------------------------

    fn build(&mut self, now: u64, index: u32) {
        let unix = START + now / SECOND;
        let instant = self.instant(now);
        let client = &mut self.clients[index as usize];
        let path = match select_path(
            &self.consensus,
            &mut client.guards,
            unix,
            &mut client.rng,
            &PathConfig::default(),
        ) {
            Ok(path) => path,
            Err(_) => {
                self.result.path_failures += 1;
                self.push(now + RETRY_NS, Event::Build(index));
                return;
            }
        };
        let hops: Vec<HopSpec> = [path.guard, path.middle, path.exit]
            .iter()
            .filter_map(|id| {
                let relay = *self.relay_index.get(id)?;
                Some(HopSpec {
                    id: *id,
                    onion_key: self.relays[relay].onion_key,
                    addresses: self.consensus[relay].addresses.clone(),
                })
            })
            .collect();
        let (3, Some(&guard)) = (hops.len(), self.relay_index.get(&path.guard)) else {
            // Path selection only names relays of the consensus.
            self.result.path_failures += 1;
            self.push(now + RETRY_NS, Event::Build(index));
            return;
        };
        let client = &mut self.clients[index as usize];
        let Ok(circuit) =
            ClientCircuit::new(hops, &ClientConfig::default(), instant, &mut client.rng)
        else {
            self.result.path_failures += 1;
            self.push(now + RETRY_NS, Event::Build(index));
            return;
        };
        let host = client.host;
        client.circuit = Some(circuit);
        client.build = self.result.circuits.len();
        self.result.circuits.push(CircuitRecord {
            client: index,
            started: now,
            ready: None,
            failure: None,
        });
        let end = self.open(host, guard);
        self.clients[index as usize].end = Some((end, guard));
        self.drain_client(now, index);
    }

    fn client_receive(&mut self, now: u64, packet: Packet) {
        let index = (packet.to - self.relays.len()) as u32;
        let Packet { on, mut bytes, .. } = packet;
        let instant = self.instant(now);
        let client = &mut self.clients[index as usize];
        let (Some(circuit), Some((end, _))) = (client.circuit.as_mut(), client.end) else {
            self.drop("client_no_circuit");
            return;
        };
        if end != on {
            self.drop("client_stale_circuit");
            return;
        }
        match circuit.handle_cell(instant, &mut bytes) {
            Ok(trine_circuit::client::Received::Packet(range)) => {
                if let Some(payload) = bytes.get(range) {
                    self.client_packet(now, index, payload);
                }
            }
            Ok(trine_circuit::client::Received::Control) => {}
            Err(_) => self.drop("client_cell_dropped"),
        }
        self.drain_client(now, index);
    }

    /// Handles the circuit's events, sends what it queued, sets its timer.
    fn drain_client(&mut self, now: u64, index: u32) {
        let client = &mut self.clients[index as usize];
        let Some(circuit) = client.circuit.as_mut() else {
            return;
        };
        let mut events = Vec::new();
        while let Some(event) = circuit.poll_event() {
            events.push(event);
        }
        let mut transmits = Vec::new();
        while let Some(transmit) = circuit.poll_transmit() {
            transmits.push(transmit);
        }
        let timeout = circuit.poll_timeout();
        let (host, end) = (client.host, client.end);
        if let Some((on, guard)) = end {
            for transmit in transmits {
                self.send(
                    now,
                    Packet {
                        from: host,
                        to: guard,
                        on,
                        channel: transmit.channel,
                        bytes: transmit.bytes,
                    },
                );
            }
        }
        for event in events {
            match event {
                ClientEvent::Ready => self.circuit_ready(now, index),
                ClientEvent::Failed(failure) => {
                    let record = &mut self.result.circuits[self.clients[index as usize].build];
                    if record.ready.is_none() {
                        record.failure =
                            Some(format!("hop{}_{}", failure.hop, cause(failure.cause)));
                    }
                    self.circuit_lost(now, index);
                    return;
                }
                ClientEvent::HopAdded { .. } | ClientEvent::Pong { .. } => {}
            }
        }
        if let Some(at) = timeout {
            let at = self.ns(at);
            let client = &mut self.clients[index as usize];
            if client.timer_at.is_none_or(|set| at < set) {
                client.timer_at = Some(at);
                self.push(at, Event::ClientTimer(index));
            }
        }
    }

    fn client_timer(&mut self, now: u64, index: u32) {
        let instant = self.instant(now);
        let client = &mut self.clients[index as usize];
        if client.timer_at != Some(now) {
            return;
        }
        client.timer_at = None;
        if let Some(circuit) = client.circuit.as_mut() {
            circuit.handle_timeout(instant);
        }
        self.drain_client(now, index);
    }

    fn circuit_ready(&mut self, now: u64, index: u32) {
        let record = &mut self.result.circuits[self.clients[index as usize].build];
        record.ready = Some(now);
        let client = &mut self.clients[index as usize];
        match client.model {
            Model::Constant => {
                self.result.flows.entry(index).or_default();
                if !client.ticking {
                    client.ticking = true;
                    self.push(now, Event::Tick(index));
                }
            }
            Model::Web | Model::Bulk => {
                if client.transfer.is_none() && !client.waiting {
                    self.start_transfer(now, index);
                }
            }
        }
    }

    /// The circuit failed or was destroyed: give it up (its DESTROY was
    /// sent), abandon the transfer, and build another after a pause.
    fn circuit_lost(&mut self, now: u64, index: u32) {
        let client = &mut self.clients[index as usize];
        if let Some(mut circuit) = client.circuit.take() {
            circuit.close();
            let mut transmits = Vec::new();
            while let Some(transmit) = circuit.poll_transmit() {
                transmits.push(transmit);
            }
            if let Some((on, guard)) = client.end {
                let host = client.host;
                for transmit in transmits {
                    self.send(
                        now,
                        Packet {
                            from: host,
                            to: guard,
                            on,
                            channel: transmit.channel,
                            bytes: transmit.bytes,
                        },
                    );
                }
            }
        }
        let client = &mut self.clients[index as usize];
        client.end = None;
        client.transfer = None;
        client.waiting = false;
        self.push(now + RETRY_NS, Event::Build(index));
    }

    fn ready(&self, index: u32) -> bool {
        self.clients[index as usize]
            .circuit
            .as_ref()
            .is_some_and(|circuit| circuit.state() == CircuitState::Ready)
    }

    // --- transfers -------------------------------------------------------

    fn start_transfer(&mut self, now: u64, index: u32) {
        let spec = &self.scenario.traffic;
        let transport = &self.scenario.transport;
        let client = &mut self.clients[index as usize];
        client.waiting = false;
        if client.transfer.is_some() {
            return;
        }
        if !self.ready(index) {
            // Started when the next circuit is ready.
            return;
        }
        let client = &mut self.clients[index as usize];
        let Some((request, response)) = client.model.next_transfer(spec, &mut client.rng) else {
            return;
        };
        let segment = transport.segment_bytes;
        let request_shape = Segmenting {
            size: request,
            segment,
        };
        let response_shape = Segmenting {
            size: response,
            segment,
        };
        let id = client.next_transfer;
        client.next_transfer += 1;
        client.transfer = Some(Transfer {
            id,
            record: self.result.downloads.len(),
            request: Sender::new(
                request_shape,
                transport.initial_window,
                transport.max_window,
            ),
            request_rx: Receiver::new(request_shape),
            response_shape,
            response: None,
            response_rx: Receiver::new(response_shape),
            exit: None,
            client_timer: false,
            server_timer: false,
        });
        self.result.downloads.push(DownloadRecord {
            client: index,
            model: client.model,
            size: response,
            started: now,
            first_byte: None,
            finished: None,
            bytes: 0,
            retransmissions: 0,
        });
        self.pump_client(now, index);
    }

    /// Sends what the client's request flow allows.
    fn pump_client(&mut self, now: u64, index: u32) {
        loop {
            let Some(transfer) = self.clients[index as usize].transfer.as_mut() else {
                return;
            };
            let Some((seq, len)) = transfer.request.poll(now) else {
                break;
            };
            let header = Header {
                kind: Kind::Request,
                client: index,
                transfer: transfer.id,
                number: seq,
                stamp: now,
            };
            self.client_send(now, index, &header, len);
        }
        self.arm_timer(index, false);
    }

    /// Sends what the server's response flow allows.
    fn pump_server(&mut self, now: u64, index: u32) {
        loop {
            let Some(transfer) = self.clients[index as usize].transfer.as_mut() else {
                return;
            };
            let (Some(response), Some((relay, circuit))) =
                (transfer.response.as_mut(), transfer.exit)
            else {
                return;
            };
            let Some((seq, len)) = response.poll(now) else {
                break;
            };
            let header = Header {
                kind: Kind::Response,
                client: index,
                transfer: transfer.id,
                number: seq,
                stamp: now,
            };
            self.server_send(now, relay, circuit, &header, len);
        }
        self.arm_timer(index, true);
    }

    /// Schedules the retransmission timer of one side if it has a deadline
    /// and no timer event is pending.
    fn arm_timer(&mut self, index: u32, server: bool) {
        let Some(transfer) = self.clients[index as usize].transfer.as_mut() else {
            return;
        };
        let (sender, pending) = if server {
            (transfer.response.as_ref(), &mut transfer.server_timer)
        } else {
            (Some(&transfer.request), &mut transfer.client_timer)
        };
        let Some(deadline) = sender.and_then(Sender::deadline) else {
            return;
        };
        if !*pending {
            *pending = true;
            let id = transfer.id;
            self.push(
                deadline,
                Event::Rto {
                    client: index,
                    transfer: id,
                    server,
                },
            );
        }
    }

    fn rto(&mut self, now: u64, index: u32, id: u32, server: bool) {
        let Some(transfer) = self.clients[index as usize].transfer.as_mut() else {
            return;
        };
        if transfer.id != id {
            return;
        }
        let (sender, pending) = if server {
            (transfer.response.as_mut(), &mut transfer.server_timer)
        } else {
            (Some(&mut transfer.request), &mut transfer.client_timer)
        };
        *pending = false;
        if let Some(sender) = sender {
            sender.on_timeout(now);
        }
        if server {
            self.pump_server(now, index);
        } else {
            self.pump_client(now, index);
        }
    }

    /// Seals a transport packet on the client's circuit and sends it.
    fn client_send(&mut self, now: u64, index: u32, header: &Header, payload: usize) {
        let mut packet = std::mem::take(&mut self.buf);
        header.write(payload, &mut packet);
        let mut cell = Vec::with_capacity(packet.len() + 128);
        data_cell(&mut cell, &packet);
        self.buf = packet;
        let client = &mut self.clients[index as usize];
        let sealed = client
            .circuit
            .as_mut()
            .is_some_and(|circuit| circuit.seal_data(&mut cell));
        match (sealed, client.end) {
            (true, Some((on, guard))) => {
                let host = client.host;
                self.send(
                    now,
                    Packet {
                        from: host,
                        to: guard,
                        on,
                        channel: Channel::Datagram,
                        bytes: cell,
                    },
                );
            }
            _ => self.drop("client_not_ready"),
        }
    }

    /// Seals a transport packet at the exit for its client and sends it.
    fn server_send(
        &mut self,
        now: u64,
        relay: usize,
        circuit: CircuitHandle,
        header: &Header,
        payload: usize,
    ) {
        let mut packet = std::mem::take(&mut self.buf);
        header.write(payload, &mut packet);
        let mut cell = Vec::with_capacity(packet.len() + 128);
        data_cell(&mut cell, &packet);
        self.buf = packet;
        match self.relays[relay].table.seal_exit_reply(circuit, &mut cell) {
            Some(to) => {
                let next = self.other_end(to.link, relay);
                self.send(
                    now,
                    Packet {
                        from: relay,
                        to: next,
                        on: to,
                        channel: Channel::Datagram,
                        bytes: cell,
                    },
                );
            }
            None => self.drop("exit_circuit_gone"),
        }
    }

    /// A transport packet left the circuit at exit `relay`.
    fn server_receive(&mut self, now: u64, relay: usize, circuit: CircuitHandle, packet: &[u8]) {
        let Some(header) = Header::read(packet) else {
            self.drop("server_malformed");
            return;
        };
        let payload = packet.len() - HEADER_LEN;
        if header.kind == Kind::Constant {
            if let Some(flow) = self.result.flows.get_mut(&header.client) {
                flow.received += 1;
                flow.delay_sum += now.saturating_sub(header.stamp);
            }
            return;
        }
        let Some(transfer) = self
            .clients
            .get_mut(header.client as usize)
            .and_then(|client| client.transfer.as_mut())
            .filter(|transfer| transfer.id == header.transfer)
        else {
            // ACKs and copies still in flight for a transfer the client
            // has finished or abandoned: the exit's side is gone with it.
            return;
        };
        transfer.exit = Some((relay, circuit));
        match header.kind {
            Kind::Request => {
                let ack = transfer.request_rx.on_segment(now, header.number, payload);
                let id = transfer.id;
                if transfer.request_rx.complete() && transfer.response.is_none() {
                    let transport = &self.scenario.transport;
                    transfer.response = Some(Sender::new(
                        transfer.response_shape,
                        transport.initial_window,
                        transport.max_window,
                    ));
                }
                let reply = Header {
                    kind: Kind::RequestAck,
                    client: header.client,
                    transfer: id,
                    number: ack,
                    stamp: header.stamp,
                };
                self.server_send(now, relay, circuit, &reply, 0);
            }
            Kind::ResponseAck => {
                if let Some(response) = transfer.response.as_mut() {
                    response.on_ack(now, header.number, header.stamp);
                }
            }
            Kind::Response | Kind::RequestAck | Kind::Constant => {
                self.drop("server_unexpected");
                return;
            }
        }
        self.pump_server(now, header.client);
    }

    /// A transport packet reached the client from its exit.
    fn client_packet(&mut self, now: u64, index: u32, packet: &[u8]) {
        let Some(header) = Header::read(packet).filter(|header| header.client == index) else {
            self.drop("client_malformed");
            return;
        };
        let payload = packet.len() - HEADER_LEN;
        let Some(transfer) = self.clients[index as usize]
            .transfer
            .as_mut()
            .filter(|transfer| transfer.id == header.transfer)
        else {
            // A late copy for a finished or abandoned transfer.
            return;
        };
        match header.kind {
            Kind::RequestAck => {
                transfer.request.on_ack(now, header.number, header.stamp);
                self.pump_client(now, index);
            }
            Kind::Response => {
                let ack = transfer.response_rx.on_segment(now, header.number, payload);
                let record = &mut self.result.downloads[transfer.record];
                record.first_byte = transfer.response_rx.first_byte;
                record.bytes = transfer.response_rx.bytes;
                let done = transfer.response_rx.complete();
                let id = transfer.id;
                if done {
                    record.finished = Some(now);
                    record.retransmissions = transfer
                        .response
                        .as_ref()
                        .map_or(0, |response| response.retransmissions);
                }
                let reply = Header {
                    kind: Kind::ResponseAck,
                    client: index,
                    transfer: id,
                    number: ack,
                    stamp: header.stamp,
                };
                self.client_send(now, index, &reply, 0);
                if done {
                    self.finish_transfer(now, index);
                }
            }
            Kind::Request | Kind::ResponseAck | Kind::Constant => self.drop("client_unexpected"),
        }
    }

    /// The last response byte arrived; the next transfer after a pause.
    /// (The exit's sender keeps no state past this: the final ACK may be
    /// lost without consequence, as the client is satisfied.)
    fn finish_transfer(&mut self, now: u64, index: u32) {
        let spec = &self.scenario.traffic;
        let client = &mut self.clients[index as usize];
        client.transfer = None;
        client.waiting = true;
        let pause = client.model.pause_ns(spec, &mut client.rng);
        self.push(now + pause, Event::NextTransfer(index));
    }

    fn tick(&mut self, now: u64, index: u32) {
        if !self.ready(index) {
            self.clients[index as usize].ticking = false;
            return;
        }
        let constant = &self.scenario.traffic.constant;
        let packet = constant.packet_bytes as usize;
        let interval = (packet as u64 * SECOND).div_ceil(constant.bytes_per_second);
        let client = &mut self.clients[index as usize];
        let seq = client.tick_seq;
        client.tick_seq = seq.wrapping_add(1);
        let header = Header {
            kind: Kind::Constant,
            client: index,
            transfer: 0,
            number: seq,
            stamp: now,
        };
        if let Some(flow) = self.result.flows.get_mut(&index) {
            flow.sent += 1;
        }
        self.client_send(now, index, &header, packet.saturating_sub(HEADER_LEN));
        self.push(now + interval.max(1), Event::Tick(index));
    }

    fn finish(mut self) -> PerfResult {
        let seconds = self.end as f64 / 1e9;
        for (index, relay) in self.relays.iter().enumerate() {
            let candidate = &self.consensus[index];
            let host = &self.hosts[index];
            let stats = relay.table.stats();
            let capacity = host.up.rate() as f64 * seconds;
            self.result.relays.push(RelayRecord {
                fingerprint: candidate.id.fingerprint(),
                guard: candidate.is_guard_eligible(),
                exit: candidate.is_exit_eligible(),
                rate: host.up.rate(),
                sent: host.up.sent(),
                received: host.down.sent(),
                utilisation: if capacity > 0.0 {
                    host.up.sent() as f64 / capacity
                } else {
                    0.0
                },
                circuits: stats.circuits_created,
                cells: stats.forward_cells + stats.backward_cells,
                table_drops: stats.drops.values().sum(),
            });
            for (reason, count) in &stats.drops {
                *self
                    .result
                    .drops
                    .entry(format!("relay_{}", reason.name()))
                    .or_insert(0) += count;
            }
        }
        self.result
    }
}

/// A short name for what ended a circuit.
fn cause(cause: FailureCause) -> &'static str {
    match cause {
        FailureCause::Handshake(_) => "handshake",
        FailureCause::Truncated(_) => "truncated",
        FailureCause::Destroyed(_) => "destroyed",
        FailureCause::Ended(_) => "ended",
        FailureCause::Timeout => "timeout",
    }
}
