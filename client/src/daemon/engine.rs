//! The daemon's core: the tunnel's state, its circuits (one active, one
//! standby), the packets between the TUN device and the active circuit,
//! and the answers to control requests. One task owns it; I/O tasks feed
//! it through channels, so nothing here waits on the network.
//!
//! Circuit management: while the tunnel is wanted up, two circuits are
//! kept (the active one and a standby on another exit where possible).
//! Each is pinged end to end every `keepalive`; one that has not answered
//! for `dead_after`, whose link drops or that is destroyed is removed, the
//! standby takes over at once and a new standby is built. Failed builds
//! are retried with exponential backoff.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::rngs::OsRng;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use trine_circuit::cell::{self, DATA_OFFSET};
use trine_circuit::client::Received;
use trine_circuit::ip::{self, TUNNEL_RESOLVER_V4, TUNNEL_RESOLVER_V6};
use trine_circuit::onion::LAYER_OVERHEAD;
use trine_circuit::{ClientCircuit, ClientConfig, ClientEvent, RelayId};
use trine_directory::VerifiedConsensus;
use trine_link::Endpoint;
use trine_node::authorities::{Authorities, Authority};
use tun_rs::AsyncDevice;

use super::filter;
use super::link::{self, CircuitIo, CircuitLink};
use super::planner::{Chosen, Planner};
use super::system;
use crate::config::{Config, DnsMode, Overrides, write_whole};
use crate::control::{Request, Response, Settings, State, Status};

/// Circuits kept while up: the active one and a standby.
const CIRCUITS_WANTED: usize = 2;
/// First retry delay after a failed build; doubles per failure.
const BACKOFF_MIN: Duration = Duration::from_millis(500);
/// Longest retry delay.
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A middle or exit at which a build failed is avoided this long.
const SUSPECT_FOR: Duration = Duration::from_secs(120);
/// Longest wait after a failed directory fetch while bootstrapping; the
/// first retries come sooner (a network whose authorities are about to
/// publish their first consensus answers within a second or two).
const FETCH_RETRY: Duration = Duration::from_secs(5);
/// The first wait after a failed bootstrap fetch (doubling up to
/// [`FETCH_RETRY`]).
const FETCH_RETRY_FIRST: Duration = Duration::from_millis(500);
/// Wait after a failed refresh while connected (the consensus held is
/// still usable).
const REFRESH_RETRY: Duration = Duration::from_secs(60);
/// How long an answer from a guard or directory server vouches for the
/// local network.
const NETWORK_OK_FOR: Duration = Duration::from_secs(120);
/// Room for a packet from the TUN device (its MTU is at most 9000).
const TUN_BUFFER: usize = 9000;
/// The file in the state directory holding the target state, `up` or
/// `down`.
const TARGET_FILE: &str = "target";

/// Whether the last target the user set, kept in `state_dir`, was up:
/// `trine up` with no `trine down` since, whatever happened to the daemon
/// in between (a crash, a kill, a restart). Fails closed: only a missing
/// file or one saying exactly `down` is down; an unreadable or damaged one
/// is up (the firewall stays shut until `trine down`).
pub fn target_was_up(state_dir: &std::path::Path) -> bool {
    match std::fs::read_to_string(state_dir.join(TARGET_FILE)) {
        Ok(saved) => saved.trim() != "down",
        Err(error) => error.kind() != std::io::ErrorKind::NotFound,
    }
}

/// One circuit: chosen, dialing, building or ready.
struct Slot {
    generation: u64,
    chosen: Chosen,
    circuit: Option<ClientCircuit>,
    io: Option<CircuitLink>,
    ready: bool,
    last_ping: Instant,
    /// The last sign of life from the exit: a pong or any packet.
    last_pong: Instant,
    ping_outstanding: bool,
}

/// A finished directory fetch.
pub type Fetched = Result<VerifiedConsensus, String>;

/// The daemon's state.
pub struct Engine {
    /// What the tunnel runs with: the file's settings with the user's
    /// overrides, as of the last connect.
    config: Config,
    /// The configuration file's settings.
    file_config: Config,
    /// Settings the user changed (kept in the state directory).
    overrides: Overrides,
    endpoint: Endpoint,
    planner: Planner,
    lockdown: bool,
    /// What the user last asked for (`trine up` / `trine down`), as kept in
    /// the state directory: while it is up the firewall never opens, even
    /// when the tunnel cannot come up or the daemon stops.
    target_up: bool,
    /// After a failed attempt to bring the tunnel up while the target is
    /// up: when to try again, and the failures in a row.
    up_retry: Option<(Instant, u32)>,
    want_up: bool,
    tun: Option<Arc<AsyncDevice>>,
    tun_reader: Option<JoinHandle<()>>,
    slots: Vec<Slot>,
    active: Option<u64>,
    next_generation: u64,
    failures: u32,
    retry_at: Instant,
    fetching_from_authorities: Option<bool>,
    fetch_retry_at: Instant,
    /// Bootstrap fetches failed in a row.
    fetch_failures: u32,
    peers: Option<Vec<SocketAddr>>,
    connected_since: Option<u64>,
    ever_connected: bool,
    bytes_up: u64,
    bytes_down: u64,
    /// Packets from the exit not addressed to the tunnel, dropped.
    dropped_from_exit: u64,
    /// Packets for the exit not from the tunnel's address, dropped.
    dropped_to_exit: u64,
    last_error: Option<String>,
    /// When a guard or directory server last answered: dial failures
    /// count against a guard only if the network worked recently.
    network_ok_at: Option<Instant>,
    /// Middles and exits at which a build failed recently, and when.
    suspects: Vec<(RelayId, Instant)>,
    io_tx: mpsc::Sender<CircuitIo>,
    tun_tx: mpsc::Sender<Vec<u8>>,
    fetch_tx: mpsc::Sender<Fetched>,
    scratch: Vec<u8>,
}

/// The channels the engine's owner reads and passes back in.
pub struct Inputs {
    /// Circuit I/O.
    pub io: mpsc::Receiver<CircuitIo>,
    /// Packets read from the TUN device, as unsealed DATA cells.
    pub tun: mpsc::Receiver<Vec<u8>>,
    /// Directory fetches.
    pub fetched: mpsc::Receiver<Fetched>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Engine {
    /// A disconnected engine (the kill switch as `lockdown` says, or the
    /// block if `target_up`: the user's last word was `trine up`).
    pub fn new(
        file_config: Config,
        overrides: Overrides,
        endpoint: Endpoint,
        lockdown: bool,
        target_up: bool,
    ) -> (Self, Inputs) {
        let config = file_config.with(&overrides);
        let (io_tx, io) = mpsc::channel(4096);
        let (tun_tx, tun) = mpsc::channel(1024);
        let (fetch_tx, fetched) = mpsc::channel(4);
        let planner = Planner::open(&config, unix_now());
        let now = Instant::now();
        let engine = Self {
            config,
            file_config,
            overrides,
            endpoint,
            planner,
            lockdown,
            target_up,
            up_retry: None,
            want_up: false,
            tun: None,
            tun_reader: None,
            slots: Vec::new(),
            active: None,
            next_generation: 1,
            failures: 0,
            retry_at: now,
            fetching_from_authorities: None,
            fetch_retry_at: now,
            fetch_failures: 0,
            peers: None,
            connected_since: None,
            ever_connected: false,
            bytes_up: 0,
            bytes_down: 0,
            dropped_from_exit: 0,
            dropped_to_exit: 0,
            last_error: None,
            suspects: Vec::new(),
            network_ok_at: None,
            io_tx,
            tun_tx,
            fetch_tx,
            scratch: Vec::new(),
        };
        (engine, Inputs { io, tun, fetched })
    }

    /// Answers one control request.
    pub fn on_request(&mut self, request: Request) -> Response {
        match request {
            Request::Connect => self.connect(),
            Request::Disconnect => {
                if let Err(error) = self.keep_target(false) {
                    // Failing closed: a later start keeps the block until
                    // a `trine down` that can be kept.
                    tracing::warn!(%error, "cannot keep the target state `down`");
                }
                self.target_up = false;
                self.up_retry = None;
                if self.want_up {
                    self.disconnect();
                } else {
                    // Blocked after a failure to come up: open (or keep
                    // the lockdown block).
                    let _ = system::down(&self.config, self.lockdown);
                }
                Response::Ok
            }
            Request::Status => Response::Status(self.status()),
            Request::NewCircuit => {
                if !self.want_up {
                    return error("not connected: run `trine up` first");
                }
                if let Some(generation) = self.active.take() {
                    tracing::info!("new circuit requested");
                    // The next circuits leave from elsewhere for a while.
                    if let Some(slot) = self.slot(generation) {
                        let now = Instant::now();
                        let old: Vec<RelayId> =
                            slot.chosen.hops[1..].iter().map(|h| h.id).collect();
                        self.suspects.extend(old.into_iter().map(|id| (id, now)));
                    }
                    self.remove(generation);
                }
                self.maintain();
                Response::Ok
            }
            Request::Relays => Response::Relays {
                relays: self.planner.relays(),
            },
            Request::Guards => Response::Guards {
                guards: self.planner.guards(unix_now()),
            },
            Request::Lockdown { on } => self.set_lockdown(on),
            Request::Settings => Response::Settings(self.settings()),
            Request::ChangeSettings { mtu, ipv6, dns } => {
                self.change_settings(&Overrides { mtu, ipv6, dns })
            }
        }
    }

    /// Checks and keeps a settings change; it applies now if the tunnel
    /// is down, otherwise from the next connect (the running tunnel, its
    /// resolver and firewall stay as they were set up).
    fn change_settings(&mut self, change: &Overrides) -> Response {
        if let Err(problem) = change.check() {
            return error_response(problem);
        }
        let mut kept = self.overrides.clone();
        kept.merge(change);
        if let Err(problem) = kept.save(&self.config.state_dir) {
            return error_response(format!(
                "cannot keep the settings in {}: {problem}",
                self.config.state_dir.display()
            ));
        }
        tracing::info!(?kept, "settings changed");
        self.overrides = kept;
        if !self.want_up {
            self.config = self.file_config.with(&self.overrides);
        }
        Response::Ok
    }

    fn connect(&mut self) -> Response {
        if self.want_up {
            return Response::Ok;
        }
        self.config = self.file_config.with(&self.overrides);
        // The target must be on disk before anything can leak: a daemon
        // that starts after a crash reads it to keep the firewall shut.
        if let Err(error) = self.keep_target(true) {
            let message = format!(
                "cannot keep the target state in {}: {error}",
                self.config.state_dir.display()
            );
            tracing::error!(%message);
            self.last_error = Some(message.clone());
            return error_response(message);
        }
        self.target_up = true;
        self.up_retry = None;
        self.want_up = true;
        self.ever_connected = false;
        self.connected_since = None;
        self.bytes_up = 0;
        self.bytes_down = 0;
        self.dropped_from_exit = 0;
        self.dropped_to_exit = 0;
        self.last_error = None;
        self.failures = 0;
        self.retry_at = Instant::now();
        self.fetch_retry_at = Instant::now();
        self.fetch_failures = 0;
        self.peers = Some(self.wanted_peers());
        let peers = self.peers.clone().unwrap_or_default();
        match system::up(&self.config, &peers, self.blocking()) {
            Ok(tun) => {
                self.tun_reader = Some(tokio::spawn(read_tun(tun.clone(), self.tun_tx.clone())));
                self.tun = Some(tun);
            }
            Err(error) => {
                self.want_up = false;
                self.peers = None;
                let message = format!("{error:#}");
                // The block stays (the target is up): try again later.
                let failures = self.up_retry.map_or(0, |(_, n)| n).saturating_add(1);
                let wait = BACKOFF_MIN
                    .saturating_mul(1 << (failures - 1).min(8))
                    .min(BACKOFF_MAX);
                self.up_retry = Some((Instant::now() + wait, failures));
                tracing::error!(%message, retry_in = ?wait, "cannot bring the tunnel up; traffic stays blocked");
                self.last_error = Some(message.clone());
                return error_response(message);
            }
        }
        tracing::info!("connecting");
        self.maintain();
        Response::Ok
    }

    /// Whether the firewall must block while the tunnel is down: lockdown,
    /// or the user's target is still up (a failure, a restart, a stop).
    fn blocking(&self) -> bool {
        self.lockdown || self.target_up
    }

    /// Takes the tunnel down, keeping the block under lockdown or while the
    /// target is up (only `trine down` opens the network).
    pub fn disconnect(&mut self) {
        if !self.want_up {
            return;
        }
        self.want_up = false;
        self.slots.clear();
        self.active = None;
        self.connected_since = None;
        if let Some(reader) = self.tun_reader.take() {
            reader.abort();
        }
        self.tun = None;
        self.peers = None;
        let _ = system::down(&self.config, self.blocking());
        tracing::info!("disconnected");
    }

    /// Keeps what the user asked for, up or down, in the state directory
    /// (whole and synced): a daemon that starts after this one died without
    /// taking the tunnel down keeps the block and reconnects (see
    /// [`target_was_up`]).
    fn keep_target(&self, up: bool) -> std::io::Result<()> {
        let path = self.config.state_dir.join(TARGET_FILE);
        write_whole(&path, if up { "up\n" } else { "down\n" })
    }

    fn set_lockdown(&mut self, on: bool) -> Response {
        self.lockdown = on;
        let path = self.config.state_dir.join("lockdown");
        if let Err(error) = write_whole(&path, if on { "on\n" } else { "off\n" }) {
            tracing::warn!(%error, "cannot save the lockdown setting");
        }
        if !self.want_up {
            let _ = system::down(&self.config, self.blocking());
        }
        tracing::info!(on, "lockdown");
        Response::Ok
    }

    /// The state as the control API reports it.
    pub fn status(&self) -> Status {
        let state = match (self.want_up, self.active.is_some()) {
            (true, true) => State::Connected,
            (true, false) if self.ever_connected => State::Reconnecting,
            (true, false) => State::Connecting,
            (false, _) if self.blocking() => State::Blocked,
            (false, _) => State::Disconnected,
        };
        let active = self.active.and_then(|g| self.slot(g));
        Status {
            state,
            lockdown: self.lockdown,
            hops: active.map(|s| s.chosen.view.clone()).unwrap_or_default(),
            exit_address: active.and_then(|s| {
                s.chosen
                    .hops
                    .last()
                    .and_then(|h| h.addresses.first())
                    .map(|a| a.ip().to_string())
            }),
            standby_ready: self
                .slots
                .iter()
                .any(|s| s.ready && Some(s.generation) != self.active),
            connected_since: self.connected_since,
            bytes_up: self.bytes_up,
            bytes_down: self.bytes_down,
            dropped_from_exit: self.dropped_from_exit,
            dropped_to_exit: self.dropped_to_exit,
            last_error: self.last_error.clone(),
        }
    }

    fn settings(&self) -> Settings {
        Settings {
            config: self.config.path.display().to_string(),
            tun_name: self.config.tun_name.clone(),
            mtu: self.config.mtu,
            ipv6: self.config.ipv6,
            dns: match system::dns_mode(&self.config) {
                DnsMode::ResolvConf => {
                    format!("resolv-conf ({})", self.config.resolv_conf.display())
                }
                DnsMode::Resolved => "systemd-resolved (resolvectl)".to_string(),
                DnsMode::Auto | DnsMode::Off => "off".to_string(),
            },
            dns_mode: self.config.dns_mode,
            pending: {
                let next = self.file_config.with(&self.overrides);
                (next.mtu, next.ipv6, next.dns_mode)
                    != (self.config.mtu, self.config.ipv6, self.config.dns_mode)
            },
            lockdown: self.lockdown,
            authorities: self
                .config
                .authorities
                .list
                .iter()
                .map(|a| a.address.to_string())
                .collect(),
            threshold: self.config.authorities.set.threshold(),
        }
    }

    /// Handles I/O of one circuit.
    pub fn on_io(&mut self, io: CircuitIo) {
        match io {
            CircuitIo::Dialed { generation, result } => self.dialed(generation, result),
            CircuitIo::Cell {
                generation,
                mut cell,
            } => {
                let Some(index) = self.index(generation) else {
                    return;
                };
                let is_active = self.active == Some(generation);
                let slot = &mut self.slots[index];
                let Some(circuit) = slot.circuit.as_mut() else {
                    return;
                };
                if let Ok(Received::Packet(range)) = circuit.handle_cell(Instant::now(), &mut cell)
                {
                    // Only the exit can seal a packet: it is alive.
                    slot.last_pong = Instant::now();
                    let packet = &cell[range.clone()];
                    if !filter::accept_from_exit(packet) {
                        self.dropped_from_exit += 1;
                    } else if let (true, Some(tun)) = (is_active, &self.tun) {
                        if tun.try_send(packet).is_ok() {
                            self.bytes_down += range.len() as u64;
                        }
                    }
                }
                self.after_circuit_activity(generation);
            }
            CircuitIo::Gone { generation, reason } => self.fail(generation, reason),
        }
    }

    fn dialed(
        &mut self,
        generation: u64,
        result: Result<(trine_link::Link, trine_link::CircuitStream), String>,
    ) {
        let Some(index) = self.index(generation) else {
            return;
        };
        let guard = self.slots[index].chosen.view[0].clone();
        match result {
            Ok((link, stream)) => {
                self.network_ok_at = Some(Instant::now());
                let slot = &mut self.slots[index];
                let config = ClientConfig {
                    build_timeout: self.config.build_timeout,
                };
                match ClientCircuit::new(
                    slot.chosen.hops.clone(),
                    &config,
                    Instant::now(),
                    &mut OsRng,
                ) {
                    Ok(circuit) => {
                        slot.circuit = Some(circuit);
                        slot.io = Some(CircuitLink::start(
                            generation,
                            link,
                            stream,
                            self.io_tx.clone(),
                        ));
                        self.after_circuit_activity(generation);
                    }
                    Err(error) => self.fail(generation, format!("refused path: {error}")),
                }
            }
            Err(reason) => {
                // Offline (or the network not up yet) is not the guard's
                // fault: only blame it if something answered lately.
                let network_works = self
                    .network_ok_at
                    .is_some_and(|at| at.elapsed() < NETWORK_OK_FOR);
                if network_works {
                    self.planner
                        .guard_outcome(self.slots[index].chosen.guard(), false, unix_now());
                }
                self.fail(
                    generation,
                    format!(
                        "cannot reach guard {} ({}): {reason}",
                        guard.nickname, guard.address
                    ),
                );
            }
        }
    }

    /// Sends what the circuit queued and acts on its events.
    fn after_circuit_activity(&mut self, generation: u64) {
        let Some(index) = self.index(generation) else {
            return;
        };
        let now = Instant::now();
        let mut failed = None;
        let mut failed_at = None;
        let mut became_ready = false;
        {
            let slot = &mut self.slots[index];
            let (Some(circuit), Some(io)) = (slot.circuit.as_mut(), slot.io.as_ref()) else {
                return;
            };
            while let Some(transmit) = circuit.poll_transmit() {
                io.send(&transmit);
            }
            while let Some(event) = circuit.poll_event() {
                match event {
                    ClientEvent::HopAdded { .. } => {}
                    ClientEvent::Ready => {
                        slot.ready = true;
                        slot.last_ping = now;
                        slot.last_pong = now;
                        became_ready = true;
                    }
                    ClientEvent::Pong { .. } => {
                        slot.last_pong = now;
                        slot.ping_outstanding = false;
                    }
                    ClientEvent::Failed(failure) => {
                        failed_at = slot
                            .chosen
                            .hops
                            .get(failure.hop.saturating_sub(1))
                            .map(|h| (failure.hop, h.id));
                        let hop = slot
                            .chosen
                            .view
                            .get(failure.hop.saturating_sub(1))
                            .map(|h| format!("{} {} ({})", h.position, h.nickname, h.address))
                            .unwrap_or_else(|| format!("hop {}", failure.hop));
                        failed = Some(format!("circuit failed at {hop}: {:?}", failure.cause));
                    }
                }
            }
        }
        if became_ready {
            let slot = &self.slots[index];
            tracing::info!(
                path = %slot.chosen.view.iter().map(|h| h.nickname.as_str()).collect::<Vec<_>>().join(" -> "),
                "circuit ready"
            );
            self.planner
                .guard_outcome(slot.chosen.guard(), true, unix_now());
            self.failures = 0;
            self.maintain();
        }
        match failed_at {
            // The guard did not answer its handshake.
            Some((1, guard)) => self.planner.guard_outcome(guard, false, unix_now()),
            Some((_, relay)) => self.suspects.push((relay, now)),
            None => {}
        }
        if let Some(reason) = failed {
            self.fail(generation, reason);
        }
    }

    /// A packet from the TUN device (an unsealed DATA cell).
    pub fn on_tun(&mut self, mut cell: Vec<u8>) {
        let Some(generation) = self.active else {
            return;
        };
        let Some(index) = self.index(generation) else {
            return;
        };
        let slot = &mut self.slots[index];
        let (Some(circuit), Some(io)) = (slot.circuit.as_mut(), slot.io.as_ref()) else {
            return;
        };
        let packet_len = cell.len() - DATA_OFFSET;
        if !filter::accept_to_exit(&cell[DATA_OFFSET..]) {
            self.dropped_to_exit += 1;
            return;
        }
        let room = io
            .max_cell_len()
            .unwrap_or(0)
            .saturating_sub(DATA_OFFSET + slot.chosen.hops.len() * LAYER_OVERHEAD);
        if packet_len > room {
            self.too_big(&cell[DATA_OFFSET..], room);
            return;
        }
        if circuit.seal_data(&mut cell) && io.send_datagram(&cell) {
            self.bytes_up += packet_len as u64;
        }
    }

    /// Answers a packet the circuit cannot carry with "packet too big" /
    /// "fragmentation needed", so the sender's TCP adapts.
    fn too_big(&mut self, packet: &[u8], room: usize) {
        let from = match packet.first().map(|b| b >> 4) {
            Some(6) => IpAddr::V6(TUNNEL_RESOLVER_V6),
            _ => IpAddr::V4(TUNNEL_RESOLVER_V4),
        };
        let mtu = u16::try_from(room).unwrap_or(u16::MAX);
        if ip::icmp_too_big(packet, from, mtu, &mut self.scratch).is_ok() {
            if let Some(tun) = &self.tun {
                let _ = tun.try_send(&self.scratch);
            }
        }
    }

    /// A directory fetch finished.
    pub fn on_fetched(&mut self, fetched: Fetched) {
        self.fetching_from_authorities = None;
        match fetched {
            Ok(consensus) => {
                self.network_ok_at = Some(Instant::now());
                self.fetch_failures = 0;
                self.planner.accept(consensus);
                // Even an unchanged answer (the mirror has nothing newer
                // yet) paces the next ask.
                self.fetch_retry_at = Instant::now() + FETCH_RETRY;
            }
            // Connected, a mirror that lags is no news: try again later.
            Err(message) if self.active.is_some() => {
                tracing::debug!(%message, "directory refresh failed");
                self.fetch_retry_at = Instant::now() + REFRESH_RETRY;
            }
            Err(message) => {
                tracing::warn!(%message, "directory fetch failed");
                self.last_error = Some(format!("cannot fetch the directory: {message}"));
                let wait = FETCH_RETRY_FIRST
                    .saturating_mul(1 << self.fetch_failures.min(8))
                    .min(FETCH_RETRY);
                self.fetch_failures += 1;
                self.fetch_retry_at = Instant::now() + wait;
            }
        }
        self.maintain();
    }

    /// Periodic work: build timeouts, keepalives, dead circuits, retries.
    pub fn on_tick(&mut self) {
        let now = Instant::now();
        if let (false, true, Some((at, _))) = (self.want_up, self.target_up, self.up_retry) {
            if now >= at {
                tracing::info!("trying again to bring the tunnel up");
                let _ = self.connect();
            }
        }
        let mut dead = Vec::new();
        for slot in &mut self.slots {
            let Some(circuit) = slot.circuit.as_mut() else {
                continue;
            };
            circuit.handle_timeout(now);
            if slot.ready {
                if now.duration_since(slot.last_pong) > self.config.dead_after {
                    dead.push((
                        slot.generation,
                        format!(
                            "no answer through the circuit (exit {}) for {:?}",
                            slot.chosen.view[2].nickname, self.config.dead_after
                        ),
                    ));
                    continue;
                }
                // A new ping replaces an unanswered one, so under load
                // (round trips over `keepalive`) wait before replacing.
                let since_ping = now.duration_since(slot.last_ping);
                let due = if slot.ping_outstanding {
                    since_ping >= self.config.dead_after / 2
                } else {
                    since_ping >= self.config.keepalive
                };
                if due {
                    circuit.send_ping(now);
                    slot.last_ping = now;
                    slot.ping_outstanding = true;
                }
            }
        }
        let generations: Vec<u64> = self.slots.iter().map(|s| s.generation).collect();
        for generation in generations {
            self.after_circuit_activity(generation);
        }
        self.blame_silent_guards(&dead, now);
        for (generation, reason) in dead {
            self.fail(generation, reason);
        }
        self.maintain();
    }

    /// When every ready circuit through one guard went silent at once —
    /// they share nothing else, the standby avoiding the active one's
    /// middle and exit — the guard is the likely culprit: mark it failed
    /// so the next builds go elsewhere at once instead of waiting for a
    /// dial to it to time out. Not when the local network may be down.
    fn blame_silent_guards(&mut self, dead: &[(u64, String)], now: Instant) {
        let network_works = self
            .network_ok_at
            .is_some_and(|at| at.elapsed() < NETWORK_OK_FOR);
        if !network_works {
            return;
        }
        let silent_for = self.config.dead_after / 2;
        let mut blamed = Vec::new();
        for (generation, _) in dead {
            let Some(slot) = self.slot(*generation) else {
                continue;
            };
            let guard = slot.chosen.guard();
            let through_guard: Vec<&Slot> = self
                .slots
                .iter()
                .filter(|s| s.ready && s.chosen.guard() == guard)
                .collect();
            let all_silent = through_guard.len() > 1
                && through_guard
                    .iter()
                    .all(|s| now.duration_since(s.last_pong) > silent_for);
            if all_silent && !blamed.contains(&guard) {
                blamed.push(guard);
            }
        }
        for guard in blamed {
            tracing::warn!(%guard, "every circuit through the guard went silent; trying another guard");
            self.planner.guard_outcome(guard, false, unix_now());
            let through: Vec<u64> = self
                .slots
                .iter()
                .filter(|s| {
                    s.chosen.guard() == guard && !dead.iter().any(|(g, _)| *g == s.generation)
                })
                .map(|s| s.generation)
                .collect();
            for generation in through {
                self.fail(generation, format!("guard {guard} went silent"));
            }
        }
    }

    /// Removes a circuit that failed or died; the standby takes over.
    fn fail(&mut self, generation: u64, reason: String) {
        let Some(index) = self.index(generation) else {
            return;
        };
        let was_ready = self.slots[index].ready;
        if self.active == Some(generation) {
            tracing::warn!(%reason, "active circuit lost");
            self.active = None;
        } else {
            tracing::warn!(%reason, "circuit lost");
        }
        self.remove(generation);
        self.last_error = Some(reason);
        if !was_ready {
            self.failures = self.failures.saturating_add(1);
            // 0.5 s after the first failure in a row, doubling.
            let backoff = BACKOFF_MIN
                .saturating_mul(1 << (self.failures - 1).min(8))
                .min(BACKOFF_MAX);
            self.retry_at = Instant::now() + backoff;
        }
        self.maintain();
    }

    fn remove(&mut self, generation: u64) {
        self.slots.retain(|s| s.generation != generation);
    }

    /// Promotes a ready standby, fetches the directory, builds circuits
    /// and keeps the kill switch's peers in step.
    fn maintain(&mut self) {
        if !self.want_up {
            return;
        }
        if self.active.is_none() {
            if let Some(ready) = self.slots.iter().find(|s| s.ready) {
                self.active = Some(ready.generation);
                if !self.ever_connected {
                    // Bootstrap trouble that was overcome is not news.
                    self.last_error = None;
                }
                self.ever_connected = true;
                self.connected_since.get_or_insert_with(unix_now);
                tracing::info!(exit = %ready.chosen.view[2].nickname, "traffic on circuit");
            }
        }
        let now = unix_now();
        if self.fetching_from_authorities.is_none()
            && self.planner.wants_fresh(now)
            && Instant::now() >= self.fetch_retry_at
        {
            self.start_fetch();
        }
        let mut new = Vec::new();
        if self.planner.usable(now) {
            while self.slots.len() < CIRCUITS_WANTED && Instant::now() >= self.retry_at {
                // The other circuits' middles and exits, and suspects.
                let since = Instant::now().checked_sub(SUSPECT_FOR);
                self.suspects
                    .retain(|(_, at)| since.is_none_or(|since| *at > since));
                let avoid: Vec<RelayId> = self
                    .slots
                    .iter()
                    .flat_map(|s| s.chosen.hops[1..].iter().map(|h| h.id))
                    .chain(self.suspects.iter().map(|(id, _)| *id))
                    .collect();
                match self.planner.choose(now, &avoid) {
                    Ok(chosen) => {
                        let generation = self.next_generation;
                        self.next_generation += 1;
                        new.push((generation, chosen.hops[0].clone()));
                        let now = Instant::now();
                        self.slots.push(Slot {
                            generation,
                            chosen,
                            circuit: None,
                            io: None,
                            ready: false,
                            last_ping: now,
                            last_pong: now,
                            ping_outstanding: false,
                        });
                    }
                    Err(error) => {
                        self.last_error = Some(format!("cannot choose a path: {error}"));
                        self.retry_at = Instant::now() + BACKOFF_MAX;
                        break;
                    }
                }
            }
        }
        // The kill switch must let the guards through before dialing.
        if !self.update_peers() {
            let generations: Vec<u64> = new.iter().map(|(g, _)| *g).collect();
            self.slots.retain(|s| !generations.contains(&s.generation));
            self.retry_at = Instant::now() + BACKOFF_MAX;
            return;
        }
        for (generation, guard) in new {
            link::dial(self.endpoint.clone(), guard, generation, self.io_tx.clone());
        }
    }

    fn start_fetch(&mut self) {
        let now = unix_now();
        let usable = self.planner.usable(now);
        // Connected: ask the guard (every relay mirrors the consensus).
        // Bootstrapping: ask the authorities.
        let guard_server = self
            .active
            .and_then(|g| self.slot(g))
            .filter(|_| usable)
            .and_then(|s| {
                let hop = &s.chosen.hops[0];
                hop.addresses.first().map(|address| Authority {
                    id: hop.id,
                    address: *address,
                })
            });
        let from_authorities = guard_server.is_none();
        let servers = Authorities {
            list: match guard_server {
                Some(guard) => vec![guard],
                None => self.config.authorities.list.clone(),
            },
            set: self.config.authorities.set.clone(),
        };
        if from_authorities && usable && !self.slots.is_empty() {
            // Circuits are being built with a usable consensus; refresh
            // once one carries traffic rather than open the authorities.
            return;
        }
        self.fetching_from_authorities = Some(from_authorities);
        if !self.update_peers() {
            self.fetching_from_authorities = None;
            self.fetch_retry_at = Instant::now() + FETCH_RETRY;
            return;
        }
        let held = self.planner.consensus().cloned();
        let endpoint = self.endpoint.clone();
        let to_engine = self.fetch_tx.clone();
        tokio::spawn(async move {
            let result =
                trine_node::dirclient::fetch_consensus(&endpoint, &servers, held.as_ref(), now)
                    .await
                    .map_err(|e| format!("{e:#}"));
            let _ = to_engine.send(result).await;
        });
    }

    /// The addresses the daemon's socket may reach now.
    fn wanted_peers(&self) -> Vec<SocketAddr> {
        let mut peers: Vec<SocketAddr> = self
            .slots
            .iter()
            .flat_map(|s| s.chosen.hops[0].addresses.iter().copied())
            .collect();
        let bootstrapping =
            self.fetching_from_authorities == Some(true) || !self.planner.usable(unix_now());
        if bootstrapping {
            peers.extend(self.config.authorities.list.iter().map(|a| a.address));
        }
        peers.sort();
        peers.dedup();
        peers
    }

    /// Applies the kill switch for the peers wanted now; false if it could
    /// not be applied (then nothing new may be dialed).
    fn update_peers(&mut self) -> bool {
        if !self.want_up {
            return false;
        }
        let peers = self.wanted_peers();
        if self.peers.as_ref() == Some(&peers) {
            return true;
        }
        if let Err(error) = system::kill_switch(&self.config, &peers) {
            tracing::error!(%error, "cannot update the kill switch");
            self.last_error = Some(format!("{error:#}"));
            return false;
        }
        self.peers = Some(peers);
        true
    }

    /// Called once on shutdown.
    pub fn shutdown(&mut self) {
        self.disconnect();
    }

    fn index(&self, generation: u64) -> Option<usize> {
        self.slots.iter().position(|s| s.generation == generation)
    }

    fn slot(&self, generation: u64) -> Option<&Slot> {
        self.slots.iter().find(|s| s.generation == generation)
    }
}

fn error(message: &str) -> Response {
    error_response(message.to_string())
}

fn error_response(message: String) -> Response {
    Response::Error { message }
}

/// Moves packets from the TUN device to the engine, each read straight
/// into an unsealed DATA cell.
async fn read_tun(tun: Arc<AsyncDevice>, to_engine: mpsc::Sender<Vec<u8>>) {
    loop {
        let mut cell = Vec::with_capacity(DATA_OFFSET + TUN_BUFFER + 64);
        match tun.recv(cell::data_cell_slot(&mut cell, TUN_BUFFER)).await {
            Ok(len) => {
                cell.truncate(DATA_OFFSET + len);
                if to_engine.send(cell).await.is_err() {
                    return;
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => {
                tracing::error!(%error, "TUN read failed; no more packets go into the tunnel");
                return;
            }
        }
    }
}
