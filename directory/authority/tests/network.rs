//! A whole directory on loopback, in real processes: three authorities
//! (threshold 2) and three relays. The relays publish, the authorities
//! test them, vote, exchange votes and signatures, and serve a consensus
//! that this test verifies as a client would, both from an authority and
//! from a relay acting as a mirror. Then one authority is stopped and the
//! other two still produce the next consensus. The offline `trine-dir
//! verify` and `show` are checked on the result. Readiness and progress
//! are observed (consensus contents), never slept for.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use trine_circuit::RelayId;
use trine_directory::wire::{DirRequest, DirResponse};
use trine_directory::{Flag, UnverifiedConsensus, VerifiedConsensus};
use trine_link::{Endpoint, LinkConfig};
use trine_node::authorities::{Authorities, Authority};
use trine_node::dirclient::{ask, fetch_consensus};

const TRINE_DIR: &str = env!("CARGO_BIN_EXE_trine-dir");
const INTERVAL: u64 = 6;

/// trine-relay is another package's binary: `cargo test --workspace`
/// (what `make test` runs) builds it beside this one.
fn trine_relay() -> PathBuf {
    let path = Path::new(TRINE_DIR).with_file_name("trine-relay");
    assert!(
        path.exists(),
        "{} missing: run `cargo build -p trine-relay` (make test builds it)",
        path.display()
    );
    path
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn run_ok(command: &mut Command) -> String {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn spawn(command: &mut Command) -> Child {
    command
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Polls authority `from` until `done` accepts its consensus.
async fn wait_for(
    endpoint: &Endpoint,
    authorities: &Authorities,
    from: usize,
    deadline: Duration,
    mut done: impl FnMut(&VerifiedConsensus) -> bool,
) -> VerifiedConsensus {
    let only_one = Authorities {
        list: vec![authorities.list[from]],
        set: authorities.set.clone(),
    };
    let until = Instant::now() + deadline;
    loop {
        let last = match fetch_consensus(endpoint, &only_one, None, now()).await {
            Ok(consensus) if done(&consensus) => return consensus,
            Ok(consensus) => format!(
                "valid after {}, {} relays, flags {:?}, {} signers",
                consensus.period().valid_after,
                consensus.relays().len(),
                consensus
                    .relays()
                    .iter()
                    .map(|r| r.flags)
                    .collect::<Vec<_>>(),
                consensus.signers().len()
            ),
            Err(error) => error.to_string(),
        };
        assert!(
            Instant::now() < until,
            "no such consensus within {deadline:?}; last: {last}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_authorities_and_three_relays_make_a_consensus_and_survive_one_authority_down() {
    let root = std::env::temp_dir().join(format!("trine-dir-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let mut processes = Processes(Vec::new());

    // Authorities.
    let mut list = Vec::new();
    for i in 1..=3 {
        let dir = root.join(format!("auth{i}"));
        let address: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let id = run_ok(
            Command::new(TRINE_DIR)
                .arg("init")
                .arg("--dir")
                .arg(&dir)
                .arg("--listen")
                .arg(address.to_string()),
        );
        list.push(Authority {
            id: RelayId::from_hex(id.trim()).unwrap(),
            address,
        });
    }
    let authorities_file = root.join("authorities.toml");
    std::fs::write(&authorities_file, Authorities::render(&list, 2)).unwrap();
    for i in 1..=3 {
        let config = root.join(format!("auth{i}/authority.toml"));
        let text = std::fs::read_to_string(&config)
            .unwrap()
            .replace(
                "interval_secs = 3600",
                &format!("interval_secs = {INTERVAL}"),
            )
            .replace(
                "authorities = \"authorities.toml\"",
                &format!("authorities = \"{}\"", authorities_file.display()),
            )
            .replace(
                "stable_min_uptime_secs = 86400",
                "stable_min_uptime_secs = 0",
            )
            .replace(
                "guard_min_uptime_secs = 691200",
                "guard_min_uptime_secs = 0",
            )
            .replace("guard_min_bandwidth = 1000000", "guard_min_bandwidth = 0")
            .replace("fast_min_bandwidth = 100000", "fast_min_bandwidth = 0")
            // Every process here shares 127.0.0.1.
            .replace("max_relays_per_ip = 2", "max_relays_per_ip = 8");
        std::fs::write(&config, text).unwrap();
        processes.0.push(spawn(
            Command::new(TRINE_DIR)
                .arg("run")
                .arg("--config")
                .arg(&config),
        ));
    }

    // Relays.
    let mut relays = Vec::new();
    for i in 1..=3 {
        let dir = root.join(format!("relay{i}"));
        let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let id = run_ok(
            Command::new(trine_relay())
                .arg("init")
                .arg("--dir")
                .arg(&dir)
                .args([
                    "--nickname",
                    &format!("relay{i}"),
                    "--listen",
                    &listen.to_string(),
                ]),
        );
        let config = dir.join("relay.toml");
        let text = std::fs::read_to_string(&config)
            .unwrap()
            .replace(
                "authorities = \"\"",
                &format!("authorities = \"{}\"", authorities_file.display()),
            )
            .replace("publish_every_secs = 1800", "publish_every_secs = 10")
            .replace(
                "listen = \"127.0.0.1:9464\"",
                &format!("listen = \"127.0.0.1:{}\"", free_port()),
            );
        std::fs::write(&config, text).unwrap();
        processes.0.push(spawn(
            Command::new(trine_relay())
                .arg("run")
                .arg("--config")
                .arg(&config),
        ));
        relays.push((RelayId::from_hex(id.trim()).unwrap(), listen));
    }

    let authorities = Authorities::load(&authorities_file).unwrap();
    let endpoint =
        Endpoint::client("127.0.0.1:0".parse().unwrap(), &LinkConfig::default()).unwrap();

    // A consensus listing every relay as Running, signed by all three.
    let first = wait_for(
        &endpoint,
        &authorities,
        0,
        Duration::from_secs(8 * INTERVAL),
        |c| {
            c.relays().len() == 3
                && c.relays().iter().all(|r| r.flags.has(Flag::Running))
                && c.signers().len() == 3
        },
    )
    .await;
    for (id, address) in &relays {
        let entry = first.relay(id).expect("relay listed");
        assert_eq!(entry.addresses, vec![*address]);
        assert!(entry.flags.has(Flag::Valid) && entry.flags.has(Flag::Guard));
    }

    // A relay mirrors it: fetched from relay 1, it verifies too.
    let until = Instant::now() + Duration::from_secs(60);
    let mirrored = loop {
        let answer = ask(&endpoint, relays[0].1, relays[0].0, &DirRequest::Consensus).await;
        if let Ok(DirResponse::Consensus(bytes)) = answer {
            let consensus = UnverifiedConsensus::from_bytes(&bytes)
                .unwrap()
                .verify(&authorities.set, now(), None)
                .unwrap();
            if consensus.relays().len() == 3 {
                break bytes;
            }
        }
        assert!(
            Instant::now() < until,
            "relay never mirrored a full consensus"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };

    // Offline tools on the mirrored copy, and on a tampered one.
    let file = root.join("consensus.bin");
    std::fs::write(&file, &mirrored).unwrap();
    let verified = run_ok(
        Command::new(TRINE_DIR)
            .arg("verify")
            .arg("--authorities")
            .arg(&authorities_file)
            .arg(&file),
    );
    assert!(verified.starts_with("ok: "), "{verified}");
    let json = run_ok(Command::new(TRINE_DIR).args(["show", "--json"]).arg(&file));
    assert_eq!(json.matches("\"identity\"").count(), 3, "{json}");
    let mut tampered = mirrored.clone();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 1;
    std::fs::write(&file, &tampered).unwrap();
    let out = Command::new(TRINE_DIR)
        .arg("verify")
        .arg("--authorities")
        .arg(&authorities_file)
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!out.stderr.is_empty());

    // One authority down: the other two still make the next consensus.
    let stopped = processes.0.remove(2);
    drop(Processes(vec![stopped]));
    // Periods voted on after this moment cannot carry its signature.
    let stopped_at = now();
    let later = wait_for(
        &endpoint,
        &authorities,
        0,
        Duration::from_secs(6 * INTERVAL),
        |c| c.period().valid_after >= stopped_at + INTERVAL && c.relays().len() == 3,
    )
    .await;
    assert_eq!(
        later.signers().len(),
        2,
        "signed by the two authorities left"
    );
    assert!(!later.signers().contains(&list[2].id));

    drop(processes);
    let _ = std::fs::remove_dir_all(&root);
}
