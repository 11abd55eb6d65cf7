//! The exit tests' network in namespaces, shared by `exit_netns.rs` and
//! `exit_host_netns.rs`: a client (198.18.0.2), an exit relay (.3), a web
//! host (.4, its resolver on .6) and a middle relay (.5) on one bridge;
//! the real `trine-relay` runs the exit and the middle, and this test
//! binary, re-run inside a namespace, plays the web host and the client.
//! The client side builds
//! circuits over real links and sends raw IP packets built here,
//! independently of the code under test. Observations come from the exit's
//! metrics and nftables counters and from counters in the web host's own
//! nftables table; every wait polls against a deadline.
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use trine_circuit::ip::{self, TUNNEL_CLIENT_V4};
use trine_circuit::{HopSpec, RelayId};
use trine_link::{Endpoint, LinkConfig};
use trine_testnet::{Network, Node, must, sh};

use crate::common;
pub use crate::netns::{Tunnel, internet_checksum, ipv4_packet, udp_packet, udp_payload_from};

pub const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub const EXIT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 3);
pub const WEB: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 4);
pub const MIDDLE: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 5);
/// The web host's resolver, the exit's DNS upstream: an address of its
/// own, since the exit refuses its clients the upstream's address.
pub const RESOLVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 6);
pub const RELAY_PORT: u16 = 9443;
/// UDP: answered with the source the web host saw.
pub const UDP_PORT: u16 = 7000;
/// TCP: a greeting with the source the web host saw.
pub const TCP_PORT: u16 = 8000;
/// TCP: greets, then holds the connection open (the latest one is kept).
pub const LONG_TCP_PORT: u16 = 8001;
/// UDP: "poke" makes the web host write on the held connection and answer
/// whether the exit reset it.
pub const POKE_PORT: u16 = 7002;
pub const DNS_PORT: u16 = 53;
/// How long any one condition may take.
pub const WAIT: Duration = Duration::from_secs(15);

/// The running network (orchestrator side); everything goes on drop.
pub struct ExitNet {
    pub net: Network,
    /// The exit namespace's `ip_forward` before the exit started.
    pub forwarding_before: String,
    dir: PathBuf,
    env: Vec<(&'static str, String)>,
}

impl ExitNet {
    /// Builds the namespaces and starts the exit (pool `pool_v4`), the
    /// middle relay and the web host, which also gets a route to the pool
    /// through the exit (an "internet" neighbour that could reach it) and
    /// an nftables table `inet watch` for [`ExitNet::count_at_web`].
    pub fn start(prefix: &str, pool_v4: &str) -> Self {
        Self::start_with(prefix, pool_v4, &[])
    }

    /// [`ExitNet::start`] with these `key = value` settings in the exit's
    /// configuration.
    pub fn start_with(prefix: &str, pool_v4: &str, settings: &[(&str, &str)]) -> Self {
        let mut net = Network::build(
            prefix,
            &[
                Node::v4("c", "198.18.0.2/24"),
                Node::v4("e", "198.18.0.3/24"),
                Node::v4("w", "198.18.0.4/24"),
                Node::v4("m", "198.18.0.5/24"),
            ],
        );
        let dir = std::env::temp_dir().join(format!("trine-{prefix}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let exit_dir = dir.join("exit");
        let middle_dir = dir.join("middle");
        // Made a plain relay, then an exit by its configuration.
        let exit_id = common::init(&exit_dir, "exit1", (EXIT, RELAY_PORT).into());
        let middle_id = common::init(&middle_dir, "middle1", (MIDDLE, RELAY_PORT).into());
        let config = exit_dir.join("relay.toml");
        let mut text = std::fs::read_to_string(&config).unwrap();
        text = common::set_key(&text, "exit", "true");
        text = common::set_key(&text, "dns_upstream", &format!("\"{RESOLVER}:{DNS_PORT}\""));
        text = common::set_key(&text, "pool_v4", &format!("\"{pool_v4}\""));
        // No directory here: the exit trusts the middle by configuration.
        text = common::set_key(&text, "trusted_relays", &format!("[\"{middle_id}\"]"));
        for (key, value) in settings {
            text = common::set_key(&text, key, value);
        }
        std::fs::write(&config, text).unwrap();
        // The middle extends to the exit, on the benchmarking range.
        let middle_config = middle_dir.join("relay.toml");
        let text = std::fs::read_to_string(&middle_config).unwrap();
        let text = common::set_key(&text, "private_networks", common::PRIVATE_BENCHMARKING);
        std::fs::write(&middle_config, text).unwrap();
        let forwarding_before = sysctl(&net.ns("e"), "net.ipv4.ip_forward");
        for (role, dir) in [("e", &exit_dir), ("m", &middle_dir)] {
            crate::netns::run_relay(&mut net, role, &dir.join("relay.toml"));
        }
        must(&[
            "ip",
            "-n",
            &net.ns("w"),
            "addr",
            "add",
            &format!("{RESOLVER}/24"),
            "dev",
            "eth0",
        ]);
        let web = crate::netns::helper(&net.ns("w"), "web_host", &[])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        net.children.push(web);
        must(&[
            "ip",
            "-n",
            &net.ns("w"),
            "route",
            "add",
            pool_v4,
            "via",
            "198.18.0.3",
        ]);
        nft(&net.ns("w"), "add table inet watch\n");
        nft(
            &net.ns("w"),
            "add chain inet watch input { type filter hook input priority -10; policy accept; }\n",
        );
        let env = vec![
            ("TRINE_EXIT_ID", exit_id.to_string()),
            ("TRINE_EXIT_DIR", exit_dir.display().to_string()),
            ("TRINE_MIDDLE_ID", middle_id.to_string()),
            ("TRINE_MIDDLE_DIR", middle_dir.display().to_string()),
            ("TRINE_NS_EXIT", net.ns("e")),
            ("TRINE_NS_WEB", net.ns("w")),
        ];
        Self {
            net,
            forwarding_before,
            dir,
            env,
        }
    }

    /// The exit's namespace.
    pub fn exit_ns(&self) -> String {
        self.net.ns("e")
    }

    /// Counts, in the web host's counter `name`, packets arriving that
    /// match the nftables expression `matching`.
    pub fn count_at_web(&self, name: &str, matching: &str) {
        let ns = self.net.ns("w");
        nft(&ns, &format!("add counter inet watch {name}\n"));
        nft(
            &ns,
            &format!("add rule inet watch input {matching} counter name {name}\n"),
        );
    }

    /// Runs the ignored test `test` in the client namespace; it must pass
    /// and print "client checks passed".
    pub fn run_client(&self, test: &str) {
        let out = crate::netns::helper(&self.net.ns("c"), test, &self.env)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("client checks passed"),
            "client in namespace failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops the exit with SIGTERM and waits for it to end.
    pub fn stop_exit(&mut self) {
        let exit = &mut self.net.children[0];
        must(&["kill", "-TERM", &exit.id().to_string()]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while exit.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "exit did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ExitNet {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Feeds `script` to `nft -f -` in `ns`.
fn nft(ns: &str, script: &str) {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "nft in {ns}: {script}");
}

/// A sysctl's value in `ns`.
pub fn sysctl(ns: &str, key: &str) -> String {
    let out = sh(&["ip", "netns", "exec", ns, "sysctl", "-n", key]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

// ------------------------------------------------------------ client side

/// Runs `checks` as the client helper (only when re-run as a helper) and
/// prints "client checks passed" when they pass.
pub fn client_main(checks: impl std::future::Future<Output = ()>) {
    if !crate::netns::is_helper() {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(checks);
    println!("client checks passed");
}

fn env(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| panic!("{key} not set"))
}

fn hop(role: &str, address: Ipv4Addr) -> HopSpec {
    HopSpec {
        id: RelayId::from_hex(&env(&format!("TRINE_{role}_ID"))).unwrap(),
        onion_key: common::read_onion_key(&PathBuf::from(env(&format!("TRINE_{role}_DIR")))),
        addresses: vec![(address, RELAY_PORT).into()],
    }
}

/// The exit, as a hop.
pub fn exit_hop() -> HopSpec {
    hop("EXIT", EXIT)
}

/// Client → middle → exit.
pub fn two_hops() -> Vec<HopSpec> {
    vec![hop("MIDDLE", MIDDLE), exit_hop()]
}

/// Polls `ready` every 20 ms until it holds; panics naming `what` after
/// the deadline.
pub fn poll(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !ready() {
        assert!(Instant::now() < deadline, "no {what} within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A metric of the exit relay (the first line starting with `line`), 0
/// when absent.
pub fn exit_metric(line: &str) -> u64 {
    crate::netns::metric_in(&env("TRINE_NS_EXIT"), line)
}

/// The exit's drop counter for one-hop DATA.
pub fn dropped_one_hop() -> String {
    common::dropped("one_hop")
}

/// Packets counted by the named nftables counter `name` of `table` in the
/// namespace named by the environment variable `ns`; 0 when it is absent.
fn nft_counter(ns: &str, table: &str, name: &str) -> u64 {
    let out = sh(&[
        "ip",
        "netns",
        "exec",
        &env(ns),
        "nft",
        "list",
        "counter",
        "inet",
        table,
        name,
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    let mut words = text.split_whitespace();
    words
        .find(|w| *w == "packets")
        .and_then(|_| words.next()?.parse().ok())
        .unwrap_or(0)
}

/// A counter set up with [`ExitNet::count_at_web`].
pub fn web_counter(name: &str) -> u64 {
    nft_counter("TRINE_NS_WEB", "watch", name)
}

/// A named counter of the exit's own nftables table.
pub fn exit_counter(name: &str) -> u64 {
    nft_counter("TRINE_NS_EXIT", "trine_exit", name)
}

/// Runs `args` in the web host's namespace (the "internet").
pub fn from_internet(args: &[&str]) -> std::process::Output {
    let ns = env("TRINE_NS_WEB");
    let mut all = vec!["ip", "netns", "exec", ns.as_str()];
    all.extend_from_slice(args);
    sh(&all)
}

/// A circuit from the client through `path`, retrying while the relays
/// start.
pub async fn tunnel(path: Vec<HopSpec>) -> Tunnel {
    Tunnel::open((CLIENT, 0).into(), path, WAIT).await
}

/// [`tunnel`] from a client posing as a relay: its link presents a relay
/// identity of its own making, listed nowhere.
pub async fn tunnel_as_unlisted_relay(path: Vec<HopSpec>) -> Tunnel {
    let identity = trine_circuit::IdentityKey::generate(&mut rand::rngs::OsRng);
    let endpoint = Endpoint::relay((CLIENT, 0).into(), &identity, &LinkConfig::default()).unwrap();
    Tunnel::open_with(endpoint, path, WAIT).await
}

pub const SYN: u8 = 0x02;
pub const ACK: u8 = 0x10;

/// A TCP segment from the client's inner address and `src_port`.
pub fn tcp_segment(src_port: u16, dst: SocketAddr, seq: u32, ack: u32, flags: u8) -> Vec<u8> {
    let IpAddr::V4(dst_ip) = dst.ip() else {
        panic!("IPv4 only")
    };
    let mut tcp = Vec::with_capacity(20);
    tcp.extend_from_slice(&src_port.to_be_bytes());
    tcp.extend_from_slice(&dst.port().to_be_bytes());
    tcp.extend_from_slice(&seq.to_be_bytes());
    tcp.extend_from_slice(&ack.to_be_bytes());
    tcp.extend_from_slice(&[5 << 4, flags, 0xff, 0xff, 0, 0, 0, 0]);
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&TUNNEL_CLIENT_V4.octets());
    pseudo.extend_from_slice(&dst_ip.octets());
    pseudo.extend_from_slice(&[0, ip::proto::TCP, 0, 20]);
    pseudo.extend_from_slice(&tcp);
    let sum = internet_checksum(&pseudo);
    tcp[16..18].copy_from_slice(&sum.to_be_bytes());
    ipv4_packet(dst_ip, ip::proto::TCP, &tcp)
}

/// Whether `packet` is TCP from the web host's `port`.
pub fn is_tcp_from(packet: &[u8], port: u16) -> bool {
    ip::parse(packet).is_ok_and(|i| i.protocol == ip::proto::TCP && i.src_port == Some(port))
}

/// Opens a TCP connection from `src_port` to `web` through `tunnel`
/// (handshake with the web host's kernel) and returns its greeting.
pub async fn tcp_greeting(tunnel: &mut Tunnel, web: SocketAddr, src_port: u16) -> String {
    tunnel.send(&tcp_segment(src_port, web, 1000, 0, SYN));
    let syn_ack = tunnel
        .expect("the web host's answer", WAIT, |p| {
            is_tcp_from(p, web.port())
        })
        .await;
    assert!(ip::transport_checksum_ok(&syn_ack).unwrap());
    let tcp = &syn_ack[ip::parse(&syn_ack).unwrap().transport_offset..];
    assert_eq!(tcp[13] & (SYN | ACK), SYN | ACK, "not a SYN-ACK");
    let server_seq = u32::from_be_bytes(tcp[4..8].try_into().unwrap());
    tunnel.send(&tcp_segment(
        src_port,
        web,
        1001,
        server_seq.wrapping_add(1),
        ACK,
    ));
    let greeting = tunnel
        .expect("the web host's greeting", WAIT, |p| {
            is_tcp_from(p, web.port()) && p.len() > ip::parse(p).unwrap().transport_offset + 20
        })
        .await;
    let offset = ip::parse(&greeting).unwrap().transport_offset;
    let header_len = usize::from(greeting[offset + 12] >> 4) * 4;
    String::from_utf8(greeting[offset + header_len..].to_vec()).unwrap()
}

// --------------------------------------------------------------- web host

/// The web host (run inside its namespace): answers UDP on [`UDP_PORT`]
/// and TCP on [`TCP_PORT`] with the address it saw, "resolves" on 53 by
/// answering every query with no records, holds the latest connection on
/// [`LONG_TCP_PORT`], and on a "poke" to [`POKE_PORT`] writes on it and
/// answers "reset" if the exit reset it, "alive" if not.
pub fn web_host_main() {
    if !crate::netns::is_helper() {
        return;
    }
    let udp = UdpSocket::bind((WEB, UDP_PORT)).unwrap();
    std::thread::spawn(move || {
        let mut buf = [0; 2048];
        while let Ok((_, from)) = udp.recv_from(&mut buf) {
            let _ = udp.send_to(format!("saw {from}").as_bytes(), from);
        }
    });
    let dns = UdpSocket::bind((RESOLVER, DNS_PORT)).unwrap();
    std::thread::spawn(move || {
        let mut buf = [0; 2048];
        while let Ok((len, from)) = dns.recv_from(&mut buf) {
            // The query back as an empty NOERROR response (QR set).
            let mut answer = buf[..len].to_vec();
            if let Some(flags) = answer.get_mut(2) {
                *flags |= 0x80;
            }
            let _ = dns.send_to(&answer, from);
        }
    });
    let held: Arc<Mutex<Option<TcpStream>>> = Arc::default();
    let long = TcpListener::bind((WEB, LONG_TCP_PORT)).unwrap();
    let holder = held.clone();
    std::thread::spawn(move || {
        for stream in long.incoming() {
            let Ok(mut stream) = stream else { continue };
            let peer = stream.peer_addr().unwrap();
            let _ = stream.write_all(format!("saw {peer}").as_bytes());
            *holder.lock().unwrap() = Some(stream);
        }
    });
    let poke = UdpSocket::bind((WEB, POKE_PORT)).unwrap();
    std::thread::spawn(move || {
        let mut buf = [0; 64];
        while let Ok((_, from)) = poke.recv_from(&mut buf) {
            let verdict = match held.lock().unwrap().as_mut() {
                Some(stream) => late_write_reset(stream),
                None => "none",
            };
            let _ = poke.send_to(verdict.as_bytes(), from);
        }
    });
    let tcp = TcpListener::bind((WEB, TCP_PORT)).unwrap();
    for stream in tcp.incoming() {
        let Ok(mut stream) = stream else { continue };
        let peer = stream.peer_addr().unwrap();
        let _ = stream.write_all(format!("saw {peer}").as_bytes());
        // Keep it open briefly so the data is not lost to a reset.
        let mut sink = [0; 64];
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = stream.read(&mut sink);
    }
}

/// Writes late data on `stream`; "reset" if the other end resets it within
/// a second (as a host with no such connection does), else "alive".
fn late_write_reset(stream: &mut TcpStream) -> &'static str {
    if stream.write_all(b"late data").is_err() {
        return "reset";
    }
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut buf = [0; 64];
    match stream.read(&mut buf) {
        Err(error) if error.kind() == ErrorKind::ConnectionReset => "reset",
        Ok(0) => "reset",
        _ => "alive",
    }
}
