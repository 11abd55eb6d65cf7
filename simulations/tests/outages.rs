//! Engine 1 with unreachable relays (`relays.churn.down_share`): a down
//! middle or exit costs an attempt at its share of the weight, a down
//! guard is marked failed so the client moves on to its next guard (and
//! does not give the circuit up), and without outages nothing changes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use trine_sim::Scenario;
use trine_sim::engine::{BUILD_ATTEMPTS, RunResult};

/// The small scenario without adversary, each honest relay down with
/// probability `down_share` in each hourly consensus period.
fn run(hours: f64, down_share: f64, seed: u64) -> RunResult {
    let text = common::small_text(100, hours, 6.0, 0.0, "kind = \"chosen\"\nrelays = []").replace(
        "leave_per_day = 0\n",
        &format!("leave_per_day = 0\ndown_share = {down_share}\n"),
    );
    assert!(text.contains("down_share"), "scenario not edited");
    let scenario = Scenario::from_toml(&text).unwrap_or_else(|error| panic!("{error}"));
    trine_sim::run(&scenario, seed).unwrap_or_else(|error| panic!("{error}"))
}

fn total(result: &RunResult, field: fn(&trine_sim::engine::ClientResult) -> u64) -> u64 {
    result.clients.iter().map(field).sum()
}

/// An attempt whose guard answered fails when its middle or its exit is
/// down: each is an independent relay down with probability q, drawn by
/// weight, so the share is 1 − (1 − q)², whatever the weights. The down
/// set is drawn once per period, so on top of the binomial spread each
/// period's weighted down share varies (about 0.08 for the ~40 exits of
/// this network); over 240 periods that is 0.006, so 0.03 is five
/// standard deviations.
#[test]
fn down_middles_and_exits_cost_attempts_at_their_share() {
    let q = 0.1;
    let result = run(240.0, q, 3);
    let circuits = total(&result, |c| c.circuits);
    let middle_or_exit = total(&result, |c| c.unreachable_attempts)
        - total(&result, |c| c.guard_unreachable_attempts);
    let answered = circuits + middle_or_exit;
    let share = middle_or_exit as f64 / answered as f64;
    let expected = 1.0 - (1.0 - q) * (1.0 - q);
    assert!(
        (share - expected).abs() < 0.03,
        "{middle_or_exit} of {answered} attempts failed past the guard: {share}, expected {expected}"
    );
}

/// A down guard is marked failed, so the next attempt goes through the
/// next guard: circuits are almost never given up. If the client kept its
/// down guard, every circuit begun while it is down (about q of them)
/// would fail all its attempts; with the fallback, giving up needs
/// BUILD_ATTEMPTS failures in a row (about 0.27^5 = 0.0014).
#[test]
fn a_down_guard_is_marked_and_the_next_guard_used() {
    let q = 0.1;
    let result = run(120.0, q, 5);
    let circuits = total(&result, |c| c.circuits);
    let guard_down = total(&result, |c| c.guard_unreachable_attempts);
    let abandoned = total(&result, |c| c.abandoned);
    assert_eq!(BUILD_ATTEMPTS, 5);
    assert!(
        guard_down as f64 > 0.02 * circuits as f64,
        "guards were down for {guard_down} of {circuits} circuits"
    );
    assert!(
        (abandoned as f64) < 0.01 * circuits as f64,
        "{abandoned} circuits given up of {circuits}"
    );
    assert_eq!(total(&result, |c| c.failures), 0);
}

/// Without outages no attempt fails, and the run is the one a scenario
/// without the key gives.
#[test]
fn no_outages_no_failed_attempts() {
    let result = run(24.0, 0.0, 7);
    assert_eq!(total(&result, |c| c.unreachable_attempts), 0);
    assert_eq!(total(&result, |c| c.abandoned), 0);
    let plain = common::small_text(100, 24.0, 6.0, 0.0, "kind = \"chosen\"\nrelays = []");
    let plain = Scenario::from_toml(&plain).unwrap();
    assert_eq!(trine_sim::run(&plain, 7).unwrap(), result);
}

#[test]
fn a_share_of_one_or_more_is_refused_naming_the_field() {
    for bad in ["1.0", "1.5", "-0.1"] {
        let text = common::small_text(10, 24.0, 6.0, 0.0, "kind = \"chosen\"\nrelays = []")
            .replace(
                "leave_per_day = 0\n",
                &format!("leave_per_day = 0\ndown_share = {bad}\n"),
            );
        let error = Scenario::from_toml(&text).unwrap_err().to_string();
        assert!(error.contains("relays.churn.down_share"), "{bad}: {error}");
    }
}
