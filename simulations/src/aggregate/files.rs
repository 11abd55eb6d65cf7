//! Writing what several seeds of one scenario give together: for each
//! table a CSV and a JSON file of the mean and 95% interval at every grid
//! point and its figure with bands, `summary.json` with every headline
//! number's mean and interval, and the resolved scenario. Written by hand
//! with fixed formats, so the same seeds give the same bytes.

use std::path::Path;

use crate::aggregate::{Estimate, Replicate, Table, across, draw, estimate};
use crate::error::SimError;
use crate::output::{Number, VERSION, num, save, save_table, summary_json};

/// Writes the aggregate of `runs` (one per seed, in seed order, at least
/// one) of `engine` into `dir`, which must exist, beside `resolved`, the
/// scenario as TOML.
pub fn write(dir: &Path, resolved: &str, engine: &str, runs: &[Replicate]) -> Result<(), SimError> {
    let seeds: Vec<String> = runs.iter().map(|run| run.seed.to_string()).collect();
    let fields = [
        ("seeds", format!("[{}]", seeds.join(", "))),
        ("interval", format!("\"{INTERVAL}\"")),
    ];
    let scenario_text = format!(
        "# Resolved scenario of trine-sim {VERSION} runs, seeds {}.\n{}",
        seeds.join(", "),
        resolved
    );
    save(dir, "scenario.toml", &scenario_text)?;
    for index in 0..runs.first().map_or(0, |run| run.tables.len()) {
        let tables: Vec<&Table<f64>> = runs.iter().map(|run| &run.tables[index]).collect();
        let table = across(&tables)?;
        let name = table.figure.name;
        save_table(dir, name, &fields, &table_csv(&table))?;
        draw(dir, &table, true)?;
    }
    let numbers = headline_estimates(runs);
    save(
        dir,
        "summary.json",
        &summary_json(&fields, engine, &numbers),
    )
}

/// How every interval is computed, as the JSON files say.
const INTERVAL: &str = "95% confidence interval of the mean over seeds, Student t, pointwise";

/// Each headline number of the runs as `{"mean", "ci95_low", "ci95_high"}`
/// (fractions' intervals cut to [0, 1]), in `summary.json` order.
fn headline_estimates(runs: &[Replicate]) -> Vec<(&'static str, String)> {
    let Some(first) = runs.first() else {
        return Vec::new();
    };
    first
        .headline
        .iter()
        .enumerate()
        .map(|(index, &(key, kind))| {
            let samples: Vec<f64> = runs
                .iter()
                .filter_map(|run| run.headline.get(index).map(|&(_, number)| number.value()))
                .collect();
            let mut estimate = estimate(&samples);
            if matches!(kind, Number::Fraction(_)) {
                estimate = estimate.of_fraction();
            }
            (key, estimate_json(estimate))
        })
        .collect()
}

fn estimate_json(estimate: Estimate) -> String {
    format!(
        "{{\"mean\": {}, \"ci95_low\": {}, \"ci95_high\": {}}}",
        num(estimate.mean),
        num(estimate.low),
        num(estimate.high)
    )
}

fn header(table: &Table<Estimate>) -> Vec<String> {
    let mut names = vec![table.x_name.to_owned()];
    for column in &table.columns {
        for part in ["mean", "ci95_low", "ci95_high"] {
            names.push(format!("{}_{part}", column.name));
        }
    }
    names
}

/// Row `point` of `table`: x, then mean, low and high of each column.
fn row(table: &Table<Estimate>, point: usize) -> Vec<String> {
    let mut cells = vec![format!("{:.4}", table.x[point])];
    for column in &table.columns {
        let estimate = column.values[point];
        cells.extend([estimate.mean, estimate.low, estimate.high].map(num));
    }
    cells
}

fn table_csv(table: &Table<Estimate>) -> String {
    let mut text = header(table).join(",");
    text.push('\n');
    for point in 0..table.x.len() {
        text.push_str(&row(table, point).join(","));
        text.push('\n');
    }
    text
}
