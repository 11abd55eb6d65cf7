//! Engine 1, path security: every client keeps a shipped `GuardState` and
//! builds every circuit with the shipped `select_path`, over event-driven
//! simulated time (consensuses, relay churn, circuit builds), and the run
//! records which circuits the adversary sees both ends of.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use trine_circuit::RelayId;
use trine_directory::{
    Candidate, GuardParams, GuardState, PathConfig, Position, PositionWeights, select_path,
};

use crate::dist;
use crate::error::SimError;
use crate::network::Network;
use crate::progress::Progress;
use crate::scenario::Scenario;

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
    /// Seconds from the start to the first compromised circuit.
    pub first_compromise: Option<u64>,
    /// Whether its guard set ever held an adversary relay.
    pub exposed: bool,
    /// Whether its primary guards ever included an adversary relay.
    pub primary_exposed: bool,
    /// Circuit builds for which path selection found no path.
    pub failures: u64,
}

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Consensus,
    Join,
    Leave,
    Circuit(u32),
}

struct Client {
    guards: GuardState,
    rng: ChaCha8Rng,
    result: ClientResult,
}

/// The event queue: earliest time first, then order of scheduling.
struct Queue {
    heap: BinaryHeap<Reverse<(u64, u64, Event)>>,
    serial: u64,
    end: u64,
}

impl Queue {
    fn push(&mut self, at: u64, event: Event) {
        if at < self.end {
            self.heap.push(Reverse((at, self.serial, event)));
            self.serial += 1;
        }
    }

    /// Schedules `event` after an exponential wait at `rate` per second.
    fn after_exponential(&mut self, now: u64, rate: f64, event: Event, rng: &mut ChaCha8Rng) {
        if let Some(wait) = dist::exponential(rate, rng) {
            // Waits are far below 2^64 seconds; `as` saturates otherwise.
            self.push(now + wait.ceil().max(1.0) as u64, event);
        }
    }
}

/// Runs Engine 1 for `scenario` with `seed`. Deterministic: the network
/// and every client draw from their own ChaCha8 streams of the seed. Fails
/// only when an imported relay population cannot be read.
pub fn run(scenario: &Scenario, seed: u64) -> Result<RunResult, SimError> {
    run_with_progress(scenario, seed, &Progress::new())
}

/// [`run`], advancing `progress` (in simulated seconds) as it goes.
pub fn run_with_progress(
    scenario: &Scenario,
    seed: u64,
    progress: &Progress,
) -> Result<RunResult, SimError> {
    let mut network_rng = stream(seed, u64::MAX);
    let mut network = Network::initial(scenario, &mut network_rng)?;
    let end = START + (scenario.time.days * DAY).round() as u64;
    progress.start(end - START);
    let mut reported = START;
    let mut queue = Queue {
        heap: BinaryHeap::new(),
        serial: 0,
        end,
    };
    let mut clients: Vec<Client> = (0..scenario.clients.count)
        .map(|index| Client {
            guards: GuardState::new(GuardParams::default()),
            rng: stream(seed, u64::from(index)),
            result: ClientResult::default(),
        })
        .collect();
    let circuit_rate = scenario.clients.circuits_per_hour / HOUR;
    let churn = &scenario.relays.churn;
    queue.push(START, Event::Consensus);
    queue.after_exponential(
        START,
        churn.join_per_day / DAY,
        Event::Join,
        &mut network_rng,
    );
    queue.after_exponential(
        START,
        churn.leave_per_day / DAY,
        Event::Leave,
        &mut network_rng,
    );
    for (index, client) in (0u32..).zip(clients.iter_mut()) {
        queue.after_exponential(START, circuit_rate, Event::Circuit(index), &mut client.rng);
    }

    let consensus_step = (scenario.time.consensus_hours * HOUR).round().max(1.0) as u64;
    let day_count = (end - START).div_ceil(86_400) as usize;
    let mut days = vec![DayResult::default(); day_count.max(1)];
    let mut consensus: Vec<Candidate> = Vec::new();
    let mut first = None;
    let mut counts = Counts::default();
    let mut events = 0;
    let config = PathConfig::default();

    while let Some(Reverse((now, _, event))) = queue.heap.pop() {
        events += 1;
        progress.advance(now - reported);
        reported = now;
        match event {
            Event::Consensus => {
                consensus = network.candidates().to_vec();
                first.get_or_insert_with(|| consensus_stats(&consensus, &network));
                queue.push(now + consensus_step, Event::Consensus);
            }
            Event::Join => {
                network.join(&mut network_rng);
                queue.after_exponential(
                    now,
                    churn.join_per_day / DAY,
                    Event::Join,
                    &mut network_rng,
                );
            }
            Event::Leave => {
                network.leave(&mut network_rng);
                let rate = churn.leave_per_day / DAY;
                queue.after_exponential(now, rate, Event::Leave, &mut network_rng);
            }
            Event::Circuit(index) => {
                let Some(client) = clients.get_mut(index as usize) else {
                    continue;
                };
                let day = &mut days[((now - START) / 86_400) as usize];
                build_circuit(client, &consensus, &network, &config, now, day, &mut counts);
                queue.after_exponential(now, circuit_rate, event, &mut client.rng);
            }
        }
    }

    let (adversary_guard_share, adversary_exit_share, exit_entropy, first_relays) =
        first.unwrap_or_default();
    Ok(RunResult {
        clients: clients.into_iter().map(|client| client.result).collect(),
        days,
        exit_counts: counts.exits,
        guard_counts: counts.guards,
        adversary_guard_share,
        adversary_exit_share,
        exit_entropy,
        relays: (first_relays, consensus.len()),
        events,
    })
}

/// Circuits per relay in the guard and exit positions.
#[derive(Default)]
struct Counts {
    guards: BTreeMap<RelayId, u64>,
    exits: BTreeMap<RelayId, u64>,
}

/// One circuit for `client` at `now` through the shipped path selection.
fn build_circuit(
    client: &mut Client,
    consensus: &[Candidate],
    network: &Network,
    config: &PathConfig,
    now: u64,
    day: &mut DayResult,
    counts: &mut Counts,
) {
    let result = &mut client.result;
    match select_path(consensus, &mut client.guards, now, &mut client.rng, config) {
        Ok(path) => {
            result.circuits += 1;
            day.circuits += 1;
            *counts.guards.entry(path.guard).or_insert(0) += 1;
            *counts.exits.entry(path.exit).or_insert(0) += 1;
            let bad_guard = network.is_adversary(&path.guard);
            if bad_guard {
                result.adversary_guard += 1;
            }
            if bad_guard && network.is_adversary(&path.exit) {
                result.compromised += 1;
                day.compromised += 1;
                result.first_compromise.get_or_insert(now - START);
            }
        }
        Err(_) => result.failures += 1,
    }
    if !result.exposed {
        result.exposed = client
            .guards
            .entries()
            .iter()
            .any(|entry| network.is_adversary(&entry.id));
    }
    if !result.primary_exposed {
        result.primary_exposed = client
            .guards
            .primary(now)
            .any(|entry| network.is_adversary(&entry.id));
    }
}

type ConsensusStats = (f64, f64, (f64, f64), usize);

/// The adversary's guard and exit weight shares and the exit entropy of
/// one consensus.
fn consensus_stats(consensus: &[Candidate], network: &Network) -> ConsensusStats {
    let weights = PositionWeights::compute(consensus);
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
