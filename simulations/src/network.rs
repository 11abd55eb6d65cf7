//! The simulated relay population: honest relays generated from the
//! scenario's distributions, the adversary's relays, and churn. Each
//! consensus is a snapshot of it as path selection's [`Candidate`]s.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use rand::Rng;
use rand::seq::index;
use trine_circuit::RelayId;
use trine_directory::{Candidate, Flag, Flags};

use crate::dist;
use crate::scenario::{AdversarySpec, RelaySpec};

/// Every relay currently in the network, in consensus order, and which of
/// them (ever) belong to the adversary.
#[derive(Debug, Clone)]
pub struct Network {
    relays: Vec<Candidate>,
    adversary: HashSet<RelayId>,
    next_index: u64,
    spec: RelaySpec,
}

impl Network {
    /// Generates the initial honest relays and adds or marks the
    /// adversary's.
    pub fn generate<R: Rng + ?Sized>(
        spec: &RelaySpec,
        adversary: &AdversarySpec,
        rng: &mut R,
    ) -> Self {
        let mut network = Self {
            relays: Vec::new(),
            adversary: HashSet::new(),
            next_index: 0,
            spec: spec.clone(),
        };
        for _ in 0..spec.count {
            network.join(rng);
        }
        network.declare_families();
        match *adversary {
            AdversarySpec::Added {
                relays,
                bandwidth,
                guard_fraction,
                subnets,
            } => network.add_adversary(relays, bandwidth, guard_fraction, subnets),
            AdversarySpec::Existing { fraction } => {
                let total = network.relays.len();
                // Bounded by `total`, so the cast back cannot lose anything.
                let chosen = ((fraction * total as f64).round() as usize).min(total);
                for position in index::sample(rng, total, chosen).into_vec() {
                    network.adversary.insert(network.relays[position].id);
                }
            }
        }
        network
    }

    /// The relays as path selection sees them, in consensus order.
    pub fn candidates(&self) -> &[Candidate] {
        &self.relays
    }

    /// Whether a relay is the adversary's.
    pub fn is_adversary(&self, id: &RelayId) -> bool {
        self.adversary.contains(id)
    }

    /// A new honest relay with flags and bandwidth drawn like the initial
    /// ones, on a random one of the honest /16s.
    pub fn join<R: Rng + ?Sized>(&mut self, rng: &mut R) {
        let mut flags = base_flags();
        if rng.gen_bool(self.spec.guard_share) {
            flags = flags.with(Flag::Guard);
        }
        let exit = rng.gen_bool(self.spec.exit_share);
        if exit {
            flags = flags.with(Flag::Exit);
        }
        let weight = dist::bandwidth(&self.spec.bandwidth, rng);
        let subnet = rng.gen_range(0..self.spec.subnets);
        self.push(flags, weight, exit, subnet);
    }

    /// Removes a uniformly chosen honest relay, if there is one.
    pub fn leave<R: Rng + ?Sized>(&mut self, rng: &mut R) {
        let honest: Vec<usize> = (0..self.relays.len())
            .filter(|&position| !self.adversary.contains(&self.relays[position].id))
            .collect();
        if honest.is_empty() {
            return;
        }
        let position = honest[rng.gen_range(0..honest.len())];
        let gone = self.relays.remove(position).id;
        for relay in &mut self.relays {
            relay.family.retain(|member| *member != gone);
        }
    }

    fn push(&mut self, flags: Flags, weight: u64, exit: bool, subnet: u32) {
        let index = self.next_index;
        self.next_index += 1;
        self.relays.push(Candidate {
            id: relay_id(index),
            addresses: vec![address(subnet, index)],
            family: Vec::new(),
            flags,
            weight,
            exit_allows_general: exit,
        });
    }

    /// The first `families × family_size` relays form families, each relay
    /// declaring every other member.
    fn declare_families(&mut self) {
        let size = self.spec.family_size as usize;
        for family in 0..self.spec.families as usize {
            let members = family * size..(family + 1) * size;
            let ids: Vec<RelayId> = self.relays[members.clone()].iter().map(|r| r.id).collect();
            for relay in &mut self.relays[members] {
                relay.family = ids.iter().copied().filter(|id| *id != relay.id).collect();
            }
        }
    }

    /// The adversary's new relays: guards (Guard only) and exits (Exit
    /// only), the budget split evenly within each kind, on its own /16s.
    fn add_adversary(&mut self, relays: u32, bandwidth: u64, guard_fraction: f64, subnets: u32) {
        let mut guards = (f64::from(relays) * guard_fraction).round() as u32;
        if relays >= 2 && guard_fraction > 0.0 && guard_fraction < 1.0 {
            guards = guards.clamp(1, relays - 1);
        }
        let guards = guards.min(relays);
        let exits = relays - guards;
        let guard_budget = (bandwidth as f64 * guard_fraction).round() as u64;
        let exit_budget = bandwidth.saturating_sub(guard_budget);
        let kinds = [
            (guards, guard_budget, base_flags().with(Flag::Guard), false),
            (exits, exit_budget, base_flags().with(Flag::Exit), true),
        ];
        let mut serial = 0;
        for (count, budget, flags, exit) in kinds {
            for _ in 0..count {
                let weight = (budget / u64::from(count)).max(1);
                let subnet = self.spec.subnets + serial % subnets;
                serial += 1;
                self.push(flags, weight, exit, subnet);
                if let Some(relay) = self.relays.last() {
                    self.adversary.insert(relay.id);
                }
            }
        }
    }
}

fn base_flags() -> Flags {
    Flags::NONE
        .with(Flag::Running)
        .with(Flag::Valid)
        .with(Flag::Stable)
        .with(Flag::Fast)
}

/// A relay's identity: its serial number in the first 8 bytes.
fn relay_id(index: u64) -> RelayId {
    let mut bytes = [0; 32];
    bytes[..8].copy_from_slice(&index.to_be_bytes());
    RelayId::from_bytes(bytes)
}

/// An address in /16 number `subnet` (wrapping after 65 536), the lower
/// half from the relay's serial number.
fn address(subnet: u32, index: u64) -> SocketAddr {
    let [_, _, a, b] = subnet.to_be_bytes();
    let [.., c, d] = index.to_be_bytes();
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(a, b, c, d)), 443)
}
