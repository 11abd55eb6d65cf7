//! A `RelayTable` (relay A) fed hostile cells and shell calls.
//!
//! The first byte picks whether A is an exit, whether PREV's link is a
//! relay link (else one-hop DATA is refused at an exit), and a setup: an
//! empty table (the client's CREATE kept for mutation), or one holding a
//! real circuit built by a `ClientCircuit` on ends PREV (link 0, circuit 1) and
//! NEXT (link 1, circuit 2): ending here (1-hop path), waiting for the shell
//! to connect an EXTEND, waiting for relay B's CREATED, or open through B.
//! The rest is records `op | link | circ | ...`: `op & 7` is the kind,
//! `op & 8` the channel (or a choice), `op & 16` a choice, `op >> 5` advances
//! the clock in half seconds. Kinds: a short or long raw cell on
//! (link % 4, circ % 4); a real cell seen so far, XORed with input bytes; a
//! DATA cell or ping from the client (or an exit reply); `handle_timeout`
//! after a long jump; `link_closed`, `stream_closed`, client close or
//! `shutdown`; `extend_ready`/`extend_failed` for a pending EXTEND, or B's
//! real CREATED for a CREATE the table sent.
//!
//! Checked throughout: sent cells parse, fit `MAX_CELL_LEN` and use the
//! control channel unless RELAY; nothing is sent on an end after a DESTROY
//! (until a new CREATE on it); no sequence number is sent twice on an end
//! (backward, that is the no-nonce-reuse promise); each circuit closes
//! once; the circuit limit holds; an exit packet range lies in its cell.
#![no_main]

#[path = "../common/mutate.rs"]
mod mutate;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use mutate::mutate;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use trine_circuit::cell::{self, LinkCell, MAX_CELL_LEN};
use trine_circuit::ntor::{self, NtorProtocol};
use trine_circuit::relay::RelayTable;
use trine_circuit::{
    Channel, CircuitHandle, CircuitRef, ClientCircuit, ClientConfig, HopSpec, IdentityKey,
    OnionSecretKey, Reason, RelayAction, RelayConfig, RelayEvent, RelayId,
};

const PREV: CircuitRef = CircuitRef { link: 0, circ: 1 };
const NEXT: CircuitRef = CircuitRef { link: 1, circ: 2 };
const MAX_CIRCUITS: usize = 6;
const REASONS: [Reason; 9] = [
    Reason::Finished,
    Reason::Protocol,
    Reason::Timeout,
    Reason::ResourceLimit,
    Reason::ConnectFailed,
    Reason::LinkClosed,
    Reason::HandshakeFailed,
    Reason::NotAnExit,
    Reason::Internal,
];

struct Fixed {
    base: Instant,
    ids: [RelayId; 2],
    hops: [HopSpec; 2],
    b_onion: OnionSecretKey,
}

static FIXED: LazyLock<Fixed> = LazyLock::new(|| {
    let ids = [1u8, 3].map(|seed| IdentityKey::from_secret_bytes(&[seed; 32]).relay_id());
    let onion = |seed: u8| OnionSecretKey::from_secret_bytes([seed; 32]);
    let hop = |i: usize, seed| HopSpec {
        id: ids[i],
        onion_key: onion(seed).public_key(),
        addresses: vec![([198, 18, 0, 1 + i as u8], 443).into()],
    };
    Fixed {
        base: Instant::now(),
        ids,
        hops: [hop(0, 2), hop(1, 4)],
        b_onion: onion(4),
    }
});

struct World {
    table: RelayTable<ChaCha20Rng>,
    client: ClientCircuit,
    now: Instant,
    to_client: VecDeque<Vec<u8>>,
    pending: Vec<CircuitHandle>,
    exit: Option<CircuitHandle>,
    /// CREATEs the table sent onward, for B to answer.
    creates: Vec<(CircuitRef, [u8; cell::CREATE_HANDSHAKE_LEN])>,
    /// Real cells seen on the wire (end, channel, bytes), for mutation.
    seen: Vec<(CircuitRef, Channel, Vec<u8>)>,
    seqs: HashMap<CircuitRef, HashSet<u64>>,
    dead: HashSet<CircuitRef>,
    closed: HashSet<CircuitHandle>,
}

impl World {
    fn new(stage: usize, exit: bool, prev_is_relay: bool) -> Self {
        let fixed = &*FIXED;
        let path = fixed.hops[..if stage == 1 { 1 } else { 2 }].to_vec();
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let config = ClientConfig::default();
        let Ok(client) = ClientCircuit::new(path, &config, fixed.base, &mut rng) else {
            panic!("fixed path refused");
        };
        let config = RelayConfig {
            max_circuits: MAX_CIRCUITS,
            max_circuits_per_link: 3,
            extend_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            exit,
        };
        let a_onion = vec![OnionSecretKey::from_secret_bytes([2; 32])];
        let rng = ChaCha20Rng::seed_from_u64(0);
        let mut world = Self {
            table: RelayTable::new(fixed.ids[0], a_onion, config, rng),
            client,
            now: fixed.base,
            to_client: VecDeque::new(),
            pending: Vec::new(),
            exit: None,
            creates: Vec::new(),
            seen: Vec::new(),
            seqs: HashMap::new(),
            dead: HashSet::new(),
            closed: HashSet::new(),
        };
        if prev_is_relay {
            world.table.set_link_is_relay(PREV.link, true);
        }
        if stage == 0 {
            // Keep the client's CREATE for mutation, but do not deliver it.
            while let Some(transmit) = world.client.poll_transmit() {
                world.seen.push((PREV, transmit.channel, transmit.bytes));
            }
            return world;
        }
        world.settle(); // CREATE, CREATED and, for 2 hops, EXTEND.
        if stage <= 2 {
            return world;
        }
        if let Some(handle) = world.pending.pop() {
            world.table.extend_ready(handle, NEXT);
            world.pump();
        }
        if stage == 4 {
            world.answer_create();
            world.settle();
        }
        world
    }

    /// Hands a cell to the table and checks what comes out.
    fn deliver(&mut self, from: CircuitRef, channel: Channel, mut cell: Vec<u8>) {
        if let Ok(LinkCell::Create(_)) = LinkCell::parse(&cell) {
            // The peer reuses the end: the table may answer on it again.
            self.dead.remove(&from);
        }
        match self.table.handle_cell(self.now, from, channel, &mut cell) {
            RelayAction::Forward { to, channel } => self.observe(to, channel, cell),
            RelayAction::Exit { circuit, packet } => {
                assert!(cell.get(packet).is_some(), "exit packet outside the cell");
                self.exit = Some(circuit);
            }
            RelayAction::Handled | RelayAction::Dropped(_) => {}
        }
        self.pump();
    }

    /// Checks one cell the table sends to `to`.
    fn observe(&mut self, to: CircuitRef, channel: Channel, bytes: Vec<u8>) {
        assert!(
            bytes.len() <= MAX_CELL_LEN,
            "sent a cell of {} bytes",
            bytes.len()
        );
        let parsed = LinkCell::parse(&bytes);
        let Ok(parsed) = parsed else {
            panic!("sent an unparsable cell: {parsed:?}");
        };
        match &parsed {
            &LinkCell::Relay { seq, .. } => {
                assert!(!self.dead.contains(&to), "sent on {to:?} after a DESTROY");
                let fresh = self.seqs.entry(to).or_default().insert(seq);
                assert!(fresh, "sequence number {seq} sent twice on {to:?}");
            }
            LinkCell::Create(create) => {
                self.creates.push((to, create.handshake));
                self.seqs.remove(&to);
                self.dead.remove(&to);
            }
            LinkCell::Created(_) => {
                assert!(
                    !self.dead.contains(&to),
                    "CREATED on {to:?} after a DESTROY"
                );
                self.seqs.remove(&to);
            }
            LinkCell::Destroy(_) => {
                assert!(self.dead.insert(to), "two DESTROYs on {to:?}");
            }
        }
        if !matches!(parsed, LinkCell::Relay { .. }) {
            assert_eq!(channel, Channel::Control, "{parsed:?} sent as a datagram");
        }
        if to == PREV {
            self.to_client.push_back(bytes.clone());
        }
        if self.seen.len() < 32 {
            self.seen.push((to, channel, bytes));
        }
    }

    /// Drains the table's transmits and events.
    fn pump(&mut self) {
        while let Some(transmit) = self.table.poll_transmit() {
            self.observe(transmit.to, transmit.channel, transmit.bytes);
        }
        while let Some(event) = self.table.poll_event() {
            match event {
                RelayEvent::Extend { circuit, .. } => self.pending.push(circuit),
                RelayEvent::Closed { circuit } => {
                    assert!(self.closed.insert(circuit), "{circuit:?} closed twice");
                }
            }
        }
        assert!(self.table.circuit_count() <= MAX_CIRCUITS);
    }

    /// Runs the client against the table until both are quiet.
    fn settle(&mut self) {
        for _ in 0..64 {
            let mut busy = false;
            while let Some(mut cell) = self.to_client.pop_front() {
                let _ = self.client.handle_cell(self.now, &mut cell);
                busy = true;
            }
            while let Some(transmit) = self.client.poll_transmit() {
                self.seen
                    .push((PREV, transmit.channel, transmit.bytes.clone()));
                self.deliver(PREV, transmit.channel, transmit.bytes);
                busy = true;
            }
            while self.client.poll_event().is_some() {}
            if !busy {
                return;
            }
        }
    }

    /// Relay B answers the latest CREATE the table sent it.
    fn answer_create(&mut self) {
        let Some((end, handshake)) = self.creates.pop() else {
            return;
        };
        let fixed = &*FIXED;
        let ephemeral = OnionSecretKey::from_secret_bytes([5; 32]);
        let b = [&fixed.b_onion];
        let id = fixed.ids[1].as_bytes();
        let reply = ntor::server_handshake(NtorProtocol::TRINE, id, &b, ephemeral, &handshake)
            .map_or([0; 64], |(reply, _)| reply);
        self.deliver(end, Channel::Control, LinkCell::Created(reply).to_bytes());
    }

    fn step(&mut self, u: &mut Unstructured) -> Result<()> {
        let op: u8 = u.arbitrary()?;
        let (alt, choice) = (op & 16 != 0, op & 8 != 0);
        let channel = if choice {
            Channel::Datagram
        } else {
            Channel::Control
        };
        let from = CircuitRef {
            link: u64::from(u.arbitrary::<u8>()? % 4),
            circ: u64::from(u.arbitrary::<u8>()? % 4),
        };
        self.now += Duration::from_millis(500 * u64::from(op >> 5));
        match op & 7 {
            0 => {
                let len = usize::from(u.arbitrary::<u8>()?);
                let cell = u.bytes(len.min(u.len()))?.to_vec();
                self.deliver(from, channel, cell);
            }
            1 => {
                // Long cells, up to just past the limit, padded with one byte.
                let len = usize::from(u.arbitrary::<u16>()?) % (MAX_CELL_LEN + 2);
                let fill: u8 = u.arbitrary()?;
                let mut cell = u.bytes(len.min(u.len()))?.to_vec();
                cell.resize(len, fill);
                self.deliver(from, channel, cell);
            }
            2 if !self.seen.is_empty() => {
                let index = u.choose_index(self.seen.len())?;
                let (end, seen_channel, mut cell) = self.seen[index].clone();
                mutate(u, &mut cell)?;
                let (end, channel) = if alt {
                    (from, channel)
                } else {
                    (end, seen_channel)
                };
                self.deliver(end, channel, cell);
            }
            3 => {
                let len = usize::from(u.arbitrary::<u8>()?);
                let mut cell = Vec::new();
                cell::data_cell(&mut cell, u.bytes(len.min(u.len()))?);
                if alt {
                    let exit = self.exit;
                    if let Some(to) = exit.and_then(|c| self.table.seal_exit_reply(c, &mut cell)) {
                        self.observe(to, Channel::Datagram, cell);
                    }
                } else if self.client.seal_data(&mut cell) {
                    self.seen.push((PREV, Channel::Datagram, cell.clone()));
                    self.deliver(PREV, Channel::Datagram, cell);
                }
            }
            4 => self.client.send_ping(self.now),
            5 => {
                self.now += Duration::from_secs(u64::from(u.arbitrary::<u8>()?));
                self.table.handle_timeout(self.now);
                self.client.handle_timeout(self.now);
                self.pump();
            }
            6 => {
                match u.arbitrary::<u8>()? % 8 {
                    0..=2 => self.table.link_closed(from.link),
                    3..=5 => self.table.stream_closed(from),
                    6 => self.client.close(),
                    _ => self.table.shutdown(),
                }
                self.pump();
            }
            7 if alt => self.answer_create(),
            7 => {
                if let Some(handle) = self.pending.pop() {
                    if choice {
                        self.table.extend_ready(handle, from);
                    } else {
                        let reason = REASONS[usize::from(u.arbitrary::<u8>()?) % REASONS.len()];
                        self.table.extend_failed(handle, reason);
                    }
                    self.pump();
                }
            }
            _ => {}
        }
        self.settle();
        Ok(())
    }
}

fn run(data: &[u8]) -> Result<()> {
    let mut u = Unstructured::new(data);
    let setup: u8 = u.arbitrary()?;
    let mut world = World::new(usize::from(setup % 5), setup & 8 != 0, setup & 16 != 0);
    while !u.is_empty() {
        world.step(&mut u)?;
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(data);
});
