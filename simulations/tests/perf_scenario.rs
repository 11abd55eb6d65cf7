//! Engine 2's scenario format: the commented example is valid, a file is
//! a performance scenario exactly when it declares `engine`, and unknown
//! keys and bad values are refused naming the field.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod perf_common;

use trine_sim::perf::{PERF_EXAMPLE, PerfScenario, declares_engine};
use trine_sim::{EXAMPLE, SimError};

#[test]
fn the_example_is_valid_and_declares_its_engine() {
    let scenario = PerfScenario::from_toml(PERF_EXAMPLE).unwrap();
    assert!(declares_engine(PERF_EXAMPLE));
    assert!(!declares_engine(EXAMPLE));
    let again = PerfScenario::from_toml(&scenario.to_toml().unwrap()).unwrap();
    assert_eq!(again, scenario);
}

fn refused(from: &str, to: &str) -> String {
    let text = perf_common::Spec::default().text();
    assert!(text.contains(from), "{from}");
    match PerfScenario::from_toml(&text.replacen(from, to, 1)) {
        Ok(_) => panic!("{to:?} accepted"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn bad_values_are_refused_naming_the_field() {
    let cases = [
        ("seconds = 20", "seconds = 0", "time.seconds"),
        (
            "join_per_day = 0.0",
            "join_per_day = 1.0",
            "relays.churn.join_per_day",
        ),
        (
            "queue_bytes = 1000000",
            "queue_bytes = 10",
            "network.queue_bytes",
        ),
        (
            "min_latency = \"5 ms\"",
            "min_latency = \"5 parsecs\"",
            "network.topology.min_latency",
        ),
        (
            "max_latency = \"60 ms\"",
            "max_latency = \"1 ms\"",
            "network.topology.max_latency",
        ),
        (
            "packet_loss = 0.0",
            "packet_loss = 1.0",
            "network.topology.packet_loss",
        ),
        (
            "\"20 Mbit\"",
            "\"lots\"",
            "network.topology.host_bandwidth_up",
        ),
        ("count = 10\n", "count = 0\n", "clients.count"),
        ("web_share = 0.5", "web_share = 0.7", "traffic.web_share"),
        (
            "request_bytes = 500",
            "request_bytes = 5000",
            "traffic.web.request_bytes",
        ),
        (
            "sizes = [51200, 1048576]",
            "sizes = []",
            "traffic.bulk.sizes",
        ),
        (
            "packet_bytes = 200",
            "packet_bytes = 0",
            "traffic.constant.packet_bytes",
        ),
        (
            "segment_bytes = 1200",
            "segment_bytes = 1400",
            "transport.segment_bytes",
        ),
        (
            "segment_bytes = 1200",
            "segment_bytes = 10",
            "transport.segment_bytes",
        ),
        (
            "sizes = [51200, 1048576]",
            "sizes = [1073741824]",
            "traffic.bulk.sizes",
        ),
        (
            "max_window = 1000",
            "max_window = 5",
            "transport.max_window",
        ),
        (
            "guard_share = 1.0",
            "guard_share = 2.0",
            "relays.guard_share",
        ),
    ];
    for (from, to, field) in cases {
        let message = refused(from, to);
        assert!(message.contains(field), "{to:?}: {message}");
    }
}

#[test]
fn unknown_keys_and_engines_are_refused_naming_them() {
    let message = refused("pause_seconds = 1.0", "pause_seconds = 1.0\nwarp = 9");
    assert!(message.contains("warp"), "{message}");
    let message = refused("[transport]", "[transport]\nsack = true");
    assert!(message.contains("sack"), "{message}");
    let message = refused("engine = \"performance\"", "engine = \"warp\"");
    assert!(message.contains("warp"), "{message}");
    let message = refused("kind = \"coordinates\"", "kind = \"hyperbolic\"");
    assert!(message.contains("hyperbolic"), "{message}");
}

#[test]
fn a_missing_graph_file_is_an_error_not_a_panic() {
    let dir = perf_common::scratch("missing-graph");
    let spec = perf_common::Spec {
        topology: "kind = \"gml\"\npath = \"no-such-graph.gml\"",
        ..Default::default()
    };
    let file = dir.join("perf.toml");
    std::fs::write(&file, spec.text()).unwrap();
    let scenario = PerfScenario::from_file(&file).unwrap();
    let error = trine_sim::perf::run_performance(&scenario, 1).unwrap_err();
    assert!(matches!(error, SimError::Io { ref path, .. } if path.ends_with("no-such-graph.gml")));
    std::fs::write(dir.join("no-such-graph.gml"), "graph [ node [ id 0 ] ]").unwrap();
    let error = trine_sim::perf::run_performance(&scenario, 1).unwrap_err();
    assert!(
        matches!(error, SimError::Graph { .. }) && error.to_string().contains("line 1"),
        "{error}"
    );
}
