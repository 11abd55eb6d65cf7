//! `trine-sim`: command-line front end of the research simulator. Runs one
//! or several seeds, writes each run's files and, for several seeds, their
//! aggregate; shows a progress bar on stderr when it is a terminal.

use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use trine_sim::aggregate::Replicate;
use trine_sim::output::{PATH_SECURITY, SeedRun, Summary};
use trine_sim::perf::aggregate::Samples;
use trine_sim::perf::output::{PERFORMANCE, PerfSummary};
use trine_sim::perf::{self, PERF_EXAMPLE, PerfScenario};
use trine_sim::{EXAMPLE, Progress, Scenario, aggregate, output, plot};

/// Trine's research simulator (Engine 1: path security; Engine 2: network
/// performance, for scenarios with `engine = "performance"`).
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a commented example scenario.
    Example {
        /// The performance (Engine 2) example instead of path security.
        #[arg(long)]
        performance: bool,
    },
    /// Run a scenario and write its results and figures.
    Run {
        /// The scenario (TOML).
        scenario: PathBuf,
        /// Seed of every random draw (of the first run, with --seeds).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Runs with seeds SEED, SEED+1, … (1 to 1000 of them): each into
        /// OUT/seed-N/ when more than one, with their means and 95%
        /// intervals in OUT.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1000))]
        seeds: u64,
        /// Output directory.
        #[arg(long, default_value = "sim-out")]
        out: PathBuf,
        /// TrueType font for the figures' text [default: $TRINE_SIM_FONT,
        /// else DejaVu Sans from fonts-dejavu-core].
        #[arg(long)]
        font: Option<PathBuf>,
    },
}

/// The runs' progress, one per seed, and whether all are done: what the
/// progress bar reads.
struct Shown {
    /// The engine's progress in each seed.
    seeds: Vec<Progress>,
    /// Seeds whose files are written.
    written: AtomicUsize,
    /// Set when every seed has run (or one failed).
    finished: AtomicBool,
}

impl Shown {
    /// Work done over all seeds, in [0, 1], and the seeds written.
    fn overall(&self) -> (f64, usize) {
        let fractions: f64 = self.seeds.iter().map(Progress::fraction).sum();
        let written = self.written.load(Ordering::Relaxed);
        (fractions / self.seeds.len().max(1) as f64, written)
    }
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Example { performance: false } => print!("{EXAMPLE}"),
        Command::Example { performance: true } => print!("{PERF_EXAMPLE}"),
        Command::Run {
            scenario,
            seed,
            seeds,
            out,
            font,
        } => {
            let text = std::fs::read_to_string(&scenario)
                .with_context(|| format!("reading {}", scenario.display()))?;
            let last = seed
                .checked_add(seeds - 1)
                .context("--seed plus --seeds runs past the largest seed (2^64 - 1)")?;
            let seeds: Vec<u64> = (seed..=last).collect();
            let font = font
                .or_else(|| std::env::var_os(plot::FONT_ENV).map(PathBuf::from))
                .unwrap_or_else(|| PathBuf::from(plot::DEFAULT_FONT));
            plot::use_font(&font)?;
            if perf::declares_engine(&text) {
                run_performance(&scenario, &seeds, &out)?;
            } else {
                run_path_security(&scenario, &seeds, &out)?;
            }
        }
    }
    Ok(())
}

/// Where the run of `seed` writes its files: `out` itself for a single
/// seed, else `out/seed-N`.
fn seed_dir(out: &Path, seeds: &[u64], seed: u64) -> PathBuf {
    if seeds.len() > 1 {
        out.join(format!("seed-{seed}"))
    } else {
        out.to_owned()
    }
}

/// How a summary line says its numbers are means over `seeds` seeds.
fn means_over(seeds: usize) -> String {
    if seeds > 1 {
        format!(" (means over {seeds} seeds)")
    } else {
        String::new()
    }
}

/// Runs an Engine 1 (path security) scenario for every seed, and the
/// aggregate of several.
fn run_path_security(scenario: &Path, seeds: &[u64], out: &Path) -> anyhow::Result<()> {
    let parsed =
        Scenario::from_file(scenario).with_context(|| format!("in {}", scenario.display()))?;
    let started = Instant::now();
    let runs = run_seeds(seeds, |seed, progress| {
        let result = trine_sim::run_with_progress(&parsed, seed, progress)?;
        Ok(output::write(
            &seed_dir(out, seeds, seed),
            &parsed,
            seed,
            &result,
        )?)
    })?;
    if runs.len() > 1 {
        let replicates: Vec<Replicate> = runs.iter().map(|run| run.replicate.clone()).collect();
        aggregate::files::write(out, &parsed.to_toml()?, PATH_SECURITY, &replicates)?;
    }
    report(&runs, started, out);
    Ok(())
}

/// Runs every seed of `seeds` with `run_one`, as many at once as there are
/// cores, drawing a progress bar on stderr when it is a terminal; the
/// results come back in seed order, or the first error.
fn run_seeds<T: Send>(
    seeds: &[u64],
    run_one: impl Fn(u64, &Progress) -> anyhow::Result<T> + Sync,
) -> anyhow::Result<Vec<T>> {
    let shown = Shown {
        seeds: seeds.iter().map(|_| Progress::new()).collect(),
        written: AtomicUsize::new(0),
        finished: AtomicBool::new(false),
    };
    let started = Instant::now();
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let workers = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(seeds.len());
    let mut done: Vec<(usize, anyhow::Result<T>)> = std::thread::scope(|scope| {
        if std::io::stderr().is_terminal() {
            scope.spawn(|| draw_progress(&shown, started));
        }
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    // After a failure no new seed starts: its error ends the command.
                    while !failed.load(Ordering::Relaxed) {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&seed) = seeds.get(index) else {
                            break;
                        };
                        let run = run_one(seed, &shown.seeds[index]);
                        shown.written.fetch_add(1, Ordering::Relaxed);
                        failed.fetch_or(run.is_err(), Ordering::Relaxed);
                        mine.push((index, run));
                    }
                    mine
                })
            })
            .collect();
        let done = handles
            .into_iter()
            .flat_map(|handle| {
                handle.join().unwrap_or_else(|_| {
                    vec![(0, Err(anyhow::anyhow!("a simulation thread panicked")))]
                })
            })
            .collect();
        shown.finished.store(true, Ordering::Relaxed);
        done
    });
    done.sort_by_key(|(index, _)| *index);
    done.into_iter().map(|(_, run)| run).collect()
}

/// Redraws a one-line bar on stderr every 100 ms until the runs are done,
/// then clears it.
fn draw_progress(shown: &Shown, started: Instant) {
    const WIDTH: usize = 30;
    let mut stderr = std::io::stderr();
    while !shown.finished.load(Ordering::Relaxed) {
        let (overall, done) = shown.overall();
        let filled = ((overall * WIDTH as f64) as usize).min(WIDTH);
        let _ = write!(
            stderr,
            "\r[{}{}] {:3.0}%  seeds written {done}/{}  elapsed {} s ",
            "#".repeat(filled),
            ".".repeat(WIDTH - filled),
            overall * 100.0,
            shown.seeds.len(),
            started.elapsed().as_secs()
        );
        let _ = stderr.flush();
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = write!(stderr, "\r\x1b[2K");
    let _ = stderr.flush();
}

/// The one-line summary on stderr: the run's numbers, or their means over
/// the seeds.
fn report(runs: &[SeedRun], started: Instant, out: &Path) {
    let mean = |field: fn(&Summary) -> f64| {
        runs.iter().map(|run| field(&run.summary)).sum::<f64>() / runs.len().max(1) as f64
    };
    let circuits: u64 = runs.iter().map(|run| run.summary.circuits).sum();
    let over = means_over(runs.len());
    eprintln!(
        "{circuits} circuits; compromised {:.4}; clients ever compromised {:.4}; guard exposure {:.4} (primary {:.4}){over}; \
         {:.1} s; results in {}",
        mean(|s| s.compromised_fraction),
        mean(|s| s.clients_compromised),
        mean(|s| s.guard_exposure),
        mean(|s| s.primary_guard_exposure),
        started.elapsed().as_secs_f64(),
        out.display()
    );
}

/// Runs an Engine 2 (network performance) scenario for every seed, and
/// the aggregate of several.
fn run_performance(scenario: &Path, seeds: &[u64], out: &Path) -> anyhow::Result<()> {
    let parsed =
        PerfScenario::from_file(scenario).with_context(|| format!("in {}", scenario.display()))?;
    let started = Instant::now();
    let runs = run_seeds(seeds, |seed, progress| {
        let result = perf::run_performance_with_progress(&parsed, seed, progress)?;
        let summary = perf::output::write(&seed_dir(out, seeds, seed), &parsed, seed, &result)?;
        Ok((summary, Samples::of(seed, &result)))
    })?;
    if runs.len() > 1 {
        let samples: Vec<Samples> = runs.iter().map(|(_, samples)| samples.clone()).collect();
        let replicates = perf::aggregate::replicates(&samples);
        aggregate::files::write(out, &parsed.to_toml()?, PERFORMANCE, &replicates)?;
    }
    let count = runs.len().max(1);
    let sum = |field: fn(&PerfSummary) -> f64| {
        runs.iter().map(|(summary, _)| field(summary)).sum::<f64>() / count as f64
    };
    let over = means_over(runs.len());
    eprintln!(
        "{:.0} circuits built of {:.0} (median {:.1} ms); {:.0} downloads completed of {:.0}; \
         {:.0} drops; max relay utilisation {:.3}{over}; {:.1} s; results in {}",
        sum(|s| s.built as f64),
        sum(|s| s.circuits as f64),
        sum(|s| s.build_median_ms),
        sum(|s| s.completed as f64),
        sum(|s| s.downloads as f64),
        sum(|s| s.drops as f64),
        sum(|s| s.max_utilisation),
        started.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(())
}
