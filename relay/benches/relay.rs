//! Benchmarks of the `trine-relay` process, measured from outside it, with
//! every figure next to a baseline measured in the same run
//! (`cargo bench -p trine-relay --bench relay [forward] [memory]`).
//!
//! **forward**: packets per second one relay process forwards on loopback.
//! A client (this process) pushes sealed DATA cells through a two-hop
//! circuit: the relay under test is hop 1, hop 2 is a sink in this process
//! (a `trine_link` relay endpoint and a `RelayTable` that answers the
//! relay's CREATE, then only counts datagrams). The baseline is the same
//! topology with the relay replaced by a raw `trine_link` forwarder process
//! (this binary re-run with `--raw-forwarder`): same client work (a real
//! two-hop `ClientCircuit` seals every cell), same QUIC hops and datagram
//! sizes, but no onion layer, no core loop. Both pushes are windowed (at
//! most `WINDOW` cells in flight, counted at the sink) so the figure is what
//! gets through, not what is dropped. The ratio relay/raw is the share of
//! the raw link's rate the relay keeps.
//!
//! **memory**: the relay process's resident memory (`/proc/PID/status`)
//! before and after 10,000 idle one-hop circuits (10 links of 1,000, each
//! link from its own client endpoint), per circuit, against the 4 KiB goal.
//! Two more processes (this binary re-run) split the cost: `--table-only`
//! holds 10,000 circuits in a bare `RelayTable` (the protocol state), and
//! `--streams-only` holds 10,000 accepted `trine_link` circuit streams with
//! one first cell read on each and nothing else (QUIC stream state), and
//! `--tasks-only` sets up, per circuit, what the daemon's `spawn_stream`
//! does besides the stream itself: the daemon's own cell queue (its source
//! file is compiled in here), one task (with a trivial future: a floor for
//! that cost), plus the writers map entry. What is left is the difference.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[path = "../src/cellqueue.rs"]
#[allow(dead_code, unused_imports)]
mod cellqueue;
#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Client, Scratch, start_relay_with};
use rand::rngs::OsRng;
use tokio::sync::Notify;
use trine_circuit::memnet::MemNet;
use trine_circuit::relay::CircuitRef;
use trine_circuit::{
    Channel, ClientCircuit, ClientConfig, ClientEvent, HopSpec, IdentityKey, OnionSecretKey,
    RelayConfig, RelayId, RelayTable,
};
use trine_link::{Endpoint, Link, LinkConfig};

/// Cells in flight (sent, not yet counted at the sink) at most.
const WINDOW: u64 = 128;
/// No progress at the sink for this long: count the window as lost.
const STALL: Duration = Duration::from_millis(20);
const WARM_UP: Duration = Duration::from_secs(1);
const MEASURE: Duration = Duration::from_secs(3);
const ROUNDS: usize = 5;
/// Inner packet sizes pushed.
const SIZES: [usize; 2] = [1280, 64];

/// Circuits for the memory figure, and how they are spread over links.
const CIRCUITS: usize = 10_000;
const LINKS: usize = 10;
const GOAL_BYTES: f64 = 4096.0;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--raw-forwarder") => return raw_forwarder(&args[1], &args[2]),
        Some("--table-only") => return table_only(),
        Some("--streams-only") => return streams_only(),
        Some("--tasks-only") => return tasks_only(),
        _ => {}
    }
    let names: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wanted = |name: &str| names.is_empty() || names.contains(&name);
    let runtime = runtime();
    runtime.block_on(async {
        if wanted("forward") {
            forward().await;
        }
        if wanted("memory") {
            memory().await;
        }
    });
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A process this bench started; killed and reaped when dropped.
struct ChildGuard {
    child: Child,
    lines: BufReader<ChildStdout>,
}

impl ChildGuard {
    fn spawn(args: &[&str]) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap());
        Self { child, lines }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The child's next stdout line, split on spaces (blocks).
    fn line(&mut self) -> Vec<String> {
        let mut line = String::new();
        assert!(self.lines.read_line(&mut line).unwrap() > 0, "child exited");
        line.split_whitespace().map(str::to_string).collect()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------- forward

/// Hop 2 of the forwarding bench: answers CREATE, counts datagrams.
struct Sink {
    endpoint: Endpoint,
    hop: HopSpec,
    received: Arc<AtomicU64>,
    arrived: Arc<Notify>,
}

fn start_sink() -> Sink {
    let identity = IdentityKey::generate(&mut OsRng);
    let onion = OnionSecretKey::generate(&mut OsRng);
    let endpoint = Endpoint::relay(
        "127.0.0.1:0".parse().unwrap(),
        &identity,
        &LinkConfig::default(),
    )
    .unwrap();
    let hop = HopSpec {
        id: identity.relay_id(),
        onion_key: onion.public_key(),
        addresses: vec![endpoint.local_addr().unwrap()],
    };
    let table = Arc::new(Mutex::new(RelayTable::new(
        identity.relay_id(),
        vec![onion],
        RelayConfig::default(),
        OsRng,
    )));
    let received = Arc::new(AtomicU64::new(0));
    let arrived = Arc::new(Notify::new());
    let accepting = endpoint.clone();
    let (count, notify) = (received.clone(), arrived.clone());
    tokio::spawn(async move {
        let mut next_link = 0;
        while let Some(incoming) = accepting.accept().await {
            let Ok(link) = incoming.accept().await else {
                continue;
            };
            next_link += 1;
            let link_id = next_link;
            if link.peer_identity().is_some() {
                // A relay dialled in (the middle), trusted as the daemon
                // trusts a listed or configured relay.
                table.lock().unwrap().set_link_is_relay(link_id, true);
            }
            let datagrams = link.clone();
            let (count, notify) = (count.clone(), notify.clone());
            tokio::spawn(async move {
                while datagrams.read_datagram().await.is_ok() {
                    count.fetch_add(1, Ordering::Relaxed);
                    notify.notify_one();
                }
            });
            let table = table.clone();
            tokio::spawn(async move {
                while let Ok(mut stream) = link.accept_circuit().await {
                    let table = table.clone();
                    tokio::spawn(async move {
                        let mut cell = Vec::new();
                        let end = CircuitRef {
                            link: link_id,
                            circ: stream.id(),
                        };
                        while let Ok(true) = stream.read_cell(&mut cell).await {
                            let replies: Vec<Vec<u8>> = {
                                let mut table = table.lock().unwrap();
                                table.handle_cell(Instant::now(), end, Channel::Control, &mut cell);
                                std::iter::from_fn(|| table.poll_transmit())
                                    .filter(|t| t.to == end)
                                    .map(|t| t.bytes)
                                    .collect()
                            };
                            for reply in replies {
                                if stream.write_cell(&reply).await.is_err() {
                                    return;
                                }
                            }
                        }
                    });
                }
            });
        }
    });
    Sink {
        endpoint,
        hop,
        received,
        arrived,
    }
}

/// `--raw-forwarder SINK_ADDR SINK_ID`: the baseline's middle process.
/// Accepts one link, dials the sink and forwards every datagram unchanged.
fn raw_forwarder(sink: &str, sink_id: &str) {
    let sink: SocketAddr = sink.parse().unwrap();
    let sink_id = RelayId::from_hex(sink_id).unwrap();
    runtime().block_on(async move {
        let identity = IdentityKey::generate(&mut OsRng);
        let endpoint = Endpoint::relay(
            "127.0.0.1:0".parse().unwrap(),
            &identity,
            &LinkConfig::default(),
        )
        .unwrap();
        let out = endpoint.connect(sink, sink_id).await.unwrap();
        println!(
            "{} {}",
            endpoint.local_addr().unwrap(),
            identity.relay_id().fingerprint()
        );
        std::io::stdout().flush().unwrap();
        let incoming = endpoint.accept().await.unwrap();
        let from = incoming.accept().await.unwrap();
        while let Ok((circ, bytes)) = from.read_datagram().await {
            let _ = out.send_datagram(circ, &bytes);
        }
    });
}

/// A two-hop client circuit built in memory (for sealing identical cells
/// in the baseline).
fn memnet_circuit() -> ClientCircuit {
    let mut hops = Vec::new();
    let mut tables = Vec::new();
    let mut ids = Vec::new();
    for port in [1u16, 2] {
        let identity = IdentityKey::generate(&mut OsRng);
        let onion = OnionSecretKey::generate(&mut OsRng);
        hops.push(HopSpec {
            id: identity.relay_id(),
            onion_key: onion.public_key(),
            addresses: vec![SocketAddr::from(([127, 0, 0, 1], port))],
        });
        tables.push(RelayTable::new(
            identity.relay_id(),
            vec![onion],
            RelayConfig::default(),
            OsRng,
        ));
        ids.push(identity.relay_id());
    }
    let circuit =
        ClientCircuit::new(hops, &ClientConfig::default(), Instant::now(), &mut OsRng).unwrap();
    let mut net = MemNet::new(circuit, tables, ids);
    net.run(Instant::now());
    assert!(
        std::iter::from_fn(|| net.client.poll_event()).any(|e| e == ClientEvent::Ready),
        "in-memory circuit did not build"
    );
    net.client
}

/// What one push measured.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Cells counted at the sink per second, after the warm-up.
    rate: f64,
    /// Cells sent during the push, and of those never counted at the sink.
    sent: u64,
    lost: u64,
    /// CPU time (user + system) the middle process spent per cell that
    /// reached the sink, over the whole push.
    cpu_per_cell: Duration,
}

/// User + system CPU time of `pid` so far (clock ticks of 10 ms).
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the line.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|f| f.parse().unwrap())
        .collect();
    Duration::from_millis((fields[0] + fields[1]) * 10)
}

/// Pushes sealed `size`-byte DATA cells at `link` as fast as the window
/// allows; returns the rate the sink counted.
async fn push(
    circuit: &mut ClientCircuit,
    link: &Link,
    circ: u64,
    size: usize,
    sink: &Sink,
    middle: u32,
) -> Sample {
    let cpu_before = cpu_time(middle);
    let packet = vec![0x45; size];
    let mut cell = Vec::with_capacity(2048);
    let received = || sink.received.load(Ordering::Relaxed);
    let base = received();
    let (mut sent, mut written_off) = (0u64, 0u64);
    let start = Instant::now();
    let mut window: Option<(Instant, u64)> = None;
    loop {
        let now = Instant::now();
        if window.is_none() && now >= start + WARM_UP {
            window = Some((now, received()));
        }
        if now >= start + WARM_UP + MEASURE {
            break;
        }
        let got = received() - base;
        if sent.saturating_sub(got + written_off) >= WINDOW {
            if tokio::time::timeout(STALL, sink.arrived.notified())
                .await
                .is_err()
            {
                written_off = sent.saturating_sub(received() - base);
            }
            continue;
        }
        trine_circuit::cell::data_cell(&mut cell, &packet);
        assert!(circuit.seal_data(&mut cell));
        link.send_datagram(circ, &cell).unwrap();
        sent += 1;
        if sent % 32 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let (t0, r0) = window.unwrap();
    let rate = (received() - r0) as f64 / t0.elapsed().as_secs_f64();
    // Let stragglers land before counting losses (and before the next push).
    let mut last = received();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = received();
        if now == last {
            break;
        }
        last = now;
    }
    let delivered = last - base;
    Sample {
        rate,
        sent,
        lost: sent - delivered,
        cpu_per_cell: (cpu_time(middle) - cpu_before) / u32::try_from(delivered).unwrap(),
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

async fn forward() {
    let root = Scratch::new("bench-forward");
    let relay = start_relay_with(root.path(), 1, &[]);
    let sink = start_sink();

    // Measured: client -> trine-relay -> sink.
    let (mut client, outcome) =
        Client::build("127.0.0.1:0", vec![relay.hop.clone(), sink.hop.clone()]).await;
    assert_eq!(outcome, ClientEvent::Ready);

    // Baseline: client -> raw forwarder process -> sink.
    let sink_addr = sink.hop.addresses[0].to_string();
    let sink_id = sink.hop.id.fingerprint();
    let mut forwarder = ChildGuard::spawn(&["--raw-forwarder", &sink_addr, &sink_id]);
    let line = forwarder.line();
    let raw_addr: SocketAddr = line[0].parse().unwrap();
    let raw_id = RelayId::from_hex(&line[1]).unwrap();
    let raw_endpoint =
        Endpoint::client("127.0.0.1:0".parse().unwrap(), &LinkConfig::default()).unwrap();
    let raw_link = raw_endpoint.connect(raw_addr, raw_id).await.unwrap();
    let mut raw_circuit = memnet_circuit();

    println!(
        "\n## forward: cells/s through one relay process vs. a raw trine_link forwarder \
         (window {WINDOW}, {}s warm-up + {}s, {ROUNDS} rounds)",
        WARM_UP.as_secs(),
        MEASURE.as_secs()
    );
    println!(
        "| packet | round | trine-relay cells/s (lost/sent) | raw forwarder cells/s (lost/sent) | \
         rate ratio | relay CPU/cell | raw CPU/cell | CPU ratio |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let forwarded = || relay.metric("trine_relay_cells_forwarded_total{direction=\"forward\"}");
    for size in SIZES {
        let (mut ratios, mut cpu_ratios) = (Vec::new(), Vec::new());
        for round in 1..=ROUNDS {
            let before = forwarded();
            let measured = push(
                &mut client.circuit,
                &client.link,
                client.stream.id(),
                size,
                &sink,
                relay.pid(),
            )
            .await;
            let relay_count = forwarded() - before;
            let baseline = push(&mut raw_circuit, &raw_link, 0, size, &sink, forwarder.pid()).await;
            let ratio = measured.rate / baseline.rate;
            let cpu_ratio =
                measured.cpu_per_cell.as_secs_f64() / baseline.cpu_per_cell.as_secs_f64();
            ratios.push(ratio);
            cpu_ratios.push(cpu_ratio);
            println!(
                "| {size} B | {round} | {:.0} ({}/{}; relay forwarded {relay_count}) | {:.0} ({}/{}) | {ratio:.2} | {:.2} µs | {:.2} µs | {cpu_ratio:.2} |",
                measured.rate,
                measured.lost,
                measured.sent,
                baseline.rate,
                baseline.lost,
                baseline.sent,
                measured.cpu_per_cell.as_secs_f64() * 1e6,
                baseline.cpu_per_cell.as_secs_f64() * 1e6,
            );
        }
        println!(
            "| {size} B | median | | | **{:.2}** | | | **{:.2}** |",
            median(&mut ratios),
            median(&mut cpu_ratios)
        );
    }
    let drops = common::metrics(relay.metrics)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("trine_relay_cells_dropped_total") && !l.ends_with(" 0"))
        .map(str::to_string)
        .collect::<Vec<_>>();
    println!("relay drops: {drops:?}");
    drop(sink.endpoint);
}

// ----------------------------------------------------------------- memory

/// Resident memory of `pid`, in bytes: (VmRSS, RssAnon).
fn rss(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{name} not in /proc/{pid}/status"))
            * 1024
    };
    (field("VmRSS:"), field("RssAnon:"))
}

/// Reads `pid`'s memory once it has stopped moving (two equal readings
/// 200 ms apart, or after 3 s).
async fn settled_rss(pid: u32) -> (u64, u64) {
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut last = rss(pid);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = rss(pid);
        if now == last || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

/// Links to `target`, each from its own client endpoint.
async fn links_to(target: &HopSpec, count: usize) -> Vec<(Endpoint, Link)> {
    let mut links = Vec::new();
    for _ in 0..count {
        let endpoint =
            Endpoint::client("127.0.0.1:0".parse().unwrap(), &LinkConfig::default()).unwrap();
        let link = endpoint
            .connect(target.addresses[0], target.id)
            .await
            .unwrap();
        links.push((endpoint, link));
    }
    links
}

/// Opens `per_link` one-hop circuits on every link (a real CREATE on each
/// stream); with `expect_created`, reads each CREATED and checks the
/// circuit is ready. Returns the streams, to keep the circuits open.
async fn open_circuits(
    target: &HopSpec,
    links: &[(Endpoint, Link)],
    per_link: usize,
    expect_created: bool,
) -> Vec<trine_link::CircuitStream> {
    let tasks: Vec<_> = links
        .iter()
        .map(|(_, link)| {
            let (link, target) = (link.clone(), target.clone());
            tokio::spawn(async move {
                let mut open = Vec::with_capacity(per_link);
                for _ in 0..per_link {
                    let mut circuit = ClientCircuit::new(
                        vec![target.clone()],
                        &ClientConfig::default(),
                        Instant::now(),
                        &mut OsRng,
                    )
                    .unwrap();
                    let create = circuit.poll_transmit().unwrap();
                    let mut stream = link.open_circuit().await.unwrap();
                    stream.write_cell(&create.bytes).await.unwrap();
                    open.push((circuit, stream));
                }
                if expect_created {
                    let mut cell = Vec::new();
                    for (circuit, stream) in &mut open {
                        assert!(stream.read_cell(&mut cell).await.unwrap());
                        circuit.handle_cell(Instant::now(), &mut cell).unwrap();
                        assert_eq!(circuit.poll_event(), Some(ClientEvent::HopAdded { hop: 1 }));
                        assert_eq!(circuit.poll_event(), Some(ClientEvent::Ready));
                    }
                }
                open.into_iter()
                    .map(|(_, stream)| stream)
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut streams = Vec::new();
    for task in tasks {
        streams.extend(task.await.unwrap());
    }
    streams
}

fn per_circuit(before: u64, after: u64) -> f64 {
    (after as f64 - before as f64) / CIRCUITS as f64
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

async fn memory() {
    let per_link = CIRCUITS / LINKS;
    let root = Scratch::new("bench-memory");
    let relay = start_relay_with(
        root.path(),
        1,
        &[
            ("max_circuits", &(CIRCUITS + 1).to_string()),
            ("max_circuits_per_link", &per_link.to_string()),
            ("creates_per_second_per_source", "1000000.0"),
            ("create_burst_per_source", "1000000.0"),
        ],
    );
    let pid = relay.pid();
    let idle = settled_rss(pid).await;
    let links = links_to(&relay.hop, LINKS).await;
    let linked = settled_rss(pid).await;
    let started = Instant::now();
    let streams = open_circuits(&relay.hop, &links, per_link, true).await;
    let opened_in = started.elapsed();
    relay
        .wait_metric(
            "trine_relay_circuits_open",
            Duration::from_secs(30),
            "circuits",
            |v| v == CIRCUITS as u64,
        )
        .await;
    let full = settled_rss(pid).await;
    drop(streams);
    relay
        .wait_metric(
            "trine_relay_circuits_open",
            Duration::from_secs(30),
            "circuits closed",
            |v| v == 0,
        )
        .await;
    let closed = settled_rss(pid).await;
    drop(links);
    drop(relay);

    // Protocol state alone: a bare RelayTable.
    let mut table = ChildGuard::spawn(&["--table-only"]);
    let line = table.line();
    let (table_before, table_after): (u64, u64) =
        (line[1].parse().unwrap(), line[2].parse().unwrap());

    // QUIC stream state alone: accepted streams, one cell read on each.
    let mut quic = ChildGuard::spawn(&["--streams-only"]);
    let line = quic.line();
    let quic_hop = HopSpec {
        id: RelayId::from_hex(&line[1]).unwrap(),
        onion_key: OnionSecretKey::generate(&mut OsRng).public_key(),
        addresses: vec![line[0].parse().unwrap()],
    };
    let quic_pid = quic.pid();
    let quic_idle = settled_rss(quic_pid).await;
    let quic_links = links_to(&quic_hop, LINKS).await;
    let quic_linked = settled_rss(quic_pid).await;
    let quic_streams = open_circuits(&quic_hop, &quic_links, per_link, false).await;
    let line = tokio::task::spawn_blocking(move || {
        let line = quic.line();
        (quic, line)
    })
    .await
    .unwrap();
    assert_eq!(line.1[0], "FULL");
    let quic_full = settled_rss(quic_pid).await;
    drop((quic_streams, quic_links, line.0));

    // Tasks and channels alone.
    let mut tasks = ChildGuard::spawn(&["--tasks-only"]);
    let line = tasks.line();
    let (tasks_before, tasks_channels, tasks_after): (u64, u64, u64) = (
        line[1].parse().unwrap(),
        line[2].parse().unwrap(),
        line[3].parse().unwrap(),
    );
    drop(tasks);

    let daemon = per_circuit(linked.0, full.0);
    let table_cost = per_circuit(table_before, table_after);
    let quic_cost = per_circuit(quic_linked.0, quic_full.0);
    let tasks_cost = per_circuit(tasks_before, tasks_after);
    println!(
        "\n## memory: {CIRCUITS} idle one-hop circuits ({LINKS} links x {per_link}), opened in {opened_in:.2?}"
    );
    println!(
        "| process | RSS idle | RSS with links | RSS with circuits | per circuit (from idle) | per circuit (from links) | RssAnon per circuit (from links) |"
    );
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| trine-relay | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.0} B | **{daemon:.0} B** | {:.0} B |",
        mib(idle.0),
        mib(linked.0),
        mib(full.0),
        per_circuit(idle.0, full.0),
        per_circuit(linked.1, full.1),
    );
    println!(
        "| streams only (quinn) | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.0} B | {quic_cost:.0} B | {:.0} B |",
        mib(quic_idle.0),
        mib(quic_linked.0),
        mib(quic_full.0),
        per_circuit(quic_idle.0, quic_full.0),
        per_circuit(quic_linked.1, quic_full.1),
    );
    println!(
        "| RelayTable only | {:.1} MiB | | {:.1} MiB | {table_cost:.0} B | | |",
        mib(table_before),
        mib(table_after),
    );
    println!(
        "| cell queue + writers-map entry | {:.1} MiB | | {:.1} MiB | {:.0} B | | |",
        mib(tasks_before),
        mib(tasks_channels),
        per_circuit(tasks_before, tasks_channels),
    );
    println!(
        "| + the stream's task | {:.1} MiB | | {:.1} MiB | {tasks_cost:.0} B (tasks alone {:.0} B) | | |",
        mib(tasks_channels),
        mib(tasks_after),
        per_circuit(tasks_channels, tasks_after),
    );
    println!(
        "trine-relay after all circuits closed: {:.1} MiB RSS ({:.0} B per former circuit still held)",
        mib(closed.0),
        per_circuit(linked.0, closed.0)
    );
    println!(
        "split of the daemon's {daemon:.0} B: RelayTable {table_cost:.0} B, QUIC streams {quic_cost:.0} B, \
         task+queue+map (trivial future) {tasks_cost:.0} B, rest {:.0} B (by difference: \
         the real tasks' larger futures and read buffers, allocator slack)",
        daemon - table_cost - quic_cost - tasks_cost
    );
    println!(
        "goal <= {GOAL_BYTES:.0} B per idle circuit: {} ({:.2}x the goal)",
        if daemon <= GOAL_BYTES {
            "met"
        } else {
            "MISSED"
        },
        daemon / GOAL_BYTES
    );
}

/// `--table-only`: prints `TABLE rss_before rss_after` (bytes) around
/// putting `CIRCUITS` circuits into a bare `RelayTable`.
fn table_only() {
    let identity = IdentityKey::generate(&mut OsRng);
    let onion = OnionSecretKey::generate(&mut OsRng);
    let hop = HopSpec {
        id: identity.relay_id(),
        onion_key: onion.public_key(),
        addresses: vec![SocketAddr::from(([127, 0, 0, 1], 1))],
    };
    // Every CREATE is made (and kept) first, so nothing freed while filling
    // the table can be reused by it.
    let creates: Vec<Vec<u8>> = (0..CIRCUITS)
        .map(|_| {
            let mut circuit = ClientCircuit::new(
                vec![hop.clone()],
                &ClientConfig::default(),
                Instant::now(),
                &mut OsRng,
            )
            .unwrap();
            circuit.poll_transmit().unwrap().bytes
        })
        .collect();
    let config = RelayConfig {
        max_circuits: CIRCUITS,
        max_circuits_per_link: CIRCUITS,
        ..RelayConfig::default()
    };
    let mut table = RelayTable::new(identity.relay_id(), vec![onion], config, OsRng);
    let mut cell = Vec::with_capacity(256);
    let pid = std::process::id();
    let before = rss(pid).0;
    for (index, create) in creates.iter().enumerate() {
        cell.clear();
        cell.extend_from_slice(create);
        let end = CircuitRef {
            link: (index / 1000) as u64,
            circ: (index % 1000) as u64 * 4,
        };
        table.handle_cell(Instant::now(), end, Channel::Control, &mut cell);
        while table.poll_transmit().is_some() {}
    }
    assert_eq!(table.circuit_count(), CIRCUITS);
    let after = rss(pid).0;
    println!("TABLE {before} {after}");
    drop(table);
}

/// `--streams-only`: a relay endpoint that accepts circuit streams, reads
/// one cell on each and keeps them. Prints `ADDR ID`, then `FULL` once
/// `CIRCUITS` streams are held; then waits to be killed.
fn streams_only() {
    runtime().block_on(async {
        let identity = IdentityKey::generate(&mut OsRng);
        let config = LinkConfig {
            max_circuits_per_link: (CIRCUITS / LINKS) as u32,
            ..LinkConfig::default()
        };
        let endpoint = Endpoint::relay("127.0.0.1:0".parse().unwrap(), &identity, &config).unwrap();
        println!(
            "{} {}",
            endpoint.local_addr().unwrap(),
            identity.relay_id().fingerprint()
        );
        std::io::stdout().flush().unwrap();
        let held = Arc::new(Mutex::new(Vec::with_capacity(CIRCUITS)));
        let full = Arc::new(Notify::new());
        let mut links = Vec::new();
        for _ in 0..LINKS {
            let link = endpoint.accept().await.unwrap().accept().await.unwrap();
            let (held, full) = (held.clone(), full.clone());
            links.push(link.clone());
            tokio::spawn(async move {
                let mut cell = Vec::new();
                while let Ok(mut stream) = link.accept_circuit().await {
                    assert!(stream.read_cell(&mut cell).await.unwrap());
                    let mut held = held.lock().unwrap();
                    held.push(stream);
                    if held.len() == CIRCUITS {
                        full.notify_one();
                    }
                }
            });
        }
        full.notified().await;
        println!("FULL");
        std::io::stdout().flush().unwrap();
        std::future::pending::<()>().await;
    });
}

/// `--tasks-only`: prints `TASKS rss_before rss_with_channels rss_after`
/// (bytes) around setting up, `CIRCUITS` times, what the daemon's
/// `spawn_stream` adds to a stream: first the cell queue with its sender
/// in a map (as the core loop's writers map holds it), then the one task
/// that drains the queue and holds a sender to the core loop.
fn tasks_only() {
    runtime().block_on(async {
        let (core, mut inputs) = tokio::sync::mpsc::channel::<(CircuitRef, Vec<u8>)>(4096);
        tokio::spawn(async move { while inputs.recv().await.is_some() {} });
        let pid = std::process::id();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let before = rss(pid).0;
        let mut writers = std::collections::HashMap::new();
        let mut queues = Vec::with_capacity(CIRCUITS);
        for index in 0..CIRCUITS {
            let end = CircuitRef {
                link: (index / 1000) as u64,
                circ: (index % 1000) as u64 * 4,
            };
            let (writer, queue) = cellqueue::cell_queue(256);
            writers.insert(end, writer);
            queues.push((end, queue));
        }
        let channels = rss(pid).0;
        for (end, mut queue) in queues {
            let input = core.clone();
            tokio::spawn(async move {
                let buf = Vec::with_capacity(128);
                while queue.recv().await.is_some() {}
                let _ = input.send((end, buf)).await;
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let after = rss(pid).0;
        println!("TASKS {before} {channels} {after}");
        drop(writers);
    });
}
