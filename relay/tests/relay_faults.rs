//! Fault tests of `trine-relay`, each against real relay processes on
//! loopback with real QUIC links and real circuits built by
//! `trine-circuit`'s `ClientCircuit`:
//!
//! - a middle relay that dies (SIGKILL) takes its circuit down at both ends;
//! - a relay that is not who the path says is refused, by the extending
//!   relay and by `trine_link` itself;
//! - a CREATE flood runs into the configured limits while an existing
//!   circuit keeps answering.
//!
//! Outcomes are read from what the client sees and from each relay's
//! Prometheus metrics, polled against deadlines.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::time::{Duration, Instant};

use common::{Client, Relay, Scratch, dropped, start_relay, start_relay_with};
use rand::rngs::OsRng;
use rand::{Rng, RngCore};
use trine_circuit::cell::LinkCell;
use trine_circuit::client::{CircuitFailure, FailureCause};
use trine_circuit::{ClientCircuit, ClientConfig, ClientEvent, HopSpec, Reason};
use trine_link::{Endpoint, LinkConfig, LinkError};

const CIRCUITS_OPEN: &str = "trine_relay_circuits_open";
const LINKS_OPEN: &str = "trine_relay_links_open";
const CREATED: &str = "trine_relay_circuits_created_total";

fn path_of(relays: &[&Relay]) -> Vec<HopSpec> {
    relays.iter().map(|r| r.hop.clone()).collect()
}

/// The middle relay vanishes without a word (SIGKILL: no DESTROY, no QUIC
/// CONNECTION_CLOSE). Nothing on the wire says so; each neighbour learns
/// it when its link to the middle idles out, after the relays'
/// `link.quic_idle_timeout_secs` (set to 3 s here; 30 s by default).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_middle_relay_tears_the_circuit_down_at_both_ends() {
    let root = Scratch::new("kill-middle");
    let quick = [
        ("quic_idle_timeout_secs", "3"),
        ("quic_keep_alive_secs", "1"),
    ];
    let guard = start_relay_with(root.path(), 1, &quick);
    let mut middle = start_relay_with(root.path(), 2, &quick);
    let exit = start_relay_with(root.path(), 3, &quick);

    let (mut client, outcome) =
        Client::build("127.0.0.1:0", path_of(&[&guard, &middle, &exit])).await;
    assert_eq!(outcome, ClientEvent::Ready);
    assert!(
        client.ping(Duration::from_secs(5)).await,
        "no pong before the kill"
    );
    for relay in [&guard, &middle, &exit] {
        assert_eq!(relay.metric(CIRCUITS_OPEN), 1);
    }
    // Guard: the client's link and the one to the middle.
    assert_eq!(guard.metric(LINKS_OPEN), 2);
    assert_eq!(exit.metric(LINKS_OPEN), 1);

    middle.kill();
    let killed = Instant::now();
    let idle = Duration::from_secs(3);
    let bound = idle + Duration::from_secs(10);

    // A ping sent now cannot come back; the next thing the client hears is
    // the guard's TRUNCATED for hop 2.
    client.circuit.send_ping(Instant::now());
    let mut events = Vec::new();
    let failed = client
        .drive(bound, |_, event| {
            events.push(event.clone());
            matches!(event, ClientEvent::Failed(_))
        })
        .await;
    let detected = killed.elapsed();
    assert!(
        failed,
        "client saw no failure within {bound:?} of the kill: {events:?}"
    );
    assert_eq!(
        events,
        vec![ClientEvent::Failed(CircuitFailure {
            hop: 2,
            cause: FailureCause::Truncated(Reason::LinkClosed),
        })],
        "after the kill the client must hear exactly the truncation"
    );
    eprintln!("middle killed: client told after {detected:?} (link idle timeout {idle:?})");

    // The client's DESTROY (queued by the failure, flushed by drive) removes
    // the guard's half-circuit; the guard dropped its dead link.
    guard
        .wait_metric(
            CIRCUITS_OPEN,
            Duration::from_secs(5),
            "guard circuit",
            |v| v == 0,
        )
        .await;
    guard
        .wait_metric(LINKS_OPEN, Duration::from_secs(5), "guard links", |v| {
            v == 1
        })
        .await;
    // The exit learns on its own, when its link to the middle idles out.
    let left = bound.saturating_sub(killed.elapsed());
    exit.wait_metric(CIRCUITS_OPEN, left, "exit circuit", |v| v == 0)
        .await;
    exit.wait_metric(LINKS_OPEN, Duration::from_secs(5), "exit link", |v| v == 0)
        .await;
    eprintln!(
        "middle killed: exit circuit gone after {:?}",
        killed.elapsed()
    );
    assert_eq!(guard.metric("trine_relay_circuits_closed_total"), 1);
    assert_eq!(exit.metric("trine_relay_circuits_closed_total"), 1);
}

/// Hop 2 of the path names another relay's identity at relay 2's address.
/// The guard dials relay 2, which proves a different identity; the guard
/// refuses the link and tells the client the extension failed. Nothing
/// stays open anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_with_the_wrong_identity_is_refused() {
    let root = Scratch::new("wrong-id");
    let r1 = start_relay(root.path(), 1);
    let r2 = start_relay(root.path(), 2);
    let r3 = start_relay(root.path(), 3);
    // Another relay's real identity (initialised, not running).
    let other = common::init(
        &root.path().join("other"),
        "other",
        "127.0.0.1:9".parse().unwrap(),
    );

    let impostor = HopSpec {
        id: other,
        ..r2.hop.clone()
    };
    let path = vec![r1.hop.clone(), impostor, r3.hop.clone()];
    let (mut client, outcome) = Client::build("127.0.0.1:0", path).await;
    assert_eq!(
        outcome,
        ClientEvent::Failed(CircuitFailure {
            hop: 2,
            cause: FailureCause::Truncated(Reason::ConnectFailed),
        })
    );
    client.flush().await;

    r1.wait_metric(CIRCUITS_OPEN, Duration::from_secs(5), "r1 circuit", |v| {
        v == 0
    })
    .await;
    assert_eq!(r1.metric(CREATED), 1);
    assert_eq!(r1.metric("trine_relay_circuits_closed_total"), 1);
    // The guard's link attempt to relay 2 never became a link of its own.
    assert_eq!(r1.metric(LINKS_OPEN), 1);
    for relay in [&r2, &r3] {
        assert_eq!(relay.metric(CREATED), 0);
        assert_eq!(relay.metric(CIRCUITS_OPEN), 0);
    }
    r2.wait_metric(LINKS_OPEN, Duration::from_secs(5), "r2 links", |v| v == 0)
        .await;

    // trine_link alone: dialling relay 2 expecting relay 1's identity.
    let endpoint =
        Endpoint::client("127.0.0.1:0".parse().unwrap(), &LinkConfig::default()).unwrap();
    let address = r2.hop.addresses[0];
    match endpoint.connect(address, r1.hop.id).await {
        Err(LinkError::WrongIdentity {
            addr,
            expected,
            presented,
        }) => {
            assert_eq!(addr, address);
            assert_eq!(expected, r1.hop.id);
            assert_eq!(presented, r2.hop.id);
        }
        Err(other) => panic!("expected WrongIdentity, got {other}"),
        Ok(_) => panic!("a link to the wrong identity was accepted"),
    }
    // The same dial with the right identity works: the refusal was the key.
    endpoint.connect(address, r2.hop.id).await.unwrap();
}

/// Flood CREATEs per link in the flood.
const FLOOD_STREAMS_PER_LINK: usize = 4;
/// Links the flood opens, each from its own endpoint.
const FLOOD_LINKS: usize = 25;
/// Garbage cells written on the garbage link's streams.
const GARBAGE_CELLS: usize = 20;

/// What the flood put on the wire, and the streams it must keep open.
struct Flood {
    /// One stream per CREATE sent.
    creates: Vec<trine_link::CircuitStream>,
    garbage: usize,
    garbage_streams: Vec<trine_link::CircuitStream>,
    links: Vec<(Endpoint, trine_link::Link)>,
}

/// From 127.0.0.1: `FLOOD_LINKS` links each carrying the most circuits the
/// relay lets a link open, each starting with a real CREATE; then one more
/// link whose streams carry garbage cells, and garbage datagrams.
async fn flood(target: HopSpec) -> Flood {
    let mut links = Vec::new();
    let mut creates = Vec::new();
    for _ in 0..FLOOD_LINKS {
        let endpoint =
            Endpoint::client("127.0.0.1:0".parse().unwrap(), &LinkConfig::default()).unwrap();
        let link = endpoint
            .connect(target.addresses[0], target.id)
            .await
            .unwrap();
        for _ in 0..FLOOD_STREAMS_PER_LINK {
            let mut circuit = ClientCircuit::new(
                vec![target.clone()],
                &ClientConfig::default(),
                Instant::now(),
                &mut OsRng,
            )
            .unwrap();
            let create = circuit.poll_transmit().unwrap();
            let mut stream = link.open_circuit().await.unwrap();
            stream.write_cell(&create.bytes).await.unwrap();
            creates.push(stream);
        }
        links.push((endpoint, link));
    }
    let endpoint =
        Endpoint::client("127.0.0.1:0".parse().unwrap(), &LinkConfig::default()).unwrap();
    let link = endpoint
        .connect(target.addresses[0], target.id)
        .await
        .unwrap();
    let mut garbage = 0;
    let mut garbage_streams = Vec::new();
    for _ in 0..FLOOD_STREAMS_PER_LINK {
        let mut stream = link.open_circuit().await.unwrap();
        for _ in 0..GARBAGE_CELLS / FLOOD_STREAMS_PER_LINK {
            let mut cell = vec![0; OsRng.gen_range(1..300)];
            OsRng.fill_bytes(&mut cell);
            // Not a command byte, so every one is malformed (none is a
            // CREATE and none spends a CREATE token).
            cell[0] = 0xEE;
            stream.write_cell(&cell).await.unwrap();
            garbage += 1;
        }
        garbage_streams.push(stream);
    }
    for circ in 0..200u64 {
        let mut cell = vec![0; OsRng.gen_range(1..1000)];
        OsRng.fill_bytes(&mut cell);
        cell[0] = 0xEE;
        let _ = link.send_datagram(circ * 4 + 2, &cell);
    }
    links.push((endpoint, link));
    Flood {
        creates,
        garbage,
        garbage_streams,
        links,
    }
}

/// A relay with small limits gets a CREATE flood (real handshakes on many
/// links) and garbage, from one source address, while a circuit from
/// another address is open through it. The limits refuse the excess (rate
/// per source, then the relay's circuit cap), every CREATE is accounted
/// for (in the metrics and by what the flood's streams hear back), the
/// existing circuit keeps answering pings during and after, and new
/// circuits are refused while the relay is full and served once the flood
/// has gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_flood_hits_the_limits_without_harming_an_open_circuit() {
    const MAX_CIRCUITS: u64 = 8;
    const BURST: u64 = 12;
    let root = Scratch::new("flood");
    let guard = start_relay_with(
        root.path(),
        1,
        &[
            ("max_circuits", &MAX_CIRCUITS.to_string()),
            ("max_circuits_per_link", &FLOOD_STREAMS_PER_LINK.to_string()),
            ("creates_per_second_per_source", "1.0"),
            ("create_burst_per_source", &format!("{BURST}.0")),
        ],
    );
    let second = start_relay(root.path(), 2);
    let path = path_of(&[&guard, &second]);

    // The honest circuit comes from 127.0.0.2: another source address.
    let (mut honest, outcome) = Client::build("127.0.0.2:0", path.clone()).await;
    assert_eq!(outcome, ClientEvent::Ready);
    assert!(honest.ping(Duration::from_secs(5)).await);

    let flooding = tokio::spawn(flood(guard.hop.clone()));
    let mut pings = 0;
    let mut pongs = 0;
    while !flooding.is_finished() || pings < 5 {
        pings += 1;
        pongs += usize::from(honest.ping(Duration::from_secs(5)).await);
    }
    let flood = flooding.await.unwrap();
    // Pings are datagrams and share the guard's UDP socket with the flood's
    // garbage datagrams: allow one lost to a full socket buffer, no more.
    assert!(
        pongs + 1 >= pings,
        "{pongs}/{pings} pings answered during the flood"
    );

    // Every flood CREATE is accounted for: created, refused for the circuit
    // cap (DESTROY sent back), or refused by the per-source rate (silently).
    let flood_creates = flood.creates.len() as u64;
    let accounted = |relay: &Relay| {
        relay.metric(CREATED) - 1
            + relay.metric(&dropped("circuit_limit"))
            + relay.metric(&dropped("link_circuit_limit"))
            + relay.metric(&dropped("create_rate"))
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while accounted(&guard) < flood_creates {
        assert!(
            Instant::now() < deadline,
            "only {} of {flood_creates} CREATEs accounted for",
            accounted(&guard)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(accounted(&guard), flood_creates);
    let rate_refused = guard.metric(&dropped("create_rate"));
    let cap_refused = guard.metric(&dropped("circuit_limit"));
    // 127.0.0.1 had a burst of BURST tokens (plus ~1/s refill while the
    // flood ran); everything beyond that was refused before cryptography.
    assert!(
        rate_refused >= flood_creates - BURST - 5,
        "create_rate refusals: {rate_refused} of {flood_creates}"
    );
    // Of those let through, the circuit cap took the excess.
    assert!(cap_refused >= 1, "no circuit_limit refusal");
    assert_eq!(guard.metric(CIRCUITS_OPEN), MAX_CIRCUITS);
    assert_eq!(
        guard.metric(CREATED) - 1 + cap_refused + rate_refused,
        flood_creates
    );
    assert_eq!(guard.metric("trine_relay_handshakes_failed_total"), 0);
    guard
        .wait_metric(
            &dropped("malformed"),
            Duration::from_secs(5),
            "garbage cells",
            |v| v >= flood.garbage as u64,
        )
        .await;
    // Only the honest circuit got through to the second relay.
    assert_eq!(second.metric(CIRCUITS_OPEN), 1);

    // The flood's side: each CREATE let through was answered, CREATED or
    // DESTROY(ResourceLimit); rate-refused ones get no answer at all.
    let Flood {
        creates,
        garbage: _,
        garbage_streams,
        links,
    } = flood;
    let (answers_tx, mut answers) = tokio::sync::mpsc::unbounded_channel();
    let readers: Vec<_> = creates
        .into_iter()
        .map(|mut stream| {
            let answers = answers_tx.clone();
            tokio::spawn(async move {
                let mut cell = Vec::new();
                let read = stream.read_cell(&mut cell).await;
                let _ = answers.send((read.unwrap_or(false), cell));
                // Keep the stream (and its circuit) until the test drops it.
                std::future::pending::<()>().await;
            })
        })
        .collect();
    let created_by_flood = guard.metric(CREATED) - 1;
    let (mut created, mut refused) = (0, 0);
    for _ in 0..created_by_flood + cap_refused {
        let (ok, cell) = tokio::time::timeout(Duration::from_secs(5), answers.recv())
            .await
            .expect("a CREATE let through was never answered")
            .unwrap();
        assert!(ok, "flood stream ended instead of answering");
        match LinkCell::parse(&cell).unwrap() {
            LinkCell::Created(_) => created += 1,
            LinkCell::Destroy(Some(Reason::ResourceLimit)) => refused += 1,
            other => panic!("unexpected answer to a flood CREATE: {other:?}"),
        }
    }
    assert_eq!((created, refused), (created_by_flood, cap_refused));
    eprintln!(
        "flood: {flood_creates} CREATEs: {created} created, {refused} refused at the \
         circuit cap, {rate_refused} refused by rate; honest circuit: {pongs}/{pings} \
         pings answered during the flood"
    );

    // The open circuit is unharmed.
    for _ in 0..10 {
        assert!(
            honest.ping(Duration::from_secs(5)).await,
            "ping lost after the flood"
        );
    }

    // A new client from yet another address is refused while the relay is
    // full (DESTROY with ResourceLimit), and served once the flood is gone.
    let (_, refused) = Client::build("127.0.0.3:0", path.clone()).await;
    assert_eq!(
        refused,
        ClientEvent::Failed(CircuitFailure {
            hop: 1,
            cause: FailureCause::Destroyed(Some(Reason::ResourceLimit)),
        })
    );
    for reader in readers {
        reader.abort();
    }
    drop((garbage_streams, links));
    guard
        .wait_metric(
            CIRCUITS_OPEN,
            Duration::from_secs(5),
            "flood circuits",
            |v| v == 1,
        )
        .await;
    let (mut late, outcome) = Client::build("127.0.0.3:0", path).await;
    assert_eq!(outcome, ClientEvent::Ready);
    assert!(late.ping(Duration::from_secs(5)).await);
    assert!(honest.ping(Duration::from_secs(5)).await);
}

/// docs/protocol.md §3: CREATE goes on the circuit's stream. A CREATE
/// arriving as a datagram (for a circuit id that is no stream at all) must
/// not open a circuit (it could never be answered and would hold a slot
/// until the idle timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_sent_as_a_datagram_opens_no_circuit() {
    let root = Scratch::new("create-datagram");
    let relay = start_relay(root.path(), 1);
    let endpoint =
        Endpoint::client("127.0.0.1:0".parse().unwrap(), &LinkConfig::default()).unwrap();
    let link = endpoint
        .connect(relay.hop.addresses[0], relay.hop.id)
        .await
        .unwrap();
    let mut circuit = ClientCircuit::new(
        vec![relay.hop.clone()],
        &ClientConfig::default(),
        Instant::now(),
        &mut OsRng,
    )
    .unwrap();
    let create = circuit.poll_transmit().unwrap();
    // Wait until the relay has dealt with it one way or the other
    // (datagrams may be lost: resend until it is seen).
    let seen = || {
        relay.metric(CREATED)
            + relay.metric(&dropped("protocol"))
            + relay.metric(&dropped("malformed"))
            + relay.metric(&dropped("unknown_circuit"))
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while seen() == 0 {
        assert!(
            Instant::now() < deadline,
            "the CREATE datagram never arrived"
        );
        link.send_datagram(1000, &create.bytes).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(relay.metric(CREATED), 0);
    assert_eq!(relay.metric(CIRCUITS_OPEN), 0);
}
