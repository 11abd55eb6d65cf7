//! A client and relay state machines wired through in-memory queues
//! (`memnet`): circuits build, carry traffic byte-exact, and refuse every
//! tampered, replayed or misrouted cell.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::time::{Duration, Instant};

use common::{Relays, events, network, packet, ready_network};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use trine_circuit::cell::LinkCell;
use trine_circuit::client::{CircuitFailure, CircuitState, ClientDrop, FailureCause};
use trine_circuit::memnet::{InFlight, MemNet, Node, Outcome};
use trine_circuit::ntor::HandshakeError;
use trine_circuit::relay::DropReason;
use trine_circuit::{ClientCircuit, ClientConfig, ClientEvent, OnionSecretKey, Reason};

const EXIT: usize = 2;

#[test]
fn three_hop_circuit_carries_10000_packets_each_way_byte_exact() {
    let now = Instant::now();
    let mut net = ready_network(3, 1, now);
    let count = 10_000;
    for index in 0..count {
        assert!(net.client_send(&packet(index)));
        if index % 64 == 63 {
            net.run(now);
        }
    }
    net.run(now);
    assert_eq!(net.exited.len(), count);
    let circuit = net.exited[0].1;
    for (index, (relay, on, bytes)) in net.exited.iter().enumerate() {
        assert_eq!((*relay, *on), (EXIT, circuit));
        assert_eq!(bytes, &packet(index), "forward packet {index}");
    }
    for index in 0..count {
        assert!(net.exit_send(EXIT, circuit, &packet(count + index)));
        if index % 64 == 63 {
            net.run(now);
        }
    }
    net.run(now);
    assert_eq!(net.received.len(), count);
    for (index, bytes) in net.received.iter().enumerate() {
        assert_eq!(bytes, &packet(count + index), "backward packet {index}");
    }
    assert!(net.drops.is_empty(), "{:?}", net.drops);
    let stats = net.relays[1].stats();
    // The middle relay forwarded exactly the data: the EXTEND toward the exit
    // was addressed to it, and it wrote the EXTENDED itself.
    assert_eq!(stats.forward_cells as usize, count);
    assert_eq!(stats.backward_cells as usize, count);
}

#[test]
fn every_path_length_from_2_to_8_builds_and_carries_traffic() {
    let now = Instant::now();
    for hops in 2..=8 {
        let mut net = ready_network(hops, 10 + hops as u64, now);
        assert!(net.client_send(b"hello"));
        net.run(now);
        assert_eq!(net.exited.len(), 1, "{hops} hops");
        assert_eq!(net.exited[0].0, hops - 1);
        let (relay, circuit, _) = net.exited[0].clone();
        assert!(net.exit_send(relay, circuit, b"world"));
        net.run(now);
        assert_eq!(net.received, vec![b"world".to_vec()], "{hops} hops");
    }
}

#[test]
fn build_reports_each_hop_then_ready() {
    let now = Instant::now();
    let mut net = network(3, 2, now);
    net.run(now);
    assert_eq!(
        events(&mut net),
        vec![
            ClientEvent::HopAdded { hop: 1 },
            ClientEvent::HopAdded { hop: 2 },
            ClientEvent::HopAdded { hop: 3 },
            ClientEvent::Ready
        ]
    );
    assert_eq!(net.client.state(), CircuitState::Ready);
}

/// Whether `cell` travels away from the client.
fn is_forward(net: &common::Net, cell: &InFlight) -> bool {
    match cell.to {
        Node::Client => false,
        Node::Relay(0) => Some(cell.on.link) == net.link_between(Node::Client, Node::Relay(0)),
        Node::Relay(k) => {
            Some(cell.on.link) == net.link_between(Node::Relay(k - 1), Node::Relay(k))
        }
    }
}

/// Runs the network until the next cell toward `to` in the given
/// direction, and returns it undelivered.
fn run_until(net: &mut common::Net, now: Instant, to: Node, forward: bool) -> InFlight {
    while let Some(cell) = net.pop() {
        if cell.to == to && is_forward(net, &cell) == forward {
            return cell;
        }
        net.deliver(now, cell);
    }
    panic!("no cell reached {to:?}");
}

fn is_dropped(outcome: &Outcome) -> bool {
    !matches!(outcome, Outcome::Accepted)
}

/// A ready 3-hop network with one DATA cell in flight toward `to`, going
/// forward or backward, returned undelivered.
fn data_cell_toward(to: Node, forward: bool, now: Instant) -> (common::Net, InFlight) {
    let mut net = ready_network(3, 3, now);
    if forward {
        assert!(net.client_send(&packet(5)[..24]));
    } else {
        assert!(net.client_send(b"open the exit's circuit"));
        net.run(now);
        let (_, circuit, _) = net.exited[0].clone();
        net.exited.clear();
        assert!(net.exit_send(EXIT, circuit, &packet(6)[..24]));
    }
    let cell = run_until(&mut net, now, to, forward);
    (net, cell)
}

#[test]
fn flipping_any_bit_of_a_forward_cell_gets_it_dropped_at_the_next_hop() {
    let now = Instant::now();
    for relay in 0..3 {
        let to = Node::Relay(relay);
        let (mut net, cell) = data_cell_toward(to, true, now);
        for bit in 0..cell.bytes.len() * 8 {
            let mut tampered = cell.clone();
            tampered.bytes[bit / 8] ^= 1 << (bit % 8);
            let outcome = net.deliver(now, tampered);
            assert!(
                matches!(outcome, Outcome::RelayDropped(at, _) if at == relay),
                "bit {bit} flipped toward relay {relay}: {outcome:?}"
            );
            assert_eq!(net.in_flight(), 0, "a tampered cell went on from {to:?}");
        }
        assert!(net.exited.is_empty());
        // Tampering left no trace: the untouched cell still goes through.
        assert_eq!(net.deliver(now, cell), Outcome::Accepted);
        net.run(now);
        assert_eq!(net.exited.len(), 1, "original cell toward {to:?} was lost");
    }
}

#[test]
fn flipping_any_bit_of_a_backward_cell_gets_it_dropped_before_delivery() {
    // Relays cannot check the layers of later hops, so a cell tampered on
    // its way back is dropped by the client, which checks every layer.
    // Never is a tampered cell delivered.
    let now = Instant::now();
    for to in [Node::Relay(1), Node::Relay(0), Node::Client] {
        let (_, cell) = data_cell_toward(to, false, now);
        for bit in 0..cell.bytes.len() * 8 {
            let (mut net, same) = data_cell_toward(to, false, now);
            assert_eq!(same, cell, "the fixture is deterministic");
            let mut tampered = cell.clone();
            tampered.bytes[bit / 8] ^= 1 << (bit % 8);
            net.deliver(now, tampered);
            net.run(now);
            assert!(
                net.received.is_empty(),
                "bit {bit} toward {to:?} was delivered"
            );
            assert_eq!(
                net.drops.len(),
                1,
                "bit {bit} toward {to:?}: {:?}",
                net.drops
            );
            if to == Node::Client {
                assert!(matches!(net.drops[0], Outcome::ClientDropped(_)));
            }
        }
    }
}

#[test]
fn every_cell_of_a_circuits_life_is_dropped_when_replayed() {
    let now = Instant::now();
    let mut net = network(3, 4, now);
    let mut seen = Vec::new();
    let pump = |net: &mut common::Net, seen: &mut Vec<InFlight>| {
        while let Some(cell) = net.pop() {
            seen.push(cell.clone());
            assert_eq!(net.deliver(now, cell), Outcome::Accepted);
        }
    };
    pump(&mut net, &mut seen);
    assert_eq!(net.client.state(), CircuitState::Ready);
    for index in 0..20 {
        net.client_send(&packet(index));
    }
    pump(&mut net, &mut seen);
    let (_, circuit, _) = net.exited[0].clone();
    for index in 0..20 {
        net.exit_send(EXIT, circuit, &packet(index));
    }
    net.client.send_ping(now);
    pump(&mut net, &mut seen);
    assert!(
        events(&mut net)
            .iter()
            .any(|e| matches!(e, ClientEvent::Pong { .. }))
    );
    let (exited, received) = (net.exited.len(), net.received.len());
    assert!(seen.len() > 60);
    for cell in seen {
        let receiver = cell.to;
        let outcome = net.deliver(now, cell);
        assert!(is_dropped(&outcome), "replay toward {receiver:?} accepted");
        net.run(now);
    }
    assert_eq!((net.exited.len(), net.received.len()), (exited, received));
    assert_eq!(
        net.client.state(),
        CircuitState::Ready,
        "replays did not harm the circuit"
    );
    assert!(net.client_send(b"still works"));
    net.run(now);
    assert_eq!(net.exited.last().unwrap().2, b"still works");
}

#[test]
fn replay_drops_are_counted_as_replays() {
    let now = Instant::now();
    let mut net = ready_network(3, 5, now);
    net.client_send(b"once");
    let cell = net.pop().unwrap();
    assert_eq!(net.deliver(now, cell.clone()), Outcome::Accepted);
    assert_eq!(
        net.deliver(now, cell),
        Outcome::RelayDropped(0, DropReason::Replay)
    );
    net.run(now);
    let (_, circuit, _) = net.exited[0].clone();
    net.exit_send(EXIT, circuit, b"back");
    let to_middle = net.pop().unwrap();
    assert_eq!(net.deliver(now, to_middle.clone()), Outcome::Accepted);
    assert_eq!(
        net.deliver(now, to_middle),
        Outcome::RelayDropped(1, DropReason::Replay),
        "a middle relay never seals one sequence number twice"
    );
    let to_guard = net.pop().unwrap();
    net.deliver(now, to_guard);
    let to_client = net.pop().unwrap();
    assert_eq!(net.deliver(now, to_client.clone()), Outcome::Accepted);
    assert!(matches!(
        net.deliver(now, to_client),
        Outcome::ClientDropped(ClientDrop::Replay(_))
    ));
}

#[test]
fn reordering_within_the_window_is_accepted_both_ways() {
    let now = Instant::now();
    let mut net = ready_network(3, 6, now);
    let count = 1_000;
    for index in 0..count {
        net.client_send(&packet(index));
    }
    let mut cells: Vec<InFlight> = std::iter::from_fn(|| net.pop()).collect();
    cells.reverse();
    for cell in cells {
        assert_eq!(net.deliver(now, cell), Outcome::Accepted);
    }
    net.run(now);
    assert_eq!(net.exited.len(), count);
    for (offset, (_, _, bytes)) in net.exited.iter().enumerate() {
        assert_eq!(bytes, &packet(count - 1 - offset));
    }
    let (_, circuit, _) = net.exited[0].clone();
    for index in 0..count {
        net.exit_send(EXIT, circuit, &packet(index));
    }
    // Reverse the order at the exit's outgoing queue and again at the guard's.
    let mut cells: Vec<InFlight> = std::iter::from_fn(|| net.pop()).collect();
    cells.reverse();
    for cell in cells {
        net.deliver(now, cell);
    }
    let mut at_guard: Vec<InFlight> = std::iter::from_fn(|| net.pop()).collect();
    assert_eq!(at_guard.len(), count);
    at_guard.reverse();
    for cell in at_guard {
        net.deliver(now, cell);
    }
    net.run(now);
    assert_eq!(net.received.len(), count);
    assert!(net.drops.is_empty(), "{:?}", net.drops);
}

#[test]
fn client_destroy_mid_stream_tears_down_every_hop() {
    let now = Instant::now();
    let mut net = ready_network(3, 7, now);
    for index in 0..100 {
        net.client_send(&packet(index));
    }
    // Half the traffic is delivered, then the client closes.
    for _ in 0..50 {
        let cell = net.pop().unwrap();
        net.deliver(now, cell);
    }
    net.client.close();
    net.run(now);
    for relay in &net.relays {
        assert_eq!(relay.circuit_count(), 0);
        assert_eq!(relay.stats().circuits_closed, 1);
    }
    for relay in 0..3 {
        assert!(net.relay_events.iter().any(|(index, event)| *index == relay
            && matches!(event, trine_circuit::RelayEvent::Closed { .. })));
    }
    assert!(!net.client_send(b"after close"));
}

#[test]
fn losing_the_exit_truncates_and_the_client_tears_down_the_rest() {
    let now = Instant::now();
    let mut net = ready_network(3, 8, now);
    net.client_send(b"x");
    net.run(now);
    // The middle relay's link to the exit goes away.
    let link_to_exit = net.link_between(Node::Relay(1), Node::Relay(2)).unwrap();
    net.relays[1].link_closed(link_to_exit);
    net.run(now);
    let failures: Vec<_> = events(&mut net)
        .into_iter()
        .filter_map(|e| match e {
            ClientEvent::Failed(failure) => Some(failure),
            _ => None,
        })
        .collect();
    assert_eq!(
        failures,
        vec![CircuitFailure {
            hop: 3,
            cause: FailureCause::Truncated(Reason::LinkClosed)
        }]
    );
    assert_eq!(net.relays[0].circuit_count(), 0);
    assert_eq!(net.relays[1].circuit_count(), 0);
}

#[test]
fn a_destroy_from_the_exit_side_reaches_the_client_as_truncated() {
    let now = Instant::now();
    let mut net = ready_network(3, 9, now);
    net.relays[2].shutdown();
    net.run(now);
    let failed: Vec<_> = events(&mut net)
        .into_iter()
        .filter(|e| matches!(e, ClientEvent::Failed(_)))
        .collect();
    assert_eq!(
        failed,
        vec![ClientEvent::Failed(CircuitFailure {
            hop: 3,
            cause: FailureCause::Truncated(Reason::Finished)
        })]
    );
    assert!(net.relays.iter().all(|r| r.circuit_count() == 0));
}

#[test]
fn a_wrong_onion_key_fails_the_build_at_that_hop() {
    let now = Instant::now();
    let relays = Relays::new(3, 11);
    let mut path: Vec<_> = (0..3).map(|i| relays.hop(i)).collect();
    let stale = OnionSecretKey::generate(&mut ChaCha20Rng::seed_from_u64(99));
    path[1].onion_key = stale.public_key();
    let client = ClientCircuit::new(
        path,
        &ClientConfig::default(),
        now,
        &mut ChaCha20Rng::seed_from_u64(1),
    )
    .unwrap();
    let mut net = MemNet::new(client, relays.tables(11), relays.ids());
    net.run(now);
    assert!(
        events(&mut net).contains(&ClientEvent::Failed(CircuitFailure {
            hop: 2,
            cause: FailureCause::Truncated(Reason::HandshakeFailed)
        }))
    );
    assert_eq!(net.relays[1].stats().handshakes_failed, 1);
    assert!(net.relays.iter().all(|r| r.circuit_count() == 0));
}

#[test]
fn a_forged_created_fails_with_a_handshake_error_at_hop_1() {
    let now = Instant::now();
    let mut net = network(3, 12, now);
    let create = net.pop().unwrap();
    net.deliver(now, create);
    let mut created = net.pop().unwrap();
    assert_eq!(created.to, Node::Client);
    created.bytes[40] ^= 0x80;
    net.deliver(now, created);
    assert_eq!(
        events(&mut net),
        vec![ClientEvent::Failed(CircuitFailure {
            hop: 1,
            cause: FailureCause::Handshake(HandshakeError::Failed)
        })]
    );
}

#[test]
fn an_unreachable_next_relay_fails_the_build_at_that_hop() {
    let now = Instant::now();
    let relays = Relays::new(3, 13);
    let path: Vec<_> = (0..3).map(|i| relays.hop(i)).collect();
    let client = ClientCircuit::new(
        path,
        &ClientConfig::default(),
        now,
        &mut ChaCha20Rng::seed_from_u64(1),
    )
    .unwrap();
    // The network only knows the first two relays.
    let mut tables = relays.tables(13);
    tables.truncate(2);
    let mut ids = relays.ids();
    ids.truncate(2);
    let mut net = MemNet::new(client, tables, ids);
    net.run(now);
    assert!(
        events(&mut net).contains(&ClientEvent::Failed(CircuitFailure {
            hop: 3,
            cause: FailureCause::Truncated(Reason::ConnectFailed)
        }))
    );
}

#[test]
fn a_silent_hop_times_out_on_both_client_and_relay() {
    let now = Instant::now();
    let mut net = network(3, 14, now);
    // Deliver everything except the CREATE to the exit.
    while let Some(cell) = net.pop() {
        if cell.to == Node::Relay(2) {
            continue;
        }
        net.deliver(now, cell);
    }
    let deadline = net.client.poll_timeout().unwrap();
    assert_eq!(deadline, now + ClientConfig::default().build_timeout);
    net.client
        .handle_timeout(deadline - Duration::from_millis(1));
    assert!(
        events(&mut net)
            .iter()
            .all(|e| !matches!(e, ClientEvent::Failed(_)))
    );
    net.client.handle_timeout(deadline);
    assert!(
        events(&mut net).contains(&ClientEvent::Failed(CircuitFailure {
            hop: 3,
            cause: FailureCause::Timeout
        }))
    );

    // The middle relay, left alone, gives up on the extension itself.
    let mut net = network(3, 14, now);
    while let Some(cell) = net.pop() {
        if cell.to != Node::Relay(2) {
            net.deliver(now, cell);
        }
    }
    let later = now + Duration::from_secs(11);
    let mut at = net.relays[1].poll_timeout().unwrap();
    while at <= later {
        net.relays[1].handle_timeout(at);
        at = net.relays[1].poll_timeout().unwrap();
    }
    net.run(later);
    assert!(
        events(&mut net).contains(&ClientEvent::Failed(CircuitFailure {
            hop: 3,
            cause: FailureCause::Truncated(Reason::Timeout)
        }))
    );
}

#[test]
fn idle_circuits_are_destroyed_by_relays() {
    let now = Instant::now();
    let mut net = ready_network(3, 15, now);
    let idle = now + trine_circuit::RelayConfig::default().idle_timeout + Duration::from_secs(2);
    for relay in &mut net.relays {
        let mut at = relay.poll_timeout().unwrap();
        while at <= idle {
            relay.handle_timeout(at);
            match relay.poll_timeout() {
                Some(next) => at = next,
                None => break,
            }
        }
    }
    net.run(idle);
    assert!(net.relays.iter().all(|r| r.circuit_count() == 0));
    assert_eq!(net.client.state(), CircuitState::Closed);
}

#[test]
fn a_relay_that_is_not_an_exit_drops_data() {
    let now = Instant::now();
    // A 2-hop circuit whose last hop is relay 1, which is not an exit.
    let relays = Relays::new(2, 16);
    let mut tables = relays.tables(16);
    tables[1] = trine_circuit::RelayTable::new(
        relays.ids()[1],
        vec![OnionSecretKey::from_secret_bytes(relays.onion[1])],
        trine_circuit::RelayConfig::default(),
        ChaCha20Rng::seed_from_u64(0),
    );
    let client = ClientCircuit::new(
        vec![relays.hop(0), relays.hop(1)],
        &ClientConfig::default(),
        now,
        &mut ChaCha20Rng::seed_from_u64(2),
    )
    .unwrap();
    let mut net = MemNet::new(client, tables, relays.ids());
    net.run(now);
    assert!(net.client_send(b"out"));
    net.run(now);
    assert!(net.exited.is_empty());
    assert_eq!(
        net.drops,
        vec![Outcome::RelayDropped(1, DropReason::NotExit)]
    );
}

#[test]
fn an_exit_refuses_data_on_a_one_hop_circuit_but_still_answers_ping() {
    let now = Instant::now();
    // The client talks to the exit directly: its link is no relay link.
    let mut net = ready_network(1, 21, now);
    assert!(net.client_send(b"out"));
    net.run(now);
    assert!(net.exited.is_empty());
    assert_eq!(
        net.drops,
        vec![Outcome::RelayDropped(0, DropReason::OneHop)]
    );
    assert_eq!(
        net.relays[0].stats().drops.get(&DropReason::OneHop),
        Some(&1)
    );
    assert_eq!(net.relays[0].stats().exit_packets, 0);
    // Control messages are answered as before.
    net.client.send_ping(now);
    net.run(now);
    assert!(matches!(
        events(&mut net).as_slice(),
        [ClientEvent::Pong { .. }]
    ));
}

/// Builds a one-hop circuit to `exit` arriving on `link`; returns the
/// client's end and the exit's.
fn circuit_on_link(
    exit: &mut trine_circuit::RelayTable<ChaCha20Rng>,
    relays: &Relays,
    link: u64,
    now: Instant,
) -> (ClientCircuit, trine_circuit::CircuitRef) {
    let mut rng = ChaCha20Rng::seed_from_u64(link);
    let mut client =
        ClientCircuit::new(vec![relays.hop(0)], &ClientConfig::default(), now, &mut rng).unwrap();
    let from = trine_circuit::CircuitRef { link, circ: 1 };
    let mut create = client.poll_transmit().unwrap().bytes;
    exit.handle_cell(now, from, trine_circuit::Channel::Control, &mut create);
    let mut created = exit.poll_transmit().unwrap().bytes;
    client.handle_cell(now, &mut created).unwrap();
    (client, from)
}

/// Sends one DATA cell from `client` on its circuit at `from`; returns
/// what the exit did with it.
fn send_data(
    exit: &mut trine_circuit::RelayTable<ChaCha20Rng>,
    client: &mut ClientCircuit,
    from: trine_circuit::CircuitRef,
    now: Instant,
) -> trine_circuit::RelayAction {
    let mut cell = Vec::new();
    trine_circuit::cell::data_cell(&mut cell, b"out");
    assert!(client.seal_data(&mut cell));
    exit.handle_cell(now, from, trine_circuit::Channel::Datagram, &mut cell)
}

/// Builds a one-hop circuit to `exit` arriving on `link` and sends one
/// DATA cell on it; returns what the exit did with the DATA.
fn data_on_link(
    exit: &mut trine_circuit::RelayTable<ChaCha20Rng>,
    relays: &Relays,
    link: u64,
    now: Instant,
) -> trine_circuit::RelayAction {
    let (mut client, from) = circuit_on_link(exit, relays, link, now);
    send_data(exit, &mut client, from, now)
}

#[test]
fn only_circuits_over_a_link_to_a_recognised_relay_may_exit() {
    let now = Instant::now();
    let relays = Relays::new(1, 22);
    let mut exit = relays.tables(22).remove(0);
    exit.set_link_is_relay(7, true);
    assert!(matches!(
        data_on_link(&mut exit, &relays, 7, now),
        trine_circuit::RelayAction::Exit { .. }
    ));
    // Once the shell reports the link closed, it is forgotten.
    exit.set_link_is_relay(8, true);
    exit.link_closed(8);
    assert_eq!(
        data_on_link(&mut exit, &relays, 8, now),
        trine_circuit::RelayAction::Dropped(DropReason::OneHop)
    );
    assert_eq!(exit.stats().drops.get(&DropReason::OneHop), Some(&1));
}

#[test]
fn a_links_relay_status_applies_to_its_circuits_at_data_time() {
    let now = Instant::now();
    let relays = Relays::new(1, 23);
    let mut exit = relays.tables(23).remove(0);
    // Built while the exit did not (yet) recognise the peer: refused.
    let (mut client, from) = circuit_on_link(&mut exit, &relays, 9, now);
    let (mut other, other_from) = circuit_on_link(&mut exit, &relays, 10, now);
    assert_eq!(
        send_data(&mut exit, &mut client, from, now),
        trine_circuit::RelayAction::Dropped(DropReason::OneHop)
    );
    // A newer consensus lists it: the same circuit now exits; circuits on
    // other links are untouched.
    exit.set_link_is_relay(9, true);
    let trine_circuit::RelayAction::Exit { circuit, .. } =
        send_data(&mut exit, &mut client, from, now)
    else {
        panic!("a circuit over a recognised relay link did not exit");
    };
    assert_eq!(exit.previous_hop(circuit), Some((9, true)));
    assert_eq!(
        send_data(&mut exit, &mut other, other_from, now),
        trine_circuit::RelayAction::Dropped(DropReason::OneHop)
    );
    // Delisted: refused again, without closing the circuit.
    exit.set_link_is_relay(9, false);
    assert_eq!(
        send_data(&mut exit, &mut client, from, now),
        trine_circuit::RelayAction::Dropped(DropReason::OneHop)
    );
    assert_eq!(exit.stats().drops.get(&DropReason::OneHop), Some(&3));
    assert_eq!(exit.circuit_count(), 2);
}

#[test]
fn keepalive_ping_is_answered_by_the_last_hop() {
    let now = Instant::now();
    let mut net = ready_network(3, 17, now);
    net.client.send_ping(now);
    let later = now + Duration::from_millis(30);
    net.run(later);
    assert_eq!(
        events(&mut net),
        vec![ClientEvent::Pong {
            rtt: Duration::from_millis(30)
        }]
    );
}

#[test]
fn onion_key_rotation_keeps_accepting_the_previous_key() {
    let now = Instant::now();
    let relays = Relays::new(1, 18);
    let mut tables = relays.tables(18);
    let fresh = OnionSecretKey::generate(&mut ChaCha20Rng::seed_from_u64(5));
    tables[0].set_onion_keys(vec![
        fresh,
        OnionSecretKey::from_secret_bytes(relays.onion[0]),
    ]);
    let client = ClientCircuit::new(
        vec![relays.hop(0)],
        &ClientConfig::default(),
        now,
        &mut ChaCha20Rng::seed_from_u64(3),
    )
    .unwrap();
    let mut net = MemNet::new(client, tables, relays.ids());
    net.run(now);
    assert_eq!(net.client.state(), CircuitState::Ready);
}

#[test]
fn circuit_limits_refuse_extra_creates() {
    let now = Instant::now();
    let relays = Relays::new(1, 19);
    let mut table = trine_circuit::RelayTable::new(
        relays.ids()[0],
        vec![OnionSecretKey::from_secret_bytes(relays.onion[0])],
        trine_circuit::RelayConfig {
            max_circuits_per_link: 2,
            ..trine_circuit::RelayConfig::default()
        },
        ChaCha20Rng::seed_from_u64(0),
    );
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    for circ in 0..3u64 {
        let mut client =
            ClientCircuit::new(vec![relays.hop(0)], &ClientConfig::default(), now, &mut rng)
                .unwrap();
        let mut create = client.poll_transmit().unwrap().bytes;
        let action = table.handle_cell(
            now,
            trine_circuit::CircuitRef { link: 7, circ },
            trine_circuit::Channel::Control,
            &mut create,
        );
        if circ < 2 {
            assert_eq!(action, trine_circuit::RelayAction::Handled);
        } else {
            assert_eq!(
                action,
                trine_circuit::RelayAction::Dropped(DropReason::LinkCircuitLimit)
            );
        }
    }
    assert_eq!(table.circuit_count(), 2);
}

#[test]
fn a_backward_cell_at_the_top_sequence_number_is_never_sealed() {
    // Sealing u64::MAX would leave no fresh number above it: the hop's next
    // own message (TRUNCATED here) would have to reuse a nonce.
    let now = Instant::now();
    let (mut net, mut cell) = data_cell_toward(Node::Relay(1), false, now);
    cell.bytes[1..9].copy_from_slice(&u64::MAX.to_be_bytes());
    assert_eq!(
        net.deliver(now, cell),
        Outcome::RelayDropped(1, DropReason::Replay)
    );
    // The middle can still speak for itself: its TRUNCATED reaches the client.
    let link_to_exit = net.link_between(Node::Relay(1), Node::Relay(2)).unwrap();
    net.relays[1].link_closed(link_to_exit);
    net.run(now);
    assert!(
        events(&mut net).contains(&ClientEvent::Failed(CircuitFailure {
            hop: 3,
            cause: FailureCause::Truncated(Reason::LinkClosed)
        }))
    );
}

#[test]
fn a_create_leaving_no_backward_sequence_numbers_is_refused() {
    let now = Instant::now();
    let relays = Relays::new(1, 20);
    let mut table = trine_circuit::RelayTable::new(
        relays.ids()[0],
        vec![OnionSecretKey::from_secret_bytes(relays.onion[0])],
        trine_circuit::RelayConfig::default(),
        ChaCha20Rng::seed_from_u64(0),
    );
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let mut client =
        ClientCircuit::new(vec![relays.hop(0)], &ClientConfig::default(), now, &mut rng).unwrap();
    let bytes = client.poll_transmit().unwrap().bytes;
    let LinkCell::Create(mut create) = LinkCell::parse(&bytes).unwrap() else {
        panic!("the client's first cell is not a CREATE");
    };
    create.backward_seq_start = u64::MAX;
    let mut cell = LinkCell::Create(create).to_bytes();
    let from = trine_circuit::CircuitRef { link: 1, circ: 1 };
    assert_eq!(
        table.handle_cell(now, from, trine_circuit::Channel::Control, &mut cell),
        trine_circuit::RelayAction::Dropped(DropReason::Protocol)
    );
    assert_eq!(table.circuit_count(), 0);
    let reply = table.poll_transmit().unwrap();
    assert_eq!(
        LinkCell::parse(&reply.bytes).unwrap(),
        LinkCell::Destroy(Some(Reason::Protocol))
    );
}
