//! `trine`: the command-line front end of the Trine client. `trine daemon`
//! runs the root daemon; every other command is a request on its control
//! socket (see docs/using-trine.md).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use trine_client::config::{self, Config};
use trine_client::control::{
    ControlClient, ControlError, Request, Response, State, Status, human_bytes,
};

#[derive(Parser)]
#[command(
    name = "trine",
    version,
    about = "Trine: every packet of this machine through a three-hop onion circuit.",
    long_about = "Trine: every packet of this machine through a three-hop onion circuit.\n\n\
                  `sudo trine daemon` (or `systemctl start trine`) runs the daemon; the other \
                  commands talk to it over its control socket."
)]
struct Cli {
    /// The daemon's control socket.
    #[arg(long, global = true, env = "TRINE_SOCKET", default_value = config::DEFAULT_SOCKET)]
    socket: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Bring the tunnel up and wait until traffic flows.
    Up {
        /// Return at once instead of waiting for "connected".
        #[arg(long)]
        no_wait: bool,
        /// How long to wait for "connected", in seconds.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Take the tunnel down (traffic flows normally again, unless lockdown).
    Down,
    /// Show the tunnel's state, circuit and traffic.
    Status {
        /// Machine-readable output (the control API's fields).
        #[arg(long)]
        json: bool,
    },
    /// Show the circuit, or `trine circuit new` for a fresh path (new exit).
    Circuit {
        /// `new`: replace the circuit.
        action: Option<CircuitAction>,
    },
    /// List the relays of the consensus held.
    Relays {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// List the guards.
    Guards {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Keep everything blocked while disconnected (on), or not (off).
    Lockdown {
        /// on or off.
        setting: OnOff,
    },
    /// Show the settings the daemon runs with, or change them.
    Settings {
        #[command(subcommand)]
        change: Option<SettingsCommand>,
    },
    /// Run the daemon (as root).
    Daemon {
        /// The configuration file.
        #[arg(long, default_value = config::DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Write a commented configuration file naming the network's
    /// authorities file.
    Init {
        /// Where to write it.
        #[arg(long, default_value = config::DEFAULT_CONFIG)]
        config: PathBuf,
        /// The authorities file (from the network's operators).
        #[arg(long)]
        authorities: PathBuf,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum CircuitAction {
    /// Build a fresh path with a new exit and switch to it.
    New,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum OnOff {
    /// Turn on.
    On,
    /// Turn off.
    Off,
}

#[derive(Subcommand)]
enum SettingsCommand {
    /// Change settings; they are kept across restarts and used from the
    /// next `trine up`.
    Set {
        /// The tunnel's MTU (1280 to 9000).
        #[arg(long)]
        mtu: Option<u16>,
        /// Tunnel IPv6 (on) or block it (off).
        #[arg(long)]
        ipv6: Option<OnOff>,
        /// How DNS is redirected: auto, resolv-conf, resolved or off.
        #[arg(long, value_parser = parse_dns)]
        dns: Option<config::DnsMode>,
    },
}

fn parse_dns(text: &str) -> Result<config::DnsMode, String> {
    use serde::Deserialize;
    use serde::de::value::{Error, StrDeserializer};
    config::DnsMode::deserialize(StrDeserializer::<Error>::new(text))
        .map_err(|_| "one of auto, resolv-conf, resolved, off".to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Daemon { config } => daemon(&config),
        Command::Init {
            config,
            authorities,
        } => init(&config, &authorities),
        command => talk(&cli.socket, command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("trine: {message}");
            ExitCode::FAILURE
        }
    }
}

fn daemon(path: &std::path::Path) -> Result<(), String> {
    trine_node::init_logging();
    if !is_root() {
        return Err("the daemon needs root (it creates a TUN device, routes and firewall rules); run `sudo trine daemon`".to_string());
    }
    let config = Config::load(path).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime
        .block_on(trine_client::daemon::run(config))
        .map_err(|e| format!("{e:#}"))
}

fn init(path: &std::path::Path, authorities: &std::path::Path) -> Result<(), String> {
    if path.exists() {
        return Err(format!("{} exists; not overwriting it", path.display()));
    }
    let text = config::template(authorities);
    Config::parse(path, &text).map_err(|e| e.to_string())?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    println!("{}", path.display());
    Ok(())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

fn talk(socket: &std::path::Path, command: Command) -> Result<(), String> {
    let text = |e: ControlError| e.to_string();
    let mut client = ControlClient::connect(socket).map_err(text)?;
    match command {
        Command::Up { no_wait, timeout } => {
            client.request(&Request::Connect).map_err(text)?;
            if no_wait {
                return Ok(());
            }
            wait_connected(&mut client, Duration::from_secs(timeout))
        }
        Command::Down => {
            client.request(&Request::Disconnect).map_err(text)?;
            let status = client.status().map_err(text)?;
            match status.state {
                State::Blocked => println!("disconnected; lockdown keeps everything blocked"),
                _ => println!("disconnected"),
            }
            Ok(())
        }
        Command::Status { json } => {
            let status = client.status().map_err(text)?;
            if json {
                println!("{}", trine_client::control::encode(&status));
            } else {
                print!("{}", render_status(&status));
            }
            Ok(())
        }
        Command::Circuit { action } => {
            if let Some(CircuitAction::New) = action {
                client.request(&Request::NewCircuit).map_err(text)?;
                return wait_connected(&mut client, Duration::from_secs(60));
            }
            let status = client.status().map_err(text)?;
            if status.hops.is_empty() {
                return Err(format!("no circuit ({})", status.state.as_str()));
            }
            print!("{}", render_hops(&status));
            Ok(())
        }
        Command::Relays { json } => match client.request(&Request::Relays).map_err(text)? {
            Response::Relays { relays } if json => {
                println!("{}", trine_client::control::encode(&relays));
                Ok(())
            }
            Response::Relays { relays } => {
                if relays.is_empty() {
                    println!("no consensus held yet");
                }
                for relay in relays {
                    println!(
                        "{:<20} {}  {:<24} {}",
                        relay.nickname,
                        &relay.fingerprint[..16.min(relay.fingerprint.len())],
                        relay.addresses.join(","),
                        relay.flags.join(" ")
                    );
                }
                Ok(())
            }
            other => Err(format!("unexpected answer {other:?}")),
        },
        Command::Guards { json } => match client.request(&Request::Guards).map_err(text)? {
            Response::Guards { guards } if json => {
                println!("{}", trine_client::control::encode(&guards));
                Ok(())
            }
            Response::Guards { guards } => {
                if guards.is_empty() {
                    println!("no guards chosen yet");
                }
                for guard in guards {
                    println!(
                        "{}  {:<20} {}",
                        &guard.fingerprint[..16.min(guard.fingerprint.len())],
                        guard.nickname.as_deref().unwrap_or("(not listed)"),
                        if guard.usable { "usable" } else { "unusable" }
                    );
                }
                Ok(())
            }
            other => Err(format!("unexpected answer {other:?}")),
        },
        Command::Lockdown { setting } => {
            let on = matches!(setting, OnOff::On);
            client.request(&Request::Lockdown { on }).map_err(text)?;
            println!("lockdown {}", if on { "on" } else { "off" });
            Ok(())
        }
        Command::Settings {
            change: Some(SettingsCommand::Set { mtu, ipv6, dns }),
        } => {
            if mtu.is_none() && ipv6.is_none() && dns.is_none() {
                return Err("nothing to change: give --mtu, --ipv6 or --dns".to_string());
            }
            let ipv6 = ipv6.map(|setting| matches!(setting, OnOff::On));
            client
                .request(&Request::ChangeSettings { mtu, ipv6, dns })
                .map_err(text)?;
            let pending = matches!(
                client.request(&Request::Settings),
                Ok(Response::Settings(settings)) if settings.pending
            );
            println!(
                "settings changed{}",
                if pending {
                    "; the tunnel keeps the old ones until the next `trine up`"
                } else {
                    ""
                }
            );
            Ok(())
        }
        Command::Settings { change: None } => {
            match client.request(&Request::Settings).map_err(text)? {
                Response::Settings(settings) => {
                    println!("config:      {}", settings.config);
                    println!(
                        "tunnel:      {} (MTU {}, IPv6 {})",
                        settings.tun_name,
                        settings.mtu,
                        if settings.ipv6 {
                            "tunnelled"
                        } else {
                            "blocked"
                        }
                    );
                    println!("dns:         {}", settings.dns);
                    if settings.pending {
                        println!("(changed settings apply from the next `trine up`)");
                    }
                    println!(
                        "lockdown:    {}",
                        if settings.lockdown { "on" } else { "off" }
                    );
                    println!(
                        "authorities: {} (threshold {})",
                        settings.authorities.join(", "),
                        settings.threshold
                    );
                    Ok(())
                }
                other => Err(format!("unexpected answer {other:?}")),
            }
        }
        Command::Daemon { .. } | Command::Init { .. } => Ok(()),
    }
}

/// Polls until connected; fails with the daemon's last error on timeout.
fn wait_connected(client: &mut ControlClient, timeout: Duration) -> Result<(), String> {
    let started = Instant::now();
    loop {
        let status = client.status().map_err(|e| e.to_string())?;
        match status.state {
            State::Connected => {
                println!("connected in {:.1} s", started.elapsed().as_secs_f64());
                print!("{}", render_hops(&status));
                return Ok(());
            }
            State::Disconnected | State::Blocked => {
                return Err(format!(
                    "the tunnel is down: {}",
                    status.last_error.as_deref().unwrap_or("disconnected")
                ));
            }
            State::Connecting | State::Reconnecting => {}
        }
        if started.elapsed() > timeout {
            return Err(format!(
                "not connected after {} s (still {}); last error: {}",
                timeout.as_secs(),
                status.state.as_str(),
                status.last_error.as_deref().unwrap_or("none")
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn render_hops(status: &Status) -> String {
    let mut out = String::new();
    for hop in &status.hops {
        out.push_str(&format!(
            "  {:<6} {:<20} {}  {}\n",
            hop.position,
            hop.nickname,
            &hop.fingerprint[..16.min(hop.fingerprint.len())],
            hop.address
        ));
    }
    out
}

fn render_status(status: &Status) -> String {
    let mut out = format!("state:        {}\n", status.state.as_str());
    if let Some(since) = status.connected_since {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        out.push_str(&format!(
            "connected:    {} s ago (since Unix time {since})\n",
            now.saturating_sub(since)
        ));
    }
    if !status.hops.is_empty() {
        out.push_str("circuit:\n");
        out.push_str(&render_hops(status));
    }
    if let Some(exit) = &status.exit_address {
        out.push_str(&format!("exit address: {exit}\n"));
    }
    out.push_str(&format!(
        "standby:      {}\n",
        if status.standby_ready {
            "ready"
        } else {
            "none"
        }
    ));
    out.push_str(&format!(
        "traffic:      {} up, {} down\n",
        human_bytes(status.bytes_up),
        human_bytes(status.bytes_down)
    ));
    if status.dropped_from_exit + status.dropped_to_exit > 0 {
        out.push_str(&format!(
            "dropped:      {} from the exit not addressed to this tunnel, {} not from the tunnel's address\n",
            status.dropped_from_exit, status.dropped_to_exit
        ));
    }
    out.push_str(&format!(
        "lockdown:     {}\n",
        if status.lockdown { "on" } else { "off" }
    ));
    if let Some(error) = &status.last_error {
        out.push_str(&format!("last error:   {error}\n"));
    }
    out
}
