//! The rules of path selection: which flags each position needs, and when
//! two relays may not share a circuit (same identity, same declared family,
//! same IPv4 /16 or IPv6 /32).

use std::net::IpAddr;

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
