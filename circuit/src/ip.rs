//! Raw IP packets, sans I/O: what the exit relay and the desktop client need
//! to know about, and do to, the IPv4 and IPv6 packets a circuit carries.
//!
//! - [`parse`] validates a packet and describes it ([`PacketInfo`]):
//!   addresses, upper-layer protocol (past the IPv6 extension headers),
//!   ports.
//! - [`set_source`] and [`set_destination`] rewrite an address in place and
//!   patch the IPv4 header checksum and the TCP, UDP or ICMPv6 checksum
//!   incrementally (RFC 1624), so the exit can translate between a client's
//!   fixed inner address ([`TUNNEL_CLIENT_V4`], [`TUNNEL_CLIENT_V6`]) and a
//!   per-circuit pool address.
//! - [`icmp_prohibited`] and [`icmp_too_big`] build ICMP errors about a
//!   packet, and refuse where RFC 1122 and RFC 4443 say none may be sent.
//! - [`build_udp`] and [`udp_payload`] serve the tunnel's DNS resolver.
//! - [`transport_checksum_ok`] checks a transport checksum from scratch.
//!
//! Every input byte is untrusted: malformed packets give an [`IpError`],
//! never a panic. Nothing here allocates, except into a caller's `out`.
//!
//! Deliberately narrow: source-routed packets (IPv4 LSRR/SSRR options, an
//! IPv6 routing header with segments left) are refused, because their
//! destination field is not where they end up; IPv6 jumbograms are refused;
//! of the IPv6 extension headers only hop-by-hop, routing, fragment and
//! destination options are walked, in an order RFC 8200 allows.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;

/// The client's own IPv4 address inside the tunnel. Every client's TUN
/// interface has this same address; the exit translates it to a
/// per-circuit pool address on the way out and back on the way in.
pub const TUNNEL_CLIENT_V4: Ipv4Addr = Ipv4Addr::new(172, 22, 0, 2);
/// The tunnel's virtual DNS resolver (IPv4). Clients send their DNS
/// queries here; the exit answers them itself.
pub const TUNNEL_RESOLVER_V4: Ipv4Addr = Ipv4Addr::new(172, 22, 0, 53);
/// The client's own IPv6 address inside the tunnel, `fd74:726e::2` (a
/// unique local address), the counterpart of [`TUNNEL_CLIENT_V4`].
pub const TUNNEL_CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0xfd74, 0x726e, 0, 0, 0, 0, 0, 0x2);
/// The tunnel's virtual DNS resolver (IPv6), `fd74:726e::53`, the
/// counterpart of [`TUNNEL_RESOLVER_V4`].
pub const TUNNEL_RESOLVER_V6: Ipv6Addr = Ipv6Addr::new(0xfd74, 0x726e, 0, 0, 0, 0, 0, 0x53);

/// IP protocol numbers (IANA) this module knows.
pub mod proto {
    /// Internet Control Message Protocol, for IPv4.
    pub const ICMP: u8 = 1;
    /// Transmission Control Protocol.
    pub const TCP: u8 = 6;
    /// User Datagram Protocol.
    pub const UDP: u8 = 17;
    /// Internet Control Message Protocol, for IPv6.
    pub const ICMPV6: u8 = 58;
}

/// Why bytes were not a usable IP packet, or an operation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IpError {
    /// Zero bytes.
    #[error("empty packet")]
    Empty,
    /// The version nibble is neither 4 nor 6.
    #[error("IP version {0} is neither 4 nor 6")]
    UnknownVersion(u8),
    /// Shorter than a header it must contain.
    #[error("packet truncated")]
    Truncated,
    /// An IPv4 header length below 20 bytes or beyond the packet, or
    /// malformed IPv4 options.
    #[error("malformed IP header")]
    BadHeader,
    /// The IPv4 total length, or IPv6 payload length plus 40, is not the
    /// packet's size.
    #[error("IP length field does not match the packet's size")]
    LengthMismatch,
    /// An IPv6 extension header out of place, repeated, or truncated.
    #[error("malformed or misplaced IPv6 extension header")]
    BadExtension,
    /// An IPv4 source route option, or an IPv6 routing header with segments
    /// left: the destination field is not the packet's final destination.
    #[error("source-routed packet")]
    SourceRouted,
    /// A TCP, UDP or ICMP header cut short in a packet that should hold it
    /// (not a later fragment).
    #[error("transport header truncated")]
    TransportTruncated,
    /// An address of the other family than the packet's, or two addresses
    /// of different families.
    #[error("address family does not match")]
    FamilyMismatch,
    /// Not a UDP packet with its UDP header (another protocol, or a later
    /// fragment).
    #[error("not a UDP datagram")]
    NotUdp,
    /// The UDP length field disagrees with the packet.
    #[error("UDP length field is inconsistent with the packet")]
    BadUdpLength,
    /// A fragment, where a whole datagram is needed.
    #[error("packet is a fragment")]
    Fragmented,
    /// A protocol without a transport checksum known here.
    #[error("no transport checksum known for protocol {0}")]
    UnsupportedProtocol(u8),
    /// RFC 1122 / RFC 4443 forbid an ICMP error about this packet: it is an
    /// ICMP error itself, a later fragment, from an address that is not one
    /// host, or to a multicast or broadcast address.
    #[error("no ICMP error may be sent about this packet")]
    IcmpNotAllowed,
    /// The packet to build would exceed the IP length limit.
    #[error("packet would exceed the maximum IP length")]
    TooLong,
}

/// What [`parse`] found in a valid packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketInfo {
    /// Source address; its family is the packet's.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Upper-layer protocol (IPv6: after the hop-by-hop, routing, fragment
    /// and destination options headers).
    pub protocol: u8,
    /// TCP or UDP source port when the transport header is present (not a
    /// later fragment), else `None`.
    pub src_port: Option<u16>,
    /// TCP or UDP destination port, like `src_port`.
    pub dst_port: Option<u16>,
    /// Offset of the transport header (of a later fragment: of its data).
    pub transport_offset: usize,
    /// The packet is a fragment other than the first (no transport header).
    pub later_fragment: bool,
}

const IPV4_HEADER_LEN: usize = 20;
const IPV6_HEADER_LEN: usize = 40;
const UDP_HEADER_LEN: usize = 8;
/// Type, code, checksum and the four bytes after them.
const ICMP_HEADER_LEN: usize = 8;
const IPV4_CHECKSUM_AT: usize = 10;
/// TTL / hop limit of the packets built here.
const HOP_LIMIT: u8 = 64;
/// Largest ICMP error packets, quote included (RFC 1812 §4.3.2.3, RFC 4443
/// §2.4 c).
const ICMPV4_ERROR_MAX: usize = 576;
const ICMPV6_ERROR_MAX: usize = 1280;
/// ICMPv4 types that are not errors (echo, router discovery, timestamp,
/// information, address mask). Any other type might be an error, and no
/// error is ever sent about an error.
const ICMPV4_QUERIES: [u8; 10] = [0, 8, 9, 10, 13, 14, 15, 16, 17, 18];
/// ICMPv6 types below this are errors (RFC 4443 §2.1).
const ICMPV6_FIRST_INFORMATIONAL: u8 = 128;
const ICMPV6_REDIRECT: u8 = 137;

// IPv6 extension headers (RFC 8200).
const HOP_BY_HOP: u8 = 0;
const ROUTING: u8 = 43;
const FRAGMENT: u8 = 44;
const DESTINATION_OPTIONS: u8 = 60;
const FRAGMENT_HEADER_LEN: usize = 8;

// IPv4 options (RFC 791).
const OPTION_END: u8 = 0;
const OPTION_NOP: u8 = 1;
const OPTION_LSRR: u8 = 131;
const OPTION_SSRR: u8 = 137;

/// Validates and describes a packet: version 4 or 6, a sane header length,
/// a length field equal to `packet.len()`, well-formed IPv4 options or IPv6
/// extension header chain, no source route, and (unless a later fragment,
/// so also in a first fragment) a whole TCP, UDP, ICMP or ICMPv6 header for
/// those protocols. The IPv4 header checksum is not checked.
pub fn parse(packet: &[u8]) -> Result<PacketInfo, IpError> {
    let network = parse_network(packet)?;
    describe(packet, &network)
}

/// Rewrites the source address in place, with the IPv4 header checksum and
/// the TCP, UDP or ICMPv6 checksum patched to match. `new` must be of the
/// packet's family. A UDP checksum of 0 (none) stays 0, and one that comes
/// out as 0 is written 0xFFFF; a later fragment has only its IPv4 header
/// checksum patched.
pub fn set_source(packet: &mut [u8], new: IpAddr) -> Result<(), IpError> {
    rewrite_address(packet, Endpoint::Source, new)
}

/// Rewrites the destination address in place, like [`set_source`].
pub fn set_destination(packet: &mut [u8], new: IpAddr) -> Result<(), IpError> {
    rewrite_address(packet, Endpoint::Destination, new)
}

/// Writes into `out` an ICMP "destination unreachable: communication
/// administratively prohibited" (IPv4 type 3 code 13, IPv6 type 1 code 1)
/// from `from` to `original`'s source, quoting as much of `original` as
/// fits in 576 (IPv4) or 1280 (IPv6) bytes. Refuses with
/// [`IpError::IcmpNotAllowed`] where no ICMP error may be sent (see there).
/// `out` is cleared first, and left empty on error.
pub fn icmp_prohibited(original: &[u8], from: IpAddr, out: &mut Vec<u8>) -> Result<(), IpError> {
    icmp_error(original, from, IcmpError::Prohibited, out)
}

/// Like [`icmp_prohibited`], but "fragmentation needed" (IPv4 type 3 code
/// 4, next-hop MTU in bytes 6..8) or "packet too big" (IPv6 type 2, the MTU
/// in bytes 4..8). IPv6 allows this one about packets to a multicast
/// address.
pub fn icmp_too_big(
    original: &[u8],
    from: IpAddr,
    mtu: u16,
    out: &mut Vec<u8>,
) -> Result<(), IpError> {
    icmp_error(original, from, IcmpError::TooBig(mtu), out)
}

/// Writes into `out` a whole UDP packet from `src` to `dst`: IPv4 (no
/// options, don't-fragment set, valid header checksum) or IPv6, TTL or hop
/// limit 64, correct UDP checksum. `src` and `dst` must be of one family.
/// `out` is cleared first, and left empty on error.
pub fn build_udp(
    src: SocketAddr,
    dst: SocketAddr,
    payload: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), IpError> {
    write_packet(out, |out| {
        let udp_len =
            u16::try_from(UDP_HEADER_LEN + payload.len()).map_err(|_| IpError::TooLong)?;
        let offset = start_packet(out, src.ip(), dst.ip(), proto::UDP, usize::from(udp_len))?;
        out.extend_from_slice(&src.port().to_be_bytes());
        out.extend_from_slice(&dst.port().to_be_bytes());
        out.extend_from_slice(&udp_len.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(payload);
        seal(out, offset, Transport::Udp, src.ip(), dst.ip())
    })
}

/// Writes into `out` a whole packet from `src` to `dst` carrying
/// `segment`, a TCP, UDP, ICMP (IPv4) or ICMPv6 (IPv6) header and its
/// payload: the IP header as [`build_udp`] writes it, and the transport
/// checksum computed over `segment` with its checksum field taken as 0.
/// For tests and tools that craft packets (a hostile peer's, say). `out`
/// is cleared first, and left empty on error.
pub fn build(
    src: IpAddr,
    dst: IpAddr,
    protocol: u8,
    segment: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), IpError> {
    let transport =
        Transport::of(protocol, src.is_ipv6()).ok_or(IpError::UnsupportedProtocol(protocol))?;
    write_packet(out, |out| {
        let offset = start_packet(out, src, dst, protocol, segment.len())?;
        out.extend_from_slice(segment);
        put_be16(out, offset + transport.checksum_offset(), 0)?;
        seal(out, offset, transport, src, dst)
    })
}

/// Where the payload of a UDP packet lies in `packet`, which `info`
/// describes (from [`parse`]). Errors unless it is UDP with its header and
/// a UDP length field of exactly the rest of the packet.
pub fn udp_payload(packet: &[u8], info: &PacketInfo) -> Result<Range<usize>, IpError> {
    if info.protocol != proto::UDP || info.later_fragment {
        return Err(IpError::NotUdp);
    }
    let start = info.transport_offset;
    let length = usize::from(be16(packet, start.saturating_add(4))?);
    if length < UDP_HEADER_LEN || start.saturating_add(length) != packet.len() {
        return Err(IpError::BadUdpLength);
    }
    Ok(start + UDP_HEADER_LEN..packet.len())
}

/// Whether the TCP, UDP, ICMP (IPv4) or ICMPv6 (IPv6) checksum of a whole,
/// unfragmented packet is valid, computed from scratch. A UDP checksum of 0
/// means none: fine over IPv4, invalid over IPv6 (RFC 8200 §8.1).
pub fn transport_checksum_ok(packet: &[u8]) -> Result<bool, IpError> {
    let network = parse_network(packet)?;
    let info = describe(packet, &network)?;
    if network.later_fragment || network.more_fragments {
        return Err(IpError::Fragmented);
    }
    let transport = Transport::of(info.protocol, info.src.is_ipv6())
        .ok_or(IpError::UnsupportedProtocol(info.protocol))?;
    let segment = packet
        .get(info.transport_offset..)
        .ok_or(IpError::Truncated)?;
    if transport == Transport::Udp && be16(segment, transport.checksum_offset())? == 0 {
        return Ok(info.src.is_ipv4());
    }
    Ok(fold(transport_sum(transport, info.src, info.dst, segment)) == 0xFFFF)
}

/// What the IP layer says, before the transport header is looked at.
struct Network {
    src: IpAddr,
    dst: IpAddr,
    protocol: u8,
    transport_offset: usize,
    later_fragment: bool,
    /// More fragments follow this one.
    more_fragments: bool,
}

fn parse_network(packet: &[u8]) -> Result<Network, IpError> {
    let first = *packet.first().ok_or(IpError::Empty)?;
    match first >> 4 {
        4 => parse_ipv4(packet),
        6 => parse_ipv6(packet),
        version => Err(IpError::UnknownVersion(version)),
    }
}

fn parse_ipv4(packet: &[u8]) -> Result<Network, IpError> {
    if packet.len() < IPV4_HEADER_LEN {
        return Err(IpError::Truncated);
    }
    let header_len = usize::from(byte(packet, 0)? & 0x0F) * 4;
    if usize::from(be16(packet, 2)?) != packet.len() {
        return Err(IpError::LengthMismatch);
    }
    let options = packet
        .get(IPV4_HEADER_LEN..header_len)
        .ok_or(IpError::BadHeader)?;
    check_ipv4_options(options)?;
    let fragment = be16(packet, 6)?;
    Ok(Network {
        src: IpAddr::V4(Ipv4Addr::from(array_at::<4>(packet, 12)?)),
        dst: IpAddr::V4(Ipv4Addr::from(array_at::<4>(packet, 16)?)),
        protocol: byte(packet, 9)?,
        transport_offset: header_len,
        later_fragment: fragment & 0x1FFF != 0,
        more_fragments: fragment & 0x2000 != 0,
    })
}

/// Refuses malformed options and source routes.
fn check_ipv4_options(mut options: &[u8]) -> Result<(), IpError> {
    while let Some(&kind) = options.first() {
        match kind {
            OPTION_END => return Ok(()),
            OPTION_NOP => options = options.get(1..).unwrap_or_default(),
            OPTION_LSRR | OPTION_SSRR => return Err(IpError::SourceRouted),
            _ => {
                let len = usize::from(byte(options, 1).map_err(|_| IpError::BadHeader)?);
                if len < 2 {
                    return Err(IpError::BadHeader);
                }
                options = options.get(len..).ok_or(IpError::BadHeader)?;
            }
        }
    }
    Ok(())
}

fn parse_ipv6(packet: &[u8]) -> Result<Network, IpError> {
    if packet.len() < IPV6_HEADER_LEN {
        return Err(IpError::Truncated);
    }
    if usize::from(be16(packet, 4)?) + IPV6_HEADER_LEN != packet.len() {
        return Err(IpError::LengthMismatch);
    }
    let mut network = Network {
        src: IpAddr::V6(Ipv6Addr::from(array_at::<16>(packet, 8)?)),
        dst: IpAddr::V6(Ipv6Addr::from(array_at::<16>(packet, 24)?)),
        protocol: byte(packet, 6)?,
        transport_offset: IPV6_HEADER_LEN,
        later_fragment: false,
        more_fragments: false,
    };
    let mut seen = SeenExtensions::default();
    loop {
        let at = network.transport_offset;
        let header_len = match network.protocol {
            HOP_BY_HOP if at == IPV6_HEADER_LEN => extension_len(packet, at)?,
            ROUTING if !seen.routing => {
                seen.routing = true;
                if byte(packet, at + 3).map_err(|_| IpError::BadExtension)? != 0 {
                    return Err(IpError::SourceRouted);
                }
                extension_len(packet, at)?
            }
            DESTINATION_OPTIONS if seen.destination_options < 2 => {
                seen.destination_options += 1;
                extension_len(packet, at)?
            }
            FRAGMENT if !seen.fragment => {
                seen.fragment = true;
                let offset_flags = be16(packet, at + 2).map_err(|_| IpError::BadExtension)?;
                network.later_fragment = offset_flags >> 3 != 0;
                network.more_fragments = offset_flags & 1 != 0;
                FRAGMENT_HEADER_LEN
            }
            HOP_BY_HOP | ROUTING | DESTINATION_OPTIONS | FRAGMENT => {
                return Err(IpError::BadExtension);
            }
            _ => return Ok(network),
        };
        let next = byte(packet, at).map_err(|_| IpError::BadExtension)?;
        if at + header_len > packet.len() {
            return Err(IpError::BadExtension);
        }
        network.protocol = next;
        network.transport_offset = at + header_len;
        // What follows a later fragment's header is data, not headers.
        if network.later_fragment {
            return Ok(network);
        }
    }
}

/// IPv6 extension headers met so far, to refuse repeats.
#[derive(Default)]
struct SeenExtensions {
    routing: bool,
    fragment: bool,
    destination_options: u8,
}

/// Length of a hop-by-hop, routing or destination options header: its
/// second byte, in 8-byte units, not counting the first 8 bytes.
fn extension_len(packet: &[u8], at: usize) -> Result<usize, IpError> {
    let units = byte(packet, at + 1).map_err(|_| IpError::BadExtension)?;
    Ok((usize::from(units) + 1) * 8)
}

fn describe(packet: &[u8], network: &Network) -> Result<PacketInfo, IpError> {
    let mut info = PacketInfo {
        src: network.src,
        dst: network.dst,
        protocol: network.protocol,
        src_port: None,
        dst_port: None,
        transport_offset: network.transport_offset,
        later_fragment: network.later_fragment,
    };
    if info.later_fragment {
        return Ok(info);
    }
    let Some(transport) = Transport::of(info.protocol, info.src.is_ipv6()) else {
        return Ok(info);
    };
    let available = packet.len().saturating_sub(info.transport_offset);
    if available < transport.min_header_len() {
        return Err(IpError::TransportTruncated);
    }
    if matches!(transport, Transport::Tcp | Transport::Udp) {
        info.src_port = Some(be16(packet, info.transport_offset)?);
        info.dst_port = Some(be16(packet, info.transport_offset + 2)?);
    }
    Ok(info)
}

/// A transport protocol whose checksum this module knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Tcp,
    Udp,
    Icmp,
    Icmpv6,
}

impl Transport {
    /// `protocol` in a packet of the given family: ICMP only counts over
    /// IPv4, ICMPv6 only over IPv6.
    fn of(protocol: u8, ipv6: bool) -> Option<Self> {
        match (protocol, ipv6) {
            (proto::TCP, _) => Some(Self::Tcp),
            (proto::UDP, _) => Some(Self::Udp),
            (proto::ICMP, false) => Some(Self::Icmp),
            (proto::ICMPV6, true) => Some(Self::Icmpv6),
            _ => None,
        }
    }

    fn protocol(self) -> u8 {
        match self {
            Self::Tcp => proto::TCP,
            Self::Udp => proto::UDP,
            Self::Icmp => proto::ICMP,
            Self::Icmpv6 => proto::ICMPV6,
        }
    }

    /// Fixed header (RFC 9293, RFC 768, RFC 792); ICMPv6 messages have
    /// only type, code and checksum in common (RFC 4443 §2.1).
    fn min_header_len(self) -> usize {
        match self {
            Self::Tcp => 20,
            Self::Udp => UDP_HEADER_LEN,
            Self::Icmp => ICMP_HEADER_LEN,
            Self::Icmpv6 => 4,
        }
    }

    fn checksum_offset(self) -> usize {
        match self {
            Self::Tcp => 16,
            Self::Udp => 6,
            Self::Icmp | Self::Icmpv6 => 2,
        }
    }

    /// Whether the checksum covers the addresses too.
    fn has_pseudo_header(self) -> bool {
        self != Self::Icmp
    }
}

/// Which address [`rewrite_address`] replaces.
#[derive(Debug, Clone, Copy)]
enum Endpoint {
    Source,
    Destination,
}

fn rewrite_address(packet: &mut [u8], endpoint: Endpoint, new: IpAddr) -> Result<(), IpError> {
    let info = parse(packet)?;
    let old = match endpoint {
        Endpoint::Source => info.src,
        Endpoint::Destination => info.dst,
    };
    let at = match (endpoint, old) {
        (Endpoint::Source, IpAddr::V4(_)) => 12,
        (Endpoint::Destination, IpAddr::V4(_)) => 16,
        (Endpoint::Source, IpAddr::V6(_)) => 8,
        (Endpoint::Destination, IpAddr::V6(_)) => 24,
    };
    match (old, new) {
        (IpAddr::V4(old), IpAddr::V4(new)) => {
            replace_address(packet, &info, at, &old.octets(), &new.octets())
        }
        (IpAddr::V6(old), IpAddr::V6(new)) => {
            replace_address(packet, &info, at, &old.octets(), &new.octets())
        }
        _ => Err(IpError::FamilyMismatch),
    }
}

/// Writes `new` over the address `old` at `at`, then patches every checksum
/// that covers it. `info` describes `packet`, so every offset is in bounds.
fn replace_address(
    packet: &mut [u8],
    info: &PacketInfo,
    at: usize,
    old: &[u8],
    new: &[u8],
) -> Result<(), IpError> {
    if old == new {
        return Ok(());
    }
    packet
        .get_mut(at..at + new.len())
        .ok_or(IpError::Truncated)?
        .copy_from_slice(new);
    if info.src.is_ipv4() {
        patch_checksum(packet, IPV4_CHECKSUM_AT, old, new, false)?;
    }
    if info.later_fragment {
        return Ok(());
    }
    let Some(transport) = Transport::of(info.protocol, info.src.is_ipv6()) else {
        return Ok(());
    };
    if !transport.has_pseudo_header() {
        return Ok(());
    }
    let checksum_at = info.transport_offset + transport.checksum_offset();
    let udp = transport == Transport::Udp;
    if udp && be16(packet, checksum_at)? == 0 {
        return Ok(()); // No checksum: keep it that way.
    }
    patch_checksum(packet, checksum_at, old, new, udp)
}

/// The ICMP error [`icmp_error`] builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IcmpError {
    Prohibited,
    TooBig(u16),
}

impl IcmpError {
    /// Type, code and the four bytes after the checksum.
    fn header(self, ipv6: bool) -> (u8, u8, [u8; 4]) {
        match (self, ipv6) {
            (Self::Prohibited, false) => (3, 13, [0; 4]),
            (Self::Prohibited, true) => (1, 1, [0; 4]),
            (Self::TooBig(mtu), false) => {
                let [hi, lo] = mtu.to_be_bytes();
                (3, 4, [0, 0, hi, lo])
            }
            (Self::TooBig(mtu), true) => (2, 0, u32::from(mtu).to_be_bytes()),
        }
    }
}

fn icmp_error(
    original: &[u8],
    from: IpAddr,
    kind: IcmpError,
    out: &mut Vec<u8>,
) -> Result<(), IpError> {
    write_packet(out, |out| {
        let info = parse(original)?;
        if from.is_ipv6() != info.src.is_ipv6() {
            return Err(IpError::FamilyMismatch);
        }
        if !icmp_error_allowed(original, &info, kind)? {
            return Err(IpError::IcmpNotAllowed);
        }
        let (transport, max_len, header_len) = match from {
            IpAddr::V4(_) => (Transport::Icmp, ICMPV4_ERROR_MAX, IPV4_HEADER_LEN),
            IpAddr::V6(_) => (Transport::Icmpv6, ICMPV6_ERROR_MAX, IPV6_HEADER_LEN),
        };
        let quote_len = original.len().min(max_len - header_len - ICMP_HEADER_LEN);
        let quote = original.get(..quote_len).ok_or(IpError::Truncated)?;
        let (icmp_type, code, rest) = kind.header(from.is_ipv6());
        let offset = start_packet(
            out,
            from,
            info.src,
            transport.protocol(),
            ICMP_HEADER_LEN + quote_len,
        )?;
        out.extend_from_slice(&[icmp_type, code, 0, 0]);
        out.extend_from_slice(&rest);
        out.extend_from_slice(quote);
        seal(out, offset, transport, from, info.src)
    })
}

/// RFC 1122 §3.2.2 and RFC 4443 §2.4 (e): no ICMP error about an ICMP
/// error (or an ICMPv6 redirect), a later fragment, a packet whose source
/// is not one host, or one to a multicast or broadcast address (IPv6 makes
/// an exception for "packet too big").
fn icmp_error_allowed(
    original: &[u8],
    info: &PacketInfo,
    kind: IcmpError,
) -> Result<bool, IpError> {
    if info.later_fragment {
        return Ok(false);
    }
    let (one_host_source, group_destination) = match (info.src, info.dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => (
            !(src.is_unspecified() || src.is_multicast() || src.is_broadcast()),
            dst.is_multicast() || dst.is_broadcast(),
        ),
        (IpAddr::V6(src), IpAddr::V6(dst)) => (
            !(src.is_unspecified() || src.is_multicast()),
            dst.is_multicast() && kind == IcmpError::Prohibited,
        ),
        _ => return Err(IpError::FamilyMismatch),
    };
    if !one_host_source || group_destination {
        return Ok(false);
    }
    Ok(match Transport::of(info.protocol, info.src.is_ipv6()) {
        Some(Transport::Icmp) => ICMPV4_QUERIES.contains(&byte(original, info.transport_offset)?),
        Some(Transport::Icmpv6) => {
            let icmp_type = byte(original, info.transport_offset)?;
            icmp_type >= ICMPV6_FIRST_INFORMATIONAL && icmp_type != ICMPV6_REDIRECT
        }
        _ => true,
    })
}

/// Runs `build` on `out`, cleared; leaves `out` empty if it fails.
fn write_packet(
    out: &mut Vec<u8>,
    build: impl FnOnce(&mut Vec<u8>) -> Result<(), IpError>,
) -> Result<(), IpError> {
    out.clear();
    let result = build(out);
    if result.is_err() {
        out.clear();
    }
    result
}

/// Appends to the empty `out` an IP header from `src` to `dst` for
/// `payload_len` bytes of `protocol`, and returns its length.
fn start_packet(
    out: &mut Vec<u8>,
    src: IpAddr,
    dst: IpAddr,
    protocol: u8,
    payload_len: usize,
) -> Result<usize, IpError> {
    match (src, dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            let total =
                u16::try_from(IPV4_HEADER_LEN + payload_len).map_err(|_| IpError::TooLong)?;
            out.extend_from_slice(&[0x45, 0]);
            out.extend_from_slice(&total.to_be_bytes());
            // Identification 0 with don't-fragment set: an atomic datagram
            // (RFC 6864), so no unique identification is owed.
            out.extend_from_slice(&[0, 0, 0x40, 0, HOP_LIMIT, protocol, 0, 0]);
            out.extend_from_slice(&src.octets());
            out.extend_from_slice(&dst.octets());
            let checksum = !fold(add_words(0, out));
            put_be16(out, IPV4_CHECKSUM_AT, checksum)?;
            Ok(IPV4_HEADER_LEN)
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            let payload_len = u16::try_from(payload_len).map_err(|_| IpError::TooLong)?;
            out.extend_from_slice(&[0x60, 0, 0, 0]);
            out.extend_from_slice(&payload_len.to_be_bytes());
            out.extend_from_slice(&[protocol, HOP_LIMIT]);
            out.extend_from_slice(&src.octets());
            out.extend_from_slice(&dst.octets());
            Ok(IPV6_HEADER_LEN)
        }
        _ => Err(IpError::FamilyMismatch),
    }
}

/// Fills in the transport checksum of the segment at `offset` in `packet`,
/// whose checksum field holds 0.
fn seal(
    packet: &mut [u8],
    offset: usize,
    transport: Transport,
    src: IpAddr,
    dst: IpAddr,
) -> Result<(), IpError> {
    let segment = packet.get(offset..).ok_or(IpError::Truncated)?;
    let sum = transport_sum(transport, src, dst, segment);
    let checksum = checksum_of(sum, transport == Transport::Udp);
    put_be16(packet, offset + transport.checksum_offset(), checksum)
}

/// The one's-complement sum a transport checksum covers: the pseudo-header
/// if the protocol has one (RFC 768, RFC 8200 §8.1), then `segment`.
fn transport_sum(transport: Transport, src: IpAddr, dst: IpAddr, segment: &[u8]) -> u64 {
    let pseudo_header = if transport.has_pseudo_header() {
        let length = segment.len() as u64;
        let sum = add_address(add_address(0, src), dst);
        sum + u64::from(transport.protocol()) + (length >> 16) + (length & 0xFFFF)
    } else {
        0
    };
    add_words(pseudo_header, segment)
}

fn add_address(sum: u64, address: IpAddr) -> u64 {
    match address {
        IpAddr::V4(address) => add_words(sum, &address.octets()),
        IpAddr::V6(address) => add_words(sum, &address.octets()),
    }
}

/// Replaces the checksum at `at` after `old` became `new` among the bytes
/// it covers (RFC 1624 eqn. 3: `HC' = ~(~HC + ~m + m')`). `old` and `new`
/// have an even length, and sit at an even offset of the covered bytes.
fn patch_checksum(
    packet: &mut [u8],
    at: usize,
    old: &[u8],
    new: &[u8],
    udp: bool,
) -> Result<(), IpError> {
    let current = be16(packet, at)?;
    let sum = add_words(remove_words(u64::from(!current), old), new);
    put_be16(packet, at, checksum_of(sum, udp))
}

/// The checksum field for a one's-complement `sum`. UDP sends a computed 0
/// as `0xFFFF`, since 0 means "no checksum" (RFC 768).
fn checksum_of(sum: u64, udp: bool) -> u16 {
    match !fold(sum) {
        0 if udp => 0xFFFF,
        checksum => checksum,
    }
}

/// Adds `bytes` as big-endian 16-bit words (an odd last byte padded with a
/// zero) to an unfolded one's-complement sum.
fn add_words(sum: u64, bytes: &[u8]) -> u64 {
    let words = bytes.chunks_exact(2);
    let last = match words.remainder() {
        [byte] => u64::from(*byte) << 8,
        _ => 0,
    };
    words.fold(sum + last, |sum, pair| {
        sum + u64::from(u16::from_be_bytes([pair[0], pair[1]]))
    })
}

/// Adds the one's complement of each 16-bit word of `bytes` (even length):
/// takes them out of a sum.
fn remove_words(sum: u64, bytes: &[u8]) -> u64 {
    bytes.chunks_exact(2).fold(sum, |sum, pair| {
        sum + u64::from(!u16::from_be_bytes([pair[0], pair[1]]))
    })
}

/// Folds the carries of a one's-complement sum back in, to 16 bits.
fn fold(mut sum: u64) -> u16 {
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    sum as u16
}

fn byte(bytes: &[u8], at: usize) -> Result<u8, IpError> {
    bytes.get(at).copied().ok_or(IpError::Truncated)
}

fn be16(bytes: &[u8], at: usize) -> Result<u16, IpError> {
    array_at::<2>(bytes, at).map(u16::from_be_bytes)
}

fn array_at<const N: usize>(bytes: &[u8], at: usize) -> Result<[u8; N], IpError> {
    bytes
        .get(at..at.saturating_add(N))
        .and_then(|slice| <[u8; N]>::try_from(slice).ok())
        .ok_or(IpError::Truncated)
}

fn put_be16(bytes: &mut [u8], at: usize, value: u16) -> Result<(), IpError> {
    match bytes.get_mut(at..at.saturating_add(2)) {
        Some([hi, lo]) => {
            [*hi, *lo] = value.to_be_bytes();
            Ok(())
        }
        _ => Err(IpError::Truncated),
    }
}
