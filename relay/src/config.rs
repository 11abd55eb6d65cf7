//! `relay.toml`: the operator's configuration, parsed strictly (unknown keys
//! are errors) and validated into [`Config`], with errors that name the
//! field. Also the commented template `trine-relay init` writes.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use trine_circuit::RelayId;
use trine_node::authorities::Authorities;

use crate::exit::policy::{Cidr, PortRule, Protocols, reserved_networks};
use crate::extend::DialLimits;

pub use trine_node::config::ConfigError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    nickname: String,
    listen: SocketAddr,
    #[serde(default)]
    advertise: Vec<SocketAddr>,
    #[serde(default = "default_key_dir")]
    key_dir: PathBuf,
    #[serde(default)]
    exit: bool,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    bandwidth: Bandwidth,
    #[serde(default)]
    onion_key: OnionKey,
    #[serde(default)]
    metrics: Metrics,
    #[serde(default)]
    link: LinkFile,
    #[serde(default)]
    directory: DirectoryFile,
    #[serde(default)]
    extend: ExtendFile,
    #[serde(default)]
    circuits: CircuitsFile,
    #[serde(default)]
    exit_network: ExitNetwork,
    #[serde(default)]
    exit_policy: ExitPolicyFile,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct LinkFile {
    quic_idle_timeout_secs: u64,
    quic_keep_alive_secs: u64,
}

impl Default for LinkFile {
    fn default() -> Self {
        let link = trine_link::LinkConfig::default();
        Self {
            quic_idle_timeout_secs: link.idle_timeout.as_secs(),
            quic_keep_alive_secs: link.keep_alive.as_secs(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct DirectoryFile {
    authorities: String,
    publish_every_secs: u64,
}

impl Default for DirectoryFile {
    fn default() -> Self {
        Self {
            authorities: String::new(),
            publish_every_secs: 1800,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct CircuitsFile {
    trusted_relays: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ExtendFile {
    private_networks: Vec<String>,
    failed_dials_per_circuit: u32,
    failed_dials_per_link_burst: f64,
    failed_dials_per_link_per_sec: f64,
}

impl Default for ExtendFile {
    fn default() -> Self {
        let limits = DialLimits::default();
        Self {
            private_networks: Vec::new(),
            failed_dials_per_circuit: limits.per_circuit,
            failed_dials_per_link_burst: limits.per_link_burst,
            failed_dials_per_link_per_sec: limits.per_link_per_second,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ExitNetwork {
    tun_name: String,
    mtu: u16,
    pool_v4: String,
    pool_v6: String,
    dns_upstream: String,
    dns_upstream_private: bool,
}

impl Default for ExitNetwork {
    fn default() -> Self {
        Self {
            tun_name: "trine-exit".into(),
            mtu: 1280,
            pool_v4: "10.200.0.0/16".into(),
            pool_v6: "fd74:7265:7869::/64".into(),
            dns_upstream: String::new(),
            dns_upstream_private: false,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ExitPolicyFile {
    allow_networks: Vec<String>,
    ports: Vec<String>,
    protocols: Vec<String>,
}

impl Default for ExitPolicyFile {
    fn default() -> Self {
        Self {
            allow_networks: Vec::new(),
            ports: vec!["reject 25".into()],
            protocols: Protocols::DEFAULT_NAMES.map(String::from).to_vec(),
        }
    }
}

/// The networks a NAT pool may come from: private IPv4 (RFC 1918) and
/// unique-local IPv6. A pool elsewhere would take public addresses (or the
/// provider's shared ones) away from the internet the exit serves.
const POOL_V4_NETWORKS: [&str; 3] = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"];
const POOL_V6_NETWORKS: [&str; 1] = ["fc00::/7"];

fn default_key_dir() -> PathBuf {
    PathBuf::from("keys")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Limits {
    max_circuits: usize,
    max_circuits_per_link: usize,
    creates_per_second_per_source: f64,
    create_burst_per_source: f64,
    extend_timeout_secs: u64,
    idle_timeout_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_circuits: 16_384,
            max_circuits_per_link: 1_024,
            creates_per_second_per_source: 20.0,
            create_burst_per_source: 100.0,
            extend_timeout_secs: 10,
            idle_timeout_secs: 600,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Bandwidth {
    rate_bytes_per_sec: u64,
    burst_bytes: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct OnionKey {
    rotation_secs: u64,
    overlap_secs: u64,
}

impl Default for OnionKey {
    fn default() -> Self {
        Self {
            rotation_secs: 7 * 24 * 3600,
            overlap_secs: 7 * 24 * 3600,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Metrics {
    listen: Option<SocketAddr>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 9464))),
        }
    }
}

/// A validated relay configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Operator-chosen name, 1 to 19 ASCII letters and digits.
    pub nickname: String,
    /// Where the QUIC endpoint listens.
    pub listen: SocketAddr,
    /// Addresses published in the descriptor (default: `listen`).
    pub advertise: Vec<SocketAddr>,
    /// Directory holding the key files (relative paths are relative to the
    /// config file).
    pub key_dir: PathBuf,
    /// Whether this relay is an exit.
    pub exit: bool,
    /// Circuit limits for the protocol core.
    pub circuits: trine_circuit::RelayConfig,
    /// CREATE cells allowed per second from one source address.
    pub creates_per_second_per_source: f64,
    /// Burst of CREATE cells allowed from one source address.
    pub create_burst_per_source: f64,
    /// Bandwidth cap (bytes/s) over relayed cells; `None` = unlimited.
    pub bandwidth: Option<(u64, u64)>,
    /// How often the onion key is replaced.
    pub onion_rotation: Duration,
    /// How long the previous onion key stays accepted.
    pub onion_overlap: Duration,
    /// Where Prometheus metrics are served (always loopback), if anywhere.
    pub metrics: Option<SocketAddr>,
    /// How an exit reaches the internet (used only when `exit`).
    pub exit_settings: ExitSettings,
    /// A link with nothing heard for this long is dead (its circuits too).
    pub link_idle_timeout: Duration,
    /// Keep-alive interval on quiet links.
    pub link_keep_alive: Duration,
    /// The directory authorities to publish to and fetch from, and how
    /// often to republish; `None`: stay out of the directory.
    pub directory: Option<(Authorities, Duration)>,
    /// Where an EXTEND may make this relay dial.
    pub extend: ExtendSettings,
    /// Relays whose circuits may exit here although no consensus lists
    /// them (`peers.rs`): for networks without a directory.
    pub trusted_relays: Vec<RelayId>,
}

/// Where an EXTEND may make this relay dial (`extend.rs` decides).
#[derive(Debug, Clone)]
pub struct ExtendSettings {
    /// Networks dialed although not global unicast (test networks only).
    pub private_networks: Vec<Cidr>,
    /// Failed dials allowed per circuit and per client link.
    pub limits: DialLimits,
}

/// Exit-mode settings.
#[derive(Debug, Clone)]
pub struct ExitSettings {
    /// TUN device name.
    pub tun_name: String,
    /// TUN MTU: the largest packet an exit passes either way.
    pub mtu: u16,
    /// IPv4 NAT pool.
    pub pool_v4: Cidr,
    /// IPv6 NAT pool; `None` = no IPv6 exit traffic.
    pub pool_v6: Option<Cidr>,
    /// The resolver DNS queries go to; always set on an exit (`None` only
    /// on a relay that is not one).
    pub dns_upstream: Option<SocketAddr>,
    /// Reserved networks the operator allows anyway (never the exit's own
    /// addresses or its pools).
    pub allow_networks: Vec<Cidr>,
    /// Port rules, first match wins, accept when none matches.
    pub ports: Vec<PortRule>,
    /// IP protocols that may leave.
    pub protocols: Protocols,
}

impl Config {
    /// The addresses this relay advertises, as IPs (not `0.0.0.0` or
    /// `::`): its own even when no interface holds them (a cloud's 1:1
    /// NAT), so no client reaches them through the exit and no EXTEND
    /// makes it dial itself.
    pub fn advertised_ips(&self) -> Vec<IpAddr> {
        self.advertise
            .iter()
            .map(SocketAddr::ip)
            .filter(|ip| !ip.is_unspecified())
            .collect()
    }

    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Validates configuration text; `path` is for messages and for
    /// resolving a relative `key_dir`.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let file: File = toml::from_str(text).map_err(|error| ConfigError::Parse {
            path: path.to_path_buf(),
            message: error.to_string().trim_end().replace('\n', " "),
        })?;
        let invalid = |field: &'static str, problem: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            field,
            problem,
        };
        let nickname_ok = (1..=19).contains(&file.nickname.len())
            && file.nickname.bytes().all(|b| b.is_ascii_alphanumeric());
        if !nickname_ok {
            return Err(invalid(
                "nickname",
                "must be 1 to 19 ASCII letters or digits".into(),
            ));
        }
        if file.listen.port() == 0 {
            return Err(invalid("listen", "needs a port other than 0".into()));
        }
        if file
            .advertise
            .iter()
            .any(|a| a.ip().is_unspecified() || a.port() == 0)
        {
            return Err(invalid(
                "advertise",
                "addresses must be specific (not 0.0.0.0 or ::) with a port".into(),
            ));
        }
        let limits = &file.limits;
        if limits.max_circuits == 0 {
            return Err(invalid("limits.max_circuits", "must be at least 1".into()));
        }
        if limits.max_circuits_per_link == 0 || limits.max_circuits_per_link > limits.max_circuits {
            return Err(invalid(
                "limits.max_circuits_per_link",
                "must be between 1 and limits.max_circuits".into(),
            ));
        }
        if !(limits.creates_per_second_per_source > 0.0
            && limits.creates_per_second_per_source.is_finite())
        {
            return Err(invalid(
                "limits.creates_per_second_per_source",
                "must be a positive number".into(),
            ));
        }
        if !(limits.create_burst_per_source >= 1.0 && limits.create_burst_per_source.is_finite()) {
            return Err(invalid(
                "limits.create_burst_per_source",
                "must be at least 1".into(),
            ));
        }
        if limits.extend_timeout_secs == 0 || limits.idle_timeout_secs == 0 {
            return Err(invalid(
                "limits.extend_timeout_secs / limits.idle_timeout_secs",
                "must be at least 1 second".into(),
            ));
        }
        let bandwidth = match (
            file.bandwidth.rate_bytes_per_sec,
            file.bandwidth.burst_bytes,
        ) {
            (0, _) => None,
            (rate, burst) if burst < 65_536 => {
                return Err(invalid(
                    "bandwidth.burst_bytes",
                    format!("must be at least 65536 when a rate ({rate} B/s) is set"),
                ));
            }
            (rate, burst) => Some((rate, burst)),
        };
        if file.onion_key.rotation_secs < 3600 {
            return Err(invalid(
                "onion_key.rotation_secs",
                "must be at least 3600".into(),
            ));
        }
        if let Some(metrics) = file.metrics.listen {
            if !metrics.ip().is_loopback() {
                return Err(invalid(
                    "metrics.listen",
                    format!("{metrics} is not a loopback address; metrics are never public"),
                ));
            }
        }
        let advertise = if file.advertise.is_empty() {
            vec![file.listen]
        } else {
            file.advertise
        };
        let exit_settings = exit_settings(file.exit, &file.exit_network, &file.exit_policy)
            .map_err(|(field, problem)| invalid(field, problem))?;
        let link = &file.link;
        if link.quic_keep_alive_secs == 0
            || link.quic_keep_alive_secs >= link.quic_idle_timeout_secs
        {
            return Err(invalid(
                "link.quic_keep_alive_secs",
                "must be at least 1 and below link.quic_idle_timeout_secs".into(),
            ));
        }
        let directory = if file.directory.authorities.is_empty() {
            None
        } else {
            if file.directory.publish_every_secs < 10 {
                return Err(invalid(
                    "directory.publish_every_secs",
                    "must be at least 10".into(),
                ));
            }
            let listed = PathBuf::from(&file.directory.authorities);
            let listed = if listed.is_absolute() {
                listed
            } else {
                path.parent().unwrap_or(Path::new(".")).join(listed)
            };
            let authorities = Authorities::load(&listed)
                .map_err(|error| invalid("directory.authorities", error.to_string()))?;
            Some((
                authorities,
                Duration::from_secs(file.directory.publish_every_secs),
            ))
        };
        let extend =
            extend_settings(&file.extend).map_err(|(field, problem)| invalid(field, problem))?;
        let trusted_relays = file
            .circuits
            .trusted_relays
            .iter()
            .map(|text| {
                RelayId::from_hex(text).map_err(|_| {
                    invalid(
                        "circuits.trusted_relays",
                        format!("{text:?} is not a relay fingerprint (64 hex digits)"),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        let key_dir = if file.key_dir.is_absolute() {
            file.key_dir
        } else {
            path.parent().unwrap_or(Path::new(".")).join(file.key_dir)
        };
        Ok(Self {
            nickname: file.nickname,
            listen: file.listen,
            advertise,
            key_dir,
            exit: file.exit,
            circuits: trine_circuit::RelayConfig {
                max_circuits: limits.max_circuits,
                max_circuits_per_link: limits.max_circuits_per_link,
                extend_timeout: Duration::from_secs(limits.extend_timeout_secs),
                idle_timeout: Duration::from_secs(limits.idle_timeout_secs),
                exit: file.exit,
            },
            creates_per_second_per_source: limits.creates_per_second_per_source,
            create_burst_per_source: limits.create_burst_per_source,
            bandwidth,
            onion_rotation: Duration::from_secs(file.onion_key.rotation_secs),
            onion_overlap: Duration::from_secs(file.onion_key.overlap_secs),
            metrics: file.metrics.listen,
            exit_settings,
            link_idle_timeout: Duration::from_secs(file.link.quic_idle_timeout_secs),
            link_keep_alive: Duration::from_secs(file.link.quic_keep_alive_secs),
            directory,
            extend,
            trusted_relays,
        })
    }
}

/// The `[extend]` section, validated.
fn extend_settings(file: &ExtendFile) -> Result<ExtendSettings, (&'static str, String)> {
    let private_networks = file
        .private_networks
        .iter()
        .map(|text| text.parse())
        .collect::<Result<_, _>>()
        .map_err(|problem| ("extend.private_networks", problem))?;
    if file.failed_dials_per_circuit == 0 {
        return Err((
            "extend.failed_dials_per_circuit",
            "must be at least 1".into(),
        ));
    }
    let burst = file.failed_dials_per_link_burst;
    if !(burst >= 1.0 && burst.is_finite()) {
        return Err((
            "extend.failed_dials_per_link_burst",
            "must be at least 1".into(),
        ));
    }
    let rate = file.failed_dials_per_link_per_sec;
    if !(rate > 0.0 && rate.is_finite()) {
        return Err((
            "extend.failed_dials_per_link_per_sec",
            "must be a positive number".into(),
        ));
    }
    Ok(ExtendSettings {
        private_networks,
        limits: DialLimits {
            per_circuit: file.failed_dials_per_circuit,
            per_link_burst: burst,
            per_link_per_second: rate,
        },
    })
}

/// The exit settings of the file; an exit must name its DNS resolver.
fn exit_settings(
    exit: bool,
    network: &ExitNetwork,
    policy: &ExitPolicyFile,
) -> Result<ExitSettings, (&'static str, String)> {
    let name_ok = (1..=15).contains(&network.tun_name.len())
        && network
            .tun_name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !name_ok {
        return Err((
            "exit_network.tun_name",
            "must be 1 to 15 letters, digits, - or _".into(),
        ));
    }
    if !(576..=9000).contains(&network.mtu) {
        return Err(("exit_network.mtu", "must be between 576 and 9000".into()));
    }
    let pool_v4: Cidr = network
        .pool_v4
        .parse()
        .map_err(|problem| ("exit_network.pool_v4", problem))?;
    if !pool_v4.addr.is_ipv4() || !(8..=29).contains(&pool_v4.prefix) {
        return Err((
            "exit_network.pool_v4",
            "must be an IPv4 prefix from /8 to /29".into(),
        ));
    }
    if !inside_any(pool_v4, &POOL_V4_NETWORKS) {
        return Err((
            "exit_network.pool_v4",
            format!(
                "{pool_v4} is not private: it must lie in 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16"
            ),
        ));
    }
    let pool_v6 = if network.pool_v6.is_empty() {
        None
    } else {
        let pool: Cidr = network
            .pool_v6
            .parse()
            .map_err(|problem| ("exit_network.pool_v6", problem))?;
        if pool.addr.is_ipv4() || !(48..=120).contains(&pool.prefix) {
            return Err((
                "exit_network.pool_v6",
                "must be an IPv6 prefix from /48 to /120, or \"\" for no IPv6".into(),
            ));
        }
        if !inside_any(pool, &POOL_V6_NETWORKS) {
            return Err((
                "exit_network.pool_v6",
                format!("{pool} is not unique-local: it must lie in fc00::/7"),
            ));
        }
        Some(pool)
    };
    let dns_upstream = if network.dns_upstream.is_empty() {
        if exit {
            return Err((
                "exit_network.dns_upstream",
                "an exit must name the resolver its clients' DNS queries go to, e.g. \
                 \"127.0.0.1:53\" (a recursive resolver of your own) or \"9.9.9.9:53\"; \
                 see docs/operating-a-relay.md"
                    .into(),
            ));
        }
        None
    } else {
        let parsed = network
            .dns_upstream
            .parse::<SocketAddr>()
            .or_else(|_| {
                network
                    .dns_upstream
                    .parse::<std::net::IpAddr>()
                    .map(|ip| SocketAddr::new(ip, 53))
            })
            .map_err(|_| {
                (
                    "exit_network.dns_upstream",
                    format!("`{}` is not an address", network.dns_upstream),
                )
            })?;
        if !network.dns_upstream_private && !upstream_may_be(parsed.ip()) {
            return Err((
                "exit_network.dns_upstream",
                format!(
                    "{} is in a reserved network: a resolver there (a systemd-resolved stub, a \
                     cloud's resolver) answers names private to this host or its network; use \
                     127.0.0.1 or ::1 (a resolver of your own) or a public one, or set \
                     exit_network.dns_upstream_private = true if it answers only public names",
                    parsed.ip()
                ),
            ));
        }
        Some(parsed)
    };
    let allow_networks = policy
        .allow_networks
        .iter()
        .map(|text| text.parse())
        .collect::<Result<_, _>>()
        .map_err(|problem| ("exit_policy.allow_networks", problem))?;
    let ports = policy
        .ports
        .iter()
        .map(|text| text.parse())
        .collect::<Result<_, _>>()
        .map_err(|problem| ("exit_policy.ports", problem))?;
    let protocols = Protocols::parse(&policy.protocols)
        .map_err(|problem| ("exit_policy.protocols", problem))?;
    Ok(ExitSettings {
        tun_name: network.tun_name.clone(),
        mtu: network.mtu,
        pool_v4,
        pool_v6,
        dns_upstream,
        allow_networks,
        ports,
        protocols,
    })
}

/// Whether `dns_upstream` may be an exit's upstream resolver without the
/// operator's say-so: a global address, or 127.0.0.1 or ::1 (a resolver
/// of the operator's own on this host).
fn upstream_may_be(dns_upstream: IpAddr) -> bool {
    let loopback_resolver: [IpAddr; 2] = [
        std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::Ipv6Addr::LOCALHOST.into(),
    ];
    loopback_resolver.contains(&dns_upstream)
        || !reserved_networks()
            .iter()
            .any(|network| network.contains(dns_upstream))
}

/// Whether `pool` lies wholly inside one of `networks`.
fn inside_any(pool: Cidr, networks: &[&str]) -> bool {
    networks
        .iter()
        .filter_map(|text| text.parse::<Cidr>().ok())
        .any(|net| net.prefix <= pool.prefix && net.contains(pool.addr))
}

/// The resolver `trine-relay init --exit` writes: Quad9, a non-profit that
/// keeps no client addresses, so that a new exit runs; the operator is
/// told to prefer a resolver of their own (docs/operating-a-relay.md).
const DEFAULT_DNS_UPSTREAM: &str = "9.9.9.9:53";

/// The commented `relay.toml` written by `trine-relay init`.
pub fn template(nickname: &str, listen: SocketAddr, exit: bool) -> String {
    let dns_upstream = if exit { DEFAULT_DNS_UPSTREAM } else { "" };
    format!(
        r#"# trine-relay configuration. Every key is documented here; unknown keys are
# refused. Start with `trine-relay run --config THIS_FILE`.

# Public name of this relay: 1-19 ASCII letters or digits.
nickname = "{nickname}"

# Where the QUIC endpoint listens (UDP).
listen = "{listen}"

# Addresses published to the directory; defaults to `listen`. Set this when
# `listen` is 0.0.0.0 or behind NAT, e.g. ["203.0.113.7:9443"].
# advertise = []

# Directory with identity.key and onion keys (relative to this file).
key_dir = "keys"

# Carry clients' traffic out to the internet. Exits need a TUN device.
exit = {exit}

[limits]
max_circuits = 16384              # circuits through this relay
max_circuits_per_link = 1024      # circuits one connecting node may hold
creates_per_second_per_source = 20.0
create_burst_per_source = 100.0
extend_timeout_secs = 10          # time for the next relay to answer an EXTEND
idle_timeout_secs = 600           # circuits silent this long are destroyed

[bandwidth]
# Cap on relayed traffic, token bucket. 0 = unlimited.
rate_bytes_per_sec = 0
burst_bytes = 0

[onion_key]
rotation_secs = 604800            # make a new onion key weekly
overlap_secs = 604800             # keep accepting the previous one this long

[metrics]
# Prometheus text format; loopback addresses only. Remove the line to disable.
listen = "127.0.0.1:9464"

[link]
# A QUIC link silent this long is dead: its circuits are torn down (and the
# client told). Keep-alives keep quiet links from looking dead.
quic_idle_timeout_secs = 30
quic_keep_alive_secs = 10

[directory]
# The network's authorities file (fingerprints, addresses, threshold). The
# relay publishes its descriptor to them and mirrors their consensus.
# "" = stay out of the directory (a private relay).
authorities = ""
publish_every_secs = 1800         # republish this often (and on key rotation)

[extend]
# An EXTEND asks this relay to dial the next relay of a client's circuit.
# Only global unicast addresses that are not this relay's own (listen,
# advertise, its interfaces) are dialed and, with `[directory] authorities`
# set, only where the consensus held lists the named relay. Networks listed
# here are dialed although not global (loopback, private, 198.18.0.0/15,
# ...): for test networks only; a public relay leaves this empty.
private_networks = []
failed_dials_per_circuit = 4      # dials that may fail on one circuit
failed_dials_per_link_burst = 8.0 # ...for one client link at once,
failed_dials_per_link_per_sec = 0.5 # refilled this fast

[circuits]
# An exit carries traffic out only for circuits whose previous hop is a
# relay: one the consensus held lists, connecting from an address listed
# for it. Relays named here (fingerprints) count as relays without that:
# for test networks without a directory. A public relay leaves this empty.
trusted_relays = []

# Used only when exit = true. The exit runs as root: it creates a TUN
# device, turns on IP forwarding and installs the nftables table
# `inet trine_exit` (removed again on stop). Each circuit gets its own
# address from the pools; the kernel masquerades them behind this host's.
[exit_network]
tun_name = "trine-exit"
mtu = 1280                        # largest packet passed either way
# Pools must be private (10/8, 172.16/12, 192.168/16) and unique-local
# (fc00::/7); clients never reach pool addresses.
pool_v4 = "10.200.0.0/16"
pool_v6 = "fd74:7265:7869::/64"   # "" = no IPv6 exit traffic. With IPv6, the
                                  # exit enables forwarding: hosts configured
                                  # by router advertisements need accept_ra=2.
# The resolver clients' DNS queries go to (ADDRESS or ADDRESS:PORT). An exit
# must name one; `init --exit` writes Quad9 so a new exit runs. Better is a
# recursive resolver of your own on this host (e.g. unbound on
# "127.0.0.1:53"): then no single company sees every exit's lookups. Not
# the host's /etc/resolv.conf resolver: cloud resolvers answer private
# zones. Either way, queries for private reverse zones and local names
# (.local, .internal, .lan, this host's name, ...) are refused, and answers
# pointing at reserved addresses reach clients as SERVFAIL. Clients never
# reach this address themselves (it is refused like this host's own).
dns_upstream = "{dns_upstream}"
# An upstream in a reserved network other than 127.0.0.1 and ::1 (e.g.
# systemd-resolved's 127.0.0.53, a cloud's 169.254.169.253) is refused:
# such resolvers answer the host's and the provider's private names. Set
# this to true only for one of your own that answers public names alone.
dns_upstream_private = false

[exit_policy]
# Loopback, private, link-local (incl. 169.254.169.254), CGNAT, multicast,
# documentation and other special-purpose ranges are refused, except
# networks listed here. This host's own addresses (on its interfaces and in
# `advertise`) and the pools are refused whatever is listed here.
allow_networks = []
# Destination ports of TCP, UDP (and SCTP, DCCP, UDP-Lite when allowed
# below): first matching rule wins; no match = accept.
ports = ["reject 25"]
# IP protocols that may leave: names (tcp, udp, icmp = ICMP and ICMPv6,
# sctp, dccp, udplite, gre, esp, ah, ipip, ipv6) or numbers 0-255. Anything
# else (GRE, ESP, IP-in-IP tunnels, ...) is refused, whatever `ports` says.
protocols = ["tcp", "udp", "icmp"]
"#
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/trine/relay.toml"))
    }

    fn exit_template() -> String {
        template("relay1", "198.18.0.1:9443".parse().unwrap(), true)
    }

    #[test]
    fn template_parses_with_defaults() {
        let config = parse(&exit_template()).unwrap();
        assert_eq!(config.nickname, "relay1");
        assert!(config.exit && config.circuits.exit);
        assert_eq!(config.advertise, vec![config.listen]);
        assert!(config.extend.private_networks.is_empty());
        assert_eq!(config.extend.limits, crate::extend::DialLimits::default());
        assert_eq!(config.key_dir, Path::new("/etc/trine/keys"));
        assert_eq!(config.metrics, Some("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(config.bandwidth, None);
        let exit = &config.exit_settings;
        assert_eq!(exit.dns_upstream, Some("9.9.9.9:53".parse().unwrap()));
        assert_eq!(exit.protocols, Protocols::DEFAULT);
        assert_eq!(config.advertised_ips(), vec![config.listen.ip()]);
        let relay = parse(&template("relay2", "0.0.0.0:9443".parse().unwrap(), false)).unwrap();
        assert_eq!(relay.exit_settings.dns_upstream, None);
        assert!(relay.advertised_ips().is_empty(), "0.0.0.0 is nobody's");
    }

    #[test]
    fn trusted_relays_are_fingerprints() {
        let id = "ab".repeat(32);
        let text = exit_template().replace(
            "trusted_relays = []",
            &format!("trusted_relays = [\"{id}\"]"),
        );
        assert_eq!(
            parse(&text).unwrap().trusted_relays,
            vec![RelayId::from_hex(&id).unwrap()]
        );
        assert!(parse(&exit_template()).unwrap().trusted_relays.is_empty());
        let text = exit_template().replace("trusted_relays = []", "trusted_relays = [\"abc\"]");
        let message = parse(&text).unwrap_err().to_string();
        assert!(
            message.contains("circuits.trusted_relays") && message.contains("\"abc\""),
            "{message}"
        );
    }

    #[test]
    fn an_exit_must_name_its_dns_resolver() {
        let text = exit_template().replace("dns_upstream = \"9.9.9.9:53\"", "dns_upstream = \"\"");
        let message = parse(&text).unwrap_err().to_string();
        assert!(message.contains("exit_network.dns_upstream"), "{message}");
        assert!(message.contains("must name the resolver"), "{message}");
    }

    #[test]
    fn a_reserved_dns_upstream_needs_the_operators_say_so() {
        let with = |upstream: &str, private: bool| {
            exit_template().replace("9.9.9.9:53", upstream).replace(
                "dns_upstream_private = false",
                &format!("dns_upstream_private = {private}"),
            )
        };
        for upstream in [
            "127.0.0.53:53",
            "127.0.0.54",
            "169.254.169.253:53",
            "168.63.129.16:53",
            "10.0.0.2:53",
            "[fd00::53]:53",
            "[::ffff:127.0.0.1]:53",
        ] {
            let message = parse(&with(upstream, false)).unwrap_err().to_string();
            assert!(message.contains("exit_network.dns_upstream"), "{message}");
            assert!(
                message.contains("exit_network.dns_upstream_private = true"),
                "{message}"
            );
            let config = parse(&with(upstream, true)).unwrap();
            assert!(config.exit_settings.dns_upstream.is_some(), "{upstream}");
        }
        for upstream in ["127.0.0.1:53", "[::1]:53", "9.9.9.9:53", "198.18.0.4:53"] {
            assert!(parse(&with(upstream, false)).is_ok(), "{upstream}");
        }
    }

    #[test]
    fn advertised_addresses_are_the_exits_own() {
        let text = exit_template()
            .replace(
                "dns_upstream = \"9.9.9.9:53\"",
                "dns_upstream = \"[2001:4860::8888]:53\"",
            )
            .replace(
                "# advertise = []",
                "advertise = [\"198.51.100.7:9443\", \"[2001:db8::7]:9443\"]",
            );
        let config = parse(&text).unwrap();
        assert_eq!(
            config.advertised_ips(),
            vec![
                "198.51.100.7".parse::<IpAddr>().unwrap(),
                "2001:db8::7".parse().unwrap()
            ]
        );
        assert_eq!(
            config.exit_settings.dns_upstream,
            Some("[2001:4860::8888]:53".parse().unwrap())
        );
    }

    #[test]
    fn pools_must_be_private_and_protocols_known() {
        let head = "nickname = \"r\"\nlisten = \"127.0.0.1:1\"\nexit = true\n[exit_network]\n";
        let exit = format!("{head}dns_upstream = \"9.9.9.9\"\n");
        let cases = [
            (
                "pool_v4 = \"100.64.0.0/16\"",
                "exit_network.pool_v4",
                "not private",
            ),
            (
                "pool_v4 = \"198.18.0.0/16\"",
                "exit_network.pool_v4",
                "not private",
            ),
            (
                "pool_v4 = \"8.0.0.0/8\"",
                "exit_network.pool_v4",
                "not private",
            ),
            (
                "pool_v4 = \"10.0.0.0/7\"",
                "exit_network.pool_v4",
                "/8 to /29",
            ),
            (
                "pool_v6 = \"2001:db8::/64\"",
                "exit_network.pool_v6",
                "unique-local",
            ),
            (
                "pool_v6 = \"fe80::/64\"",
                "exit_network.pool_v6",
                "unique-local",
            ),
            (
                "dns_upstream = \"resolver\"",
                "exit_network.dns_upstream",
                "not an address",
            ),
            (
                "[exit_policy]\nprotocols = [\"tcp\", \"smtp\"]",
                "exit_policy.protocols",
                "`smtp`",
            ),
            (
                "[exit_policy]\nprotocols = []",
                "exit_policy.protocols",
                "at least one",
            ),
        ];
        for (extra, field, problem) in cases {
            let base = if extra.starts_with("dns_upstream") {
                head
            } else {
                &exit
            };
            let text = format!("{base}{extra}\n");
            let message = parse(&text).unwrap_err().to_string();
            assert!(
                message.contains(field) && message.contains(problem),
                "{extra}: {message:?} should name {field} and say {problem}"
            );
        }
        for private in ["172.31.0.0/16", "192.168.7.0/24", "10.0.0.0/8"] {
            let text = format!("{exit}pool_v4 = \"{private}\"\n");
            assert!(parse(&text).is_ok(), "{private}");
        }
        let text = format!(
            "{exit}pool_v6 = \"fdaa::/64\"\n[exit_policy]\nprotocols = [\"tcp\", \"gre\", \"132\"]\n"
        );
        let protocols = parse(&text).unwrap().exit_settings.protocols;
        assert!(protocols.contains(47) && protocols.contains(132) && protocols.contains(6));
        assert!(!protocols.contains(17));
    }

    #[test]
    fn errors_name_the_field() {
        let base = "nickname = \"r\"\nlisten = \"127.0.0.1:1\"\n";
        let cases = [
            (
                "nickname = \"bad name!\"\nlisten = \"127.0.0.1:1\"",
                "nickname",
            ),
            (
                &format!("{base}[metrics]\nlisten = \"0.0.0.0:9464\""),
                "metrics.listen",
            ),
            (
                &format!("{base}[limits]\nmax_circuits = 0"),
                "limits.max_circuits",
            ),
            (
                &format!("{base}[bandwidth]\nrate_bytes_per_sec = 1000"),
                "bandwidth.burst_bytes",
            ),
            (&format!("{base}colour = \"blue\""), "colour"),
            (
                &format!("{base}[limits]\nmax_circuits = \"many\""),
                "max_circuits",
            ),
            ("listen = \"127.0.0.1:1\"", "nickname"),
            (
                &format!("{base}[extend]\nprivate_networks = [\"10.0.0.0/33\"]"),
                "extend.private_networks",
            ),
            (
                &format!("{base}[extend]\nfailed_dials_per_circuit = 0"),
                "extend.failed_dials_per_circuit",
            ),
            (
                &format!("{base}[extend]\nfailed_dials_per_link_per_sec = 0.0"),
                "extend.failed_dials_per_link_per_sec",
            ),
        ];
        for (text, field) in cases {
            let message = parse(text).unwrap_err().to_string();
            assert!(message.contains(field), "{message:?} should name {field}");
        }
    }
}
