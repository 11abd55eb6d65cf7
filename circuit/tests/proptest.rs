//! Property tests: every encoding round-trips, and arbitrary bytes fed to
//! every decoder, to the relay table and to a client give `Ok` or a typed
//! error, never a panic, and never harm a circuit that is working.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::net::SocketAddr;
use std::time::Instant;

use proptest::prelude::*;
use trine_circuit::cell::{CREATE_HANDSHAKE_LEN, Create, Extend, LinkCell, RelayMsg};
use trine_circuit::codec;
use trine_circuit::memnet::{InFlight, Node, Outcome};
use trine_circuit::relay::RelayAction;
use trine_circuit::{Channel, CircuitRef, OnionKeyCert, OnionPublicKey, Reason, RelayId};

fn reason() -> impl Strategy<Value = Reason> {
    prop::sample::select(vec![
        Reason::Finished,
        Reason::Protocol,
        Reason::Timeout,
        Reason::ResourceLimit,
        Reason::ConnectFailed,
        Reason::LinkClosed,
        Reason::HandshakeFailed,
        Reason::NotAnExit,
        Reason::Internal,
    ])
}

fn address() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
    ]
}

fn handshake() -> impl Strategy<Value = [u8; CREATE_HANDSHAKE_LEN]> {
    prop::collection::vec(any::<u8>(), CREATE_HANDSHAKE_LEN).prop_map(|v| v.try_into().unwrap())
}

fn reply() -> impl Strategy<Value = [u8; 64]> {
    prop::collection::vec(any::<u8>(), 64).prop_map(|v| v.try_into().unwrap())
}

fn link_cell() -> impl Strategy<Value = LinkCell> {
    prop_oneof![
        (handshake(), any::<u64>()).prop_map(|(handshake, backward_seq_start)| {
            LinkCell::Create(Box::new(Create {
                handshake,
                backward_seq_start,
            }))
        }),
        reply().prop_map(LinkCell::Created),
        prop::option::of(reason()).prop_map(LinkCell::Destroy),
        (any::<bool>(), any::<u64>()).prop_map(|(early, seq)| LinkCell::Relay { early, seq }),
    ]
}

/// Owned stand-in for a `RelayMsg`, which borrows its DATA.
#[derive(Debug, Clone)]
enum OwnedMsg {
    Data(Vec<u8>),
    Ping(u64),
    Pong(u64),
    Extend(Extend),
    Extended([u8; 64]),
    End(Reason),
    Truncated(Reason),
    Padding(usize),
}

impl OwnedMsg {
    fn borrow(&self) -> RelayMsg<'_> {
        match self {
            Self::Data(bytes) => RelayMsg::Data(bytes),
            Self::Ping(echo) => RelayMsg::Ping(*echo),
            Self::Pong(echo) => RelayMsg::Pong(*echo),
            Self::Extend(extend) => RelayMsg::Extend(Box::new(extend.clone())),
            Self::Extended(reply) => RelayMsg::Extended(*reply),
            Self::End(reason) => RelayMsg::End(*reason),
            Self::Truncated(reason) => RelayMsg::Truncated(*reason),
            Self::Padding(len) => RelayMsg::Padding(*len),
        }
    }
}

fn relay_msg() -> impl Strategy<Value = OwnedMsg> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..1500).prop_map(OwnedMsg::Data),
        any::<u64>().prop_map(OwnedMsg::Ping),
        any::<u64>().prop_map(OwnedMsg::Pong),
        (
            any::<[u8; 32]>(),
            prop::collection::vec(address(), 1..=4),
            handshake()
        )
            .prop_map(|(target, addresses, handshake)| OwnedMsg::Extend(Extend {
                target: RelayId::from_bytes(target),
                addresses,
                handshake,
            })),
        reply().prop_map(OwnedMsg::Extended),
        reason().prop_map(OwnedMsg::End),
        reason().prop_map(OwnedMsg::Truncated),
        (0usize..600).prop_map(OwnedMsg::Padding),
    ]
}

proptest! {
    #[test]
    fn link_cells_round_trip(cell in link_cell()) {
        prop_assert_eq!(LinkCell::parse(&cell.to_bytes()).unwrap(), cell);
    }

    #[test]
    fn relay_messages_round_trip(message in relay_msg()) {
        let mut bytes = Vec::new();
        message.borrow().encode_into(&mut bytes);
        prop_assert_eq!(RelayMsg::parse(&bytes).unwrap(), message.borrow());
    }

    #[test]
    fn onion_key_certs_round_trip(
        id in any::<[u8; 32]>(),
        key in any::<[u8; 32]>(),
        expires in any::<u64>(),
        signature in prop::collection::vec(any::<u8>(), 64),
    ) {
        let cert = OnionKeyCert {
            relay_id: RelayId::from_bytes(id),
            onion_key: OnionPublicKey::from_bytes(key),
            expires,
            signature: signature.try_into().unwrap(),
        };
        prop_assert_eq!(OnionKeyCert::from_bytes(&cert.to_bytes()).unwrap(), cert);
    }

    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = LinkCell::parse(&bytes);
        let _ = RelayMsg::parse(&bytes);
        let _ = OnionKeyCert::from_bytes(&bytes);
        let _ = codec::decode::<Extend>(&bytes, codec::MAX_CONTROL_LEN);
        let _ = codec::decode::<Reason>(&bytes, codec::MAX_CONTROL_LEN);
    }

    #[test]
    fn decoders_never_panic_on_mutated_valid_encodings(
        message in relay_msg(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = Vec::new();
        message.borrow().encode_into(&mut bytes);
        for (at, value) in flips {
            let at = at.index(bytes.len());
            bytes[at] ^= value;
        }
        let _ = RelayMsg::parse(&bytes);
        bytes.truncate(cut.index(bytes.len() + 1));
        let _ = RelayMsg::parse(&bytes);
        let _ = LinkCell::parse(&bytes);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Garbage on unrelated circuit ids, and forged RELAY cells on the live
    /// circuit's own id, are dropped or handled without panicking, and the
    /// working circuit still carries traffic afterwards.
    #[test]
    fn arbitrary_cells_never_panic_or_harm_a_working_circuit(
        cells in prop::collection::vec(
            (0usize..4, 0u64..3, any::<bool>(), any::<bool>(), prop::collection::vec(any::<u8>(), 0..300)),
            1..40,
        ),
    ) {
        let now = Instant::now();
        let mut net = common::ready_network(3, 21, now);
        let guard_end = {
            net.client_send(b"probe");
            let cell = net.pop().unwrap();
            let end = cell.on;
            net.deliver(now, cell);
            net.run(now);
            end
        };
        for (node, circ, on_live_circuit, early, mut bytes) in cells {
            let (to, on) = if node < 3 && on_live_circuit {
                // A forged onion cell on the guard's live circuit.
                bytes.insert(0, if early { 5 } else { 4 });
                (Node::Relay(0), guard_end)
            } else if node < 3 {
                (Node::Relay(node), CircuitRef { link: 100 + node as u64, circ })
            } else {
                (Node::Client, guard_end)
            };
            if to == Node::Client {
                // Only RELAY-shaped garbage: a DESTROY would legitimately end it.
                bytes.insert(0, 4);
            }
            let channel = if early { Channel::Control } else { Channel::Datagram };
            let outcome = net.deliver(now, InFlight { to, on, channel, bytes });
            if on == guard_end {
                prop_assert!(outcome != Outcome::Accepted, "forged cell accepted: {:?}", outcome);
            }
            net.run(now);
        }
        let exited = net.exited.len();
        prop_assert!(net.client_send(b"still alive"));
        net.run(now);
        prop_assert_eq!(net.exited.len(), exited + 1);
        prop_assert_eq!(&net.exited.last().unwrap().2, b"still alive");
    }

    /// A fresh relay table fed arbitrary cells on arbitrary ids never
    /// panics and never forwards anything.
    #[test]
    fn fresh_relay_table_never_forwards_garbage(
        cells in prop::collection::vec((0u64..3, 0u64..3, prop::collection::vec(any::<u8>(), 0..300)), 1..60),
    ) {
        let now = Instant::now();
        let relays = common::Relays::new(1, 22);
        let mut table = relays.tables(22).pop().unwrap();
        for (link, circ, mut bytes) in cells {
            let action = table.handle_cell(now, CircuitRef { link, circ }, Channel::Control, &mut bytes);
            let forwarded = matches!(action, RelayAction::Forward { .. } | RelayAction::Exit { .. });
            prop_assert!(!forwarded, "{:?}", action);
            while table.poll_transmit().is_some() {}
            while table.poll_event().is_some() {}
        }
    }
}
