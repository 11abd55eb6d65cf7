//! Client behaviour and parallelism: arrivals and departures change how
//! many circuits clients build as the Poisson model says (checked with
//! confidence bounds), guard settings reach the shipped guard state, bad
//! client settings are refused by name, and the result does not depend on
//! the number of threads.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use trine_sim::{Scenario, SimError, run};

const ADVERSARY: &str =
    "kind = \"added\"\nrelays = 6\nbandwidth = 60000\nguard_fraction = 0.5\nsubnets = 6";

fn scenario(clients_extra: &str) -> Scenario {
    let text = common::small_text(400, 48.0, 2.0, 0.0, ADVERSARY).replacen(
        "[adversary]",
        &format!("{clients_extra}\n[adversary]"),
        1,
    );
    Scenario::from_toml(&text).unwrap_or_else(|error| panic!("{error}"))
}

fn total_circuits(scenario: &Scenario, seed: u64) -> u64 {
    let result = run(scenario, seed).unwrap();
    result.clients.iter().map(|c| c.circuits).sum()
}

/// Circuits are Poisson: the total is within 5 standard deviations of its
/// mean `expected` (variance = mean, plus the spread of presence times).
fn assert_near(label: &str, got: u64, expected: f64) {
    let bound = 5.0 * expected.sqrt() * 2.0;
    assert!(
        (got as f64 - expected).abs() <= bound,
        "{label}: {got} circuits, expected {expected:.0} ± {bound:.0}"
    );
}

#[test]
fn clients_present_all_along_build_rate_times_span() {
    // 400 clients × 2 per hour × 48 hours.
    assert_near("always present", total_circuits(&scenario(""), 1), 38_400.0);
}

#[test]
fn arrivals_spread_over_the_span_halve_the_circuits() {
    // Arrival uniform over the two days: on average present half the span.
    let spread = scenario("arrive_over_days = 2.0");
    assert_near("arriving", total_circuits(&spread, 2), 19_200.0);
}

#[test]
fn departures_cut_the_presence_as_an_exponential_stay_says() {
    // Mean stay 1 day, span 2 days: expected presence is
    // 1 − e^(−2) days per client.
    let staying = scenario("mean_stay_days = 1.0");
    let expected = 400.0 * 2.0 * 24.0 * (1.0 - (-2.0f64).exp());
    assert_near("departing", total_circuits(&staying, 3), expected);
}

#[test]
fn guard_settings_reach_the_clients() {
    // One primary guard and a sample of one: every circuit of a client
    // goes through the same guard (no churn, no failures).
    let one = scenario(
        "[clients.guards]\nsample_size = 1\nmax_sampled = 1\nprimary_count = 1\n\
         min_lifetime_days = 60.0\nmax_lifetime_days = 60.0",
    );
    let result = run(&one, 4).unwrap();
    let guards_used = result.guard_counts.len();
    assert!(guards_used > 1, "clients should not all share one guard");
    for client in &result.clients {
        assert!(client.adversary_guard == 0 || client.adversary_guard == client.circuits);
    }
}

#[test]
fn bad_client_settings_are_refused_by_name() {
    let cases = [
        ("arrive_over_days = 3.0", "clients.arrive_over_days"),
        ("arrive_over_days = -1.0", "clients.arrive_over_days"),
        ("mean_stay_days = 0.0", "clients.mean_stay_days"),
        (
            "[clients.guards]\nsample_size = 2\nprimary_count = 3",
            "clients.guards.primary_count",
        ),
        (
            "[clients.guards]\nsample_size = 30\nmax_sampled = 20",
            "clients.guards.max_sampled",
        ),
        (
            "[clients.guards]\nmin_lifetime_days = 9.0\nmax_lifetime_days = 3.0",
            "clients.guards.max_lifetime_days",
        ),
    ];
    for (extra, field) in cases {
        let text = common::small_text(10, 24.0, 1.0, 0.0, ADVERSARY).replacen(
            "[adversary]",
            &format!("{extra}\n[adversary]"),
            1,
        );
        match Scenario::from_toml(&text) {
            Err(SimError::Invalid { field: named, .. }) => assert_eq!(named, field),
            other => panic!("{extra}: expected {field} refused, got {other:?}"),
        }
    }
}

#[test]
fn results_do_not_depend_on_the_number_of_threads() {
    let scenario = scenario("arrive_over_days = 1.0\nmean_stay_days = 3.0");
    let on = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| run(&scenario, 5).unwrap())
    };
    assert_eq!(on(1), on(3));
}
