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
    let text = format!(
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
kind = "added"
relays = 6
bandwidth = 60000
guard_fraction = 0.5
subnets = 6
"#,
        days = hours / 24.0,
    );
    match Scenario::from_toml(&text) {
        Ok(scenario) => scenario,
        Err(error) => panic!("test scenario refused: {error}"),
    }
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
