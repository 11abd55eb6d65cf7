//! The kill switch and the tunnel routing, for real, in network namespaces
//! (needs root, `ip` and `nft`).
//!
//! Four namespaces joined by a bridge in a hub namespace, on 198.18.0.0/24
//! and 2001:db8:7472::/64, never linked to the host's network: the client
//! (198.18.0.2, with a TUN device `trn0` made by `ip tuntap` and default
//! routes via the other host), a guard (198.18.0.3, UDP 9443) and an
//! "other" host (198.18.0.4 and 2001:db8:7472::4, which also holds the
//! public-resolver address 8.8.8.8 on its loopback). Receivers in the guard
//! and other namespaces report every datagram or connection they get; the
//! client side (this binary re-run in the client namespace, one process per
//! step) applies and removes the kill switch and routes through the
//! library and sends probes. Named nftables counters on the hub's bridge
//! port for the client count what actually reaches the wire: while the
//! kill switch is on, no IPv6 frame at all and no IPv4 packet to anyone
//! but the guard.
//!
//! The daemon will mark its QUIC socket with `SO_MARK`. The test marks by
//! a real firewall mark too, but sets it with a test-only nftables `route`
//! chain at mangle priority (`udp sport 40123 meta mark set …`), which runs
//! before the kill switch and re-routes like `SO_MARK`; no socket option
//! crate is needed.
//!
//! Without root this test fails; set TRINE_SKIP_NETNS=1 to skip it
//! knowingly. Namespaces are named `trkc<pid>…`; leftovers of dead runs
//! are removed first, and this run's are removed even when it fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use trine_client::os::{KillSwitchSpec, RoutesSpec, TRINE_FWMARK, killswitch, routes};
use trine_testnet::{Network, Node, must, netns_tests_enabled};

const PREFIX: &str = "trkc";
const TUN: &str = "trn0";
const GUARD: &str = "198.18.0.3:9443";
const OTHER_UDP: &str = "198.18.0.4:7000";
const OTHER_TCP: &str = "198.18.0.4:8000";
const PUBLIC_DNS: &str = "8.8.8.8:53";
const OTHER_V6: &str = "[2001:db8:7472::4]:7000";
const MARKED_PORT: &str = "40123";
const UNMARKED_PORT: &str = "40124";

fn build_network() -> Network {
    let node = |role, ipv4, ipv6| Node {
        role,
        ipv4,
        ipv6: Some(ipv6),
    };
    let network = Network::build(
        PREFIX,
        &[
            node("c", "198.18.0.2/24", "2001:db8:7472::2/64"),
            node("g", "198.18.0.3/24", "2001:db8:7472::3/64"),
            node("o", "198.18.0.4/24", "2001:db8:7472::4/64"),
        ],
    );
    let client = network.ns("c");
    let other = network.ns("o");
    // The other host is the client's gateway and owns the "public resolver".
    must(&["ip", "-n", &other, "addr", "add", "8.8.8.8/32", "dev", "lo"]);
    must(&[
        "ip",
        "-n",
        &client,
        "route",
        "add",
        "default",
        "via",
        "198.18.0.4",
    ]);
    must(&[
        "ip",
        "-n",
        &client,
        "-6",
        "route",
        "add",
        "default",
        "via",
        "2001:db8:7472::4",
    ]);
    // The tunnel device (nobody reads it: what enters it goes nowhere).
    must(&[
        "ip", "-n", &client, "tuntap", "add", "dev", TUN, "mode", "tun",
    ]);
    must(&["ip", "-n", &client, "link", "set", TUN, "up"]);
    // Test-only: UDP from port 40123 carries the daemon's mark.
    let mark = format!("{TRINE_FWMARK:#x}");
    for rule in [
        vec!["add", "table", "inet", "trine_test_mark"],
        vec![
            "add",
            "chain",
            "inet",
            "trine_test_mark",
            "out",
            "{ type route hook output priority mangle; }",
        ],
        vec![
            "add",
            "rule",
            "inet",
            "trine_test_mark",
            "out",
            "udp",
            "sport",
            MARKED_PORT,
            "meta",
            "mark",
            "set",
            &mark,
        ],
    ] {
        let mut args = vec!["nft"];
        args.extend(rule);
        let out = network.exec("c", &args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    watch_the_wire(&network);
    network
}

/// In the hub, named counters of what the client's veth puts on the
/// bridge: any IPv6 frame (`leaked6`) and any IPv4 packet not to the guard
/// (`leaked4`). While the kill switch is on both must stay at zero.
fn watch_the_wire(network: &Network) {
    let port = format!("\"{}\"", network.hub_port("c"));
    let script = format!(
        "table bridge trine_test_watch {{\n\
         \x20   counter leaked6 {{ }}\n\
         \x20   counter leaked4 {{ }}\n\
         \x20   chain watch {{\n\
         \x20       type filter hook forward priority 0;\n\
         \x20       iifname {port} ether type ip6 counter name leaked6\n\
         \x20       iifname {port} ether type ip ip daddr != 198.18.0.3 counter name leaked4\n\
         \x20   }}\n\
         }}\n"
    );
    let path = std::env::temp_dir().join(format!("{}-watch.nft", network.ns("c")));
    std::fs::write(&path, script).unwrap();
    let out = network.exec(trine_testnet::HUB, &["nft", "-f", path.to_str().unwrap()]);
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Zeroes the wire counters.
fn reset_wire(network: &Network) {
    for name in ["leaked4", "leaked6"] {
        let out = network.exec(
            trine_testnet::HUB,
            &[
                "nft",
                "reset",
                "counter",
                "bridge",
                "trine_test_watch",
                name,
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Whether the client put nothing counted on the wire since the reset.
fn wire_silent(network: &Network, name: &str) -> bool {
    let out = network.exec(
        trine_testnet::HUB,
        &["nft", "list", "counter", "bridge", "trine_test_watch", name],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    contains(&out, "packets 0 bytes 0")
}

/// Re-runs this test binary inside `namespace`, running one ignored test.
fn helper(namespace: &str, test: &str, env: (&str, &str)) -> Command {
    let me = std::env::current_exe().unwrap();
    let mut command = Command::new("ip");
    command
        .args(["netns", "exec", namespace])
        .arg(me)
        .args([
            "--exact",
            test,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("TRINE_NETNS_HELPER", "1")
        .env(env.0, env.1);
    command
}

/// Starts a receiver in `role`'s namespace; its reports go to `sink`.
fn start_receiver(network: &mut Network, role: &str, listen: &str, sink: mpsc::Sender<String>) {
    let mut child = helper(&network.ns(role), "receiver", ("TRINE_LISTEN", listen))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    network.children.push(child);
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // libtest may put "test receiver ... " before the first line.
            if line.ends_with("ready") {
                let _ = ready_tx.send(());
            } else if let Some(at) = line.find("got ") {
                let _ = sink.send(line[at..].to_string());
            }
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("receiver did not start");
}

/// Runs one client step (see `client_step`) and returns what it printed.
fn step(network: &Network, what: &str) -> String {
    let out = helper(&network.ns("c"), "client_step", ("TRINE_STEP", what))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success() && stdout.contains("step done"),
        "client step {what:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Sends a probe and asserts the receiver reports `expected` in time.
fn arrives(network: &Network, got: &Receiver<String>, probe: &str, expected: &str) {
    while got.try_recv().is_ok() {}
    step(network, probe);
    let deadline = Instant::now() + Duration::from_secs(3);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match got.recv_timeout(left) {
            Ok(line) if line == expected => return,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    panic!("{probe:?}: expected {expected:?} at the receiver, nothing came");
}

/// Sends a probe and asserts no receiver reports anything within a second.
fn blocked(network: &Network, got: &Receiver<String>, probe: &str) {
    while got.try_recv().is_ok() {}
    let printed = step(network, probe);
    if let Ok(line) = got.recv_timeout(Duration::from_secs(1)) {
        panic!("{probe:?} leaked: receiver reported {line:?} (client printed {printed})");
    }
}

fn contains(output: &std::process::Output, needle: &str) -> bool {
    String::from_utf8_lossy(&output.stdout).contains(needle)
}

fn assert_all_removed(network: &Network) {
    let tables = network.exec("c", &["nft", "list", "tables"]);
    assert!(tables.status.success());
    assert!(
        !contains(&tables, "trine_client"),
        "nftables table left behind"
    );
    for family in ["-4", "-6"] {
        let rules = network.exec("c", &["ip", family, "rule", "show"]);
        assert!(rules.status.success());
        for needle in ["7472", "7473"] {
            assert!(!contains(&rules, needle), "ip {family} rule left behind");
        }
        let table = network.exec("c", &["ip", family, "route", "show", "table", "7472"]);
        assert!(
            !table.status.success() || table.stdout.is_empty(),
            "ip {family} routes left in table 7472"
        );
    }
}

#[test]
fn kill_switch_and_routes_block_leaks_and_are_removed_cleanly() {
    if !netns_tests_enabled() {
        return;
    }
    let mut network = build_network();
    let (sink, got) = mpsc::channel();
    start_receiver(&mut network, "g", &format!("udp@{GUARD}"), sink.clone());
    let other =
        format!("udp@{OTHER_UDP},tcp@{OTHER_TCP},udp@{PUBLIC_DNS},tcp@{PUBLIC_DNS},udp@{OTHER_V6}");
    start_receiver(&mut network, "o", &other, sink);
    let net = &network;
    let udp = |sport: &str, dest: &str| format!("udp {sport} {dest}");

    // Before: everything reaches the other host (the probes work).
    arrives(
        net,
        &got,
        &udp(UNMARKED_PORT, OTHER_UDP),
        &format!("got udp {OTHER_UDP}"),
    );
    arrives(
        net,
        &got,
        &format!("tcp {OTHER_TCP}"),
        &format!("got tcp {OTHER_TCP}"),
    );
    arrives(
        net,
        &got,
        &udp(UNMARKED_PORT, PUBLIC_DNS),
        &format!("got udp {PUBLIC_DNS}"),
    );
    arrives(
        net,
        &got,
        &udp(UNMARKED_PORT, OTHER_V6),
        &format!("got udp {OTHER_V6}"),
    );

    // The kill switch alone (as while reconnecting, routes aside): only
    // marked UDP to the guard leaves. Applying twice replaces it.
    step(net, "killswitch");
    step(net, "killswitch");
    reset_wire(net);
    let tables = network.exec("c", &["nft", "list", "tables"]);
    assert!(contains(&tables, "trine_client"));
    arrives(
        net,
        &got,
        &udp(MARKED_PORT, GUARD),
        &format!("got udp {GUARD}"),
    );
    blocked(net, &got, &udp(UNMARKED_PORT, GUARD));
    blocked(net, &got, &udp(MARKED_PORT, OTHER_UDP));
    blocked(net, &got, &udp(UNMARKED_PORT, OTHER_UDP));
    blocked(net, &got, &format!("tcp {OTHER_TCP}"));
    blocked(net, &got, &udp(UNMARKED_PORT, PUBLIC_DNS));
    blocked(net, &got, &format!("tcp {PUBLIC_DNS}"));
    blocked(net, &got, &udp(UNMARKED_PORT, OTHER_V6));

    // Lockdown: not even the guard.
    step(net, "lockdown");
    blocked(net, &got, &udp(MARKED_PORT, GUARD));
    step(net, "killswitch");

    // With the tunnel routing: marked traffic still bypasses the tunnel.
    step(net, "routes");
    step(net, "routes");
    let table = network.exec("c", &["ip", "route", "show", "table", "7472"]);
    assert!(contains(&table, TUN), "no default route into {TUN}");
    let rules = network.exec("c", &["ip", "-6", "rule", "show"]);
    assert!(contains(&rules, "7473"), "no IPv6 rule");
    arrives(
        net,
        &got,
        &udp(MARKED_PORT, GUARD),
        &format!("got udp {GUARD}"),
    );
    blocked(net, &got, &udp(UNMARKED_PORT, OTHER_UDP));
    blocked(net, &got, &udp(UNMARKED_PORT, PUBLIC_DNS));
    blocked(net, &got, &udp(UNMARKED_PORT, OTHER_V6));

    // Nothing but UDP to the guard reached the wire, no IPv6 at all.
    assert!(wire_silent(net, "leaked6"), "IPv6 left the client");
    assert!(
        wire_silent(net, "leaked4"),
        "IPv4 not to the guard left the client"
    );

    // After removal (twice: idempotent) nothing remains and all flows.
    step(net, "remove");
    step(net, "remove");
    assert_all_removed(net);
    arrives(
        net,
        &got,
        &udp(UNMARKED_PORT, OTHER_UDP),
        &format!("got udp {OTHER_UDP}"),
    );
    arrives(
        net,
        &got,
        &format!("tcp {OTHER_TCP}"),
        &format!("got tcp {OTHER_TCP}"),
    );
    arrives(
        net,
        &got,
        &udp(UNMARKED_PORT, PUBLIC_DNS),
        &format!("got udp {PUBLIC_DNS}"),
    );
    arrives(
        net,
        &got,
        &udp(UNMARKED_PORT, OTHER_V6),
        &format!("got udp {OTHER_V6}"),
    );
    drop(network);
}

/// Runs in a receiver namespace: listens on every `proto@address` in
/// TRINE_LISTEN and prints `got proto address` per datagram or connection.
#[test]
#[ignore = "helper: run inside a namespace by the kill switch test"]
fn receiver() {
    if std::env::var_os("TRINE_NETNS_HELPER").is_none() {
        return;
    }
    let listen = std::env::var("TRINE_LISTEN").unwrap();
    let mut threads = Vec::new();
    for item in listen.split(',') {
        let (proto, address) = item.split_once('@').unwrap();
        let address: SocketAddr = address.parse().unwrap();
        if proto == "udp" {
            let socket = UdpSocket::bind(address).unwrap();
            threads.push(std::thread::spawn(move || {
                let mut buf = [0; 2048];
                while socket.recv_from(&mut buf).is_ok() {
                    println!("got udp {address}");
                }
            }));
        } else {
            let listener = TcpListener::bind(address).unwrap();
            threads.push(std::thread::spawn(move || {
                for stream in listener.incoming() {
                    println!("got tcp {address}");
                    if let Ok(mut stream) = stream {
                        let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
                        let _ = stream.read(&mut [0; 16]);
                    }
                }
            }));
        }
    }
    println!("ready");
    let _ = std::io::stdout().flush();
    for thread in threads {
        let _ = thread.join();
    }
}

/// Runs in the client namespace: one step from TRINE_STEP, then prints
/// "step done".
#[test]
#[ignore = "helper: run inside a namespace by the kill switch test"]
fn client_step() {
    if std::env::var_os("TRINE_NETNS_HELPER").is_none() {
        return;
    }
    let what = std::env::var("TRINE_STEP").unwrap();
    let words: Vec<&str> = what.split_whitespace().collect();
    let kill_switch = |guard: Option<&str>| KillSwitchSpec {
        tun_name: TUN.to_string(),
        peers: guard.iter().map(|g| g.parse().unwrap()).collect(),
        fwmark: TRINE_FWMARK,
    };
    match words.as_slice() {
        ["killswitch"] => killswitch::apply(&kill_switch(Some(GUARD))).unwrap(),
        ["lockdown"] => killswitch::apply(&kill_switch(None)).unwrap(),
        ["routes"] => routes::apply(&RoutesSpec {
            tun_name: TUN.to_string(),
            fwmark: TRINE_FWMARK,
            ipv6: true,
        })
        .unwrap(),
        ["remove"] => {
            killswitch::remove().unwrap();
            routes::remove().unwrap();
        }
        ["udp", sport, dest] => {
            let dest: SocketAddr = dest.parse().unwrap();
            let local = if dest.is_ipv4() { "0.0.0.0" } else { "[::]" };
            let socket = UdpSocket::bind(format!("{local}:{sport}")).unwrap();
            for _ in 0..3 {
                match socket.send_to(b"probe", dest) {
                    Ok(_) => println!("sent"),
                    Err(error) => println!("send error: {error}"),
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        ["tcp", dest] => {
            let dest: SocketAddr = dest.parse().unwrap();
            match TcpStream::connect_timeout(&dest, Duration::from_secs(1)) {
                Ok(_) => println!("connected"),
                Err(error) => println!("connect error: {error}"),
            }
        }
        _ => panic!("unknown step {what:?}"),
    }
    println!("step done");
}
