//! The rules of path selection: which flags each position needs, and when
//! two relays may not share a circuit (same identity, same declared family,
//! same IPv4 /16 or IPv6 /32).

use std::collections::HashMap;
use std::net::IpAddr;

use super::{Candidate, PathConfig};
use crate::flags::Flag;

/// The part of an address that two relays of one circuit may not share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
/// packed into twelve bytes so that a prepared consensus of ten thousand
/// relays keeps all of them in a core's own cache: which identity it has,
/// which subnet its IPv4 address and its IPv6 address are in (a relay
/// has at most one of each in the common case), all as small numbers given
/// out by [`ConflictKey::for_all`], and whether it declares any family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConflictKey {
    /// Equal for two relays exactly when their identities are, with
    /// [`DECLARES_FAMILY`] set when the relay declares one.
    identity: u32,
    /// The number of its IPv4 /16, or [`NONE`], or [`SEVERAL`].
    v4: u32,
    /// The number of its IPv6 /32, or [`NONE`], or [`SEVERAL`].
    v6: u32,
}

/// Marks, in [`ConflictKey::identity`], a relay that declares a family.
const DECLARES_FAMILY: u32 = 1 << 31;
/// No address of this kind.
const NONE: u32 = DECLARES_FAMILY - 1;
/// More than one address of this kind: only the full rule decides.
const SEVERAL: u32 = NONE - 1;

impl ConflictKey {
    /// The keys of `candidates`, in order, numbering identities and
    /// subnets as they first appear; `None` when there are too many
    /// relays to number (far beyond any consensus), so the caller uses the
    /// full rule throughout.
    pub(crate) fn for_all(candidates: &[Candidate]) -> Option<Vec<Self>> {
        if candidates.len() >= SEVERAL as usize {
            return None;
        }
        let mut identities = HashMap::with_capacity(candidates.len());
        let mut subnets = HashMap::new();
        let mut number = |subnet: Subnet| {
            let next = subnets.len();
            // Below the number of addresses, so below SEVERAL (checked
            // above for candidates; each has a handful of addresses).
            *subnets.entry(subnet).or_insert(next) as u32
        };
        let keys = candidates
            .iter()
            .map(|candidate| {
                let next = identities.len();
                let identity = *identities.entry(candidate.id).or_insert(next) as u32;
                let (mut v4, mut v6) = (NONE, NONE);
                for address in &candidate.addresses {
                    let subnet = Subnet::of(address.ip());
                    let slot = match subnet {
                        Subnet::V4(_) => &mut v4,
                        Subnet::V6(_) => &mut v6,
                    };
                    *slot = if *slot == NONE {
                        number(subnet)
                    } else {
                        SEVERAL
                    };
                }
                let family = if candidate.family.is_empty() {
                    0
                } else {
                    DECLARES_FAMILY
                };
                Self {
                    identity: identity | family,
                    v4,
                    v6,
                }
            })
            .collect();
        Some(keys)
    }

    /// [`Candidate::conflicts_with`] of the two relays when the keys
    /// decide it: same identity, or at most one address of each kind each
    /// and not both declaring a family (a family needs both sides).
    /// `None` when the full rule has to look (several addresses of one
    /// kind, or two families).
    pub(crate) fn conflicts(self, other: Self, config: &PathConfig) -> Option<bool> {
        if (self.identity ^ other.identity) & !DECLARES_FAMILY == 0 {
            return Some(true);
        }
        if self.identity & other.identity & DECLARES_FAMILY != 0 {
            return None;
        }
        if [self.v4, self.v6, other.v4, other.v6].contains(&SEVERAL) {
            return None;
        }
        let shared = |mine: u32, theirs: u32| mine != NONE && mine == theirs;
        Some(
            config.enforce_distinct_subnets
                && (shared(self.v4, other.v4) || shared(self.v6, other.v6)),
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use trine_circuit::RelayId;

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
            let mut decided_count = 0;
            for _ in 0..100 {
                // Ten identities among 20 relays: many share one.
                let relays: Vec<Candidate> = (0..20).map(|_| random_relay(&mut rng)).collect();
                let keys = ConflictKey::for_all(&relays).unwrap();
                for (a, key_a) in relays.iter().zip(&keys) {
                    for (b, key_b) in relays.iter().zip(&keys) {
                        let full = a.conflicts_with(b, &config);
                        if let Some(decided) = key_a.conflicts(*key_b, &config) {
                            assert_eq!(decided, full, "{a:?} vs {b:?}");
                            decided_count += 1;
                        }
                    }
                }
            }
            // Most pairs have at most one address of each kind and not two
            // families: the keys must decide those, not defer everything.
            assert!(decided_count > 15_000, "{decided_count} of 40000 decided");
        }
    }
}
