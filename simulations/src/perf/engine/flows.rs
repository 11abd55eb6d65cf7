//! Engine 2's transfers and flows: both ends of each transfer's reliable
//! flows (the client's request and the exit's response, with their
//! retransmission timers) and constant-rate datagrams, sealed into and
//! opened out of the real circuits.

use trine_circuit::cell::data_cell;
use trine_circuit::{Channel, CircuitHandle};

use super::{DownloadRecord, Event, SECOND, Sim, Transfer};
use crate::perf::transport::{
    Ack, DELAYED_ACK_NS, HEADER_LEN, Header, Kind, Receiver, Segmenting, Sender,
};

impl Sim<'_> {
    pub(super) fn start_transfer(&mut self, now: u64, index: u32) {
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
            client_ack_timer: false,
            server_ack_timer: false,
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
    pub(super) fn pump_client(&mut self, now: u64, index: u32) {
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
    pub(super) fn pump_server(&mut self, now: u64, index: u32) {
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
    pub(super) fn arm_timer(&mut self, index: u32, server: bool) {
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

    pub(super) fn rto(&mut self, now: u64, index: u32, id: u32, server: bool) {
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

    /// Sends `ack` from the receiving end of the client's transfer (the
    /// exit's, receiving the request, when `server`); with none to send
    /// now, makes sure the delayed-ACK timer of that end is pending.
    pub(super) fn acknowledge(&mut self, now: u64, index: u32, server: bool, ack: Option<Ack>) {
        let Some(transfer) = self.clients[index as usize].transfer.as_mut() else {
            return;
        };
        let id = transfer.id;
        let Some(ack) = ack else {
            let pending = if server {
                &mut transfer.server_ack_timer
            } else {
                &mut transfer.client_ack_timer
            };
            if !*pending {
                *pending = true;
                self.push(
                    now + DELAYED_ACK_NS,
                    Event::DelayedAck {
                        client: index,
                        transfer: id,
                        server,
                    },
                );
            }
            return;
        };
        let exit = transfer.exit;
        let reply = Header {
            kind: if server {
                Kind::RequestAck
            } else {
                Kind::ResponseAck
            },
            client: index,
            transfer: id,
            number: ack.cumulative,
            stamp: ack.echo,
        };
        match (server, exit) {
            (false, _) => self.client_send(now, index, &reply, 0),
            (true, Some((relay, circuit))) => self.server_send(now, relay, circuit, &reply, 0),
            (true, None) => self.drop("exit_circuit_gone"),
        }
    }

    /// The delayed-ACK timer of one end of a transfer fired: sends what
    /// that end still holds.
    pub(super) fn delayed_ack(&mut self, now: u64, index: u32, id: u32, server: bool) {
        let Some(transfer) = self.clients[index as usize]
            .transfer
            .as_mut()
            .filter(|transfer| transfer.id == id)
        else {
            return;
        };
        let (receiver, pending) = if server {
            (&mut transfer.request_rx, &mut transfer.server_ack_timer)
        } else {
            (&mut transfer.response_rx, &mut transfer.client_ack_timer)
        };
        *pending = false;
        if let Some(ack) = receiver.take_held() {
            self.acknowledge(now, index, server, Some(ack));
        }
    }

    /// Seals a transport packet on the client's circuit and sends it.
    pub(super) fn client_send(&mut self, now: u64, index: u32, header: &Header, payload: usize) {
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
                self.send_to(now, (host, guard), on, Channel::Datagram, cell);
            }
            _ => self.drop("client_not_ready"),
        }
    }

    /// Seals a transport packet at the exit for its client and sends it.
    pub(super) fn server_send(
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
                self.send_on(now, relay, to, Channel::Datagram, cell);
            }
            None => self.drop("exit_circuit_gone"),
        }
    }

    /// A transport packet left the circuit at exit `relay`.
    pub(super) fn server_receive(
        &mut self,
        now: u64,
        relay: usize,
        circuit: CircuitHandle,
        packet: &[u8],
    ) {
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
                let ack = transfer
                    .request_rx
                    .on_segment(now, header.number, payload, header.stamp);
                if transfer.request_rx.complete() && transfer.response.is_none() {
                    let transport = &self.scenario.transport;
                    transfer.response = Some(Sender::new(
                        transfer.response_shape,
                        transport.initial_window,
                        transport.max_window,
                    ));
                }
                self.acknowledge(now, header.client, true, ack);
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
    pub(super) fn client_packet(&mut self, now: u64, index: u32, packet: &[u8]) {
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
                let ack =
                    transfer
                        .response_rx
                        .on_segment(now, header.number, payload, header.stamp);
                let record = &mut self.result.downloads[transfer.record];
                record.first_byte = transfer.response_rx.first_byte;
                record.bytes = transfer.response_rx.bytes;
                let done = transfer.response_rx.complete();
                if done {
                    record.finished = Some(now);
                    record.retransmissions = transfer
                        .response
                        .as_ref()
                        .map_or(0, |response| response.retransmissions);
                }
                self.acknowledge(now, index, false, ack);
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
    pub(super) fn finish_transfer(&mut self, now: u64, index: u32) {
        let spec = &self.scenario.traffic;
        let client = &mut self.clients[index as usize];
        client.transfer = None;
        client.waiting = true;
        let pause = client.model.pause_ns(spec, &mut client.rng);
        self.push(now + pause, Event::NextTransfer(index));
    }

    pub(super) fn tick(&mut self, now: u64, index: u32) {
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
}
