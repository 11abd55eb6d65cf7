//! Shared helpers of the simulator tests: small scenarios and binomial
//! confidence bounds.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    dead_code
)]

use trine_sim::Scenario;

/// A small scenario (fast in debug builds) with an adversary adding
/// `adversary_relays` relays with `budget` bandwidth, half guards, half
/// exits, each on its own /16.
pub fn small(clients: u32, hours: f64, circuits_per_hour: f64, churn: f64) -> Scenario {
    let adversary =
        "kind = \"added\"\nrelays = 6\nbandwidth = 60000\nguard_fraction = 0.5\nsubnets = 6";
    let text = small_text(clients, hours, circuits_per_hour, churn, adversary);
    match Scenario::from_toml(&text) {
        Ok(scenario) => scenario,
        Err(error) => panic!("test scenario refused: {error}"),
    }
}

/// The text of the small scenario of [`small`] (120 generated relays) with
/// `adversary` as the `[adversary]` table's body.
pub fn small_text(
    clients: u32,
    hours: f64,
    circuits_per_hour: f64,
    churn: f64,
    adversary: &str,
) -> String {
    format!(
        r#"
[time]
days = {days}
consensus_hours = 1.0
[relays]
count = 120
guard_share = 0.4
exit_share = 0.3
subnets = 80
families = 5
family_size = 3
[relays.bandwidth]
kind = "lognormal"
mu = 7.0
sigma = 1.0
[relays.churn]
join_per_day = {churn}
leave_per_day = {churn}
[clients]
count = {clients}
circuits_per_hour = {circuits_per_hour}
[adversary]
{adversary}
"#,
        days = hours / 24.0,
    )
}

/// The path of a test data file.
pub fn data(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// The text of a scenario importing its relays (`source` = "tor" or
/// "trine-json") from `path`, with `adversary` as the `[adversary]`
/// table's body and `join_per_day` joins (no leaves).
pub fn imported_text(
    source: &str,
    path: &str,
    clients: u32,
    hours: f64,
    join_per_day: f64,
    adversary: &str,
) -> String {
    format!(
        r#"
[time]
days = {days}
consensus_hours = 1.0
[relays]
source = "{source}"
path = "{path}"
[relays.churn]
join_per_day = {join_per_day}
leave_per_day = 0.0
[clients]
count = {clients}
circuits_per_hour = 4.0
[adversary]
{adversary}
"#,
        days = hours / 24.0,
    )
}

/// Asserts that `hits` successes out of `trials` agree with probability
/// `p` within five binomial standard deviations.
pub fn assert_binomial(what: &str, hits: u64, trials: u64, p: f64) {
    let n = trials as f64;
    let expected = n * p;
    let sigma = (n * p * (1.0 - p)).sqrt();
    let bound = 5.0 * sigma.max(1.0);
    let observed = hits as f64;
    assert!(
        (observed - expected).abs() <= bound,
        "{what}: {hits} of {trials}, expected {expected:.1} ± {bound:.1} (p = {p:.5})"
    );
}

/// The adversary's share of `position` weight in `network` (position
/// weights as path selection computes them), and without the relays in
/// `except`.
pub fn adversary_share(
    network: &trine_sim::Network,
    position: trine_directory::Position,
    except: &[trine_circuit::RelayId],
) -> f64 {
    let candidates = network.candidates();
    let weights = trine_directory::PositionWeights::compute(candidates);
    let (mut ours, mut total) = (0u128, 0u128);
    for relay in candidates {
        let weight = weights.weight_of(relay, position);
        total += weight;
        if network.is_adversary(&relay.id) && !except.contains(&relay.id) {
            ours += weight;
        }
    }
    ours as f64 / total as f64
}

/// The identities of the adversary's relays, in consensus order.
pub fn owned(network: &trine_sim::Network) -> Vec<trine_circuit::RelayId> {
    network
        .candidates()
        .iter()
        .map(|relay| relay.id)
        .filter(|id| network.is_adversary(id))
        .collect()
}

/// A fresh scratch directory for one test.
pub fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("trine-sim-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs the `trine-sim` binary on `scenario` twice with `seed` and asserts
/// that every output file is byte for byte the same; returns the first
/// run's `summary.json`.
pub fn binary_twice(scenario: &std::path::Path, seed: u64) -> String {
    let base = scenario.parent().unwrap();
    for out in ["a", "b"] {
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_trine-sim"))
            .arg("run")
            .arg(scenario)
            .args(["--seed", &seed.to_string(), "--out"])
            .arg(base.join(out))
            .status()
            .unwrap();
        assert!(status.success(), "trine-sim run failed: {status}");
    }
    for name in [
        "scenario.toml",
        "clients.csv",
        "first_compromise_cdf.csv",
        "compromise_by_day.csv",
        "summary.json",
    ] {
        let a = std::fs::read(base.join("a").join(name)).unwrap();
        let b = std::fs::read(base.join("b").join(name)).unwrap();
        assert_eq!(a, b, "{name} differs");
    }
    std::fs::read_to_string(base.join("a/summary.json")).unwrap()
}

/// Checks a run against the closed form of its adversary's shares: a
/// client's guard is the adversary's with `guard_share` (and stays so),
/// and a circuit through an adversary guard is compromised with
/// `exit_share`, over at least `min_circuits` such circuits. Returns the
/// clients that built circuits.
pub fn assert_compromise_matches_shares(
    result: &trine_sim::RunResult,
    guard_share: f64,
    exit_share: f64,
    min_circuits: u64,
) -> Vec<&trine_sim::engine::ClientResult> {
    let active: Vec<_> = result.clients.iter().filter(|c| c.circuits > 0).collect();
    let bad_guard: Vec<_> = active.iter().filter(|c| c.adversary_guard > 0).collect();
    for client in &bad_guard {
        assert_eq!(client.adversary_guard, client.circuits, "guard changed");
    }
    assert_binomial(
        "clients with an adversary guard",
        bad_guard.len() as u64,
        active.len() as u64,
        guard_share,
    );
    let circuits: u64 = bad_guard.iter().map(|c| c.circuits).sum();
    let compromised: u64 = bad_guard.iter().map(|c| c.compromised).sum();
    assert!(
        circuits > min_circuits,
        "too few circuits through adversary guards: {circuits}"
    );
    assert_binomial(
        "compromised circuits through adversary guards",
        compromised,
        circuits,
        exit_share,
    );
    active
}
