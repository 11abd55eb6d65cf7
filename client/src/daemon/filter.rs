//! What may cross between the tunnel device and the circuit: only packets
//! to the tunnel's own address come in from the exit, and only packets
//! from it go out. A hostile exit can put any packet into a circuit; one to
//! a LAN address, written into the TUN device, would be routed (or, with
//! forwarding on, forwarded out of the real interface: the LAN answering
//! the exit from the user's real address). An application bound to a LAN
//! address would show that address to the exit. Both are dropped here and
//! counted; the kill switch's input and forward chains are the second
//! line (docs/threat-model.md).
//!
//! Only the fixed header fields are read: the version and an address at a
//! fixed offset, so this costs a few comparisons per packet. Anything else
//! about a packet the kernel checks as it would for any interface.

use trine_circuit::ip::{TUNNEL_CLIENT_V4, TUNNEL_CLIENT_V6};

/// Offsets of the source and destination addresses in IPv4 and IPv6
/// headers.
const V4_SRC: usize = 12;
const V4_DST: usize = 16;
const V6_SRC: usize = 8;
const V6_DST: usize = 24;

/// Whether `packet` (from the exit) is addressed to the tunnel's own
/// address, IPv4 or IPv6.
pub fn to_tunnel(packet: &[u8]) -> bool {
    is_tunnel_address(packet, V4_DST, V6_DST)
}

/// Whether `packet` (from the TUN device) comes from the tunnel's own
/// address, IPv4 or IPv6.
pub fn from_tunnel(packet: &[u8]) -> bool {
    is_tunnel_address(packet, V4_SRC, V6_SRC)
}

fn is_tunnel_address(packet: &[u8], v4_at: usize, v6_at: usize) -> bool {
    match packet.first().map(|b| b >> 4) {
        Some(4) => packet.get(v4_at..v4_at + 4) == Some(&TUNNEL_CLIENT_V4.octets()[..]),
        Some(6) => packet.get(v6_at..v6_at + 16) == Some(&TUNNEL_CLIENT_V6.octets()[..]),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::net::{IpAddr, SocketAddr};

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
        assert!(to_tunnel(&inbound) && !from_tunnel(&inbound));
        let outbound = udp("172.22.0.2:5000", "198.19.66.66:7");
        assert!(from_tunnel(&outbound) && !to_tunnel(&outbound));
        let inbound6 = udp("[2001:db8::66]:7", "[fd74:726e::2]:5000");
        assert!(to_tunnel(&inbound6) && !from_tunnel(&inbound6));
        let outbound6 = udp("[fd74:726e::2]:5000", "[2001:db8::66]:7");
        assert!(from_tunnel(&outbound6));
        for lan in [
            udp("198.19.66.66:7", "192.168.1.1:53"),
            udp("198.19.66.66:7", "198.18.0.2:53"),
            udp("198.19.66.66:7", "172.22.0.53:53"),
            udp("[2001:db8::66]:7", "[fe80::1]:53"),
            udp("[2001:db8::66]:7", "[fd74:726e::53]:53"),
        ] {
            assert!(!to_tunnel(&lan));
        }
        assert!(!from_tunnel(&udp("198.18.0.2:5000", "198.19.66.66:7")));
        assert!(!from_tunnel(&udp("[2001:db8::2]:5000", "[2001:db8::66]:7")));
    }

    #[test]
    fn short_or_strange_packets_never_pass() {
        let good = udp("198.19.66.66:7", "172.22.0.2:5000");
        for len in 0..20 {
            assert!(!to_tunnel(&good[..len]), "{len} bytes");
        }
        // An IPv4 header claiming version 6 is read as IPv6: too short.
        let mut relabelled = good.clone();
        relabelled[0] = 0x65;
        assert!(!to_tunnel(&relabelled));
        for version in [0u8, 5, 7, 15] {
            let mut other = good.clone();
            other[0] = (version << 4) | 5;
            assert!(!to_tunnel(&other));
        }
        assert_eq!(ip::parse(&good).unwrap().dst, IpAddr::V4(TUNNEL_CLIENT_V4));
    }
}
