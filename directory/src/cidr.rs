//! Address prefixes (`10.0.0.0/8`, `fc00::/7`): the exit policy's
//! reserved and allowed networks, the exit's address pool, and in the
//! simulator where clients and destinations are and which links an
//! adversary watches. One type for all of them, parsed from operator and
//! scenario text with an error that says what is wrong.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An address prefix, e.g. `10.0.0.0/8` or `fc00::/7`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The network address (host bits cleared).
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix: u8,
}

impl Cidr {
    /// `addr/prefix`; host bits are cleared. `None` if the prefix is too long.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Self> {
        let bits = max_prefix(addr);
        (prefix <= bits).then(|| Self {
            addr: mask(addr, prefix),
            prefix,
        })
    }

    /// Whether `ip` lies inside (never across families).
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.prefix) == self.addr
    }

    /// The number of addresses, saturating at `u128::MAX`.
    pub fn size(&self) -> u128 {
        let host_bits = u32::from(max_prefix(self.addr) - self.prefix);
        1u128.checked_shl(host_bits).unwrap_or(u128::MAX)
    }

    /// The `index`th address of the prefix, if inside it.
    pub fn nth(&self, index: u128) -> Option<IpAddr> {
        if index >= self.size() {
            return None;
        }
        Some(match self.addr {
            IpAddr::V4(base) => {
                IpAddr::V4(Ipv4Addr::from(u32::from(base) + u32::try_from(index).ok()?))
            }
            IpAddr::V6(base) => IpAddr::V6(Ipv6Addr::from(u128::from(base) + index)),
        })
    }

    /// `ip`'s position inside the prefix, if inside it.
    pub fn index_of(&self, ip: IpAddr) -> Option<u128> {
        if !self.contains(ip) {
            return None;
        }
        Some(match (ip, self.addr) {
            (IpAddr::V4(ip), IpAddr::V4(base)) => u128::from(u32::from(ip) - u32::from(base)),
            (IpAddr::V6(ip), IpAddr::V6(base)) => u128::from(ip) - u128::from(base),
            _ => return None,
        })
    }
}

fn max_prefix(addr: IpAddr) -> u8 {
    if addr.is_ipv4() { 32 } else { 128 }
}

fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    // Shifting by the full width (prefix 0) keeps nothing.
    match addr {
        IpAddr::V4(v4) => {
            let keep = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & keep))
        }
        IpAddr::V6(v6) => {
            let keep = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & keep))
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{text}` is not an address or address/prefix"))?;
        let prefix = match prefix {
            Some(prefix) => prefix
                .parse::<u8>()
                .map_err(|_| format!("`{text}` has a bad prefix length"))?,
            None => max_prefix(addr),
        };
        Self::new(addr, prefix)
            .ok_or_else(|| format!("`{text}` has a prefix longer than the address"))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn prefixes_clear_host_bits_and_contain_only_their_family() {
        let net: Cidr = "198.51.100.7/24".parse().unwrap();
        assert_eq!(net.to_string(), "198.51.100.0/24");
        assert!(net.contains("198.51.100.200".parse().unwrap()));
        assert!(!net.contains("198.51.101.1".parse().unwrap()));
        assert!(!net.contains("2001:db8::1".parse().unwrap()));
        let everything: Cidr = "::/0".parse().unwrap();
        assert!(everything.contains("2001:db8::1".parse().unwrap()));
        assert!(!everything.contains("10.0.0.1".parse().unwrap()));
        // A bare address is a host prefix.
        assert_eq!(
            "192.0.2.1".parse::<Cidr>().unwrap().to_string(),
            "192.0.2.1/32"
        );
    }

    #[test]
    fn malformed_prefixes_are_refused_saying_why() {
        for (text, says) in [
            ("banana/8", "not an address"),
            ("10.0.0.0/33", "longer than the address"),
            ("2001:db8::/129", "longer than the address"),
            ("10.0.0.0/-1", "bad prefix length"),
            ("10.0.0.0/", "bad prefix length"),
        ] {
            let error = text.parse::<Cidr>().unwrap_err();
            assert!(error.contains(says), "{text}: {error}");
        }
    }
}
