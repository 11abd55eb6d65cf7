//! Writing an Engine 2 run's results: per-circuit, per-download, per-flow
//! and per-relay CSV tables, CDFs, drops by cause, and `summary.json`
//! (written by hand in a fixed order and number format, so equal runs give
//! equal bytes), beside the resolved scenario.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::error::SimError;
use crate::output::{VERSION, io, num, save};
use crate::plot::{self, Figure, Series};

use super::engine::{DownloadRecord, PerfResult};
use super::scenario::PerfScenario;
use super::traffic::Model;

/// How `summary.json` names Engine 2.
pub const PERFORMANCE: &str = "performance";

/// Headline numbers of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct PerfSummary {
    /// Circuit builds started.
    pub circuits: usize,
    /// Of which ready.
    pub built: usize,
    /// Median build time, ms (0 with none built).
    pub build_median_ms: f64,
    /// Downloads started.
    pub downloads: usize,
    /// Of which complete.
    pub completed: usize,
    /// Packets and cells dropped, all causes.
    pub drops: u64,
    /// Highest relay utilisation.
    pub max_utilisation: f64,
}

impl PerfSummary {
    /// The headline numbers of `result`.
    pub fn of(result: &PerfResult) -> Self {
        let builds = build_times_ms(result);
        Self {
            circuits: result.circuits.len(),
            built: builds.len(),
            build_median_ms: quantile(&builds, 0.5),
            downloads: result.downloads.len(),
            completed: result
                .downloads
                .iter()
                .filter(|d| d.finished.is_some())
                .count(),
            drops: result.drops.values().sum(),
            max_utilisation: result
                .relays
                .iter()
                .map(|relay| relay.utilisation)
                .fold(0.0, f64::max),
        }
    }
}

/// Writes every output file of a run into `dir` (created if missing).
pub fn write(
    dir: &Path,
    scenario: &PerfScenario,
    seed: u64,
    result: &PerfResult,
) -> Result<PerfSummary, SimError> {
    std::fs::create_dir_all(dir).map_err(|source| io(dir, source))?;
    let summary = PerfSummary::of(result);
    let scenario_text = format!(
        "# Resolved scenario of a trine-sim {VERSION} run, seed {seed}.\n{}",
        scenario.to_toml()?
    );
    save(dir, "scenario.toml", &scenario_text)?;
    save(dir, "circuits.csv", &circuits_csv(result))?;
    save(
        dir,
        "build_time_cdf.csv",
        &cdf_csv("build_ms", &build_times_ms(result), result.circuits.len()),
    )?;
    save(dir, "downloads.csv", &downloads_csv(result))?;
    save(dir, "ttfb_cdf.csv", &ttfb_csv(result))?;
    save(dir, "download_time_cdf.csv", &download_cdf_csv(result))?;
    save(dir, "flows.csv", &flows_csv(result))?;
    save(dir, "relays.csv", &relays_csv(result))?;
    save(dir, "drops.csv", &drops_csv(result))?;
    save(dir, "summary.json", &summary_json(seed, result, &summary))?;
    figures(dir, result)?;
    Ok(summary)
}

/// The figure of the build-time CDF (over all builds started).
pub(super) const BUILD_FIGURE: Figure<'static> = Figure {
    name: "build_time_cdf",
    title: "Circuit build time",
    x_label: "milliseconds",
    y_label: "fraction of builds started",
};

/// The figure of the time-to-first-byte CDF (over all downloads started).
pub(super) const TTFB_FIGURE: Figure<'static> = Figure {
    name: "ttfb_cdf",
    title: "Time to first byte",
    x_label: "milliseconds",
    y_label: "fraction of downloads started",
};

/// The figure of the download-time CDFs, one line per size class.
pub(super) const DOWNLOAD_FIGURE: Figure<'static> = Figure {
    name: "download_time_cdf",
    title: "Download time by size class",
    x_label: "seconds",
    y_label: "fraction of downloads started",
};

/// The CDFs as figures (`.svg` and `.png`): build times, time to first
/// byte, and download times per class.
fn figures(dir: &Path, result: &PerfResult) -> Result<(), SimError> {
    let line = |label: &str, sorted: &[f64], total: usize| Series {
        label: label.to_owned(),
        points: cdf_points(sorted, total),
        band: None,
    };
    let build = line("circuits", &build_times_ms(result), result.circuits.len());
    plot::fractions(dir, &BUILD_FIGURE, &[build])?;
    let ttfb = line("downloads", &ttfb_ms(result), result.downloads.len());
    plot::fractions(dir, &TTFB_FIGURE, &[ttfb])?;
    let downloads: Vec<Series> = download_times(result)
        .iter()
        .map(|(class, (times, started))| line(class, times, *started))
        .collect();
    plot::fractions(dir, &DOWNLOAD_FIGURE, &downloads)
}

fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

fn millis(ns: u64) -> f64 {
    ns as f64 / 1e6
}

pub(super) fn build_times_ms(result: &PerfResult) -> Vec<f64> {
    let mut times: Vec<f64> = result
        .circuits
        .iter()
        .filter_map(|c| c.ready.map(|ready| millis(ready - c.started)))
        .collect();
    times.sort_by(f64::total_cmp);
    times
}

/// The `q` quantile of sorted `values` (nearest rank); 0 when empty.
pub(super) fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// The CDF of sorted `values` over `total` trials (so it ends at the
/// share that produced a value): `(value, fraction)` per value.
fn cdf_points(sorted: &[f64], total: usize) -> Vec<(f64, f64)> {
    let total = total.max(1) as f64;
    sorted
        .iter()
        .enumerate()
        .map(|(rank, &value)| (value, (rank + 1) as f64 / total))
        .collect()
}

/// [`cdf_points`] as CSV.
fn cdf_csv(label: &str, sorted: &[f64], total: usize) -> String {
    let mut text = format!("{label},fraction\n");
    for (value, fraction) in cdf_points(sorted, total) {
        let _ = writeln!(text, "{value:.3},{fraction:.6}");
    }
    text
}

fn circuits_csv(result: &PerfResult) -> String {
    let mut text = String::from("circuit,client,start_s,build_ms,failure\n");
    for (index, circuit) in result.circuits.iter().enumerate() {
        let build = circuit
            .ready
            .map(|ready| format!("{:.3}", millis(ready - circuit.started)))
            .unwrap_or_default();
        let _ = writeln!(
            text,
            "{index},{},{:.6},{build},{}",
            circuit.client,
            seconds(circuit.started),
            circuit.failure.as_deref().unwrap_or("")
        );
    }
    text
}

/// The class a download is reported under: `web`, or `bulk_<size>`.
fn class(download: &DownloadRecord) -> String {
    match download.model {
        Model::Bulk => format!("bulk_{}", download.size),
        model => model.name().to_owned(),
    }
}

fn downloads_csv(result: &PerfResult) -> String {
    let mut text = String::from(
        "download,client,class,size_bytes,start_s,ttfb_ms,time_s,bytes_received,retransmissions\n",
    );
    for (index, d) in result.downloads.iter().enumerate() {
        let ttfb = d
            .first_byte
            .map(|at| format!("{:.3}", millis(at - d.started)))
            .unwrap_or_default();
        let time = d
            .finished
            .map(|at| format!("{:.6}", seconds(at - d.started)))
            .unwrap_or_default();
        let _ = writeln!(
            text,
            "{index},{},{},{},{:.6},{ttfb},{time},{},{}",
            d.client,
            class(d),
            d.size,
            seconds(d.started),
            d.bytes,
            d.retransmissions
        );
    }
    text
}

/// Times to first byte, sorted, in milliseconds.
pub(super) fn ttfb_ms(result: &PerfResult) -> Vec<f64> {
    let mut times: Vec<f64> = result
        .downloads
        .iter()
        .filter_map(|d| d.first_byte.map(|at| millis(at - d.started)))
        .collect();
    times.sort_by(f64::total_cmp);
    times
}

fn ttfb_csv(result: &PerfResult) -> String {
    cdf_csv("ttfb_ms", &ttfb_ms(result), result.downloads.len())
}

/// Download times per class, sorted.
pub(super) fn download_times(result: &PerfResult) -> BTreeMap<String, (Vec<f64>, usize)> {
    let mut classes: BTreeMap<String, (Vec<f64>, usize)> = BTreeMap::new();
    for d in &result.downloads {
        let entry = classes.entry(class(d)).or_default();
        entry.1 += 1;
        if let Some(at) = d.finished {
            entry.0.push(seconds(at - d.started));
        }
    }
    for (times, _) in classes.values_mut() {
        times.sort_by(f64::total_cmp);
    }
    classes
}

fn download_cdf_csv(result: &PerfResult) -> String {
    let mut text = String::from("class,seconds,fraction\n");
    for (name, (times, started)) in download_times(result) {
        for (time, fraction) in cdf_points(&times, started) {
            let _ = writeln!(text, "{name},{time:.6},{fraction:.6}");
        }
    }
    text
}

fn flows_csv(result: &PerfResult) -> String {
    let mut text = String::from("client,sent,received,loss_fraction,mean_delay_ms\n");
    for (client, flow) in &result.flows {
        let loss = if flow.sent == 0 {
            0.0
        } else {
            1.0 - flow.received as f64 / flow.sent as f64
        };
        let delay = if flow.received == 0 {
            0.0
        } else {
            millis(flow.delay_sum) / flow.received as f64
        };
        let _ = writeln!(
            text,
            "{client},{},{},{loss:.6},{delay:.3}",
            flow.sent, flow.received
        );
    }
    text
}

fn relays_csv(result: &PerfResult) -> String {
    let mut text = String::from(
        "relay,fingerprint,guard,exit,rate_bytes_per_s,sent_bytes,received_bytes,utilisation,circuits,cells,table_drops\n",
    );
    for (index, relay) in result.relays.iter().enumerate() {
        let _ = writeln!(
            text,
            "{index},{},{},{},{},{},{},{:.6},{},{},{}",
            relay.fingerprint,
            relay.guard,
            relay.exit,
            relay.rate,
            relay.sent,
            relay.received,
            relay.utilisation,
            relay.circuits,
            relay.cells,
            relay.table_drops
        );
    }
    text
}

fn drops_csv(result: &PerfResult) -> String {
    let mut text = String::from("cause,count\n");
    for (cause, count) in &result.drops {
        let _ = writeln!(text, "{cause},{count}");
    }
    text
}

fn summary_json(seed: u64, result: &PerfResult, summary: &PerfSummary) -> String {
    let builds = build_times_ms(result);
    let mut ttfb: Vec<f64> = result
        .downloads
        .iter()
        .filter_map(|d| d.first_byte.map(|at| millis(at - d.started)))
        .collect();
    ttfb.sort_by(f64::total_cmp);
    let failures = result
        .circuits
        .iter()
        .filter(|c| c.failure.is_some())
        .count();
    let utilisations: Vec<f64> = result.relays.iter().map(|r| r.utilisation).collect();
    let mean_utilisation = if utilisations.is_empty() {
        0.0
    } else {
        utilisations.iter().sum::<f64>() / utilisations.len() as f64
    };
    let object = |pairs: Vec<(String, String)>| {
        let body: Vec<String> = pairs
            .iter()
            .map(|(key, value)| format!("\"{key}\": {value}"))
            .collect();
        format!("{{{}}}", body.join(", "))
    };
    let models = object(
        result
            .models
            .iter()
            .map(|(name, count)| ((*name).to_owned(), count.to_string()))
            .collect(),
    );
    let downloads = object(
        download_times(result)
            .into_iter()
            .map(|(name, (times, started))| {
                let value = format!(
                    "{{\"started\": {started}, \"completed\": {}, \"median_s\": {}, \"p90_s\": {}}}",
                    times.len(),
                    num(quantile(&times, 0.5)),
                    num(quantile(&times, 0.9))
                );
                (name, value)
            })
            .collect(),
    );
    let drops = object(
        result
            .drops
            .iter()
            .map(|(cause, count)| (cause.clone(), count.to_string()))
            .collect(),
    );
    let fields = [
        ("software", format!("\"trine-sim {VERSION}\"")),
        ("seed", seed.to_string()),
        ("engine", format!("\"{PERFORMANCE}\"")),
        ("simulated_seconds", num(seconds(result.duration))),
        ("relays", result.relays.len().to_string()),
        ("clients_by_model", models),
        ("events", result.events.to_string()),
        ("peak_events_queued", result.peak_queue.to_string()),
        ("circuits_started", summary.circuits.to_string()),
        ("circuits_built", summary.built.to_string()),
        ("circuit_failures", failures.to_string()),
        ("path_failures", result.path_failures.to_string()),
        ("build_ms_median", num(summary.build_median_ms)),
        ("build_ms_p90", num(quantile(&builds, 0.9))),
        ("downloads_started", summary.downloads.to_string()),
        ("downloads_completed", summary.completed.to_string()),
        ("ttfb_ms_median", num(quantile(&ttfb, 0.5))),
        ("downloads", downloads),
        ("relay_utilisation_mean", num(mean_utilisation)),
        ("relay_utilisation_max", num(summary.max_utilisation)),
        ("drops_total", summary.drops.to_string()),
        ("drops", drops),
    ];
    let body: Vec<String> = fields
        .iter()
        .map(|(key, value)| format!("  \"{key}\": {value}"))
        .collect();
    format!("{{\n{}\n}}\n", body.join(",\n"))
}
