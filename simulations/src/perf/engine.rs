//! Engine 2's event loop: the shipped `ClientCircuit` and `RelayTable`
//! state machines, the shipped `select_path` and `GuardState`, exchanging
//! real cells over the virtual links of `net.rs` in virtual time, with the
//! transport of `transport.rs` and the traffic of `traffic.rs` on top.
//! Here: the records a run keeps, the setup, the event queue and the
//! links; `engine/nodes.rs` drives relays and clients' circuits,
//! `engine/flows.rs` the transfers and flows inside them.

mod flows;
mod nodes;

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use trine_circuit::relay::LinkId;
use trine_circuit::{
    Channel, CircuitHandle, CircuitRef, ClientCircuit, OnionPublicKey, OnionSecretKey, RelayConfig,
    RelayTable,
};
use trine_directory::{GuardParams, GuardState, PathIndex};

use crate::engine::stream;
use crate::error::SimError;
use crate::network::Network;
use crate::progress::Progress;
use crate::scenario::AdversarySpec;

use super::graph::{HostBandwidth, Topology};
use super::net::{CELL_OVERHEAD, Port};
use super::scenario::{PerfScenario, TopologySpec, latency};
use super::traffic::Model;
use super::transport::{Receiver, Segmenting, Sender};

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
    /// A delayed-ACK timer of the client's transfer (server side or not).
    DelayedAck {
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
    /// Whether a delayed-ACK timer is pending at the client (for the
    /// response) and at the exit (for the request).
    client_ack_timer: bool,
    server_ack_timer: bool,
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
    consensus: PathIndex,
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
    run_performance_with_progress(scenario, seed, &Progress::new())
}

/// [`run_performance`], advancing `progress` in simulated milliseconds.
pub fn run_performance_with_progress(
    scenario: &PerfScenario,
    seed: u64,
    progress: &Progress,
) -> Result<PerfResult, SimError> {
    let mut network_rng = stream(seed, u64::MAX);
    let no_adversary = AdversarySpec::Chosen { relays: Vec::new() };
    let network = Network::from_relays(&scenario.relays, &no_adversary, &mut network_rng)?;
    let consensus = PathIndex::new(network.candidates().to_vec());
    let mut placement = stream(seed, PLACEMENT_STREAM);
    let topology = topology(scenario, &mut placement)?;
    let queue = scenario.network.queue_bytes;
    let mut hosts = Vec::new();
    let mut relays = Vec::new();
    let mut relay_index = HashMap::new();
    for (index, candidate) in consensus.candidates().iter().enumerate() {
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
    sim.run(progress);
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

    fn run(&mut self, progress: &Progress) {
        const MS: u64 = 1_000_000;
        progress.start(self.result.duration / MS);
        let mut shown_ms = 0;
        while let Some(Scheduled { at, event, .. }) = self.heap.pop() {
            self.result.events += 1;
            let at_ms = at / MS;
            if at_ms > shown_ms {
                progress.advance(at_ms - shown_ms);
                shown_ms = at_ms;
            }
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
                Event::DelayedAck {
                    client,
                    transfer,
                    server,
                } => self.delayed_ack(at, client, transfer, server),
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
    /// Sends `bytes` from node `from` on the circuit end `on`, to the node
    /// at the other end of its link.
    fn send_on(&mut self, now: u64, from: usize, on: CircuitRef, channel: Channel, bytes: Vec<u8>) {
        let to = self.other_end(on.link, from);
        self.send_to(now, (from, to), on, channel, bytes);
    }

    /// Sends `bytes` from node `ends.0` to node `ends.1` on circuit end `on`.
    fn send_to(
        &mut self,
        now: u64,
        (from, to): (usize, usize),
        on: CircuitRef,
        channel: Channel,
        bytes: Vec<u8>,
    ) {
        self.send(
            now,
            Packet {
                from,
                to,
                on,
                channel,
                bytes,
            },
        );
    }

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

    fn finish(mut self) -> PerfResult {
        let seconds = self.end as f64 / 1e9;
        for (index, relay) in self.relays.iter().enumerate() {
            let candidate = &self.consensus.candidates()[index];
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
