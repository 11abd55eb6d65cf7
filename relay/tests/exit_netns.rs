//! The exit, for real, in network namespaces (needs root, `ip` and `nft`).
//!
//! Four namespaces joined by a bridge in a hub namespace, all on
//! 198.18.0.0/24 and never linked to the host's network: a client
//! (198.18.0.2), an exit relay (198.18.0.3) and a web host (198.18.0.4)
//! that answers UDP and TCP with the source address it saw and serves as
//! the exit's upstream "DNS" resolver. The client (this test binary,
//! re-run inside the client namespace) builds a one-hop circuit to the exit
//! and checks, by what comes back through the circuit: a UDP and a TCP
//! exchange reach the web host, which saw the exit's address, not the
//! client's; DNS to the tunnel's resolver is answered via the upstream;
//! packets to the exit's loopback, a private network and the exit's own
//! address are refused with ICMP "administratively prohibited".
//!
//! Without root this test fails; set TRINE_SKIP_NETNS=1 to skip it
//! knowingly. Namespaces are named `trxt<pid>…`; leftovers of dead runs are
//! removed first, and this run's are removed even when it fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::rngs::OsRng;
use trine_circuit::client::Received;
use trine_circuit::ip::{self, TUNNEL_CLIENT_V4, TUNNEL_RESOLVER_V4};
use trine_circuit::{
    Channel, ClientCircuit, ClientConfig, ClientEvent, HopSpec, OnionSecretKey, RelayId,
};
use trine_link::{Endpoint, LinkConfig};
use trine_testnet::{Network, Node, must, netns_tests_enabled, sh};

const BIN: &str = env!("CARGO_BIN_EXE_trine-relay");
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const EXIT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 3);
const WEB: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 4);
const EXIT_PORT: u16 = 9443;
const UDP_PORT: u16 = 7000;
const TCP_PORT: u16 = 8000;
const DNS_PORT: u16 = 53;
const PREFIX: &str = "trxt";

fn build_network() -> Network {
    let node = |role, ipv4| Node {
        role,
        ipv4,
        ipv6: None,
    };
    Network::build(
        PREFIX,
        &[
            node("c", "198.18.0.2/24"),
            node("e", "198.18.0.3/24"),
            node("w", "198.18.0.4/24"),
        ],
    )
}

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("trine-exit-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn onion_key(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("keys/onion.key")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("secret "))
        .unwrap()
        .to_string()
}

/// Re-runs this test binary inside `namespace`, running one ignored test.
fn helper(namespace: &str, test: &str, env: &[(&str, String)]) -> Command {
    let me = std::env::current_exe().unwrap();
    let mut command = Command::new("ip");
    command
        .args(["netns", "exec", namespace])
        .arg(me)
        .args([
            "--exact",
            test,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("TRINE_NETNS_HELPER", "1");
    for (key, value) in env {
        command.env(key, value);
    }
    command
}

#[test]
fn exit_forwards_udp_tcp_and_dns_and_refuses_its_own_networks() {
    if !netns_tests_enabled() {
        return;
    }
    let mut namespaces = build_network();
    let dir = scratch();

    // The exit relay.
    let out = Command::new(BIN)
        .args(["init", "--exit", "--nickname", "exit1", "--listen"])
        .arg(format!("{EXIT}:{EXIT_PORT}"))
        .arg("--dir")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fingerprint = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let config = dir.join("relay.toml");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "dns_upstream = \"\"",
        &format!("dns_upstream = \"{WEB}:{DNS_PORT}\""),
    );
    std::fs::write(&config, text).unwrap();
    let exit_ns = namespaces.ns("e");
    let exit = Command::new("ip")
        .args(["netns", "exec", &exit_ns, BIN, "run", "--config"])
        .arg(&config)
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    namespaces.children.push(exit);

    // The web host.
    let web = helper(&namespaces.ns("w"), "web_host", &[])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    namespaces.children.push(web);

    // The client: its exit status is the verdict.
    let out = helper(
        &namespaces.ns("c"),
        "client_through_exit",
        &[
            ("TRINE_EXIT_ID", fingerprint),
            ("TRINE_EXIT_ONION", onion_key(&dir)),
        ],
    )
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("client checks passed"),
        "client in namespace failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Stopping the exit removes its nftables table.
    let exit = &mut namespaces.children[0];
    must(&["kill", "-TERM", &exit.id().to_string()]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while exit.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "exit did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    let tables = sh(&["ip", "netns", "exec", &exit_ns, "nft", "list", "tables"]);
    assert!(
        !String::from_utf8_lossy(&tables.stdout).contains("trine_exit"),
        "nftables table left behind"
    );
    drop(namespaces);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs in the web namespace: answers UDP on 7000 and TCP on 8000 with the
/// address it saw, and "resolves" on 53 by answering the query reversed.
#[test]
#[ignore = "helper: run inside a namespace by the exit test"]
fn web_host() {
    if std::env::var_os("TRINE_NETNS_HELPER").is_none() {
        return;
    }
    let udp = UdpSocket::bind((WEB, UDP_PORT)).unwrap();
    std::thread::spawn(move || {
        let mut buf = [0; 2048];
        while let Ok((_, from)) = udp.recv_from(&mut buf) {
            let _ = udp.send_to(format!("saw {from}").as_bytes(), from);
        }
    });
    let dns = UdpSocket::bind((WEB, DNS_PORT)).unwrap();
    std::thread::spawn(move || {
        let mut buf = [0; 2048];
        while let Ok((len, from)) = dns.recv_from(&mut buf) {
            let mut answer = buf[..len].to_vec();
            answer.reverse();
            let _ = dns.send_to(&answer, from);
        }
    });
    let tcp = TcpListener::bind((WEB, TCP_PORT)).unwrap();
    for stream in tcp.incoming() {
        let Ok(mut stream) = stream else { continue };
        let peer = stream.peer_addr().unwrap();
        let _ = stream.write_all(format!("saw {peer}").as_bytes());
        // Keep it open briefly so the data is not lost to a reset.
        let mut sink = [0; 64];
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = stream.read(&mut sink);
    }
}

/// Runs in the client namespace: one-hop circuit to the exit, then every
/// check. Prints "client checks passed" at the end.
#[test]
#[ignore = "helper: run inside a namespace by the exit test"]
fn client_through_exit() {
    if std::env::var_os("TRINE_NETNS_HELPER").is_none() {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(client_checks());
    println!("client checks passed");
}

struct Tunnel {
    circuit: ClientCircuit,
    link: trine_link::Link,
    stream: trine_link::CircuitStream,
}

impl Tunnel {
    async fn open() -> Self {
        let id = RelayId::from_hex(&std::env::var("TRINE_EXIT_ID").unwrap()).unwrap();
        let secret = std::env::var("TRINE_EXIT_ONION").unwrap();
        let bytes: Vec<u8> = (0..64)
            .step_by(2)
            .map(|i| u8::from_str_radix(&secret[i..i + 2], 16).unwrap())
            .collect();
        let onion_key = OnionSecretKey::from_secret_bytes(bytes.try_into().unwrap()).public_key();
        let hop = HopSpec {
            id,
            onion_key,
            addresses: vec![SocketAddr::from((EXIT, EXIT_PORT))],
        };
        let endpoint = Endpoint::client((CLIENT, 0).into(), &LinkConfig::default()).unwrap();
        // The exit is starting in its own namespace: retry until it answers.
        let deadline = Instant::now() + Duration::from_secs(20);
        let link = loop {
            match endpoint.connect(hop.addresses[0], id).await {
                Ok(link) => break link,
                Err(error) => {
                    assert!(Instant::now() < deadline, "exit never answered: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        let stream = link.open_circuit().await.unwrap();
        let circuit = ClientCircuit::new(
            vec![hop],
            &ClientConfig::default(),
            Instant::now(),
            &mut OsRng,
        )
        .unwrap();
        let mut tunnel = Self {
            circuit,
            link,
            stream,
        };
        tunnel.flush().await;
        let mut buf = Vec::new();
        loop {
            assert!(
                tunnel.stream.read_cell(&mut buf).await.unwrap(),
                "stream closed"
            );
            let _ = tunnel.circuit.handle_cell(Instant::now(), &mut buf);
            tunnel.flush().await;
            while let Some(event) = tunnel.circuit.poll_event() {
                match event {
                    ClientEvent::Ready => return tunnel,
                    ClientEvent::Failed(failure) => panic!("circuit failed: {failure:?}"),
                    _ => {}
                }
            }
        }
    }

    async fn flush(&mut self) {
        while let Some(transmit) = self.circuit.poll_transmit() {
            match transmit.channel {
                Channel::Control => self.stream.write_cell(&transmit.bytes).await.unwrap(),
                Channel::Datagram => self
                    .link
                    .send_datagram(self.stream.id(), &transmit.bytes)
                    .unwrap(),
            }
        }
    }

    fn send(&mut self, packet: &[u8]) {
        let mut cell = Vec::new();
        trine_circuit::cell::data_cell(&mut cell, packet);
        assert!(self.circuit.seal_data(&mut cell));
        self.link.send_datagram(self.stream.id(), &cell).unwrap();
    }

    /// The next packet back through the circuit that `wanted` accepts.
    async fn receive(&mut self, mut wanted: impl FnMut(&[u8]) -> bool) -> Vec<u8> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let datagram = tokio::time::timeout_at(deadline, self.link.read_datagram())
                .await
                .expect("no answer through the circuit within 5 s")
                .unwrap();
            let mut cell = datagram.1.to_vec();
            if let Ok(Received::Packet(range)) = self.circuit.handle_cell(Instant::now(), &mut cell)
            {
                let packet = cell[range].to_vec();
                if wanted(&packet) {
                    return packet;
                }
            }
        }
    }
}

fn udp_packet(dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let mut packet = Vec::new();
    ip::build_udp((TUNNEL_CLIENT_V4, 40_000).into(), dst, payload, &mut packet).unwrap();
    packet
}

/// The UDP payload of `packet` if it is UDP from `from`.
fn udp_from(packet: &[u8], from: SocketAddr) -> Option<Vec<u8>> {
    let info = ip::parse(packet).ok()?;
    if info.protocol != ip::proto::UDP
        || info.src != from.ip()
        || info.src_port != Some(from.port())
    {
        return None;
    }
    assert_eq!(info.dst, IpAddr::from(TUNNEL_CLIENT_V4));
    assert!(ip::transport_checksum_ok(packet).unwrap());
    Some(packet[ip::udp_payload(packet, &info).ok()?].to_vec())
}

/// Whether `packet` is an ICMP "administratively prohibited" about a
/// packet sent to `about`.
fn is_prohibited(packet: &[u8], about: Ipv4Addr) -> bool {
    let Ok(info) = ip::parse(packet) else {
        return false;
    };
    let icmp = &packet[info.transport_offset..];
    // Type 3 code 13; the quoted header's destination at 8 + 16.
    info.protocol == ip::proto::ICMP
        && icmp.len() >= 8 + 20
        && icmp[0] == 3
        && icmp[1] == 13
        && icmp[8 + 16..8 + 20] == about.octets()
}

/// A TCP segment from the client's inner address (checksums computed here,
/// independently of the code under test).
fn tcp_segment(dst: SocketAddr, seq: u32, ack: u32, flags: u8) -> Vec<u8> {
    let IpAddr::V4(dst_ip) = dst.ip() else {
        panic!("IPv4 only")
    };
    let mut tcp = Vec::with_capacity(20);
    tcp.extend_from_slice(&40_001u16.to_be_bytes());
    tcp.extend_from_slice(&dst.port().to_be_bytes());
    tcp.extend_from_slice(&seq.to_be_bytes());
    tcp.extend_from_slice(&ack.to_be_bytes());
    tcp.extend_from_slice(&[5 << 4, flags, 0xff, 0xff, 0, 0, 0, 0]);
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&TUNNEL_CLIENT_V4.octets());
    pseudo.extend_from_slice(&dst_ip.octets());
    pseudo.extend_from_slice(&[0, ip::proto::TCP, 0, 20]);
    pseudo.extend_from_slice(&tcp);
    let sum = checksum(&pseudo);
    tcp[16..18].copy_from_slice(&sum.to_be_bytes());
    let mut packet = vec![0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, ip::proto::TCP, 0, 0];
    packet.extend_from_slice(&TUNNEL_CLIENT_V4.octets());
    packet.extend_from_slice(&dst_ip.octets());
    let sum = checksum(&packet);
    packet[10..12].copy_from_slice(&sum.to_be_bytes());
    packet.extend_from_slice(&tcp);
    packet
}

fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

async fn client_checks() {
    let mut tunnel = Tunnel::open().await;
    let exit_seen = format!("saw {EXIT}:");

    // UDP: the web host answers with the source it saw: the exit's.
    let web_udp = SocketAddr::from((WEB, UDP_PORT));
    tunnel.send(&udp_packet(web_udp, b"hello"));
    let answer = tunnel.receive(|p| udp_from(p, web_udp).is_some()).await;
    let text = String::from_utf8(udp_from(&answer, web_udp).unwrap()).unwrap();
    assert!(text.starts_with(&exit_seen), "web host saw {text}");
    assert!(!text.contains(&CLIENT.to_string()));

    // DNS to the tunnel's resolver goes to the exit's upstream and back.
    let resolver = SocketAddr::from((TUNNEL_RESOLVER_V4, DNS_PORT));
    tunnel.send(&udp_packet(resolver, b"query-1234"));
    let answer = tunnel.receive(|p| udp_from(p, resolver).is_some()).await;
    assert_eq!(udp_from(&answer, resolver).unwrap(), b"4321-yreuq");

    // TCP: handshake with the web host's kernel, then its greeting.
    let web_tcp = SocketAddr::from((WEB, TCP_PORT));
    const SYN: u8 = 0x02;
    const ACK: u8 = 0x10;
    let is_tcp_from_web = |p: &[u8]| {
        ip::parse(p).is_ok_and(|i| i.protocol == ip::proto::TCP && i.src_port == Some(TCP_PORT))
    };
    tunnel.send(&tcp_segment(web_tcp, 1000, 0, SYN));
    let syn_ack = tunnel.receive(is_tcp_from_web).await;
    assert!(ip::transport_checksum_ok(&syn_ack).unwrap());
    let tcp = &syn_ack[ip::parse(&syn_ack).unwrap().transport_offset..];
    assert_eq!(tcp[13] & (SYN | ACK), SYN | ACK, "not a SYN-ACK");
    let server_seq = u32::from_be_bytes(tcp[4..8].try_into().unwrap());
    tunnel.send(&tcp_segment(web_tcp, 1001, server_seq.wrapping_add(1), ACK));
    let greeting = tunnel
        .receive(|p| is_tcp_from_web(p) && p.len() > ip::parse(p).unwrap().transport_offset + 20)
        .await;
    let offset = ip::parse(&greeting).unwrap().transport_offset;
    let header_len = usize::from(greeting[offset + 12] >> 4) * 4;
    let text = String::from_utf8(greeting[offset + header_len..].to_vec()).unwrap();
    assert!(text.starts_with(&exit_seen), "web host saw {text} over TCP");

    // Refused: the exit's loopback, a private network, the exit itself.
    for refused in [Ipv4Addr::LOCALHOST, Ipv4Addr::new(10, 1, 2, 3), EXIT] {
        tunnel.send(&udp_packet((refused, UDP_PORT).into(), b"let me in"));
        tunnel.receive(|p| is_prohibited(p, refused)).await;
    }
}
