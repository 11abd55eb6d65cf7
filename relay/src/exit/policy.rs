//! The exit policy: which packets a client may send out. Checked on every
//! packet before it leaves. The exit's own addresses (interfaces and
//! advertised ones) and its NAT pools are always refused; reserved networks
//! (loopback, private, link-local incl. cloud metadata, the IANA
//! special-purpose ranges, ...) are refused unless the operator allows a
//! network explicitly; only the IP protocols the operator names (default
//! TCP, UDP, ICMP) pass, and ports go through ordered accept/reject rules.

use std::net::IpAddr;
use std::str::FromStr;

use trine_circuit::ip::{PacketInfo, proto};

/// Address prefixes are the directory's type: the simulator's link
/// adversaries use the same one.
pub use trine_directory::Cidr;

/// Networks no exit reaches unless the operator allows them: the list the
/// relay's EXTEND policy uses too (198.18.0.0/15 stays reachable).
pub use trine_directory::reserved::reserved_networks;

/// IP protocols the operator may name in `exit_policy.protocols`, beside
/// a number from 0 to 255. `icmp` is ICMP over IPv4 and ICMPv6 over IPv6.
const PROTOCOL_NAMES: &[(&str, &[u8])] = &[
    ("tcp", &[proto::TCP]),
    ("udp", &[proto::UDP]),
    ("icmp", &[proto::ICMP, proto::ICMPV6]),
    ("ipip", &[IPIP]),
    ("gre", &[47]),
    ("esp", &[50]),
    ("ah", &[51]),
    ("ipv6", &[41]),
    ("dccp", &[DCCP]),
    ("sctp", &[SCTP]),
    ("udplite", &[UDP_LITE]),
];
const IPIP: u8 = 4;
const DCCP: u8 = 33;
const SCTP: u8 = 132;
const UDP_LITE: u8 = 136;
/// Protocols with TCP's and UDP's port layout that the parser does not
/// read ports of: the port rules read their destination port here.
const OTHER_PORTED: [u8; 3] = [DCCP, SCTP, UDP_LITE];

/// The IP protocols that may leave (a set of protocol numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Protocols([u128; 2]);

impl Protocols {
    /// TCP, UDP, ICMP and ICMPv6: what an exit passes unless told otherwise.
    pub const DEFAULT: Self = Self([0; 2])
        .with(proto::TCP)
        .with(proto::UDP)
        .with(proto::ICMP)
        .with(proto::ICMPV6);
    /// [`Protocols::DEFAULT`] as the operator writes it.
    pub const DEFAULT_NAMES: [&str; 3] = ["tcp", "udp", "icmp"];

    /// Parses the operator's list of names and numbers.
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<Self, String> {
        if names.is_empty() {
            return Err(
                "must name at least one protocol, e.g. [\"tcp\", \"udp\", \"icmp\"]".into(),
            );
        }
        let mut set = Self([0; 2]);
        for name in names {
            let name = name.as_ref().trim();
            if let Some((_, numbers)) = PROTOCOL_NAMES.iter().find(|(known, _)| *known == name) {
                set = numbers.iter().fold(set, |set, number| set.with(*number));
                continue;
            }
            let number = name.parse().map_err(|_| {
                let known: Vec<&str> = PROTOCOL_NAMES.iter().map(|(known, _)| *known).collect();
                format!(
                    "`{name}` is neither a protocol number (0-255) nor one of {}",
                    known.join(", ")
                )
            })?;
            set = set.with(number);
        }
        Ok(set)
    }

    /// Whether protocol `number` is in the set.
    pub fn contains(&self, number: u8) -> bool {
        self.0[usize::from(number >> 7)] & (1 << (number & 127)) != 0
    }

    const fn with(mut self, number: u8) -> Self {
        self.0[(number >> 7) as usize] |= 1 << (number & 127);
        self
    }
}

/// One port rule: `accept 80`, `reject 25`, `accept 1024-65535`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRule {
    /// Accept (true) or reject.
    pub accept: bool,
    /// First port.
    pub low: u16,
    /// Last port (inclusive).
    pub high: u16,
}

impl FromStr for PortRule {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || {
            format!("`{text}` is not `accept PORTS` or `reject PORTS` (PORTS: 25, 6660-6669 or *)")
        };
        let (verb, ports) = text.trim().split_once(' ').ok_or_else(bad)?;
        let accept = match verb {
            "accept" => true,
            "reject" => false,
            _ => return Err(bad()),
        };
        let ports = ports.trim();
        let (low, high) = if ports == "*" {
            (1, u16::MAX)
        } else if let Some((low, high)) = ports.split_once('-') {
            (
                low.parse().map_err(|_| bad())?,
                high.parse().map_err(|_| bad())?,
            )
        } else {
            let port = ports.parse().map_err(|_| bad())?;
            (port, port)
        };
        if low == 0 || low > high {
            return Err(bad());
        }
        Ok(Self { accept, low, high })
    }
}

/// Why a packet was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A reserved network (loopback, private, link-local, multicast, ...).
    Reserved,
    /// One of the exit's own addresses (on an interface or advertised) or
    /// of its NAT pools.
    OwnAddress,
    /// A port rule rejected its destination port (or a first fragment
    /// too short to show it).
    Port,
    /// Its IP protocol is not in the allowlist (or is ICMP of the other IP
    /// version).
    Protocol,
}

/// What may leave this exit.
#[derive(Debug, Clone)]
pub struct ExitPolicy {
    reserved: Vec<Cidr>,
    allowed: Vec<Cidr>,
    own: Vec<IpAddr>,
    pools: Vec<Cidr>,
    ports: Vec<PortRule>,
    protocols: Protocols,
}

impl ExitPolicy {
    /// Refuses the addresses in `own` (the exit's) always, reserved
    /// networks except those in `allowed`, and applies `ports` first match
    /// wins, accepting when none matches. Passes the default
    /// [`Protocols`] and refuses no pool until told otherwise.
    pub fn new(allowed: Vec<Cidr>, own: Vec<IpAddr>, ports: Vec<PortRule>) -> Self {
        Self {
            reserved: reserved_networks(),
            allowed,
            own,
            pools: Vec::new(),
            ports,
            protocols: Protocols::DEFAULT,
        }
    }

    /// Also refuses every address of `pools` (the exit's NAT pools: one
    /// client must not reach another), whatever `allowed` says.
    pub fn with_pools(mut self, pools: impl IntoIterator<Item = Cidr>) -> Self {
        self.pools.extend(pools);
        self
    }

    /// Passes only `protocols`.
    pub fn with_protocols(mut self, protocols: Protocols) -> Self {
        self.protocols = protocols;
        self
    }

    /// Whether `packet` (which `info` describes) may leave: its
    /// destination must be neither one of the exit's own or pool addresses
    /// (even inside an allowed network) nor reserved (unless allowed), its
    /// IP protocol must be in the allowlist, and its destination port (of
    /// TCP and UDP, and of DCCP, SCTP and UDP-Lite when allowed) must pass
    /// the port rules.
    pub fn check(&self, packet: &[u8], info: &PacketInfo) -> Result<(), Refusal> {
        self.check_destination(info.dst)?;
        self.check_protocol(info)?;
        match destination_port(packet, info)? {
            Some(port) => self.check_port(port),
            None => Ok(()),
        }
    }

    fn check_destination(&self, dst: IpAddr) -> Result<(), Refusal> {
        if self.own.contains(&dst) || self.pools.iter().any(|pool| pool.contains(dst)) {
            return Err(Refusal::OwnAddress);
        }
        let allowed = self.allowed.iter().any(|net| net.contains(dst));
        if !allowed && self.reserved.iter().any(|net| net.contains(dst)) {
            return Err(Refusal::Reserved);
        }
        Ok(())
    }

    /// The protocol must be in the allowlist, and ICMP match the IP
    /// version.
    fn check_protocol(&self, info: &PacketInfo) -> Result<(), Refusal> {
        let wrong_icmp = match info.protocol {
            proto::ICMP => info.dst.is_ipv6(),
            proto::ICMPV6 => info.dst.is_ipv4(),
            _ => false,
        };
        if wrong_icmp || !self.protocols.contains(info.protocol) {
            return Err(Refusal::Protocol);
        }
        Ok(())
    }

    fn check_port(&self, port: u16) -> Result<(), Refusal> {
        let rule = self
            .ports
            .iter()
            .find(|rule| (rule.low..=rule.high).contains(&port));
        if rule.is_some_and(|rule| !rule.accept) {
            return Err(Refusal::Port);
        }
        Ok(())
    }
}

/// The destination port the port rules judge: TCP's and UDP's as parsed,
/// DCCP's, SCTP's and UDP-Lite's read here (they share TCP's layout); none
/// for other protocols and later fragments. A first fragment too short to
/// show it is refused.
fn destination_port(packet: &[u8], info: &PacketInfo) -> Result<Option<u16>, Refusal> {
    if !OTHER_PORTED.contains(&info.protocol) || info.later_fragment {
        return Ok(info.dst_port);
    }
    let at = info.transport_offset.saturating_add(2);
    packet
        .get(at..at.saturating_add(2))
        .and_then(|bytes| <[u8; 2]>::try_from(bytes).ok())
        .map(|port| Some(u16::from_be_bytes(port)))
        .ok_or(Refusal::Port)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use trine_circuit::ip;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn cidr(text: &str) -> Cidr {
        text.parse().unwrap()
    }

    #[test]
    fn reserved_networks_are_refused_unless_allowed() {
        let policy = ExitPolicy::new(vec![], vec![], vec![]);
        for refused in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "100.100.100.200",
            "169.254.169.254",
            "168.63.129.16",
            "192.0.0.9",
            "192.0.2.7",
            "192.88.99.1",
            "198.51.100.7",
            "203.0.113.7",
            "224.0.0.1",
            "255.255.255.255",
            "0.0.0.0",
            "::",
            "::1",
            "::7f00:1",
            "::ffff:127.0.0.1",
            "64:ff9b::a00:1",
            "64:ff9b:1::1",
            "100::1",
            "100:0:0:1::1",
            "2001::1",
            "2001:1ff::1",
            "2001:db8::1",
            "2002:7f00:1::1",
            "3fff::1",
            "5f00::1",
            "fd00:ec2::254",
            "fe80::1",
            "fec0::1",
            "ff02::1",
        ] {
            assert_eq!(
                policy.check_destination(ip(refused)),
                Err(Refusal::Reserved),
                "{refused}"
            );
        }
        // The benchmarking range stays open: the namespace tests use it.
        for public in [
            "1.1.1.1",
            "168.63.129.17",
            "198.18.0.4",
            "2606:4700::1111",
            "2001:200::1",
            "2003::1",
        ] {
            assert_eq!(policy.check_destination(ip(public)), Ok(()), "{public}");
        }
        let lab = ExitPolicy::new(vec![cidr("10.9.0.0/16")], vec![], vec![]);
        assert_eq!(lab.check_destination(ip("10.9.3.4")), Ok(()));
        assert_eq!(
            lab.check_destination(ip("10.8.3.4")),
            Err(Refusal::Reserved)
        );
    }

    #[test]
    fn own_and_pool_addresses_are_refused_even_when_allowed() {
        let own = vec![ip("198.18.5.4"), ip("10.0.0.5"), ip("2001:db8::9")];
        let everything = vec![cidr("0.0.0.0/0"), cidr("::/0")];
        let policy = ExitPolicy::new(everything, own.clone(), vec![])
            .with_pools([cidr("10.200.0.0/16"), cidr("fd74:7265:7869::/64")]);
        for address in own {
            assert_eq!(policy.check_destination(address), Err(Refusal::OwnAddress));
        }
        for pool in ["10.200.0.1", "10.200.7.9", "fd74:7265:7869::5"] {
            assert_eq!(
                policy.check_destination(ip(pool)),
                Err(Refusal::OwnAddress),
                "{pool}"
            );
        }
        // Allowed reserved networks outside them do pass.
        assert_eq!(policy.check_destination(ip("10.0.0.6")), Ok(()));
        assert_eq!(policy.check_destination(ip("127.0.0.1")), Ok(()));
    }

    #[test]
    fn port_rules_apply_in_order() {
        let rules = ["reject 25", "accept 1-1024", "reject *"]
            .iter()
            .map(|r| r.parse().unwrap())
            .collect();
        let policy = ExitPolicy::new(vec![], vec![], rules);
        assert_eq!(policy.check_port(25), Err(Refusal::Port));
        assert_eq!(policy.check_port(443), Ok(()));
        assert_eq!(policy.check_port(8080), Err(Refusal::Port));
        // A protocol without ports meets no port rule.
        let ping = packet(false, proto::ICMP, &[8, 0, 0, 0, 0, 1, 0, 1]);
        assert_eq!(policy.check(&ping.0, &ping.1), Ok(()));
        for bad in ["allow 80", "reject 0", "reject 90-80", "reject", "accept x"] {
            assert!(bad.parse::<PortRule>().is_err(), "{bad}");
        }
    }

    /// A packet to 1.1.1.1 (or 2606:4700::1111) of `protocol` carrying
    /// `transport`, and its description.
    fn packet(v6: bool, protocol: u8, transport: &[u8]) -> (Vec<u8>, PacketInfo) {
        let (src, dst) = if v6 {
            (ip("fd74:726e::2"), ip("2606:4700::1111"))
        } else {
            (ip("172.22.0.2"), ip("1.1.1.1"))
        };
        let mut packet = match (src, dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                let len = u16::try_from(20 + transport.len()).unwrap().to_be_bytes();
                let mut header = vec![0x45, 0, len[0], len[1], 0, 0, 0x40, 0, 64, protocol, 0, 0];
                header.extend_from_slice(&src.octets());
                header.extend_from_slice(&dst.octets());
                header
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => {
                let len = u16::try_from(transport.len()).unwrap().to_be_bytes();
                let mut header = vec![0x60, 0, 0, 0, len[0], len[1], protocol, 64];
                header.extend_from_slice(&src.octets());
                header.extend_from_slice(&dst.octets());
                header
            }
            _ => unreachable!(),
        };
        packet.extend_from_slice(transport);
        let info = ip::parse(&packet).unwrap();
        (packet, info)
    }

    #[test]
    fn only_allowed_protocols_pass_and_ported_ones_meet_the_port_rules() {
        let reject_all = vec!["reject *".parse().unwrap()];
        let policy = ExitPolicy::new(vec![], vec![], reject_all.clone());
        let tcp_like = [0x9c, 0x40, 0x00, 0x50, 0, 0, 0, 0, 0, 0, 0, 0];
        // SCTP, GRE, ESP, IP-in-IP, IPv6-in-IPv4: refused by default,
        // whatever the port rules say.
        for protocol in [132, 47, 50, 4, 41, 51, 33, 136, 255] {
            let (bytes, info) = packet(false, protocol, &tcp_like);
            assert_eq!(
                policy.check(&bytes, &info),
                Err(Refusal::Protocol),
                "protocol {protocol}"
            );
        }
        let ping4 = packet(false, proto::ICMP, &[8, 0, 0, 0, 0, 1, 0, 1]);
        let ping6 = packet(true, proto::ICMPV6, &[128, 0, 0, 0, 0, 1, 0, 1]);
        let open = ExitPolicy::new(vec![], vec![], vec![]);
        assert_eq!(open.check(&ping4.0, &ping4.1), Ok(()));
        assert_eq!(open.check(&ping6.0, &ping6.1), Ok(()));
        // ICMP of the other IP version is never passed.
        let odd4 = packet(false, proto::ICMPV6, &[128, 0, 0, 0, 0, 1, 0, 1]);
        let odd6 = packet(true, proto::ICMP, &[8, 0, 0, 0, 0, 1, 0, 1]);
        assert_eq!(open.check(&odd4.0, &odd4.1), Err(Refusal::Protocol));
        assert_eq!(open.check(&odd6.0, &odd6.1), Err(Refusal::Protocol));

        // Named protocols pass; SCTP's ports meet the port rules.
        let named = Protocols::parse(&["tcp", "udp", "icmp", "sctp", "gre", "50"]).unwrap();
        let web_only = vec!["accept 80".parse().unwrap(), "reject *".parse().unwrap()];
        let policy = ExitPolicy::new(vec![], vec![], web_only).with_protocols(named);
        for (protocol, expected) in [
            (47, Ok(())),
            (50, Ok(())),
            (132, Ok(())),
            (4, Err(Refusal::Protocol)),
        ] {
            let (bytes, info) = packet(false, protocol, &tcp_like);
            assert_eq!(policy.check(&bytes, &info), expected, "{protocol}");
        }
        let sctp_22 = packet(false, SCTP, &[0x9c, 0x40, 0, 22, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(policy.check(&sctp_22.0, &sctp_22.1), Err(Refusal::Port));
        let sctp_short = packet(false, SCTP, &[0x9c, 0x40, 0]);
        assert_eq!(
            policy.check(&sctp_short.0, &sctp_short.1),
            Err(Refusal::Port)
        );
    }

    #[test]
    fn protocol_lists_parse_names_and_numbers() {
        assert_eq!(
            Protocols::parse(&Protocols::DEFAULT_NAMES),
            Ok(Protocols::DEFAULT)
        );
        let set = Protocols::parse(&[" sctp", "47", "udplite"]).unwrap();
        assert!(set.contains(132) && set.contains(47) && set.contains(136));
        assert!(!set.contains(proto::TCP));
        let all: Vec<String> = (0..=255).map(|n: u8| n.to_string()).collect();
        let all = Protocols::parse(&all).unwrap();
        assert!((0..=255).all(|n| all.contains(n)));
        for bad in ["smtp", "256", "-1", ""] {
            let message = Protocols::parse(&[bad]).unwrap_err();
            assert!(message.contains("protocol number"), "{message}");
        }
        assert!(Protocols::parse::<&str>(&[]).is_err());
    }

    #[test]
    fn cidr_arithmetic() {
        let pool: Cidr = "10.200.0.0/16".parse().unwrap();
        assert_eq!(pool.size(), 65_536);
        assert_eq!(pool.nth(2), Some(ip("10.200.0.2")));
        assert_eq!(pool.index_of(ip("10.200.1.0")), Some(256));
        assert_eq!(pool.index_of(ip("10.201.0.0")), None);
        assert_eq!("10.200.3.4/16".parse::<Cidr>().unwrap(), pool);
        let v6: Cidr = "fd74:7265::/64".parse().unwrap();
        assert_eq!(v6.nth(5), Some(ip("fd74:7265::5")));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("0.0.0.0/0".parse::<Cidr>().unwrap().contains(ip("8.8.8.8")));
    }
}
