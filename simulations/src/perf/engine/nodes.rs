//! Engine 2's circuit ends: relays (each a shipped `RelayTable`, with
//! EXTEND answered by opening a circuit on a link, and its timer) and
//! clients' circuits (a shipped `ClientCircuit` on a path from the shipped
//! `select_path`, built, timed out, replaced on failure).

use trine_circuit::client::{CircuitState, FailureCause, Received};
use trine_circuit::relay::RelayTransmit;
use trine_circuit::{
    CircuitRef, ClientCircuit, ClientConfig, ClientEvent, HopSpec, Reason, RelayAction, RelayEvent,
    Transmit,
};
use trine_directory::{PathConfig, select_path};

use crate::engine::START;

use super::{CircuitRecord, Event, Packet, RETRY_NS, SECOND, Sim};
use crate::perf::traffic::Model;

impl Sim<'_> {
    pub(super) fn relay_receive(&mut self, now: u64, packet: Packet) {
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
                self.send_on(now, relay, to, channel, bytes);
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
    pub(super) fn drain_relay(&mut self, now: u64, relay: usize) {
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
                    // A link between relays: both proved relay identities.
                    self.relays[relay].table.set_link_is_relay(end.link, true);
                    self.relays[next].table.set_link_is_relay(end.link, true);
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
            self.send_on(now, relay, to, channel, bytes);
        }
        if let Some(at) = self.relays[relay].table.poll_timeout() {
            let at = self.ns(at);
            if self.relays[relay].timer_at.is_none_or(|set| at < set) {
                self.relays[relay].timer_at = Some(at);
                self.push(at, Event::RelayTimer(relay as u32));
            }
        }
    }

    pub(super) fn relay_timer(&mut self, now: u64, relay: usize) {
        if self.relays[relay].timer_at != Some(now) {
            return;
        }
        self.relays[relay].timer_at = None;
        let instant = self.instant(now);
        self.relays[relay].table.handle_timeout(instant);
        self.drain_relay(now, relay);
    }

    pub(super) fn build(&mut self, now: u64, index: u32) {
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
                    addresses: self.consensus.candidates()[relay].addresses.clone(),
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

    pub(super) fn client_receive(&mut self, now: u64, packet: Packet) {
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
            Ok(Received::Packet(range)) => {
                if let Some(payload) = bytes.get(range) {
                    self.client_packet(now, index, payload);
                }
            }
            Ok(Received::Control) => {}
            Err(_) => self.drop("client_cell_dropped"),
        }
        self.drain_client(now, index);
    }

    /// Handles the circuit's events, sends what it queued, sets its timer.
    pub(super) fn drain_client(&mut self, now: u64, index: u32) {
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
        self.send_to_guard(now, host, end, transmits);
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

    pub(super) fn client_timer(&mut self, now: u64, index: u32) {
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

    pub(super) fn circuit_ready(&mut self, now: u64, index: u32) {
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

    /// Sends a client's queued cells from its `host` to its guard over the
    /// link `end`; without a link they have nowhere to go.
    fn send_to_guard(
        &mut self,
        now: u64,
        host: usize,
        end: Option<(CircuitRef, usize)>,
        transmits: Vec<Transmit>,
    ) {
        if let Some((on, guard)) = end {
            for transmit in transmits {
                self.send_to(now, (host, guard), on, transmit.channel, transmit.bytes);
            }
        }
    }

    /// The circuit failed or was destroyed: give it up (its DESTROY was
    /// sent), abandon the transfer, and build another after a pause.
    pub(super) fn circuit_lost(&mut self, now: u64, index: u32) {
        let client = &mut self.clients[index as usize];
        if let Some(mut circuit) = client.circuit.take() {
            circuit.close();
            let mut transmits = Vec::new();
            while let Some(transmit) = circuit.poll_transmit() {
                transmits.push(transmit);
            }
            let (host, end) = (client.host, client.end);
            self.send_to_guard(now, host, end, transmits);
        }
        let client = &mut self.clients[index as usize];
        client.end = None;
        client.transfer = None;
        client.waiting = false;
        self.push(now + RETRY_NS, Event::Build(index));
    }

    pub(super) fn ready(&self, index: u32) -> bool {
        self.clients[index as usize]
            .circuit
            .as_ref()
            .is_some_and(|circuit| circuit.state() == CircuitState::Ready)
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
