//! The exit, for real, in network namespaces (needs root, `ip`, `nft`,
//! `conntrack` and `bash`).
//!
//! Five namespaces joined by a bridge in a hub namespace, all on
//! 198.18.0.0/24 and never linked to the host's network: a client
//! (198.18.0.2), an exit relay (198.18.0.3), a web host (198.18.0.4) that
//! answers UDP and TCP with the source address it saw and serves as the
//! exit's upstream "DNS" resolver, and a middle relay (198.18.0.5). The
//! client (this test binary, re-run inside the client namespace) builds
//! circuits client → middle → exit and checks, by what comes back through
//! the circuit:
//! - a UDP and a TCP exchange reach the web host, which saw the exit's
//!   address, not the client's; DNS to the tunnel's resolver is answered via
//!   the upstream; packets to the exit's loopback, a private network and the
//!   exit's own address are refused with ICMP "administratively prohibited";
//! - a one-hop circuit (client → exit) carries nothing out: the web host
//!   sees nothing and the exit counts the DATA as `one_hop`; nor does one
//!   from a client whose link presents a relay identity of its own making
//!   (listed nowhere, not trusted: it is no relay);
//! - stopping the exit removes its nftables table and restores forwarding.
//!
//! The attacks on the exit host itself (unsolicited packets to the pool,
//! untranslated ICMP errors, a reused pool address) are in
//! `exit_host_netns.rs`, on the same network (`exitnet/mod.rs`).
//!
//! Without root this test fails; set TRINE_SKIP_NETNS=1 to skip it
//! knowingly. Namespaces are named `trxt<pid>…`; leftovers of dead runs are
//! removed first, and this run's are removed even when it fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;
mod exitnet;
#[path = "common/netns.rs"]
mod netns;

use std::net::{Ipv4Addr, SocketAddr};

use exitnet::{CLIENT, DNS_PORT, ExitNet, TCP_PORT, UDP_PORT, WEB, udp_packet, udp_payload_from};
use trine_circuit::ip::{self, TUNNEL_RESOLVER_V4};
use trine_testnet::netns_tests_enabled;

const PREFIX: &str = "trxt";
/// The port the one-hop circuit's packet is sent to (counted at the web
/// host, never answered).
const ONE_HOP_PORT: u16 = 7001;
/// The same, for the one-hop circuit from a self-made relay identity.
const POSING_PORT: u16 = 7002;

#[test]
fn exit_forwards_udp_tcp_and_dns_and_refuses_its_own_networks_and_one_hop_circuits() {
    if !netns_tests_enabled() {
        return;
    }
    let mut net = ExitNet::start(PREFIX, "10.200.0.0/16");
    net.count_at_web("one_hop", &format!("udp dport {ONE_HOP_PORT}"));
    net.count_at_web("posing", &format!("udp dport {POSING_PORT}"));
    net.run_client("client_through_exit");

    // Stopping the exit removes its nftables table and gives forwarding
    // back as it found it.
    net.stop_exit();
    let tables = net.net.exec("e", &["nft", "list", "tables"]);
    assert!(
        !String::from_utf8_lossy(&tables.stdout).contains("trine_exit"),
        "nftables table left behind"
    );
    assert_eq!(net.forwarding_before, "0", "a fresh namespace forwards");
    assert_eq!(
        exitnet::sysctl(&net.exit_ns(), "net.ipv4.ip_forward"),
        net.forwarding_before,
        "ip_forward not restored"
    );
}

/// Runs in the web namespace: see [`exitnet::web_host_main`].
#[test]
#[ignore = "helper: run inside a namespace by the exit test"]
fn web_host() {
    exitnet::web_host_main();
}

/// Runs in the client namespace: every check. Prints "client checks
/// passed" at the end.
#[test]
#[ignore = "helper: run inside a namespace by the exit test"]
fn client_through_exit() {
    exitnet::client_main(client_checks());
}

async fn client_checks() {
    let mut tunnel = exitnet::tunnel(exitnet::two_hops()).await;
    let exit_seen = format!("saw {}:", exitnet::EXIT);

    // UDP: the web host answers with the source it saw: the exit's.
    let web_udp = SocketAddr::from((WEB, UDP_PORT));
    tunnel.send(&udp_packet(40_000, web_udp, b"hello"));
    let answer = tunnel
        .expect("the answer", exitnet::WAIT, |p| {
            udp_payload_from(p, web_udp).is_some()
        })
        .await;
    let text = String::from_utf8(udp_payload_from(&answer, web_udp).unwrap()).unwrap();
    assert!(text.starts_with(&exit_seen), "web host saw {text}");
    assert!(!text.contains(&CLIENT.to_string()));

    // DNS to the tunnel's resolver goes to the exit's upstream and back.
    let resolver = SocketAddr::from((TUNNEL_RESOLVER_V4, DNS_PORT));
    let mut query = vec![0x12, 0x34, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    query.extend_from_slice(b"\x07example\x03com\x00\x00\x01\x00\x01");
    tunnel.send(&udp_packet(40_000, resolver, &query));
    let answer = tunnel
        .expect("the answer", exitnet::WAIT, |p| {
            udp_payload_from(p, resolver).is_some()
        })
        .await;
    let answer = udp_payload_from(&answer, resolver).unwrap();
    assert_eq!(answer[..2], query[..2], "not the answer to this query");
    assert!(answer[2] & 0x80 != 0, "not a response");
    assert_eq!(answer[12..], query[12..], "another question");

    // TCP: handshake with the web host's kernel, then its greeting.
    let web_tcp = SocketAddr::from((WEB, TCP_PORT));
    let text = exitnet::tcp_greeting(&mut tunnel, web_tcp, 40_001).await;
    assert!(text.starts_with(&exit_seen), "web host saw {text} over TCP");

    // Refused: the exit's loopback, a private network, the exit itself.
    for refused in [
        Ipv4Addr::LOCALHOST,
        Ipv4Addr::new(10, 1, 2, 3),
        exitnet::EXIT,
    ] {
        tunnel.send(&udp_packet(
            40_000,
            (refused, UDP_PORT).into(),
            b"let me in",
        ));
        tunnel
            .expect("the answer", exitnet::WAIT, |p| is_prohibited(p, refused))
            .await;
    }

    // A one-hop circuit straight to the exit carries nothing out: the exit
    // counts its DATA as one_hop, and the web host never sees it.
    let one_hop = exitnet::dropped_one_hop();
    let before = exitnet::exit_metric(&one_hop);
    let mut direct = exitnet::tunnel(vec![exitnet::exit_hop()]).await;
    direct.send(&udp_packet(40_000, (WEB, ONE_HOP_PORT).into(), b"one hop"));
    exitnet::poll("one-hop DATA counted by the exit", || {
        assert_eq!(
            exitnet::web_counter("one_hop"),
            0,
            "a one-hop circuit reached the web host"
        );
        exitnet::exit_metric(&one_hop) > before
    });
    // Nor from a client whose link presents a relay identity of its own
    // making: proving a key proves nothing; it is listed nowhere.
    let before = exitnet::exit_metric(&one_hop);
    let mut posing = exitnet::tunnel_as_unlisted_relay(vec![exitnet::exit_hop()]).await;
    posing.send(&udp_packet(
        40_000,
        (WEB, POSING_PORT).into(),
        b"i am a relay",
    ));
    exitnet::poll(
        "DATA from a self-made relay identity counted by the exit",
        || {
            assert_eq!(
                exitnet::web_counter("posing"),
                0,
                "a one-hop circuit from a self-made relay identity reached the web host"
            );
            exitnet::exit_metric(&one_hop) > before
        },
    );
    // The two-hop circuit still works after that.
    tunnel.send(&udp_packet(40_000, web_udp, b"again"));
    tunnel
        .expect("the answer", exitnet::WAIT, |p| {
            udp_payload_from(p, web_udp).is_some()
        })
        .await;
}

/// Whether `packet` is an ICMP "administratively prohibited" about a
/// packet sent to `about`.
fn is_prohibited(packet: &[u8], about: Ipv4Addr) -> bool {
    let Ok(info) = ip::parse(packet) else {
        return false;
    };
    let icmp = &packet[info.transport_offset..];
    // Type 3 code 13; the quoted header's destination at 8 + 16.
    info.protocol == ip::proto::ICMP
        && icmp.len() >= 8 + 20
        && icmp[0] == 3
        && icmp[1] == 13
        && icmp[8 + 16..8 + 20] == about.octets()
}
