//! Where an EXTEND may make this relay dial, and how many failed dials a
//! circuit or a client link may cost. Sans-IO: the daemon passes in the
//! consensus entry and the time, dials only the addresses that come back,
//! and answers a refusal with TRUNCATED.
//!
//! Without this, one ~300-byte EXTEND naming any address made a relay send
//! kilobytes of QUIC Initials there: to loopback, the operator's private
//! network, the relay itself, or a victim on the internet (a reflector).
//! Now an address is dialed only if it is global unicast (or inside a
//! network the operator allowed, for test networks), is not one of the
//! relay's own, and, when the relay is in a directory, is one the held
//! consensus lists for the named identity.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use trine_circuit::Reason;
use trine_circuit::relay::LinkId;
use trine_directory::Cidr;
use trine_directory::reserved::{is_global_unicast, reserved_networks};

use crate::limits::TokenBucket;

/// Why an EXTEND was refused without dialing. Each is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Refusal {
    /// It named no address.
    NoAddress,
    /// Not global unicast (loopback, private, link-local, ...) and not in
    /// the networks the operator allowed.
    NotGlobal,
    /// One of this relay's own addresses.
    OwnAddress,
    /// The held consensus does not list that identity at that address (or
    /// the relay holds none yet).
    Unlisted,
    /// The circuit or the client link used up its failed-dial budget.
    RateLimited,
}

impl Refusal {
    /// Every refusal, for metrics.
    pub const ALL: [Self; 5] = [
        Self::NoAddress,
        Self::NotGlobal,
        Self::OwnAddress,
        Self::Unlisted,
        Self::RateLimited,
    ];

    /// A stable snake_case name, for metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Self::NoAddress => "no_address",
            Self::NotGlobal => "not_global",
            Self::OwnAddress => "own_address",
            Self::Unlisted => "unlisted",
            Self::RateLimited => "rate_limited",
        }
    }

    /// What the client is told in TRUNCATED.
    pub fn reason(self) -> Reason {
        match self {
            Self::RateLimited => Reason::ResourceLimit,
            _ => Reason::ConnectFailed,
        }
    }
}

/// Which addresses an EXTEND may make this relay dial.
#[derive(Debug, Clone)]
pub struct ExtendPolicy {
    reserved: Vec<Cidr>,
    allowed: Vec<Cidr>,
    own: Vec<IpAddr>,
    require_listed: bool,
}

impl ExtendPolicy {
    /// Refuses `own` addresses always, addresses that are not global
    /// unicast unless inside `allowed`, and, if `require_listed`, addresses
    /// the consensus does not list for the target.
    pub fn new(allowed: Vec<Cidr>, own: Vec<IpAddr>, require_listed: bool) -> Self {
        Self {
            reserved: reserved_networks(),
            allowed,
            own,
            require_listed,
        }
    }

    /// The addresses of `named` (in the EXTEND's order) that may be
    /// dialed. `listed` is where the held consensus lists the target
    /// identity (`None`: not listed, or no consensus held). When none may
    /// be dialed, the refusal of the first address says why.
    pub fn dialable(
        &self,
        named: &[SocketAddr],
        listed: Option<&[SocketAddr]>,
    ) -> Result<Vec<SocketAddr>, Refusal> {
        let mut first = None;
        let mut passed = Vec::new();
        for address in named {
            match self.check(*address, listed) {
                Ok(()) => passed.push(*address),
                Err(refusal) => {
                    first.get_or_insert(refusal);
                }
            }
        }
        match first {
            Some(refusal) if passed.is_empty() => Err(refusal),
            None if passed.is_empty() => Err(Refusal::NoAddress),
            _ => Ok(passed),
        }
    }

    fn check(&self, address: SocketAddr, listed: Option<&[SocketAddr]>) -> Result<(), Refusal> {
        let ip = address.ip();
        if self.own.contains(&ip) {
            return Err(Refusal::OwnAddress);
        }
        let allowed = self.allowed.iter().any(|net| net.contains(ip));
        if address.port() == 0 || !(allowed || is_global_unicast(ip, &self.reserved)) {
            return Err(Refusal::NotGlobal);
        }
        if self.require_listed && !listed.is_some_and(|listed| listed.contains(&address)) {
            return Err(Refusal::Unlisted);
        }
        Ok(())
    }
}

/// Limits on dials that fail, per circuit and per client link.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DialLimits {
    /// Dial attempts that may fail on one circuit, over its lifetime.
    pub per_circuit: u32,
    /// Failed dial attempts one client link may cause: a token bucket of
    /// this size...
    pub per_link_burst: f64,
    /// ...refilled at this rate per second.
    pub per_link_per_second: f64,
}

impl Default for DialLimits {
    fn default() -> Self {
        Self {
            per_circuit: 4,
            per_link_burst: 8.0,
            per_link_per_second: 0.5,
        }
    }
}

/// Failed-dial budgets. Attempts are reserved before dialing (so many
/// EXTENDs at once cannot overrun a budget) and the one that succeeds is
/// given back. Links whose peer is a relay carry many clients' circuits and
/// are limited per circuit only. `C` names circuits (the table's handle).
#[derive(Debug)]
pub struct DialBudget<C> {
    limits: DialLimits,
    circuits: HashMap<C, u32>,
    links: HashMap<LinkId, TokenBucket>,
}

impl<C: Copy + Eq + Hash> DialBudget<C> {
    /// Budgets with `limits`, nothing spent.
    pub fn new(limits: DialLimits) -> Self {
        Self {
            limits,
            circuits: HashMap::new(),
            links: HashMap::new(),
        }
    }

    /// Reserves up to `wanted` dial attempts for `circuit`, which came in
    /// on `client_link` if its previous hop is a client. Returns how many
    /// may be made (0: refuse the EXTEND as [`Refusal::RateLimited`]).
    pub fn reserve(
        &mut self,
        circuit: C,
        client_link: Option<LinkId>,
        wanted: usize,
        now: Instant,
    ) -> usize {
        let spent = self.circuits.get(&circuit).copied().unwrap_or(0);
        let left = self.limits.per_circuit.saturating_sub(spent);
        let mut granted = usize::try_from(left).map_or(wanted, |left| left.min(wanted));
        if let Some(link) = client_link {
            let limits = self.limits;
            let bucket = self.links.entry(link).or_insert_with(|| {
                TokenBucket::new(limits.per_link_per_second, limits.per_link_burst, now)
            });
            let mut taken = 0;
            while taken < granted && bucket.try_take(1.0, now) {
                taken += 1;
            }
            granted = taken;
        }
        if granted > 0 {
            let granted = u32::try_from(granted).unwrap_or(u32::MAX);
            *self.circuits.entry(circuit).or_default() = spent.saturating_add(granted);
        }
        granted
    }

    /// Gives back `unused` reserved attempts: the one that connected and
    /// those never made.
    pub fn release(&mut self, circuit: C, client_link: Option<LinkId>, unused: usize) {
        if unused == 0 {
            return;
        }
        let unused32 = u32::try_from(unused).unwrap_or(u32::MAX);
        if let Some(spent) = self.circuits.get_mut(&circuit) {
            *spent = spent.saturating_sub(unused32);
        }
        if let Some(bucket) = client_link.and_then(|link| self.links.get_mut(&link)) {
            bucket.give_back(unused as f64);
        }
    }

    /// Forgets a closed circuit.
    pub fn circuit_closed(&mut self, circuit: C) {
        self.circuits.remove(&circuit);
    }

    /// Forgets a closed link.
    pub fn link_closed(&mut self, link: LinkId) {
        self.links.remove(&link);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::Duration;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    fn addrs(texts: &[&str]) -> Vec<SocketAddr> {
        texts.iter().map(|text| addr(text)).collect()
    }

    /// A relay at 198.18.6.3 advertising 203.0.113.9 (its own), allowing
    /// 198.18.6.0/24 for a test network.
    fn policy(require_listed: bool) -> ExtendPolicy {
        ExtendPolicy::new(
            vec!["198.18.6.0/24".parse().unwrap()],
            vec![
                "198.18.6.3".parse().unwrap(),
                "203.0.113.9".parse().unwrap(),
            ],
            require_listed,
        )
    }

    #[test]
    fn only_global_or_allowed_addresses_that_are_not_its_own_are_dialed() {
        let policy = policy(false);
        for (named, refusal) in [
            ("127.0.0.1:443", Refusal::NotGlobal),
            ("10.1.2.3:443", Refusal::NotGlobal),
            ("192.168.1.1:443", Refusal::NotGlobal),
            ("169.254.169.254:80", Refusal::NotGlobal),
            ("198.19.0.5:443", Refusal::NotGlobal),
            ("[::1]:443", Refusal::NotGlobal),
            ("[fe80::1]:443", Refusal::NotGlobal),
            ("[fd00::1]:443", Refusal::NotGlobal),
            ("[::ffff:127.0.0.1]:443", Refusal::NotGlobal),
            ("255.255.255.255:443", Refusal::NotGlobal),
            ("9.9.9.9:0", Refusal::NotGlobal),
            // Its own, allowed network or not, any port.
            ("198.18.6.3:443", Refusal::OwnAddress),
            ("198.18.6.3:53", Refusal::OwnAddress),
            ("203.0.113.9:9443", Refusal::OwnAddress),
        ] {
            assert_eq!(
                policy.dialable(&[addr(named)], None),
                Err(refusal),
                "{named}"
            );
        }
        for named in ["9.9.9.9:443", "198.18.6.4:443", "[2a01:4f8::1]:443"] {
            assert_eq!(
                policy.dialable(&[addr(named)], None),
                Ok(vec![addr(named)]),
                "{named}"
            );
        }
        assert_eq!(policy.dialable(&[], None), Err(Refusal::NoAddress));
    }

    #[test]
    fn with_a_directory_only_the_listed_addresses_are_dialed() {
        let policy = policy(true);
        let listed = addrs(&["198.18.6.4:443", "[2a01:4f8::1]:443"]);
        // Unlisted identity (or no consensus yet): nothing.
        assert_eq!(
            policy.dialable(&addrs(&["198.18.6.4:443"]), None),
            Err(Refusal::Unlisted)
        );
        // A listed identity at an address the consensus does not give.
        assert_eq!(
            policy.dialable(&addrs(&["198.18.6.4:444", "9.9.9.9:443"]), Some(&listed)),
            Err(Refusal::Unlisted)
        );
        // Mixed: the listed addresses only, in the EXTEND's order; the
        // first refusal decides when nothing passes.
        assert_eq!(
            policy.dialable(
                &addrs(&[
                    "127.0.0.1:443",
                    "[2a01:4f8::1]:443",
                    "9.9.9.9:443",
                    "198.18.6.4:443"
                ]),
                Some(&listed)
            ),
            Ok(addrs(&["[2a01:4f8::1]:443", "198.18.6.4:443"]))
        );
        assert_eq!(
            policy.dialable(&addrs(&["198.18.6.3:443", "9.9.9.9:443"]), Some(&listed)),
            Err(Refusal::OwnAddress)
        );
    }

    #[test]
    fn refusals_have_distinct_names_and_tell_the_client() {
        let names: std::collections::BTreeSet<_> = Refusal::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), Refusal::ALL.len());
        assert_eq!(Refusal::RateLimited.reason(), Reason::ResourceLimit);
        assert_eq!(Refusal::NotGlobal.reason(), Reason::ConnectFailed);
    }

    #[test]
    fn a_circuit_may_fail_four_dials_and_unfailed_ones_are_given_back() {
        let now = Instant::now();
        let mut budget = DialBudget::new(DialLimits::default());
        // Behind a relay link: the circuit's budget only.
        assert_eq!(budget.reserve(1u64, None, 3, now), 3);
        assert_eq!(budget.reserve(1, None, 4, now), 1);
        assert_eq!(budget.reserve(1, None, 1, now), 0);
        budget.release(1, None, 1);
        assert_eq!(budget.reserve(1, None, 4, now), 1);
        // Other circuits are untouched; a closed one starts afresh.
        assert_eq!(budget.reserve(2, None, 4, now), 4);
        budget.circuit_closed(1);
        assert_eq!(budget.reserve(1, None, 2, now), 2);
    }

    #[test]
    fn a_client_link_has_a_bucket_across_its_circuits() {
        let start = Instant::now();
        let mut budget = DialBudget::new(DialLimits::default());
        let link = Some(7);
        assert_eq!(budget.reserve(1u64, link, 4, start), 4);
        assert_eq!(budget.reserve(2, link, 4, start), 4);
        assert_eq!(budget.reserve(3, link, 4, start), 0, "burst of 8 spent");
        // Another client link has a bucket of its own.
        assert_eq!(budget.reserve(3, Some(8), 1, start), 1);
        // 0.5 per second: one more dial two seconds later.
        let later = start + Duration::from_secs(2);
        assert_eq!(budget.reserve(4, link, 4, later), 1);
        assert_eq!(budget.reserve(4, link, 4, later), 0);
        budget.release(4, link, 1);
        assert_eq!(budget.reserve(5, link, 4, later), 1, "a success comes back");
        budget.link_closed(7);
        assert_eq!(
            budget.reserve(6, link, 4, later),
            4,
            "a new link, a full bucket"
        );
    }
}
