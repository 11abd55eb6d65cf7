//! `trine_circuit::ip` against packets built by hand here, with every
//! checksum computed from scratch by the plain RFC 1071 sum below (never
//! taken from the code under test): parsing, address rewriting with
//! incremental checksums, ICMP errors, UDP building, and refusal of
//! malformed input without panics.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use proptest::prelude::*;
use trine_circuit::ip::{
    self, IpError, PacketInfo, TUNNEL_CLIENT_V4, TUNNEL_CLIENT_V6, TUNNEL_RESOLVER_V4,
    TUNNEL_RESOLVER_V6, proto,
};

// ---------------------------------------------------------------------------
// Reference checksums: the textbook algorithm, nothing incremental.

/// One's-complement sum of big-endian 16-bit words (odd byte padded),
/// carries folded in at the end.
fn ones_sum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for pair in bytes.chunks(2) {
        let hi = u32::from(pair[0]);
        let lo = u32::from(pair.get(1).copied().unwrap_or(0));
        sum += (hi << 8) | lo;
    }
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    sum as u16
}

fn internet_checksum(bytes: &[u8]) -> u16 {
    !ones_sum(bytes)
}

fn be16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

/// The IPv4 header checksum recomputed with its field zeroed.
fn ipv4_header_checksum(packet: &[u8]) -> u16 {
    let header_len = usize::from(packet[0] & 0x0F) * 4;
    let mut header = packet[..header_len].to_vec();
    header[10..12].fill(0);
    internet_checksum(&header)
}

fn checksum_field(protocol: u8) -> usize {
    match protocol {
        proto::TCP => 16,
        proto::UDP => 6,
        _ => 2,
    }
}

/// The bytes a transport checksum covers, its field zeroed: pseudo-header
/// (not for ICMPv4) and segment.
fn covered_bytes(packet: &[u8], offset: usize, protocol: u8) -> Vec<u8> {
    let segment_len = packet.len() - offset;
    let mut bytes = match (packet[0] >> 4, protocol) {
        (4, proto::ICMP) => Vec::new(),
        (4, _) => {
            let mut pseudo = packet[12..20].to_vec();
            pseudo.extend_from_slice(&[0, protocol]);
            pseudo.extend_from_slice(&(segment_len as u16).to_be_bytes());
            pseudo
        }
        _ => {
            let mut pseudo = packet[8..40].to_vec();
            pseudo.extend_from_slice(&(segment_len as u32).to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, protocol]);
            pseudo
        }
    };
    let start = bytes.len();
    bytes.extend_from_slice(&packet[offset..]);
    let field = start + checksum_field(protocol);
    bytes[field..field + 2].fill(0);
    bytes
}

/// What the transport checksum field should hold (UDP sends 0 as 0xFFFF).
fn transport_checksum(packet: &[u8], offset: usize, protocol: u8) -> u16 {
    match internet_checksum(&covered_bytes(packet, offset, protocol)) {
        0 if protocol == proto::UDP => 0xFFFF,
        checksum => checksum,
    }
}

fn fill_transport_checksum(packet: &mut [u8], offset: usize, protocol: u8) {
    let checksum = transport_checksum(packet, offset, protocol);
    let at = offset + checksum_field(protocol);
    packet[at..at + 2].copy_from_slice(&checksum.to_be_bytes());
}

// ---------------------------------------------------------------------------
// Packets built by hand.

fn ipv4_packet(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, body: &[u8]) -> Vec<u8> {
    let total = (20 + body.len()) as u16;
    let mut packet = vec![0x45, 0];
    packet.extend_from_slice(&total.to_be_bytes());
    packet.extend_from_slice(&[0x12, 0x34, 0x40, 0x00, 64, protocol, 0, 0]);
    packet.extend_from_slice(&src.octets());
    packet.extend_from_slice(&dst.octets());
    let checksum = internet_checksum(&packet);
    packet[10..12].copy_from_slice(&checksum.to_be_bytes());
    packet.extend_from_slice(body);
    packet
}

/// `extensions` are whole extension headers; `next` names the first one
/// (or the transport protocol if there are none).
fn ipv6_packet(src: Ipv6Addr, dst: Ipv6Addr, next: u8, extensions: &[u8], body: &[u8]) -> Vec<u8> {
    let payload_len = (extensions.len() + body.len()) as u16;
    let mut packet = vec![0x60, 0x01, 0x23, 0x45];
    packet.extend_from_slice(&payload_len.to_be_bytes());
    packet.extend_from_slice(&[next, 64]);
    packet.extend_from_slice(&src.octets());
    packet.extend_from_slice(&dst.octets());
    packet.extend_from_slice(extensions);
    packet.extend_from_slice(body);
    packet
}

/// A hop-by-hop options header holding one PadN option (8 bytes).
fn hop_by_hop(next: u8) -> [u8; 8] {
    [next, 0, 1, 4, 0, 0, 0, 0]
}

fn tcp_segment(src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let mut segment = Vec::new();
    segment.extend_from_slice(&src_port.to_be_bytes());
    segment.extend_from_slice(&dst_port.to_be_bytes());
    segment.extend_from_slice(&0x0102_0304u32.to_be_bytes()); // sequence
    segment.extend_from_slice(&0x0a0b_0c0du32.to_be_bytes()); // acknowledgement
    segment.extend_from_slice(&[0x50, 0x18, 0xfa, 0xf0, 0, 0, 0, 0]); // offset 5, PSH ACK
    segment.extend_from_slice(payload);
    segment
}

fn udp_datagram(src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let mut datagram = Vec::new();
    datagram.extend_from_slice(&src_port.to_be_bytes());
    datagram.extend_from_slice(&dst_port.to_be_bytes());
    datagram.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    datagram.extend_from_slice(&[0, 0]);
    datagram.extend_from_slice(payload);
    datagram
}

fn icmp_message(icmp_type: u8, code: u8, rest: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut message = vec![icmp_type, code, 0, 0];
    message.extend_from_slice(&rest);
    message.extend_from_slice(payload);
    message
}

/// The packet shapes under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Ipv4Tcp,
    Ipv4Udp,
    Ipv4UdpNoChecksum,
    Ipv4IcmpEcho,
    Ipv6Tcp,
    Ipv6Udp,
    Ipv6IcmpEcho,
    Ipv6HopByHopTcp,
    Ipv6HopByHopUdp,
}

const SHAPES: [Shape; 9] = [
    Shape::Ipv4Tcp,
    Shape::Ipv4Udp,
    Shape::Ipv4UdpNoChecksum,
    Shape::Ipv4IcmpEcho,
    Shape::Ipv6Tcp,
    Shape::Ipv6Udp,
    Shape::Ipv6IcmpEcho,
    Shape::Ipv6HopByHopTcp,
    Shape::Ipv6HopByHopUdp,
];

impl Shape {
    fn ipv6(self) -> bool {
        matches!(
            self,
            Self::Ipv6Tcp
                | Self::Ipv6Udp
                | Self::Ipv6IcmpEcho
                | Self::Ipv6HopByHopTcp
                | Self::Ipv6HopByHopUdp
        )
    }

    fn protocol(self) -> u8 {
        match self {
            Self::Ipv4Tcp | Self::Ipv6Tcp | Self::Ipv6HopByHopTcp => proto::TCP,
            Self::Ipv4Udp | Self::Ipv4UdpNoChecksum | Self::Ipv6Udp | Self::Ipv6HopByHopUdp => {
                proto::UDP
            }
            Self::Ipv4IcmpEcho => proto::ICMP,
            Self::Ipv6IcmpEcho => proto::ICMPV6,
        }
    }

    fn has_ports(self) -> bool {
        matches!(self.protocol(), proto::TCP | proto::UDP)
    }

    fn has_hop_by_hop(self) -> bool {
        matches!(self, Self::Ipv6HopByHopTcp | Self::Ipv6HopByHopUdp)
    }
}

/// A packet built by hand, with what the test knows about it.
#[derive(Debug, Clone)]
struct Built {
    bytes: Vec<u8>,
    transport_offset: usize,
    protocol: u8,
    /// Whether the transport checksum field was filled in (not UDP's 0).
    checksummed: bool,
}

/// `src` and `dst` are cut to IPv4 for IPv4 shapes.
fn build(shape: Shape, src: [u8; 16], dst: [u8; 16], ports: (u16, u16), payload: &[u8]) -> Built {
    let protocol = shape.protocol();
    let body = match protocol {
        proto::TCP => tcp_segment(ports.0, ports.1, payload),
        proto::UDP => udp_datagram(ports.0, ports.1, payload),
        proto::ICMP => icmp_message(8, 0, [0x12, 0x34, 0, 1], payload),
        _ => icmp_message(128, 0, [0x12, 0x34, 0, 1], payload),
    };
    let (mut bytes, transport_offset) = if shape.ipv6() {
        let (src, dst) = (Ipv6Addr::from(src), Ipv6Addr::from(dst));
        if shape.has_hop_by_hop() {
            (ipv6_packet(src, dst, 0, &hop_by_hop(protocol), &body), 48)
        } else {
            (ipv6_packet(src, dst, protocol, &[], &body), 40)
        }
    } else {
        let src = Ipv4Addr::new(src[0], src[1], src[2], src[3]);
        let dst = Ipv4Addr::new(dst[0], dst[1], dst[2], dst[3]);
        (ipv4_packet(src, dst, protocol, &body), 20)
    };
    let checksummed = shape != Shape::Ipv4UdpNoChecksum;
    if checksummed {
        fill_transport_checksum(&mut bytes, transport_offset, protocol);
    }
    Built {
        bytes,
        transport_offset,
        protocol,
        checksummed,
    }
}

fn address(shape: Shape, bytes: [u8; 16]) -> IpAddr {
    if shape.ipv6() {
        IpAddr::V6(Ipv6Addr::from(bytes))
    } else {
        IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
    }
}

/// Every checksum in `packet` is what a full recomputation gives.
fn assert_checksums_recomputed(built: &Built, packet: &[u8]) {
    if packet[0] >> 4 == 4 {
        assert_eq!(
            be16(packet, 10),
            ipv4_header_checksum(packet),
            "IPv4 header checksum"
        );
    }
    let field = be16(
        packet,
        built.transport_offset + checksum_field(built.protocol),
    );
    if built.checksummed {
        assert_eq!(
            field,
            transport_checksum(packet, built.transport_offset, built.protocol),
            "transport checksum"
        );
    } else {
        assert_eq!(field, 0, "UDP without a checksum must stay without one");
    }
    assert_eq!(ip::transport_checksum_ok(packet), Ok(true));
}

const A4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const B4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 250);
const A6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0xa, 1);
const B6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0x1234, 0, 0, 0xb, 2);

fn v4(shape: Shape, payload: &[u8]) -> Built {
    let mut src = [0; 16];
    let mut dst = [0; 16];
    src[..4].copy_from_slice(&A4.octets());
    dst[..4].copy_from_slice(&B4.octets());
    build(shape, src, dst, (40000, 443), payload)
}

fn v6(shape: Shape, payload: &[u8]) -> Built {
    build(shape, A6.octets(), B6.octets(), (40000, 443), payload)
}

fn sample(shape: Shape) -> Built {
    if shape.ipv6() {
        v6(shape, b"a sample payload of odd length")
    } else {
        v4(shape, b"a sample payload of odd length")
    }
}

// ---------------------------------------------------------------------------
// A packet worked out on paper.

/// 10.0.0.1:1000 → 10.0.0.2:2000, UDP payload "hi", identification 0,
/// don't fragment, TTL 64. On paper:
///
/// IPv4 header words 4500 001e 0000 4000 4011 [0000] 0a00 0001 0a00 0002
/// sum to 0xd932, so the header checksum is !0xd932 = 0x26cd.
///
/// UDP: pseudo-header 0a00 0001 0a00 0002 0011 000a, then 03e8 07d0 000a
/// [0000] 6869 sum to 0x8849, so the checksum is !0x8849 = 0x77b6.
#[rustfmt::skip]
const ON_PAPER: [u8; 30] = [
    0x45, 0x00, 0x00, 0x1e, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x26, 0xcd, // IPv4 header
    10, 0, 0, 1,                                                            // source
    10, 0, 0, 2,                                                            // destination
    0x03, 0xe8, 0x07, 0xd0, 0x00, 0x0a, 0x77, 0xb6,                         // UDP header
    b'h', b'i',                                                             // payload
];

#[test]
fn reference_checksum_matches_published_and_paper_examples() {
    // The IPv4 header worked through in Wikipedia's "Internet checksum"
    // and "IPv4 header checksum" examples: checksum 0xb861.
    let header = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];
    assert_eq!(ipv4_header_checksum(&header), 0xb861);
    assert_eq!(ipv4_header_checksum(&ON_PAPER), 0x26cd);
    assert_eq!(transport_checksum(&ON_PAPER, 20, proto::UDP), 0x77b6);
}

#[test]
fn build_udp_gives_the_packet_worked_out_on_paper() {
    let mut out = vec![0xEE; 7];
    ip::build_udp(
        "10.0.0.1:1000".parse().unwrap(),
        "10.0.0.2:2000".parse().unwrap(),
        b"hi",
        &mut out,
    )
    .unwrap();
    assert_eq!(out, ON_PAPER);
}

#[test]
fn paper_packet_parses_and_rewrites_to_paper_checksums() {
    let info = ip::parse(&ON_PAPER).unwrap();
    assert_eq!(
        info,
        PacketInfo {
            src: Ipv4Addr::new(10, 0, 0, 1).into(),
            dst: Ipv4Addr::new(10, 0, 0, 2).into(),
            protocol: proto::UDP,
            src_port: Some(1000),
            dst_port: Some(2000),
            transport_offset: 20,
            later_fragment: false,
        }
    );
    assert_eq!(ip::udp_payload(&ON_PAPER, &info).unwrap(), 28..30);
    assert_eq!(ip::transport_checksum_ok(&ON_PAPER), Ok(true));

    // Source 10.0.0.1 → 10.0.0.3 adds 2 to both sums: 0xd934 and 0x884b,
    // so the checksums become 0x26cb and 0x77b4.
    let mut packet = ON_PAPER;
    ip::set_source(&mut packet, Ipv4Addr::new(10, 0, 0, 3).into()).unwrap();
    assert_eq!(&packet[12..16], &[10, 0, 0, 3]);
    assert_eq!(be16(&packet, 10), 0x26cb);
    assert_eq!(be16(&packet, 26), 0x77b4);
    assert_eq!(ipv4_header_checksum(&packet), 0x26cb);
    assert_eq!(transport_checksum(&packet, 20, proto::UDP), 0x77b4);
    // Nothing else moved.
    assert_eq!(packet[..10], ON_PAPER[..10]);
    assert_eq!(packet[16..26], ON_PAPER[16..26]);
    assert_eq!(packet[28..], ON_PAPER[28..]);
}

// ---------------------------------------------------------------------------
// Parsing.

#[test]
fn tunnel_addresses_are_the_documented_ones() {
    assert_eq!(TUNNEL_CLIENT_V4.to_string(), "172.22.0.2");
    assert_eq!(TUNNEL_RESOLVER_V4.to_string(), "172.22.0.53");
    assert_eq!(TUNNEL_CLIENT_V6.to_string(), "fd74:726e::2");
    assert_eq!(TUNNEL_RESOLVER_V6.to_string(), "fd74:726e::53");
}

#[test]
fn every_shape_parses_to_what_was_built() {
    for shape in SHAPES {
        let built = sample(shape);
        let info = ip::parse(&built.bytes).unwrap();
        let (src, dst): (IpAddr, IpAddr) = if shape.ipv6() {
            (A6.into(), B6.into())
        } else {
            (A4.into(), B4.into())
        };
        let ports = shape.has_ports().then_some(());
        assert_eq!(
            info,
            PacketInfo {
                src,
                dst,
                protocol: built.protocol,
                src_port: ports.map(|()| 40000),
                dst_port: ports.map(|()| 443),
                transport_offset: built.transport_offset,
                later_fragment: false,
            },
            "{shape:?}"
        );
        assert_eq!(
            ip::transport_checksum_ok(&built.bytes),
            Ok(true),
            "{shape:?}"
        );
    }
}

#[test]
fn corrupted_transport_checksums_are_detected() {
    for shape in SHAPES {
        let mut built = sample(shape);
        let last = built.bytes.len() - 1;
        built.bytes[last] ^= 0x40;
        let expected = shape == Shape::Ipv4UdpNoChecksum; // nothing to detect
        assert_eq!(
            ip::transport_checksum_ok(&built.bytes),
            Ok(expected),
            "{shape:?}"
        );
    }
}

#[test]
fn udp_over_ipv6_without_checksum_is_invalid() {
    let mut built = v6(Shape::Ipv6Udp, b"x");
    built.bytes[46..48].fill(0);
    assert_eq!(ip::transport_checksum_ok(&built.bytes), Ok(false));
}

#[test]
fn length_field_mismatches_are_refused() {
    for shape in SHAPES {
        let built = sample(shape);
        let mut longer = built.bytes.clone();
        longer.push(0);
        assert_eq!(
            ip::parse(&longer),
            Err(IpError::LengthMismatch),
            "{shape:?}"
        );
        let mut shorter = built.bytes.clone();
        shorter.pop();
        assert_eq!(
            ip::parse(&shorter),
            Err(IpError::LengthMismatch),
            "{shape:?}"
        );
        let mut wrong_field = built.bytes.clone();
        let field = if shape.ipv6() { 4 } else { 2 };
        wrong_field[field + 1] ^= 1;
        assert_eq!(
            ip::parse(&wrong_field),
            Err(IpError::LengthMismatch),
            "{shape:?}"
        );
    }
}

#[test]
fn malformed_headers_are_refused() {
    assert_eq!(ip::parse(&[]), Err(IpError::Empty));
    assert_eq!(ip::parse(&[0x50; 40]), Err(IpError::UnknownVersion(5)));
    assert_eq!(ip::parse(&[0x45; 19]), Err(IpError::Truncated));
    assert_eq!(ip::parse(&[0x60; 39]), Err(IpError::Truncated));

    let good = v4(Shape::Ipv4Tcp, b"");
    let mut short_ihl = good.bytes.clone();
    short_ihl[0] = 0x44;
    assert_eq!(ip::parse(&short_ihl), Err(IpError::BadHeader));
    let mut long_ihl = ipv4_packet(A4, B4, proto::TCP, &[0; 10]);
    long_ihl[0] = 0x4f;
    assert_eq!(ip::parse(&long_ihl), Err(IpError::BadHeader));

    let short_tcp = ipv4_packet(A4, B4, proto::TCP, &tcp_segment(1, 2, b"")[..19]);
    assert_eq!(ip::parse(&short_tcp), Err(IpError::TransportTruncated));
    let short_udp = ipv6_packet(A6, B6, proto::UDP, &[], &[0; 7]);
    assert_eq!(ip::parse(&short_udp), Err(IpError::TransportTruncated));
}

/// An IPv4 header with `options` (a multiple of 4 bytes) and a UDP body.
fn ipv4_with_options(options: &[u8]) -> Vec<u8> {
    let body = udp_datagram(5, 6, b"opt");
    let header_len = 20 + options.len();
    let mut packet = ipv4_packet(A4, B4, proto::UDP, &[]);
    packet[0] = 0x40 | (header_len / 4) as u8;
    packet[2..4].copy_from_slice(&((header_len + body.len()) as u16).to_be_bytes());
    packet.extend_from_slice(options);
    packet.extend_from_slice(&body);
    packet[10..12].fill(0);
    let checksum = ipv4_header_checksum(&packet);
    packet[10..12].copy_from_slice(&checksum.to_be_bytes());
    packet
}

#[test]
fn ipv4_options_are_walked_and_source_routes_refused() {
    // NOP, NOP, a router alert (RFC 2113), end of list.
    let packet = ipv4_with_options(&[1, 1, 148, 4, 0, 0, 0, 0]);
    let info = ip::parse(&packet).unwrap();
    assert_eq!(info.transport_offset, 28);
    assert_eq!(info.dst_port, Some(6));

    // Loose and strict source routes through 192.0.2.1.
    for kind in [131, 137] {
        let packet = ipv4_with_options(&[1, kind, 7, 4, 192, 0, 2, 1]);
        assert_eq!(ip::parse(&packet), Err(IpError::SourceRouted));
    }
    // An option length of 1, and one running past the header.
    assert_eq!(
        ip::parse(&ipv4_with_options(&[148, 1, 0, 0])),
        Err(IpError::BadHeader)
    );
    assert_eq!(
        ip::parse(&ipv4_with_options(&[148, 9, 0, 0])),
        Err(IpError::BadHeader)
    );
}

#[test]
fn ipv6_extension_headers_are_walked() {
    let body = udp_datagram(7, 53, b"q");
    // Hop-by-hop, destination options, routing with no segments left.
    let extensions = [
        [60, 0, 1, 4, 0, 0, 0, 0],
        [43, 0, 1, 4, 0, 0, 0, 0],
        [proto::UDP, 0, 4, 0, 0, 0, 0, 0],
    ]
    .concat();
    let packet = ipv6_packet(A6, B6, 0, &extensions, &body);
    let info = ip::parse(&packet).unwrap();
    assert_eq!((info.protocol, info.transport_offset), (proto::UDP, 64));
    assert_eq!((info.src_port, info.dst_port), (Some(7), Some(53)));

    // A routing header with a segment left.
    let mut routing = vec![proto::UDP, 2, 4, 1, 0, 0, 0, 0];
    routing.extend_from_slice(&A6.octets());
    let packet = ipv6_packet(A6, B6, 43, &routing, &body);
    assert_eq!(ip::parse(&packet), Err(IpError::SourceRouted));

    // Hop-by-hop anywhere but first.
    let extensions = [[0, 0, 1, 4, 0, 0, 0, 0], hop_by_hop(proto::UDP)].concat();
    let packet = ipv6_packet(A6, B6, 60, &extensions, &body);
    assert_eq!(ip::parse(&packet), Err(IpError::BadExtension));

    // Two fragment headers.
    let extensions = [[44, 0, 0, 0, 0, 0, 0, 1], [proto::UDP, 0, 0, 0, 0, 0, 0, 1]].concat();
    let packet = ipv6_packet(A6, B6, 44, &extensions, &body);
    assert_eq!(ip::parse(&packet), Err(IpError::BadExtension));

    // A header running past the end.
    let packet = ipv6_packet(A6, B6, 0, &[proto::UDP, 1, 1, 4, 0, 0, 0, 0], &body[..4]);
    assert_eq!(ip::parse(&packet), Err(IpError::BadExtension));
}

#[test]
fn later_fragments_have_no_ports_and_only_the_ip_checksum_changes() {
    // IPv4: fragment offset 185 (1480 bytes), no more fragments.
    let mut packet = ipv4_packet(A4, B4, proto::UDP, b"continuation bytes");
    packet[6..8].copy_from_slice(&185u16.to_be_bytes());
    packet[10..12].fill(0);
    let checksum = ipv4_header_checksum(&packet);
    packet[10..12].copy_from_slice(&checksum.to_be_bytes());
    let info = ip::parse(&packet).unwrap();
    assert!(info.later_fragment);
    assert_eq!((info.src_port, info.dst_port), (None, None));
    assert_eq!(ip::transport_checksum_ok(&packet), Err(IpError::Fragmented));
    let before = packet.clone();
    ip::set_source(&mut packet, TUNNEL_CLIENT_V4.into()).unwrap();
    assert_eq!(be16(&packet, 10), ipv4_header_checksum(&packet));
    assert_eq!(packet[20..], before[20..]);

    // IPv6: fragment header, offset 185, more fragments.
    let fragment = [proto::TCP, 0, 0x05, 0xc9, 0xde, 0xad, 0xbe, 0xef];
    let mut packet = ipv6_packet(A6, B6, 44, &fragment, b"continuation bytes");
    let info = ip::parse(&packet).unwrap();
    assert!(info.later_fragment);
    assert_eq!((info.protocol, info.transport_offset), (proto::TCP, 48));
    assert_eq!((info.src_port, info.dst_port), (None, None));
    let before = packet.clone();
    ip::set_destination(&mut packet, TUNNEL_CLIENT_V6.into()).unwrap();
    assert_eq!(packet[24..40], TUNNEL_CLIENT_V6.octets());
    assert_eq!(packet[..24], before[..24]);
    assert_eq!(packet[40..], before[40..]);
}

#[test]
fn first_fragments_have_ports_and_their_checksum_is_patched() {
    // IPv4: more fragments, offset 0. The UDP checksum covers the whole
    // datagram, so check the patch against the datagram reassembled.
    let payload: Vec<u8> = (0..64).collect();
    let whole = v4(Shape::Ipv4Udp, &payload);
    let mut first = whole.bytes[..20 + 8 + 32].to_vec();
    let total = first.len() as u16;
    first[2..4].copy_from_slice(&total.to_be_bytes());
    first[6] |= 0x20;
    first[10..12].fill(0);
    let checksum = ipv4_header_checksum(&first);
    first[10..12].copy_from_slice(&checksum.to_be_bytes());
    let info = ip::parse(&first).unwrap();
    assert!(!info.later_fragment);
    assert_eq!(info.dst_port, Some(443));
    assert_eq!(ip::transport_checksum_ok(&first), Err(IpError::Fragmented));
    assert_eq!(ip::udp_payload(&first, &info), Err(IpError::BadUdpLength));

    ip::set_source(&mut first, TUNNEL_CLIENT_V4.into()).unwrap();
    let mut reassembled = whole.bytes.clone();
    reassembled[12..16].copy_from_slice(&TUNNEL_CLIENT_V4.octets());
    assert_eq!(
        be16(&first, 26),
        transport_checksum(&reassembled, 20, proto::UDP)
    );
    assert_eq!(be16(&first, 10), ipv4_header_checksum(&first));
}

// ---------------------------------------------------------------------------
// Rewriting.

#[test]
fn rewriting_every_shape_keeps_checksums_valid() {
    for shape in SHAPES {
        let built = sample(shape);
        let (new_src, new_dst): (IpAddr, IpAddr) = if shape.ipv6() {
            (TUNNEL_CLIENT_V6.into(), TUNNEL_RESOLVER_V6.into())
        } else {
            (TUNNEL_CLIENT_V4.into(), TUNNEL_RESOLVER_V4.into())
        };
        let mut packet = built.bytes.clone();
        ip::set_source(&mut packet, new_src).unwrap();
        assert_checksums_recomputed(&built, &packet);
        ip::set_destination(&mut packet, new_dst).unwrap();
        assert_checksums_recomputed(&built, &packet);
        let info = ip::parse(&packet).unwrap();
        assert_eq!((info.src, info.dst), (new_src, new_dst), "{shape:?}");
    }
}

#[test]
fn rewriting_to_the_other_family_is_refused_and_changes_nothing() {
    for shape in SHAPES {
        let built = sample(shape);
        let other: IpAddr = if shape.ipv6() {
            TUNNEL_CLIENT_V4.into()
        } else {
            TUNNEL_CLIENT_V6.into()
        };
        let mut packet = built.bytes.clone();
        assert_eq!(
            ip::set_source(&mut packet, other),
            Err(IpError::FamilyMismatch)
        );
        assert_eq!(
            ip::set_destination(&mut packet, other),
            Err(IpError::FamilyMismatch)
        );
        assert_eq!(packet, built.bytes);
    }
}

#[test]
fn udp_without_checksum_stays_without() {
    let built = v4(Shape::Ipv4UdpNoChecksum, b"no checksum here");
    let mut packet = built.bytes.clone();
    ip::set_source(&mut packet, TUNNEL_CLIENT_V4.into()).unwrap();
    ip::set_destination(&mut packet, Ipv4Addr::new(255, 1, 2, 3).into()).unwrap();
    assert_eq!(be16(&packet, 26), 0);
    assert_eq!(be16(&packet, 10), ipv4_header_checksum(&packet));
}

/// A UDP packet from `old_src` whose checksum becomes 0 once its source is
/// `new_src`: the last payload word is chosen to make the sum 0xFFFF.
fn udp_whose_checksum_becomes_zero(shape: Shape, old_src: [u8; 16], new_src: [u8; 16]) -> Built {
    let dst = [9; 16];
    let mut target = build(shape, new_src, dst, (1234, 53), &[0, 0]);
    let offset = target.transport_offset;
    let sum = ones_sum(&covered_bytes(&target.bytes, offset, proto::UDP));
    let word = 0xFFFF - sum;
    target.bytes.truncate(target.bytes.len() - 2);
    target.bytes.extend_from_slice(&word.to_be_bytes());
    assert_eq!(
        internet_checksum(&covered_bytes(&target.bytes, offset, proto::UDP)),
        0
    );
    build(shape, old_src, dst, (1234, 53), &word.to_be_bytes())
}

#[test]
fn computed_udp_checksum_of_zero_is_sent_as_ffff() {
    for shape in [Shape::Ipv4Udp, Shape::Ipv6Udp] {
        let old_src = [10; 16];
        let new_src = [172; 16];
        let built = udp_whose_checksum_becomes_zero(shape, old_src, new_src);
        let mut packet = built.bytes.clone();
        ip::set_source(&mut packet, address(shape, new_src)).unwrap();
        let field = built.transport_offset + 6;
        assert_eq!(be16(&packet, field), 0xFFFF, "{shape:?}");
        assert_checksums_recomputed(&built, &packet);
        // And back again: 0xFFFF is patched like any other value.
        ip::set_source(&mut packet, address(shape, old_src)).unwrap();
        assert_eq!(packet, built.bytes, "{shape:?}");
    }
}

// ---------------------------------------------------------------------------
// ICMP errors.

fn quoted<'a>(error: &'a [u8], info: &PacketInfo) -> &'a [u8] {
    &error[info.transport_offset + 8..]
}

#[test]
fn icmp_prohibited_answers_the_original_source_with_valid_checksums() {
    for shape in SHAPES {
        let built = sample(shape);
        let original = ip::parse(&built.bytes).unwrap();
        let from = original.dst;
        let mut out = vec![0xEE; 3];
        ip::icmp_prohibited(&built.bytes, from, &mut out).unwrap();
        let info = ip::parse(&out).unwrap();
        assert_eq!((info.src, info.dst), (from, original.src), "{shape:?}");
        let (protocol, icmp_type, code) = if shape.ipv6() {
            (proto::ICMPV6, 1, 1)
        } else {
            (proto::ICMP, 3, 13)
        };
        assert_eq!(info.protocol, protocol);
        let icmp = &out[info.transport_offset..];
        assert_eq!((icmp[0], icmp[1]), (icmp_type, code), "{shape:?}");
        assert_eq!(icmp[4..8], [0; 4]);
        assert_eq!(quoted(&out, &info), built.bytes, "{shape:?}");
        if !shape.ipv6() {
            assert_eq!(be16(&out, 10), ipv4_header_checksum(&out));
            assert_eq!(out[8], 64, "TTL");
        } else {
            assert_eq!(out[7], 64, "hop limit");
        }
        assert_eq!(
            be16(&out, info.transport_offset + 2),
            transport_checksum(&out, info.transport_offset, protocol)
        );
        assert_eq!(ip::transport_checksum_ok(&out), Ok(true));
        // Never an error about an error.
        let mut again = vec![0xEE];
        assert_eq!(
            ip::icmp_prohibited(&out, original.src, &mut again),
            Err(IpError::IcmpNotAllowed)
        );
        assert!(again.is_empty());
    }
}

#[test]
fn icmp_errors_quote_only_what_fits() {
    let payload = vec![0xA5; 3000];
    for (built, limit) in [
        (v4(Shape::Ipv4Udp, &payload), 576),
        (v6(Shape::Ipv6Tcp, &payload), 1280),
    ] {
        let original = ip::parse(&built.bytes).unwrap();
        let mut out = Vec::new();
        ip::icmp_prohibited(&built.bytes, original.dst, &mut out).unwrap();
        assert_eq!(out.len(), limit);
        let info = ip::parse(&out).unwrap();
        let quote = quoted(&out, &info);
        assert_eq!(quote, &built.bytes[..quote.len()]);
        assert_eq!(ip::transport_checksum_ok(&out), Ok(true));
        ip::icmp_too_big(&built.bytes, original.dst, 1200, &mut out).unwrap();
        assert_eq!(out.len(), limit);
    }
}

#[test]
fn icmp_too_big_carries_the_mtu() {
    let built = v4(Shape::Ipv4Tcp, &[1; 1500]);
    let mut out = Vec::new();
    ip::icmp_too_big(&built.bytes, A4.into(), 1400, &mut out).unwrap();
    assert_eq!(out[20..28], [3, 4, out[22], out[23], 0, 0, 0x05, 0x78]);
    assert_eq!(be16(&out, 10), ipv4_header_checksum(&out));
    assert_eq!(ip::transport_checksum_ok(&out), Ok(true));
    assert_eq!(ip::parse(&out).unwrap().dst, IpAddr::from(A4));

    let built = v6(Shape::Ipv6Udp, &[1; 1500]);
    ip::icmp_too_big(&built.bytes, TUNNEL_RESOLVER_V6.into(), 1280, &mut out).unwrap();
    assert_eq!(out[40..48], [2, 0, out[42], out[43], 0, 0, 0x05, 0x00]);
    assert_eq!(ip::transport_checksum_ok(&out), Ok(true));
}

#[test]
fn icmp_errors_are_refused_where_the_rfcs_forbid_them() {
    let mut out = vec![0xEE; 5];
    let refused = |packet: &[u8], from: IpAddr, out: &mut Vec<u8>| {
        assert_eq!(
            ip::icmp_prohibited(packet, from, out),
            Err(IpError::IcmpNotAllowed)
        );
        assert!(out.is_empty());
        out.push(0xEE);
        assert_eq!(
            ip::icmp_too_big(packet, from, 1280, out),
            Err(IpError::IcmpNotAllowed)
        );
        assert!(out.is_empty());
        out.push(0xEE);
    };
    let tcp = tcp_segment(1, 2, b"");
    let unreachable4 = icmp_message(3, 1, [0; 4], &ipv4_packet(B4, A4, proto::TCP, &tcp));
    let mut error4 = ipv4_packet(A4, B4, proto::ICMP, &unreachable4);
    fill_transport_checksum(&mut error4, 20, proto::ICMP);
    refused(&error4, B4.into(), &mut out);
    let time_exceeded6 = icmp_message(3, 0, [0; 4], &ipv6_packet(B6, A6, proto::TCP, &[], &tcp));
    refused(
        &ipv6_packet(A6, B6, proto::ICMPV6, &[], &time_exceeded6),
        B6.into(),
        &mut out,
    );
    let redirect6 = icmp_message(137, 0, [0; 4], &[0; 32]);
    refused(
        &ipv6_packet(A6, B6, proto::ICMPV6, &[], &redirect6),
        B6.into(),
        &mut out,
    );

    // Sources that are not one host.
    for src in [
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::BROADCAST,
        Ipv4Addr::new(224, 0, 0, 9),
    ] {
        refused(&ipv4_packet(src, B4, proto::TCP, &tcp), B4.into(), &mut out);
    }
    for src in [Ipv6Addr::UNSPECIFIED, "ff02::1".parse().unwrap()] {
        refused(
            &ipv6_packet(src, B6, proto::TCP, &[], &tcp),
            B6.into(),
            &mut out,
        );
    }
    // IPv4 multicast and broadcast destinations.
    for dst in [Ipv4Addr::new(239, 1, 2, 3), Ipv4Addr::BROADCAST] {
        refused(&ipv4_packet(A4, dst, proto::TCP, &tcp), B4.into(), &mut out);
    }
    // A later fragment.
    let fragment = [proto::TCP, 0, 0x00, 0x08, 0, 0, 0, 1];
    refused(
        &ipv6_packet(A6, B6, 44, &fragment, &[0; 8]),
        B6.into(),
        &mut out,
    );

    // IPv6 multicast destination: only "packet too big" may be sent.
    let group = ipv6_packet(A6, "ff0e::101".parse().unwrap(), proto::UDP, &[], &[0; 8]);
    assert_eq!(
        ip::icmp_prohibited(&group, B6.into(), &mut out),
        Err(IpError::IcmpNotAllowed)
    );
    ip::icmp_too_big(&group, B6.into(), 1280, &mut out).unwrap();
    assert_eq!(ip::parse(&out).unwrap().dst, IpAddr::from(A6));
}

#[test]
fn icmp_errors_about_queries_and_with_wrong_family_or_garbage() {
    let mut out = Vec::new();
    let echo = sample(Shape::Ipv4IcmpEcho);
    ip::icmp_prohibited(&echo.bytes, B4.into(), &mut out).unwrap();
    assert_eq!(
        ip::icmp_prohibited(&echo.bytes, B6.into(), &mut out),
        Err(IpError::FamilyMismatch)
    );
    assert!(out.is_empty());
    assert_eq!(
        ip::icmp_prohibited(&echo.bytes[..30], B4.into(), &mut out),
        Err(IpError::LengthMismatch)
    );
}

// ---------------------------------------------------------------------------
// UDP building.

#[test]
fn build_udp_round_trips_through_parse_and_udp_payload() {
    let cases: [(SocketAddr, SocketAddr); 2] = [
        (
            SocketAddr::new(TUNNEL_RESOLVER_V4.into(), 53),
            SocketAddr::new(TUNNEL_CLIENT_V4.into(), 51234),
        ),
        (
            SocketAddr::new(TUNNEL_RESOLVER_V6.into(), 53),
            SocketAddr::new(TUNNEL_CLIENT_V6.into(), 51234),
        ),
    ];
    for (src, dst) in cases {
        for payload in [&b""[..], b"x", b"an answer from the resolver"] {
            let mut out = Vec::new();
            ip::build_udp(src, dst, payload, &mut out).unwrap();
            let info = ip::parse(&out).unwrap();
            assert_eq!((info.src, info.dst), (src.ip(), dst.ip()));
            assert_eq!((info.src_port, info.dst_port), (Some(53), Some(51234)));
            assert_eq!(&out[ip::udp_payload(&out, &info).unwrap()], payload);
            assert_eq!(ip::transport_checksum_ok(&out), Ok(true));
            let offset = info.transport_offset;
            assert_eq!(
                be16(&out, offset + 6),
                transport_checksum(&out, offset, proto::UDP)
            );
            if src.is_ipv4() {
                assert_eq!(be16(&out, 10), ipv4_header_checksum(&out));
                assert_eq!(out[8], 64);
            } else {
                assert_eq!(out[7], 64);
            }
        }
    }
}

#[test]
fn build_udp_refuses_mixed_families_and_oversized_payloads() {
    let v4: SocketAddr = "192.0.2.1:53".parse().unwrap();
    let v6: SocketAddr = "[2001:db8::1]:53".parse().unwrap();
    let mut out = vec![1, 2, 3];
    assert_eq!(
        ip::build_udp(v4, v6, b"", &mut out),
        Err(IpError::FamilyMismatch)
    );
    assert!(out.is_empty());
    assert_eq!(
        ip::build_udp(v4, v4, &vec![0; 65_535 - 27], &mut out),
        Err(IpError::TooLong)
    );
    assert!(out.is_empty());
    ip::build_udp(v4, v4, &vec![0; 65_535 - 28], &mut out).unwrap();
    assert_eq!(out.len(), 65_535);
    assert_eq!(ip::transport_checksum_ok(&out), Ok(true));
    assert_eq!(
        ip::build_udp(v6, v6, &vec![0; 65_535 - 7], &mut out),
        Err(IpError::TooLong)
    );
    ip::build_udp(v6, v6, &vec![0; 65_535 - 8], &mut out).unwrap();
    assert_eq!(ip::transport_checksum_ok(&out), Ok(true));
}

#[test]
fn udp_payload_refuses_other_protocols_and_bad_lengths() {
    let tcp = sample(Shape::Ipv4Tcp);
    let info = ip::parse(&tcp.bytes).unwrap();
    assert_eq!(ip::udp_payload(&tcp.bytes, &info), Err(IpError::NotUdp));

    let udp = sample(Shape::Ipv6HopByHopUdp);
    let info = ip::parse(&udp.bytes).unwrap();
    assert_eq!(
        ip::udp_payload(&udp.bytes, &info).unwrap(),
        56..udp.bytes.len()
    );
    for length in [
        0u16,
        7,
        9,
        (udp.bytes.len() - 48 - 1) as u16,
        (udp.bytes.len() - 48 + 1) as u16,
    ] {
        let mut packet = udp.bytes.clone();
        packet[52..54].copy_from_slice(&length.to_be_bytes());
        let info = ip::parse(&packet).unwrap();
        assert_eq!(
            ip::udp_payload(&packet, &info),
            Err(IpError::BadUdpLength),
            "{length}"
        );
    }
    // An info that does not describe the packet.
    let bogus = PacketInfo {
        transport_offset: usize::MAX,
        ..info
    };
    assert_eq!(ip::udp_payload(&udp.bytes, &bogus), Err(IpError::Truncated));
}

// ---------------------------------------------------------------------------
// Properties.

fn shape() -> impl Strategy<Value = Shape> {
    prop::sample::select(SHAPES.to_vec())
}

/// Exercises every entry point on `bytes`; only panics matter.
fn poke(bytes: &[u8]) {
    let mut out = Vec::new();
    if let Ok(info) = ip::parse(bytes) {
        let _ = ip::udp_payload(bytes, &info);
        let mut copy = bytes.to_vec();
        let _ = ip::set_source(&mut copy, info.dst);
        let _ = ip::set_destination(&mut copy, info.src);
        let _ = ip::set_source(&mut copy, TUNNEL_CLIENT_V6.into());
    }
    let _ = ip::transport_checksum_ok(bytes);
    let _ = ip::icmp_prohibited(bytes, TUNNEL_RESOLVER_V4.into(), &mut out);
    let _ = ip::icmp_too_big(bytes, TUNNEL_RESOLVER_V6.into(), 1280, &mut out);
}

proptest! {
    #[test]
    fn rewrites_match_full_recomputation(
        shape in shape(),
        addresses in any::<[[u8; 16]; 4]>(),
        ports in any::<(u16, u16)>(),
        payload in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        let [src, dst, new_src, new_dst] = addresses;
        let built = build(shape, src, dst, ports, &payload);
        let mut packet = built.bytes.clone();

        ip::set_source(&mut packet, address(shape, new_src)).unwrap();
        assert_checksums_recomputed(&built, &packet);
        ip::set_destination(&mut packet, address(shape, new_dst)).unwrap();
        assert_checksums_recomputed(&built, &packet);

        let info = ip::parse(&packet).unwrap();
        prop_assert_eq!(info.src, address(shape, new_src));
        prop_assert_eq!(info.dst, address(shape, new_dst));
        let expected_ports = shape.has_ports().then_some(ports);
        prop_assert_eq!(info.src_port.zip(info.dst_port), expected_ports);
        // The payload, past the transport header, is untouched.
        let payload_at = built.transport_offset + if built.protocol == proto::TCP { 20 } else { 8 };
        prop_assert_eq!(&packet[payload_at..], &built.bytes[payload_at..]);

        // Back to the original addresses: the original bytes exactly.
        ip::set_source(&mut packet, address(shape, src)).unwrap();
        ip::set_destination(&mut packet, address(shape, dst)).unwrap();
        prop_assert_eq!(packet, built.bytes);
    }

    #[test]
    fn build_udp_round_trips(
        ipv6 in any::<bool>(),
        addresses in any::<([u8; 16], [u8; 16])>(),
        ports in any::<(u16, u16)>(),
        payload in prop::collection::vec(any::<u8>(), 0..1500),
    ) {
        let shape = if ipv6 { Shape::Ipv6Udp } else { Shape::Ipv4Udp };
        let src = SocketAddr::new(address(shape, addresses.0), ports.0);
        let dst = SocketAddr::new(address(shape, addresses.1), ports.1);
        let mut out = Vec::new();
        ip::build_udp(src, dst, &payload, &mut out).unwrap();
        // The same packet as the reference builder, but for the IPv4
        // identification and the IPv6 flow label, which differ on purpose.
        let reference = build(shape, addresses.0, addresses.1, ports, &payload);
        prop_assert_eq!(out.len(), reference.bytes.len());
        let offset = reference.transport_offset;
        prop_assert_eq!(&out[offset..], &reference.bytes[offset..]);
        let info = ip::parse(&out).unwrap();
        prop_assert_eq!(&out[ip::udp_payload(&out, &info).unwrap()], &payload[..]);
        prop_assert_eq!(ip::transport_checksum_ok(&out), Ok(true));
        if !ipv6 {
            prop_assert_eq!(be16(&out, 10), ipv4_header_checksum(&out));
        }
    }

    #[test]
    fn icmp_errors_parse_and_verify(
        shape in shape(),
        addresses in any::<([u8; 16], [u8; 16])>(),
        payload in prop::collection::vec(any::<u8>(), 0..2000),
        mtu in any::<u16>(),
    ) {
        let built = build(shape, addresses.0, addresses.1, (1, 2), &payload);
        let original = ip::parse(&built.bytes).unwrap();
        let from = address(shape, [7; 16]);
        let mut out = Vec::new();
        for too_big in [false, true] {
            let result = if too_big {
                ip::icmp_too_big(&built.bytes, from, mtu, &mut out)
            } else {
                ip::icmp_prohibited(&built.bytes, from, &mut out)
            };
            match result {
                Ok(()) => {
                    let info = ip::parse(&out).unwrap();
                    prop_assert_eq!((info.src, info.dst), (from, original.src));
                    let limit = if shape.ipv6() { 1280 } else { 576 };
                    prop_assert!(out.len() <= limit);
                    prop_assert_eq!(ip::transport_checksum_ok(&out), Ok(true));
                    let quote = quoted(&out, &info);
                    prop_assert_eq!(quote, &built.bytes[..quote.len()]);
                }
                Err(error) => {
                    prop_assert_eq!(error, IpError::IcmpNotAllowed);
                    prop_assert!(out.is_empty());
                }
            }
        }
    }

    #[test]
    fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        poke(&bytes);
        // Garbage with a plausible first byte and length field.
        for version in [0x45, 0x46, 0x60] {
            let mut bytes = bytes.clone();
            bytes.resize(bytes.len().max(48), 0);
            bytes[0] = version;
            let len = bytes.len() as u16;
            if version == 0x60 {
                bytes[4..6].copy_from_slice(&(len - 40).to_be_bytes());
            } else {
                bytes[2..4].copy_from_slice(&len.to_be_bytes());
            }
            poke(&bytes);
        }
    }

    #[test]
    fn mutated_and_truncated_packets_never_panic(
        shape in shape(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let built = sample(shape);
        let mut bytes = built.bytes.clone();
        for (at, value) in flips {
            let at = at.index(bytes.len());
            bytes[at] ^= value;
        }
        poke(&bytes);
        // A strict prefix of a valid packet contradicts its length field.
        let prefix = &built.bytes[..cut.index(built.bytes.len())];
        prop_assert!(ip::parse(prefix).is_err());
        poke(prefix);
    }
}

// ---------------------------------------------------------------------------
// `ip::build`: any transport, checksums from scratch.

#[test]
fn build_writes_whole_packets_with_reference_checksums() {
    let v4 = (
        IpAddr::V4(Ipv4Addr::new(198, 18, 0, 9)),
        IpAddr::V4(TUNNEL_CLIENT_V4),
    );
    let v6 = (
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 9)),
        IpAddr::V6(TUNNEL_CLIENT_V6),
    );
    let cases = [
        (v4, proto::TCP, tcp_segment(4444, 22, b"")),
        (v4, proto::UDP, udp_datagram(4444, 53, b"query")),
        (v4, proto::ICMP, icmp_message(8, 0, [0, 1, 0, 2], b"ping")),
        (v6, proto::TCP, tcp_segment(4444, 22, b"x")),
        (
            v6,
            proto::ICMPV6,
            icmp_message(128, 0, [0, 1, 0, 2], b"ping"),
        ),
    ];
    for ((src, dst), protocol, segment) in cases {
        let mut packet = vec![0xAA; 3];
        ip::build(src, dst, protocol, &segment, &mut packet).unwrap();
        let info = ip::parse(&packet).unwrap();
        assert_eq!((info.src, info.dst, info.protocol), (src, dst, protocol));
        let offset = info.transport_offset;
        let field = offset + checksum_field(protocol);
        assert_eq!(
            be16(&packet, field),
            transport_checksum(&packet, offset, protocol)
        );
        if src.is_ipv4() {
            assert_eq!(internet_checksum(&packet[..20]), 0);
        }
        assert_eq!(
            &packet[offset + checksum_field(protocol) + 2..],
            &segment[checksum_field(protocol) + 2..]
        );
    }
    let mut out = vec![1];
    assert_eq!(
        ip::build(v4.0, v4.1, proto::ICMPV6, b"12345678", &mut out),
        Err(IpError::UnsupportedProtocol(proto::ICMPV6))
    );
    assert_eq!(
        ip::build(v4.0, v6.1, proto::UDP, &udp_datagram(1, 2, b""), &mut out),
        Err(IpError::FamilyMismatch)
    );
    assert!(out.is_empty());
}
