//! The performance scenario (Engine 2): relays, the network underneath,
//! clients, their traffic and the end-to-end transport. A separate TOML
//! file recognised by its top-level `engine = "performance"`; strict like
//! Engine 1's (unknown keys refused, values checked naming the field).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::SimError;
use crate::scenario::{
    Bandwidth, RelaySource, RelaySpec, at_least_one, check_generated, fraction, invalid,
    non_negative, positive, read_text, resolve_beside,
};

use super::units;

/// The value of the top-level `engine` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EngineName {
    /// Engine 2: network performance.
    Performance,
}

/// A whole performance scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerfScenario {
    /// Always `"performance"`.
    pub engine: EngineName,
    /// Simulated time.
    pub time: PerfTime,
    /// The relays (Engine 1's `[relays]` table; churn must be 0). A
    /// relay's weight is its capacity in KB/s (1000 bytes/s) each way.
    pub relays: RelaySpec,
    /// The network underneath.
    pub network: NetworkSpec,
    /// The clients.
    pub clients: PerfClients,
    /// What the clients do.
    pub traffic: TrafficSpec,
    /// The end-to-end transport inside circuits.
    pub transport: TransportSpec,
}

/// Simulated time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerfTime {
    /// Length of the run, seconds.
    pub seconds: f64,
}

/// The network: queues at every host and the topology.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    /// Each host's upstream and downstream queue, bytes (datagrams that
    /// find it full are dropped).
    pub queue_bytes: u64,
    /// Where hosts are and what joins them.
    pub topology: TopologySpec,
}

/// Where the topology comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TopologySpec {
    /// Locations placed at random in a square, latency from distance.
    Coordinates {
        /// Number of locations.
        nodes: u32,
        /// Latency between two hosts at one location (`"5 ms"`).
        min_latency: String,
        /// Latency across the square's diagonal.
        max_latency: String,
        /// Loss probability of every path, in [0, 1].
        packet_loss: f64,
        /// Clients' upstream bandwidth (`"20 Mbit"`).
        host_bandwidth_up: String,
        /// Clients' downstream bandwidth.
        host_bandwidth_down: String,
    },
    /// A Shadow-style GML graph.
    Gml {
        /// The file; relative to the scenario file's directory.
        path: PathBuf,
    },
}

/// The clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerfClients {
    /// Number of clients.
    pub count: u32,
    /// Each client starts at a uniform time in [0, this) seconds.
    pub start_within_seconds: f64,
}

/// What the clients do: each client runs one of three models, drawn with
/// these shares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrafficSpec {
    /// Share of clients browsing.
    pub web_share: f64,
    /// Share of clients downloading files back to back.
    pub bulk_share: f64,
    /// Share of clients sending a constant-rate flow.
    pub constant_share: f64,
    /// Browsing.
    pub web: WebSpec,
    /// Bulk downloads.
    pub bulk: BulkSpec,
    /// Constant-rate flows.
    pub constant: ConstantSpec,
}

/// Web-like request/response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebSpec {
    /// Request size, bytes (one segment).
    pub request_bytes: u32,
    /// Response size distribution, bytes.
    pub response_bytes: Bandwidth,
    /// Mean of the exponential pause after each response, seconds.
    pub think_seconds: f64,
}

/// Bulk downloads, as onionperf measures them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkSpec {
    /// File sizes, bytes; each download takes one uniformly.
    pub sizes: Vec<u64>,
    /// Pause after each download, seconds.
    pub pause_seconds: f64,
}

/// A constant-rate flow from client to exit (unreliable, like a call).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConstantSpec {
    /// Payload rate, bytes per second.
    pub bytes_per_second: u64,
    /// Packet size, bytes.
    pub packet_bytes: u32,
}

/// The end-to-end transport (see `transport.rs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransportSpec {
    /// Payload bytes per segment.
    pub segment_bytes: u32,
    /// Congestion window at the start, segments.
    pub initial_window: u32,
    /// Largest window (the receiver's buffer), segments.
    pub max_window: u32,
}

/// Largest segment: it and the transport header must fit the 1280-byte
/// tunnel MTU.
pub const MAX_SEGMENT_BYTES: u32 = 1200;
/// Smallest segment: bounds the segments of a transfer (and so the
/// receiver's record of them) to `MAX_TRANSFER / 100`.
pub const MIN_SEGMENT_BYTES: u32 = 100;

/// The commented example `trine-sim example --performance` prints.
pub const PERF_EXAMPLE: &str = r#"# trine-sim scenario (Engine 2: network performance).
# Every key is required; unknown keys are refused.
engine = "performance"

[time]
seconds = 120.0         # simulated time

[relays]                # as in Engine 1 (generated, or source = "tor" /
count = 60              # "trine-json" with path); weight = capacity in KB/s
guard_share = 0.5       # (1000 bytes/s) each way
exit_share = 0.3
subnets = 60
families = 0
family_size = 1

[relays.bandwidth]
kind = "lognormal"      # median e^8 ≈ 3000 KB/s
mu = 8.0
sigma = 0.8

[relays.churn]          # Engine 2 models no churn: both must be 0
join_per_day = 0.0
leave_per_day = 0.0

[network]
queue_bytes = 1000000   # each host's up and down queue; full: datagrams drop

[network.topology]
kind = "coordinates"    # locations at random in a square
nodes = 40
min_latency = "5 ms"    # one way, between hosts at one location
max_latency = "150 ms"  # one way, across the diagonal
packet_loss = 0.001     # every path
host_bandwidth_up = "20 Mbit"    # clients (relays use their weight)
host_bandwidth_down = "100 Mbit"
# or: kind = "gml", path = "graph.gml"  (Shadow's GML: node host_bandwidth_up
#     / host_bandwidth_down, edge latency / packet_loss; relative to this file)

[clients]
count = 40
start_within_seconds = 10.0   # start times uniform in [0, this)

[traffic]               # each client runs one model; shares sum to 1
web_share = 0.6
bulk_share = 0.3
constant_share = 0.1

[traffic.web]
request_bytes = 500
think_seconds = 5.0     # mean exponential pause after each page
[traffic.web.response_bytes]
kind = "lognormal"      # median e^11 ≈ 60 KB
mu = 11.0
sigma = 1.0

[traffic.bulk]
sizes = [51200, 1048576, 5242880]   # onionperf's 50 KiB, 1 MiB, 5 MiB
pause_seconds = 5.0

[traffic.constant]
bytes_per_second = 8000
packet_bytes = 200

[transport]             # window-based reliable flow inside the circuit
segment_bytes = 1200    # payload per DATA cell (100 to 1200)
initial_window = 10     # segments
max_window = 1000       # segments (receiver's buffer)
"#;

impl PerfScenario {
    /// Parses and checks a scenario.
    pub fn from_toml(text: &str) -> Result<Self, SimError> {
        let scenario: Self = toml::from_str(text)?;
        scenario.check()?;
        Ok(scenario)
    }

    /// Reads and checks the file at `path`; relative relay-import and
    /// graph paths are resolved against its directory and made absolute.
    pub fn from_file(path: &Path) -> Result<Self, SimError> {
        let mut scenario = Self::from_toml(&read_text(path)?)?;
        if let RelaySource::Imported(import) = &mut scenario.relays.source {
            import.path = resolve_beside(path, &import.path)?;
        }
        if let TopologySpec::Gml { path: graph } = &mut scenario.network.topology {
            *graph = resolve_beside(path, graph)?;
        }
        Ok(scenario)
    }

    /// The resolved scenario as TOML.
    pub fn to_toml(&self) -> Result<String, SimError> {
        Ok(toml::to_string(self)?)
    }

    /// Run length in nanoseconds.
    pub fn duration_ns(&self) -> u64 {
        (self.time.seconds * 1e9).round() as u64
    }

    /// Refuses values no run can use.
    pub fn check(&self) -> Result<(), SimError> {
        positive("time.seconds", self.time.seconds)?;
        if self.time.seconds > 86_400.0 {
            invalid("time.seconds", "at most one day (86400)")?;
        }
        if let RelaySource::Generated(generated) = &self.relays.source {
            check_generated(generated)?;
        }
        if self.relays.churn.join_per_day != 0.0 {
            invalid(
                "relays.churn.join_per_day",
                "Engine 2 models no churn: must be 0",
            )?;
        }
        if self.relays.churn.down_share != 0.0 {
            invalid(
                "relays.churn.down_share",
                "Engine 2 models no outages: must be 0",
            )?;
        }
        if self.relays.churn.leave_per_day != 0.0 {
            invalid(
                "relays.churn.leave_per_day",
                "Engine 2 models no churn: must be 0",
            )?;
        }
        if self.network.queue_bytes < 2 * 1500 {
            invalid("network.queue_bytes", "must hold at least two cells (3000)")?;
        }
        self.check_topology()?;
        at_least_one("clients.count", self.clients.count)?;
        non_negative(
            "clients.start_within_seconds",
            self.clients.start_within_seconds,
        )?;
        self.check_traffic()?;
        let transport = &self.transport;
        if !(MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES).contains(&transport.segment_bytes) {
            invalid("transport.segment_bytes", "must be 100 to 1200")?;
        }
        at_least_one("transport.initial_window", transport.initial_window)?;
        if transport.max_window < transport.initial_window {
            invalid("transport.max_window", "must be at least initial_window")?;
        }
        Ok(())
    }

    fn check_topology(&self) -> Result<(), SimError> {
        let TopologySpec::Coordinates {
            nodes,
            min_latency,
            max_latency,
            packet_loss,
            host_bandwidth_up,
            host_bandwidth_down,
        } = &self.network.topology
        else {
            return Ok(());
        };
        at_least_one("network.topology.nodes", *nodes)?;
        if *nodes as usize > super::graph::MAX_NODES {
            invalid("network.topology.nodes", "at most 2048")?;
        }
        let min = latency("network.topology.min_latency", min_latency)?;
        let max = latency("network.topology.max_latency", max_latency)?;
        if max < min {
            invalid(
                "network.topology.max_latency",
                "must be at least min_latency",
            )?;
        }
        fraction("network.topology.packet_loss", *packet_loss)?;
        if *packet_loss >= 1.0 {
            invalid("network.topology.packet_loss", "must be below 1")?;
        }
        bandwidth("network.topology.host_bandwidth_up", host_bandwidth_up)?;
        bandwidth("network.topology.host_bandwidth_down", host_bandwidth_down)?;
        Ok(())
    }

    fn check_traffic(&self) -> Result<(), SimError> {
        let traffic = &self.traffic;
        fraction("traffic.web_share", traffic.web_share)?;
        fraction("traffic.bulk_share", traffic.bulk_share)?;
        fraction("traffic.constant_share", traffic.constant_share)?;
        let total = traffic.web_share + traffic.bulk_share + traffic.constant_share;
        if (total - 1.0).abs() > 1e-9 {
            invalid(
                "traffic.web_share",
                "web_share + bulk_share + constant_share must be 1",
            )?;
        }
        let segment = self.transport.segment_bytes;
        at_least_one("traffic.web.request_bytes", traffic.web.request_bytes)?;
        if traffic.web.request_bytes > segment {
            invalid(
                "traffic.web.request_bytes",
                "must fit one segment (transport.segment_bytes)",
            )?;
        }
        non_negative("traffic.web.think_seconds", traffic.web.think_seconds)?;
        match traffic.web.response_bytes {
            Bandwidth::Lognormal { mu, sigma } => {
                if !mu.is_finite() || mu > 30.0 {
                    invalid(
                        "traffic.web.response_bytes.mu",
                        "must be finite and at most 30",
                    )?;
                }
                non_negative("traffic.web.response_bytes.sigma", sigma)?;
            }
            Bandwidth::Pareto { scale, shape } => {
                positive("traffic.web.response_bytes.scale", scale)?;
                positive("traffic.web.response_bytes.shape", shape)?;
            }
            Bandwidth::Constant { .. } => {}
        }
        if traffic.bulk.sizes.is_empty() {
            invalid("traffic.bulk.sizes", "needs at least one size")?;
        }
        if traffic
            .bulk
            .sizes
            .iter()
            .any(|&size| size == 0 || size > MAX_TRANSFER)
        {
            invalid("traffic.bulk.sizes", "each size must be 1 byte to 64 MiB")?;
        }
        non_negative("traffic.bulk.pause_seconds", traffic.bulk.pause_seconds)?;
        let constant = &traffic.constant;
        if constant.bytes_per_second == 0 {
            invalid("traffic.constant.bytes_per_second", "must be at least 1")?;
        }
        at_least_one("traffic.constant.packet_bytes", constant.packet_bytes)?;
        if constant.packet_bytes > segment {
            invalid(
                "traffic.constant.packet_bytes",
                "must fit one segment (transport.segment_bytes)",
            )?;
        }
        Ok(())
    }

    /// Host bandwidth of a coordinates topology (checked by [`Self::check`]).
    pub fn coordinate_bandwidth(
        up: &str,
        down: &str,
    ) -> Result<super::graph::HostBandwidth, SimError> {
        Ok(super::graph::HostBandwidth {
            up: bandwidth("network.topology.host_bandwidth_up", up)?,
            down: bandwidth("network.topology.host_bandwidth_down", down)?,
        })
    }
}

/// Largest transfer (64 MiB): bulk sizes above it are refused and drawn
/// web responses are capped at it, so a receiver's record of segments
/// stays under 84 KB.
pub const MAX_TRANSFER: u64 = 64 << 20;

/// A duration in ns from a scenario field.
pub fn latency(field: &'static str, text: &str) -> Result<u64, SimError> {
    units::duration_ns(text).map_err(|error| SimError::Invalid {
        field,
        reason: error.to_string(),
    })
}

fn bandwidth(field: &'static str, text: &str) -> Result<u64, SimError> {
    units::bandwidth(text).map_err(|error| SimError::Invalid {
        field,
        reason: error.to_string(),
    })
}

/// Whether a scenario text declares an engine (a top-level `engine` key):
/// such a file is a performance scenario; any other is Engine 1's. Text
/// that is not TOML is left to Engine 1's parser to report.
pub fn declares_engine(text: &str) -> bool {
    text.parse::<toml::Table>()
        .is_ok_and(|table| table.contains_key("engine"))
}
