//! What may cross between the tunnel device and the circuit. A hostile
//! exit can put any packet into a circuit; one to a LAN address, written
//! into the TUN device, would be routed (or, with forwarding on, forwarded
//! out of the real interface: the LAN answering the exit from the user's
//! real address). So only packets to the tunnel's own address come in, and
//! none with options the kernel answers before the firewall looks. Going
//! out, an application bound to a LAN address would show that address to
//! the exit, and local discovery (broadcast, multicast, link-local) would
//! tell it who the machine is: only packets from the tunnel's address to
//! an ordinary destination go. The rest is dropped here and counted; the
//! kill switch's input and forward chains are the second line
//! (docs/threat-model.md).
//!
//! Only fixed header fields are read (the version, the header length or
//! next header, addresses at fixed offsets): a few comparisons per packet.
//! Anything else about a packet the kernel checks as for any interface.

use std::net::{Ipv4Addr, Ipv6Addr};

use trine_circuit::ip::{TUNNEL_CLIENT_V4, TUNNEL_CLIENT_V6};

/// Offsets of the source and destination addresses in IPv4 and IPv6
/// headers, and of IPv6's next-header field.
const V4_SRC: usize = 12;
const V4_DST: usize = 16;
const V6_NEXT_HEADER: usize = 6;
const V6_SRC: usize = 8;
const V6_DST: usize = 24;
/// An IPv4 header without options: version 4, 5 words.
const V4_PLAIN_HEADER: u8 = 0x45;
/// IPv6 hop-by-hop options, which every host on the way must read.
const HOP_BY_HOP: u8 = 0;

/// Whether `packet` from the exit may enter the TUN device: addressed to
/// the tunnel's own address, IPv4 without options or IPv6 without
/// hop-by-hop options (whose errors the kernel would answer before the
/// firewall's input chain sees them, telling the exit it is there).
pub fn accept_from_exit(packet: &[u8]) -> bool {
    match packet.first() {
        Some(&V4_PLAIN_HEADER) => v4_at(packet, V4_DST) == Some(TUNNEL_CLIENT_V4),
        Some(first) if first >> 4 == 6 => {
            packet.get(V6_NEXT_HEADER) != Some(&HOP_BY_HOP)
                && v6_at(packet, V6_DST) == Some(TUNNEL_CLIENT_V6)
        }
        _ => false,
    }
}

/// Whether `packet` from the TUN device may go to the exit: from the
/// tunnel's own address, to an address that is not this network's
/// broadcast, multicast, link-local or unspecified (local discovery
/// traffic, such as SSDP, mDNS or LAN sync announcements, identifies the
/// machine and has no business at the exit).
pub fn accept_to_exit(packet: &[u8]) -> bool {
    match packet.first().map(|b| b >> 4) {
        Some(4) => {
            v4_at(packet, V4_SRC) == Some(TUNNEL_CLIENT_V4)
                && v4_at(packet, V4_DST).is_some_and(|dst| {
                    !(dst.is_multicast()
                        || dst.is_link_local()
                        || dst.is_unspecified()
                        || dst.octets()[0] == 0
                        || dst.octets()[0] >= 240)
                })
        }
        Some(6) => {
            v6_at(packet, V6_SRC) == Some(TUNNEL_CLIENT_V6)
                && v6_at(packet, V6_DST).is_some_and(|dst| {
                    !(dst.is_multicast() || dst.is_unicast_link_local() || dst.is_unspecified())
                })
        }
        _ => false,
    }
}

fn v4_at(packet: &[u8], at: usize) -> Option<Ipv4Addr> {
    let octets: [u8; 4] = packet.get(at..at + 4)?.try_into().ok()?;
    Some(Ipv4Addr::from(octets))
}

fn v6_at(packet: &[u8], at: usize) -> Option<Ipv6Addr> {
    let octets: [u8; 16] = packet.get(at..at + 16)?.try_into().ok()?;
    Some(Ipv6Addr::from(octets))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::net::SocketAddr;

    use trine_circuit::ip;

    use super::*;

    fn udp(src: &str, dst: &str) -> Vec<u8> {
        let (src, dst): (SocketAddr, SocketAddr) = (src.parse().unwrap(), dst.parse().unwrap());
        let mut packet = Vec::new();
        ip::build_udp(src, dst, b"x", &mut packet).unwrap();
        packet
    }

    #[test]
    fn only_the_tunnel_address_passes_in_either_direction() {
        let inbound = udp("198.19.66.66:7", "172.22.0.2:5000");
        assert!(accept_from_exit(&inbound) && !accept_to_exit(&inbound));
        let outbound = udp("172.22.0.2:5000", "198.19.66.66:7");
        assert!(accept_to_exit(&outbound) && !accept_from_exit(&outbound));
        let inbound6 = udp("[2001:db8::66]:7", "[fd74:726e::2]:5000");
        assert!(accept_from_exit(&inbound6) && !accept_to_exit(&inbound6));
        let outbound6 = udp("[fd74:726e::2]:5000", "[2001:db8::66]:7");
        assert!(accept_to_exit(&outbound6));
        for lan in [
            udp("198.19.66.66:7", "192.168.1.1:53"),
            udp("198.19.66.66:7", "198.18.0.2:53"),
            udp("198.19.66.66:7", "172.22.0.53:53"),
            udp("[2001:db8::66]:7", "[fe80::1]:53"),
            udp("[2001:db8::66]:7", "[fd74:726e::53]:53"),
        ] {
            assert!(!accept_from_exit(&lan));
        }
        assert!(!accept_to_exit(&udp("198.18.0.2:5000", "198.19.66.66:7")));
        assert!(!accept_to_exit(&udp(
            "[2001:db8::2]:5000",
            "[2001:db8::66]:7"
        )));
    }

    #[test]
    fn local_discovery_never_goes_to_the_exit() {
        for dst in [
            "255.255.255.255:17500",
            "239.255.255.250:1900",
            "224.0.0.251:5353",
            "169.254.1.1:80",
            "0.0.0.0:9",
            "240.0.0.1:9",
        ] {
            assert!(!accept_to_exit(&udp("172.22.0.2:5000", dst)), "{dst}");
        }
        for dst in [
            "[ff02::fb]:5353",
            "[ff05::c]:1900",
            "[fe80::1]:80",
            "[::]:9",
        ] {
            assert!(!accept_to_exit(&udp("[fd74:726e::2]:5000", dst)), "{dst}");
        }
        assert!(accept_to_exit(&udp("172.22.0.2:5000", "198.19.66.66:53")));
        assert!(accept_to_exit(&udp("172.22.0.2:5000", "172.22.0.53:53")));
    }

    #[test]
    fn options_that_make_the_kernel_answer_are_refused() {
        let plain = udp("198.19.66.66:7", "172.22.0.2:5000");
        // IPv4 with one word of options (the length fields are not checked
        // here: the header length nibble alone refuses it).
        let mut options = plain.clone();
        options[0] = 0x46;
        assert!(!accept_from_exit(&options));
        let mut hop_by_hop = udp("[2001:db8::66]:7", "[fd74:726e::2]:5000");
        hop_by_hop[V6_NEXT_HEADER] = HOP_BY_HOP;
        assert!(!accept_from_exit(&hop_by_hop));
    }

    #[test]
    fn short_or_strange_packets_never_pass() {
        let good = udp("198.19.66.66:7", "172.22.0.2:5000");
        for len in 0..20 {
            assert!(!accept_from_exit(&good[..len]), "{len} bytes");
        }
        let out = udp("172.22.0.2:5000", "198.19.66.66:7");
        for len in 0..20 {
            assert!(!accept_to_exit(&out[..len]), "{len} bytes");
        }
        // An IPv4 header claiming version 6 is read as IPv6: too short.
        let mut relabelled = good.clone();
        relabelled[0] = 0x65;
        assert!(!accept_from_exit(&relabelled));
        for version in [0u8, 5, 7, 15] {
            let mut other = good.clone();
            other[0] = (version << 4) | 5;
            assert!(!accept_from_exit(&other));
        }
    }
}
