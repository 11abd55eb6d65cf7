//! Engine 1's curves of one run, each sampled on a grid that depends on
//! the scenario alone, so that the runs of different seeds line up point
//! by point: the CDF over clients of the time to the first compromised
//! circuit, compromise per day, and the CDF over clients of the fraction
//! of their circuits compromised.

use crate::aggregate::{Column, Table};
use crate::engine::RunResult;
use crate::plot::Figure;
use crate::scenario::Scenario;

/// Intervals of the time grid of the first-compromise CDF (so 201 points
/// from the start to the end of the run).
pub const TIME_STEPS: u32 = 200;

/// Intervals of the grid of per-client fractions (0, 0.01, …, 1).
pub const FRACTION_STEPS: u64 = 100;

const DAY: u64 = 86_400;

/// The three tables of a run, in the order they are written.
pub fn tables(scenario: &Scenario, result: &RunResult) -> Vec<Table<f64>> {
    vec![
        first_compromise(scenario, result),
        over_time(scenario, result),
        client_fraction(result),
    ]
}

/// Fraction of all clients whose first compromised circuit came at or
/// before each point of the time grid.
fn first_compromise(scenario: &Scenario, result: &RunResult) -> Table<f64> {
    let end = (scenario.time.days * DAY as f64).round();
    let mut times: Vec<f64> = result
        .clients
        .iter()
        .filter_map(|c| c.first_compromise.map(|secs| secs as f64))
        .collect();
    times.sort_by(f64::total_cmp);
    let clients = result.clients.len().max(1) as f64;
    let grid: Vec<f64> = (0..=TIME_STEPS)
        .map(|step| end * f64::from(step) / f64::from(TIME_STEPS))
        .collect();
    let values = grid
        .iter()
        .map(|&at| times.partition_point(|&t| t <= at) as f64 / clients)
        .collect();
    Table {
        figure: Figure {
            name: "first_compromise_cdf",
            title: "Time to a client's first compromised circuit",
            x_label: "hours since start",
            y_label: "fraction of clients",
        },
        x_name: "hours",
        x: grid.iter().map(|secs| secs / 3600.0).collect(),
        columns: vec![Column {
            name: "clients_compromised".to_owned(),
            label: "clients compromised by then".to_owned(),
            values,
        }],
    }
}

/// Per simulated day (x: the day's end, in days): the fraction of that
/// day's circuits compromised, and the fraction of clients compromised
/// by the day's end.
fn over_time(scenario: &Scenario, result: &RunResult) -> Table<f64> {
    let clients = result.clients.len().max(1) as f64;
    let mut days = Vec::new();
    let mut circuits = Vec::new();
    let mut ever = Vec::new();
    for (index, day) in (0u64..).zip(&result.days) {
        let end = (index + 1) * DAY;
        days.push(((index + 1) as f64).min(scenario.time.days));
        circuits.push(if day.circuits == 0 {
            0.0
        } else {
            day.compromised as f64 / day.circuits as f64
        });
        let compromised = result
            .clients
            .iter()
            .filter(|c| c.first_compromise.is_some_and(|secs| secs < end))
            .count();
        ever.push(compromised as f64 / clients);
    }
    Table {
        figure: Figure {
            name: "compromise_over_time",
            title: "Compromise over time",
            x_label: "day (end of)",
            y_label: "fraction",
        },
        x_name: "day",
        x: days,
        columns: vec![
            Column {
                name: "circuits_compromised".to_owned(),
                label: "circuits compromised that day".to_owned(),
                values: circuits,
            },
            Column {
                name: "clients_ever_compromised".to_owned(),
                label: "clients ever compromised".to_owned(),
                values: ever,
            },
        ],
    }
}

/// Fraction of all clients with at most each fraction of their circuits
/// compromised (a client without circuits counts as 0).
fn client_fraction(result: &RunResult) -> Table<f64> {
    // A client is counted from the first grid step k with
    // compromised / circuits <= k / FRACTION_STEPS, in integers.
    let mut first_step = vec![0u64; FRACTION_STEPS as usize + 1];
    for client in &result.clients {
        let step = (client.compromised * FRACTION_STEPS).div_ceil(client.circuits.max(1));
        first_step[step.min(FRACTION_STEPS) as usize] += 1;
    }
    let clients = result.clients.len().max(1) as f64;
    let mut counted = 0u64;
    let values = first_step
        .iter()
        .map(|&n| {
            counted += n;
            counted as f64 / clients
        })
        .collect();
    Table {
        figure: Figure {
            name: "client_fraction_cdf",
            title: "Fraction of a client's circuits compromised",
            x_label: "fraction of the client's circuits compromised",
            y_label: "fraction of clients",
        },
        x_name: "fraction_compromised",
        x: (0..=FRACTION_STEPS)
            .map(|step| step as f64 / FRACTION_STEPS as f64)
            .collect(),
        columns: vec![Column {
            name: "clients".to_owned(),
            label: "clients with at most this fraction".to_owned(),
            values,
        }],
    }
}
