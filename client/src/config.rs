//! `trine.toml`: the client's configuration, parsed strictly (unknown keys
//! are errors, each error names the field) into [`Config`]. Every key has
//! a documented default; an empty file is only missing the authorities.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use trine_node::authorities::Authorities;

/// Where the daemon reads its configuration unless told otherwise.
pub const DEFAULT_CONFIG: &str = "/etc/trine/trine.toml";
/// Where the daemon listens for control requests unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/trine/control.sock";

pub use trine_node::config::ConfigError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default = "default_state_dir")]
    state_dir: PathBuf,
    #[serde(default)]
    lockdown: bool,
    #[serde(default)]
    autoconnect: bool,
    directory: DirectoryFile,
    #[serde(default)]
    tunnel: TunnelFile,
    #[serde(default)]
    dns: DnsFile,
    #[serde(default)]
    control: ControlFile,
    #[serde(default)]
    circuit: CircuitFile,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DirectoryFile {
    authorities: PathBuf,
    #[serde(default)]
    allow_same_subnet: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct TunnelFile {
    name: String,
    mtu: u16,
    ipv6: bool,
}

impl Default for TunnelFile {
    fn default() -> Self {
        Self {
            name: "trine0".to_string(),
            mtu: 1280,
            ipv6: true,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct DnsFile {
    mode: DnsMode,
    resolv_conf: PathBuf,
}

impl Default for DnsFile {
    fn default() -> Self {
        Self {
            mode: DnsMode::Auto,
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ControlFile {
    socket: PathBuf,
    group: String,
}

impl Default for ControlFile {
    fn default() -> Self {
        Self {
            socket: PathBuf::from(DEFAULT_SOCKET),
            group: String::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct CircuitFile {
    build_timeout_secs: u64,
    keepalive_secs: u64,
    dead_after_secs: u64,
}

impl Default for CircuitFile {
    fn default() -> Self {
        Self {
            build_timeout_secs: 10,
            keepalive_secs: 1,
            dead_after_secs: 3,
        }
    }
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/trine")
}

/// How the system resolver is pointed at the tunnel's resolver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DnsMode {
    /// systemd-resolved where it manages the resolver file, otherwise
    /// the file.
    Auto,
    /// Rewrite `dns.resolv_conf` (backed up first, restored on `down` and
    /// after a crash).
    ResolvConf,
    /// Give the tunnel device the tunnel's resolver and the `~.` domain
    /// through `resolvectl` (systemd-resolved).
    Resolved,
    /// Leave the resolver alone (the kill switch still rejects DNS to
    /// anything but the tunnel's resolver).
    Off,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from.
    pub path: PathBuf,
    /// Guards and the cached consensus live here.
    pub state_dir: PathBuf,
    /// Keep the kill switch on while disconnected.
    pub lockdown: bool,
    /// Connect as soon as the daemon starts.
    pub autoconnect: bool,
    /// The authorities and threshold.
    pub authorities: Authorities,
    /// Whether two relays of one path may share an IPv4 /16 (test networks
    /// only).
    pub allow_same_subnet: bool,
    /// The TUN device's name.
    pub tun_name: String,
    /// The TUN device's MTU.
    pub mtu: u16,
    /// Whether IPv6 is tunnelled (otherwise it is blocked).
    pub ipv6: bool,
    /// How DNS is redirected.
    pub dns_mode: DnsMode,
    /// The resolver file managed in [`DnsMode::ResolvConf`].
    pub resolv_conf: PathBuf,
    /// The control socket.
    pub socket: PathBuf,
    /// The group given the control socket (empty: root's group).
    pub group: String,
    /// Time allowed for one circuit build.
    pub build_timeout: Duration,
    /// How often each circuit is pinged end to end.
    pub keepalive: Duration,
    /// A circuit whose last hop has not answered for this long is dead.
    pub dead_after: Duration,
}

impl Config {
    /// Reads and validates `path`. A relative `directory.authorities` is
    /// taken relative to the file's directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Validates `text` as the file `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let file: File = toml::from_str(text).map_err(|error| ConfigError::Parse {
            path: path.to_path_buf(),
            message: error.message().to_string(),
        })?;
        let invalid = |field, problem: &str| ConfigError::Invalid {
            path: path.to_path_buf(),
            field,
            problem: problem.to_string(),
        };
        let base = path.parent().unwrap_or(Path::new("."));
        let authorities_path = base.join(&file.directory.authorities);
        let authorities = Authorities::load(&authorities_path)
            .map_err(|error| invalid("directory.authorities", &error.to_string()))?;
        let name = &file.tunnel.name;
        let name_ok = (1..16).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !name_ok {
            return Err(invalid(
                "tunnel.name",
                "must be 1 to 15 letters, digits, '-' or '_'",
            ));
        }
        check_mtu(file.tunnel.mtu).map_err(|problem| invalid("tunnel.mtu", problem))?;
        let circuit = &file.circuit;
        if !(1..=120).contains(&circuit.build_timeout_secs) {
            return Err(invalid("circuit.build_timeout_secs", "must be 1 to 120"));
        }
        if !(1..=60).contains(&circuit.keepalive_secs) {
            return Err(invalid("circuit.keepalive_secs", "must be 1 to 60"));
        }
        if circuit.dead_after_secs <= circuit.keepalive_secs || circuit.dead_after_secs > 300 {
            return Err(invalid(
                "circuit.dead_after_secs",
                "must be longer than circuit.keepalive_secs and at most 300",
            ));
        }
        if !file
            .control
            .group
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(invalid("control.group", "is not a valid group name"));
        }
        Ok(Self {
            path: path.to_path_buf(),
            state_dir: base.join(file.state_dir),
            lockdown: file.lockdown,
            autoconnect: file.autoconnect,
            authorities,
            allow_same_subnet: file.directory.allow_same_subnet,
            tun_name: file.tunnel.name,
            mtu: file.tunnel.mtu,
            ipv6: file.tunnel.ipv6,
            dns_mode: file.dns.mode,
            resolv_conf: base.join(file.dns.resolv_conf),
            socket: base.join(file.control.socket),
            group: file.control.group,
            build_timeout: Duration::from_secs(circuit.build_timeout_secs),
            keepalive: Duration::from_secs(circuit.keepalive_secs),
            dead_after: Duration::from_secs(circuit.dead_after_secs),
        })
    }
}

/// Whether `mtu` is a usable tunnel MTU; the problem in words if not.
pub fn check_mtu(mtu: u16) -> Result<(), &'static str> {
    if (1280..=9000).contains(&mtu) {
        Ok(())
    } else {
        Err("must be between 1280 (IPv6's minimum) and 9000")
    }
}

/// Settings changed through the control API (`trine settings set`, the
/// app), kept as `settings.toml` in the state directory and laid over the
/// configuration file at start: the file stays the administrator's, and a
/// change survives restarts. Absent fields keep the file's value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    /// The TUN device's MTU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u16>,
    /// Whether IPv6 is tunnelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<bool>,
    /// How DNS is redirected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsMode>,
}

impl Overrides {
    /// The file's name in the state directory.
    pub const FILE: &str = "settings.toml";

    /// Whether every value given is valid; the problem, naming the
    /// setting, if not.
    pub fn check(&self) -> Result<(), String> {
        if let Some(mtu) = self.mtu {
            check_mtu(mtu).map_err(|problem| format!("mtu {mtu} {problem}"))?;
        }
        Ok(())
    }

    /// Takes every value `newer` gives.
    pub fn merge(&mut self, newer: &Overrides) {
        self.mtu = newer.mtu.or(self.mtu);
        self.ipv6 = newer.ipv6.or(self.ipv6);
        self.dns = newer.dns.or(self.dns);
    }

    /// Reads the overrides kept in `state_dir` (none if there is no file).
    pub fn load(state_dir: &Path) -> Result<Self, ConfigError> {
        let path = state_dir.join(Self::FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self::default());
            }
            Err(source) => return Err(ConfigError::Read { path, source }),
        };
        let overrides: Self = toml::from_str(&text).map_err(|error| ConfigError::Parse {
            path: path.clone(),
            message: error.message().to_string(),
        })?;
        overrides.check().map_err(|problem| ConfigError::Invalid {
            path,
            field: "settings",
            problem,
        })?;
        Ok(overrides)
    }

    /// Keeps the overrides in `state_dir`, replacing the file whole (a
    /// crash leaves the old file or the new one, never half of one).
    pub fn save(&self, state_dir: &Path) -> std::io::Result<()> {
        let text = toml::to_string(self).map_err(std::io::Error::other)?;
        write_whole(&state_dir.join(Self::FILE), &text)
    }
}

/// Replaces the file at `path` with `text` whole: written beside it,
/// synced, renamed over it, and the directory synced, so a crash or a
/// power cut leaves the old file or the new one, never half of one.
pub fn write_whole(path: &Path, text: &str) -> std::io::Result<()> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = std::path::PathBuf::from(partial);
    std::fs::write(&partial, text)?;
    std::fs::File::open(&partial)?.sync_all()?;
    std::fs::rename(&partial, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

impl Config {
    /// This configuration with `overrides` laid over it.
    pub fn with(&self, overrides: &Overrides) -> Config {
        Config {
            mtu: overrides.mtu.unwrap_or(self.mtu),
            ipv6: overrides.ipv6.unwrap_or(self.ipv6),
            dns_mode: overrides.dns.unwrap_or(self.dns_mode),
            ..self.clone()
        }
    }
}

/// The commented configuration `trine init` writes; every default spelled
/// out.
pub fn template(authorities: &Path) -> String {
    format!(
        r#"# Trine client configuration. Every key but directory.authorities has
# the default shown. Paths may be relative to this file.

# Guards and the cached consensus.
state_dir = "/var/lib/trine"
# Keep the kill switch on while disconnected: nothing leaves this machine
# outside the tunnel, ever (until `trine lockdown off`).
lockdown = false
# Connect when the daemon starts.
autoconnect = false

[directory]
# The network's authorities and signing threshold (trine-dir's format).
authorities = {}
# Allow two relays of one path in one IPv4 /16 (only for test networks).
allow_same_subnet = false

[tunnel]
name = "trine0"
mtu = 1280
# Tunnel IPv6; when false, IPv6 is blocked (never leaked).
ipv6 = true

[dns]
# "auto": systemd-resolved (resolvectl) where it manages the file below,
# otherwise "resolv-conf": point the file at the tunnel's resolver (backed
# up, restored on down). "resolved" forces the first; "off" leaves DNS
# alone (DNS elsewhere is still blocked).
mode = "auto"
resolv_conf = "/etc/resolv.conf"

[control]
socket = "/run/trine/control.sock"
# Members of this group may use `trine` and the app without root.
group = ""

[circuit]
build_timeout_secs = 10
# Each circuit is pinged end to end this often; silent this long = dead.
keepalive_secs = 1
dead_after_secs = 3
"#,
        toml::Value::String(authorities.display().to_string())
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn authorities_file(dir: &Path) -> PathBuf {
        let path = dir.join("authorities.toml");
        let id = trine_circuit::IdentityKey::generate(&mut rand::rngs::OsRng).relay_id();
        let list = [trine_node::authorities::Authority {
            id,
            address: "198.18.0.11:7000".parse().unwrap(),
        }];
        std::fs::write(&path, Authorities::render(&list, 1)).unwrap();
        path
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("trine-config-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_template_parses_to_the_defaults() {
        let dir = scratch("template");
        let auth = authorities_file(&dir);
        let path = dir.join("trine.toml");
        let config = Config::parse(&path, &template(&auth)).unwrap();
        assert_eq!(config.mtu, 1280);
        assert_eq!(config.tun_name, "trine0");
        assert_eq!(config.dns_mode, DnsMode::Auto);
        assert_eq!(config.keepalive, Duration::from_secs(1));
        assert!(!config.lockdown);
        let minimal = format!("[directory]\nauthorities = \"{}\"\n", auth.display());
        let minimal = Config::parse(&path, &minimal).unwrap();
        assert_eq!(minimal.socket, PathBuf::from(DEFAULT_SOCKET));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn errors_name_the_field() {
        let dir = scratch("errors");
        let auth = authorities_file(&dir);
        let path = dir.join("trine.toml");
        let base = format!("[directory]\nauthorities = \"{}\"\n", auth.display());
        for (extra, field) in [
            ("[tunnel]\nmtu = 500\n", "tunnel.mtu"),
            ("[tunnel]\nname = \"a b\"\n", "tunnel.name"),
            (
                "[circuit]\nkeepalive_secs = 5\ndead_after_secs = 5\n",
                "circuit.dead_after_secs",
            ),
            ("[control]\ngroup = \"x;y\"\n", "control.group"),
        ] {
            let error = Config::parse(&path, &format!("{base}{extra}")).unwrap_err();
            assert!(error.to_string().contains(field), "{error}");
        }
        let unknown = Config::parse(&path, &format!("{base}colour = 1\n")).unwrap_err();
        assert!(unknown.to_string().contains("colour"), "{unknown}");
        let missing = Config::parse(&path, "[directory]\nauthorities = \"nope.toml\"\n")
            .unwrap_err()
            .to_string();
        assert!(missing.contains("directory.authorities"), "{missing}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn overrides_survive_a_restart_and_lay_over_the_file() {
        let dir = scratch("overrides");
        let auth = authorities_file(&dir);
        let config = Config::parse(&dir.join("trine.toml"), &template(&auth)).unwrap();
        assert_eq!(Overrides::load(&dir).unwrap(), Overrides::default());
        let mut kept = Overrides {
            mtu: Some(1400),
            ..Overrides::default()
        };
        kept.merge(&Overrides {
            dns: Some(DnsMode::Off),
            ..Overrides::default()
        });
        kept.save(&dir).unwrap();
        let loaded = Overrides::load(&dir).unwrap();
        assert_eq!(loaded, kept);
        let merged = config.with(&loaded);
        assert_eq!(
            (merged.mtu, merged.ipv6, merged.dns_mode),
            (1400, true, DnsMode::Off)
        );
    }

    #[test]
    fn bad_overrides_are_refused_with_the_setting_named() {
        let dir = scratch("bad-overrides");
        let problem = Overrides {
            mtu: Some(576),
            ..Overrides::default()
        }
        .check()
        .unwrap_err();
        assert!(
            problem.starts_with("mtu 576 must be between 1280"),
            "{problem}"
        );
        for text in [
            "mtu = 100\n",
            "colour = \"blue\"\n",
            "dns = \"carrier-pigeon\"\n",
        ] {
            std::fs::write(dir.join(Overrides::FILE), text).unwrap();
            assert!(Overrides::load(&dir).is_err(), "{text} accepted");
        }
    }
}
