//! Engine 2, network performance: the shipped circuit state machines
//! (`ClientCircuit`, `RelayTable`) and path selection (`select_path`,
//! `GuardState`) over a modelled network with latency, bandwidth queues
//! and loss, in virtual time. What is modelled here rather than shipped —
//! the links, their queues, the end hosts' transport — is described in
//! `docs/simulator.md` with its limits.
//!
//! - `scenario.rs`: the strict TOML scenario (`engine = "performance"`)
//! - `units.rs`: `"100 Mbit"` and `"10 ms"` quantities
//! - `graph.rs`: GML graphs and generated coordinates, reduced to paths
//! - `net.rs`: the hosts' queued ports and the per-cell wire overhead
//! - `transport.rs`: the reliable flow inside circuits and its header
//! - `traffic.rs`: web, bulk and constant-rate clients
//! - `engine.rs`: the event loop, with `engine/nodes.rs` (relays and
//!   circuits) and `engine/flows.rs` (transfers and flows)
//! - `output.rs`: CSV and JSON results and figures of a run
//! - `aggregate.rs`: CDFs on grids shared by repeated seeds

pub mod aggregate;
pub mod engine;
pub mod graph;
pub mod net;
pub mod output;
pub mod scenario;
pub mod traffic;
pub mod transport;
pub mod units;

pub use engine::{PerfResult, run_performance, run_performance_with_progress};
pub use graph::{GraphError, Topology};
pub use scenario::{PERF_EXAMPLE, PerfScenario, declares_engine};
