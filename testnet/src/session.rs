//! The `trine-testnet` commands: one network at a time, its namespaces
//! named `trn-<node>` (`trn-hub` joins them) and its state in one
//! directory (default `/run/trine-testnet`: configurations, keys, logs and
//! `state.json`, which says what runs where). `down` needs none of that
//! state: it removes every `trn-*` namespace and everything running in
//! it, so it also cleans up after a crash.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::links::LinkShape;
use crate::sh;
use crate::trine::{Binaries, CLIENT, Naming, SavedNode, Shape, TrineNet, WEB_NAME};

/// Prefix of every namespace the tool makes.
pub const TAG: &str = "trn-";
/// Where the state lives unless `--state-dir` says otherwise.
pub const DEFAULT_STATE_DIR: &str = "/run/trine-testnet";

/// What `up` saves for the other commands.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Saved {
    /// Every node.
    pub nodes: Vec<SavedNode>,
    /// Seconds from the start of `up` to the client's "connected".
    pub connect_secs: f64,
}

fn state_file(dir: &Path) -> PathBuf {
    dir.join("state.json")
}

/// Reads the saved state.
pub fn load(dir: &Path) -> Result<Saved, String> {
    let path = state_file(dir);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "no test network ({}: {e}); start one with `trine-testnet up`",
            path.display()
        )
    })?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn save(dir: &Path, saved: &Saved) -> Result<(), String> {
    let text = serde_json::to_string_pretty(saved).map_err(|e| e.to_string())?;
    std::fs::write(state_file(dir), text).map_err(|e| format!("{}: {e}", dir.display()))
}

/// Checks what `up` needs before touching anything.
pub(crate) fn preflight(binaries: &Binaries) -> Result<(), String> {
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    if !root {
        return Err("needs root (it creates network namespaces): run it with sudo".to_string());
    }
    for tool in ["ip", "nft", "tc"] {
        if Command::new(tool).arg("-V").output().is_err() {
            return Err(format!(
                "`{tool}` is missing: apt-get install iproute2 nftables"
            ));
        }
    }
    if let Some(missing) = binaries.missing() {
        return Err(format!(
            "{} is missing: build everything first (`cargo build --workspace --bins`)",
            missing.display()
        ));
    }
    Ok(())
}

/// Options of `up`.
#[derive(Debug, Clone, Copy)]
pub struct UpOptions {
    /// The network's shape.
    pub shape: Shape,
    /// Rate, delay and loss on every link.
    pub links: LinkShape,
}

/// Builds the `trn-*` network in `dir` and starts its client daemon (not
/// connected). Building panics, with the failing command, on a broken
/// system; that becomes an error here, and nothing is left behind.
pub(crate) fn build(
    dir: &Path,
    shape: Shape,
    binaries: Binaries,
    links: LinkShape,
) -> Result<TrineNet, String> {
    let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut net = TrineNet::start(Naming::Tagged(TAG), shape, binaries, dir);
        net.shape_links(links);
        net.start_client();
        net
    }));
    built.map_err(|_| {
        let _ = down(dir);
        "building the network failed (see the message above)".to_string()
    })
}

/// Brings a network up, waits for the client to connect, saves the state
/// and leaves it running. Returns the state.
pub fn up(dir: &Path, binaries: Binaries, options: UpOptions) -> Result<Saved, String> {
    preflight(&binaries)?;
    down(dir)?;
    let started = Instant::now();
    let shape = options.shape;
    let net = build(dir, shape, binaries, options.links)?;
    let out = net.trine(&["up", "--timeout", "180"]);
    if !out.status.success() {
        let message = format!(
            "the client did not connect: {}\nclient log: {}",
            String::from_utf8_lossy(&out.stderr).trim(),
            net.node("client").log().display()
        );
        drop(net);
        let _ = down(dir);
        return Err(message);
    }
    let saved = Saved {
        nodes: net.detach(),
        connect_secs: started.elapsed().as_secs_f64(),
    };
    save(dir, &saved)?;
    Ok(saved)
}

/// Removes every `trn-*` namespace and what runs in it, the namespaces'
/// `/etc/netns` files and the state directory. Idempotent.
pub fn down(dir: &Path) -> Result<(), String> {
    let namespaces = our_namespaces();
    // SIGTERM first: the client restores its namespace, daemons close.
    let mut pids = Vec::new();
    for ns in &namespaces {
        let out = sh(&["ip", "netns", "pids", ns]);
        pids.extend(
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(str::to_string),
        );
    }
    for pid in &pids {
        let _ = sh(&["kill", "-TERM", pid]);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids
        .iter()
        .any(|p| Path::new(&format!("/proc/{p}")).exists())
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    for pid in &pids {
        let _ = sh(&["kill", "-KILL", pid]);
    }
    for ns in &namespaces {
        let _ = sh(&["ip", "netns", "delete", ns]);
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{ns}"));
    }
    let leftover = our_namespaces();
    if !leftover.is_empty() {
        return Err(format!("could not remove namespaces {leftover:?}"));
    }
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("{}: {e}", dir.display())),
    }
}

fn our_namespaces() -> Vec<String> {
    let out = sh(&["ip", "netns", "list"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| name.starts_with(TAG))
        .map(str::to_string)
        .collect()
}

fn running(pid: Option<u32>) -> bool {
    pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists())
}

/// `status`: one line per node, or JSON.
pub fn status(dir: &Path, json: bool) -> Result<String, String> {
    let saved = load(dir)?;
    if json {
        let nodes: Vec<serde_json::Value> = saved
            .nodes
            .iter()
            .map(|n| {
                serde_json::json!({
                    "name": n.name, "role": n.kind, "namespace": n.namespace,
                    "address": n.address, "pid": n.pid, "fingerprint": n.fingerprint,
                    "up": running(n.pid),
                })
            })
            .collect();
        return Ok(serde_json::json!({ "nodes": nodes }).to_string() + "\n");
    }
    let mut out = format!(
        "{:<8} {:<10} {:<12} {:<15} {:>8}  {:<4} {}\n",
        "NODE", "ROLE", "NAMESPACE", "ADDRESS", "PID", "UP", "FINGERPRINT"
    );
    for n in &saved.nodes {
        out.push_str(&format!(
            "{:<8} {:<10} {:<12} {:<15} {:>8}  {:<4} {}\n",
            n.name,
            n.kind,
            n.namespace,
            n.address,
            n.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
            if running(n.pid) { "up" } else { "down" },
            n.fingerprint
                .as_deref()
                .map(|f| &f[..16.min(f.len())])
                .unwrap_or("-"),
        ));
    }
    Ok(out)
}

fn find<'a>(saved: &'a mut Saved, name: &str) -> Result<&'a mut SavedNode, String> {
    let names: Vec<String> = saved.nodes.iter().map(|n| n.name.clone()).collect();
    saved
        .nodes
        .iter_mut()
        .find(|n| n.name == name)
        .ok_or_else(|| format!("no node {name:?}; nodes: {}", names.join(", ")))
}

/// `kill NODE`: SIGKILL, no goodbye.
pub fn kill(dir: &Path, name: &str) -> Result<(), String> {
    let mut saved = load(dir)?;
    let node = find(&mut saved, name)?;
    if let Some(pid) = node.pid.take().filter(|p| running(Some(*p))) {
        let _ = sh(&["kill", "-KILL", &pid.to_string()]);
    }
    save(dir, &saved)
}

/// `start NODE`: runs its command again in its namespace.
pub fn start(dir: &Path, name: &str) -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    let mut saved = load(dir)?;
    let node = find(&mut saved, name)?;
    if running(node.pid) {
        return Err(format!("{name} is already running"));
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&node.log)
        .map_err(|e| format!("{}: {e}", node.log.display()))?;
    let err = log.try_clone().map_err(|e| e.to_string())?;
    let child = Command::new("ip")
        .args(["netns", "exec", &node.namespace])
        .args(&node.command)
        .process_group(0)
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot start {name}: {e}"))?;
    node.pid = Some(child.id());
    save(dir, &saved)
}

/// `exec NODE -- CMD…`: runs CMD in the node's namespace; returns its
/// exit code.
pub fn exec(dir: &Path, name: &str, command: &[String]) -> Result<i32, String> {
    let mut saved = load(dir)?;
    let node = find(&mut saved, name)?;
    let status = Command::new("ip")
        .args(["netns", "exec", &node.namespace])
        .args(command)
        .status()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    Ok(status.code().unwrap_or(1))
}

/// `demo`: up, fetch `http://web.trine.test/ip` through Trine, show who
/// saw what, down. Ok only if the web host saw the exit's address.
pub fn demo(dir: &Path, binaries: Binaries, options: UpOptions) -> Result<(), String> {
    println!(
        "Bringing up a Trine network in namespaces: {} authorities, {} relays, {} exits, a client and a web host…",
        options.shape.authorities, options.shape.relays, options.shape.exits
    );
    let saved = up(dir, binaries.clone(), options)?;
    println!("client connected {:.1} s after start\n", saved.connect_secs);
    let result = demo_checks(dir, &binaries, &saved);
    let cleaned = down(dir);
    println!("\nnetwork removed");
    result.and(cleaned)
}

fn demo_checks(dir: &Path, binaries: &Binaries, saved: &Saved) -> Result<(), String> {
    let socket = dir.join("client/control.sock");
    let status = Command::new(&binaries.client)
        .arg("--socket")
        .arg(&socket)
        .arg("status")
        .output()
        .map_err(|e| e.to_string())?;
    print!(
        "$ trine status\n{}",
        String::from_utf8_lossy(&status.stdout)
    );
    let json = Command::new(&binaries.client)
        .arg("--socket")
        .arg(&socket)
        .args(["status", "--json"])
        .output()
        .map_err(|e| e.to_string())?;
    let json: serde_json::Value =
        serde_json::from_slice(&json.stdout).map_err(|e| format!("trine status --json: {e}"))?;
    let exit = json["exit_address"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let client = saved
        .nodes
        .iter()
        .find(|n| n.name == "client")
        .ok_or("no client node")?;
    let url = format!("http://{WEB_NAME}/ip");
    let fetched = Command::new("ip")
        .args(["netns", "exec", &client.namespace])
        .arg(&binaries.testnet)
        .args(["fetch", &url])
        .output()
        .map_err(|e| e.to_string())?;
    if !fetched.status.success() {
        return Err(format!(
            "fetching {url} through Trine failed: {}",
            String::from_utf8_lossy(&fetched.stderr).trim()
        ));
    }
    let seen = String::from_utf8_lossy(&fetched.stdout).trim().to_string();
    println!("\n$ (in the client's namespace) fetch {url}");
    println!("  the client's own address:   {CLIENT}");
    println!("  the exit's address:         {exit}");
    println!("  the web host saw:           {seen}");
    if seen == exit && seen != CLIENT.to_string() {
        println!("\nOK: the web host saw the exit, not the client.");
        Ok(())
    } else {
        Err(format!("the web host saw {seen}, expected the exit {exit}"))
    }
}

/// `bench-client`: on a fresh network, `rounds` times each: a fetch over
/// the established circuit (the baseline), `trine up` to the first byte
/// through the tunnel, and the time until traffic flows again after the
/// active circuit's exit, middle or guard is killed. Returns the table.
pub fn bench_client(dir: &Path, binaries: Binaries, rounds: usize) -> Result<String, String> {
    preflight(&binaries)?;
    down(dir)?;
    let shape = Shape {
        relays: 6,
        exits: 3,
        ..Shape::default()
    };
    let mut net = build(dir, shape, binaries, LinkShape::default())?;
    let result = bench_rounds(&mut net, rounds);
    drop(net);
    down(dir)?;
    result
}

fn bench_rounds(net: &mut TrineNet, rounds: usize) -> Result<String, String> {
    let web = crate::trine::WEB.to_string();
    let trine_ok = |net: &TrineNet, args: &[&str]| -> Result<(), String> {
        let out = net.trine(args);
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "trine {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    };
    // The first `up` waits for the directory's first consensus: not timed.
    trine_ok(net, &["up", "--timeout", "180"])?;
    let within = Duration::from_secs(60);
    let mut rows: Vec<(String, Vec<Duration>)> = Vec::new();
    let mut baseline = Vec::new();
    for _ in 0..rounds {
        baseline.push(net.fetch_ip_within(&web, within)?.1);
    }
    rows.push((
        "fetch over the established circuit (baseline)".into(),
        baseline,
    ));
    let mut first_byte = Vec::new();
    for _ in 0..rounds {
        trine_ok(net, &["down"])?;
        let started = Instant::now();
        trine_ok(net, &["up", "--timeout", "60"])?;
        net.fetch_ip_within(&web, within)?;
        first_byte.push(started.elapsed());
    }
    rows.push((
        "`trine up` to first byte (consensus cached)".into(),
        first_byte,
    ));
    for (position, label) in [(2, "exit"), (1, "middle"), (0, "guard")] {
        let mut times = Vec::new();
        for _ in 0..rounds {
            wait_standby(net)?;
            let victim = net
                .client_path()
                .get(position)
                .cloned()
                .ok_or("no active circuit")?;
            net.kill(&victim);
            times.push(net.fetch_ip_within(&web, within)?.1);
            net.start_node(&victim);
        }
        rows.push((format!("traffic again after killing the {label}"), times));
    }
    let median = |times: &[Duration]| {
        let mut sorted = times.to_vec();
        sorted.sort();
        sorted[sorted.len() / 2]
    };
    let base = median(&rows[0].1).as_secs_f64().max(1e-6);
    let mut table = format!(
        "| Measurement ({rounds} rounds) | Median | Min | Max | Ratio to baseline |\n|---|---|---|---|---|\n"
    );
    for (label, times) in &rows {
        let (low, high) = (
            times.iter().min().copied().unwrap_or_default(),
            times.iter().max().copied().unwrap_or_default(),
        );
        let m = median(times);
        table.push_str(&format!(
            "| {label} | {:.2} s | {:.2} s | {:.2} s | {:.1}× |\n",
            m.as_secs_f64(),
            low.as_secs_f64(),
            high.as_secs_f64(),
            m.as_secs_f64() / base
        ));
    }
    Ok(table)
}

/// Waits until the client has a standby circuit ready.
fn wait_standby(net: &TrineNet) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while net.client_status()["standby_ready"] != serde_json::Value::Bool(true) {
        if Instant::now() > deadline {
            return Err("no standby circuit within 60 s".to_string());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}
