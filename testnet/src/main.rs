//! `trine-testnet`: tools for a Trine network in namespaces on this
//! machine. `web` runs the network's "internet" host and `fetch` gets a
//! URL from inside a namespace (both used by the end-to-end tests).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use trine_testnet::web;

#[derive(Parser)]
#[command(
    name = "trine-testnet",
    version,
    about = "A whole Trine network on one machine, in network namespaces."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the web host: HTTP on port 80 (`/ip`, `/bytes/N`) and a DNS
    /// resolver for web.trine.test on port 53, logging every request.
    Web {
        /// The address to serve on.
        #[arg(long)]
        address: Ipv4Addr,
        /// Where to log requests ("http SRC PATH", "dns SRC NAME").
        #[arg(long)]
        log: PathBuf,
    },
    /// GET a URL (system resolver); print the body, or with `--check`
    /// only verify a `/bytes/N` body byte for byte and print its size.
    Fetch {
        /// http://host[:port]/path
        url: String,
        /// Seconds allowed for connecting and for each read.
        #[arg(long, default_value_t = 10)]
        timeout: u64,
        /// Verify the `/bytes/N` pattern instead of printing the body.
        #[arg(long)]
        check: bool,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Web { address, log } => match web::serve(address, &log) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("trine-testnet web: {error}");
                ExitCode::FAILURE
            }
        },
        Command::Fetch {
            url,
            timeout,
            check,
        } => match web::fetch(&url, Duration::from_secs(timeout)) {
            Ok(fetched) if check && !web::is_pattern(&fetched.body) => {
                eprintln!("trine-testnet fetch: {url}: the body is not the /bytes pattern");
                ExitCode::FAILURE
            }
            Ok(fetched) if check => {
                println!("ok {} bytes from {}", fetched.body.len(), fetched.address);
                ExitCode::SUCCESS
            }
            Ok(fetched) => {
                print!("{}", String::from_utf8_lossy(&fetched.body));
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("trine-testnet fetch: {url}: {error}");
                ExitCode::FAILURE
            }
        },
    }
}
