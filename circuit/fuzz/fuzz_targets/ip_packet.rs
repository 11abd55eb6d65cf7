//! `ip::parse` on arbitrary bytes, after 16 bytes that supply new
//! addresses. A packet that parses must take `set_source` and
//! `set_destination` to addresses of its family and parse afterwards to the
//! same description with the new addresses; an address of the other family
//! is refused with the packet untouched. A transport checksum (whole TCP,
//! UDP, ICMP or ICMPv6 packet) and an IPv4 header checksum that were valid
//! stay valid. An ICMP error about the packet is either refused, leaving
//! its buffer empty, or parses, fits 576 (IPv4) or 1280 (IPv6) bytes, goes
//! to the original source, quotes the packet's start and has valid
//! checksums. A UDP payload range lies inside the packet.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use trine_circuit::ip::{self, IpError, PacketInfo};

/// Whether an IPv4 header's checksum verifies, computed from scratch.
fn ipv4_header_ok(packet: &[u8]) -> bool {
    let header_len = usize::from(packet[0] & 0x0F) * 4;
    let mut sum: u32 = packet[..header_len]
        .chunks_exact(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], pair[1]])))
        .sum();
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    sum == 0xFFFF
}

/// The new source and destination of the packet's family, and an address
/// of the other family.
fn addresses(material: &[u8; 16], ipv6: bool) -> (IpAddr, IpAddr, IpAddr) {
    let mut reversed = *material;
    reversed.reverse();
    let v4 = |bytes: &[u8; 16]| IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]));
    let v6 = |bytes: &[u8; 16]| IpAddr::V6(Ipv6Addr::from(*bytes));
    if ipv6 {
        (v6(material), v6(&reversed), v4(material))
    } else {
        (v4(material), v4(&reversed), v6(material))
    }
}

fn check_icmp_error(
    result: Result<(), IpError>,
    out: &[u8],
    original: &[u8],
    info: &PacketInfo,
    from: IpAddr,
) {
    match result {
        Ok(()) => {
            let error = ip::parse(out).expect("an ICMP error parses");
            assert_eq!((error.src, error.dst), (from, info.src));
            assert!(out.len() <= if from.is_ipv6() { 1280 } else { 576 });
            assert_eq!(ip::transport_checksum_ok(out), Ok(true));
            assert!(from.is_ipv6() || ipv4_header_ok(out));
            let quote = &out[error.transport_offset + 8..];
            assert_eq!(quote, &original[..quote.len()]);
            let mut again = Vec::new();
            assert_eq!(
                ip::icmp_prohibited(out, info.src, &mut again),
                Err(IpError::IcmpNotAllowed),
                "an ICMP error about an ICMP error"
            );
        }
        Err(error) => {
            assert_eq!(error, IpError::IcmpNotAllowed);
            assert!(out.is_empty());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((material, packet)) = data.split_first_chunk::<16>() else {
        return;
    };
    let Ok(info) = ip::parse(packet) else {
        assert!(ip::transport_checksum_ok(packet).is_err());
        let mut out = vec![0];
        let from = IpAddr::V6(Ipv6Addr::from(*material));
        assert!(ip::icmp_prohibited(packet, from, &mut out).is_err());
        assert!(out.is_empty());
        return;
    };
    let (new_src, new_dst, other) = addresses(material, info.src.is_ipv6());

    if let Ok(range) = ip::udp_payload(packet, &info) {
        assert!(range.start >= info.transport_offset + 8 && range.end == packet.len());
    }

    let transport_ok = ip::transport_checksum_ok(packet) == Ok(true);
    let header_ok = info.src.is_ipv4() && ipv4_header_ok(packet);
    let mut rewritten = packet.to_vec();
    assert_eq!(
        ip::set_source(&mut rewritten, other),
        Err(IpError::FamilyMismatch)
    );
    assert_eq!(
        ip::set_destination(&mut rewritten, other),
        Err(IpError::FamilyMismatch)
    );
    assert_eq!(rewritten, packet);
    assert_eq!(ip::set_source(&mut rewritten, new_src), Ok(()));
    assert_eq!(ip::set_destination(&mut rewritten, new_dst), Ok(()));
    let expected = PacketInfo {
        src: new_src,
        dst: new_dst,
        ..info
    };
    assert_eq!(ip::parse(&rewritten), Ok(expected));
    if transport_ok {
        assert_eq!(ip::transport_checksum_ok(&rewritten), Ok(true));
    }
    if header_ok {
        assert!(ipv4_header_ok(&rewritten));
    }

    let mut out = vec![0];
    let result = ip::icmp_prohibited(packet, new_dst, &mut out);
    check_icmp_error(result, &out, packet, &info, new_dst);
    let mtu = u16::from_be_bytes([material[0], material[1]]);
    let result = ip::icmp_too_big(packet, new_dst, mtu, &mut out);
    check_icmp_error(result, &out, packet, &info, new_dst);
});
