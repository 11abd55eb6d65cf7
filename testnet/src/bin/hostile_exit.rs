//! `trine-hostile-exit run --config relay.toml --log FILE`: a real Trine
//! exit relay (keys, descriptor, directory, circuits: the `trine-relay`
//! daemon itself) whose operator crafts packets for its clients and logs
//! what they reveal, following `trine_testnet::hostile`. For the
//! adversarial end-to-end tests only; configure it with `trine-relay init
//! --exit`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use trine_relay::daemon::{self, ExitTap};
use trine_testnet::hostile::Playbook;

/// A hostile Trine exit, for adversarial tests.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the exit until SIGTERM or Ctrl-C.
    Run {
        /// Path to relay.toml (from `trine-relay init --exit`).
        #[arg(long)]
        config: PathBuf,
        /// Where to log what the clients reveal (appended).
        #[arg(long)]
        log: PathBuf,
    },
}

struct Tap(Playbook<std::fs::File>);

impl ExitTap for Tap {
    fn on_client_packet(&mut self, packet: &[u8]) -> Vec<Vec<u8>> {
        self.0.on_client_packet(packet)
    }
}

fn main() -> ExitCode {
    let Command::Run { config, log } = Cli::parse().command;
    match run(&config, &log) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("trine-hostile-exit: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: &std::path::Path, log: &std::path::Path) -> anyhow::Result<()> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    daemon::run_from_file(config, Some(Box::new(Tap(Playbook::new(log)))))
}
