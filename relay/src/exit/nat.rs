//! The exit's source NAT pool: every circuit that sends a packet out gets
//! its own address (one IPv4 and, when configured, one IPv6) from private
//! prefixes routed to the exit's TUN device; the kernel masquerades them
//! behind the exit's public address. Replies come back to the pool address,
//! which names the circuit, so no port table is needed and every protocol
//! (TCP, UDP, ICMP) maps back the same way. An address a circuit gives
//! back is quarantined: leased again only once the kernel has forgotten
//! its flows (see [`super::conntrack`]), never if it could not.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;

use super::policy::Cidr;

/// Index 0 is the network address and index 1 the TUN's own address.
const FIRST_CLIENT_INDEX: u128 = 2;

/// Pool addresses, each leased to one circuit `C` until it closes, then
/// quarantined until [`NatPool::reusable`] frees it. Fresh addresses go
/// first, then the longest-free one.
#[derive(Debug)]
pub struct NatPool<C> {
    v4: Cidr,
    v6: Option<Cidr>,
    capacity: u128,
    by_circuit: HashMap<C, u128>,
    by_index: HashMap<u128, C>,
    quarantine: HashSet<u128>,
    free: VecDeque<u128>,
    next_fresh: u128,
}

/// The addresses (one per family) a closed circuit leased: in quarantine
/// until the kernel's flows of each are deleted. Not `Clone`: each
/// release frees its address at most once.
#[derive(Debug, PartialEq, Eq)]
pub struct Released {
    index: u128,
    addresses: Vec<IpAddr>,
}

impl Released {
    /// The addresses whose flows must go.
    pub fn addresses(&self) -> &[IpAddr] {
        &self.addresses
    }
}

impl<C: Copy + Eq + Hash> NatPool<C> {
    /// A pool over `v4` (and `v6`), never leasing more than `limit`
    /// addresses at once.
    pub fn new(v4: Cidr, v6: Option<Cidr>, limit: usize) -> Self {
        let usable = |cidr: Cidr| cidr.size().saturating_sub(FIRST_CLIENT_INDEX + 1);
        let mut capacity = usable(v4).min(limit as u128);
        if let Some(v6) = v6 {
            capacity = capacity.min(usable(v6));
        }
        Self {
            v4,
            v6,
            capacity,
            by_circuit: HashMap::new(),
            by_index: HashMap::new(),
            quarantine: HashSet::new(),
            free: VecDeque::new(),
            next_fresh: FIRST_CLIENT_INDEX,
        }
    }

    /// The TUN device's own addresses (index 1 of each prefix).
    pub fn gateway(&self) -> (IpAddr, Option<IpAddr>) {
        let gateway = |cidr: Cidr| cidr.nth(1).unwrap_or(cidr.addr);
        (gateway(self.v4), self.v6.map(gateway))
    }

    /// The prefixes.
    pub fn prefixes(&self) -> (Cidr, Option<Cidr>) {
        (self.v4, self.v6)
    }

    /// `circuit`'s address of the same family as `like`, leasing one if it
    /// has none. `None` when the pool is full or has no such family.
    pub fn lease(&mut self, circuit: C, like: IpAddr) -> Option<IpAddr> {
        let index = match self.by_circuit.get(&circuit) {
            Some(index) => *index,
            None => {
                let index = if self.next_fresh < FIRST_CLIENT_INDEX + self.capacity {
                    self.next_fresh += 1;
                    self.next_fresh - 1
                } else {
                    self.free.pop_front()?
                };
                self.by_circuit.insert(circuit, index);
                self.by_index.insert(index, circuit);
                index
            }
        };
        match like {
            IpAddr::V4(_) => self.v4.nth(index),
            IpAddr::V6(_) => self.v6?.nth(index),
        }
    }

    /// The circuit leasing `address`, if any.
    pub fn circuit_of(&self, address: IpAddr) -> Option<C> {
        let prefix = if address.is_ipv4() { self.v4 } else { self.v6? };
        self.by_index.get(&prefix.index_of(address)?).copied()
    }

    /// Takes `circuit`'s address back into quarantine; `None` if it had
    /// none.
    pub fn release(&mut self, circuit: C) -> Option<Released> {
        let index = self.by_circuit.remove(&circuit)?;
        self.by_index.remove(&index);
        self.quarantine.insert(index);
        let addresses = [Some(self.v4), self.v6]
            .into_iter()
            .flatten()
            .filter_map(|prefix| prefix.nth(index))
            .collect();
        Some(Released { index, addresses })
    }

    /// The kernel has forgotten `released`'s flows: its address may be
    /// leased again.
    pub fn reusable(&mut self, released: Released) {
        if self.quarantine.remove(&released.index) {
            self.free.push_back(released.index);
        }
    }

    /// Addresses leased now.
    pub fn leased(&self) -> usize {
        self.by_circuit.len()
    }

    /// Addresses in quarantine now.
    pub fn quarantined(&self) -> usize {
        self.quarantine.len()
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
    fn each_circuit_gets_one_address_per_family_until_released() {
        let mut pool: NatPool<u64> = NatPool::new(
            "10.200.0.0/29".parse().unwrap(),
            Some("fd74:7265::/64".parse().unwrap()),
            100,
        );
        assert_eq!(pool.gateway(), (ip("10.200.0.1"), Some(ip("fd74:7265::1"))));
        // A /29 leaves indexes 2..=6 for clients (7 is broadcast).
        let a4 = pool.lease(1, ip("1.1.1.1")).unwrap();
        assert_eq!(a4, ip("10.200.0.2"));
        assert_eq!(pool.lease(1, ip("1.1.1.1")), Some(a4));
        assert_eq!(pool.lease(1, ip("2606::1")), Some(ip("fd74:7265::2")));
        assert_eq!(pool.circuit_of(ip("fd74:7265::2")), Some(1));
        for circuit in 2..=5 {
            assert!(pool.lease(circuit, ip("1.1.1.1")).is_some());
        }
        assert_eq!(pool.lease(6, ip("1.1.1.1")), None, "pool is full");
        let released = pool.release(1).unwrap();
        assert_eq!(released.addresses(), [a4, ip("fd74:7265::2")]);
        assert_eq!(pool.circuit_of(a4), None);
        pool.reusable(released);
        assert_eq!(pool.lease(6, ip("1.1.1.1")), Some(a4));
        assert_eq!(pool.leased(), 5);
        assert_eq!(pool.circuit_of(ip("10.200.0.7")), None);
        assert_eq!(pool.circuit_of(ip("192.0.2.1")), None);
    }

    #[test]
    fn without_ipv6_only_ipv4_is_leased() {
        let mut pool: NatPool<u64> = NatPool::new("10.200.0.0/16".parse().unwrap(), None, 10);
        assert!(pool.lease(1, ip("2606::1")).is_none());
        assert!(pool.lease(1, ip("1.1.1.1")).is_some());
        assert!((2..=10).all(|c| pool.lease(c, ip("1.1.1.1")).is_some()));
        assert!(pool.lease(11, ip("1.1.1.1")).is_none(), "limit reached");
        let released = pool.release(1).unwrap();
        assert_eq!(released.addresses(), [ip("10.200.0.2")]);
    }

    #[test]
    fn a_released_address_is_leased_again_only_once_reusable() {
        // A /30 has one client address (index 2).
        let mut pool: NatPool<u64> = NatPool::new("10.200.0.0/30".parse().unwrap(), None, 10);
        let a = pool.lease(1, ip("1.1.1.1")).unwrap();
        assert_eq!(pool.lease(2, ip("1.1.1.1")), None);
        let released = pool.release(1).unwrap();
        assert_eq!(pool.release(1), None, "released once");
        assert_eq!((pool.leased(), pool.quarantined()), (0, 1));
        assert_eq!(pool.lease(2, ip("1.1.1.1")), None, "quarantined");
        assert_eq!(pool.circuit_of(a), None);
        pool.reusable(released);
        assert_eq!(pool.quarantined(), 0);
        assert_eq!(pool.lease(2, ip("1.1.1.1")), Some(a));
        assert_eq!(pool.circuit_of(a), Some(2));
    }

    #[test]
    fn an_address_never_made_reusable_stays_out_while_others_cycle() {
        let mut pool: NatPool<u64> = NatPool::new("10.200.0.0/29".parse().unwrap(), None, 10);
        // Indexes 2..=6: five addresses.
        for circuit in 1..=5 {
            pool.lease(circuit, ip("1.1.1.1")).unwrap();
        }
        let stuck = pool.release(1).unwrap();
        for round in 0..20 {
            let circuit = 2 + round % 4;
            let released = pool.release(circuit).unwrap();
            pool.reusable(released);
            let again = pool.lease(circuit, ip("1.1.1.1")).unwrap();
            assert_ne!(
                again,
                stuck.addresses()[0],
                "a quarantined address was leased"
            );
        }
        assert_eq!(pool.lease(9, ip("1.1.1.1")), None, "four leased, one stuck");
        assert_eq!((pool.leased(), pool.quarantined()), (4, 1));
    }
}
