//! A client attacks an exit's policy with real packets, in network
//! namespaces (needs root, `ip` and `nft`).
//!
//! Namespaces `trxp<pid>…` on one bridge, all on 198.18.4.0/24 and never
//! linked to the host's network: a client (.2), a middle relay (.3), an
//! exit (.4, advertising 198.18.5.4, an address no interface of it holds)
//! and a destination host (.5) that also plays the cloud's 1:1 NAT (it
//! maps 198.18.5.4 to the exit, hairpinning the exit's own traffic back to
//! it). The client (this binary re-run in its namespace) builds a two-hop
//! circuit, client → middle → exit, under a `reject *`-style port policy,
//! and checks what comes back; this process then checks what arrived:
//! - GRE and SCTP are refused (ICMP "administratively prohibited") and
//!   never reach the destination (nftables counters there stay 0);
//! - UDP to the advertised address is refused and never reaches a service
//!   of the exit (a canary listening there logs nothing);
//! - allowed UDP still reaches the destination and its answer comes back;
//! - DNS: the destination is also the exit's upstream resolver (on a
//!   second address, .6), a fake one that logs every name it is asked and
//!   answers `rebind*` names with 127.0.0.1, 10.1.2.3 and ::1. A private
//!   PTR lookup and an `.internal` name are answered REFUSED and never
//!   reach it; the rebinding answers reach the client only as SERVFAIL
//!   without a record; a public name resolves. A query sent straight to
//!   the upstream's address (past the DNS screen; port 53 is allowed) is
//!   refused as one of the exit's own and never reaches it;
//! - the exit's metrics count each refusal by rule and reason.
//!
//! Without root this test fails; set TRINE_SKIP_NETNS=1 to skip it
//! knowingly. Namespaces are removed even when it fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;
#[path = "common/netns.rs"]
mod netns;

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use trine_circuit::ip;
use trine_circuit::{HopSpec, OnionPublicKey, RelayId};
use trine_testnet::{Network, Node, must, netns_tests_enabled};

use common::{Scratch, init, read_onion_key, set_key};
use netns::{
    Tunnel, helper, ipv4_packet, is_helper, is_prohibited, metric_in, udp_packet, udp_payload_from,
};

const PREFIX: &str = "trxp";
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 4, 2);
const MIDDLE: Ipv4Addr = Ipv4Addr::new(198, 18, 4, 3);
const EXIT: Ipv4Addr = Ipv4Addr::new(198, 18, 4, 4);
const DEST: Ipv4Addr = Ipv4Addr::new(198, 18, 4, 5);
/// The destination's second address, where the exit's upstream resolver
/// listens.
const RESOLVER: Ipv4Addr = Ipv4Addr::new(198, 18, 4, 6);
/// The exit's advertised address: the cloud NAT maps it to `EXIT`.
const ADVERTISED: Ipv4Addr = Ipv4Addr::new(198, 18, 5, 4);
const RELAY_PORT: u16 = 9443;
/// The destination's UDP echo.
const ECHO_PORT: u16 = 7000;
/// A service of the exit host that clients must never reach.
const CANARY_PORT: u16 = 7100;
const DNS_PORT: u16 = 53;
const GRE: u8 = 47;
const SCTP: u8 = 132;
/// Everything the destination counts: what must never arrive there.
const DEST_TABLE: &str = "trxp_seen";

/// The destination's nftables: the cloud's 1:1 NAT for the exit's
/// advertised address (with hairpin), and counters of GRE and SCTP.
fn destination_rules() -> String {
    format!(
        "table ip trxp_nat {{\n\
         \x20 chain pre {{ type nat hook prerouting priority dstnat; ip daddr {ADVERTISED} dnat to {EXIT}; }}\n\
         \x20 chain post {{ type nat hook postrouting priority srcnat; ip daddr {EXIT} masquerade; }}\n\
         }}\n\
         table inet {DEST_TABLE} {{\n\
         \x20 chain input {{\n\
         \x20   type filter hook prerouting priority raw; policy accept;\n\
         \x20   meta l4proto gre counter comment \"gre\"\n\
         \x20   meta l4proto sctp counter comment \"sctp\"\n\
         \x20 }}\n\
         }}\n"
    )
}

/// Packets the destination's counter `name` has seen.
fn seen_at_destination(net: &Network, name: &str) -> u64 {
    netns::counted(net, "d", DEST_TABLE, name)
}

/// Makes a relay's keys and configuration under `root/name` (an exit if
/// `exit_edits` is some), returning its hop and configuration file.
fn prepare_relay(
    root: &Path,
    name: &str,
    address: Ipv4Addr,
    exit_edits: Option<&[(&str, &str)]>,
) -> (HopSpec, PathBuf) {
    let dir = root.join(name);
    let listen = SocketAddr::from((address, RELAY_PORT));
    let id = init(&dir, name, listen);
    let config = dir.join("relay.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text = set_key(&text, "private_networks", common::PRIVATE_BENCHMARKING);
    if let Some(edits) = exit_edits {
        text = set_key(&text, "exit", "true");
        for (key, value) in edits {
            text = set_key(&text, key, value);
        }
        // Advertised but on no interface: behind the cloud's 1:1 NAT.
        text = text.replace(
            "# advertise = []",
            &format!("advertise = [\"{ADVERTISED}:{RELAY_PORT}\"]"),
        );
    }
    std::fs::write(&config, text).unwrap();
    let hop = HopSpec {
        id,
        onion_key: read_onion_key(&dir),
        addresses: vec![listen],
    };
    (hop, config)
}

/// Starts `command`; the network kills it when it goes.
fn start(net: &mut Network, command: &mut Command) {
    let child = command.stderr(Stdio::inherit()).spawn().unwrap();
    net.children.push(child);
}

#[test]
fn exit_policy_holds_against_a_client_sending_real_packets() {
    if !netns_tests_enabled() {
        return;
    }
    let mut net = Network::build(
        PREFIX,
        &[
            Node::v4("c", "198.18.4.2/24"),
            Node::v4("m", "198.18.4.3/24"),
            Node::v4("e", "198.18.4.4/24"),
            Node::v4("d", "198.18.4.5/24"),
        ],
    );
    let scratch = Scratch::new("exit-policy-netns");
    let root = scratch.path();

    // The cloud: the exit reaches its advertised address through the NAT.
    let exit_ns = net.ns("e");
    let dest_ns = net.ns("d");
    must(&[
        "ip",
        "-n",
        &exit_ns,
        "route",
        "add",
        &format!("{ADVERTISED}/32"),
        "via",
        &DEST.to_string(),
    ]);
    must(&[
        "ip",
        "netns",
        "exec",
        &dest_ns,
        "sysctl",
        "-q",
        "-w",
        "net.ipv4.ip_forward=1",
    ]);
    must(&[
        "ip",
        "-n",
        &dest_ns,
        "addr",
        "add",
        &format!("{RESOLVER}/24"),
        "dev",
        "eth0",
    ]);
    let rules = root.join("destination.nft");
    std::fs::write(&rules, destination_rules()).unwrap();
    must(&[
        "ip",
        "netns",
        "exec",
        &dest_ns,
        "nft",
        "-f",
        rules.to_str().unwrap(),
    ]);

    let (middle, middle_config) = prepare_relay(root, "middle", MIDDLE, None);
    let ports = format!(
        "[\"accept {ECHO_PORT}\", \"accept {CANARY_PORT}\", \"accept {DNS_PORT}\", \"reject *\"]"
    );
    let upstream = format!("\"{RESOLVER}:{DNS_PORT}\"");
    // No directory here: the exit trusts the middle by configuration.
    let trusted = format!("[\"{}\"]", middle.id);
    let exit_edits = [
        ("ports", ports.as_str()),
        ("dns_upstream", upstream.as_str()),
        ("trusted_relays", trusted.as_str()),
    ];
    let (exit, exit_config) = prepare_relay(root, "exit", EXIT, Some(&exit_edits));
    for (role, config) in [("m", &middle_config), ("e", &exit_config)] {
        netns::run_relay(&mut net, role, config);
    }
    let canary_log = root.join("canary.log");
    let log_env = |path: &Path| vec![("TRXP_LOG", path.display().to_string())];
    start(
        &mut net,
        helper(&exit_ns, "exit_host_canary", &log_env(&canary_log)).stdout(Stdio::null()),
    );
    let dns_log = root.join("upstream-dns.log");
    start(
        &mut net,
        helper(&dest_ns, "destination_host", &log_env(&dns_log)).stdout(Stdio::null()),
    );

    let hops = [&middle, &exit]
        .iter()
        .map(|hop| format!("{} {} {}", hop.id, hop.onion_key.to_hex(), hop.addresses[0]))
        .collect::<Vec<_>>()
        .join(",");
    let client = helper(
        &net.ns("c"),
        "client_attacks_the_exit",
        &[("TRXP_PATH", hops)],
    )
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&client.stdout);
    let stderr = String::from_utf8_lossy(&client.stderr);

    // What arrived, whatever the client concluded.
    assert_eq!(
        seen_at_destination(&net, "gre"),
        0,
        "GRE reached the destination"
    );
    assert_eq!(
        seen_at_destination(&net, "sctp"),
        0,
        "SCTP reached the destination"
    );
    let canary = std::fs::read_to_string(&canary_log).unwrap_or_default();
    let asked = std::fs::read_to_string(&dns_log).unwrap_or_default();
    for private in ["in-addr.arpa", "internal", "direct.example"] {
        assert!(!asked.contains(private), "the upstream was asked: {asked}");
    }
    assert!(
        canary.is_empty(),
        "a client reached the exit host's own service: {canary}"
    );
    assert!(
        client.status.success() && stdout.contains("client checks passed"),
        "client in its namespace failed:\n{stdout}\n{stderr}"
    );
    let counted = |line: &str| metric_in(&exit_ns, line);
    for (line, count) in [
        ("trine_relay_exit_refused_total{rule=\"protocol\"}", 2),
        ("trine_relay_exit_refused_total{rule=\"own_address\"}", 2),
        (
            "trine_relay_exit_dns_refused_total{reason=\"private_reverse\"}",
            2,
        ),
        (
            "trine_relay_exit_dns_refused_total{reason=\"private_name\"}",
            1,
        ),
        ("trine_relay_exit_dns_servfail_total", 3),
    ] {
        assert_eq!(counted(line), count, "{line}");
    }
}

/// Runs in the destination namespace: a UDP echo on `ECHO_PORT`, and the
/// exit's upstream resolver on `DNS_PORT` (see [`fake_resolver`]).
#[test]
#[ignore = "helper: run inside a namespace by the exit policy test"]
fn destination_host() {
    if !is_helper() {
        return;
    }
    let dns = UdpSocket::bind((RESOLVER, DNS_PORT)).unwrap();
    let log = std::env::var("TRXP_LOG").unwrap();
    std::thread::spawn(move || fake_resolver(&dns, Path::new(&log)));
    let echo = UdpSocket::bind((DEST, ECHO_PORT)).unwrap();
    let mut buf = [0; 2048];
    while let Ok((len, from)) = echo.recv_from(&mut buf) {
        let _ = echo.send_to(&buf[..len], from);
    }
}

/// Logs each name it is asked and answers it: `rebind4.*` with
/// 127.0.0.1, `rebind10.*` with 10.1.2.3, `rebind6.*` with ::1 (AAAA),
/// anything else with the destination's address.
fn fake_resolver(socket: &UdpSocket, log: &Path) {
    let mut buf = [0; 2048];
    while let Ok((len, from)) = socket.recv_from(&mut buf) {
        let query = &buf[..len];
        let (name, end) = question_name(query);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        writeln!(file, "{name}").unwrap();
        let (rtype, data) = if name.starts_with("rebind4.") {
            (1u16, vec![127, 0, 0, 1])
        } else if name.starts_with("rebind10.") {
            (1, vec![10, 1, 2, 3])
        } else if name.starts_with("rebind6.") {
            (28, std::net::Ipv6Addr::LOCALHOST.octets().to_vec())
        } else {
            (1, DEST.octets().to_vec())
        };
        let mut answer = query[..end].to_vec();
        answer[2] |= 0x80; // QR
        answer[3] = 0x80; // RA, NOERROR
        answer[6..12].copy_from_slice(&[0, 1, 0, 0, 0, 0]);
        answer.extend_from_slice(&[0xc0, 12]);
        answer.extend_from_slice(&rtype.to_be_bytes());
        answer.extend_from_slice(&[0, 1, 0, 0, 0, 60]);
        answer.extend_from_slice(&u16::try_from(data.len()).unwrap().to_be_bytes());
        answer.extend_from_slice(&data);
        let _ = socket.send_to(&answer, from);
    }
}

/// The dotted question name of a DNS message and where its question ends.
fn question_name(message: &[u8]) -> (String, usize) {
    let mut at = 12;
    let mut labels = Vec::new();
    while message[at] != 0 {
        let len = usize::from(message[at]);
        labels.push(String::from_utf8_lossy(&message[at + 1..at + 1 + len]).to_string());
        at += 1 + len;
    }
    (labels.join("."), at + 1 + 4)
}

/// A recursive query for `name` of `qtype`, with `id`.
fn dns_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut query = id.to_be_bytes().to_vec();
    query.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        query.push(u8::try_from(label.len()).unwrap());
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0]);
    query.extend_from_slice(&qtype.to_be_bytes());
    query.extend_from_slice(&[0, 1]);
    query
}

/// Runs in the exit's namespace: a service of the exit host, logging every
/// datagram that reaches it.
#[test]
#[ignore = "helper: run inside a namespace by the exit policy test"]
fn exit_host_canary() {
    if !is_helper() {
        return;
    }
    let log = std::env::var("TRXP_LOG").unwrap();
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, CANARY_PORT)).unwrap();
    let mut buf = [0; 2048];
    while let Ok((len, from)) = socket.recv_from(&mut buf) {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        writeln!(file, "{len} bytes from {from}").unwrap();
    }
}

/// Runs in the client's namespace: every attack, through a two-hop
/// circuit. Prints "client checks passed" at the end.
#[test]
#[ignore = "helper: run inside a namespace by the exit policy test"]
fn client_attacks_the_exit() {
    if !is_helper() {
        return;
    }
    let path: Vec<HopSpec> = std::env::var("TRXP_PATH")
        .unwrap()
        .split(',')
        .map(|hop| {
            let fields: Vec<&str> = hop.split(' ').collect();
            HopSpec {
                id: RelayId::from_hex(fields[0]).unwrap(),
                onion_key: OnionPublicKey::from_hex(fields[1]).unwrap(),
                addresses: vec![fields[2].parse().unwrap()],
            }
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(attacks(path));
    println!("client checks passed");
}

const WAIT: Duration = Duration::from_secs(5);

async fn attacks(path: Vec<HopSpec>) {
    let mut tunnel = Tunnel::open((CLIENT, 0).into(), path, Duration::from_secs(30)).await;
    let echo = SocketAddr::from((DEST, ECHO_PORT));

    // Allowed traffic flows (and proves the path works).
    tunnel.send(&udp_packet(40_000, echo, b"before"));
    tunnel
        .expect("the echo", WAIT, |p| {
            udp_payload_from(p, echo).is_some_and(|payload| payload == b"before")
        })
        .await;

    // (a) Protocols without ports under a `reject *`-style policy: GRE
    // carrying an inner packet, and an SCTP INIT to a rejected port.
    let inner = ipv4_packet(Ipv4Addr::new(10, 0, 0, 1), 17, &[0; 8]);
    let mut gre = vec![0, 0, 0x08, 0x00];
    gre.extend_from_slice(&inner);
    tunnel.send(&ipv4_packet(DEST, GRE, &gre));
    tunnel
        .expect("ICMP prohibited about GRE", WAIT, |p| {
            is_prohibited(p, DEST, GRE)
        })
        .await;
    tunnel.send(&ipv4_packet(DEST, SCTP, &sctp_init(40_001, 9)));
    tunnel
        .expect("ICMP prohibited about SCTP", WAIT, |p| {
            is_prohibited(p, DEST, SCTP)
        })
        .await;

    // (b) The exit's advertised address, on none of its interfaces.
    let canary = SocketAddr::from((ADVERTISED, CANARY_PORT));
    tunnel.send(&udp_packet(40_002, canary, b"hairpin"));
    tunnel
        .expect("ICMP prohibited about the advertised address", WAIT, |p| {
            is_prohibited(p, ADVERTISED, 17)
        })
        .await;

    // (c) DNS queries into the exit's private world are refused.
    const PTR: u16 = 12;
    const A: u16 = 1;
    const AAAA: u16 = 28;
    const NOERROR: u8 = 0;
    const SERVFAIL: u8 = 2;
    const REFUSED: u8 = 5;
    for (id, name, qtype) in [
        (1, "3.2.1.10.in-addr.arpa", PTR),
        (2, "1.0.0.127.in-addr.arpa", PTR),
        (3, "metadata.google.internal", A),
    ] {
        let answer = ask(&mut tunnel, id, name, qtype).await;
        assert_eq!(answer[3] & 0xf, REFUSED, "{name} was not refused");
    }
    // (d) Upstream answers pointing into reserved networks never arrive.
    for (id, name, qtype, address) in [
        (4, "rebind4.example", A, vec![127, 0, 0, 1]),
        (5, "rebind10.example", A, vec![10, 1, 2, 3]),
        (
            6,
            "rebind6.example",
            AAAA,
            std::net::Ipv6Addr::LOCALHOST.octets().to_vec(),
        ),
    ] {
        let answer = ask(&mut tunnel, id, name, qtype).await;
        assert_eq!(answer[3] & 0xf, SERVFAIL, "{name}: {answer:?}");
        assert_eq!(answer[6..8], [0, 0], "{name}: a record survived");
        assert!(
            !answer.windows(address.len()).any(|w| w == address),
            "{name}: the reserved address reached the client"
        );
    }
    let answer = ask(&mut tunnel, 7, "public.example", A).await;
    assert_eq!(answer[3] & 0xf, NOERROR);
    assert!(
        answer.ends_with(&DEST.octets()),
        "public.example: {answer:?}"
    );

    // (e) A query straight to the upstream, past the screen, is refused.
    let upstream = SocketAddr::from((RESOLVER, DNS_PORT));
    let direct = dns_query(8, "direct.example", A);
    tunnel.send(&udp_packet(42_000, upstream, &direct));
    tunnel
        .expect("ICMP prohibited about the upstream resolver", WAIT, |p| {
            is_prohibited(p, RESOLVER, 17)
        })
        .await;

    // Allowed traffic still flows after the refusals.
    tunnel.send(&udp_packet(40_000, echo, b"after"));
    tunnel
        .expect("the echo after the refusals", WAIT, |p| {
            udp_payload_from(p, echo).is_some_and(|payload| payload == b"after")
        })
        .await;
}

/// Asks the tunnel's resolver; its answer with the same ID.
async fn ask(tunnel: &mut Tunnel, id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let resolver = SocketAddr::from((ip::TUNNEL_RESOLVER_V4, DNS_PORT));
    tunnel.send(&udp_packet(
        41_000 + id,
        resolver,
        &dns_query(id, name, qtype),
    ));
    let packet = tunnel
        .expect(&format!("the answer about {name}"), WAIT, |p| {
            udp_payload_from(p, resolver).is_some_and(|a| a.get(..2) == Some(&id.to_be_bytes()[..]))
        })
        .await;
    udp_payload_from(&packet, resolver).unwrap()
}

/// An SCTP packet holding an INIT chunk, its CRC32c checksum computed.
fn sctp_init(src_port: u16, dst_port: u16) -> Vec<u8> {
    let mut packet = Vec::new();
    packet.extend_from_slice(&src_port.to_be_bytes());
    packet.extend_from_slice(&dst_port.to_be_bytes());
    packet.extend_from_slice(&[0; 4]); // verification tag: 0 in an INIT
    packet.extend_from_slice(&[0; 4]); // checksum, filled in below
    // INIT: type 1, flags, length 20, initiate tag, a_rwnd, streams, TSN.
    packet.extend_from_slice(&[1, 0, 0, 20]);
    packet.extend_from_slice(&0x7472_6970u32.to_be_bytes());
    packet.extend_from_slice(&65_535u32.to_be_bytes());
    packet.extend_from_slice(&[0, 1, 0, 1]);
    packet.extend_from_slice(&1u32.to_be_bytes());
    let crc = crc32c(&packet);
    packet[8..12].copy_from_slice(&crc.to_le_bytes());
    packet
}

/// CRC32c (Castagnoli), bit by bit: small and obviously right.
fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
