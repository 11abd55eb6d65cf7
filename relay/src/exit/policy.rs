//! The exit policy: which destinations a client's packet may reach. Checked
//! on every packet before it leaves. Reserved networks (loopback,
//! link-local incl. 169.254.169.254, private, CGNAT, multicast, ...) and the
//! exit's own addresses are refused unless the operator allows a network
//! explicitly; TCP/UDP ports go through ordered accept/reject rules.

use std::net::IpAddr;
use std::str::FromStr;

/// Address prefixes are the directory's type: the simulator's link
/// adversaries use the same one.
pub use trine_directory::Cidr;

/// Networks no exit reaches unless the operator allows them.
const RESERVED: &[&str] = &[
    "0.0.0.0/8",      // "this network"
    "10.0.0.0/8",     // private
    "100.64.0.0/10",  // carrier-grade NAT
    "127.0.0.0/8",    // loopback
    "169.254.0.0/16", // link-local, incl. cloud metadata 169.254.169.254
    "172.16.0.0/12",  // private
    "192.0.0.0/24",   // IETF protocol assignments
    "192.168.0.0/16", // private
    "224.0.0.0/4",    // multicast
    "240.0.0.0/4",    // reserved, incl. broadcast
    "::/128",         // unspecified
    "::1/128",        // loopback
    "::ffff:0:0/96",  // IPv4-mapped: would smuggle IPv4 past these rules
    "64:ff9b::/96",   // NAT64: likewise
    "64:ff9b:1::/48", // local-use NAT64
    "fc00::/7",       // unique local
    "fe80::/10",      // link-local
    "ff00::/8",       // multicast
];

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
    /// One of the exit's own addresses.
    OwnAddress,
    /// A port rule rejected it.
    Port,
}

/// What may leave this exit.
#[derive(Debug, Clone)]
pub struct ExitPolicy {
    reserved: Vec<Cidr>,
    allowed: Vec<Cidr>,
    own: Vec<IpAddr>,
    ports: Vec<PortRule>,
}

impl ExitPolicy {
    /// Refuses reserved networks except those in `allowed`, the addresses
    /// in `own` (the exit's interfaces) unless allowed, and applies `ports`
    /// first match wins, accepting when none matches.
    pub fn new(allowed: Vec<Cidr>, own: Vec<IpAddr>, ports: Vec<PortRule>) -> Self {
        let reserved = RESERVED
            .iter()
            .filter_map(|text| text.parse().ok())
            .collect();
        Self {
            reserved,
            allowed,
            own,
            ports,
        }
    }

    /// Whether a packet to `dst` (and `port`, for TCP/UDP) may leave.
    pub fn check(&self, dst: IpAddr, port: Option<u16>) -> Result<(), Refusal> {
        let allowed = self.allowed.iter().any(|net| net.contains(dst));
        if !allowed {
            if self.own.contains(&dst) {
                return Err(Refusal::OwnAddress);
            }
            if self.reserved.iter().any(|net| net.contains(dst)) {
                return Err(Refusal::Reserved);
            }
        }
        if let Some(port) = port {
            let rule = self
                .ports
                .iter()
                .find(|rule| (rule.low..=rule.high).contains(&port));
            if rule.is_some_and(|rule| !rule.accept) {
                return Err(Refusal::Port);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn reserved_and_own_addresses_are_refused_unless_allowed() {
        let own = vec![ip("203.0.113.9"), ip("2001:db8::9")];
        let policy = ExitPolicy::new(vec![], own.clone(), vec![]);
        for refused in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "169.254.169.254",
            "224.0.0.1",
            "255.255.255.255",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "64:ff9b::a00:1",
        ] {
            assert_eq!(
                policy.check(ip(refused), None),
                Err(Refusal::Reserved),
                "{refused}"
            );
        }
        for own in &own {
            assert_eq!(policy.check(*own, Some(80)), Err(Refusal::OwnAddress));
        }
        for public in ["1.1.1.1", "198.18.0.4", "2606:4700::1111"] {
            assert_eq!(policy.check(ip(public), Some(443)), Ok(()), "{public}");
        }
        let lab = ExitPolicy::new(vec!["10.9.0.0/16".parse().unwrap()], own, vec![]);
        assert_eq!(lab.check(ip("10.9.3.4"), None), Ok(()));
        assert_eq!(lab.check(ip("10.8.3.4"), None), Err(Refusal::Reserved));
    }

    #[test]
    fn port_rules_apply_in_order() {
        let rules = ["reject 25", "accept 1-1024", "reject *"]
            .iter()
            .map(|r| r.parse().unwrap())
            .collect();
        let policy = ExitPolicy::new(vec![], vec![], rules);
        let dst = ip("1.1.1.1");
        assert_eq!(policy.check(dst, Some(25)), Err(Refusal::Port));
        assert_eq!(policy.check(dst, Some(443)), Ok(()));
        assert_eq!(policy.check(dst, Some(8080)), Err(Refusal::Port));
        assert_eq!(policy.check(dst, None), Ok(()));
        for bad in ["allow 80", "reject 0", "reject 90-80", "reject", "accept x"] {
            assert!(bad.parse::<PortRule>().is_err(), "{bad}");
        }
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
