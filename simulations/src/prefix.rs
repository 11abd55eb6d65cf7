//! Address prefixes (`198.51.100.0/24`, `2001:db8::/32`): where clients
//! and destinations are placed, and which links a link adversary watches.
//! Parsed from scenario text, so every malformed one is a clear error.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rand::Rng;

/// An IPv4 or IPv6 prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    /// The address with every bit past the length cleared.
    network: IpAddr,
    length: u8,
}

impl Prefix {
    /// Parses `address/length`. The address may have bits set past the
    /// length; they are cleared.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (address, length) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?} is not address/length"))?;
        let address: IpAddr = address
            .parse()
            .map_err(|_| format!("{text:?}: {address:?} is not an IP address"))?;
        let most = if address.is_ipv4() { 32 } else { 128 };
        let length: u8 = length
            .parse()
            .ok()
            .filter(|length| *length <= most)
            .ok_or_else(|| format!("{text:?}: the length must be 0 to {most}"))?;
        Ok(Self {
            network: mask(address, length),
            length,
        })
    }

    /// Whether `address` is in it (an IPv4 prefix holds no IPv6 address).
    pub fn contains(&self, address: IpAddr) -> bool {
        address.is_ipv4() == self.network.is_ipv4() && mask(address, self.length) == self.network
    }

    /// An address drawn uniformly from it.
    pub fn draw<R: Rng + ?Sized>(&self, rng: &mut R) -> IpAddr {
        match self.network {
            IpAddr::V4(network) => {
                let host = rng
                    .r#gen::<u32>()
                    .checked_shr(u32::from(self.length))
                    .unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(network) | host))
            }
            IpAddr::V6(network) => {
                let host = rng
                    .r#gen::<u128>()
                    .checked_shr(u32::from(self.length))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(network) | host))
            }
        }
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.length)
    }
}

/// `address` with every bit past the first `length` cleared.
fn mask(address: IpAddr, length: u8) -> IpAddr {
    match address {
        IpAddr::V4(v4) => {
            let keep = u32::MAX.checked_shl(32 - u32::from(length)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & keep))
        }
        IpAddr::V6(v6) => {
            let keep = u128::MAX.checked_shl(128 - u32::from(length)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & keep))
        }
    }
}

/// One drawn from `prefixes`, chosen uniformly, then an address uniformly
/// inside it; `None` when there are none.
pub fn draw_from<R: Rng + ?Sized>(prefixes: &[Prefix], rng: &mut R) -> Option<IpAddr> {
    if prefixes.is_empty() {
        return None;
    }
    Some(prefixes[rng.gen_range(0..prefixes.len())].draw(rng))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    #[test]
    fn prefixes_parse_contain_and_draw_inside() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for text in [
            "198.51.100.7/24",
            "10.0.0.0/8",
            "0.0.0.0/0",
            "2001:db8::/32",
            "::/0",
        ] {
            let prefix = Prefix::parse(text).unwrap();
            for _ in 0..100 {
                assert!(prefix.contains(prefix.draw(&mut rng)), "{text}");
            }
        }
        let net = Prefix::parse("198.51.100.7/24").unwrap();
        assert_eq!(net.to_string(), "198.51.100.0/24");
        assert!(!net.contains("198.51.101.1".parse().unwrap()));
        assert!(!net.contains("2001:db8::1".parse().unwrap()));
        let host = Prefix::parse("192.0.2.1/32").unwrap();
        assert_eq!(host.draw(&mut rng), "192.0.2.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn malformed_prefixes_are_refused_saying_why() {
        for (text, says) in [
            ("10.0.0.0", "address/length"),
            ("banana/8", "not an IP address"),
            ("10.0.0.0/33", "0 to 32"),
            ("2001:db8::/129", "0 to 128"),
            ("10.0.0.0/-1", "0 to 32"),
            ("10.0.0.0/", "0 to 32"),
        ] {
            let error = Prefix::parse(text).unwrap_err();
            assert!(error.contains(says), "{text}: {error}");
        }
    }
}
