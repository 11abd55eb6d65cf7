//! `trine-sim`: command-line front end of the research simulator.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand};
use trine_sim::perf::{self, PERF_EXAMPLE, PerfScenario};
use trine_sim::{EXAMPLE, Scenario, output};

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
    /// Run a scenario and write its results.
    Run {
        /// The scenario (TOML).
        scenario: PathBuf,
        /// Seed of every random draw.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output directory.
        #[arg(long, default_value = "sim-out")]
        out: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Example { performance: false } => print!("{EXAMPLE}"),
        Command::Example { performance: true } => print!("{PERF_EXAMPLE}"),
        Command::Run {
            scenario,
            seed,
            out,
        } => {
            let text = std::fs::read_to_string(&scenario)
                .with_context(|| format!("reading {}", scenario.display()))?;
            if perf::declares_engine(&text) {
                run_performance(&scenario, seed, &out)?;
            } else {
                run_path_security(&scenario, seed, &out)?;
            }
        }
    }
    Ok(())
}

fn run_path_security(scenario: &Path, seed: u64, out: &Path) -> anyhow::Result<()> {
    let parsed =
        Scenario::from_file(scenario).with_context(|| format!("in {}", scenario.display()))?;
    let started = Instant::now();
    let result = trine_sim::run(&parsed, seed)?;
    let summary = output::write(out, &parsed, seed, &result)?;
    eprintln!(
        "{} circuits; compromised {:.4}; clients ever compromised {:.4}; guard exposure {:.4} (primary {:.4}); \
         {:.1} s; results in {}",
        summary.circuits,
        summary.compromised_fraction,
        summary.clients_compromised,
        summary.guard_exposure,
        summary.primary_guard_exposure,
        started.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(())
}

fn run_performance(scenario: &Path, seed: u64, out: &Path) -> anyhow::Result<()> {
    let parsed =
        PerfScenario::from_file(scenario).with_context(|| format!("in {}", scenario.display()))?;
    let started = Instant::now();
    let result = perf::run_performance(&parsed, seed)?;
    let summary = perf::output::write(out, &parsed, seed, &result)?;
    eprintln!(
        "{} circuits built of {} (median {:.1} ms); {} downloads completed of {}; {} drops; \
         max relay utilisation {:.3}; {:.1} s; results in {}",
        summary.built,
        summary.circuits,
        summary.build_median_ms,
        summary.completed,
        summary.downloads,
        summary.drops,
        summary.max_utilisation,
        started.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(())
}
