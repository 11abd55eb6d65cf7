//! End-to-end tests of `trine-relay`: real processes on loopback, real QUIC
//! links, and a client built from `trine-circuit` + `trine-link` driving a
//! real three-hop circuit through them. Readiness is observed (the metrics
//! endpoint answers), never slept for.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::rngs::OsRng;
use trine_circuit::cell::RELAY_HEADER_LEN;
use trine_circuit::client::{CircuitState, Received};
use trine_circuit::{
    Channel, ClientCircuit, ClientConfig, ClientEvent, HopSpec, OnionSecretKey, RelayId,
};
use trine_link::{Endpoint, LinkConfig};

const BIN: &str = env!("CARGO_BIN_EXE_trine-relay");

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("trine-relay-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One relay process and what a client needs to know about it.
struct Relay {
    child: Child,
    hop: HopSpec,
    metrics: SocketAddr,
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn init(dir: &Path, nickname: &str, listen: SocketAddr) -> RelayId {
    let out = Command::new(BIN)
        .args(["init", "--dir"])
        .arg(dir)
        .args(["--nickname", nickname, "--listen", &listen.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    RelayId::from_hex(String::from_utf8(out.stdout).unwrap().trim()).unwrap()
}

fn read_onion_key(dir: &Path) -> trine_circuit::OnionPublicKey {
    let text = std::fs::read_to_string(dir.join("keys/onion.key")).unwrap();
    let hex = text
        .lines()
        .find_map(|l| l.strip_prefix("secret "))
        .unwrap();
    let bytes: Vec<u8> = (0..64)
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    OnionSecretKey::from_secret_bytes(bytes.try_into().unwrap()).public_key()
}

fn metrics(address: SocketAddr) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_millis(200)).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    Some(text)
}

fn metric(address: SocketAddr, line_prefix: &str) -> u64 {
    let text = metrics(address).unwrap();
    text.lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{line_prefix} not in metrics:\n{text}"))
}

fn start_relay(root: &Path, index: usize) -> Relay {
    let dir = root.join(format!("relay{index}"));
    let listen: SocketAddr = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
    let id = init(&dir, &format!("relay{index}"), listen);
    let metrics_addr: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
    let config = dir.join("relay.toml");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "listen = \"127.0.0.1:9464\"",
        &format!("listen = \"{metrics_addr}\""),
    );
    std::fs::write(&config, text).unwrap();
    let child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let relay = Relay {
        child,
        hop: HopSpec {
            id,
            onion_key: read_onion_key(&dir),
            addresses: vec![listen],
        },
        metrics: metrics_addr,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while metrics(relay.metrics).is_none() {
        assert!(Instant::now() < deadline, "relay {index} never came up");
        std::thread::sleep(Duration::from_millis(20));
    }
    relay
}

/// Drives a client circuit over a real link until `done` says stop or the
/// deadline passes. Returns the circuit.
async fn drive(
    circuit: &mut ClientCircuit,
    link: &trine_link::Link,
    stream: &mut trine_link::CircuitStream,
    deadline: Duration,
    mut done: impl FnMut(&mut ClientCircuit, &ClientEvent) -> bool,
) -> bool {
    let until = tokio::time::Instant::now() + deadline;
    let mut buf = Vec::new();
    loop {
        while let Some(transmit) = circuit.poll_transmit() {
            match transmit.channel {
                Channel::Control => stream.write_cell(&transmit.bytes).await.unwrap(),
                Channel::Datagram => link.send_datagram(stream.id(), &transmit.bytes).unwrap(),
            }
        }
        while let Some(event) = circuit.poll_event() {
            if done(circuit, &event) {
                return true;
            }
        }
        tokio::select! {
            read = stream.read_cell(&mut buf) => {
                if !read.unwrap_or(false) { return false; }
                let mut cell = buf.clone();
                let _ = circuit.handle_cell(Instant::now(), &mut cell);
            }
            datagram = link.read_datagram() => {
                let Ok((_, bytes)) = datagram else { return false };
                let mut cell = bytes.to_vec();
                if let Ok(Received::Packet(range)) = circuit.handle_cell(Instant::now(), &mut cell) {
                    let _ = range;
                }
            }
            _ = tokio::time::sleep_until(until) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_relay_processes_carry_a_circuit_end_to_end() {
    let root = scratch("e2e");
    let relays: Vec<Relay> = (1..=3).map(|i| start_relay(&root, i)).collect();
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
    drop(relays);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn loose_key_permissions_bad_config_and_busy_port_are_refused_with_one_line() {
    use std::os::unix::fs::PermissionsExt;
    let root = scratch("refuse");
    let listen: SocketAddr = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
    init(&root, "refuser", listen);
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
    let _ = std::fs::remove_dir_all(&root);
}
