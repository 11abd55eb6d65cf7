//! Helpers shared by the `trine-relay` integration tests: scratch
//! directories and relay processes that clean up after themselves (Drop
//! guards, so a failing assertion leaves nothing behind), the Prometheus
//! scrape, and a client that drives a real `ClientCircuit` over a real
//! `trine_link` link. Every wait polls an observable condition against a
//! deadline; nothing sleeps and hopes.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::rngs::OsRng;
use trine_circuit::client::Received;
use trine_circuit::{
    Channel, ClientCircuit, ClientConfig, ClientEvent, HopSpec, OnionSecretKey, RelayId,
};
use trine_link::{CircuitStream, Endpoint, Link, LinkConfig};

pub const BIN: &str = env!("CARGO_BIN_EXE_trine-relay");

/// `[extend] private_networks` for relays on loopback.
pub const PRIVATE_LOOPBACK: &str = "[\"127.0.0.0/8\"]";
/// `[extend] private_networks` for relays in namespaces on the
/// benchmarking range, as in the testnet.
pub const PRIVATE_BENCHMARKING: &str = "[\"198.18.0.0/15\"]";

/// A temporary directory, removed when dropped.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("trine-relay-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One relay process and what a client needs to know about it. Dropping it
/// kills the process and reaps it.
pub struct Relay {
    child: Child,
    pub hop: HopSpec,
    pub metrics: SocketAddr,
    pub dir: PathBuf,
}

impl Relay {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILLs the process (no DESTROY, no CONNECTION_CLOSE: it just
    /// vanishes) and reaps it.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// One sample of this relay's metrics, by line prefix.
    pub fn metric(&self, line_prefix: &str) -> u64 {
        metric(self.metrics, line_prefix)
    }

    /// Polls `line_prefix` until `ok` holds; panics naming `what` (and the
    /// last value) at the deadline. Returns the value that satisfied it.
    pub async fn wait_metric(
        &self,
        line_prefix: &str,
        within: Duration,
        what: &str,
        ok: impl Fn(u64) -> bool,
    ) -> u64 {
        let deadline = Instant::now() + within;
        loop {
            let value = self.metric(line_prefix);
            if ok(value) {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: {line_prefix} is still {value} after {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn init(dir: &Path, nickname: &str, listen: SocketAddr) -> RelayId {
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

pub fn read_onion_key(dir: &Path) -> trine_circuit::OnionPublicKey {
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

pub fn metrics(address: SocketAddr) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_millis(200)).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    Some(text)
}

pub fn metric(address: SocketAddr, line_prefix: &str) -> u64 {
    let text = metrics(address).unwrap();
    text.lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{line_prefix} not in metrics:\n{text}"))
}

/// `trine_relay_cells_dropped_total{reason="REASON"}`.
pub fn dropped(reason: &str) -> String {
    format!("trine_relay_cells_dropped_total{{reason=\"{reason}\"}}")
}

/// Sets `key = value` in `relay.toml` text; the key must appear exactly once.
pub fn set_key(text: &str, key: &str, value: &str) -> String {
    let mut found = 0;
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            let bare = line.trim_start();
            let is_key = bare
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='));
            if is_key {
                found += 1;
                format!("{key} = {value}")
            } else {
                line.to_string()
            }
        })
        .collect();
    assert_eq!(found, 1, "`{key}` should appear once in relay.toml");
    lines.join("\n") + "\n"
}

pub fn start_relay(root: &Path, index: usize) -> Relay {
    start_relay_with(root, index, &[])
}

/// Starts relay number `index` under `root`, with `limits` (key, value)
/// written into its `relay.toml`, and waits until its metrics answer.
/// Relay `index` listens on 127.0.1.`index`: an EXTEND never dials a
/// relay's own address, so relays that extend to each other need
/// addresses of their own, and loopback is allowed as a private network.
pub fn start_relay_with(root: &Path, index: usize, limits: &[(&str, &str)]) -> Relay {
    let dir = root.join(format!("relay{index}"));
    let listen: SocketAddr = format!("127.0.1.{index}:{}", free_udp_port())
        .parse()
        .unwrap();
    let id = init(&dir, &format!("relay{index}"), listen);
    let metrics_addr: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
    let config = dir.join("relay.toml");
    let mut text = std::fs::read_to_string(&config).unwrap().replace(
        "listen = \"127.0.0.1:9464\"",
        &format!("listen = \"{metrics_addr}\""),
    );
    text = set_key(&text, "private_networks", PRIVATE_LOOPBACK);
    for (key, value) in limits {
        text = set_key(&text, key, value);
    }
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
        dir,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while metrics(relay.metrics).is_none() {
        assert!(Instant::now() < deadline, "relay {index} never came up");
        std::thread::sleep(Duration::from_millis(20));
    }
    relay
}

/// Drives a client circuit over a real link until `done` says stop (true)
/// or the link, the stream or the deadline ends it (false).
pub async fn drive(
    circuit: &mut ClientCircuit,
    link: &Link,
    stream: &mut CircuitStream,
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

/// A client with its own endpoint (so its own UDP source address), one
/// link to its guard and one circuit on it.
pub struct Client {
    pub endpoint: Endpoint,
    pub link: Link,
    pub stream: CircuitStream,
    pub circuit: ClientCircuit,
}

impl Client {
    /// Dials the guard from `bind` and starts building through `path`;
    /// returns the client and the build's outcome (`Ready` or `Failed`).
    pub async fn build(bind: &str, path: Vec<HopSpec>) -> (Self, ClientEvent) {
        let endpoint = Endpoint::client(bind.parse().unwrap(), &LinkConfig::default()).unwrap();
        let link = endpoint
            .connect(path[0].addresses[0], path[0].id)
            .await
            .unwrap();
        let stream = link.open_circuit().await.unwrap();
        let circuit =
            ClientCircuit::new(path, &ClientConfig::default(), Instant::now(), &mut OsRng).unwrap();
        let mut client = Self {
            endpoint,
            link,
            stream,
            circuit,
        };
        let mut outcome = None;
        client
            .drive(Duration::from_secs(10), |_, event| {
                let last = matches!(event, ClientEvent::Ready | ClientEvent::Failed(_));
                if last {
                    outcome = Some(event.clone());
                }
                last
            })
            .await;
        let outcome = outcome.expect("the build neither finished nor failed within 10 s");
        (client, outcome)
    }

    pub async fn drive(
        &mut self,
        deadline: Duration,
        done: impl FnMut(&mut ClientCircuit, &ClientEvent) -> bool,
    ) -> bool {
        drive(
            &mut self.circuit,
            &self.link,
            &mut self.stream,
            deadline,
            done,
        )
        .await
    }

    /// Sends one keepalive through the whole circuit; true if the last hop
    /// answered within `timeout`.
    pub async fn ping(&mut self, timeout: Duration) -> bool {
        self.circuit.send_ping(Instant::now());
        self.drive(timeout, |_, e| matches!(e, ClientEvent::Pong { .. }))
            .await
    }

    /// Puts everything the circuit queued (a DESTROY, say) on the wire.
    pub async fn flush(&mut self) {
        self.drive(Duration::from_millis(1), |_, _| false).await;
    }
}
