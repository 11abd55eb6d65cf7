//! Engine 2's network graphs: Shadow-style GML parses into shortest-latency
//! paths with composed loss; malformed graphs are refused with a typed
//! error naming the line, and no input (truncated, garbage) panics.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use trine_sim::perf::graph::HostBandwidth;
use trine_sim::perf::{GraphError, Topology};

const MS: u64 = 1_000_000;

/// Three nodes in a line, 0 –10 ms– 1 –20 ms– 2, with a slow direct edge
/// 0 –50 ms– 2 and self-loops; comments and labels as Shadow writes them.
const LINE: &str = r#"# a test graph
graph [
  directed 0
  node [
    id 0
    label "first"
    host_bandwidth_up "10 Mbit"
    host_bandwidth_down "100 Mbit"
  ]
  node [ id 1 host_bandwidth_up "1 Gbit" host_bandwidth_down "1 Gbit" ]
  node [ id 2 host_bandwidth_up "2 MB" host_bandwidth_down "2 MB" ]
  edge [ source 0 target 1 latency "10 ms" packet_loss 0.1 ]
  edge [ source 1 target 2 latency "20 ms" packet_loss 0.2 jitter "0 ms" ]
  edge [ source 0 target 2 latency "50 ms" ]
  edge [ source 0 target 0 latency "1 ms" ]
  edge [ source 1 target 1 latency "1 ms" ]
  edge [ source 2 target 2 latency "2 ms" packet_loss 0.5 ]
]
"#;

#[test]
fn gml_graph_gives_shortest_paths_and_composed_loss() {
    let topology = Topology::from_gml(LINE).unwrap();
    assert_eq!(topology.nodes(), 3);
    assert_eq!(
        topology.bandwidth(0),
        HostBandwidth {
            up: 1_250_000,
            down: 12_500_000
        }
    );
    assert_eq!(topology.bandwidth(2).up, 2_000_000);
    let (latency, loss) = topology.path(0, 2);
    assert_eq!(latency, 30 * MS, "via node 1, not the 50 ms edge");
    assert!((loss - (1.0 - 0.9 * 0.8)).abs() < 1e-12, "{loss}");
    assert_eq!(topology.path(2, 0).0, 30 * MS, "undirected");
    assert_eq!(topology.path(1, 1), (MS, 0.0));
    assert_eq!(topology.path(2, 2), (2 * MS, 0.5));
}

#[test]
fn directed_graph_needs_a_path_each_way() {
    let one_way = r#"graph [ directed 1
      node [ id 5 host_bandwidth_up "1 Mbit" host_bandwidth_down "1 Mbit" ]
      node [ id 7 host_bandwidth_up "1 Mbit" host_bandwidth_down "1 Mbit" ]
      edge [ source 5 target 5 latency "1 ms" ] edge [ source 7 target 7 latency "1 ms" ]
      edge [ source 5 target 7 latency "3 ms" ] ]"#;
    assert_eq!(
        Topology::from_gml(one_way),
        Err(GraphError::Unreachable { from: 7, to: 5 })
    );
    let both = one_way.replace("] ]", "] edge [ source 7 target 5 latency \"4 ms\" ] ]");
    let topology = Topology::from_gml(&both).unwrap();
    assert_eq!(topology.path(0, 1).0, 3 * MS);
    assert_eq!(topology.path(1, 0).0, 4 * MS);
}

fn line_of(error: &GraphError) -> Option<usize> {
    match error {
        GraphError::Syntax { line, .. }
        | GraphError::Attribute { line, .. }
        | GraphError::NoGraph { line } => Some(*line),
        GraphError::TooLarge(_) | GraphError::Unreachable { .. } => None,
    }
}

#[test]
fn malformed_graphs_are_refused_naming_the_line() {
    let cases: [(&str, &str, usize); 9] = [
        ("latency \"10 ms\"", "latency \"10 parsecs\"", 12),
        ("latency \"20 ms\"", "latency 20", 13),
        ("source 0 target 1", "source 0 target 9", 12),
        ("packet_loss 0.1", "packet_loss 1.5", 12),
        ("jitter \"0 ms\"", "jitter \"3 ms\"", 13),
        // The string runs on to the next quote; what follows is no key.
        ("label \"first\"", "label \"first", 7),
        ("id 1 host", "id 0 host", 10),
        ("    host_bandwidth_down \"100 Mbit\"\n", "", 4),
        ("node [ id 2", "node [ id 2 $", 11),
    ];
    for (from, to, line) in cases {
        assert!(LINE.contains(from), "{from}");
        let text = LINE.replacen(from, to, 1);
        let error = Topology::from_gml(&text).unwrap_err();
        assert_eq!(line_of(&error), Some(line), "{to:?}: {error}");
        assert!(
            error.to_string().starts_with(&format!("line {line}:")),
            "{error}"
        );
    }
    let unclosed = LINE.trim_end().trim_end_matches(']');
    assert!(matches!(
        Topology::from_gml(unclosed),
        Err(GraphError::Syntax { line: 2, .. })
    ));
    assert!(matches!(
        Topology::from_gml("nodes [ ]"),
        Err(GraphError::NoGraph { .. })
    ));
    assert!(matches!(
        Topology::from_gml(""),
        Err(GraphError::NoGraph { .. })
    ));
    let open_string = format!("{LINE}\"");
    assert!(matches!(
        Topology::from_gml(&open_string),
        Err(GraphError::Syntax { line: 19, .. })
    ));
}

#[test]
fn truncations_and_garbage_never_panic() {
    for end in 0..LINE.len() {
        if LINE.is_char_boundary(end) {
            let _ = Topology::from_gml(&LINE[..end]);
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let alphabet = b"graph node edge id latency[]\"0123456789 -.#\n_xyzms";
    for _ in 0..2000 {
        let len = rng.gen_range(0..200);
        let text: String = (0..len)
            .map(|_| alphabet[rng.gen_range(0..alphabet.len())] as char)
            .collect();
        let _ = Topology::from_gml(&text);
    }
    let deep = "graph [ ".repeat(100);
    assert!(matches!(
        Topology::from_gml(&deep),
        Err(GraphError::Syntax { .. })
    ));
}

#[test]
fn generated_coordinates_respect_the_latency_range() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let bandwidth = HostBandwidth { up: 1, down: 2 };
    let topology = Topology::coordinates(50, 5 * MS, 100 * MS, 0.01, bandwidth, &mut rng);
    for a in 0..50 {
        assert_eq!(topology.path(a, a), (5 * MS, 0.01));
        for b in 0..50 {
            let (latency, loss) = topology.path(a, b);
            assert!((5 * MS..=100 * MS).contains(&latency));
            assert_eq!(latency, topology.path(b, a).0);
            assert_eq!(loss, 0.01);
        }
    }
}
