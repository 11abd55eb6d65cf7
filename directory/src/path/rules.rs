//! The rules of path selection: which flags each position needs, and when
//! two relays may not share a circuit (same identity, same declared family,
//! same IPv4 /16 or IPv6 /32).

use std::net::IpAddr;

use trine_circuit::RelayId;

use super::{Candidate, PathConfig};
use crate::flags::Flag;

/// The part of an address that two relays of one circuit may not share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subnet {
    /// The first two bytes of an IPv4 address (its /16).
    V4([u8; 2]),
    /// The first four bytes of an IPv6 address (its /32).
    V6([u8; 4]),
}

impl Subnet {
    /// The subnet of `address`; an IPv4-mapped IPv6 address counts as the
    /// IPv4 address it carries.
    fn of(address: IpAddr) -> Self {
        let v4 = match address {
            IpAddr::V4(v4) => v4,
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => v4,
                None => {
                    let [a, b, c, d, ..] = v6.octets();
                    return Self::V6([a, b, c, d]);
                }
            },
        };
        let [a, b, ..] = v4.octets();
        Self::V4([a, b])
    }
}

impl Candidate {
    /// Whether it may be a guard: Guard, Running and Valid.
    pub fn is_guard_eligible(&self) -> bool {
        self.is_middle_eligible() && self.flags.has(Flag::Guard)
    }

    /// Whether it may be a middle: Running and Valid.
    pub fn is_middle_eligible(&self) -> bool {
        self.flags.has(Flag::Running) && self.flags.has(Flag::Valid)
    }

    /// Whether it may be an exit: Exit, Running and Valid, and a policy that
    /// lets general traffic out.
    pub fn is_exit_eligible(&self) -> bool {
        self.is_middle_eligible() && self.flags.has(Flag::Exit) && self.exit_allows_general
    }

    /// Whether it and `other` may not be in one circuit: the same identity,
    /// one family (each declares the other), or, when `config` enforces it,
    /// a shared IPv4 /16 or IPv6 /32.
    pub fn conflicts_with(&self, other: &Candidate, config: &PathConfig) -> bool {
        self.id == other.id
            || self.is_family_of(other)
            || (config.enforce_distinct_subnets && self.shares_subnet_with(other))
    }

    /// Whether each of the two declares the other as family. A one-sided
    /// declaration does not count: otherwise a relay could keep honest
    /// relays out of every circuit it is in by naming them.
    pub fn is_family_of(&self, other: &Candidate) -> bool {
        self.family.contains(&other.id) && other.family.contains(&self.id)
    }

    /// Whether any address of it and any address of `other` fall in one
    /// IPv4 /16 or one IPv6 /32.
    pub fn shares_subnet_with(&self, other: &Candidate) -> bool {
        self.addresses.iter().any(|mine| {
            let mine = Subnet::of(mine.ip());
            other
                .addresses
                .iter()
                .any(|theirs| Subnet::of(theirs.ip()) == mine)
        })
    }
}

/// What [`Candidate::conflicts_with`] needs of a relay in the common case,
/// packed small so that a prepared consensus keeps one per relay and
/// checks it without following pointers: its identity, its subnet when it
/// has exactly one address, and whether it declares any family.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConflictKey {
    id: RelayId,
    only_subnet: Option<Subnet>,
    declares_family: bool,
}

impl ConflictKey {
    pub(crate) fn of(candidate: &Candidate) -> Self {
        let only_subnet = match candidate.addresses.as_slice() {
            [address] => Some(Subnet::of(address.ip())),
            _ => None,
        };
        Self {
            id: candidate.id,
            only_subnet,
            declares_family: !candidate.family.is_empty(),
        }
    }

    /// [`Candidate::conflicts_with`] of the two relays when the keys
    /// decide it: same identity, or one address each and not both
    /// declaring a family (a family needs both sides). `None` when the
    /// full rule has to look (several addresses, or two families).
    pub(crate) fn conflicts(&self, other: &Self, config: &PathConfig) -> Option<bool> {
        if self.id == other.id {
            return Some(true);
        }
        if self.declares_family && other.declares_family {
            return None;
        }
        match (self.only_subnet, other.only_subnet) {
            (Some(mine), Some(theirs)) => Some(config.enforce_distinct_subnets && mine == theirs),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::flags::Flags;

    /// A relay with 0–2 addresses from a few /16s and /32s, and maybe a
    /// family naming some of the ten identities in play.
    fn random_relay(rng: &mut ChaCha8Rng) -> Candidate {
        let id = |n: u8| RelayId::from_bytes([n; 32]);
        let addresses = (0..rng.gen_range(0..3))
            .map(|_| {
                let ip = if rng.gen_bool(0.7) {
                    IpAddr::V4(Ipv4Addr::new(10, rng.gen_range(0..3), rng.r#gen(), 1))
                } else {
                    IpAddr::V6(Ipv6Addr::new(0x2001, rng.gen_range(0..2), 0, 0, 0, 0, 0, 1))
                };
                SocketAddr::new(ip, 443)
            })
            .collect();
        let family = (0..rng.gen_range(0..3))
            .map(|_| id(rng.gen_range(0..10)))
            .collect();
        Candidate {
            id: id(rng.gen_range(0..10)),
            addresses,
            family,
            flags: Flags::NONE,
            weight: 1,
            exit_allows_general: false,
        }
    }

    #[test]
    fn packed_keys_decide_exactly_as_the_full_rule() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for enforce in [true, false] {
            let config = PathConfig {
                enforce_distinct_subnets: enforce,
            };
            for _ in 0..20_000 {
                let (a, b) = (random_relay(&mut rng), random_relay(&mut rng));
                let full = a.conflicts_with(&b, &config);
                if let Some(decided) = ConflictKey::of(&a).conflicts(&ConflictKey::of(&b), &config)
                {
                    assert_eq!(decided, full, "{a:?} vs {b:?}");
                }
            }
        }
    }
}
