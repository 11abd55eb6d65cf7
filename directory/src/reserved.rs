//! Networks that are not the public internet: the IANA IPv4 and IPv6
//! special-purpose registries' entries that are not globally reachable or
//! that tunnel into IPv4, and cloud hosts' own service addresses. One list
//! for every place that must tell: the exit policy and the exit's DNS
//! screen (what a client may reach through an exit) and the relay's
//! EXTEND policy (which addresses a client may make a relay dial).

use std::net::IpAddr;

use crate::Cidr;

/// The reserved networks. 198.18.0.0/15 (benchmarking, RFC 2544) is left
/// out on purpose and named in [`BENCHMARKING`]: it is not routed on the
/// internet, and Trine's namespace tests and testnet run on it, so an exit
/// reaches it unless told otherwise.
const RESERVED: &[&str] = &[
    "0.0.0.0/8",        // "this network" (RFC 791)
    "10.0.0.0/8",       // private (RFC 1918)
    "100.64.0.0/10",    // carrier-grade NAT (RFC 6598), incl. Alibaba's metadata
    "127.0.0.0/8",      // loopback
    "168.63.129.16/32", // Azure's wireserver (host agent, DNS, health probes)
    "169.254.0.0/16",   // link-local, incl. cloud metadata 169.254.169.254
    "172.16.0.0/12",    // private (RFC 1918)
    "192.0.0.0/24",     // IETF protocol assignments (RFC 6890)
    "192.0.2.0/24",     // documentation TEST-NET-1 (RFC 5737)
    "192.88.99.0/24",   // 6to4 relay anycast (RFC 7526, deprecated)
    "192.168.0.0/16",   // private (RFC 1918)
    "198.51.100.0/24",  // documentation TEST-NET-2 (RFC 5737)
    "203.0.113.0/24",   // documentation TEST-NET-3 (RFC 5737)
    "224.0.0.0/4",      // multicast
    "240.0.0.0/4",      // reserved, incl. broadcast
    "::/96",            // unspecified, loopback, IPv4-compatible (deprecated)
    "::ffff:0:0/96",    // IPv4-mapped: would smuggle IPv4 past these rules
    "64:ff9b::/96",     // NAT64 (RFC 6052): likewise
    "64:ff9b:1::/48",   // local-use NAT64 (RFC 8215)
    "100::/64",         // discard-only (RFC 6666)
    "100:0:0:1::/64",   // dummy prefix (RFC 9780)
    "2001::/23",        // IETF protocol assignments, incl. Teredo (embeds IPv4)
    "2001:db8::/32",    // documentation (RFC 3849)
    "2002::/16",        // 6to4 (RFC 3056): embeds IPv4, e.g. 2002:7f00:1::
    "3fff::/20",        // documentation (RFC 9637)
    "5f00::/16",        // segment routing SIDs (RFC 9602)
    "fc00::/7",         // unique local, incl. AWS's metadata fd00:ec2::254
    "fe80::/10",        // link-local
    "fec0::/10",        // site-local (RFC 3879, deprecated)
    "ff00::/8",         // multicast
];

/// The benchmarking range (RFC 2544): not routed on the internet, so not
/// global, but outside [`reserved_networks`] (see [`RESERVED`]).
pub const BENCHMARKING: &str = "198.18.0.0/15";

/// IPv6 global unicast (RFC 4291); the rest of IPv6 is unassigned or
/// named in [`RESERVED`].
const GLOBAL_UNICAST_V6: &str = "2000::/3";

/// The networks of [`RESERVED`], parsed.
pub fn reserved_networks() -> Vec<Cidr> {
    RESERVED
        .iter()
        .filter_map(|text| text.parse().ok())
        .collect()
}

/// Whether `ip` is a global unicast address: in no reserved network, not
/// in [`BENCHMARKING`], and for IPv6 inside 2000::/3. `reserved` is
/// [`reserved_networks`], parsed once by the caller.
pub fn is_global_unicast(ip: IpAddr, reserved: &[Cidr]) -> bool {
    let inside = |text: &str| text.parse::<Cidr>().is_ok_and(|net| net.contains(ip));
    let global_family = ip.is_ipv4() || inside(GLOBAL_UNICAST_V6);
    global_family && !inside(BENCHMARKING) && !reserved.iter().any(|net| net.contains(ip))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_reserved_entry_parses() {
        assert_eq!(reserved_networks().len(), RESERVED.len());
        assert!(BENCHMARKING.parse::<Cidr>().is_ok());
        assert!(GLOBAL_UNICAST_V6.parse::<Cidr>().is_ok());
    }

    #[test]
    fn only_public_unicast_is_global() {
        let reserved = reserved_networks();
        let global = |text: &str| is_global_unicast(text.parse().unwrap(), &reserved);
        for public in ["9.9.9.9", "198.17.255.1", "198.20.0.1", "2a01:4f8::1"] {
            assert!(global(public), "{public}");
        }
        for not in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "198.18.0.1",
            "198.19.255.254",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "fe80::1",
            "fd00::1",
            "ff02::1",
            "2001:db8::1",
            "4000::1",
        ] {
            assert!(!global(not), "{not}");
        }
    }
}
