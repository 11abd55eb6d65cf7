//! Engine 2 across repeated seeds: each run's build times, times to first
//! byte and download times (per size class) as CDFs sampled on grids
//! shared by every seed, so that the aggregate can give each grid point's
//! mean and 95% interval, and the headline numbers it estimates. The
//! grids run geometrically from the smallest to the largest value any
//! seed saw, so they depend on every run: a run keeps its [`Samples`]
//! until all have finished.

use std::collections::{BTreeMap, BTreeSet};

use crate::aggregate::{Column, Replicate, Table};
use crate::output::Number;
use crate::plot::Figure;

use super::engine::PerfResult;
use super::output::{
    BUILD_FIGURE, DOWNLOAD_FIGURE, TTFB_FIGURE, build_times_ms, download_times, quantile, ttfb_ms,
};

/// Geometric steps of every grid (so 202 points with 0).
pub const STEPS: u32 = 200;

/// Sorted values of one measure of one run, and the number of trials
/// they are out of (the CDF ends at the share that gave a value).
#[derive(Debug, Clone, Default, PartialEq)]
struct Measured {
    sorted: Vec<f64>,
    trials: usize,
}

impl Measured {
    /// The fraction of trials with a value at or below each of `grid`.
    fn cdf_on(&self, grid: &[f64]) -> Vec<f64> {
        let trials = self.trials.max(1) as f64;
        grid.iter()
            .map(|&at| self.sorted.partition_point(|&value| value <= at) as f64 / trials)
            .collect()
    }

    fn largest(&self) -> f64 {
        self.sorted.last().copied().unwrap_or(0.0)
    }
}

/// What the aggregate needs of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Samples {
    seed: u64,
    build_ms: Measured,
    ttfb_ms: Measured,
    /// Per size class (`web`, `bulk_<bytes>`): download times, seconds.
    download_s: BTreeMap<String, Measured>,
    headline: Vec<(&'static str, Number)>,
}

impl Samples {
    /// The samples of `result`, the run with `seed`.
    pub fn of(seed: u64, result: &PerfResult) -> Self {
        let build_ms = Measured {
            sorted: build_times_ms(result),
            trials: result.circuits.len(),
        };
        let ttfb_ms = Measured {
            sorted: ttfb_ms(result),
            trials: result.downloads.len(),
        };
        let download_s: BTreeMap<String, Measured> = download_times(result)
            .into_iter()
            .map(|(class, (sorted, trials))| (class, Measured { sorted, trials }))
            .collect();
        let completed: usize = download_s.values().map(|m| m.sorted.len()).sum();
        let share = |part: usize, total: usize| {
            Number::Fraction(if total == 0 {
                0.0
            } else {
                part as f64 / total as f64
            })
        };
        let max_utilisation = result
            .relays
            .iter()
            .map(|relay| relay.utilisation)
            .fold(0.0, f64::max);
        let headline = vec![
            ("circuits_started", Number::Count(build_ms.trials as u64)),
            (
                "circuits_built_fraction",
                share(build_ms.sorted.len(), build_ms.trials),
            ),
            (
                "build_ms_median",
                Number::Real(quantile(&build_ms.sorted, 0.5)),
            ),
            (
                "build_ms_p90",
                Number::Real(quantile(&build_ms.sorted, 0.9)),
            ),
            ("downloads_started", Number::Count(ttfb_ms.trials as u64)),
            (
                "downloads_completed_fraction",
                share(completed, ttfb_ms.trials),
            ),
            (
                "ttfb_ms_median",
                Number::Real(quantile(&ttfb_ms.sorted, 0.5)),
            ),
            ("relay_utilisation_max", Number::Real(max_utilisation)),
            (
                "drops_total",
                Number::Count(result.drops.values().sum::<u64>()),
            ),
        ];
        Self {
            seed,
            build_ms,
            ttfb_ms,
            download_s,
            headline,
        }
    }
}

/// The runs' tables on shared grids, one [`Replicate`] per run in order:
/// build time, time to first byte, download time with a column per size
/// class any run saw (a class a run did not see is 0 there).
pub fn replicates(runs: &[Samples]) -> Vec<Replicate> {
    let build_grid = grid(runs.iter().map(|run| &run.build_ms));
    let ttfb_grid = grid(runs.iter().map(|run| &run.ttfb_ms));
    let download_grid = grid(runs.iter().flat_map(|run| run.download_s.values()));
    let classes: BTreeSet<&String> = runs.iter().flat_map(|run| run.download_s.keys()).collect();
    let none = Measured::default();
    runs.iter()
        .map(|run| {
            let build = one_line_table(
                BUILD_FIGURE,
                "build_ms",
                &build_grid,
                "circuits_built",
                "circuits",
                &run.build_ms,
            );
            let ttfb = one_line_table(
                TTFB_FIGURE,
                "ttfb_ms",
                &ttfb_grid,
                "first_byte",
                "downloads",
                &run.ttfb_ms,
            );
            let downloads = Table {
                figure: DOWNLOAD_FIGURE,
                x_name: "seconds",
                x: download_grid.clone(),
                columns: classes
                    .iter()
                    .map(|&class| Column {
                        name: class.clone(),
                        label: class.clone(),
                        values: run
                            .download_s
                            .get(class)
                            .unwrap_or(&none)
                            .cdf_on(&download_grid),
                    })
                    .collect(),
            };
            Replicate {
                seed: run.seed,
                headline: run.headline.clone(),
                tables: vec![build, ttfb, downloads],
            }
        })
        .collect()
}

/// A table of one CDF, `of` sampled on `grid`.
fn one_line_table(
    figure: Figure<'static>,
    x_name: &'static str,
    grid: &[f64],
    name: &str,
    label: &str,
    of: &Measured,
) -> Table<f64> {
    Table {
        figure,
        x_name,
        x: grid.to_vec(),
        columns: vec![Column {
            name: name.to_owned(),
            label: label.to_owned(),
            values: of.cdf_on(grid),
        }],
    }
}

/// 0, then [`STEPS`] geometric steps from the smallest positive to the
/// largest of `measured` (so every point is the same fraction beyond the
/// one before: fine where web pages finish in tenths of a second, coarse
/// only where 5 MiB downloads take a minute); the last point is the
/// largest value exactly. Just 0 when nothing positive was measured.
fn grid<'a>(measured: impl Iterator<Item = &'a Measured>) -> Vec<f64> {
    let (mut low, mut high) = (f64::INFINITY, 0.0f64);
    for values in measured {
        if let Some(&smallest) = values.sorted.iter().find(|&&value| value > 0.0) {
            low = low.min(smallest);
        }
        high = high.max(values.largest());
    }
    if high <= 0.0 {
        return vec![0.0];
    }
    if low >= high {
        return vec![0.0, high];
    }
    let ratio = high / low;
    let mut points: Vec<f64> = std::iter::once(0.0)
        .chain((0..STEPS).map(|step| low * ratio.powf(f64::from(step) / f64::from(STEPS))))
        .collect();
    points.push(high);
    points
}
