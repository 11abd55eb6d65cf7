//! Writing a run's results: CSV tables, `summary.json` (written by hand,
//! fixed key order and number format, so equal runs give equal bytes) and
//! the resolved scenario with the seed and software version.

use std::fmt::Write as _;
use std::path::Path;

use crate::engine::{RunResult, entropy_bits};
use crate::error::SimError;
use crate::scenario::Scenario;

/// The software version written next to every run.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Headline numbers of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Circuits built by all clients.
    pub circuits: u64,
    /// Fraction of circuits with adversary guard and exit.
    pub compromised_fraction: f64,
    /// Fraction of clients with at least one compromised circuit.
    pub clients_compromised: f64,
    /// Fraction of clients whose guard set ever held an adversary relay.
    pub guard_exposure: f64,
    /// Fraction of clients whose primary guards ever included an adversary
    /// relay.
    pub primary_guard_exposure: f64,
    /// Fraction of clients that built a circuit through an adversary guard.
    pub clients_using_adversary_guard: f64,
    /// Median over clients of the fraction of their circuits compromised.
    pub median_client_fraction: f64,
    /// Entropy (bits) of the observed exit choices.
    pub observed_exit_entropy: f64,
}

impl Summary {
    /// The headline numbers of `result`.
    pub fn of(result: &RunResult) -> Self {
        let clients = result.clients.len().max(1) as f64;
        let circuits: u64 = result.clients.iter().map(|c| c.circuits).sum();
        let compromised: u64 = result.clients.iter().map(|c| c.compromised).sum();
        let mut fractions: Vec<f64> = result.clients.iter().map(client_fraction).collect();
        fractions.sort_by(f64::total_cmp);
        let counts: Vec<u128> = result.exit_counts.values().map(|&n| n.into()).collect();
        Self {
            circuits,
            compromised_fraction: fraction(compromised, circuits),
            clients_compromised: count(&result.clients, |c| c.compromised > 0) / clients,
            guard_exposure: count(&result.clients, |c| c.exposed) / clients,
            primary_guard_exposure: count(&result.clients, |c| c.primary_exposed) / clients,
            clients_using_adversary_guard: count(&result.clients, |c| c.adversary_guard > 0)
                / clients,
            median_client_fraction: fractions.get(fractions.len() / 2).copied().unwrap_or(0.0),
            observed_exit_entropy: entropy_bits(&counts),
        }
    }
}

/// Writes every output file of a run into `dir` (created if missing).
pub fn write(
    dir: &Path,
    scenario: &Scenario,
    seed: u64,
    result: &RunResult,
) -> Result<Summary, SimError> {
    std::fs::create_dir_all(dir).map_err(|source| io(dir, source))?;
    let summary = Summary::of(result);
    let scenario_text = format!(
        "# Resolved scenario of a trine-sim {VERSION} run, seed {seed}.\n{}",
        scenario.to_toml()?
    );
    save(dir, "scenario.toml", &scenario_text)?;
    save(dir, "clients.csv", &clients_csv(result))?;
    save(dir, "first_compromise_cdf.csv", &cdf_csv(result))?;
    save(dir, "compromise_by_day.csv", &days_csv(result))?;
    save(dir, "summary.json", &summary_json(seed, result, &summary))?;
    Ok(summary)
}

fn clients_csv(result: &RunResult) -> String {
    let mut text = String::from(
        "client,circuits,compromised,fraction_compromised,adversary_guard_circuits,first_compromise_hours,guard_exposed,primary_exposed,failures\n",
    );
    for (index, client) in result.clients.iter().enumerate() {
        let first = client
            .first_compromise
            .map(|secs| format!("{:.4}", secs as f64 / 3600.0))
            .unwrap_or_default();
        let _ = writeln!(
            text,
            "{index},{},{},{:.6},{},{first},{},{},{}",
            client.circuits,
            client.compromised,
            client_fraction(client),
            client.adversary_guard,
            client.exposed,
            client.primary_exposed,
            client.failures
        );
    }
    text
}

/// The CDF over all clients of the time to the first compromised circuit;
/// it ends at the fraction of clients ever compromised.
fn cdf_csv(result: &RunResult) -> String {
    let clients = result.clients.len().max(1) as f64;
    let mut times: Vec<u64> = result
        .clients
        .iter()
        .filter_map(|c| c.first_compromise)
        .collect();
    times.sort_unstable();
    let mut text = String::from("hours,fraction_of_clients\n");
    for (rank, secs) in times.iter().enumerate() {
        let _ = writeln!(
            text,
            "{:.4},{:.6}",
            *secs as f64 / 3600.0,
            (rank + 1) as f64 / clients
        );
    }
    text
}

fn days_csv(result: &RunResult) -> String {
    let mut text = String::from("day,circuits,compromised,fraction_compromised\n");
    for (day, counts) in result.days.iter().enumerate() {
        let _ = writeln!(
            text,
            "{day},{},{},{:.6}",
            counts.circuits,
            counts.compromised,
            fraction(counts.compromised, counts.circuits)
        );
    }
    text
}

fn summary_json(seed: u64, result: &RunResult, summary: &Summary) -> String {
    let failures: u64 = result.clients.iter().map(|c| c.failures).sum();
    let (entropy, max_entropy) = result.exit_entropy;
    let fields = [
        ("software", format!("\"trine-sim {VERSION}\"")),
        ("seed", seed.to_string()),
        ("engine", "\"path-security\"".to_owned()),
        ("clients", result.clients.len().to_string()),
        ("relays_first_consensus", result.relays.0.to_string()),
        ("relays_last_consensus", result.relays.1.to_string()),
        ("events", result.events.to_string()),
        ("circuits", summary.circuits.to_string()),
        ("path_failures", failures.to_string()),
        (
            "adversary_guard_weight_share",
            num(result.adversary_guard_share),
        ),
        (
            "adversary_exit_weight_share",
            num(result.adversary_exit_share),
        ),
        (
            "compromised_circuit_fraction",
            num(summary.compromised_fraction),
        ),
        ("clients_ever_compromised", num(summary.clients_compromised)),
        (
            "median_client_compromised_fraction",
            num(summary.median_client_fraction),
        ),
        ("guard_exposure", num(summary.guard_exposure)),
        (
            "primary_guard_exposure",
            num(summary.primary_guard_exposure),
        ),
        (
            "clients_using_adversary_guard",
            num(summary.clients_using_adversary_guard),
        ),
        ("exit_entropy_bits", num(entropy)),
        ("exit_entropy_max_bits", num(max_entropy)),
        (
            "observed_exit_entropy_bits",
            num(summary.observed_exit_entropy),
        ),
    ];
    let body: Vec<String> = fields
        .iter()
        .map(|(key, value)| format!("  \"{key}\": {value}"))
        .collect();
    format!("{{\n{}\n}}\n", body.join(",\n"))
}

pub(crate) fn num(value: f64) -> String {
    format!("{value:.6}")
}

fn fraction(part: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        part as f64 / total as f64
    }
}

fn client_fraction(client: &crate::engine::ClientResult) -> f64 {
    fraction(client.compromised, client.circuits)
}

fn count<T>(items: &[T], test: impl Fn(&T) -> bool) -> f64 {
    items.iter().filter(|item| test(item)).count() as f64
}

pub(crate) fn save(dir: &Path, name: &str, text: &str) -> Result<(), SimError> {
    let path = dir.join(name);
    std::fs::write(&path, text).map_err(|source| io(&path, source))
}

pub(crate) fn io(path: &Path, source: std::io::Error) -> SimError {
    SimError::Io {
        path: path.to_owned(),
        source,
    }
}
