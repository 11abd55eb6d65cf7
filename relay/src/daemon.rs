//! The relay daemon: a thin async shell around the protocol core.
//!
//! One task (the core loop) owns the [`RelayTable`], the rate limiters and
//! the link registry, and is the only place protocol state changes. Other
//! tasks only move bytes: one per link reads datagrams and accepts circuit
//! streams, one per stream reads cells and one writes them. They talk to the
//! core loop over one bounded channel, so the core is never shared and never
//! locked.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::rngs::OsRng;
use tokio::sync::{Notify, mpsc, watch};
use tracing::{debug, info, warn};
use trine_circuit::cell::LinkCommand;
use trine_circuit::relay::{CircuitHandle, LinkId, RelayEvent, RelayTransmit};
use trine_circuit::{Channel, CircuitRef, Reason, RelayAction, RelayId, RelayTable};
use trine_link::message::is_message_cell;
use trine_link::{CircuitStream, Endpoint, Link, LinkConfig};

use crate::cellqueue::{CellSender, cell_queue};
use crate::config::Config;
use crate::directory::{self, ConsensusCache};
use crate::exit::conntrack::Forgotten;
use crate::exit::engine::ExitEngine;
use crate::exit::runtime::{DnsAnswer, ExitRuntime, TUN_QUEUE};
use crate::exit::system::own_addresses;
use crate::extend::{DialBudget, ExtendPolicy, Refusal};
use crate::keys::KeyStore;
use crate::limits::{SourceLimiter, TokenBucket};
use crate::metrics::{self, ExitSnapshot, Snapshot};
use crate::peers::RelayPeers;
use trine_directory::Digest;
use trine_node::cache::ConsensusStore;

/// Cells queued toward one circuit stream before further cells are dropped.
const STREAM_QUEUE: usize = 256;
/// Messages queued toward the core loop.
const CORE_QUEUE: usize = 4096;
/// How often rate-limiter state is pruned and rotation is checked.
const HOUSEKEEPING: Duration = Duration::from_secs(1);

/// A hook on an exit's circuits, for adversarial tests only: the shipped
/// `trine-relay` runs with none. It plays an exit operator who changed
/// their relay (the threat model's hostile exit): it sees every packet a
/// client sends before the exit policy does, and whatever it returns is
/// sealed back to that client as if it came from the internet.
pub trait ExitTap: Send {
    /// A packet a client sent; the packets returned go back to it.
    fn on_client_packet(&mut self, packet: &[u8]) -> Vec<Vec<u8>>;
}

/// What the I/O tasks tell the core loop.
enum Input {
    LinkUp {
        id: LinkId,
        link: Link,
    },
    LinkDown {
        id: LinkId,
    },
    StreamUp {
        end: CircuitRef,
        writer: CellSender,
    },
    StreamDown {
        end: CircuitRef,
    },
    Cell {
        end: CircuitRef,
        channel: Channel,
        bytes: Vec<u8>,
    },
    ExtendOpened {
        circuit: CircuitHandle,
        end: CircuitRef,
        writer: CellSender,
    },
    ExtendFailed {
        circuit: CircuitHandle,
        reason: Reason,
    },
    /// An EXTEND's dials are over: `failed` of the `reserved` attempts
    /// failed.
    Dialed {
        circuit: CircuitHandle,
        client_link: Option<LinkId>,
        reserved: usize,
        failed: usize,
    },
}

struct LinkEntry {
    link: Link,
    peer: Option<RelayId>,
}

/// `trine-relay run`: loads the configuration at `config_path` and its
/// keys, starts logging and runs the relay on a multi-threaded runtime
/// until SIGINT or SIGTERM (with `tap` on its exit traffic, in adversarial
/// tests; `None` otherwise).
pub fn run_from_file(
    config_path: &std::path::Path,
    tap: Option<Box<dyn ExitTap>>,
) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    let keys = KeyStore::load(&config.key_dir)?;
    trine_node::init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(config, keys, tap))
}

/// Runs the relay until SIGINT or SIGTERM (with `tap` on its exit
/// traffic, in adversarial tests; `None` otherwise).
pub async fn run(
    config: Config,
    mut keys: KeyStore,
    tap: Option<Box<dyn ExitTap>>,
) -> anyhow::Result<()> {
    let identity = keys.identity.relay_id();
    let link_config = LinkConfig {
        idle_timeout: config.link_idle_timeout,
        keep_alive: config.link_keep_alive,
        max_circuits_per_link: u32::try_from(config.circuits.max_circuits_per_link)
            .unwrap_or(u32::MAX),
        ..LinkConfig::default()
    };
    let endpoint = Arc::new(
        Endpoint::relay(config.listen, &keys.identity, &link_config)
            .map_err(|error| anyhow::anyhow!("cannot listen on {}: {error}", config.listen))?,
    );
    let (scrape_tx, mut scrapes) = mpsc::channel::<metrics::ScrapeRequest>(16);
    if let Some(address) = config.metrics {
        let listener = metrics::bind(address)
            .await
            .map_err(|error| anyhow::anyhow!("cannot serve metrics on {address}: {error}"))?;
        tokio::spawn(metrics::serve(listener, scrape_tx));
    }
    info!(
        nickname = %config.nickname,
        fingerprint = %identity,
        listen = %endpoint.local_addr().map_err(|e| anyhow::anyhow!("{e}"))?,
        advertise = ?config.advertise,
        "relay running"
    );

    let cache_file = config.key_dir.with_file_name("cached-consensus");
    let cache: ConsensusCache = Arc::new(std::sync::RwLock::new(match &config.directory {
        Some((authorities, _)) => ConsensusStore::open(&cache_file, &authorities.set, unix_now()),
        None => ConsensusStore::empty(&cache_file),
    }));
    let unlisted = Arc::new(Notify::new());
    let mut descriptors = match &config.directory {
        Some((authorities, every)) => {
            let (descriptors, updates) =
                watch::channel(directory::descriptor(&config, &keys, unix_now())?);
            tokio::spawn(directory::run(
                endpoint.clone(),
                authorities.clone(),
                updates,
                cache.clone(),
                unlisted.clone(),
                unix_now,
            ));
            Some((descriptors, *every, unix_now()))
        }
        None => None,
    };

    let (tun_tx, mut from_tun) = mpsc::channel::<Vec<u8>>(TUN_QUEUE);
    let (dns_tx, mut dns_answers) = mpsc::channel::<DnsAnswer>(TUN_QUEUE);
    let (forgotten_tx, mut forgotten) = mpsc::unbounded_channel::<Forgotten>();
    let exit = if config.exit {
        Some(ExitRuntime::start(
            &config.exit_settings,
            &config.advertised_ips(),
            config.circuits.max_circuits,
            tun_tx,
            dns_tx,
            forgotten_tx,
        )?)
    } else {
        // Kept so the receivers stay open (and quiet) on a non-exit relay.
        drop((tun_tx, dns_tx, forgotten_tx));
        None
    };

    let (input_tx, input_rx) = mpsc::channel(CORE_QUEUE);
    tokio::spawn(accept_links(endpoint.clone(), input_tx.clone()));

    let table = RelayTable::new(identity, keys.onion_keys(), config.circuits.clone(), OsRng);
    let now = Instant::now();
    let mut core = Core {
        table,
        links: HashMap::new(),
        by_peer: HashMap::new(),
        writers: HashMap::new(),
        creates: SourceLimiter::new(
            config.creates_per_second_per_source,
            config.create_burst_per_source,
        ),
        bandwidth: config
            .bandwidth
            .map(|(rate, burst)| TokenBucket::new(rate as f64, burst as f64, now)),
        endpoint: endpoint.clone(),
        input: input_tx,
        snapshot: Snapshot::default(),
        exit,
        tap,
        cache,
        peers: RelayPeers::new(
            config.trusted_relays.iter().copied(),
            config
                .directory
                .iter()
                .flat_map(|(authorities, _)| authorities.list.iter().map(|a| a.id)),
        ),
        consensus_seen: None,
        unlisted,
        extends: ExtendPolicy::new(
            config.extend.private_networks.clone(),
            own_ips(&config),
            config.directory.is_some(),
        ),
        dials: DialBudget::new(config.extend.limits),
    };
    let mut input_rx = input_rx;
    let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
    let shutdown = trine_node::shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let wake = core
            .table
            .poll_timeout()
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            Some(input) = input_rx.recv() => core.handle(input),
            _ = tokio::time::sleep_until(wake) => core.table.handle_timeout(Instant::now()),
            _ = housekeeping.tick() => {
                core.creates.prune(Instant::now());
                core.reconsider_peers();
                if let Some((descriptors, every, published)) = &mut descriptors {
                    let now = unix_now();
                    if now.saturating_sub(*published) >= every.as_secs() {
                        match directory::descriptor(&config, &keys, now) {
                            Ok(descriptor) => {
                                *published = now;
                                let _ = descriptors.send(descriptor);
                            }
                            Err(error) => warn!(%error, "cannot make a descriptor"),
                        }
                    }
                }
                match keys.rotate(unix_now(), config.onion_rotation, config.onion_overlap, &mut OsRng) {
                    Ok(true) => {
                        core.table.set_onion_keys(keys.onion_keys());
                        core.snapshot.onion_rotations += 1;
                        // A new onion key: publish it now.
                        if let Some((_, _, published)) = &mut descriptors {
                            *published = 0;
                        }
                        info!("onion key rotated");
                    }
                    Ok(false) => {}
                    Err(error) => warn!(%error, "onion key rotation failed; keeping current keys"),
                }
            }
            Some(answer) = scrapes.recv() => {
                let _ = answer.send(core.snapshot());
            }
            Some(cell) = from_tun.recv() => core.tun_packet(cell),
            Some(answer) = dns_answers.recv() => core.dns_answer(answer),
            Some(done) = forgotten.recv() => {
                if let Some(exit) = &mut core.exit {
                    exit.forgotten(done);
                }
            }
            _ = &mut shutdown => break,
        }
        core.flush();
    }
    info!("shutting down: destroying circuits");
    core.table.shutdown();
    core.flush();
    // Give writers a moment to put the DESTROYs on the wire.
    drop(core.writers);
    if let Some(exit) = &core.exit {
        exit.stop();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    endpoint.close();
    Ok(())
}

struct Core {
    table: RelayTable<OsRng>,
    links: HashMap<LinkId, LinkEntry>,
    by_peer: HashMap<RelayId, LinkId>,
    writers: HashMap<CircuitRef, CellSender>,
    creates: SourceLimiter,
    bandwidth: Option<TokenBucket>,
    endpoint: Arc<Endpoint>,
    input: mpsc::Sender<Input>,
    snapshot: Snapshot,
    exit: Option<ExitRuntime>,
    tap: Option<Box<dyn ExitTap>>,
    cache: ConsensusCache,
    /// Which links are to a relay, for the exit's one-hop rule.
    peers: RelayPeers,
    /// The digest of the consensus `peers` was last decided against.
    consensus_seen: Option<Digest>,
    /// Tells `directory::run` a peer is not listed (yet).
    unlisted: Arc<Notify>,
    extends: ExtendPolicy,
    dials: DialBudget<CircuitHandle>,
}

impl Core {
    /// Every counter, as of now.
    fn snapshot(&self) -> Snapshot {
        Snapshot {
            core: self.table.stats().clone(),
            circuits_open: self.table.circuit_count(),
            links_open: self.links.len(),
            exit: self.exit.as_ref().map(|exit| ExitSnapshot {
                stats: exit.engine.stats.clone(),
                io: exit.io_stats.clone(),
                leased: exit.engine.leased(),
                quarantined: exit.engine.quarantined(),
                dns: exit.dns_stats(),
            }),
            ..self.snapshot.clone()
        }
    }

    fn handle(&mut self, input: Input) {
        match input {
            Input::LinkUp { id, link } => {
                let peer = link.peer_identity();
                if let Some(peer) = peer {
                    self.by_peer.insert(peer, id);
                    // Circuits from it may exit here only if the consensus
                    // lists it at this address (or it is trusted).
                    let listed = directory::listed_addresses(&self.cache, &peer);
                    let verdict =
                        self.peers
                            .link_up(id, peer, link.remote_address(), listed.as_deref());
                    self.table.set_link_is_relay(id, verdict.is_relay);
                    if verdict.fetch_soon {
                        self.unlisted.notify_one();
                    }
                }
                spawn_link_readers(id, link.clone(), self.input.clone(), self.cache.clone());
                self.links.insert(id, LinkEntry { link, peer });
            }
            Input::LinkDown { id } => {
                if let Some(entry) = self.links.remove(&id) {
                    if let Some(peer) = entry.peer {
                        if self.by_peer.get(&peer) == Some(&id) {
                            self.by_peer.remove(&peer);
                        }
                    }
                }
                self.writers.retain(|end, _| end.link != id);
                self.peers.link_down(id);
                self.table.link_closed(id);
                self.dials.link_closed(id);
            }
            Input::StreamUp { end, writer } => {
                self.writers.insert(end, writer);
            }
            Input::StreamDown { end } => {
                self.writers.remove(&end);
                self.table.stream_closed(end);
            }
            Input::Cell {
                end,
                channel,
                mut bytes,
            } => self.cell(end, channel, &mut bytes),
            Input::ExtendOpened {
                circuit,
                end,
                writer,
            } => {
                self.writers.insert(end, writer);
                if !self.table.extend_ready(circuit, end) {
                    self.writers.remove(&end);
                }
            }
            Input::ExtendFailed { circuit, reason } => self.table.extend_failed(circuit, reason),
            Input::Dialed {
                circuit,
                client_link,
                reserved,
                failed,
            } => {
                self.snapshot.extend_dials_failed += failed as u64;
                self.dials
                    .release(circuit, client_link, reserved.saturating_sub(failed));
            }
        }
    }

    fn cell(&mut self, end: CircuitRef, channel: Channel, bytes: &mut Vec<u8>) {
        let now = Instant::now();
        if bytes.first() == Some(&(LinkCommand::Create as u8)) {
            // CREATE: rate-limited per source address before any cryptography.
            if let Some(entry) = self.links.get(&end.link) {
                if !self.creates.allow(entry.link.remote_address().ip(), now) {
                    self.snapshot.create_rate_limited += 1;
                    return;
                }
            }
        }
        if let Some(bucket) = &mut self.bandwidth {
            if !bucket.try_take(bytes.len() as f64, now) {
                self.snapshot.bandwidth_limited += 1;
                return;
            }
        }
        match self.table.handle_cell(now, end, channel, bytes) {
            RelayAction::Forward { to, channel } => self.send(to, channel, std::mem::take(bytes)),
            RelayAction::Exit { circuit, packet } => {
                let (Some(exit), Some(packet)) = (&mut self.exit, bytes.get_mut(packet)) else {
                    return;
                };
                let injected = match &mut self.tap {
                    Some(tap) => tap.on_client_packet(packet),
                    None => Vec::new(),
                };
                let mut reply = Vec::new();
                exit.client_packet(circuit, packet, &mut reply);
                if !reply.is_empty() {
                    self.exit_reply(circuit, &reply);
                }
                for packet in injected {
                    self.exit_reply(circuit, &packet);
                }
            }
            RelayAction::Handled | RelayAction::Dropped(_) => {}
        }
    }

    /// A packet from the internet: back to its circuit, if it has one.
    /// A packet from the internet, already in an unsealed DATA cell: back
    /// to its circuit (sealed in place), if it has one.
    fn tun_packet(&mut self, mut cell: Vec<u8>) {
        let Some(exit) = &mut self.exit else {
            return;
        };
        let Some(packet) = cell.get_mut(trine_circuit::cell::DATA_OFFSET..) else {
            return;
        };
        if let Some(circuit) = exit.engine.inbound(packet) {
            if let Some(to) = self.table.seal_exit_reply(circuit, &mut cell) {
                self.send(to, Channel::Datagram, cell);
            }
        }
    }

    fn dns_answer(&mut self, answer: DnsAnswer) {
        let mut packet = Vec::new();
        if ExitEngine::<CircuitHandle>::dns_answer(
            answer.client,
            answer.resolver,
            &answer.answer,
            &mut packet,
        ) {
            self.exit_reply(answer.circuit, &packet);
        }
    }

    /// Seals `packet` as DATA from this exit and sends it toward the client.
    fn exit_reply(&mut self, circuit: CircuitHandle, packet: &[u8]) {
        let mut cell = Vec::with_capacity(packet.len() + 64);
        trine_circuit::cell::data_cell(&mut cell, packet);
        if let Some(to) = self.table.seal_exit_reply(circuit, &mut cell) {
            self.send(to, Channel::Datagram, cell);
        }
    }

    /// Decides every link's relay-ness again if the held consensus
    /// changed.
    fn reconsider_peers(&mut self) {
        let held = self
            .cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .held()
            .map(|consensus| *consensus.digest());
        if held != self.consensus_seen {
            self.consensus_seen = held;
            let cache = &self.cache;
            let changed = self
                .peers
                .reconsider(|identity| directory::listed_addresses(cache, identity));
            for (link, is_relay) in changed {
                debug!(link, is_relay, "a peer's relay status changed");
                self.table.set_link_is_relay(link, is_relay);
            }
        }
    }

    /// Sends everything the table queued and acts on its events.
    fn flush(&mut self) {
        self.send_queued();
        while let Some(event) = self.table.poll_event() {
            match event {
                RelayEvent::Extend {
                    circuit,
                    target,
                    addresses,
                } => self.extend(circuit, target, addresses),
                RelayEvent::Closed { circuit } => {
                    self.dials.circuit_closed(circuit);
                    if let Some(exit) = &mut self.exit {
                        exit.closed(circuit);
                    }
                }
            }
        }
        // What the events queued (TRUNCATED for a refused EXTEND).
        self.send_queued();
    }

    /// Sends everything the table queued.
    fn send_queued(&mut self) {
        while let Some(RelayTransmit { to, channel, bytes }) = self.table.poll_transmit() {
            let is_destroy = bytes.first() == Some(&(LinkCommand::Destroy as u8));
            self.send(to, channel, bytes);
            if is_destroy {
                // Nothing more goes on this stream; dropping the writer
                // finishes it once the DESTROY is written.
                self.writers.remove(&to);
            }
        }
    }

    /// Answers an EXTEND without dialing anything: TRUNCATED, counted.
    fn refuse_extend(&mut self, circuit: CircuitHandle, refusal: Refusal) {
        debug!(reason = refusal.name(), "extend refused");
        *self.snapshot.extend_refused.entry(refusal).or_default() += 1;
        self.table.extend_failed(circuit, refusal.reason());
    }

    fn send(&mut self, to: CircuitRef, channel: Channel, bytes: Vec<u8>) {
        match channel {
            Channel::Datagram => {
                let Some(entry) = self.links.get(&to.link) else {
                    return;
                };
                if let Err(error) = entry.link.send_datagram(to.circ, &bytes) {
                    if matches!(error, trine_link::LinkError::DatagramTooLarge { .. }) {
                        self.snapshot.datagram_too_large += 1;
                    }
                    debug!(%error, "datagram not sent");
                }
            }
            Channel::Control => {
                let Some(writer) = self.writers.get(&to) else {
                    return;
                };
                if writer.try_send(bytes).is_err() {
                    self.snapshot.send_queue_full += 1;
                }
            }
        }
    }

    /// Opens a circuit toward `target`, over an existing link when there
    /// is one, otherwise dialing it at the addresses the EXTEND policy and
    /// the failed-dial budget allow; refused, the client gets TRUNCATED.
    fn extend(&mut self, circuit: CircuitHandle, target: RelayId, addresses: Vec<SocketAddr>) {
        let listed = directory::listed_addresses(&self.cache, &target);
        let mut addresses = match self.extends.dialable(&addresses, listed.as_deref()) {
            Ok(addresses) => addresses,
            Err(refusal) => return self.refuse_extend(circuit, refusal),
        };
        let existing = self
            .by_peer
            .get(&target)
            .and_then(|id| self.links.get(id).map(|entry| (*id, entry.link.clone())));
        let client_link = self
            .table
            .previous_hop(circuit)
            .and_then(|(link, is_relay)| (!is_relay).then_some(link));
        if existing.is_none() {
            let reserved =
                self.dials
                    .reserve(circuit, client_link, addresses.len(), Instant::now());
            if reserved == 0 {
                return self.refuse_extend(circuit, Refusal::RateLimited);
            }
            addresses.truncate(reserved);
        }
        let endpoint = self.endpoint.clone();
        let input = self.input.clone();
        let report = DialReport {
            circuit,
            client_link,
            input: input.clone(),
        };
        tokio::spawn(async move {
            let (id, link) = match existing {
                Some(found) => found,
                None => match dial(&endpoint, target, &addresses, &report).await {
                    Some(link) => {
                        let id = new_link_id();
                        let _ = input
                            .send(Input::LinkUp {
                                id,
                                link: link.clone(),
                            })
                            .await;
                        (id, link)
                    }
                    None => {
                        let _ = input
                            .send(Input::ExtendFailed {
                                circuit,
                                reason: Reason::ConnectFailed,
                            })
                            .await;
                        return;
                    }
                },
            };
            match link.open_circuit().await {
                Ok(stream) => {
                    let end = CircuitRef {
                        link: id,
                        circ: stream.id(),
                    };
                    let writer = spawn_stream(end, stream, None, input.clone());
                    let _ = input
                        .send(Input::ExtendOpened {
                            circuit,
                            end,
                            writer,
                        })
                        .await;
                }
                Err(error) => {
                    debug!(%error, "could not open a circuit on an existing link");
                    let _ = input
                        .send(Input::ExtendFailed {
                            circuit,
                            reason: Reason::ConnectFailed,
                        })
                        .await;
                }
            }
        });
    }
}

/// Whose failed-dial budget an EXTEND's dials came from.
struct DialReport {
    circuit: CircuitHandle,
    client_link: Option<LinkId>,
    input: mpsc::Sender<Input>,
}

/// Dials `target` at each address in turn (the link verifies its
/// identity), then tells the core how many attempts failed.
async fn dial(
    endpoint: &Endpoint,
    target: RelayId,
    addresses: &[SocketAddr],
    report: &DialReport,
) -> Option<Link> {
    let mut failed = 0;
    let mut connected = None;
    for address in addresses {
        match tokio::time::timeout(Duration::from_secs(5), endpoint.connect(*address, target)).await
        {
            Ok(Ok(link)) => {
                connected = Some(link);
                break;
            }
            Ok(Err(error)) => debug!(%error, "extend: dial failed"),
            Err(_) => debug!("extend: dial timed out"),
        }
        failed += 1;
    }
    let dialed = Input::Dialed {
        circuit: report.circuit,
        client_link: report.client_link,
        reserved: addresses.len(),
        failed,
    };
    let _ = report.input.send(dialed).await;
    connected
}

/// The addresses that are this relay's own: where it listens, what it
/// advertises and, as at start, every address on the host's interfaces.
fn own_ips(config: &Config) -> Vec<IpAddr> {
    let interfaces = own_addresses().unwrap_or_else(|error| {
        warn!(%error, "EXTEND refuses only the configured addresses as this relay's own");
        Vec::new()
    });
    let mut own = config.advertised_ips();
    own.extend(Some(config.listen.ip()).filter(|ip| !ip.is_unspecified()));
    own.extend(interfaces);
    own
}

/// The shell's name for a new link; never reused within a process.
fn new_link_id() -> LinkId {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Accepts links, each handshake in its own task so a slow peer cannot
/// hold up the others.
async fn accept_links(endpoint: Arc<Endpoint>, input: mpsc::Sender<Input>) {
    while let Some(incoming) = endpoint.accept().await {
        let input = input.clone();
        tokio::spawn(async move {
            let from = incoming.remote_address();
            match incoming.accept().await {
                Ok(link) => {
                    let id = new_link_id();
                    let _ = input.send(Input::LinkUp { id, link }).await;
                }
                Err(error) => debug!(%error, %from, "incoming link failed"),
            }
        });
    }
}

/// Reads datagrams and accepts circuit streams on `link` until it closes.
fn spawn_link_readers(id: LinkId, link: Link, input: mpsc::Sender<Input>, cache: ConsensusCache) {
    let datagrams = link.clone();
    let datagram_input = input.clone();
    tokio::spawn(async move {
        while let Ok((circ, bytes)) = datagrams.read_datagram().await {
            let cell = Input::Cell {
                end: CircuitRef { link: id, circ },
                channel: Channel::Datagram,
                bytes: bytes.to_vec(),
            };
            if datagram_input.send(cell).await.is_err() {
                return;
            }
        }
    });
    tokio::spawn(async move {
        loop {
            match link.accept_circuit().await {
                Ok(stream) => {
                    tokio::spawn(accepted_stream(id, stream, input.clone(), cache.clone()));
                }
                Err(_) => {
                    let _ = input.send(Input::LinkDown { id }).await;
                    return;
                }
            }
        }
    });
}

/// A stream the peer opened: a directory exchange if its first cell says
/// so, otherwise a circuit.
async fn accepted_stream(
    id: LinkId,
    mut stream: CircuitStream,
    input: mpsc::Sender<Input>,
    cache: ConsensusCache,
) {
    let mut first = Vec::new();
    if !matches!(stream.read_cell(&mut first).await, Ok(true)) {
        return;
    }
    if is_message_cell(&first) {
        directory::serve(stream, first, cache).await;
        return;
    }
    let end = CircuitRef {
        link: id,
        circ: stream.id(),
    };
    // StreamUp is sent by spawn_stream's reader before any cell.
    drop(spawn_stream(end, stream, Some(first), input));
}

/// Starts the task that moves one circuit stream's cells both ways (one
/// task, not two: idle circuits are the bulk of a relay's memory) and
/// registers its queue with the core loop before any cell it reads.
/// Returns the queue too, for the caller that opened the stream.
fn spawn_stream(
    end: CircuitRef,
    stream: CircuitStream,
    first: Option<Vec<u8>>,
    input: mpsc::Sender<Input>,
) -> CellSender {
    let (writer, mut queue) = cell_queue(STREAM_QUEUE);
    let (mut send, mut recv) = stream.split();
    let registered = writer.clone();
    tokio::spawn(async move {
        let up = Input::StreamUp {
            end,
            writer: registered,
        };
        if input.send(up).await.is_err() {
            return;
        }
        if let Some(bytes) = first {
            let cell = Input::Cell {
                end,
                channel: Channel::Control,
                bytes,
            };
            if input.send(cell).await.is_err() {
                return;
            }
        }
        let mut buf = Vec::new();
        let (mut reading, mut writing) = (true, true);
        while reading || writing {
            // Both futures are cancel-safe; the write and the hand-over to
            // the core run in the branch bodies, never raced.
            tokio::select! {
                cell = queue.recv(), if writing => match cell {
                    Some(cell) => {
                        if send.write_cell(&cell).await.is_err() {
                            writing = false;
                        }
                    }
                    None => {
                        // The core dropped the queue: nothing more to send.
                        send.finish();
                        writing = false;
                    }
                },
                read = recv.read_cell(&mut buf), if reading => match read {
                    Ok(true) => {
                        let cell = Input::Cell {
                            end,
                            channel: Channel::Control,
                            bytes: buf.clone(),
                        };
                        if input.send(cell).await.is_err() {
                            return;
                        }
                    }
                    Ok(false) | Err(_) => {
                        reading = false;
                        if input.send(Input::StreamDown { end }).await.is_err() {
                            return;
                        }
                    }
                },
            }
        }
    });
    writer
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}
