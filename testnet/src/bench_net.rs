//! `bench-net`: on one fresh network with the same namespaces and links,
//! the client reaching the web host five ways, one after another —
//! directly (a host route, no tunnel), through userspace WireGuard (one
//! hop, three nested; [`crate::wireguard`]), through a private Tor network
//! ([`crate::tor`]) and through Trine's 3-hop circuit — and a Markdown
//! table of the figures with Trine's ratios against direct, nested
//! WireGuard and Tor.
//!
//! Figures: iperf3 single-flow and 4-flow TCP (10 s each), ping RTT (200,
//! median and p99, `ping -U`), a 50 MiB download alone and four at once
//! (`trine-testnet fetch`, byte-checked), 1 KiB time to first byte (20,
//! median and p90), and set-up to first byte. Tor carries TCP only
//! through SOCKS, so it has no iperf3 or ping figures; the downloads and
//! time to first byte compare all five.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::links::LinkShape;
use crate::session::{build, down, preflight};
use crate::trine::{Binaries, Kind, NodeInfo, Shape, TrineNet, WEB};

/// The download size.
const DOWNLOAD: u64 = 50 << 20;

/// One column of the table.
#[derive(Debug, Default, Clone)]
struct Figures {
    single_mbit: Option<f64>,
    four_mbit: Option<f64>,
    rtt_median_ms: Option<f64>,
    rtt_p99_ms: Option<f64>,
    download_mbit: f64,
    download4_mbit: f64,
    ttfb_median_ms: f64,
    ttfb_p90_ms: f64,
    /// Set-up to first byte, and what the set-up was.
    setup: Option<Duration>,
}

/// Runs the benchmark on a fresh network (removed afterwards) and
/// returns the table.
pub fn bench_net(dir: &Path, binaries: Binaries, links: LinkShape) -> Result<String, String> {
    preflight(&binaries)?;
    if Command::new("iperf3").arg("-v").output().is_err() {
        return Err("`iperf3` is missing: scripts/install-deps.sh bench".to_string());
    }
    crate::wireguard::available()?;
    crate::tor::available()?;
    down(dir)?;
    let started = Instant::now();
    let net = build(dir, Shape::default(), binaries, links)?;
    let result = rounds(&net, started);
    drop(net);
    down(dir)?;
    result.map(|table| format!("Links: {}\n\n{table}", links.describe()))
}

fn rounds(net: &TrineNet, started: Instant) -> Result<String, String> {
    let web = WEB.to_string();
    let iperf = Command::new("ip")
        .args([
            "netns",
            "exec",
            &net.network.ns("web"),
            "iperf3",
            "-s",
            "-B",
            &web,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("iperf3 server: {e}"))?;
    let _server = KillOnDrop(iperf);
    let mut columns: Vec<(&str, Figures)> = Vec::new();

    // Baseline: a host route straight to the web host.
    let route = ["ip", "route", "add", &format!("{web}/32"), "dev", "eth0"];
    let out = net.exec("client", &route);
    if !out.status.success() {
        return Err(format!("route: {}", String::from_utf8_lossy(&out.stderr)));
    }
    std::thread::sleep(Duration::from_millis(300)); // the iperf3 server binding
    columns.push(("Direct", measure(net, None)?));
    let _ = net.exec("client", &["ip", "route", "del", &format!("{web}/32")]);

    // WireGuard, one hop and three nested, through relays.
    let relays: Vec<&NodeInfo> = net
        .nodes
        .iter()
        .filter(|n| n.kind == Kind::Relay)
        .take(3)
        .collect();
    for (name, hops) in [
        ("WireGuard 1 hop", &relays[..1]),
        ("WireGuard 3 nested", &relays[..]),
    ] {
        let setup = Instant::now();
        let chain = crate::wireguard::Chain::up(net, hops, &web)?;
        let first = first_byte(net, None, setup)?;
        columns.push((
            name,
            Figures {
                setup: Some(first),
                ..measure(net, None)?
            },
        ));
        drop(chain);
    }

    // Tor: a whole private network started now.
    let setup = Instant::now();
    let (tor, _) = crate::tor::TorNetwork::start(net, Duration::from_secs(120))?;
    let socks = crate::tor::SOCKS.parse().ok();
    let first = first_byte(net, socks, setup)?;
    columns.push((
        "Tor 3 hops",
        Figures {
            setup: Some(first),
            ..measure(net, socks)?
        },
    ));
    drop(tor);

    // Trine last: its kill switch would stop the others. The directory
    // has been running all along: this is `trine up` alone.
    let up_started = Instant::now();
    let out = net.trine(&["up", "--timeout", "120"]);
    if !out.status.success() {
        return Err(format!(
            "trine up: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let first = first_byte(net, None, up_started)?;
    columns.push((
        "Trine 3 hops",
        Figures {
            setup: Some(first),
            ..measure(net, None)?
        },
    ));
    Ok(table(&columns)
        + &format!(
            "\nSet-up to first byte: WireGuard from starting its daemons; Tor from starting its \
             whole network (authorities' first vote included); Trine from `trine up`, its \
             network running for {:.0} s already (`trine-testnet up` reports a whole network's \
             start to connected).\n",
            (up_started - started).as_secs_f64()
        ))
}

/// The time from `since` to the first `/ip` answer, through the
/// client's route or the SOCKS proxy `socks`.
fn first_byte(
    net: &TrineNet,
    socks: Option<SocketAddr>,
    since: Instant,
) -> Result<Duration, String> {
    net.fetch_ip_within_via(&WEB.to_string(), socks, Duration::from_secs(30))
        .map_err(|error| format!("no answer through the tunnel within 30 s: {error}"))?;
    Ok(since.elapsed())
}

/// Runs `fetch` commands for the download in parallel; returns Mbit/s
/// over the wall time of all of them.
fn downloads(net: &TrineNet, socks: Option<SocketAddr>, parallel: usize) -> Result<f64, String> {
    let url = format!("http://{WEB}/bytes/{DOWNLOAD}");
    let started = Instant::now();
    let outs: Vec<std::process::Output> = std::thread::scope(|scope| {
        let runs: Vec<_> = (0..parallel)
            .map(|_| {
                scope
                    .spawn(|| net.fetch_via("client", &url, socks, &["--check", "--timeout", "60"]))
            })
            .collect();
        runs.into_iter().filter_map(|r| r.join().ok()).collect()
    });
    let took = started.elapsed().as_secs_f64();
    if outs.len() != parallel || outs.iter().any(|o| !o.status.success()) {
        let errors: Vec<String> = outs
            .iter()
            .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_string())
            .collect();
        return Err(format!("download: {errors:?}"));
    }
    Ok((parallel as u64 * DOWNLOAD * 8) as f64 / took / 1e6)
}

/// Measures one column: through the client's routes (`socks` None: all
/// figures) or through the SOCKS proxy (downloads and time to first
/// byte).
fn measure(net: &TrineNet, socks: Option<SocketAddr>) -> Result<Figures, String> {
    let web = WEB.to_string();
    let mut figures = Figures::default();
    if socks.is_none() {
        let iperf = |flows: &str| -> Result<f64, String> {
            let out = net.exec(
                "client",
                &["iperf3", "-c", &web, "-t", "10", "-P", flows, "-J"],
            );
            let json: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| {
                format!(
                    "iperf3 output: {e}: {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })?;
            json["end"]["sum_received"]["bits_per_second"]
                .as_f64()
                .map(|bps| bps / 1e6)
                .ok_or_else(|| format!("iperf3: {}", json["error"]))
        };
        figures.single_mbit = Some(iperf("1")?);
        figures.four_mbit = Some(iperf("4")?);
        let out = net.exec("client", &["ping", "-U", "-c", "200", "-i", "0.01", &web]);
        let mut rtts: Vec<f64> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split("time=").nth(1)?.split(' ').next()?.parse().ok())
            .collect();
        if rtts.len() < 150 {
            return Err(format!("ping: only {} of 200 answered", rtts.len()));
        }
        figures.rtt_median_ms = Some(quantile(&mut rtts, 0.5));
        figures.rtt_p99_ms = Some(quantile(&mut rtts, 0.99));
    }
    figures.download_mbit = downloads(net, socks, 1)?;
    figures.download4_mbit = downloads(net, socks, 4)?;
    let out = net.fetch_via(
        "client",
        &format!("http://{web}/bytes/1024"),
        socks,
        &["--repeat", "20"],
    );
    let mut ttfb: Vec<f64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse::<f64>().ok().map(|us| us / 1000.0))
        .collect();
    if ttfb.len() != 20 {
        return Err(format!("fetch: {}", String::from_utf8_lossy(&out.stderr)));
    }
    figures.ttfb_median_ms = quantile(&mut ttfb, 0.5);
    figures.ttfb_p90_ms = quantile(&mut ttfb, 0.9);
    Ok(figures)
}

/// Picks one figure of a column.
type Pick = fn(&Figures) -> Option<f64>;

/// The Markdown table: one column per way, then Trine (the last column)
/// against direct, nested WireGuard and Tor.
fn table(columns: &[(&str, Figures)]) -> String {
    let rows: [(&str, Pick); 9] = [
        ("single-flow TCP, Mbit/s (iperf3 10 s)", |f| f.single_mbit),
        ("4-flow TCP, Mbit/s (iperf3 -P 4, 10 s)", |f| f.four_mbit),
        ("50 MiB download, Mbit/s", |f| Some(f.download_mbit)),
        ("4 × 50 MiB at once, Mbit/s", |f| Some(f.download4_mbit)),
        ("ping RTT median, ms (200)", |f| f.rtt_median_ms),
        ("ping RTT p99, ms", |f| f.rtt_p99_ms),
        ("1 KiB time to first byte median, ms (20)", |f| {
            Some(f.ttfb_median_ms)
        }),
        ("1 KiB time to first byte p90, ms", |f| Some(f.ttfb_p90_ms)),
        ("set-up to first byte, s", |f| {
            f.setup.map(|d| d.as_secs_f64())
        }),
    ];
    let Some((trine_name, trine)) = columns.last() else {
        return String::new();
    };
    let peers: Vec<&(&str, Figures)> = columns
        .iter()
        .filter(|(name, _)| ["Direct", "WireGuard 3 nested", "Tor 3 hops"].contains(name))
        .collect();
    let mut out = "| Figure |".to_string();
    for (name, _) in columns {
        out += &format!(" {name} |");
    }
    for (name, _) in &peers {
        out += &format!(" {trine_name} / {name} |");
    }
    out += "\n|---|";
    out += &"---|".repeat(columns.len() + peers.len());
    out += "\n";
    let cell = |value: Option<f64>| value.map_or("–".to_string(), |v| format!("{v:.2}"));
    for (label, pick) in rows {
        out += &format!("| {label} |");
        for (_, figures) in columns {
            out += &format!(" {} |", cell(pick(figures)));
        }
        for (_, peer) in &peers {
            let ratio = match (pick(trine), pick(peer)) {
                (Some(t), Some(p)) if p > 0.0 => format!("{:.2}×", t / p),
                _ => "–".to_string(),
            };
            out += &format!(" {ratio} |");
        }
        out += "\n";
    }
    out
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `q` quantile (nearest rank) of `values`.
fn quantile(values: &mut [f64], q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    values[rank - 1]
}
