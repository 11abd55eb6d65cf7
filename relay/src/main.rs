//! `trine-relay`: the Trine relay daemon. `init` makes keys and a commented
//! configuration, `run` relays, `fingerprint` prints the identity.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use rand::rngs::OsRng;

use trine_relay::config::{self, Config};
use trine_relay::daemon;
use trine_relay::keys::KeyStore;

/// Trine relay: carries onion-encrypted circuits between Trine nodes.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a key directory and a commented relay.toml in DIR.
    Init {
        /// Directory for relay.toml and keys/ (created 0700).
        #[arg(long)]
        dir: PathBuf,
        /// Public name of the relay (1-19 ASCII letters or digits).
        #[arg(long, default_value = "trinerelay")]
        nickname: String,
        /// UDP address to listen on.
        #[arg(long, default_value = "0.0.0.0:9443")]
        listen: SocketAddr,
        /// Make this relay an exit (carries traffic out to the internet).
        #[arg(long)]
        exit: bool,
    },
    /// Run the relay until SIGTERM or Ctrl-C.
    Run {
        /// Path to relay.toml.
        #[arg(long)]
        config: PathBuf,
    },
    /// Print the relay's identity fingerprint.
    Fingerprint {
        /// Path to relay.toml.
        #[arg(long)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("trine-relay: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Init {
            dir,
            nickname,
            listen,
            exit,
        } => {
            let config_path = dir.join("relay.toml");
            if config_path.exists() {
                anyhow::bail!("{} already exists; not overwriting", config_path.display());
            }
            let template = config::template(&nickname, listen, exit);
            // Validate what we are about to write, so a bad --nickname fails here.
            Config::parse(&template, &config_path)?;
            let keys = KeyStore::init(&dir.join("keys"), unix_now(), &mut OsRng)?;
            std::fs::write(&config_path, template)
                .map_err(|error| anyhow::anyhow!("{}: {error}", config_path.display()))?;
            println!("{}", keys.identity.relay_id());
            eprintln!(
                "created {} and {}; start with: trine-relay run --config {}",
                config_path.display(),
                dir.join("keys").display(),
                config_path.display()
            );
            Ok(())
        }
        Command::Fingerprint { config } => {
            let config = Config::load(&config)?;
            let keys = KeyStore::load(&config.key_dir)?;
            println!("{}", keys.identity.relay_id());
            Ok(())
        }
        Command::Run { config } => daemon::run_from_file(&config, None),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}
