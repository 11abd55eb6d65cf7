//! `trine-testnet`: a whole Trine network in network namespaces on this
//! machine (`up`, `status`, `exec`, `kill`, `start`, `down`, `demo`; see
//! docs/testnet.md). `web` runs the network's "internet" host and `fetch`
//! gets a URL from inside a namespace.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use trine_testnet::links::LinkShape;
use trine_testnet::trine::{Binaries, Shape};
use trine_testnet::{session, web};

#[derive(Parser)]
#[command(
    name = "trine-testnet",
    version,
    about = "A whole Trine network on one machine, in network namespaces (needs root)."
)]
struct Cli {
    /// Where the network's files and state live.
    #[arg(long, global = true, env = "TRINE_TESTNET_DIR", default_value = session::DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone, Copy)]
struct ShapeArgs {
    /// Directory authorities.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=9))]
    authorities: u8,
    /// Authority signatures a consensus needs.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=9))]
    threshold: u8,
    /// Relays that are not exits.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u8).range(1..=9))]
    relays: u8,
    /// Exit relays.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=9))]
    exits: u8,
    /// The directory's consensus interval, seconds (a test network
    /// setting; the first consensus waits for the first period).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(4..=3600))]
    interval: u64,
    #[command(flatten)]
    links: LinkArgs,
}

/// Delay, loss and rate on every link.
#[derive(clap::Args, Clone, Copy)]
struct LinkArgs {
    /// Limit every node's link to this many Mbit/s each way (tbf).
    #[arg(long)]
    rate: Option<u32>,
    /// Delay what every node receives by this many ms (a userspace
    /// NFQUEUE helper in each namespace; this kernel has no netem).
    #[arg(long)]
    delay: Option<u32>,
    /// Drop this percentage of what every node receives (iptables).
    #[arg(long)]
    loss: Option<f32>,
}

impl LinkArgs {
    fn shape(self) -> Result<LinkShape, String> {
        trine_testnet::links::check(self.delay, self.loss)?;
        Ok(LinkShape {
            rate_mbit: self.rate,
            delay_ms: self.delay,
            loss_pct: self.loss,
        })
    }
}

impl ShapeArgs {
    fn options(self) -> Result<session::UpOptions, String> {
        if self.threshold > self.authorities {
            return Err(format!(
                "--threshold {} is more than the {} authorities",
                self.threshold, self.authorities
            ));
        }
        Ok(session::UpOptions {
            shape: Shape {
                authorities: self.authorities.into(),
                threshold: self.threshold.into(),
                relays: self.relays.into(),
                exits: self.exits.into(),
                interval_secs: self.interval,
                ..Shape::default()
            },
            links: self.links.shape()?,
        })
    }
}

#[derive(Subcommand)]
enum Command {
    /// Create the namespaces, start every daemon, wait until the client is
    /// connected, print a summary and leave it running.
    Up(ShapeArgs),
    /// Every node: role, namespace, address, pid, fingerprint, up or down.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Run a command in a node's namespace: `exec client -- ping …`.
    Exec {
        /// The node (e.g. client, relay1, exit2, auth1, web).
        node: String,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// SIGKILL a node's daemon.
    Kill {
        /// The node.
        node: String,
    },
    /// Start a node's daemon again.
    Start {
        /// The node.
        node: String,
    },
    /// Remove every namespace, process and file of the test network
    /// (also after a crash). Idempotent.
    Down,
    /// Up, fetch http://web.trine.test/ip through Trine, show what the web
    /// host saw next to the client's own address, down. Exit status 0 only
    /// if the web host saw the exit's address.
    Demo(ShapeArgs),
    /// Side by side on a fresh network (then removed): the client to the
    /// web host directly, through userspace WireGuard (one hop, three
    /// nested), through a private Tor network, then through Trine
    /// (iperf3, ping, 50 MiB downloads, 1 KiB time to first byte, set-up
    /// to first byte).
    BenchNet {
        #[command(flatten)]
        links: LinkArgs,
    },
    /// Hold every packet of NFQUEUE 0 in this namespace for MS ms (run
    /// by `up --delay` in each node's namespace).
    LinkDelay {
        /// The delay, ms.
        #[arg(long)]
        ms: u32,
    },
    /// Benchmark the client on a fresh network (then removed): `trine up`
    /// to first byte, and failover after killing each hop position.
    BenchClient {
        /// Repetitions of each measurement.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// Run the web host: HTTP on port 80 (`/ip`, `/bytes/N`) and a DNS
    /// resolver for web.trine.test on port 53, logging every request.
    Web {
        /// The address to serve HTTP on.
        #[arg(long)]
        address: Ipv4Addr,
        /// The address to serve DNS on (default: `--address`).
        #[arg(long)]
        resolver: Option<Ipv4Addr>,
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
        /// Instead, fetch N times and print each time to first byte in
        /// microseconds, one per line.
        #[arg(long)]
        repeat: Option<u32>,
        /// Go through this SOCKS5 proxy (e.g. Tor's, 127.0.0.1:9050); it
        /// gets the host name.
        #[arg(long)]
        socks: Option<std::net::SocketAddr>,
    },
}

fn binaries() -> Binaries {
    let here = std::env::current_exe().unwrap_or_default();
    Binaries::in_dir(here.parent().unwrap_or(std::path::Path::new(".")))
}

fn report(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("trine-testnet: {message}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let dir = cli.state_dir;
    match cli.command {
        Command::Up(args) => report(args.options().and_then(|options| {
            let saved = session::up(&dir, binaries(), options)?;
            print!("{}", session::status(&dir, false)?);
            println!(
                "\nclient connected {:.1} s after start; state in {}. `trine-testnet down` removes it all.",
                saved.connect_secs,
                dir.display()
            );
            Ok(())
        })),
        Command::Status { json } => report(session::status(&dir, json).map(|text| print!("{text}"))),
        Command::Exec { node, command } => match session::exec(&dir, &node, &command) {
            Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
            Err(message) => report(Err(message)),
        },
        Command::Kill { node } => report(session::kill(&dir, &node)),
        Command::Start { node } => report(session::start(&dir, &node)),
        Command::Down => report(session::down(&dir)),
        Command::BenchNet { links } => report(links.shape().and_then(|links| {
            trine_testnet::bench_net::bench_net(&dir, binaries(), links).map(|table| print!("{table}"))
        })),
        Command::LinkDelay { ms } => report(trine_testnet::links::run_delay(
            Duration::from_millis(ms.into()),
        )),
        Command::BenchClient { rounds } => report(
            session::bench_client(&dir, binaries(), rounds.max(1)).map(|table| print!("{table}")),
        ),
        Command::Demo(args) => report(args.options().and_then(|options| session::demo(&dir, binaries(), options))),
        Command::Web {
            address,
            resolver,
            log,
        } => match web::serve(address, resolver.unwrap_or(address), &log) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("trine-testnet web: {error}");
                ExitCode::FAILURE
            }
        },
        Command::Fetch {
            url,
            timeout,
            repeat: Some(times),
            socks,
            ..
        } => report((0..times).try_for_each(|_| {
            let took = web::time_to_first_byte(&url, Duration::from_secs(timeout), socks)?;
            println!("{}", took.as_micros());
            Ok(())
        })),
        Command::Fetch {
            url,
            timeout,
            check,
            repeat: None,
            socks,
        } => match web::fetch(&url, Duration::from_secs(timeout), socks) {
            Ok(fetched) if check && !web::is_pattern(&fetched.body) => {
                eprintln!("trine-testnet fetch: {url}: the body is not the /bytes pattern");
                ExitCode::FAILURE
            }
            Ok(fetched) if check => {
                println!(
                    "ok {} bytes from {} in {:.3} s",
                    fetched.body.len(),
                    fetched.from,
                    fetched.took.as_secs_f64()
                );
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
