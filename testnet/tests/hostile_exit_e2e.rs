//! The client's edges under attack, end to end, in namespaces with real
//! processes: three authorities, three relays, one exit that is hostile
//! (`trine-hostile-exit`: the real relay daemon with its real keys, whose
//! operator crafts packets for its clients), a web host and the `trine`
//! daemon on a machine with IP forwarding on and a LAN behind it (a VM
//! host, a hotspot). Checks, by what arrives where:
//!
//! - the exit's packets to a LAN host, to the client's own LAN addresses
//!   and to the network behind the client never enter the client's stack,
//!   reach no host and are counted in `trine status --json`
//!   (`dropped_from_exit`);
//! - its unsolicited SYN, UDP and pings to the tunnel address get no
//!   answer (the kill switch admits only replies from the tunnel), while a
//!   reply to a flow the client opened does come in;
//! - a packet an application sends from the client's LAN address never
//!   reaches the exit (`dropped_to_exit`);
//! - local discovery (broadcast, multicast) never reaches the exit;
//! - SIGKILL of the daemon in the middle of a download, and its restart,
//!   which at first cannot bring the tunnel up; then SIGTERM and another
//!   start: all along (over ten seconds) nothing leaves the client but QUIC
//!   to the authorities and its guards while an application keeps sending,
//!   the block holds, and the daemon reconnects by itself; after `trine
//!   down` a restarted daemon stays down.
//!
//! Every check fails on the code before these defences (the exit's packets
//! were written into the TUN device whatever their destination, the
//! firewall accepted and forwarded anything from the tunnel, and a
//! restarted daemon removed the firewall and stayed disconnected).
//!
//! Needs root; set TRINE_SKIP_NETNS=1 to skip knowingly. Namespaces are
//! named `trhx<pid>…` and removed even when the test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::BTreeSet;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use trine_testnet::hostile::{PAYLOAD, TRIGGER_PORT};
use trine_testnet::netns_tests_enabled;
use trine_testnet::trine::{Binaries, HOSTILE_LOG, Naming, Shape, TrineNet, WEB};

const WATCH: &str = "trine_watch";
/// The client's tunnel device (the default `tunnel.name`).
const TUN: &str = "trine0";
/// Where the exit says its crafted packets come from (inside the tunnel
/// only: no namespace has this address).
const ATTACKER: &str = "198.19.66.66";
const ATTACKER_V6: &str = "2001:db8:66::66";
/// The client's LAN address, and a LAN host (`auth1`).
const CLIENT_LAN: &str = "198.18.0.2";
const LAN_HOST: &str = "198.18.0.11";
/// The network behind the client: its address there, and a host.
const BEHIND_GATEWAY: &str = "198.19.1.1";
const BEHIND_HOST: &str = "198.19.1.2";

/// The helper below, re-run in a namespace: what it is asked to do.
const SEND_FROM: &str = "TRINE_HX_FROM";
const SEND_TO: &str = "TRINE_HX_TO";
const SEND_PAYLOAD: &str = "TRINE_HX_PAYLOAD";
const SEND_EXPECT: &str = "TRINE_HX_EXPECT";
const SEND_REPEAT_MS: &str = "TRINE_HX_REPEAT_MS";
const SEND_FOR_MS: &str = "TRINE_HX_FOR_MS";
const SEND_BROADCAST: &str = "TRINE_HX_BROADCAST";

/// Runs [`udp_sender`] in `namespace` with `env`.
fn sender(namespace: &str, env: &[(&str, String)]) -> Command {
    let mut command = Command::new("ip");
    command
        .args(["netns", "exec", namespace])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "udp_sender",
            "--nocapture",
            "--test-threads",
            "1",
        ]);
    for (key, value) in env {
        command.env(key, value);
    }
    command
}

/// Not a test on its own (it returns at once unless [`sender`] runs it):
/// binds `SEND_FROM`, sends `SEND_PAYLOAD` to `SEND_TO` (every
/// `SEND_REPEAT_MS` until an answer carrying `SEND_EXPECT` comes, or for
/// `SEND_FOR_MS`), and exits 0 once done (1 if no expected answer came).
#[test]
fn udp_sender() {
    let Ok(from) = std::env::var(SEND_FROM) else {
        return;
    };
    let to: SocketAddr = std::env::var(SEND_TO).unwrap().parse().unwrap();
    let payload = std::env::var(SEND_PAYLOAD).unwrap_or_default();
    let expect = std::env::var(SEND_EXPECT).ok();
    let every = Duration::from_millis(
        std::env::var(SEND_REPEAT_MS)
            .ok()
            .and_then(|ms| ms.parse().ok())
            .unwrap_or(500),
    );
    let total = Duration::from_millis(
        std::env::var(SEND_FOR_MS)
            .ok()
            .and_then(|ms| ms.parse().ok())
            .unwrap_or(20_000),
    );
    let socket = UdpSocket::bind(from.as_str()).unwrap();
    socket.set_read_timeout(Some(every)).unwrap();
    socket
        .set_broadcast(std::env::var_os(SEND_BROADCAST).is_some())
        .unwrap();

    let deadline = Instant::now() + total;
    let mut buffer = [0u8; 2048];
    while Instant::now() < deadline {
        // Sending may fail while the tunnel is down: that is the point.
        let _ = socket.send_to(payload.as_bytes(), to);
        let Some(expect) = &expect else {
            std::thread::sleep(every);
            continue;
        };
        if let Ok(len) = socket.recv(&mut buffer) {
            if buffer[..len]
                .windows(expect.len())
                .any(|w| w == expect.as_bytes())
            {
                return;
            }
        }
    }
    if expect.is_some() {
        eprintln!("no answer from {to}");
        std::process::exit(1);
    }
}

/// Sends `commands` to the hostile exit from the tunnel address and
/// waits for its crafted reply to this very flow (UDP to the sender's
/// port): that reply comes after every other packet of the batch, so once
/// it is in, the client has handled them all.
fn attack(net: &TrineNet, commands: &[String], port: u16) {
    let mut lines = commands.to_vec();
    lines.push(format!("udp {ATTACKER}:{TRIGGER_PORT} 172.22.0.2:{port}"));
    let out = sender(
        &net.network.ns("client"),
        &[
            (SEND_FROM, format!("172.22.0.2:{port}")),
            (SEND_TO, format!("{ATTACKER}:{TRIGGER_PORT}")),
            (SEND_PAYLOAD, lines.join("\n")),
            (SEND_EXPECT, String::from_utf8_lossy(PAYLOAD).into_owned()),
        ],
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "the exit's reply to the client's own flow never came in: {}\nclient log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        net.log("client")
    );
}

/// Counts packets arriving in `role`'s namespace that match one of
/// `matches` (before any other rule: whatever gets there is counted).
fn watch_arrivals(net: &TrineNet, role: &str, matches: &[&str]) {
    let rules: String = matches
        .iter()
        .map(|m| format!("  {m} counter comment \"{}\"\n", m.replace('"', "")))
        .collect();
    net.nft_in(
        role,
        &format!(
            "table inet {WATCH} {{\n chain pre {{\n  type filter hook prerouting priority -400; policy accept;\n{rules} }}\n}}\n"
        ),
    );
}

fn arrivals(net: &TrineNet, role: &str) -> Vec<(String, u64)> {
    net.counters_in(role, "inet", WATCH)
        .into_iter()
        .filter(|(_, packets)| *packets > 0)
        .collect()
}

fn status_u64(net: &TrineNet, key: &str) -> u64 {
    net.client_status()[key].as_u64().unwrap_or(0)
}

fn wait_connected(net: &TrineNet, within: Duration, what: &str) {
    let deadline = Instant::now() + within;
    while net.client_status()["state"] != "connected" {
        assert!(
            Instant::now() < deadline,
            "{what}: not connected within {within:?}; status {}\nclient log:\n{}",
            net.client_status(),
            net.log("client")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The client's guards: on the active path and in its guard list.
fn guards(net: &TrineNet, seen: &mut BTreeSet<String>) {
    if let Some(guard) = net.client_path().first() {
        seen.insert(guard.clone());
    }
    let listed: serde_json::Value =
        serde_json::from_slice(&net.trine(&["guards", "--json"]).stdout).unwrap();
    for guard in listed.as_array().into_iter().flatten() {
        if let Some(nickname) = guard["nickname"].as_str() {
            seen.insert(nickname.to_string());
        }
    }
}

#[test]
fn a_hostile_exit_reaches_nothing_and_a_crash_leaks_nothing() {
    if std::env::var_os(SEND_FROM).is_some() || !netns_tests_enabled() {
        return;
    }
    let root = std::env::temp_dir().join(format!("trine-hostile-e2e-{}", std::process::id()));
    let shape = Shape {
        exits: 1,
        hostile_exit: true,
        interval_secs: 6,
        ..Shape::default()
    };
    let mut net = TrineNet::start(
        Naming::PerProcess("trhx"),
        shape,
        Binaries::beside(Path::new(env!("CARGO_BIN_EXE_trine-testnet"))),
        &root,
    );
    // The client is a router: forwarding on, a LAN behind it, a default
    // route via a LAN host (so anything let out in the clear would show).
    net.network.attach_behind(
        "behind",
        "client",
        &format!("{BEHIND_GATEWAY}/24"),
        &format!("{BEHIND_HOST}/24"),
    );
    for args in [
        &["sysctl", "-qw", "net.ipv4.ip_forward=1"][..],
        &["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"],
        &["ip", "route", "add", "default", "via", LAN_HOST],
    ] {
        let out = net.exec("client", args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let from_attacker = [
        format!("ip saddr {ATTACKER}"),
        format!("ip6 saddr {ATTACKER_V6}"),
    ];
    let from_attacker: Vec<&str> = from_attacker.iter().map(String::as_str).collect();
    watch_arrivals(&net, "behind", &from_attacker);
    watch_arrivals(&net, "auth1", &from_attacker);
    // In the client, the exit's packets to the tunnel address arrive (and
    // the kill switch answers none); any other is one too many. (The
    // kernel's own copies of broadcast and multicast the client sends come
    // back in on the device too, from the tunnel address: not counted.)
    watch_arrivals(
        &net,
        "client",
        &[
            &format!("iifname \"{TUN}\" ip saddr != 172.22.0.2 ip daddr != 172.22.0.2"),
            &format!("iifname \"{TUN}\" ip6 saddr != fd74:726e::2 ip6 daddr != fd74:726e::2"),
        ],
    );

    net.start_client();
    net.up_watched(WATCH);
    wait_connected(&net, Duration::from_secs(120), "trine up");
    assert_eq!(net.client_path().last().map(String::as_str), Some("exit1"));
    // The counters above watch this very device.
    let link = net.exec("client", &["ip", "link", "show", TUN]);
    assert!(link.status.success(), "no tunnel device {TUN}");

    // The attack: every packet the exit can think of, then (after the
    // client handled them all) a second round, so that any answer the
    // client's stack gave to the first is at the exit before we look.
    let first_round: Vec<String> = vec![
        format!("udp {ATTACKER} {LAN_HOST}:7001"),
        format!("udp {ATTACKER} {CLIENT_LAN}:7001"),
        format!("udp {ATTACKER} {BEHIND_HOST}:7001"),
        format!("udp {ATTACKER} {BEHIND_GATEWAY}:7001"),
        format!("ping {ATTACKER} {LAN_HOST}"),
        format!("ping {ATTACKER_V6} fe80::1"),
        format!("syn {ATTACKER} 172.22.0.2:7002"),
        format!("udp {ATTACKER} 172.22.0.2:7003"),
        format!("ping {ATTACKER} 172.22.0.2"),
        format!("ping {ATTACKER_V6} fd74:726e::2"),
    ];
    attack(&net, &first_round, 40001);
    // An application bound to the LAN address, its packet routed into
    // the tunnel: the exit must never see that address. Nor local
    // discovery (broadcast, multicast), which identifies the machine.
    let to_exit_before = status_u64(&net, "dropped_to_exit");
    for (from, to, broadcast) in [
        (
            format!("{CLIENT_LAN}:40002"),
            format!("{ATTACKER}:9"),
            false,
        ),
        (
            "0.0.0.0:40005".to_string(),
            "255.255.255.255:17500".to_string(),
            true,
        ),
        (
            "0.0.0.0:40006".to_string(),
            "239.255.255.250:1900".to_string(),
            false,
        ),
    ] {
        let mut env = vec![
            (SEND_FROM, from),
            (SEND_TO, to),
            (SEND_PAYLOAD, "who is here?".to_string()),
            (SEND_FOR_MS, "1".to_string()),
        ];
        if broadcast {
            env.push((SEND_BROADCAST, "1".to_string()));
        }
        let out = sender(&net.network.ns("client"), &env).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    attack(&net, &[], 40003);

    let learned = std::fs::read_to_string(net.node("exit1").dir.join(HOSTILE_LOG)).unwrap();
    assert!(
        learned.matches("trigger:").count() >= 2,
        "the exit did not get both rounds: {learned}"
    );
    let seen: Vec<&str> = learned.lines().filter(|l| l.starts_with("seen")).collect();
    assert!(
        seen.is_empty(),
        "the hostile exit got answers or a LAN address: {seen:#?}"
    );
    for role in ["client", "auth1", "behind"] {
        let got = arrivals(&net, role);
        assert!(got.is_empty(), "the exit's packets reached {role}: {got:?}");
    }
    let mut guard_names = BTreeSet::new();
    guards(&net, &mut guard_names);
    let leaks = net.client_leaks(WATCH, &guard_names);
    assert!(leaks.is_empty(), "left the client: {leaks:?}");
    // Six of the first round's packets are not for the tunnel address;
    // each trigger the exit got (the sender repeats until answered) sent
    // them all. A lost one fails here rather than passing unseen.
    let batches = learned
        .matches(&format!("trigger: {} commands", first_round.len() + 1))
        .count() as u64;
    let from_exit = status_u64(&net, "dropped_from_exit");
    assert_eq!(
        from_exit,
        6 * batches,
        "packets from the exit counted as dropped ({batches} batches of 6 to LAN addresses)"
    );
    let to_exit = status_u64(&net, "dropped_to_exit") - to_exit_before;
    assert!(
        to_exit >= 3,
        "{to_exit} packets to the exit dropped, not the LAN-sourced, broadcast and multicast ones"
    );

    // The crash: SIGKILL in the middle of a download, restarted at once
    // (as systemd's Restart= would), while an application keeps sending.
    let mut download = Command::new("ip")
        .args(["netns", "exec", &net.network.ns("client")])
        .arg(&net.binaries.testnet)
        .args(["fetch", "--timeout", "5"])
        .arg(format!("http://{WEB}/bytes/{}", 1u64 << 30))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let down_before = status_u64(&net, "bytes_down");
    let deadline = Instant::now() + Duration::from_secs(10);
    while status_u64(&net, "bytes_down") < down_before + (1 << 20) {
        assert!(Instant::now() < deadline, "the download did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut chatter: Child = sender(
        &net.network.ns("client"),
        &[
            (SEND_FROM, "0.0.0.0:40004".to_string()),
            (SEND_TO, format!("{WEB}:7")),
            (SEND_PAYLOAD, "in the clear?".to_string()),
            (SEND_REPEAT_MS, "20".to_string()),
            (SEND_FOR_MS, "120000".to_string()),
        ],
    )
    .stdout(Stdio::null())
    .spawn()
    .unwrap();
    guards(&net, &mut guard_names);
    let killed_at = Instant::now();
    net.kill("client");
    // The restarted daemon cannot bring the tunnel up at first (a device
    // already holds the tunnel's name): the block must hold, and it must
    // keep trying by itself.
    let failures = |net: &TrineNet| {
        net.log("client")
            .matches("cannot bring the tunnel up")
            .count()
    };
    let failed_before = failures(&net);
    // (A veth: this kernel has no dummy devices. The dead daemon's device
    // goes once the kernel has let go of it.)
    let squat = [
        "ip", "link", "add", TUN, "type", "veth", "peer", "name", "trine0x",
    ];
    let deadline = Instant::now() + Duration::from_secs(10);
    while !net.exec("client", &squat).status.success() {
        assert!(
            Instant::now() < deadline,
            "cannot take the name {TUN}: {:?}",
            net.exec("client", &squat)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    net.start_node("client");
    net.wait_client_socket();
    let deadline = Instant::now() + Duration::from_secs(20);
    while failures(&net) < failed_before + 2 {
        assert!(
            Instant::now() < deadline,
            "the daemon did not try again; log:\n{}",
            net.log("client")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(net.client_status()["state"], "blocked");
    assert!(
        net.exec("client", &["nft", "list", "table", "inet", "trine_client"])
            .status
            .success(),
        "a failed reconnect opened the firewall"
    );
    assert!(
        net.exec("client", &["ip", "link", "del", TUN])
            .status
            .success()
    );
    wait_connected(&net, Duration::from_secs(60), "after the crash, by itself");
    let reconnected = killed_at.elapsed();
    // A clean stop (SIGTERM: `systemctl restart`, an upgrade) keeps the
    // block too while the target is up; the next start reconnects.
    assert!(
        net.stop("client", Duration::from_secs(10)),
        "the daemon ignored SIGTERM"
    );
    assert!(
        net.exec("client", &["nft", "list", "table", "inet", "trine_client"])
            .status
            .success(),
        "SIGTERM opened the firewall while the target was up"
    );
    net.start_node("client");
    net.wait_client_socket();
    wait_connected(&net, Duration::from_secs(60), "after SIGTERM, by itself");
    // The application keeps sending for at least ten seconds after the
    // kill, whatever the restarts took: the window the counters watch.
    if let Some(rest) = Duration::from_secs(10).checked_sub(killed_at.elapsed()) {
        std::thread::sleep(rest);
    }
    let _ = chatter.kill();
    let _ = chatter.wait();
    let _ = download.kill();
    let _ = download.wait();
    guards(&net, &mut guard_names);
    let leaks = net.client_leaks(WATCH, &guard_names);
    assert!(
        leaks.is_empty(),
        "left the client around the crash and restarts: {leaks:?} (guards {guard_names:?})"
    );
    eprintln!("reconnected {reconnected:?} after the SIGKILL, nothing leaked");
    let (seen, _) = net
        .fetch_ip_within(&WEB.to_string(), Duration::from_secs(30))
        .unwrap_or_else(|error| panic!("no traffic after the restart: {error}"));
    assert_eq!(seen, net.node("exit1").address.to_string());

    // `trine down` is the user's word: a daemon started after it stays
    // down and opens the firewall.
    assert!(net.trine(&["down"]).status.success());
    assert!(
        net.stop("client", Duration::from_secs(10)),
        "the daemon ignored SIGTERM"
    );
    net.start_node("client");
    net.wait_client_socket();
    assert_eq!(net.client_status()["state"], "disconnected");
    assert!(
        !net.exec("client", &["nft", "list", "table", "inet", "trine_client"])
            .status
            .success(),
        "the firewall stayed after `trine down` and a restart"
    );
    drop(net);
    let _ = std::fs::remove_dir_all(&root);
}
