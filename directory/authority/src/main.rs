//! `trine-dir`: a Trine directory authority (`init`, `run`) and offline
//! tools for anyone holding a consensus (`verify`, `show`).

mod config;
mod daemon;
mod show;
mod state;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rand::rngs::OsRng;
use trine_circuit::IdentityKey;
use trine_directory::UnverifiedConsensus;
use trine_node::authorities::{Authorities, Authority};
use trine_node::keyfile;

use crate::config::Config;

/// Trine directory authority and consensus tools.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a signing key, authority.toml and a one-authority
    /// authorities.toml in DIR.
    Init {
        /// Directory for authority.toml and keys/ (created 0700).
        #[arg(long)]
        dir: PathBuf,
        /// UDP address to listen on.
        #[arg(long, default_value = "0.0.0.0:7000")]
        listen: SocketAddr,
    },
    /// Run the authority until SIGTERM or Ctrl-C.
    Run {
        /// Path to authority.toml.
        #[arg(long)]
        config: PathBuf,
    },
    /// Check a consensus file against an authorities file; exit status 1
    /// and the failed rule if it is not acceptable now.
    Verify {
        /// The authorities file (threshold and keys).
        #[arg(long)]
        authorities: PathBuf,
        /// The consensus file.
        consensus: PathBuf,
    },
    /// Print a consensus (without verifying it; use `verify` for that).
    Show {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// The consensus file.
        consensus: PathBuf,
    },
}

const IDENTITY: &str = "identity.key";

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("trine-dir: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn read(path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Init { dir, listen } => {
            let config_path = dir.join("authority.toml");
            if config_path.exists() {
                anyhow::bail!("{} already exists; not overwriting", config_path.display());
            }
            let keys = dir.join("keys");
            keyfile::create_private_dir(&keys)?;
            let key_path = keys.join(IDENTITY);
            if key_path.exists() {
                anyhow::bail!(
                    "{} already exists; refusing to overwrite keys",
                    key_path.display()
                );
            }
            let key = IdentityKey::generate(&mut OsRng);
            keyfile::write_key(&key_path, daemon::unix_now(), &key.to_secret_bytes())?;
            let me = Authority {
                id: key.relay_id(),
                address: listen,
            };
            std::fs::write(&config_path, config::template(listen))?;
            std::fs::write(dir.join("authorities.toml"), Authorities::render(&[me], 1))?;
            println!("{}", key.relay_id());
            eprintln!(
                "created {}; list every authority in {} (the same file for all), then: trine-dir run --config {}",
                config_path.display(),
                dir.join("authorities.toml").display(),
                config_path.display()
            );
            Ok(())
        }
        Command::Run { config } => {
            let config = Config::load(&config)?;
            let (_, secret) = keyfile::read_key(&config.key_dir.join(IDENTITY))?;
            let key = IdentityKey::from_secret_bytes(&secret);
            trine_node::init_logging();
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(daemon::run(config, key))
        }
        Command::Verify {
            authorities,
            consensus,
        } => {
            let authorities = Authorities::load(&authorities)?;
            let verified = UnverifiedConsensus::from_bytes(&read(&consensus)?)?.verify(
                &authorities.set,
                daemon::unix_now(),
                None,
            )?;
            println!(
                "ok: valid after {}, {} relays, signed by {} of {} authorities (threshold {})",
                verified.period().valid_after,
                verified.relays().len(),
                verified.signers().len(),
                authorities.set.keys().len(),
                authorities.set.threshold()
            );
            Ok(())
        }
        Command::Show { json, consensus } => {
            let unverified = UnverifiedConsensus::from_bytes(&read(&consensus)?)?;
            print!("{}", show::render(&unverified, json));
            Ok(())
        }
    }
}
