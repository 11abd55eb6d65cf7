//! `trine-sim`: command-line front end of the research simulator.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand};
use trine_sim::{EXAMPLE, Scenario, output};

/// Trine's research simulator (Engine 1: path security).
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a commented example scenario.
    Example,
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
        Command::Example => print!("{EXAMPLE}"),
        Command::Run {
            scenario,
            seed,
            out,
        } => {
            let parsed = Scenario::from_file(&scenario)
                .with_context(|| format!("in {}", scenario.display()))?;
            let started = Instant::now();
            let result = trine_sim::run(&parsed, seed)?;
            let summary = output::write(&out, &parsed, seed, &result)?;
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
        }
    }
    Ok(())
}
