//! Drawing addresses from prefixes (`198.51.100.0/24`, `2001:db8::/32`):
//! where clients and destinations are placed. The prefixes themselves are
//! the directory's [`Cidr`], the type the exit policy uses, parsed from
//! scenario text with its errors.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rand::Rng;
use trine_directory::Cidr;

/// An address drawn uniformly from `prefix`.
pub fn draw<R: Rng + ?Sized>(prefix: &Cidr, rng: &mut R) -> IpAddr {
    match prefix.addr {
        IpAddr::V4(network) => {
            let host = rng
                .r#gen::<u32>()
                .checked_shr(u32::from(prefix.prefix))
                .unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(network) | host))
        }
        IpAddr::V6(network) => {
            let host = rng
                .r#gen::<u128>()
                .checked_shr(u32::from(prefix.prefix))
                .unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(network) | host))
        }
    }
}

/// One drawn from `prefixes`, chosen uniformly, then an address uniformly
/// inside it; `None` when there are none.
pub fn draw_from<R: Rng + ?Sized>(prefixes: &[Cidr], rng: &mut R) -> Option<IpAddr> {
    if prefixes.is_empty() {
        return None;
    }
    Some(draw(&prefixes[rng.gen_range(0..prefixes.len())], rng))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    #[test]
    fn draws_land_inside_their_prefix() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for text in [
            "198.51.100.7/24",
            "10.0.0.0/8",
            "0.0.0.0/0",
            "2001:db8::/32",
            "::/0",
        ] {
            let prefix: Cidr = text.parse().unwrap();
            for _ in 0..100 {
                assert!(prefix.contains(draw(&prefix, &mut rng)), "{text}");
            }
        }
        let host: Cidr = "192.0.2.1/32".parse().unwrap();
        assert_eq!(
            draw(&host, &mut rng),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
        // Two hosts: both come up.
        let pair: Cidr = "192.0.2.0/31".parse().unwrap();
        let drawn: std::collections::BTreeSet<IpAddr> =
            (0..64).map(|_| draw(&pair, &mut rng)).collect();
        assert_eq!(drawn.len(), 2);
    }
}
