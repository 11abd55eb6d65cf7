//! Helpers for `trine-relay` tests in network namespaces: re-running this
//! test binary inside a namespace (as a client, a destination host or a
//! fake resolver), a client tunnel through a real circuit that sends raw
//! IP packets and collects what comes back, and raw packets built here,
//! independently of the code under test. Every wait polls against a
//! deadline.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

use trine_circuit::client::Received;
use trine_circuit::ip::{self, TUNNEL_CLIENT_V4};
use trine_circuit::{ClientCircuit, ClientConfig, ClientEvent, HopSpec};
use trine_link::{CircuitStream, Endpoint, Link, LinkConfig};

/// Set in the environment of a helper run inside a namespace.
const HELPER_ENV: &str = "TRINE_NETNS_HELPER";

/// Whether this process is a helper started by [`helper`]. Helper tests
/// return at once when run any other way.
pub fn is_helper() -> bool {
    std::env::var_os(HELPER_ENV).is_some()
}

/// A command that runs the ignored test `test` of this binary inside
/// `namespace`, with `env` set.
pub fn helper(namespace: &str, test: &str, env: &[(&str, String)]) -> Command {
    let mut command = Command::new("ip");
    command
        .args(["netns", "exec", namespace])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", test, "--ignored", "--nocapture"])
        .args(["--test-threads", "1"])
        .env(HELPER_ENV, "1");
    for (key, value) in env {
        command.env(key, value);
    }
    command
}

/// The Prometheus text of the relay whose metrics listen on
/// 127.0.0.1:9464 inside `namespace` (the template's default); `None`
/// while it does not answer.
pub fn metrics_in(namespace: &str) -> Option<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", namespace, "bash", "-c"])
        .arg(
            "exec 3<>/dev/tcp/127.0.0.1/9464 && printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' >&3 \
             && cat <&3",
        )
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.success() && text.contains("trine_relay_")).then_some(text)
}

/// The value of the metric line starting with `line` of the relay in
/// `namespace` (see [`metrics_in`]); 0 when absent or not answering.
pub fn metric_in(namespace: &str, line: &str) -> u64 {
    metrics_in(namespace)
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(line))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

/// Starts `trine-relay run --config CONFIG` in `role`'s namespace of
/// `net` (its errors on this test's stderr); the network kills it when it
/// goes.
pub fn run_relay(net: &mut trine_testnet::Network, role: &str, config: &std::path::Path) {
    let child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &net.ns(role),
            crate::common::BIN,
            "run",
            "--config",
        ])
        .arg(config)
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    net.children.push(child);
}

/// Packets counted by the rule with the comment `name` in table `inet
/// table` of `role`'s namespace; panics if there is no such rule.
pub fn counted(net: &trine_testnet::Network, role: &str, table: &str, name: &str) -> u64 {
    let out = net.exec(role, &["nft", "list", "table", "inet", table]);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|line| line.contains(&format!("comment \"{name}\"")))
        .unwrap_or_else(|| panic!("no {name} counter in:\n{text}"));
    let packets = line
        .split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1);
    packets.and_then(|n| n.parse().ok()).unwrap()
}

/// A client's circuit over a real link, for sending raw IP packets.
pub struct Tunnel {
    _endpoint: Endpoint,
    link: Link,
    stream: CircuitStream,
    circuit: ClientCircuit,
}

impl Tunnel {
    /// Builds a circuit through `path` from `bind`, retrying (the relays
    /// may still be starting) until it is ready or `within` has passed.
    pub async fn open(bind: SocketAddr, path: Vec<HopSpec>, within: Duration) -> Self {
        let endpoint = Endpoint::client(bind, &LinkConfig::default()).unwrap();
        Self::open_with(endpoint, path, within).await
    }

    /// [`Tunnel::open`] over `endpoint` (a client's, or one presenting a
    /// relay identity).
    pub async fn open_with(endpoint: Endpoint, path: Vec<HopSpec>, within: Duration) -> Self {
        let deadline = Instant::now() + within;
        loop {
            match Self::try_open(&endpoint, &path).await {
                Ok((link, stream, circuit)) => {
                    return Self {
                        _endpoint: endpoint,
                        link,
                        stream,
                        circuit,
                    };
                }
                Err(why) => {
                    assert!(
                        Instant::now() < deadline,
                        "no circuit within {within:?}: {why}"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    async fn try_open(
        endpoint: &Endpoint,
        path: &[HopSpec],
    ) -> Result<(Link, CircuitStream, ClientCircuit), String> {
        let first = &path[0];
        let link = endpoint
            .connect(first.addresses[0], first.id)
            .await
            .map_err(|error| format!("connect: {error}"))?;
        let mut stream = link
            .open_circuit()
            .await
            .map_err(|error| format!("open circuit: {error}"))?;
        let mut circuit = ClientCircuit::new(
            path.to_vec(),
            &ClientConfig::default(),
            Instant::now(),
            &mut rand::rngs::OsRng,
        )
        .map_err(|error| format!("{error:?}"))?;
        let mut outcome = None;
        crate::common::drive(
            &mut circuit,
            &link,
            &mut stream,
            Duration::from_secs(5),
            |_, event| {
                let last = matches!(event, ClientEvent::Ready | ClientEvent::Failed(_));
                if last {
                    outcome = Some(event.clone());
                }
                last
            },
        )
        .await;
        match outcome {
            Some(ClientEvent::Ready) => Ok((link, stream, circuit)),
            other => Err(format!("build ended with {other:?}")),
        }
    }

    /// Sends one IP packet through the circuit.
    pub fn send(&mut self, packet: &[u8]) {
        let mut cell = Vec::new();
        trine_circuit::cell::data_cell(&mut cell, packet);
        assert!(self.circuit.seal_data(&mut cell), "cannot seal a DATA cell");
        self.link.send_datagram(self.stream.id(), &cell).unwrap();
    }

    /// The next packet back through the circuit within `within`.
    pub async fn next(&mut self, within: Duration) -> Option<Vec<u8>> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let datagram = tokio::time::timeout_at(deadline, self.link.read_datagram())
                .await
                .ok()?
                .ok()?;
            let mut cell = datagram.1.to_vec();
            if let Ok(Received::Packet(range)) = self.circuit.handle_cell(Instant::now(), &mut cell)
            {
                return Some(cell[range].to_vec());
            }
        }
    }

    /// Closes the link: the circuit goes with it.
    pub fn close(self) {
        self.link.close("done");
    }

    /// Reads packets from the circuit until one satisfies `wanted`, and
    /// returns it; panics naming `what` after `within`.
    pub async fn expect(
        &mut self,
        what: &str,
        within: Duration,
        mut wanted: impl FnMut(&[u8]) -> bool,
    ) -> Vec<u8> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let Ok(datagram) = tokio::time::timeout_at(deadline, self.link.read_datagram()).await
            else {
                panic!("{what}: nothing like it came back within {within:?}");
            };
            let mut cell = datagram.unwrap().1.to_vec();
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

/// An IPv4 packet from the tunnel's client address to `dst` carrying
/// `payload` as protocol `protocol`, header checksum included.
pub fn ipv4_packet(dst: Ipv4Addr, protocol: u8, payload: &[u8]) -> Vec<u8> {
    let total = u16::try_from(20 + payload.len()).unwrap().to_be_bytes();
    let mut packet = vec![
        0x45, 0, total[0], total[1], 0, 0, 0x40, 0, 64, protocol, 0, 0,
    ];
    packet.extend_from_slice(&TUNNEL_CLIENT_V4.octets());
    packet.extend_from_slice(&dst.octets());
    let sum = internet_checksum(&packet);
    packet[10..12].copy_from_slice(&sum.to_be_bytes());
    packet.extend_from_slice(payload);
    packet
}

/// A UDP packet from the tunnel's client address, port `from_port`.
pub fn udp_packet(from_port: u16, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let mut packet = Vec::new();
    let src = SocketAddr::from((TUNNEL_CLIENT_V4, from_port));
    ip::build_udp(src, dst, payload, &mut packet).unwrap();
    packet
}

/// The RFC 1071 checksum of `bytes`.
pub fn internet_checksum(bytes: &[u8]) -> u16 {
    let mut sum = 0u32;
    for pair in bytes.chunks(2) {
        let high = u32::from(pair[0]) << 8;
        sum += high | pair.get(1).map_or(0, |low| u32::from(*low));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The payload of `packet` if it is UDP from `from` to the tunnel client.
pub fn udp_payload_from(packet: &[u8], from: SocketAddr) -> Option<Vec<u8>> {
    let info = ip::parse(packet).ok()?;
    let from_there = info.protocol == ip::proto::UDP
        && info.src == from.ip()
        && info.src_port == Some(from.port())
        && info.dst == IpAddr::from(TUNNEL_CLIENT_V4)
        && ip::transport_checksum_ok(packet).unwrap_or(false);
    if !from_there {
        return None;
    }
    Some(packet[ip::udp_payload(packet, &info).ok()?].to_vec())
}

/// Whether `packet` is an ICMP "communication administratively
/// prohibited" (type 3 code 13) about a packet of `protocol` to `about`.
pub fn is_prohibited(packet: &[u8], about: Ipv4Addr, protocol: u8) -> bool {
    let Ok(info) = ip::parse(packet) else {
        return false;
    };
    let Some(icmp) = packet.get(info.transport_offset..) else {
        return false;
    };
    // After the 8-byte ICMP header, the quoted IPv4 header: its protocol
    // at 9, its destination at 16.
    info.protocol == ip::proto::ICMP
        && icmp.len() >= 8 + 20
        && icmp[..2] == [3, 13]
        && icmp[8 + 9] == protocol
        && icmp[8 + 16..8 + 20] == about.octets()
}
