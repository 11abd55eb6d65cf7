//! The simulated relay population: honest relays generated from the
//! scenario's distributions or imported from a consensus document, the
//! adversary's relays (added, or existing ones taken over), and churn.
//! Each consensus is a snapshot of it as path selection's [`Candidate`]s.

mod adversary;

use std::collections::HashSet;

use foldhash::fast::RandomState;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use rand::Rng;
use rand::seq::index;
use trine_circuit::RelayId;
use trine_directory::{Candidate, Flag, Flags};

use crate::dist;
use crate::error::SimError;
use crate::import::{self, ImportedRelay};
use crate::scenario::{AdversarySpec, GeneratedRelays, RelaySource, RelaySpec, Scenario};

/// A set of relays, hashed fast (looked up for every relay at each
/// consensus and every departure).
type IdSet = HashSet<RelayId, RandomState>;

/// Every relay currently in the network, in consensus order, and which of
/// them (ever) belong to the adversary.
#[derive(Debug, Clone)]
pub struct Network {
    relays: Vec<Candidate>,
    adversary: IdSet,
    next_index: u64,
    /// Identities of imported relays, never given to a new relay.
    reserved: IdSet,
    joins: Joins,
}

/// How a joining honest relay is made.
#[derive(Debug, Clone)]
enum Joins {
    /// Drawn from the scenario's distributions.
    Generated(GeneratedRelays),
    /// A copy of one of these (the imported relays), chosen uniformly.
    Resample(Vec<Candidate>),
}

impl Network {
    /// The network a run of `scenario` starts with: generated, or imported
    /// from the document the scenario names (read now), with the
    /// adversary's relays added or marked. Fails when the document cannot
    /// be read or the adversary cannot be placed on the network (see
    /// [`SimError::Adversary`]).
    pub fn initial<R: Rng + ?Sized>(scenario: &Scenario, rng: &mut R) -> Result<Self, SimError> {
        Self::from_relays(&scenario.relays, &scenario.adversary, rng)
    }

    /// The network of the relays `relays` describes (churn aside), with
    /// `adversary`'s relays added or marked: [`Network::initial`] for any
    /// engine's scenario.
    pub fn from_relays<R: Rng + ?Sized>(
        relays: &RelaySpec,
        adversary: &AdversarySpec,
        rng: &mut R,
    ) -> Result<Self, SimError> {
        match &relays.source {
            RelaySource::Generated(spec) => Self::generate(spec, adversary, rng),
            RelaySource::Imported(spec) => Self::imported(import::load(spec)?, adversary, rng),
        }
    }

    /// Generates the initial honest relays and adds or marks the
    /// adversary's. Added adversary relays go on /16s right after the
    /// honest ones. The relays are named [`generated_nickname`] of their
    /// serial number (their position among the initial relays) for a
    /// chosen adversary.
    pub fn generate<R: Rng + ?Sized>(
        spec: &GeneratedRelays,
        adversary: &AdversarySpec,
        rng: &mut R,
    ) -> Result<Self, SimError> {
        let mut network = Self {
            relays: Vec::new(),
            adversary: IdSet::default(),
            next_index: 0,
            reserved: IdSet::default(),
            joins: Joins::Generated(spec.clone()),
        };
        for _ in 0..spec.count {
            network.join(rng);
        }
        network.declare_families(spec.families, spec.family_size);
        let names: Vec<String> = (0..u64::from(spec.count)).map(generated_nickname).collect();
        network.add_adversary(adversary, &names, |serial| spec.subnets + serial, rng)?;
        Ok(network)
    }

    /// Starts from imported honest relays (kept in their order, with their
    /// identities) and adds or marks the adversary's. Added adversary
    /// relays go on IPv4 /16s that no imported relay uses. Joins copy a
    /// uniformly chosen imported relay. A chosen adversary names relays
    /// by their nicknames in the document or their fingerprints.
    pub fn imported<R: Rng + ?Sized>(
        imported: Vec<ImportedRelay>,
        adversary: &AdversarySpec,
        rng: &mut R,
    ) -> Result<Self, SimError> {
        let (names, relays): (Vec<String>, Vec<Candidate>) = imported
            .into_iter()
            .map(|relay| (relay.nickname, relay.relay))
            .unzip();
        let used: HashSet<u32> = relays
            .iter()
            .flat_map(|relay| &relay.addresses)
            .filter_map(|address| match address.ip() {
                IpAddr::V4(ip) => Some(u32::from(ip) >> 16),
                IpAddr::V6(_) => None,
            })
            .collect();
        let free: Vec<u32> = (0..1 << 16).filter(|n| !used.contains(n)).collect();
        let mut network = Self {
            relays: relays.clone(),
            adversary: IdSet::default(),
            next_index: 0,
            reserved: relays.iter().map(|relay| relay.id).collect(),
            joins: Joins::Resample(relays),
        };
        network.add_adversary(
            adversary,
            &names,
            |serial| free.get(serial as usize).copied().unwrap_or(serial),
            rng,
        )?;
        Ok(network)
    }

    /// The relays as path selection sees them, in consensus order.
    pub fn candidates(&self) -> &[Candidate] {
        &self.relays
    }

    /// Whether a relay is the adversary's.
    pub fn is_adversary(&self, id: &RelayId) -> bool {
        self.adversary.contains(id)
    }

    /// A new honest relay. Generated: flags and bandwidth drawn like the
    /// initial ones, on a random one of the honest /16s. Imported: a copy
    /// of a uniformly chosen imported relay (flags, weight, exit policy,
    /// its IPv4 /16 or IPv6 /32) under a new identity and host address,
    /// declaring no family.
    pub fn join<R: Rng + ?Sized>(&mut self, rng: &mut R) {
        let template = match &self.joins {
            Joins::Generated(spec) => {
                let mut flags = base_flags();
                if rng.gen_bool(spec.guard_share) {
                    flags = flags.with(Flag::Guard);
                }
                let exit = rng.gen_bool(spec.exit_share);
                if exit {
                    flags = flags.with(Flag::Exit);
                }
                let weight = dist::bandwidth(&spec.bandwidth, rng);
                let subnet = rng.gen_range(0..spec.subnets);
                self.push(flags, weight, exit, subnet);
                return;
            }
            Joins::Resample(pool) if pool.is_empty() => return,
            Joins::Resample(pool) => pool[rng.gen_range(0..pool.len())].clone(),
        };
        let (index, id) = self.fresh_id();
        let addresses = template
            .addresses
            .iter()
            .map(|address| same_subnet(*address, index))
            .collect();
        self.relays.push(Candidate {
            id,
            addresses,
            family: Vec::new(),
            ..template
        });
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

    /// The next serial number and the identity made from it, skipping
    /// identities an imported relay holds.
    fn fresh_id(&mut self) -> (u64, RelayId) {
        loop {
            let index = self.next_index;
            self.next_index += 1;
            let id = relay_id(index);
            if !self.reserved.contains(&id) {
                return (index, id);
            }
        }
    }

    fn push(&mut self, flags: Flags, weight: u64, exit: bool, subnet: u32) {
        let (index, id) = self.fresh_id();
        self.relays.push(Candidate {
            id,
            addresses: vec![address(subnet, index)],
            family: Vec::new(),
            flags,
            weight,
            exit_allows_general: exit,
        });
    }

    /// The first `families × family_size` relays form families, each relay
    /// declaring every other member.
    fn declare_families(&mut self, families: u32, family_size: u32) {
        let size = family_size as usize;
        for family in 0..families as usize {
            let members = family * size..(family + 1) * size;
            let ids: Vec<RelayId> = self.relays[members.clone()].iter().map(|r| r.id).collect();
            for relay in &mut self.relays[members] {
                relay.family = ids.iter().copied().filter(|id| *id != relay.id).collect();
            }
        }
    }

    /// Adds the adversary's relays (the `serial`-th of its /16s is
    /// `subnet(serial)`) or marks honest ones: a uniformly chosen share,
    /// enough for shares of position weight, or those named (`names` are
    /// the nicknames of the relays, in order).
    fn add_adversary<R: Rng + ?Sized>(
        &mut self,
        adversary: &AdversarySpec,
        names: &[String],
        subnet: impl Fn(u32) -> u32,
        rng: &mut R,
    ) -> Result<(), SimError> {
        let marked = match *adversary {
            AdversarySpec::Added {
                relays,
                bandwidth,
                guard_fraction,
                subnets,
            } => {
                self.add_relays(relays, bandwidth, guard_fraction, |serial| {
                    subnet(serial % subnets.max(1))
                });
                return Ok(());
            }
            AdversarySpec::Existing { fraction } => {
                let total = self.relays.len();
                // Bounded by `total`, so the cast back cannot lose anything.
                let chosen = ((fraction * total as f64).round() as usize).min(total);
                index::sample(rng, total, chosen).into_vec()
            }
            AdversarySpec::Bandwidth {
                guard_share,
                exit_share,
            } => adversary::by_bandwidth(&self.relays, guard_share, exit_share, rng)?,
            AdversarySpec::Chosen { ref relays } => adversary::chosen(&self.relays, names, relays)?,
        };
        for position in marked {
            self.adversary.insert(self.relays[position].id);
        }
        Ok(())
    }

    /// The adversary's new relays: guards (Guard only) and exits (Exit
    /// only), the budget split evenly within each kind, the `serial`-th on
    /// /16 number `subnet(serial)`.
    fn add_relays(
        &mut self,
        relays: u32,
        bandwidth: u64,
        guard_fraction: f64,
        subnet: impl Fn(u32) -> u32,
    ) {
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
                let subnet = subnet(serial);
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

/// The nickname of the generated relay with serial number `serial`:
/// `relay0`, `relay1`, … (a chosen adversary names generated relays so).
pub fn generated_nickname(serial: u64) -> String {
    format!("relay{serial}")
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

/// `address` with its host part (below the IPv4 /16 or IPv6 /32) taken
/// from a relay's serial number.
fn same_subnet(address: SocketAddr, index: u64) -> SocketAddr {
    let ip = match address.ip() {
        IpAddr::V4(ip) => {
            let [a, b, ..] = ip.octets();
            let [.., c, d] = index.to_be_bytes();
            IpAddr::V4(Ipv4Addr::new(a, b, c, d))
        }
        IpAddr::V6(ip) => {
            let mut octets = ip.octets();
            octets[8..].copy_from_slice(&index.to_be_bytes());
            octets[4..8].fill(0);
            IpAddr::V6(Ipv6Addr::from(octets))
        }
    };
    SocketAddr::new(ip, address.port())
}
