//! Engine 1, path security: every client keeps a shipped `GuardState` and
//! builds every circuit with the shipped `select_path`, over simulated time
//! that jumps from event to event (consensus publications, relay joins and
//! leaves, each client's circuit builds, arrivals and departures), and the
//! run records which circuits the adversary sees both ends of. Clients are
//! independent between two consensuses, so each period runs them in
//! parallel (rayon) with results that do not depend on the thread count.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use foldhash::fast::RandomState;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use trine_circuit::RelayId;
use trine_directory::{
    Candidate, Cidr, GuardParams, GuardState, PathConfig, PathIndex, PathPositions, Position,
    select_path_positions,
};

use crate::dist;
use crate::error::SimError;
use crate::network::Network;
use crate::prefix;
use crate::progress::Progress;
use crate::scenario::{Scenario, prefixes};

/// Simulated UNIX time of the start of every run.
pub const START: u64 = 1_700_000_000;

const HOUR: f64 = 3600.0;
const DAY: f64 = 86_400.0;

/// What one client saw.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientResult {
    /// Circuits built.
    pub circuits: u64,
    /// Circuits whose guard and exit were both the adversary's.
    pub compromised: u64,
    /// Circuits through an adversary guard.
    pub adversary_guard: u64,
    /// Seconds from the client's arrival to its first compromised circuit.
    pub first_compromise: Option<u64>,
    /// Whether its guard set ever held an adversary relay.
    pub exposed: bool,
    /// Whether its primary guards ever included an adversary relay.
    pub primary_exposed: bool,
    /// Circuit builds for which path selection found no path.
    pub failures: u64,
    /// Build attempts that met an unreachable relay (`relays.churn.
    /// down_share`), each followed by another attempt.
    pub unreachable_attempts: u64,
    /// Of those, attempts whose guard was unreachable (the client marks
    /// it failed and moves down its guard list, as the client does).
    pub guard_unreachable_attempts: u64,
    /// Circuits given up after [`BUILD_ATTEMPTS`] attempts that each met
    /// an unreachable relay.
    pub abandoned: u64,
}

/// Attempts a client makes at one circuit before giving it up, when
/// relays can be unreachable.
pub const BUILD_ATTEMPTS: u32 = 5;

/// The stream of the seed that says which relays are unreachable in each
/// consensus period (its own, so runs without outages draw exactly as
/// before).
const OUTAGE_STREAM: u64 = u64::MAX - 1;

/// Circuits in one simulated day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DayResult {
    /// Circuits built that day.
    pub circuits: u64,
    /// Of which compromised.
    pub compromised: u64,
}

/// Everything a run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct RunResult {
    /// Per client, in client order.
    pub clients: Vec<ClientResult>,
    /// Per day from the start.
    pub days: Vec<DayResult>,
    /// Circuits per exit relay over the run.
    pub exit_counts: BTreeMap<RelayId, u64>,
    /// Circuits per guard relay over the run.
    pub guard_counts: BTreeMap<RelayId, u64>,
    /// At the first consensus: the adversary's share of guard-position
    /// weight.
    pub adversary_guard_share: f64,
    /// At the first consensus: the adversary's share of exit-position
    /// weight.
    pub adversary_exit_share: f64,
    /// At the first consensus: entropy (bits) of the exit choice, and the
    /// most it could be (log2 of the number of exits).
    pub exit_entropy: (f64, f64),
    /// Relays at the first and last consensus.
    pub relays: (usize, usize),
    /// Events processed.
    pub events: u64,
}

/// Runs Engine 1 for `scenario` with `seed`. Deterministic: the network
/// and every client draw from their own ChaCha8 streams of the seed. Fails
/// only when the relay population cannot be made (an unreadable import,
/// an adversary that does not fit the network).
pub fn run(scenario: &Scenario, seed: u64) -> Result<RunResult, SimError> {
    run_with_progress(scenario, seed, &Progress::new())
}

/// Per-relay totals, keyed fast (the run only reads them out sorted).
type IdMap = HashMap<RelayId, u64, RandomState>;

/// One client between its arrival and departure.
struct Client {
    guards: GuardState,
    rng: ChaCha8Rng,
    /// When it builds its next circuit.
    next_circuit: u64,
    /// When it arrives and when it leaves (the end of the run if it stays).
    arrives: u64,
    departs: u64,
    /// Guards sampled at or after this time have not been looked at yet.
    unchecked_since: u64,
    /// The guard state's revision when its guards were last looked at.
    checked_revision: Option<u64>,
    /// Where it is (drawn from `clients.prefixes`, if given).
    address: Option<IpAddr>,
    result: ClientResult,
}

/// The links the adversary watches, and where clients and destinations
/// are.
struct Links {
    watched: Vec<(Vec<Cidr>, Vec<Cidr>)>,
    clients: Vec<Cidr>,
    destinations: Vec<Cidr>,
}

impl Links {
    fn of(scenario: &Scenario) -> Result<Self, SimError> {
        let watched = scenario
            .links
            .iter()
            .map(|link| {
                Ok((
                    prefixes("links.between", &link.between)?,
                    prefixes("links.and", &link.and)?,
                ))
            })
            .collect::<Result<_, SimError>>()?;
        Ok(Self {
            watched,
            clients: prefixes("clients.prefixes", &scenario.clients.prefixes)?,
            destinations: prefixes("clients.destinations", &scenario.clients.destinations)?,
        })
    }

    /// Whether traffic between `one` and any address of `relay` crosses a
    /// watched link.
    fn sees(&self, one: Option<IpAddr>, relay: &Candidate) -> bool {
        let Some(one) = one else {
            return false;
        };
        relay.addresses.iter().any(|other| {
            let other = other.ip();
            self.watched.iter().any(|(side, other_side)| {
                let within =
                    |prefixes: &[Cidr], address| prefixes.iter().any(|p| p.contains(address));
                (within(side, one) && within(other_side, other))
                    || (within(other_side, one) && within(side, other))
            })
        })
    }
}

/// What a share of the clients built in one consensus period, by relay
/// position in that consensus and by day.
struct Tally {
    guards: Vec<u64>,
    exits: Vec<u64>,
    days: Vec<DayResult>,
}

impl Tally {
    fn new(relays: usize, days: usize) -> Self {
        Self {
            guards: vec![0; relays],
            exits: vec![0; relays],
            days: vec![DayResult::default(); days],
        }
    }

    /// Adds `other` (of the same consensus) to this one.
    fn add(&mut self, other: &Self) {
        for (total, count) in self.guards.iter_mut().zip(&other.guards) {
            *total += count;
        }
        for (total, count) in self.exits.iter_mut().zip(&other.exits) {
            *total += count;
        }
        for (total, day) in self.days.iter_mut().zip(&other.days) {
            total.circuits += day.circuits;
            total.compromised += day.compromised;
        }
    }
}

/// Clients are processed in this many fixed shares, whatever the number
/// of threads, so sums are taken in the same order on every machine.
const SHARES: usize = 16;

/// [`run`], advancing `progress` (in simulated seconds) as it goes.
///
/// Time is cut at the consensus publications. Between two of them the
/// network is fixed and every client is independent of every other: each
/// has its own guard state and ChaCha8 stream, so the clients of a period
/// run in parallel and the result does not depend on the number of
/// threads. Relay churn between two publications is applied, in time
/// order, before the later one.
pub fn run_with_progress(
    scenario: &Scenario,
    seed: u64,
    progress: &Progress,
) -> Result<RunResult, SimError> {
    let mut network_rng = stream(seed, u64::MAX);
    let mut outage_rng = stream(seed, OUTAGE_STREAM);
    let mut network = Network::initial(scenario, &mut network_rng)?;
    let end = START + (scenario.time.days * DAY).round() as u64;
    progress.start(end - START);
    let params = scenario.clients.guards.params();
    let circuit_rate = scenario.clients.circuits_per_hour / HOUR;
    let links = Links::of(scenario)?;
    let mut clients: Vec<Client> = (0..scenario.clients.count)
        .map(|index| {
            Client::arriving(
                scenario,
                &params,
                &links,
                stream(seed, u64::from(index)),
                end,
            )
        })
        .collect();
    let churn = &scenario.relays.churn;
    let (join_rate, leave_rate) = (churn.join_per_day / DAY, churn.leave_per_day / DAY);
    let mut next_join = after_exponential(START, join_rate, &mut network_rng);
    let mut next_leave = after_exponential(START, leave_rate, &mut network_rng);

    let consensus_step = (scenario.time.consensus_hours * HOUR).round().max(1.0) as u64;
    let day_count = ((end - START).div_ceil(86_400) as usize).max(1);
    let mut days = vec![DayResult::default(); day_count];
    let mut guard_counts = IdMap::default();
    let mut exit_counts = IdMap::default();
    let mut first = None;
    let mut last_relays = 0;
    let mut events = 0u64;
    let config = PathConfig::default();
    let share_size = clients.len().div_ceil(SHARES).max(1);

    let mut published = START;
    let mut previous: Option<PathIndex> = None;
    while published < end {
        // Churn up to and including the publication time, in time order.
        while next_join.min(next_leave) <= published {
            events += 1;
            if next_join <= next_leave {
                network.join(&mut network_rng);
                next_join = after_exponential(next_join, join_rate, &mut network_rng);
            } else {
                network.leave(&mut network_rng);
                next_leave = after_exponential(next_leave, leave_rate, &mut network_rng);
            }
        }
        events += 1;
        let candidates = network.candidates().to_vec();
        let index = match &previous {
            Some(previous) => PathIndex::following(previous, candidates),
            None => PathIndex::new(candidates),
        };
        first.get_or_insert_with(|| consensus_stats(&index, &network));
        last_relays = index.candidates().len();
        let adversary: Vec<bool> = index
            .candidates()
            .iter()
            .map(|relay| network.is_adversary(&relay.id))
            .collect();
        let until = published.saturating_add(consensus_step).min(end);
        let down_share = churn.down_share;
        let down: Vec<bool> = if down_share > 0.0 {
            // A draw for every relay, so the adversary's (never down) do
            // not shift the honest relays' draws.
            adversary
                .iter()
                .map(|&theirs| outage_rng.gen_bool(down_share) && !theirs)
                .collect()
        } else {
            Vec::new()
        };
        let period = Period {
            links: &links,
            index: &index,
            adversary: &adversary,
            down: &down,
            network: &network,
            config: &config,
            circuit_rate,
            until,
        };
        let tallies: Vec<Tally> = clients
            .par_chunks_mut(share_size)
            .map(|share| {
                let mut tally = Tally::new(adversary.len(), day_count);
                for client in share {
                    period.advance(client, &mut tally);
                }
                tally
            })
            .collect();
        let mut period_total = Tally::new(adversary.len(), day_count);
        for tally in tallies {
            period_total.add(&tally);
        }
        for (total, day) in days.iter_mut().zip(&period_total.days) {
            total.circuits += day.circuits;
            total.compromised += day.compromised;
        }
        add_counts(&mut guard_counts, &index, &period_total.guards);
        add_counts(&mut exit_counts, &index, &period_total.exits);
        progress.advance(until - published);
        published = until;
        previous = Some(index);
    }

    let (adversary_guard_share, adversary_exit_share, exit_entropy, first_relays) =
        first.unwrap_or_default();
    let clients: Vec<ClientResult> = clients.into_iter().map(|client| client.result).collect();
    events += clients
        .iter()
        .map(|c| c.circuits + c.failures + c.abandoned)
        .sum::<u64>();
    Ok(RunResult {
        clients,
        days,
        exit_counts: exit_counts.into_iter().collect(),
        guard_counts: guard_counts.into_iter().collect(),
        adversary_guard_share,
        adversary_exit_share,
        exit_entropy,
        relays: (first_relays, last_relays),
        events,
    })
}

/// `at` plus an exponential wait at `rate` per second, in whole seconds
/// and at least one; `u64::MAX` (never) when the rate is 0.
fn after_exponential(at: u64, rate: f64, rng: &mut ChaCha8Rng) -> u64 {
    match dist::exponential(rate, rng) {
        // Waits are far below 2^64 seconds; `as` saturates otherwise.
        Some(wait) => at.saturating_add(wait.ceil().max(1.0) as u64),
        None => u64::MAX,
    }
}

/// Adds per-position counts of one consensus to the per-relay totals.
fn add_counts(totals: &mut IdMap, index: &PathIndex, counts: &[u64]) {
    for (relay, &count) in index.candidates().iter().zip(counts) {
        if count > 0 {
            *totals.entry(relay.id).or_insert(0) += count;
        }
    }
}

impl Client {
    /// A client with its own stream: draws its arrival, its departure, its
    /// first circuit time and (with client prefixes) its address, in that
    /// order.
    fn arriving(
        scenario: &Scenario,
        params: &GuardParams,
        links: &Links,
        mut rng: ChaCha8Rng,
        end: u64,
    ) -> Self {
        let spec = &scenario.clients;
        let spread = (spec.arrive_over_days * DAY).round() as u64;
        let arrives = START
            + if spread > 0 {
                rng.gen_range(0..spread)
            } else {
                0
            };
        let departs = match spec.mean_stay_days {
            Some(mean) => after_exponential(arrives, 1.0 / (mean * DAY), &mut rng).min(end),
            None => end,
        };
        let next_circuit = after_exponential(arrives, spec.circuits_per_hour / HOUR, &mut rng);
        let address = prefix::draw_from(&links.clients, &mut rng);
        Self {
            guards: GuardState::new(params.clone()),
            rng,
            next_circuit,
            arrives,
            departs,
            unchecked_since: 0,
            checked_revision: None,
            address,
            result: ClientResult::default(),
        }
    }
}

/// One consensus period: the network as published, and what the clients
/// share while they build their circuits in it.
struct Period<'a> {
    links: &'a Links,
    index: &'a PathIndex,
    /// Per relay of `index`: whether it is the adversary's.
    adversary: &'a [bool],
    /// Per relay of `index`: whether it is unreachable this period (empty
    /// when no relay ever is).
    down: &'a [bool],
    network: &'a Network,
    config: &'a PathConfig,
    circuit_rate: f64,
    /// The end of the period (exclusive).
    until: u64,
}

impl Period<'_> {
    /// Builds every circuit `client` makes in this period.
    fn advance(&self, client: &mut Client, tally: &mut Tally) {
        while client.next_circuit < self.until && client.next_circuit < client.departs {
            let now = client.next_circuit;
            self.build_circuit(client, now, tally);
            client.next_circuit = after_exponential(now, self.circuit_rate, &mut client.rng);
        }
    }

    /// A path for `client` at `now` through the shipped path selection,
    /// tried as the client would when relays can be unreachable: a down
    /// guard is marked failed in the guard state (so the next attempt uses
    /// the next usable guard), a guard that answers is marked succeeded,
    /// and a down middle or exit costs an attempt. `None` when path
    /// selection finds no path, or after [`BUILD_ATTEMPTS`] failed tries.
    fn reachable_path(&self, client: &mut Client, now: u64) -> Option<PathPositions> {
        let result = &mut client.result;
        for _ in 0..BUILD_ATTEMPTS {
            let Ok(path) = select_path_positions(
                self.index,
                &mut client.guards,
                now,
                &mut client.rng,
                self.config,
            ) else {
                result.failures += 1;
                return None;
            };
            if self.down.is_empty() {
                return Some(path);
            }
            let guard = self.index.candidates()[path.guard].id;
            if self.down[path.guard] {
                result.unreachable_attempts += 1;
                result.guard_unreachable_attempts += 1;
                client.guards.mark_failed(guard, now);
                continue;
            }
            client.guards.mark_succeeded(guard, now);
            if self.down[path.middle] || self.down[path.exit] {
                result.unreachable_attempts += 1;
                continue;
            }
            return Some(path);
        }
        result.abandoned += 1;
        None
    }

    /// One circuit for `client` at `now`, counted.
    fn build_circuit(&self, client: &mut Client, now: u64, tally: &mut Tally) {
        let chosen = self.reachable_path(client, now);
        let day = &mut tally.days[((now - START) / 86_400) as usize];
        let result = &mut client.result;
        if let Some(path) = chosen {
            result.circuits += 1;
            day.circuits += 1;
            tally.guards[path.guard] += 1;
            tally.exits[path.exit] += 1;
            let bad_guard = self.adversary[path.guard];
            let bad_exit = self.adversary[path.exit];
            if bad_guard {
                result.adversary_guard += 1;
            }
            let (entry_seen, exit_seen) = if self.links.watched.is_empty() {
                (bad_guard, bad_exit)
            } else {
                let relays = self.index.candidates();
                let destination = prefix::draw_from(&self.links.destinations, &mut client.rng);
                (
                    bad_guard || self.links.sees(client.address, &relays[path.guard]),
                    bad_exit || self.links.sees(destination, &relays[path.exit]),
                )
            };
            if entry_seen && exit_seen {
                result.compromised += 1;
                day.compromised += 1;
                result.first_compromise.get_or_insert(now - client.arrives);
            }
        }
        // The guards are as they were at the last look unless the state's
        // revision moved (after the update at `now`, `primary(now)` too).
        let revision = client.guards.revision();
        if client.checked_revision == Some(revision) {
            return;
        }
        client.checked_revision = Some(revision);
        // Guards only join the sample (at its end, stamped with the time
        // they were sampled), so only those sampled since the last look
        // can newly expose the client.
        if !result.exposed {
            let since = client.unchecked_since;
            let entries = client.guards.entries();
            // New guards are at the end: if the last is old, none is new.
            if entries.last().is_some_and(|last| last.added_at >= since) {
                result.exposed = entries
                    .iter()
                    .filter(|entry| entry.added_at >= since)
                    .any(|entry| self.network.is_adversary(&entry.id));
            }
            client.unchecked_since = now;
        }
        // The primary guards are sampled guards: none can be the
        // adversary's before the client is exposed.
        if result.exposed && !result.primary_exposed {
            result.primary_exposed = client
                .guards
                .primary(now)
                .any(|entry| self.network.is_adversary(&entry.id));
        }
    }
}

type ConsensusStats = (f64, f64, (f64, f64), usize);

/// The adversary's guard and exit weight shares and the exit entropy of
/// one consensus.
fn consensus_stats(index: &PathIndex, network: &Network) -> ConsensusStats {
    let consensus = index.candidates();
    let weights = index.weights();
    let share = |position: Position| {
        let (mut ours, mut total) = (0u128, 0u128);
        for relay in consensus {
            let weight = weights.weight_of(relay, position);
            total += weight;
            if network.is_adversary(&relay.id) {
                ours += weight;
            }
        }
        ratio(ours, total)
    };
    let exits: Vec<u128> = consensus
        .iter()
        .filter(|relay| relay.is_exit_eligible())
        .map(|relay| weights.weight_of(relay, Position::Exit))
        .collect();
    let max = if exits.is_empty() {
        0.0
    } else {
        (exits.len() as f64).log2()
    };
    (
        share(Position::Guard),
        share(Position::Exit),
        (entropy_bits(&exits), max),
        consensus.len(),
    )
}

/// Shannon entropy (bits) of the distribution proportional to `weights`.
pub fn entropy_bits(weights: &[u128]) -> f64 {
    let total: u128 = weights.iter().sum();
    weights
        .iter()
        .filter(|&&weight| weight > 0)
        .map(|&weight| {
            let p = ratio(weight, total);
            -p * p.log2()
        })
        .sum()
}

/// `part / total` as a float; 0 when `total` is 0.
pub fn ratio(part: u128, total: u128) -> f64 {
    if total == 0 {
        0.0
    } else {
        part as f64 / total as f64
    }
}

/// Stream `stream` of the ChaCha8 generator for `seed`.
pub fn stream(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}
