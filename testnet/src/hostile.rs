//! The hostile exit's playbook: what an exit operator who changed their
//! relay does to the clients whose circuits end there, for the adversarial
//! end-to-end tests (`trine-hostile-exit` runs it inside the real relay
//! daemon through `trine_relay::daemon::ExitTap`).
//!
//! The test steers it through the tunnel itself: a UDP packet a client
//! sends to port [`TRIGGER_PORT`] carries commands, one per line, and the
//! exit answers each with a crafted packet sealed back to that client:
//!
//! ```text
//! udp SRC DST:PORT    a UDP datagram from SRC (an address, port 7, or
//!                     ADDRESS:PORT) to DST:PORT
//! syn SRC DST:PORT    a TCP SYN from SRC:40000 to DST:PORT
//! ping SRC DST        an ICMP (ICMPv6) echo request from SRC to DST
//! ```
//!
//! What the attacker learns is logged, one line per packet: every packet a
//! client sends whose source is not the tunnel's address (a LAN address
//! showing through) or whose destination is not an ordinary one (local
//! discovery: broadcast, multicast, link-local), and every packet sent
//! back to a source the commands used (an answer: the crafted packet
//! reached the client's stack).

use std::io::Write;
use std::net::{IpAddr, SocketAddr};

use trine_circuit::ip::{self, TUNNEL_CLIENT_V4, TUNNEL_CLIENT_V6, proto};

/// The UDP port whose packets carry commands.
pub const TRIGGER_PORT: u16 = 6666;
/// Payload of the crafted UDP datagrams.
pub const PAYLOAD: &[u8] = b"from the hostile exit";

/// The playbook's state: where it logs and which sources it used.
pub struct Playbook<W> {
    log: W,
    sources: Vec<IpAddr>,
}

impl<W: Write> Playbook<W> {
    /// A playbook logging to `log`.
    pub fn new(log: W) -> Self {
        Self {
            log,
            sources: Vec::new(),
        }
    }

    /// A packet a client sent: logged if it tells the attacker something,
    /// answered with crafted packets if it carries commands.
    pub fn on_client_packet(&mut self, packet: &[u8]) -> Vec<Vec<u8>> {
        let Ok(info) = ip::parse(packet) else {
            return Vec::new();
        };
        let tunnel =
            info.src == IpAddr::V4(TUNNEL_CLIENT_V4) || info.src == IpAddr::V6(TUNNEL_CLIENT_V6);
        let trigger = info.protocol == proto::UDP && info.dst_port == Some(TRIGGER_PORT);
        if !tunnel || !ordinary(info.dst) || (self.sources.contains(&info.dst) && !trigger) {
            let _ = writeln!(self.log, "{}", describe(packet, &info));
            let _ = self.log.flush();
        }
        if !trigger {
            return Vec::new();
        }
        let Some(payload) = ip::udp_payload(packet, &info)
            .ok()
            .and_then(|range| packet.get(range))
        else {
            return Vec::new();
        };
        let commands = String::from_utf8_lossy(payload).into_owned();
        let _ = writeln!(self.log, "trigger: {} commands", commands.lines().count());
        let mut crafted = Vec::new();
        for line in commands.lines() {
            match craft(line) {
                Some((source, packet)) => {
                    if !self.sources.contains(&source) {
                        self.sources.push(source);
                    }
                    crafted.push(packet);
                }
                None => {
                    let _ = writeln!(self.log, "bad command {line:?}");
                }
            }
        }
        crafted
    }
}

/// Whether `address` is one a packet to the internet goes to: not
/// multicast, broadcast, link-local or unspecified (local discovery, which
/// tells the exit who the machine is).
fn ordinary(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => {
            !(v4.is_multicast() || v4.is_broadcast() || v4.is_link_local() || v4.is_unspecified())
        }
        IpAddr::V6(v6) => !(v6.is_multicast() || v6.is_unicast_link_local() || v6.is_unspecified()),
    }
}

/// One packet as the attacker sees it.
fn describe(packet: &[u8], info: &ip::PacketInfo) -> String {
    let at = info.transport_offset;
    let detail = match info.protocol {
        proto::TCP => format!(
            "tcp-flags={:#04x}",
            packet.get(at + 13).copied().unwrap_or(0)
        ),
        proto::ICMP | proto::ICMPV6 => {
            format!("icmp-type={}", packet.get(at).copied().unwrap_or(0))
        }
        _ => String::new(),
    };
    format!(
        "seen src={} dst={} proto={} dport={} {detail}",
        info.src,
        info.dst,
        info.protocol,
        info.dst_port
            .map_or_else(|| "-".to_string(), |p| p.to_string()),
    )
}

/// The packet one command line asks for, and its source.
fn craft(line: &str) -> Option<(IpAddr, Vec<u8>)> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let kind = *words.first()?;
    let from = words.get(1)?;
    let from: SocketAddr = match from.parse::<IpAddr>() {
        Ok(address) => SocketAddr::new(address, 7),
        Err(_) => from.parse().ok()?,
    };
    let src = from.ip();
    let mut packet = Vec::new();
    match kind {
        "udp" => {
            let dst: SocketAddr = words.get(2)?.parse().ok()?;
            ip::build_udp(from, dst, PAYLOAD, &mut packet).ok()?;
        }
        "syn" => {
            let dst: SocketAddr = words.get(2)?.parse().ok()?;
            let mut segment = Vec::with_capacity(20);
            segment.extend_from_slice(&40000u16.to_be_bytes());
            segment.extend_from_slice(&dst.port().to_be_bytes());
            segment.extend_from_slice(&1u32.to_be_bytes()); // sequence
            segment.extend_from_slice(&0u32.to_be_bytes()); // acknowledgement
            // Data offset 5 words, SYN, window 65535, checksum, urgent.
            segment.extend_from_slice(&[0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
            ip::build(src, dst.ip(), proto::TCP, &segment, &mut packet).ok()?;
        }
        "ping" => {
            let dst: IpAddr = words.get(2)?.parse().ok()?;
            let (protocol, echo_request) = if dst.is_ipv4() {
                (proto::ICMP, 8)
            } else {
                (proto::ICMPV6, 128)
            };
            let mut message = vec![echo_request, 0, 0, 0, 0x74, 0x72, 0, 1];
            message.extend_from_slice(PAYLOAD);
            ip::build(src, dst, protocol, &message, &mut packet).ok()?;
        }
        _ => return None,
    }
    Some((src, packet))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn trigger(commands: &str) -> Vec<u8> {
        let mut packet = Vec::new();
        let from = SocketAddr::new(IpAddr::V4(TUNNEL_CLIENT_V4), 5555);
        let to: SocketAddr = format!("198.19.66.66:{TRIGGER_PORT}").parse().unwrap();
        ip::build_udp(from, to, commands.as_bytes(), &mut packet).unwrap();
        packet
    }

    #[test]
    fn commands_become_well_formed_packets_and_answers_are_logged() {
        let mut log = Vec::new();
        let mut playbook = Playbook::new(&mut log);
        let crafted = playbook.on_client_packet(&trigger(
            "udp 198.19.66.66:6666 198.18.0.11:7000\nsyn 198.19.66.66 172.22.0.2:22\nping 198.19.66.66 172.22.0.2\nping 2001:db8::66 fd74:726e::2\nnonsense",
        ));
        assert_eq!(crafted.len(), 4);
        for packet in &crafted {
            assert!(ip::transport_checksum_ok(packet).unwrap());
        }
        let udp = ip::parse(&crafted[0]).unwrap();
        assert_eq!((udp.src_port, udp.dst_port), (Some(6666), Some(7000)));
        let syn = ip::parse(&crafted[1]).unwrap();
        assert_eq!((syn.protocol, syn.dst_port), (proto::TCP, Some(22)));
        // An answer to a source it used, and a LAN source showing through.
        let mut answer = Vec::new();
        let client = SocketAddr::new(IpAddr::V4(TUNNEL_CLIENT_V4), 22);
        ip::build_udp(client, "198.19.66.66:7".parse().unwrap(), b"", &mut answer).unwrap();
        assert!(playbook.on_client_packet(&answer).is_empty());
        // Another trigger to the same source is no answer.
        assert_eq!(playbook.on_client_packet(&trigger("")).len(), 0);
        let mut leak = Vec::new();
        let lan = "198.18.0.2:5000".parse().unwrap();
        ip::build_udp(lan, "198.19.1.1:9".parse().unwrap(), b"", &mut leak).unwrap();
        playbook.on_client_packet(&leak);
        let mut discovery = Vec::new();
        let tunnel = SocketAddr::new(IpAddr::V4(TUNNEL_CLIENT_V4), 5000);
        ip::build_udp(
            tunnel,
            "239.255.255.250:1900".parse().unwrap(),
            b"",
            &mut discovery,
        )
        .unwrap();
        playbook.on_client_packet(&discovery);
        let text = String::from_utf8(log).unwrap();
        assert!(text.contains("bad command \"nonsense\""), "{text}");
        assert!(
            text.contains("seen src=172.22.0.2 dst=198.19.66.66 proto=17"),
            "{text}"
        );
        assert!(
            text.contains("seen src=198.18.0.2 dst=198.19.1.1"),
            "{text}"
        );
        assert!(text.contains("dst=239.255.255.250"), "{text}");
        assert!(text.starts_with("trigger: 5 commands\n"), "{text}");
        assert!(text.contains("trigger: 0 commands\n"), "{text}");
        assert_eq!(text.lines().count(), 6, "{text}");
    }
}
