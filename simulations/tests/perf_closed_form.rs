//! Engine 2 against the model's closed forms, derived here: circuit build
//! time on an idle network is the handshake's round trips times the link
//! latency (plus serialisation), a bulk download takes at least its wire
//! bytes over the bottleneck and not much more, loss is counted and never
//! corrupts a completed download, and no relay is used beyond capacity.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod perf_common;

use perf_common::Spec;
use trine_sim::perf::net::CELL_OVERHEAD;
use trine_sim::perf::run_performance;
use trine_sim::perf::transport::HEADER_LEN;

/// One location whose hosts are 10 ms apart one way.
const LATENCY_S: f64 = 0.010;
/// The client's access link, both ways: 8 Mbit/s.
const CLIENT_RATE: f64 = 1_000_000.0;

/// An idle network: one client, relays at 10 MB/s, 10 ms between any two
/// hosts, no loss, queues far larger than any window.
fn idle(topology: &str) -> Spec<'_> {
    Spec {
        seconds: 30.0,
        relays: 12,
        relay_bandwidth: "kind = \"constant\"\nvalue = 10000",
        topology,
        queue_bytes: 4_000_000,
        clients: 1,
        start_within: 0.0,
        shares: (0.0, 1.0, 0.0),
        bulk_sizes: "[1048576]",
    }
}

/// The `[network.topology]` body naming a one-node GML graph whose
/// self-loop is 10 ms and whose hosts have 8 Mbit/s each way.
fn idle_graph(name: &str) -> String {
    let dir = perf_common::scratch(name);
    let path = dir.join("graph.gml");
    std::fs::write(
        &path,
        "graph [\n  directed 0\n  node [\n    id 0\n    host_bandwidth_up \"8 Mbit\"\n    \
         host_bandwidth_down \"8 Mbit\"\n  ]\n  edge [\n    source 0\n    target 0\n    \
         latency \"10 ms\"\n    packet_loss 0.0\n  ]\n]\n",
    )
    .unwrap();
    format!("kind = \"gml\"\npath = \"{}\"", path.display())
}

#[test]
fn idle_build_time_is_the_handshake_round_trips() {
    let topology = idle_graph("build");
    let result = run_performance(&idle(&topology).scenario(), 3).unwrap();
    let circuit = &result.circuits[0];
    let build = (circuit.ready.expect("circuit built") - circuit.started) as f64 / 1e9;
    // Telescoping: CREATE/CREATED with the guard (1 round trip client–
    // guard), EXTEND answered by the middle's CREATED (client–guard +
    // guard–middle), EXTEND answered by the exit's (client–guard +
    // guard–middle + middle–exit): 6 one-hop round trips, each 2 × 10 ms.
    let round_trips = 3 + 2 + 1;
    let lower = round_trips as f64 * 2.0 * LATENCY_S;
    // 12 cell crossings (2, 4 and 6 per step), each through two ports; a
    // control cell is under 512 bytes and no port is slower than 1 MB/s.
    let serialisation = 12.0 * 2.0 * (512 + CELL_OVERHEAD) as f64 / CLIENT_RATE;
    assert!(build >= lower, "build {build} s below {lower} s");
    assert!(
        build <= lower + serialisation,
        "build {build} s above {lower} + {serialisation} s"
    );
}

#[test]
fn idle_bulk_download_runs_at_the_bottleneck() {
    let topology = idle_graph("bulk");
    let result = run_performance(&idle(&topology).scenario(), 3).unwrap();
    assert!(
        result.drops.is_empty(),
        "idle network dropped {:?}",
        result.drops
    );
    let download = &result.downloads[0];
    let size = download.size;
    assert_eq!(size, 1_048_576);
    let time = (download.finished.expect("download completed") - download.started) as f64 / 1e9;
    assert_eq!(download.bytes, size);
    // Every segment crosses the client's 1 MB/s downstream port with its
    // transport header, the DATA cell's 10 header bytes and three onion
    // layers of 17 bytes, and the link overhead.
    let segments = size.div_ceil(1200);
    let per_segment = (HEADER_LEN + 10 + 3 * 17 + CELL_OVERHEAD) as f64;
    let wire = size as f64 + segments as f64 * per_segment;
    let lower = wire / CLIENT_RATE;
    assert!(time >= size as f64 / CLIENT_RATE);
    assert!(time >= lower, "download {time} s below {lower} s");
    // Not much more: one round trip client–exit (3 hops, 60 ms) for the
    // request and the first segment, plus the round trips slow start
    // takes to grow from 10 segments to the bandwidth-delay product (the
    // link is not kept busy before), plus one for ACK pacing at the end.
    let rtt = 3.0 * 2.0 * LATENCY_S;
    let bdp_segments = CLIENT_RATE * rtt / (1200.0 + per_segment);
    let slow_start = (bdp_segments / 10.0).log2().ceil().max(0.0);
    let upper = lower + (slow_start + 3.0) * rtt;
    assert!(time <= upper, "download {time} s above {upper} s");
    // Delayed ACKs: the client acknowledges every second in-order segment,
    // so each hop relays about 1.5 cells per response segment (a data cell
    // and half an ACK), not 2; the rest are build cells and requests.
    let segments: u64 = result
        .downloads
        .iter()
        .map(|d| d.bytes.div_ceil(1200))
        .sum();
    let busiest = result.relays.iter().map(|relay| relay.cells).max().unwrap();
    let per_segment = busiest as f64 / segments as f64;
    assert!(
        (1.5..1.55).contains(&per_segment),
        "{busiest} cells for {segments} segments"
    );
}

#[test]
fn loss_is_counted_and_completed_downloads_have_exactly_their_bytes() {
    let spec = Spec {
        seconds: 30.0,
        topology: "kind = \"coordinates\"\nnodes = 10\nmin_latency = \"5 ms\"\n\
                   max_latency = \"40 ms\"\npacket_loss = 0.02\n\
                   host_bandwidth_up = \"20 Mbit\"\nhost_bandwidth_down = \"50 Mbit\"",
        shares: (0.5, 0.5, 0.0),
        bulk_sizes: "[51200, 1048576]",
        ..Default::default()
    };
    let result = run_performance(&spec.scenario(), 4).unwrap();
    assert!(
        result.drops.get("link_loss").copied().unwrap_or(0) > 0,
        "{:?}",
        result.drops
    );
    let completed: Vec<_> = result
        .downloads
        .iter()
        .filter(|d| d.finished.is_some())
        .collect();
    assert!(
        completed.len() >= 10,
        "only {} downloads completed",
        completed.len()
    );
    for download in &completed {
        assert_eq!(download.bytes, download.size, "{download:?}");
    }
    assert!(
        completed.iter().any(|d| d.retransmissions > 0),
        "loss caused no retransmission"
    );
    for download in result.downloads.iter().filter(|d| d.finished.is_none()) {
        assert!(download.bytes < download.size, "{download:?}");
    }
}

#[test]
fn relay_utilisation_never_exceeds_capacity() {
    // Slow relays (200 KB/s) under clients that could pull far more.
    let spec = Spec {
        relays: 10,
        relay_bandwidth: "kind = \"constant\"\nvalue = 200",
        queue_bytes: 50_000,
        clients: 20,
        shares: (0.0, 1.0, 0.0),
        bulk_sizes: "[1048576]",
        ..Default::default()
    };
    let result = run_performance(&spec.scenario(), 2).unwrap();
    let seconds = result.duration as f64 / 1e9;
    let mut busiest: f64 = 0.0;
    for relay in &result.relays {
        assert!(relay.utilisation <= 1.0, "{relay:?}");
        assert!(
            relay.sent as f64 <= relay.rate as f64 * seconds,
            "{relay:?}"
        );
        busiest = busiest.max(relay.utilisation);
    }
    assert!(
        busiest > 0.5,
        "the load never filled a relay (max {busiest})"
    );
    assert!(
        result.drops.get("queue_full_up").copied().unwrap_or(0) > 0,
        "{:?}",
        result.drops
    );
}
