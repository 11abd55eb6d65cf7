//! Writing a run's results: CSV tables, `summary.json` (written by hand,
//! fixed key order and number format, so equal runs give equal bytes), the
//! resolved scenario with the seed and software version, and the run's
//! figures. What is written across seeds is in `aggregate::files`.

use std::fmt::Write as _;
use std::path::Path;

use crate::aggregate::{self, Replicate, curves};
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

/// A headline number: a count, a fraction in [0, 1] or another real.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    /// A count.
    Count(u64),
    /// A fraction, in [0, 1].
    Fraction(f64),
    /// Any other real number.
    Real(f64),
}

impl Number {
    /// The number as a real.
    pub fn value(self) -> f64 {
        match self {
            Self::Count(n) => n as f64,
            Self::Fraction(x) | Self::Real(x) => x,
        }
    }

    /// How `summary.json` writes it.
    fn json(self) -> String {
        match self {
            Self::Count(n) => n.to_string(),
            Self::Fraction(x) | Self::Real(x) => num(x),
        }
    }
}

/// What one seed's run left: its headline numbers for the command's
/// report, and what the aggregate across seeds needs.
#[derive(Debug, Clone, PartialEq)]
pub struct SeedRun {
    /// Its headline numbers.
    pub summary: Summary,
    /// Every number of its `summary.json` after the seed and engine, and
    /// its curves on the scenario's fixed grids.
    pub replicate: Replicate,
}

/// Writes every output file of a run into `dir` (created if missing):
/// tables, summary, resolved scenario and figures.
pub fn write(
    dir: &Path,
    scenario: &Scenario,
    seed: u64,
    result: &RunResult,
) -> Result<SeedRun, SimError> {
    std::fs::create_dir_all(dir).map_err(|source| io(dir, source))?;
    let summary = Summary::of(result);
    let scenario_text = format!(
        "# Resolved scenario of a trine-sim {VERSION} run, seed {seed}.\n{}",
        scenario.to_toml()?
    );
    save(dir, "scenario.toml", &scenario_text)?;
    let run_fields = [("seed", seed.to_string())];
    for (name, csv) in [
        ("clients", clients_csv(result)),
        ("first_compromise_cdf", cdf_csv(result)),
        ("compromise_by_day", days_csv(result)),
    ] {
        save_table(dir, name, &run_fields, &csv)?;
    }
    let headline = headline(result, &summary);
    let numbers: Vec<(&str, String)> = headline.iter().map(|&(k, v)| (k, v.json())).collect();
    save(
        dir,
        "summary.json",
        &summary_json(&[("seed", seed.to_string())], PATH_SECURITY, &numbers),
    )?;
    let tables = curves::tables(scenario, result);
    for table in &tables {
        aggregate::draw(dir, &aggregate::across(&[table])?, false)?;
    }
    Ok(SeedRun {
        summary,
        replicate: Replicate {
            seed,
            headline,
            tables,
        },
    })
}

fn clients_csv(result: &RunResult) -> String {
    let mut text = String::from(
        "client,circuits,compromised,fraction_compromised,adversary_guard_circuits,first_compromise_hours,guard_exposed,primary_exposed,failures,unreachable_attempts,guard_unreachable_attempts,abandoned\n",
    );
    for (index, client) in result.clients.iter().enumerate() {
        let first = client
            .first_compromise
            .map(|secs| format!("{:.4}", secs as f64 / 3600.0))
            .unwrap_or_default();
        let _ = writeln!(
            text,
            "{index},{},{},{:.6},{},{first},{},{},{},{},{},{}",
            client.circuits,
            client.compromised,
            client_fraction(client),
            client.adversary_guard,
            client.exposed,
            client.primary_exposed,
            client.failures,
            client.unreachable_attempts,
            client.guard_unreachable_attempts,
            client.abandoned
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

/// The numbers of a run's `summary.json`, in order.
fn headline(result: &RunResult, summary: &Summary) -> Vec<(&'static str, Number)> {
    use Number::{Count, Fraction, Real};
    let total = |field: fn(&crate::engine::ClientResult) -> u64| -> u64 {
        result.clients.iter().map(field).sum()
    };
    let (entropy, max_entropy) = result.exit_entropy;
    vec![
        ("clients", Count(result.clients.len() as u64)),
        ("relays_first_consensus", Count(result.relays.0 as u64)),
        ("relays_last_consensus", Count(result.relays.1 as u64)),
        ("events", Count(result.events)),
        ("circuits", Count(summary.circuits)),
        ("path_failures", Count(total(|c| c.failures))),
        (
            "unreachable_attempts",
            Count(total(|c| c.unreachable_attempts)),
        ),
        (
            "guard_unreachable_attempts",
            Count(total(|c| c.guard_unreachable_attempts)),
        ),
        ("abandoned_circuits", Count(total(|c| c.abandoned))),
        (
            "adversary_guard_weight_share",
            Fraction(result.adversary_guard_share),
        ),
        (
            "adversary_exit_weight_share",
            Fraction(result.adversary_exit_share),
        ),
        (
            "compromised_circuit_fraction",
            Fraction(summary.compromised_fraction),
        ),
        (
            "clients_ever_compromised",
            Fraction(summary.clients_compromised),
        ),
        (
            "median_client_compromised_fraction",
            Fraction(summary.median_client_fraction),
        ),
        ("guard_exposure", Fraction(summary.guard_exposure)),
        (
            "primary_guard_exposure",
            Fraction(summary.primary_guard_exposure),
        ),
        (
            "clients_using_adversary_guard",
            Fraction(summary.clients_using_adversary_guard),
        ),
        ("exit_entropy_bits", Real(entropy)),
        ("exit_entropy_max_bits", Real(max_entropy)),
        (
            "observed_exit_entropy_bits",
            Real(summary.observed_exit_entropy),
        ),
    ]
}

/// How `summary.json` names Engine 1.
pub const PATH_SECURITY: &str = "path-security";

/// A `summary.json`: the software, `run` (how the run is named: its seed
/// or seeds), the engine, then each of `numbers` as written by `write`.
pub(crate) fn summary_json(
    run: &[(&str, String)],
    engine: &str,
    numbers: &[(&str, String)],
) -> String {
    let mut fields = vec![("software", format!("\"trine-sim {VERSION}\""))];
    fields.extend(run.iter().map(|(key, value)| (*key, value.clone())));
    fields.push(("engine", format!("\"{engine}\"")));
    let body: Vec<String> = fields
        .iter()
        .map(|(key, value)| format!("  \"{key}\": {value}"))
        .chain(
            numbers
                .iter()
                .map(|(key, value)| format!("  \"{key}\": {value}")),
        )
        .collect();
    format!("{{\n{}\n}}\n", body.join(",\n"))
}

/// Writes a table as `dir/name.csv` (`csv`: a header line, then rows of
/// numbers, booleans or empty cells) and as `dir/name.json`: `table`,
/// then `fields` (how the run is named), `columns` (the CSV header) and
/// `rows`, each row an array of the CSV's cells (an empty one as null).
pub(crate) fn save_table(
    dir: &Path,
    name: &str,
    fields: &[(&str, String)],
    csv: &str,
) -> Result<(), SimError> {
    save(dir, &format!("{name}.csv"), csv)?;
    let mut lines = csv.lines();
    let quoted: Vec<String> = lines
        .next()
        .unwrap_or_default()
        .split(',')
        .map(|column| format!("\"{column}\""))
        .collect();
    let rows: Vec<String> = lines
        .map(|line| {
            let cells: Vec<&str> = line
                .split(',')
                .map(|cell| if cell.is_empty() { "null" } else { cell })
                .collect();
            format!("    [{}]", cells.join(", "))
        })
        .collect();
    let mut json = format!("{{\n  \"table\": \"{name}\",\n");
    for (key, value) in fields {
        let _ = writeln!(json, "  \"{key}\": {value},");
    }
    let _ = write!(
        json,
        "  \"columns\": [{}],\n  \"rows\": [\n{}\n  ]\n}}\n",
        quoted.join(", "),
        rows.join(",\n")
    );
    save(dir, &format!("{name}.json"), &json)
}

/// A number as every JSON and CSV file of a run writes a real.
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
