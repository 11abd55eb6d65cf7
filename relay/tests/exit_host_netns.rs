//! Attacks on the exit host itself, in network namespaces (needs root,
//! `ip`, `nft`, `conntrack`, `ping` and `bash`), on the network of
//! `exitnet/mod.rs`: the web host's namespace stands for the internet and
//! routes the exit's NAT pool to the exit, as a neighbour on the exit's
//! segment could.
//! - Unsolicited packets from the internet to a circuit's pool address (a
//!   ping, UDP to the port of the client's flow, a TCP SYN) never reach the
//!   client: the exit's forward chain drops them (counted `unsolicited`).
//! - ICMP errors a client sends leave translated or not at all: never with
//!   the pool address as their source (the exit counts them `invalid`).
//! - One circuit cannot send ICMP errors about another circuit's flows:
//!   conntrack would find one quoting the web host's answer to the other
//!   circuit's pool address `related` and pass it on, a forged "port
//!   unreachable" from the exit's address; the exit drops it (counted
//!   `related`) and the web host sees no ICMP at all.
//! - A pool address a closed circuit leaves behind inherits none of its
//!   connections: with a pool of one address, the next circuit gets it,
//!   and the web host's late packets on the first circuit's connection
//!   never reach the second (the exit deleted its conntrack entries, so
//!   the web host's connection is reset).
//!
//! Without root these tests fail; set TRINE_SKIP_NETNS=1 to skip them
//! knowingly. Namespaces are named `trxf<pid>…` and `trxq<pid>…`; leftovers
//! of dead runs are removed first, and this run's are removed even when a
//! test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;
mod exitnet;
#[path = "common/netns.rs"]
mod netns;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use exitnet::{ExitNet, LONG_TCP_PORT, POKE_PORT, UDP_PORT, WEB, udp_packet, udp_payload_from};
use trine_circuit::ip::{self, TUNNEL_CLIENT_V4};
use trine_testnet::netns_tests_enabled;

const POOL: &str = "10.200.0.0/16";
/// The first circuit's pool address.
const LEASED: &str = "10.200.0.2";

#[test]
fn the_exit_host_forwards_only_what_circuits_need() {
    if !netns_tests_enabled() {
        return;
    }
    let net = ExitNet::start("trxf", POOL);
    net.count_at_web("from_pool", &format!("ip saddr {POOL}"));
    net.run_client("client_attacked_from_internet");
}

#[test]
fn a_circuit_cannot_send_icmp_errors_about_another_circuits_flows() {
    if !netns_tests_enabled() {
        return;
    }
    let net = ExitNet::start("trxr", POOL);
    net.count_at_web("icmp_in", "meta l4proto icmp");
    net.run_client("client_forging_icmp_errors");
}

/// A pool of one address (a /29 limited by one circuit at a time): a
/// second circuit is certain to get the first one's.
const TINY_POOL: &str = "10.200.0.0/29";
const ONE_CIRCUIT: &[(&str, &str)] = &[("max_circuits", "1"), ("max_circuits_per_link", "1")];

#[test]
fn a_reused_pool_address_inherits_no_connections() {
    if !netns_tests_enabled() {
        return;
    }
    let net = ExitNet::start_with("trxq", TINY_POOL, ONE_CIRCUIT);
    net.run_client("client_reusing_an_address");
}

/// Runs in the web namespace: see [`exitnet::web_host_main`].
#[test]
#[ignore = "helper: run inside a namespace by the exit test"]
fn web_host() {
    exitnet::web_host_main();
}

#[test]
#[ignore = "helper: run inside a namespace by the exit test"]
fn client_attacked_from_internet() {
    exitnet::client_main(attacked_from_internet());
}

#[test]
#[ignore = "helper: run inside a namespace by the exit test"]
fn client_reusing_an_address() {
    exitnet::client_main(reusing_an_address());
}

#[test]
#[ignore = "helper: run inside a namespace by the exit test"]
fn client_forging_icmp_errors() {
    exitnet::client_main(forging_icmp_errors());
}

async fn forging_icmp_errors() {
    let web_udp = SocketAddr::from((WEB, UDP_PORT));
    // The victim, circuit B, the first to send: a UDP flow from the pool's
    // first address (pool addresses are handed out in order).
    let mut victim = exitnet::tunnel(exitnet::two_hops()).await;
    victim.send(&udp_packet(40_000, web_udp, b"hello"));
    victim
        .expect("the answer", exitnet::WAIT, |p| {
            udp_payload_from(p, web_udp).is_some()
        })
        .await;
    let victim_flow = SocketAddr::new(LEASED.parse().unwrap(), 40_000);

    // The attacker, circuit A, with the next pool address.
    let mut attacker = exitnet::tunnel(exitnet::two_hops()).await;
    attacker.send(&udp_packet(40_000, web_udp, b"hello"));
    attacker
        .expect("the answer", exitnet::WAIT, |p| {
            udp_payload_from(p, web_udp).is_some()
        })
        .await;
    assert_eq!(exitnet::exit_metric("trine_relay_exit_pool_leased "), 2);

    // "Port unreachable" about the web host's answer to the victim.
    let mut quoted = Vec::new();
    ip::build_udp(web_udp, victim_flow, b"an answer", &mut quoted).unwrap();
    attacker.send(&port_unreachable(&quoted));
    exitnet::poll("the forged ICMP error dropped or delivered", || {
        exitnet::web_counter("icmp_in") > 0 || exitnet::exit_counter("related") >= 1
    });
    assert_eq!(
        exitnet::web_counter("icmp_in"),
        0,
        "one circuit's ICMP error about another circuit's flow reached the web host"
    );
    // The victim's flow still works.
    victim.send(&udp_packet(40_000, web_udp, b"again"));
    victim
        .expect("the answer", exitnet::WAIT, |p| {
            udp_payload_from(p, web_udp).is_some()
        })
        .await;
}

async fn reusing_an_address() {
    let web_long = SocketAddr::from((WEB, LONG_TCP_PORT));
    let web_udp = SocketAddr::from((WEB, UDP_PORT));
    let poke = SocketAddr::from((WEB, POKE_PORT));

    // User A: a connection the web host holds, alive while A's circuit is.
    let mut a = exitnet::tunnel(exitnet::two_hops()).await;
    let greeting = exitnet::tcp_greeting(&mut a, web_long, 40_100).await;
    assert!(greeting.starts_with("saw "), "{greeting}");
    a.send(&udp_packet(40_101, poke, b"poke"));
    let verdict = a
        .expect("the answer", exitnet::WAIT, |p| {
            udp_payload_from(p, poke).is_some()
        })
        .await;
    assert_eq!(udp_payload_from(&verdict, poke).unwrap(), b"alive");
    a.close();
    exitnet::poll("A's circuit closed at the exit", || {
        exitnet::exit_metric("trine_relay_circuits_closed_total ") >= 1
    });

    // User B: its packets find the pool full until A's address is free
    // again; then an answer proves B holds it.
    let mut b = exitnet::tunnel(exitnet::two_hops()).await;
    let mut received = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    'leased: loop {
        b.send(&udp_packet(40_200, web_udp, b"hello"));
        while let Some(packet) = b.next(Duration::from_millis(200)).await {
            let answered = udp_payload_from(&packet, web_udp).is_some();
            received.push(packet);
            if answered {
                break 'leased;
            }
        }
        assert!(Instant::now() < deadline, "B never got A's old address");
    }
    assert_eq!(exitnet::exit_metric("trine_relay_exit_pool_leased "), 1);

    // The web host writes on A's connection, then says what became of it.
    b.send(&udp_packet(40_201, poke, b"poke"));
    let verdict = loop {
        let packet = b
            .next(Duration::from_secs(15))
            .await
            .expect("no answer to the poke");
        match udp_payload_from(&packet, poke) {
            Some(verdict) => break verdict,
            None => received.push(packet),
        }
    };
    let inherited = received
        .iter()
        .filter(|p| exitnet::is_tcp_from(p, LONG_TCP_PORT))
        .count();
    assert_eq!(inherited, 0, "B received packets of A's connection");
    assert_eq!(verdict, b"reset", "A's connection still maps to the pool");
    assert_eq!(
        exitnet::exit_metric("trine_relay_exit_pool_quarantined "),
        0
    );
    assert_eq!(
        exitnet::exit_metric("trine_relay_exit_conntrack_failed_total "),
        0
    );
}

async fn attacked_from_internet() {
    let mut tunnel = exitnet::tunnel(exitnet::two_hops()).await;
    let web_udp = SocketAddr::from((WEB, UDP_PORT));
    tunnel.send(&udp_packet(40_000, web_udp, b"hello"));
    let answer = tunnel
        .expect("the answer", exitnet::WAIT, |p| {
            udp_payload_from(p, web_udp).is_some()
        })
        .await;

    // Unsolicited, from the internet to the circuit's pool address.
    let _ = exitnet::from_internet(&["ping", "-c", "2", "-i", "0.2", "-W", "1", LEASED]);
    let udp = format!("echo unsolicited > /dev/udp/{LEASED}/40000");
    let _ = exitnet::from_internet(&["bash", "-c", &udp]);
    let tcp = format!("exec 3<>/dev/tcp/{LEASED}/40001");
    let _ = exitnet::from_internet(&["timeout", "1", "bash", "-c", &tcp]);
    // Everything from the web host but its UDP answers is unsolicited.
    let unsolicited = |p: &[u8]| {
        ip::parse(p).is_ok_and(|i| i.src == IpAddr::from(WEB) && i.src_port != Some(UDP_PORT))
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        while let Some(packet) = tunnel.next(Duration::from_millis(100)).await {
            assert!(
                !unsolicited(&packet),
                "an unsolicited packet from the internet reached the client: {packet:02x?}"
            );
        }
        // Two pings, the UDP packet and at least one SYN.
        if exitnet::exit_counter("unsolicited") >= 4 {
            break;
        }
        assert!(Instant::now() < deadline, "the exit never dropped them");
    }

    // ICMP errors from the client: one about the web host's real answer,
    // one about a flow that never was.
    let mut made_up = Vec::new();
    let client = SocketAddr::from((TUNNEL_CLIENT_V4, 41_000));
    ip::build_udp((WEB, 7999).into(), client, b"never sent", &mut made_up).unwrap();
    for quoted in [&answer, &made_up] {
        tunnel.send(&port_unreachable(quoted));
    }
    exitnet::poll("ICMP errors dropped as invalid by the exit", || {
        assert_eq!(
            exitnet::web_counter("from_pool"),
            0,
            "an ICMP error left the exit with the pool address as its source"
        );
        exitnet::exit_counter("invalid") >= 2
    });
    // The circuit still works.
    tunnel.send(&udp_packet(40_000, web_udp, b"again"));
    tunnel
        .expect("the answer", exitnet::WAIT, |p| {
            udp_payload_from(p, web_udp).is_some()
        })
        .await;
}

/// ICMP "port unreachable" from the client to the web host quoting
/// `quoted` (its IP header and first 8 bytes), checksum computed here.
fn port_unreachable(quoted: &[u8]) -> Vec<u8> {
    let header = usize::from(quoted[0] & 0x0f) * 4;
    let mut icmp = vec![3, 3, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&quoted[..(header + 8).min(quoted.len())]);
    let sum = exitnet::internet_checksum(&icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    exitnet::ipv4_packet(WEB, ip::proto::ICMP, &icmp)
}
