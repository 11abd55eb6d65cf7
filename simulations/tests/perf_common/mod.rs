//! Shared helpers of the Engine 2 tests: small performance scenarios.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    dead_code
)]

use std::path::PathBuf;

use trine_sim::perf::PerfScenario;

/// What a test scenario varies.
pub struct Spec<'a> {
    pub seconds: f64,
    pub relays: u32,
    /// `[relays.bandwidth]` body.
    pub relay_bandwidth: &'a str,
    /// `[network.topology]` body.
    pub topology: &'a str,
    pub queue_bytes: u64,
    pub clients: u32,
    pub start_within: f64,
    /// (web, bulk, constant) shares.
    pub shares: (f64, f64, f64),
    pub bulk_sizes: &'a str,
}

impl Default for Spec<'_> {
    fn default() -> Self {
        Self {
            seconds: 20.0,
            relays: 20,
            relay_bandwidth: "kind = \"constant\"\nvalue = 5000",
            topology: "kind = \"coordinates\"\nnodes = 10\nmin_latency = \"5 ms\"\n\
                       max_latency = \"60 ms\"\npacket_loss = 0.0\n\
                       host_bandwidth_up = \"20 Mbit\"\nhost_bandwidth_down = \"50 Mbit\"",
            queue_bytes: 1_000_000,
            clients: 10,
            start_within: 2.0,
            shares: (0.5, 0.4, 0.1),
            bulk_sizes: "[51200, 1048576]",
        }
    }
}

impl Spec<'_> {
    pub fn text(&self) -> String {
        let (web, bulk, constant) = self.shares;
        format!(
            r#"engine = "performance"
[time]
seconds = {seconds}
[relays]
count = {relays}
guard_share = 1.0
exit_share = 1.0
subnets = 10000
families = 0
family_size = 1
[relays.bandwidth]
{relay_bandwidth}
[relays.churn]
join_per_day = 0.0
leave_per_day = 0.0
[network]
queue_bytes = {queue}
[network.topology]
{topology}
[clients]
count = {clients}
start_within_seconds = {start}
[traffic]
web_share = {web}
bulk_share = {bulk}
constant_share = {constant}
[traffic.web]
request_bytes = 500
think_seconds = 1.0
[traffic.web.response_bytes]
kind = "lognormal"
mu = 10.0
sigma = 1.0
[traffic.bulk]
sizes = {sizes}
pause_seconds = 1.0
[traffic.constant]
bytes_per_second = 10000
packet_bytes = 200
[transport]
segment_bytes = 1200
initial_window = 10
max_window = 1000
"#,
            seconds = self.seconds,
            relays = self.relays,
            relay_bandwidth = self.relay_bandwidth,
            queue = self.queue_bytes,
            topology = self.topology,
            clients = self.clients,
            start = self.start_within,
            sizes = self.bulk_sizes,
        )
    }

    pub fn scenario(&self) -> PerfScenario {
        PerfScenario::from_toml(&self.text()).unwrap_or_else(|error| panic!("{error}"))
    }
}

/// A fresh scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("trine-sim-perf-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
