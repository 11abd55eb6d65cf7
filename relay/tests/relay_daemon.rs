//! End-to-end tests of `trine-relay`: real processes on loopback, real QUIC
//! links, and a client built from `trine-circuit` + `trine-link` driving a
//! real three-hop circuit through them. Readiness is observed (the metrics
//! endpoint answers), never slept for.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{BIN, Relay, Scratch, drive, free_udp_port, init, metric, start_relay};
use rand::rngs::OsRng;
use trine_circuit::cell::RELAY_HEADER_LEN;
use trine_circuit::client::CircuitState;
use trine_circuit::{ClientCircuit, ClientConfig, ClientEvent, HopSpec};
use trine_link::{Endpoint, LinkConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_relay_processes_carry_a_circuit_end_to_end() {
    let root = Scratch::new("e2e");
    let relays: Vec<Relay> = (1..=3).map(|i| start_relay(root.path(), i)).collect();
    let path: Vec<HopSpec> = relays.iter().map(|r| r.hop.clone()).collect();

    let endpoint =
        Endpoint::client("127.0.0.1:0".parse().unwrap(), &LinkConfig::default()).unwrap();
    let link = endpoint
        .connect(path[0].addresses[0], path[0].id)
        .await
        .unwrap();
    let mut stream = link.open_circuit().await.unwrap();
    let mut circuit =
        ClientCircuit::new(path, &ClientConfig::default(), Instant::now(), &mut OsRng).unwrap();
    let ready = drive(
        &mut circuit,
        &link,
        &mut stream,
        Duration::from_secs(10),
        |_, e| matches!(e, ClientEvent::Ready | ClientEvent::Failed(_)),
    )
    .await;
    assert!(ready);
    assert_eq!(circuit.state(), CircuitState::Ready);

    // Keepalives go out as datagrams through three real processes and back.
    let mut pongs = 0;
    for _ in 0..20 {
        circuit.send_ping(Instant::now());
        let answered = drive(
            &mut circuit,
            &link,
            &mut stream,
            Duration::from_secs(5),
            |_, e| matches!(e, ClientEvent::Pong { .. }),
        )
        .await;
        pongs += usize::from(answered);
    }
    assert!(pongs >= 18, "only {pongs}/20 pings answered over loopback");
    assert!(
        metric(
            relays[1].metrics,
            "trine_relay_cells_forwarded_total{direction=\"forward\"}"
        ) >= 18
    );
    assert!(
        metric(
            relays[1].metrics,
            "trine_relay_cells_forwarded_total{direction=\"backward\"}"
        ) >= 18
    );
    assert_eq!(metric(relays[2].metrics, "trine_relay_circuits_open"), 1);

    // DATA reaches the last hop, which is not an exit, and is dropped there.
    let mut cell = Vec::with_capacity(2048);
    trine_circuit::cell::data_cell(&mut cell, &[0x45; 60]);
    assert!(circuit.seal_data(&mut cell));
    assert!(cell.len() > RELAY_HEADER_LEN);
    link.send_datagram(stream.id(), &cell).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric(
        relays[2].metrics,
        "trine_relay_cells_dropped_total{reason=\"not_exit\"}",
    ) == 0
    {
        assert!(Instant::now() < deadline, "DATA never reached the last hop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Closing the circuit tears it down on every relay.
    circuit.close();
    drive(
        &mut circuit,
        &link,
        &mut stream,
        Duration::from_millis(1),
        |_, _| false,
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    for relay in &relays {
        while metric(relay.metrics, "trine_relay_circuits_open") != 0 {
            assert!(Instant::now() < deadline, "circuit not torn down");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[test]
fn loose_key_permissions_bad_config_and_busy_port_are_refused_with_one_line() {
    use std::os::unix::fs::PermissionsExt;
    let scratch = Scratch::new("refuse");
    let root = scratch.path();
    let listen: SocketAddr = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
    init(root, "refuser", listen);
    let config = root.join("relay.toml");
    let run = || {
        Command::new(BIN)
            .args(["run", "--config"])
            .arg(&config)
            .output()
            .unwrap()
    };

    std::fs::set_permissions(
        root.join("keys/identity.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let out = run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("identity.key") && stderr.contains("644"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    std::fs::set_permissions(
        root.join("keys/identity.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();

    let good = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        good.replace("max_circuits = 16384", "max_circuits = -1"),
    )
    .unwrap();
    let out = run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("max_circuits"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    std::fs::write(&config, &good).unwrap();

    let busy = UdpSocket::bind(listen).unwrap();
    let out = run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains(&listen.to_string()),
        "{stderr}"
    );
    drop(busy);

    let out = Command::new(BIN)
        .args(["fingerprint", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim().len(), 64);
}
