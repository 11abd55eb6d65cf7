//! The client, end to end, in namespaces with real processes: three
//! authorities, three relays, two exits, a web host and the `trine`
//! daemon. Checks, by what arrives where:
//!
//! - after `trine up`, the web host sees the exit's address, never the
//!   client's, and DNS queries reach the web host's resolver from the exit;
//! - a 5 MiB download through the tunnel is byte-exact;
//! - killing the exit, the middle and the guard of the active circuit (one
//!   at a time, each in the middle of a bulk download) — traffic resumes
//!   within a bound;
//! - all along, a counter on the hub's bridge port of the client sees
//!   nothing leave the client but QUIC to authorities and to the guards it
//!   used (no plaintext, no DNS, no IPv6);
//! - `trine down` restores the namespace's routes, rules, resolver file and
//!   firewall exactly.
//!
//! Needs root; set TRINE_SKIP_NETNS=1 to skip knowingly. Namespaces are
//! named `trce<pid>…` and removed even when the test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use trine_testnet::netns_tests_enabled;
use trine_testnet::trine::{Binaries, CLIENT, Kind, Naming, Shape, TrineNet, WEB, WEB_NAME};

const WATCH: &str = "trine_watch";

/// The client namespace's networking state, as text, for before/after.
fn snapshot(net: &TrineNet) -> String {
    let mut text = String::new();
    for args in [
        &["ip", "-4", "rule"][..],
        &["ip", "-6", "rule"],
        &["ip", "-4", "route", "show", "table", "all"],
        &["ip", "-6", "route", "show", "table", "all"],
        &["nft", "list", "ruleset"],
        &["ip", "-br", "link"],
    ] {
        let out = net.exec("client", args);
        text.push_str(&format!("$ {}\n", args.join(" ")));
        // eth0's link-local address shows up whenever its duplicate
        // address detection finishes, which has nothing to do with Trine.
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if !line.contains("fe80::") {
                text.push_str(line);
                text.push('\n');
            }
        }
    }
    text.push_str(&std::fs::read_to_string(net.client_resolv_conf()).unwrap());
    text
}

/// Fetches `/ip` from `host` through the tunnel until it works.
fn fetch_ip_within(net: &TrineNet, host: &str, within: Duration) -> (String, Duration) {
    net.fetch_ip_within(host, within).unwrap_or_else(|error| {
        panic!(
            "no traffic through the tunnel within {within:?}: {error}\nclient log:\n{}",
            net.log("client")
        )
    })
}

#[test]
fn client_tunnels_everything_fails_over_and_leaves_no_trace() {
    if !netns_tests_enabled() {
        return;
    }
    let root = std::env::temp_dir().join(format!("trine-client-e2e-{}", std::process::id()));
    let shape = Shape {
        interval_secs: 6,
        ..Shape::default()
    };
    let mut net = TrineNet::start(
        Naming::PerProcess("trce"),
        shape,
        Binaries::beside(Path::new(env!("CARGO_BIN_EXE_trine-testnet"))),
        &root,
    );
    let exits: BTreeSet<String> = net
        .nodes
        .iter()
        .filter(|n| n.kind == Kind::Exit)
        .map(|n| n.address.to_string())
        .collect();

    net.start_client();
    let before = snapshot(&net);

    // Up. Before the kill switch is in, the namespace is unprotected by
    // design (its IPv6 router solicitations go out, say), so the watch on
    // the bridge starts once the table exists; then wait for the
    // directory's first consensus and a circuit.
    net.up_watched(WATCH);
    let out = net.trine(&["up", "--timeout", "120"]);
    assert!(
        out.status.success(),
        "trine up failed: {}\nclient log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        net.log("client")
    );
    let mut guards = BTreeSet::new();
    let first = net.client_status();
    assert_eq!(first["state"], "connected");
    let path = net.client_path();
    assert_eq!(path.len(), 3, "three hops");
    guards.insert(path[0].clone());

    // Privacy: the web host sees the exit, DNS came from the exit.
    let (seen, _) = fetch_ip_within(&net, WEB_NAME, Duration::from_secs(20));
    assert!(exits.contains(&seen), "web host saw {seen}, not an exit");
    assert_ne!(seen, CLIENT.to_string());
    assert_eq!(first["exit_address"].as_str(), Some(seen.as_str()));
    let web_log = std::fs::read_to_string(net.node("web").dir.join("requests.log")).unwrap();
    assert!(
        web_log.contains(&format!("dns {seen} {WEB_NAME}")),
        "{web_log}"
    );
    assert!(
        !web_log.contains(&CLIENT.to_string()),
        "the client reached the web host: {web_log}"
    );

    // A download, byte for byte.
    let out = net.exec(
        "client",
        &[
            net.binaries.testnet.to_str().unwrap(),
            "fetch",
            "--check",
            &format!("http://{WEB}/bytes/{}", 5 << 20),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Failover: kill each position of the active circuit in turn, in the
    // middle of a bulk download.
    for position in [2, 1, 0] {
        let victim = net.client_path()[position].clone();
        let mut transfer = std::process::Command::new("ip")
            .args(["netns", "exec", &net.network.ns("client")])
            .arg(&net.binaries.testnet)
            .args(["fetch", "--timeout", "5"])
            .arg(format!("http://{WEB}/bytes/{}", 1u64 << 30))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // The download is under way: bytes flow down the circuit.
        let down_before = net.client_status()["bytes_down"].as_u64().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while net.client_status()["bytes_down"].as_u64().unwrap() < down_before + (1 << 20) {
            assert!(Instant::now() < deadline, "the download did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        net.kill(&victim);
        // By address: a DNS query lost in the dead circuit would add the
        // resolver's 5 s retry to the measurement.
        let (seen, took) = fetch_ip_within(&net, &WEB.to_string(), Duration::from_secs(40));
        assert!(exits.contains(&seen));
        eprintln!("failover after killing position {position} ({victim}): {took:?}");
        let _ = transfer.kill();
        let _ = transfer.wait();
        let after = net.client_path();
        assert!(!after.contains(&victim), "still using {victim}");
        guards.insert(after[0].clone());
        net.start_node(&victim);
    }

    // Nothing but QUIC to authorities and guards left the client. The
    // guards are those seen on the active path plus the client's own
    // guard list: after a guard dies the client may dial the next ones
    // in its list between two looks at its path.
    let listed: serde_json::Value =
        serde_json::from_slice(&net.trine(&["guards", "--json"]).stdout).unwrap();
    for guard in listed.as_array().unwrap() {
        if let Some(nickname) = guard["nickname"].as_str() {
            guards.insert(nickname.to_string());
        }
    }
    let leaks = net.client_leaks(WATCH, &guards);
    assert!(
        leaks.is_empty(),
        "left the client: {leaks:?} (guards: {guards:?})"
    );

    // Down restores everything as it was.
    let out = net.trine(&["down"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The TUN device goes when its last reader lets go: poll briefly.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut after = snapshot(&net);
    while after != before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        after = snapshot(&net);
    }
    assert_eq!(after, before, "trine down left the namespace changed");

    // Lockdown while disconnected: blocked, nothing may leave; off again
    // restores the namespace exactly.
    let out = net.trine(&["lockdown", "on"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(net.client_status()["state"], "blocked");
    let table = net.exec("client", &["nft", "list", "table", "inet", "trine_client"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("policy drop"), "no lockdown table: {table}");
    assert!(
        !table
            .lines()
            .any(|l| l.contains("meta mark") && l.contains("accept")),
        "lockdown lets the daemon's socket out: {table}"
    );
    let out = net.trine(&["lockdown", "off"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(net.client_status()["state"], "disconnected");
    assert_eq!(
        snapshot(&net),
        before,
        "lockdown off left the namespace changed"
    );

    // A settings change: refused with the reason when out of range; kept
    // and used from the next `up`.
    let out = net.trine(&["settings", "set", "--mtu", "576"]);
    assert!(!out.status.success(), "an MTU of 576 was accepted");
    let refusal = String::from_utf8_lossy(&out.stderr);
    assert!(refusal.contains("must be between 1280"), "{refusal}");
    let links = |net: &TrineNet| {
        String::from_utf8_lossy(&net.exec("client", &["ip", "-o", "link"]).stdout).into_owned()
    };
    assert!(!links(&net).contains("mtu 1400"));
    for args in [
        &["settings", "set", "--mtu", "1400"][..],
        &["up", "--timeout", "60"],
    ] {
        let out = net.trine(args);
        assert!(
            out.status.success(),
            "trine {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(
        links(&net).contains("mtu 1400"),
        "the tunnel did not take the new MTU: {}",
        links(&net)
    );
    assert!(net.trine(&["down"]).status.success());

    assert!(
        net.stop("client", Duration::from_secs(10)),
        "the daemon ignored SIGTERM"
    );
    drop(net);
    let _ = std::fs::remove_dir_all(&root);
}
