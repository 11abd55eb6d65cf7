//! A `ClientCircuit` fed hostile cells from its first hop.
//!
//! The circuit is built on a `memnet::MemNet` and stopped at a stage the
//! first byte picks: 2 hops waiting for CREATED, 3 hops waiting for the
//! second hop's EXTENDED, or ready with 1 or 3 hops. The rest is records
//! `op | ...`: `op & 7` is the kind, `op >> 3` advances the clock in
//! quarter seconds. Kinds: a short or long raw cell; a real cell for the
//! client (the held-back CREATED or EXTENDED, an exit's reply, a PONG),
//! XORed with input bytes; an exit reply or a ping through the network;
//! DATA sealed by the client; `handle_timeout` after a long jump; `close`.
//!
//! Checked throughout: a packet range lies in its cell; events follow the
//! state machine (hops added in order, Ready once and only when all are
//! built, nothing after Failed) and agree with `state()` and
//! `poll_timeout()`; a closed circuit accepts nothing; every cell sent
//! parses and fits `MAX_CELL_LEN`; sequence numbers only grow; nothing is
//! sent after a DESTROY.
#![no_main]

#[path = "../common/mutate.rs"]
mod mutate;

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use mutate::mutate;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use trine_circuit::cell::{self, LinkCell, MAX_CELL_LEN};
use trine_circuit::client::{CircuitState, Received};
use trine_circuit::memnet::{InFlight, MemNet, Node};
use trine_circuit::{
    Channel, CircuitHandle, CircuitRef, ClientCircuit, ClientConfig, ClientEvent, HopSpec,
    IdentityKey, OnionSecretKey, RelayConfig, RelayTable,
};

static BASE: LazyLock<Instant> = LazyLock::new(Instant::now);

struct World {
    net: MemNet<ChaCha20Rng>,
    hops: usize,
    now: Instant,
    client_end: CircuitRef,
    /// Real cells for the client, for replay and mutation.
    held: Vec<Vec<u8>>,
    exit: Option<CircuitHandle>,
    last_seq: Option<u64>,
    destroyed: bool,
    hops_added: usize,
    ready: bool,
    failed: bool,
}

impl World {
    fn new(stage: usize) -> Option<Self> {
        let hops = [2, 3, 1, 3][stage];
        let now = *BASE;
        let (mut path, mut ids, mut tables) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..hops {
            let seed = i as u8;
            let id = IdentityKey::from_secret_bytes(&[seed + 1; 32]).relay_id();
            let onion = OnionSecretKey::from_secret_bytes([seed + 101; 32]);
            path.push(HopSpec {
                id,
                onion_key: onion.public_key(),
                addresses: vec![([198, 18, 0, seed + 1], 443).into()],
            });
            ids.push(id);
            let config = RelayConfig {
                exit: i + 1 == hops,
                ..RelayConfig::default()
            };
            tables.push(RelayTable::new(
                id,
                vec![onion],
                config,
                ChaCha20Rng::seed_from_u64(i as u64),
            ));
        }
        let mut rng = ChaCha20Rng::seed_from_u64(99);
        let client = ClientCircuit::new(path, &ClientConfig::default(), now, &mut rng).ok()?;
        let mut net = MemNet::new(client, tables, ids);
        // An exit sends one-hop DATA out only when the client's link is a
        // relay link (a relay building its own circuit): mark it, the
        // network's first link (id 0), so exit replies stay fuzzed at 1 hop.
        net.relays[0].set_link_is_relay(0, true);
        let mut world = Self {
            net,
            hops,
            now,
            client_end: CircuitRef { link: 0, circ: 0 },
            held: Vec::new(),
            exit: None,
            last_seq: None,
            destroyed: false,
            hops_added: 0,
            ready: false,
            failed: false,
        };
        let created = world.next_for_client()?;
        world.client_end = created.on;
        if stage == 0 {
            world.held.push(created.bytes);
        } else {
            world.net.deliver(now, created);
            if stage == 1 {
                let extended = world.next_for_client()?;
                world.held.push(extended.bytes);
            } else {
                world.net.run(now);
                world.net.client_send(b"setup");
                world.net.run(now);
                world.exit = world.net.exited.last().map(|(_, circuit, _)| *circuit);
            }
        }
        world.check();
        Some(world)
    }

    /// Delivers cells in flight until one is for the client; returns it.
    fn next_for_client(&mut self) -> Option<InFlight> {
        for _ in 0..64 {
            let cell = self.net.pop()?;
            if cell.to == Node::Client {
                return Some(cell);
            }
            self.net.deliver(self.now, cell);
        }
        None
    }

    fn feed(&mut self, mut cell: Vec<u8>) {
        let closed = self.net.client.state() == CircuitState::Closed;
        let result = self.net.client.handle_cell(self.now, &mut cell);
        assert!(
            !closed || result.is_err(),
            "a closed circuit accepted {result:?}"
        );
        if let Ok(Received::Packet(range)) = result {
            assert!(cell.get(range).is_some(), "packet range outside the cell");
        }
    }

    fn sent(&mut self, bytes: &[u8]) {
        assert!(!self.destroyed, "the client sent a cell after its DESTROY");
        assert!(
            bytes.len() <= MAX_CELL_LEN,
            "sent a cell of {} bytes",
            bytes.len()
        );
        match LinkCell::parse(bytes) {
            Ok(LinkCell::Relay { seq, .. }) => {
                assert!(
                    self.last_seq.is_none_or(|last| seq > last),
                    "sequence number {seq} reused"
                );
                self.last_seq = Some(seq);
            }
            Ok(LinkCell::Destroy(_)) => self.destroyed = true,
            Ok(_) => {}
            Err(error) => panic!("the client sent an unparsable cell: {error}"),
        }
    }

    /// Checks what the client queued and puts it on the network; checks
    /// events against the state.
    fn check(&mut self) {
        while let Some(transmit) = self.net.client.poll_transmit() {
            self.sent(&transmit.bytes);
            let (to, on, channel) = (Node::Relay(0), self.client_end, transmit.channel);
            self.net.inject(InFlight {
                to,
                on,
                channel,
                bytes: transmit.bytes,
            });
        }
        while let Some(event) = self.net.client.poll_event() {
            assert!(!self.failed, "{event:?} after Failed");
            match event {
                ClientEvent::HopAdded { hop } => {
                    assert_eq!(hop, self.hops_added + 1, "hops added out of order");
                    self.hops_added = hop;
                }
                ClientEvent::Ready => {
                    assert!(!self.ready && self.hops_added == self.hops, "early Ready");
                    self.ready = true;
                }
                ClientEvent::Pong { .. } => assert!(self.ready, "Pong before Ready"),
                ClientEvent::Failed(_) => self.failed = true,
            }
        }
        let state = self.net.client.state();
        match state {
            CircuitState::Building { hops_done } => {
                assert_eq!(hops_done, self.hops_added);
                assert!(!self.failed && !self.ready);
            }
            CircuitState::Ready => assert!(self.ready && !self.failed),
            CircuitState::Closed => {}
        }
        let building = matches!(state, CircuitState::Building { .. });
        assert_eq!(self.net.client.poll_timeout().is_some(), building);
    }

    fn step(&mut self, u: &mut Unstructured) -> Result<()> {
        let op: u8 = u.arbitrary()?;
        self.now += Duration::from_millis(250 * u64::from(op >> 3));
        match op & 7 {
            0 => {
                let len = usize::from(u.arbitrary::<u8>()?);
                self.feed(u.bytes(len.min(u.len()))?.to_vec());
            }
            1 => {
                let len = usize::from(u.arbitrary::<u16>()?) % (MAX_CELL_LEN + 2);
                let fill: u8 = u.arbitrary()?;
                let mut cell = u.bytes(len.min(u.len()))?.to_vec();
                cell.resize(len, fill);
                self.feed(cell);
            }
            2 if !self.held.is_empty() => {
                let mut cell = self.held[u.choose_index(self.held.len())?].clone();
                mutate(u, &mut cell)?;
                self.feed(cell);
            }
            3 | 4 => {
                if op & 7 == 3 {
                    let len = usize::from(u.arbitrary::<u8>()?);
                    let packet = u.bytes(len.min(u.len()))?;
                    if let Some(exit) = self.exit {
                        self.net.exit_send(self.hops - 1, exit, packet);
                    }
                } else {
                    self.net.client.send_ping(self.now);
                    self.check();
                }
                if let Some(cell) = self.next_for_client() {
                    if self.held.len() < 16 {
                        self.held.push(cell.bytes.clone());
                    }
                    self.feed(cell.bytes);
                }
            }
            5 => {
                let len = usize::from(u.arbitrary::<u8>()?);
                let mut cell = Vec::new();
                cell::data_cell(&mut cell, u.bytes(len.min(u.len()))?);
                if self.net.client.seal_data(&mut cell) {
                    self.sent(&cell);
                    let (to, on) = (Node::Relay(0), self.client_end);
                    self.net.inject(InFlight {
                        to,
                        on,
                        channel: Channel::Datagram,
                        bytes: cell,
                    });
                }
            }
            6 => {
                self.now += Duration::from_secs(u64::from(u.arbitrary::<u8>()?));
                self.net.client.handle_timeout(self.now);
            }
            7 => self.net.client.close(),
            _ => {}
        }
        self.check();
        Ok(())
    }
}

fn run(data: &[u8]) -> Result<()> {
    let mut u = Unstructured::new(data);
    let stage = usize::from(u.arbitrary::<u8>()? % 4);
    let Some(mut world) = World::new(stage) else {
        panic!("could not build the stage {stage} circuit on the in-memory network");
    };
    while !u.is_empty() {
        world.step(&mut u)?;
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(data);
});
