//! A whole Trine network, end to end (issue 7's suite), with real
//! processes in namespaces: three authorities, three relays, two exits
//! (each with a private LAN, 10.99.0.0/24, holding a listener), a client
//! and a web host. Checks, by what arrives where:
//!
//! 1. Privacy: the web host sees an exit's address, never the client's;
//!    counters on the hub's bridge show no relay exchanged packets with
//!    both the client and the web host.
//! 2. Traffic: a 50 MiB download is byte-exact; DNS (UDP) and ping (ICMP)
//!    work; a packet bigger than a circuit carries (the tunnel's MTU is
//!    set above it) is answered with "fragmentation needed" and the
//!    sender learns the circuit's size; IPv6 into the tunnel is dropped,
//!    none leaves the client.
//! 3. Exit safety: through the tunnel, the exit's private LAN and the
//!    cloud metadata address are refused (the LAN listener sees nothing).
//! 4. Directory: with one authority stopped, a relay that stops is
//!    dropped from the client's consensus and never chosen again.
//! 5. Clean-up: when the network goes, no namespace or process of it is
//!    left.
//!
//! Failover is covered by client_e2e.rs. Needs root; TRINE_SKIP_NETNS=1
//! skips it knowingly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use trine_testnet::trine::{Binaries, CLIENT, Kind, Naming, Shape, TrineNet, WEB, WEB_NAME};
use trine_testnet::{must, netns_tests_enabled, sh};

const PREFIX: &str = "trnw";
const LAN: &str = "10.99.0.1";

/// Per relay and exit: counters of what its port sent to the client and
/// to the web host; and everything IPv6 the client sent.
fn watch(net: &TrineNet) {
    let mut rules = "table bridge trine_privacy {\n chain forward {\n  type filter hook forward priority 0; policy accept;\n".to_string();
    for node in &net.nodes {
        if !matches!(node.kind, Kind::Relay | Kind::Exit) {
            continue;
        }
        let port = net.network.hub_port(&node.role);
        for (peer, address) in [("client", CLIENT), ("web", WEB)] {
            rules.push_str(&format!(
                "  iifname \"{port}\" ip daddr {address} counter comment \"{} {peer}\"\n",
                node.name
            ));
        }
    }
    let client = net.network.hub_port("client");
    rules.push_str(&format!(
        "  iifname \"{client}\" ether type ip6 counter comment \"client ipv6\"\n }}\n}}\n"
    ));
    net.hub_nft(&rules);
}

/// Gives each exit a private LAN with a listener on it (logging any
/// request that reaches it).
fn exit_lans(net: &mut TrineNet) {
    let exits: Vec<(String, String)> = net
        .nodes
        .iter()
        .filter(|n| n.kind == Kind::Exit)
        .map(|n| (n.name.clone(), n.dir.display().to_string()))
        .collect();
    for (name, dir) in exits {
        let ns = net.network.ns(&name);
        // This kernel has no dummy interfaces: a veth pair, both ends here.
        let lan = "lan0 type veth peer name lan1";
        let mut add = vec!["ip", "-n", &ns, "link", "add"];
        add.extend(lan.split(' '));
        must(&add);
        must(&["ip", "-n", &ns, "link", "set", "lan1", "up"]);
        must(&[
            "ip",
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{LAN}/24"),
            "dev",
            "lan0",
        ]);
        must(&["ip", "-n", &ns, "link", "set", "lan0", "up"]);
        let listener = Command::new("ip")
            .args(["netns", "exec", &ns])
            .arg(&net.binaries.testnet)
            .args(["web", "--address", LAN, "--log", &format!("{dir}/lan.log")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        net.network.children.push(listener);
    }
}

fn trine_ok(net: &TrineNet, args: &[&str]) -> String {
    let out = net.trine(args);
    assert!(
        out.status.success(),
        "trine {args:?}: {}\nclient log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        net.log("client")
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn listed_relays(net: &TrineNet) -> BTreeSet<String> {
    let json: serde_json::Value =
        serde_json::from_str(&trine_ok(net, &["relays", "--json"])).unwrap_or_default();
    json.as_array()
        .map(|relays| {
            relays
                .iter()
                .filter_map(|r| r["nickname"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_whole_network_keeps_its_promises() {
    if !netns_tests_enabled() {
        return;
    }
    let root = std::env::temp_dir().join(format!("trine-network-e2e-{}", std::process::id()));
    let shape = Shape {
        interval_secs: 6,
        ..Shape::default()
    };
    let mut net = TrineNet::start(
        Naming::PerProcess(PREFIX),
        shape,
        Binaries::beside(Path::new(env!("CARGO_BIN_EXE_trine-testnet"))),
        &root,
    );
    exit_lans(&mut net);
    let exits: BTreeSet<String> = net
        .nodes
        .iter()
        .filter(|n| n.kind == Kind::Exit)
        .map(|n| n.address.to_string())
        .collect();
    // A tunnel MTU above what a circuit carries, so oversized packets
    // must be answered with "fragmentation needed".
    let config = net.client_config();
    let text = std::fs::read_to_string(&config).unwrap();
    let text = trine_testnet::trine::set_key(&text, "tunnel", "mtu", "1500");
    std::fs::write(&config, text).unwrap();
    net.start_client();
    trine_ok(&net, &["up", "--timeout", "120"]);
    // From here on (kill switch in place; before it, the namespace's own
    // IPv6 router solicitations go out as they would without Trine).
    watch(&net);

    // 1. Privacy, by name (DNS through the tunnel).
    let (seen, _) = net
        .fetch_ip_within(WEB_NAME, Duration::from_secs(20))
        .unwrap();
    assert!(exits.contains(&seen), "the web host saw {seen}");

    // 2. Traffic: 50 MiB byte for byte, ping, IPv6 dropped.
    let testnet = net.binaries.testnet.display().to_string();
    let url = format!("http://{WEB}/bytes/{}", 50 << 20);
    let out = net.exec(
        "client",
        &[&testnet, "fetch", "--check", "--timeout", "30", &url],
    );
    assert!(
        out.status.success(),
        "50 MiB download: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with(&format!("ok {} bytes", 50 << 20)));
    let ping = net.exec("client", &["ping", "-c", "3", "-W", "3", &WEB.to_string()]);
    assert!(
        ping.status.success(),
        "ping through the tunnel: {}",
        String::from_utf8_lossy(&ping.stdout)
    );
    // Too big for the circuit: the client answers "fragmentation needed"
    // with the circuit's room, and the sender learns it.
    let big = net.exec(
        "client",
        &[
            "ping",
            "-M",
            "do",
            "-s",
            "1400",
            "-c",
            "2",
            "-W",
            "2",
            &WEB.to_string(),
        ],
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&big.stdout),
        String::from_utf8_lossy(&big.stderr)
    );
    let mtu: u32 = text
        .split("mtu")
        .nth(1)
        .and_then(|rest| {
            let digits: String = rest
                .chars()
                .skip_while(|c| !c.is_ascii_digit())
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        })
        .unwrap_or_else(|| panic!("no path MTU learned from an oversized ping: {text}"));
    // Above the device's 1280 (so it came from the circuit's room, not
    // the device), below the 1428-byte packet.
    assert!((1281..1428).contains(&mtu), "learned MTU {mtu}: {text}");
    let ping6 = net.exec(
        "client",
        &["ping", "-6", "-c", "2", "-W", "1", "2001:db8::1"],
    );
    assert!(!ping6.status.success(), "IPv6 got an answer from nowhere");

    // 3. Exit safety: its LAN and the metadata address, through the tunnel.
    for target in [LAN, "169.254.169.254"] {
        let out = net.fetch("client", &format!("http://{target}/ip"), 3);
        assert!(!out.status.success(), "reached {target} through the exit");
    }
    for node in net.nodes.iter().filter(|n| n.kind == Kind::Exit) {
        let log = std::fs::read_to_string(node.dir.join("lan.log")).unwrap_or_default();
        assert!(log.is_empty(), "{}'s LAN saw: {log}", node.name);
    }

    // 1 (continued). No relay talked to both ends; no IPv6 left.
    let counted = net.hub_counters("trine_privacy");
    for node in net
        .nodes
        .iter()
        .filter(|n| matches!(n.kind, Kind::Relay | Kind::Exit))
    {
        let sent = |peer: &str| {
            counted
                .iter()
                .find(|(c, _)| *c == format!("{} {peer}", node.name))
                .map_or(0, |(_, n)| *n)
        };
        assert!(
            sent("client") == 0 || sent("web") == 0,
            "{} sent packets to both the client and the web host",
            node.name
        );
    }
    let ipv6 = counted
        .iter()
        .find(|(c, _)| c == "client ipv6")
        .map_or(0, |(_, n)| *n);
    assert_eq!(ipv6, 0, "IPv6 left the client");

    // 4. Directory: one authority down, then a relay outside the current
    // circuit stops; it leaves the consensus and is never chosen again.
    assert!(net.stop("auth1", Duration::from_secs(10)));
    // A relay the client's consensus lists and its circuit does not use
    // (a relay that just started may not be listed yet: the authorities
    // list only relays a majority has seen running).
    let deadline = Instant::now() + Duration::from_secs(60);
    let gone =
        loop {
            let path = net.client_path();
            let listed = listed_relays(&net);
            if let Some(relay) = net.nodes.iter().find(|n| {
                n.kind == Kind::Relay && !path.contains(&n.name) && listed.contains(&n.name)
            }) {
                break relay.name.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no listed relay outside the path {path:?}: {listed:?}"
            );
            std::thread::sleep(Duration::from_millis(500));
        };
    assert!(net.stop(&gone, Duration::from_secs(10)));
    let deadline = Instant::now() + Duration::from_secs(120);
    while listed_relays(&net).contains(&gone) {
        assert!(
            Instant::now() < deadline,
            "{gone} still in the client's consensus after 120 s"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    for _ in 0..6 {
        trine_ok(&net, &["circuit", "new"]);
        let path = net.client_path();
        assert!(
            !path.contains(&gone),
            "{gone} chosen after it left: {path:?}"
        );
    }
    net.fetch_ip_within(&WEB.to_string(), Duration::from_secs(30))
        .unwrap();

    // 5. Clean-up: namespaces and processes go with the network.
    let pids: Vec<u32> = net
        .nodes
        .iter()
        .filter_map(|n| n.child.as_ref().map(|c| c.id()))
        .collect();
    let namespace = net.network.ns("client");
    drop(net);
    let listed = String::from_utf8_lossy(&sh(&["ip", "netns", "list"]).stdout).into_owned();
    assert!(!listed.contains(&namespace), "namespaces left: {listed}");
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} left"
        );
    }
    let _ = std::fs::remove_dir_all(&root);
}
