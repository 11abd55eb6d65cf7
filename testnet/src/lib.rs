//! trine-testnet: network namespaces for end-to-end tests, shared by every
//! crate's namespace tests (and the base for the `trine-testnet` tool).
//!
//! A [`Network`] is a hub namespace holding a bridge, and one namespace per
//! node joined to it by a veth pair, addressed from 198.18.0.0/15 (and
//! 2001:db8::/32 when asked), never linked to the host's own network.
//! Namespaces are named `PREFIX<pid><role>`; leftovers of runs whose
//! process is gone are removed first, and a network's namespaces and
//! processes are removed when it is dropped, even when a test fails.
//!
//! Test support: failures panic with the command and its stderr.
#![allow(clippy::panic)]

pub mod bench_net;
pub mod hostile;
pub mod links;
pub mod session;
pub mod tor;
pub mod trine;
pub mod web;
pub mod wireguard;

use std::path::Path;
use std::process::{Child, Command, Output};

/// Runs a command, returning its output (panics only if it cannot start).
pub fn sh(args: &[&str]) -> Output {
    match Command::new(args[0]).args(&args[1..]).output() {
        Ok(output) => output,
        Err(error) => panic!("cannot run {args:?}: {error}"),
    }
}

/// Runs a command that must succeed.
pub fn must(args: &[&str]) {
    let out = sh(args);
    if !out.status.success() {
        panic!("{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// Whether namespace tests should run: `false` (skip, said on stderr) when
/// TRINE_SKIP_NETNS is set; otherwise they need root, and this panics with
/// how to skip them if this process is not root.
pub fn netns_tests_enabled() -> bool {
    if std::env::var_os("TRINE_SKIP_NETNS").is_some() {
        eprintln!("skipped: TRINE_SKIP_NETNS is set");
        return false;
    }
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    if !root {
        panic!("this test needs root (network namespaces); set TRINE_SKIP_NETNS=1 to skip it");
    }
    true
}

/// One node of a [`Network`].
#[derive(Debug, Clone, Copy)]
pub struct Node<'a> {
    /// Short role name, the namespace's suffix (e.g. `c` for client).
    pub role: &'a str,
    /// IPv4 address with prefix, e.g. `198.18.0.2/24`.
    pub ipv4: &'a str,
    /// IPv6 address with prefix, if any.
    pub ipv6: Option<&'a str>,
}

impl<'a> Node<'a> {
    /// A node with an IPv4 address only.
    pub const fn v4(role: &'a str, ipv4: &'a str) -> Self {
        Self {
            role,
            ipv4,
            ipv6: None,
        }
    }
}

/// Namespaces joined by a hub bridge; removed on drop.
pub struct Network {
    tag: String,
    names: Vec<String>,
    /// Processes to kill (and reap) when the network goes.
    pub children: Vec<Child>,
}

impl Network {
    /// Builds the hub and one namespace per node, each with `eth0` on the
    /// hub's bridge and `lo` up. `prefix` names this kind of test; the
    /// namespaces are `PREFIX<pid><role>`, and leftovers of dead runs are
    /// removed first.
    pub fn build(prefix: &str, nodes: &[Node<'_>]) -> Self {
        remove_leftovers(prefix);
        Self::build_tagged(&format!("{prefix}{}", std::process::id()), nodes)
    }

    /// Like [`Network::build`] with namespaces named exactly `TAG<role>`
    /// (the hub is `TAG` + `hub`); the caller removes leftovers.
    pub fn build_tagged(tag: &str, nodes: &[Node<'_>]) -> Self {
        let hub = format!("{tag}{HUB}");
        let mut network = Self {
            tag: tag.to_string(),
            names: vec![hub.clone()],
            children: Vec::new(),
        };
        must(&["ip", "netns", "add", &hub]);
        must(&["ip", "-n", &hub, "link", "add", "br0", "type", "bridge"]);
        must(&["ip", "-n", &hub, "link", "set", "br0", "up"]);
        for node in nodes {
            let ns = format!("{tag}{}", node.role);
            network.names.push(ns.clone());
            must(&["ip", "netns", "add", &ns]);
            let outer = port_name(node.role);
            must(&[
                "ip", "-n", &hub, "link", "add", &outer, "type", "veth", "peer", "name", "eth0",
                "netns", &ns,
            ]);
            must(&[
                "ip", "-n", &hub, "link", "set", &outer, "master", "br0", "up",
            ]);
            must(&["ip", "-n", &ns, "addr", "add", node.ipv4, "dev", "eth0"]);
            if let Some(ipv6) = node.ipv6 {
                must(&["ip", "-n", &ns, "addr", "add", ipv6, "dev", "eth0", "nodad"]);
            }
            must(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
            must(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        }
        network
    }

    /// Adds a namespace `role` behind `gateway`'s: linked to it alone by
    /// a veth pair (`eth1` there, `eth0` here), addressed `gateway_ip`
    /// and `ip` (with prefixes), its default route via the gateway. A LAN
    /// behind a host (a VM, a container, a hotspot client). Removed with
    /// the network.
    pub fn attach_behind(&mut self, role: &str, gateway: &str, gateway_ip: &str, ip: &str) {
        let ns = self.ns(role);
        let outer = self.ns(gateway);
        must(&["ip", "netns", "add", &ns]);
        self.names.push(ns.clone());
        must(&[
            "ip", "-n", &outer, "link", "add", "eth1", "type", "veth", "peer", "name", "eth0",
            "netns", &ns,
        ]);
        must(&["ip", "-n", &outer, "addr", "add", gateway_ip, "dev", "eth1"]);
        must(&["ip", "-n", &outer, "link", "set", "eth1", "up"]);
        must(&["ip", "-n", &ns, "addr", "add", ip, "dev", "eth0"]);
        must(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
        must(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        let via = gateway_ip.split('/').next().unwrap_or(gateway_ip);
        must(&["ip", "-n", &ns, "route", "add", "default", "via", via]);
    }

    /// Forgets the network without removing it (its namespaces and
    /// processes outlive this process; see `trine-testnet down`).
    pub fn leak(&mut self) {
        self.names.clear();
        self.children.clear();
    }

    /// The namespace of `role` (`hub` is the hub).
    pub fn ns(&self, role: &str) -> String {
        format!("{}{role}", self.tag)
    }

    /// The hub's end of `role`'s veth pair (a name inside the hub
    /// namespace).
    pub fn hub_port(&self, role: &str) -> String {
        port_name(role)
    }

    /// Runs `args` inside the namespace of `role`.
    pub fn exec(&self, role: &str, args: &[&str]) -> Output {
        let ns = self.ns(role);
        let mut all = vec!["ip", "netns", "exec", ns.as_str()];
        all.extend_from_slice(args);
        sh(&all)
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for name in &self.names {
            let _ = sh(&["ip", "netns", "delete", name]);
        }
    }
}

/// The hub namespace's role name.
pub const HUB: &str = "hub";

/// The hub-side name of `role`'s veth (at most 15 bytes, unique in the
/// hub).
fn port_name(role: &str) -> String {
    let mut name = format!("v-{role}");
    name.truncate(15);
    name
}

/// Removes namespaces named `prefix<pid>…` whose process is gone.
fn remove_leftovers(prefix: &str) {
    let out = sh(&["ip", "netns", "list"]);
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(rest) = name.strip_prefix(prefix) else {
            continue;
        };
        let pid: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = sh(&["ip", "netns", "delete", name]);
        }
    }
}
