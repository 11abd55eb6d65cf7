//! The WireGuard baselines of `bench-net`: what a user could pick instead
//! of Trine, on the same namespaces and links. Userspace WireGuard
//! (`wireguard-go`, as this machine has no kernel module), either one hop
//! (client → relay → web host) or three nested hops: the client wraps
//! three tunnels, the innermost to the third relay, carried inside one to
//! the second, carried inside one to the first; each relay terminates one
//! layer and forwards what is inside (masqueraded) to the next.
//!
//! Inner addresses are 198.19.N.0/24 for layer N (client .2, relay .1);
//! each layer's MTU is 80 bytes below the one carrying it. Dropping a
//! [`Chain`] stops every `wireguard-go` (their interfaces and routes go
//! with them) and removes the relays' NAT tables.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::trine::{NodeInfo, TrineNet};

/// The first layer's MTU (eth0's 1500 less WireGuard's 80 worst case).
const OUTER_MTU: u32 = 1420;
const PORT: u16 = 51820;
const NAT_TABLE: &str = "trine_wg_nat";

/// A running chain of tunnels from the client to the web host.
pub struct Chain<'a> {
    net: &'a TrineNet,
    hops: Vec<&'a NodeInfo>,
    daemons: Vec<Child>,
    web: String,
}

impl Drop for Chain<'_> {
    fn drop(&mut self) {
        // SIGTERM first: wireguard-go then removes its control socket
        // (shared across namespaces) and its interface.
        for daemon in &self.daemons {
            let _ = Command::new("kill")
                .args(["-TERM", &daemon.id().to_string()])
                .output();
        }
        for daemon in &mut self.daemons {
            let deadline = Instant::now() + Duration::from_secs(2);
            while !matches!(daemon.try_wait(), Ok(Some(_))) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = daemon.kill();
            let _ = daemon.wait();
        }
        let _ = self.net.exec(
            "client",
            &["ip", "route", "del", &format!("{}/32", self.web)],
        );
        for hop in &self.hops {
            let _ = self
                .net
                .exec(&hop.name, &["nft", "delete", "table", "ip", NAT_TABLE]);
            let _ = self.net.exec(
                &hop.name,
                &["ip", "route", "del", &format!("{}/32", self.web)],
            );
        }
    }
}

/// Whether `wireguard-go` and `wg` are installed.
pub fn available() -> Result<(), String> {
    for tool in ["wireguard-go", "wg"] {
        if Command::new(tool).arg("--version").output().is_err() {
            return Err(format!(
                "`{tool}` is missing: scripts/install-deps.sh bench (wireguard-go, wireguard-tools)"
            ));
        }
    }
    Ok(())
}

/// A fresh key pair (private, public), base64 as `wg` writes them.
fn key_pair() -> Result<(String, String), String> {
    let private = run_with_input(&["wg", "genkey"], "")?;
    let public = run_with_input(&["wg", "pubkey"], &private)?;
    Ok((private.trim().to_string(), public.trim().to_string()))
}

fn run_with_input(args: &[&str], input: &str) -> Result<String, String> {
    let mut child = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{args:?}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| format!("{args:?}: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{args:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl<'a> Chain<'a> {
    /// Builds nested tunnels through `hops` (the first is the outermost)
    /// and routes the web host `web` through the innermost.
    pub fn up(net: &'a TrineNet, hops: &[&'a NodeInfo], web: &str) -> Result<Self, String> {
        let mut chain = Chain {
            net,
            hops: hops.to_vec(),
            daemons: Vec::new(),
            web: web.to_string(),
        };
        let dir = net.root.join("wireguard");
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for (index, hop) in hops.iter().enumerate() {
            let layer = index + 1;
            let mtu = (OUTER_MTU - 80 * index as u32).to_string();
            let port = (PORT + index as u16).to_string();
            let (client_key, client_public) = key_pair()?;
            let (relay_key, relay_public) = key_pair()?;
            // Interface names are unique across namespaces: wireguard-go's
            // control sockets share one directory.
            let client_if = format!("wgc{layer}");
            let relay_if = format!("wgr{layer}");
            for (node, interface, key) in [
                ("client", &client_if, &client_key),
                (hop.name.as_str(), &relay_if, &relay_key),
            ] {
                chain
                    .daemons
                    .push(chain.start_daemon(node, interface, &dir)?);
                let key_file = dir.join(format!("{interface}.key"));
                std::fs::write(&key_file, format!("{key}\n"))
                    .map_err(|e| format!("{}: {e}", key_file.display()))?;
                chain.run(
                    node,
                    &[
                        "wg",
                        "set",
                        interface,
                        "private-key",
                        &key_file.display().to_string(),
                    ],
                )?;
                chain.run(node, &["ip", "link", "set", interface, "mtu", &mtu, "up"])?;
            }
            let inner = |host: u8| format!("198.19.{layer}.{host}");
            // The relay's end: listens, takes the client's inner address,
            // forwards what it unwraps out of eth0, masqueraded.
            chain.run(
                &hop.name,
                &[
                    "ip",
                    "addr",
                    "add",
                    &format!("{}/24", inner(1)),
                    "dev",
                    &relay_if,
                ],
            )?;
            chain.run(
                &hop.name,
                &[
                    "wg",
                    "set",
                    &relay_if,
                    "listen-port",
                    &port,
                    "peer",
                    &client_public,
                    "allowed-ips",
                    &format!("{}/32", inner(2)),
                ],
            )?;
            chain.run(&hop.name, &["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])?;
            for command in [
                format!("add table ip {NAT_TABLE}"),
                format!(
                    "add chain ip {NAT_TABLE} post {{ type nat hook postrouting priority srcnat; }}"
                ),
                format!("add rule ip {NAT_TABLE} post oifname \"eth0\" masquerade"),
            ] {
                chain.run(&hop.name, &["nft", &command])?;
            }
            // The client's end: to the relay, reached through the layer
            // before (or straight over eth0 for the first).
            chain.run(
                "client",
                &[
                    "ip",
                    "addr",
                    "add",
                    &format!("{}/24", inner(2)),
                    "dev",
                    &client_if,
                ],
            )?;
            chain.run(
                "client",
                &[
                    "wg",
                    "set",
                    &client_if,
                    "peer",
                    &relay_public,
                    "allowed-ips",
                    "0.0.0.0/0",
                    "endpoint",
                    &format!("{}:{port}", hop.address),
                ],
            )?;
            if index > 0 {
                let carrier = format!("wgc{index}");
                chain.run(
                    "client",
                    &[
                        "ip",
                        "route",
                        "add",
                        &format!("{}/32", hop.address),
                        "dev",
                        &carrier,
                    ],
                )?;
            }
        }
        let last = hops.last().ok_or("no hops")?;
        chain.run(
            &last.name,
            &[
                "ip",
                "route",
                "replace",
                &format!("{web}/32"),
                "dev",
                "eth0",
            ],
        )?;
        let innermost = format!("wgc{}", hops.len());
        chain.run(
            "client",
            &[
                "ip",
                "route",
                "replace",
                &format!("{web}/32"),
                "dev",
                &innermost,
            ],
        )?;
        Ok(chain)
    }

    /// Starts `wireguard-go` for `interface` in `node`'s namespace and
    /// waits for the interface; its output goes to `dir/INTERFACE.log`.
    fn start_daemon(&self, node: &str, interface: &str, dir: &Path) -> Result<Child, String> {
        // A control socket left by a killed run would stop it.
        let _ = std::fs::remove_file(format!("/var/run/wireguard/{interface}.sock"));
        let log_path = dir.join(format!("{interface}.log"));
        let log =
            std::fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
        let namespace = self.net.network.ns(&self.net.node(node).role);
        let child = Command::new("ip")
            .args(["netns", "exec", &namespace, "wireguard-go", "-f", interface])
            .env("WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD", "1")
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("wireguard-go: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self
            .net
            .exec(node, &["wg", "show", interface])
            .status
            .success()
        {
            if Instant::now() > deadline {
                let said = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(format!(
                    "wireguard-go did not bring up {interface} in {node}: {}",
                    said.trim()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(child)
    }

    fn run(&self, node: &str, args: &[&str]) -> Result<(), String> {
        let out = self.net.exec(node, args);
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{node}: {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }
}
