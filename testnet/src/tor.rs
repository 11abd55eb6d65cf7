//! The Tor column of `bench-net`: a private Tor network on the same
//! namespaces as the Trine network (`tor` from Debian). Tor's authorities
//! run beside Trine's authorities, Tor relays beside Trine's relays, Tor
//! exits beside Trine's exits (the only nodes with a route to the web
//! host), and a Tor client in the client's namespace, which the benchmark
//! uses through SOCKS at 127.0.0.1:9050.
//!
//! Set-up follows Tor's own testing networks: `TestingTorNetwork 1`,
//! authority keys from `tor-gencert`, a 10-second voting interval, every
//! relay voted Guard and Exit-capable, exits with `ExitPolicy accept *:*`
//! (a narrower policy makes clients refuse them). Dropping a
//! [`TorNetwork`] stops every `tor`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::trine::{Kind, NodeInfo, TrineNet};

/// Tor's ports on each node's hub address (Trine's are elsewhere).
const OR_PORT: u16 = 5000;
const DIR_PORT: u16 = 5001;
/// The client's SOCKS port, on its loopback.
pub const SOCKS: &str = "127.0.0.1:9050";

/// A running private Tor network.
pub struct TorNetwork {
    daemons: Vec<Child>,
    client_dir: PathBuf,
}

impl Drop for TorNetwork {
    fn drop(&mut self) {
        for daemon in &mut self.daemons {
            let _ = daemon.kill();
            let _ = daemon.wait();
        }
    }
}

/// Whether `tor` and `tor-gencert` are installed.
pub fn available() -> Result<(), String> {
    for tool in ["tor", "tor-gencert"] {
        if Command::new(tool).arg("--version").output().is_err() {
            return Err(format!(
                "`{tool}` is missing: scripts/install-deps.sh bench (tor)"
            ));
        }
    }
    Ok(())
}

fn run(command: &mut Command, what: &str) -> Result<String, String> {
    let out = command
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("{what}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what}: {}{}",
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A private directory for one Tor instance (Tor refuses loose ones).
fn data_dir(root: &Path, name: &str) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let dir = root.join(name);
    std::fs::create_dir_all(dir.join("keys")).map_err(|e| format!("{}: {e}", dir.display()))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

/// Makes an authority's keys; returns its `DirAuthority` line.
fn authority_keys(dir: &Path, node: &NodeInfo) -> Result<String, String> {
    let keys = dir.join("keys");
    let mut gencert = Command::new("tor-gencert");
    gencert
        .args(["--create-identity-key", "-m", "12", "-a"])
        .arg(format!("{}:{DIR_PORT}", node.address))
        .arg("-i")
        .arg(keys.join("authority_identity_key"))
        .arg("-s")
        .arg(keys.join("authority_signing_key"))
        .arg("-c")
        .arg(keys.join("authority_certificate"))
        .args(["--passphrase-fd", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    run(&mut gencert, "tor-gencert")?;
    let certificate = std::fs::read_to_string(keys.join("authority_certificate"))
        .map_err(|e| format!("the authority certificate: {e}"))?;
    let v3ident = certificate
        .lines()
        .find_map(|l| l.strip_prefix("fingerprint "))
        .ok_or("no fingerprint in the authority certificate")?
        .trim()
        .to_string();
    let listed = run(
        Command::new("tor")
            .args([
                "--list-fingerprint",
                "--quiet",
                "--ignore-missing-torrc",
                "-f",
                "/dev/null",
            ])
            .arg("--DataDirectory")
            .arg(dir)
            .args(["--ORPort", &OR_PORT.to_string(), "--Nickname", &node.name]),
        "tor --list-fingerprint",
    )?;
    let fingerprint: String = listed
        .split_whitespace()
        .skip(1)
        .collect::<Vec<_>>()
        .concat();
    Ok(format!(
        "DirAuthority {} orport={OR_PORT} no-v2 v3ident={v3ident} {}:{DIR_PORT} {fingerprint}",
        node.name, node.address
    ))
}

/// What every instance's torrc starts with.
fn common(dir: &Path, authorities: &[String]) -> String {
    let dir = dir.display();
    format!(
        "TestingTorNetwork 1\n\
         DataDirectory {dir}\n\
         Log notice file {dir}/notice.log\n\
         RunAsDaemon 0\n\
         ShutdownWaitLength 0\n\
         AssumeReachable 1\n\
         TestingDirAuthVoteExit *\n\
         TestingDirAuthVoteGuard *\n\
         TestingDirAuthVoteHSDir *\n\
         TestingV3AuthInitialVotingInterval 10\n\
         TestingV3AuthInitialVoteDelay 2\n\
         TestingV3AuthInitialDistDelay 2\n\
         V3AuthVotingInterval 10\n\
         V3AuthVoteDelay 2\n\
         V3AuthDistDelay 2\n\
         {}\n",
        authorities.join("\n")
    )
}

impl TorNetwork {
    /// Starts Tor beside every authority, relay and exit of `net`, and a
    /// client in the client's namespace; returns once the client has
    /// bootstrapped (at most `within`), with the time that took.
    pub fn start(net: &TrineNet, within: Duration) -> Result<(Self, Duration), String> {
        let started = Instant::now();
        let root = net.root.join("tor");
        let _ = std::fs::remove_dir_all(&root);
        let mut authorities = Vec::new();
        for node in net.nodes.iter().filter(|n| n.kind == Kind::Authority) {
            let dir = data_dir(&root, &node.name)?;
            authorities.push(authority_keys(&dir, node)?);
        }
        let mut network = TorNetwork {
            daemons: Vec::new(),
            client_dir: data_dir(&root, "client")?,
        };
        for node in &net.nodes {
            let role = match node.kind {
                Kind::Authority => format!(
                    "DirPort {}:{DIR_PORT}\nAuthoritativeDirectory 1\nV3AuthoritativeDirectory 1\n\
                     AuthDirMaxServersPerAddr 0\nExitPolicy reject *:*\nSocksPort 0\n",
                    node.address
                ),
                Kind::Relay => "ExitRelay 0\nExitPolicy reject *:*\nSocksPort 0\n".to_string(),
                Kind::Exit => "ExitRelay 1\nExitPolicy accept *:*\nExitPolicyRejectPrivate 0\n\
                     ExitPolicyRejectLocalInterfaces 0\nSocksPort 0\n"
                    .to_string(),
                Kind::Client => format!("SocksPort {SOCKS}\n"),
                Kind::Web => continue,
            };
            let dir = data_dir(&root, &node.name)?;
            let mut torrc = common(&dir, &authorities) + &role;
            if node.kind != Kind::Client {
                torrc += &format!(
                    "Nickname {}\nAddress {}\nORPort {}:{OR_PORT}\nContactInfo {}@trine.test\n",
                    node.name, node.address, node.address, node.name
                );
            }
            let config = dir.join("torrc");
            std::fs::write(&config, torrc).map_err(|e| format!("{}: {e}", config.display()))?;
            let log = std::fs::File::create(dir.join("output.log"))
                .map_err(|e| format!("{}: {e}", dir.display()))?;
            let daemon = Command::new("ip")
                .args(["netns", "exec", &net.network.ns(&node.role), "tor", "-f"])
                .arg(&config)
                .stdout(log.try_clone().map_err(|e| e.to_string())?)
                .stderr(log)
                .spawn()
                .map_err(|e| format!("tor: {e}"))?;
            network.daemons.push(daemon);
        }
        let bootstrapped = network.wait_bootstrapped(started, within)?;
        Ok((network, bootstrapped))
    }

    /// Waits until the client's log says it bootstrapped.
    fn wait_bootstrapped(&self, started: Instant, within: Duration) -> Result<Duration, String> {
        let log = self.client_dir.join("notice.log");
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("Bootstrapped 100%") {
                return Ok(started.elapsed());
            }
            if started.elapsed() > within {
                let last = text.lines().last().unwrap_or("(no log)");
                return Err(format!(
                    "the Tor client did not bootstrap in {within:?}; its log ends: {last}"
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
