//! `authority.toml`: one authority's configuration, parsed strictly
//! (unknown keys refused, errors name the field), and the template
//! `trine-dir init` writes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;
use trine_directory::NetParams;
use trine_node::authorities::Authorities;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    listen: SocketAddr,
    #[serde(default = "default_key_dir")]
    key_dir: PathBuf,
    authorities: PathBuf,
    #[serde(default = "default_interval")]
    interval_secs: u64,
    #[serde(default)]
    params: ParamsFile,
}

fn default_key_dir() -> PathBuf {
    PathBuf::from("keys")
}

fn default_interval() -> u64 {
    3600
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ParamsFile {
    fast_min_bandwidth: u64,
    stable_min_uptime_secs: u64,
    guard_min_bandwidth: u64,
    guard_min_uptime_secs: u64,
    max_relays_per_ip: u32,
}

impl Default for ParamsFile {
    fn default() -> Self {
        let params = NetParams::default();
        Self {
            fast_min_bandwidth: params.fast_min_bandwidth,
            stable_min_uptime_secs: params.stable_min_uptime_secs,
            guard_min_bandwidth: params.guard_min_bandwidth,
            guard_min_uptime_secs: params.guard_min_uptime_secs,
            max_relays_per_ip: params.max_relays_per_ip,
        }
    }
}

/// A validated authority configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where this authority's QUIC endpoint listens.
    pub listen: SocketAddr,
    /// Directory with `identity.key` (relative to the config file).
    pub key_dir: PathBuf,
    /// Every authority, this one included, and the signing threshold.
    pub authorities: Authorities,
    /// Length of one consensus period, seconds.
    pub interval_secs: u64,
    /// The network parameters this authority votes for.
    pub params: NetParams,
}

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Self::parse(&text, path)
    }

    /// Validates configuration text; `path` is for messages and for
    /// resolving `key_dir`.
    pub fn parse(text: &str, path: &Path) -> anyhow::Result<Self> {
        let file: File = toml::from_str(text).map_err(|error| {
            anyhow::anyhow!(
                "{}: {}",
                path.display(),
                error.to_string().trim_end().replace('\n', " ")
            )
        })?;
        let field =
            |name: &str, problem: &str| anyhow::anyhow!("{}: `{name}` {problem}", path.display());
        if file.interval_secs < 4 {
            return Err(field("interval_secs", "must be at least 4"));
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |file: PathBuf| {
            if file.is_absolute() {
                file
            } else {
                base.join(file)
            }
        };
        let authorities = Authorities::load(&resolve(file.authorities))?;
        let params = NetParams {
            fast_min_bandwidth: file.params.fast_min_bandwidth,
            stable_min_uptime_secs: file.params.stable_min_uptime_secs,
            guard_min_bandwidth: file.params.guard_min_bandwidth,
            guard_min_uptime_secs: file.params.guard_min_uptime_secs,
            max_relays_per_ip: file.params.max_relays_per_ip,
        };
        params
            .validate()
            .map_err(|error| field("params", &error.to_string()))?;
        Ok(Self {
            listen: file.listen,
            key_dir: resolve(file.key_dir),
            authorities,
            interval_secs: file.interval_secs,
            params,
        })
    }
}

/// The commented `authority.toml` `trine-dir init` writes.
pub fn template(listen: SocketAddr) -> String {
    let params = NetParams::default();
    format!(
        r#"# trine-dir authority configuration. Unknown keys are refused.
# Run with `trine-dir run --config THIS_FILE`.

# Where this authority's QUIC endpoint listens (UDP). Relays upload their
# descriptors here; clients and mirrors fetch the consensus here.
listen = "{listen}"

# Directory holding identity.key, this authority's signing key.
key_dir = "keys"

# Length of a consensus period in seconds. Each period: vote at the middle,
# compute and sign the consensus at three quarters, publish at its start.
interval_secs = 3600

# The network's authorities file (every authority with its fingerprint and
# address, and the signing threshold), the same file relays and clients use.
# `trine-dir init` writes one listing this authority alone.
authorities = "authorities.toml"

# Flag thresholds this authority votes for (bandwidth in bytes/s).
[params]
fast_min_bandwidth = {}
stable_min_uptime_secs = {}
guard_min_bandwidth = {}
guard_min_uptime_secs = {}
max_relays_per_ip = {}
"#,
        params.fast_min_bandwidth,
        params.stable_min_uptime_secs,
        params.guard_min_bandwidth,
        params.guard_min_uptime_secs,
        params.max_relays_per_ip,
    )
}
