//! End-to-end tests of trine-link over loopback: identity pinning, relay and
//! client certificates, circuit streams, tagged datagrams, size limits and
//! teardown.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use rand::SeedableRng;
use trine_circuit::IdentityKey;
use trine_link::{Endpoint, Link, LinkConfig, LinkError, MAX_CONTROL_CELL_LEN};

/// A 1280-byte inner packet plus onion overhead: relay header (1 + 8), layer
/// flag (1) and three layers of (16-byte AEAD tag + 1-byte flag).
const ONION_DATAGRAM: usize = 1280 + 9 + 1 + 3 * 17;

fn identity(seed: u64) -> IdentityKey {
    IdentityKey::generate(&mut rand_chacha::ChaCha20Rng::seed_from_u64(seed))
}

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Fails the test instead of hanging it.
async fn within<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .expect("timed out")
}

fn relay(seed: u64) -> (Endpoint, IdentityKey) {
    let key = identity(seed);
    let endpoint = Endpoint::relay(any_port(), &key, &LinkConfig::default()).unwrap();
    (endpoint, key)
}

/// Dials `to` from `from` expecting `expected` while `to` accepts; returns
/// the dialler's result and the acceptor's.
async fn dial(
    from: &Endpoint,
    to: &Endpoint,
    expected: trine_circuit::RelayId,
) -> (Result<Link, LinkError>, Result<Link, LinkError>) {
    let addr = to.local_addr().unwrap();
    within(async {
        tokio::join!(from.connect(addr, expected), async {
            to.accept().await.expect("endpoint closed").accept().await
        })
    })
    .await
}

/// A client linked to a relay: (client side, relay side).
async fn client_link() -> (Link, Link, Endpoint, Endpoint) {
    let (relay, key) = relay(1);
    let client = Endpoint::client(any_port(), &LinkConfig::default()).unwrap();
    let (dialled, accepted) = dial(&client, &relay, key.relay_id()).await;
    (dialled.unwrap(), accepted.unwrap(), client, relay)
}

#[tokio::test]
async fn client_dials_relay_and_circuit_carries_cells_both_ways() {
    let (client, relay, _c, _r) = client_link().await;
    assert_eq!(client.peer_identity(), Some(identity(1).relay_id()));

    let mut out = within(client.open_circuit()).await.unwrap();
    let big = vec![0xab; MAX_CONTROL_CELL_LEN];
    for cell in [&b"CREATE"[..], &[][..], &big[..]] {
        within(out.write_cell(cell)).await.unwrap();
    }
    let mut inc = within(relay.accept_circuit()).await.unwrap();
    assert_eq!(inc.id(), out.id());

    let mut buf = Vec::new();
    for cell in [&b"CREATE"[..], &[][..], &big[..]] {
        assert!(within(inc.read_cell(&mut buf)).await.unwrap());
        assert_eq!(buf, cell);
    }
    within(inc.write_cell(b"CREATED")).await.unwrap();
    assert!(within(out.read_cell(&mut buf)).await.unwrap());
    assert_eq!(buf, b"CREATED");

    // Split halves work from separate tasks.
    let (mut send, mut recv) = inc.split();
    let echo = tokio::spawn(async move {
        let mut buf = Vec::new();
        while recv.read_cell(&mut buf).await.unwrap() {
            send.write_cell(&buf).await.unwrap();
        }
        send.finish();
    });
    for i in 0..100u32 {
        within(out.write_cell(&i.to_be_bytes())).await.unwrap();
        assert!(within(out.read_cell(&mut buf)).await.unwrap());
        assert_eq!(buf, i.to_be_bytes());
    }
    out.finish();
    assert!(!within(out.read_cell(&mut buf)).await.unwrap());
    within(echo).await.unwrap();
}

#[tokio::test]
async fn datagrams_arrive_tagged_with_their_circuit() {
    let (client, relay, _c, _r) = client_link().await;
    let mut first = client.open_circuit().await.unwrap();
    let mut second = client.open_circuit().await.unwrap();
    first.write_cell(b"one").await.unwrap();
    second.write_cell(b"two").await.unwrap();
    let a = within(relay.accept_circuit()).await.unwrap();
    let b = within(relay.accept_circuit()).await.unwrap();
    assert_ne!(first.id(), second.id());
    assert_eq!((a.id(), b.id()), (first.id(), second.id()));

    client.send_datagram(first.id(), b"data for one").unwrap();
    let (id, cell) = within(relay.read_datagram()).await.unwrap();
    assert_eq!((id, &cell[..]), (first.id(), &b"data for one"[..]));

    client.send_datagram(second.id(), b"data for two").unwrap();
    let (id, cell) = within(relay.read_datagram()).await.unwrap();
    assert_eq!((id, &cell[..]), (second.id(), &b"data for two"[..]));

    // Backwards, and with an id that needs a long tag.
    relay.send_datagram(b.id(), b"back").unwrap();
    let (id, cell) = within(client.read_datagram()).await.unwrap();
    assert_eq!((id, &cell[..]), (second.id(), &b"back"[..]));
    relay.send_datagram(1 << 40, b"far").unwrap();
    let (id, cell) = within(client.read_datagram()).await.unwrap();
    assert_eq!((id, &cell[..]), (1 << 40, &b"far"[..]));
}

#[tokio::test]
async fn onion_sized_datagram_fits_and_oversized_is_refused_with_the_limit() {
    let (client, relay, _c, _r) = client_link().await;
    let mut circuit = client.open_circuit().await.unwrap();
    circuit.write_cell(b"open").await.unwrap();
    let id = within(relay.accept_circuit()).await.unwrap().id();

    let max = client.max_datagram_size().unwrap();
    assert!(max > ONION_DATAGRAM, "max datagram {max} too small");
    assert_eq!(client.max_cell_len(id), Some(max - 1));

    let cell = vec![7; 1340];
    client.send_datagram(id, &cell).unwrap();
    let (got_id, got) = within(relay.read_datagram()).await.unwrap();
    assert_eq!((got_id, got.len()), (id, 1340));

    let full = vec![7; max - 1];
    client.send_datagram(id, &full).unwrap();
    let (_, got) = within(relay.read_datagram()).await.unwrap();
    assert_eq!(got.len(), max - 1);

    match client.send_datagram(id, &vec![7; max]) {
        Err(LinkError::DatagramTooLarge { size, max: limit }) => {
            assert_eq!((size, limit), (max + 1, max));
        }
        other => panic!("expected DatagramTooLarge, got {other:?}"),
    }
    assert!(matches!(
        client.send_datagram(id, &[0; 4000]),
        Err(LinkError::DatagramTooLarge { size: 4001, .. })
    ));
    assert!(matches!(
        client.send_datagram(1 << 62, b"x"),
        Err(LinkError::CircuitIdOutOfRange(_))
    ));
}

#[tokio::test]
async fn wrong_expected_identity_fails_naming_both_fingerprints() {
    let (relay, key) = relay(1);
    let wanted = identity(2).relay_id();
    let client = Endpoint::client(any_port(), &LinkConfig::default()).unwrap();
    let (dialled, accepted) = dial(&client, &relay, wanted).await;
    let error = dialled.unwrap_err();
    match &error {
        LinkError::WrongIdentity {
            expected,
            presented,
            addr,
        } => {
            assert_eq!(*expected, wanted);
            assert_eq!(*presented, key.relay_id());
            assert_eq!(*addr, relay.local_addr().unwrap());
        }
        other => panic!("expected WrongIdentity, got {other:?}"),
    }
    let text = error.to_string();
    assert!(text.contains(&wanted.fingerprint()), "{text}");
    assert!(text.contains(&key.relay_id().fingerprint()), "{text}");
    assert!(accepted.is_err(), "the relay must not get a link either");
}

#[tokio::test]
async fn relay_dialling_relay_is_identified_and_client_is_anonymous() {
    let (a, a_key) = relay(1);
    let (b, b_key) = relay(2);
    let (dialled, accepted) = dial(&a, &b, b_key.relay_id()).await;
    assert_eq!(dialled.unwrap().peer_identity(), Some(b_key.relay_id()));
    assert_eq!(accepted.unwrap().peer_identity(), Some(a_key.relay_id()));
    assert_eq!(a.identity(), Some(a_key.relay_id()));

    let client = Endpoint::client(any_port(), &LinkConfig::default()).unwrap();
    assert_eq!(client.identity(), None);
    let (dialled, accepted) = dial(&client, &b, b_key.relay_id()).await;
    assert_eq!(dialled.unwrap().peer_identity(), Some(b_key.relay_id()));
    let accepted = accepted.unwrap();
    assert_eq!(accepted.peer_identity(), None);
    assert_eq!(
        accepted.remote_address(),
        client.local_addr().unwrap(),
        "acceptor sees the client's address"
    );
}

#[tokio::test]
async fn closing_a_circuit_is_seen_by_the_other_side() {
    let (client, relay, _c, _r) = client_link().await;
    let mut buf = Vec::new();

    // Finish: the peer reads the last cell, then a clean end.
    let mut out = client.open_circuit().await.unwrap();
    out.write_cell(b"last words").await.unwrap();
    out.finish();
    let mut inc = within(relay.accept_circuit()).await.unwrap();
    assert!(within(inc.read_cell(&mut buf)).await.unwrap());
    assert_eq!(buf, b"last words");
    assert!(!within(inc.read_cell(&mut buf)).await.unwrap());

    // Reset: the peer's read fails.
    let mut out = client.open_circuit().await.unwrap();
    out.write_cell(b"hello").await.unwrap();
    let mut inc = within(relay.accept_circuit()).await.unwrap();
    assert!(within(inc.read_cell(&mut buf)).await.unwrap());
    out.reset(7);
    let error = within(inc.read_cell(&mut buf)).await.unwrap_err();
    assert!(
        matches!(&error, LinkError::StreamRead { source: quinn::ReadError::Reset(code), .. }
            if code.into_inner() == 7),
        "{error:?}"
    );
    assert!(!error.is_link_lost());
    // ...and our own writes to the peer are refused once it stopped us.
    let error = loop {
        match within(inc.write_cell(b"anyone there?")).await {
            Ok(()) => tokio::time::sleep(Duration::from_millis(5)).await,
            Err(error) => break error,
        }
    };
    assert!(matches!(error, LinkError::StreamWrite { .. }), "{error:?}");

    // Drop: same as finish.
    let mut out = client.open_circuit().await.unwrap();
    out.write_cell(b"bye").await.unwrap();
    drop(out);
    let mut inc = within(relay.accept_circuit()).await.unwrap();
    assert!(within(inc.read_cell(&mut buf)).await.unwrap());
    assert!(!within(inc.read_cell(&mut buf)).await.unwrap());
}

#[tokio::test]
async fn closing_the_link_ends_every_circuit() {
    let (client, relay, _c, _r) = client_link().await;
    let mut out = client.open_circuit().await.unwrap();
    out.write_cell(b"hi").await.unwrap();
    let mut inc = within(relay.accept_circuit()).await.unwrap();
    let mut buf = Vec::new();
    assert!(within(inc.read_cell(&mut buf)).await.unwrap());

    client.close("shutting down");
    let error = within(inc.read_cell(&mut buf)).await.unwrap_err();
    assert!(error.is_link_lost(), "{error:?}");
    let error = within(relay.accept_circuit()).await.unwrap_err();
    assert!(error.is_link_lost(), "{error:?}");
    assert!(within(relay.closed()).await.is_link_lost());
    assert!(within(relay.read_datagram()).await.is_err());
}

#[tokio::test]
async fn oversized_control_cell_is_refused_before_sending() {
    let (client, _relay, _c, _r) = client_link().await;
    let mut out = client.open_circuit().await.unwrap();
    let error = out
        .write_cell(&vec![0; MAX_CONTROL_CELL_LEN + 1])
        .await
        .unwrap_err();
    assert!(
        matches!(error, LinkError::CellTooLarge { len, max, .. }
            if len == MAX_CONTROL_CELL_LEN + 1 && max == MAX_CONTROL_CELL_LEN),
        "{error:?}"
    );
}

#[tokio::test]
async fn many_circuits_share_one_link() {
    let (client, relay, _c, _r) = client_link().await;
    let server = tokio::spawn(async move {
        let mut tasks = Vec::new();
        for _ in 0..200 {
            let mut circuit = relay.accept_circuit().await.unwrap();
            tasks.push(tokio::spawn(async move {
                let mut buf = Vec::new();
                assert!(circuit.read_cell(&mut buf).await.unwrap());
                let mut reply = circuit.id().to_be_bytes().to_vec();
                reply.extend_from_slice(&buf);
                circuit.write_cell(&reply).await.unwrap();
                circuit.finish();
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    });
    let mut clients = Vec::new();
    for i in 0..200u32 {
        let link = client.clone();
        clients.push(tokio::spawn(async move {
            let mut circuit = link.open_circuit().await.unwrap();
            circuit.write_cell(&i.to_be_bytes()).await.unwrap();
            let mut buf = Vec::new();
            assert!(circuit.read_cell(&mut buf).await.unwrap());
            assert_eq!(buf[..8], circuit.id().to_be_bytes());
            assert_eq!(buf[8..], i.to_be_bytes());
            circuit.id()
        }));
    }
    let mut ids = Vec::new();
    for task in clients {
        ids.push(within(task).await.unwrap());
    }
    within(server).await.unwrap();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 200);
}

#[tokio::test]
async fn endpoint_reports_bad_configuration_and_addresses() {
    let bad = LinkConfig {
        keep_alive: Duration::from_secs(60),
        ..LinkConfig::default()
    };
    assert!(matches!(
        Endpoint::client(any_port(), &bad),
        Err(LinkError::InvalidConfig(_))
    ));
    let (relay, _) = relay(3);
    let addr = relay.local_addr().unwrap();
    assert_eq!(addr.ip(), any_port().ip());
    assert_ne!(addr.port(), 0);
    relay.close();
    assert!(within(relay.accept()).await.is_none());
}

#[tokio::test]
async fn request_response_exchanges_carry_large_messages_and_respect_limits() {
    use trine_link::message::{is_message_cell, read_message, write_message};
    let (client, relay_side, _c, _r) = client_link().await;
    let server = tokio::spawn(async move {
        for _ in 0..2 {
            let mut stream = relay_side.accept_circuit().await.unwrap();
            let mut first = Vec::new();
            assert!(stream.read_cell(&mut first).await.unwrap());
            assert!(is_message_cell(&first), "an exchange, not a circuit");
            let mut request = read_message(&mut stream, first, 1 << 20).await.unwrap();
            request.reverse();
            write_message(&mut stream, &request).await.unwrap();
        }
        // Dropping the last handle would close the link under the response.
        relay_side
    });
    // 100 KiB spans several cells each way.
    let request: Vec<u8> = (0..100 * 1024).map(|i| (i % 251) as u8).collect();
    let response = within(client.request(&request, 1 << 20)).await.unwrap();
    let mut expected = request.clone();
    expected.reverse();
    assert_eq!(response, expected);
    // The reader's limit holds.
    let refused = within(client.request(&request, 1000)).await;
    assert!(
        matches!(refused, Err(LinkError::MessageTooLarge { limit: 1000 })),
        "{refused:?}"
    );
    drop(within(server).await.unwrap());
}
