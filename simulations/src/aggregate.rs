//! Results across repeated seeds: each value's mean over the seeds and a
//! 95% confidence interval of that mean (Student's t with one less degree
//! of freedom than seeds), pointwise along curves sampled on fixed grids.
//! The seeds are independent replications of one scenario, so the values
//! of one grid point are independent draws of one distribution; each is
//! itself an average over many clients or circuits, so its distribution is
//! close to normal and the t-interval fits. The bands are pointwise, not
//! simultaneous, and nothing guarantees the bounds are monotone where the
//! mean is.

pub mod curves;
pub mod files;

use std::path::Path;

use crate::error::SimError;
use crate::output::Number;
use crate::plot::{self, Figure, Series};

/// A mean over seeds and its 95% confidence interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// Mean over the seeds.
    pub mean: f64,
    /// Lower end of the 95% confidence interval of the mean.
    pub low: f64,
    /// Upper end of the 95% confidence interval of the mean.
    pub high: f64,
}

/// Two-sided 95% quantiles of Student's t, `t(0.975, df)` for df 1 to 30.
const T_975: [f64; 30] = [
    12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281, 2.2010,
    2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860, 2.0796, 2.0739, 2.0687,
    2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
];

/// The 0.975 quantile of the standard normal distribution.
const Z_975: f64 = 1.959_964;

/// `t(0.975, df)`: from the table up to 30 degrees of freedom, beyond by
/// the Cornish-Fisher expansion around the normal quantile (within 1e-4
/// there).
pub fn t_975(df: usize) -> f64 {
    if let Some(&t) = df.checked_sub(1).and_then(|index| T_975.get(index)) {
        return t;
    }
    let (z, v) = (Z_975, df.max(1) as f64);
    z + (z.powi(3) + z) / (4.0 * v)
        + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * v * v)
        + (3.0 * z.powi(7) + 19.0 * z.powi(5) + 17.0 * z.powi(3) - 15.0 * z) / (384.0 * v.powi(3))
}

/// The mean of `samples` (one per seed) with its 95% t-interval; with a
/// single sample the interval is that sample. No samples give zeros.
pub fn estimate(samples: &[f64]) -> Estimate {
    let n = samples.len();
    if n == 0 {
        return Estimate {
            mean: 0.0,
            low: 0.0,
            high: 0.0,
        };
    }
    let mean = samples.iter().sum::<f64>() / n as f64;
    if n == 1 {
        return Estimate {
            mean,
            low: mean,
            high: mean,
        };
    }
    let variance = samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let half = t_975(n - 1) * (variance / n as f64).sqrt();
    Estimate {
        mean,
        low: mean - half,
        high: mean + half,
    }
}

impl Estimate {
    /// The estimate with its interval cut to `[0, 1]`, for fractions (the
    /// mean of fractions is already inside).
    pub fn of_fraction(self) -> Self {
        Self {
            low: self.low.max(0.0),
            high: self.high.min(1.0),
            ..self
        }
    }
}

/// One named column of fractions along a table's x grid.
#[derive(Debug, Clone, PartialEq)]
pub struct Column<V> {
    /// Name in CSV and JSON headers.
    pub name: String,
    /// Name in a figure's legend.
    pub label: String,
    /// One value per grid point.
    pub values: Vec<V>,
}

/// Curves of fractions sampled on one x grid, and how to draw them. A
/// run gives `Table<f64>`; [`across`] turns the tables of several seeds
/// into one `Table<Estimate>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Table<V> {
    /// The figure (its name is also the stem of the table's files).
    pub figure: Figure<'static>,
    /// Name of the x column.
    pub x_name: &'static str,
    /// The grid, the same for every seed of a scenario.
    pub x: Vec<f64>,
    /// The curves.
    pub columns: Vec<Column<V>>,
}

/// What one seed's run gives the aggregate across seeds, whichever engine
/// ran it.
#[derive(Debug, Clone, PartialEq)]
pub struct Replicate {
    /// The seed.
    pub seed: u64,
    /// Every number of its `summary.json` the aggregate estimates, in the
    /// order the aggregate's `summary.json` lists them.
    pub headline: Vec<(&'static str, Number)>,
    /// Its curves, on grids shared by every seed of the scenario.
    pub tables: Vec<Table<f64>>,
}

/// Every grid point of every column of `runs` (the same table from each
/// seed) as an [`Estimate`] of a fraction; an error if the tables do not
/// line up (other grids or columns) or there are none.
pub fn across(runs: &[&Table<f64>]) -> Result<Table<Estimate>, SimError> {
    let first = runs
        .first()
        .ok_or(SimError::Unaligned { table: "(none)" })?;
    let lined_up = runs.iter().all(|run| {
        run.x == first.x
            && run.columns.len() == first.columns.len()
            && run.columns.iter().zip(&first.columns).all(|(a, b)| {
                a.name == b.name
                    && a.values.len() == first.x.len()
                    && b.values.len() == first.x.len()
            })
    });
    if !lined_up {
        return Err(SimError::Unaligned {
            table: first.figure.name,
        });
    }
    let columns = first
        .columns
        .iter()
        .enumerate()
        .map(|(index, column)| Column {
            name: column.name.clone(),
            label: column.label.clone(),
            values: (0..first.x.len())
                .map(|point| {
                    let samples: Vec<f64> = runs
                        .iter()
                        .map(|run| run.columns[index].values[point])
                        .collect();
                    estimate(&samples).of_fraction()
                })
                .collect(),
        })
        .collect();
    Ok(Table {
        figure: first.figure,
        x_name: first.x_name,
        x: first.x.clone(),
        columns,
    })
}

/// Draws `table` as SVG and PNG in `dir`, each column a line at its mean,
/// shaded between the interval's ends when `bands` is set.
pub fn draw(dir: &Path, table: &Table<Estimate>, bands: bool) -> Result<(), SimError> {
    let series: Vec<Series> = table
        .columns
        .iter()
        .map(|column| Series {
            label: column.label.clone(),
            points: table
                .x
                .iter()
                .zip(&column.values)
                .map(|(&x, estimate)| (x, estimate.mean))
                .collect(),
            band: bands.then(|| column.values.iter().map(|e| (e.low, e.high)).collect()),
        })
        .collect();
    plot::fractions(dir, &table.figure, &series)
}
