//! Link shaping on a two-node namespace network: `--delay` holds what
//! each node receives in the userspace NFQUEUE helper (so a ping's round
//! trip meets the delay twice), and `--loss` drops a share of it. The
//! checks are properties (a lower bound on every round trip, a share of
//! losses far from 0 and from all), not speed measurements.
//!
//! Needs root; TRINE_SKIP_NETNS=1 skips it knowingly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::Path;

use trine_testnet::links::{self, LinkShape};
use trine_testnet::{Network, Node, netns_tests_enabled};

/// Round trips in ms from `ping` output.
fn round_trips(text: &str) -> Vec<f64> {
    text.lines()
        .filter_map(|l| l.split("time=").nth(1))
        .filter_map(|t| t.split_whitespace().next()?.parse().ok())
        .collect()
}

#[test]
fn delay_and_loss_act_on_what_each_node_sends() {
    if !netns_tests_enabled() {
        return;
    }
    let testnet = Path::new(env!("CARGO_BIN_EXE_trine-testnet"));
    let mut network = Network::build(
        "trnl",
        &[
            Node {
                role: "a",
                ipv4: "198.18.0.2/24",
                ipv6: None,
            },
            Node {
                role: "b",
                ipv4: "198.18.0.3/24",
                ipv6: None,
            },
        ],
    );
    let delayed = LinkShape {
        delay_ms: Some(25),
        ..LinkShape::default()
    };
    for role in ["a", "b"] {
        links::shape(&mut network, role, delayed, testnet, &std::env::temp_dir());
    }
    // -U: time on arrival in ping itself; the kernel's receive timestamp
    // is taken before the queue, so it would hide the last hop's delay.
    let out = network.exec("a", &["ping", "-U", "-c", "5", "-i", "0.2", "198.18.0.3"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let rtts = round_trips(&text);
    assert_eq!(rtts.len(), 5, "{text}");
    assert!(
        rtts.iter().all(|ms| *ms >= 50.0),
        "a round trip under twice the delay: {text}"
    );
    // A bulk download through both helpers arrives byte for byte.
    let log = std::env::temp_dir().join(format!("trine-links-e2e-{}.log", std::process::id()));
    let web = std::process::Command::new("ip")
        .args(["netns", "exec", &network.ns("b")])
        .arg(testnet)
        .args(["web", "--address", "198.18.0.3", "--log"])
        .arg(&log)
        .spawn()
        .unwrap();
    network.children.push(web);
    let testnet_path = testnet.display().to_string();
    let url = "http://198.18.0.3/bytes/3000000";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let fetched = loop {
        let out = network.exec(
            "a",
            &[&testnet_path, "fetch", "--check", "--timeout", "20", url],
        );
        if out.status.success() || std::time::Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(
        String::from_utf8_lossy(&fetched.stdout).starts_with("ok 3000000 bytes"),
        "{}{}",
        String::from_utf8_lossy(&fetched.stdout),
        String::from_utf8_lossy(&fetched.stderr)
    );
    let _ = std::fs::remove_file(&log);

    // Loss on what b receives only: about half of the echo requests go.
    for tool in ["iptables", "ip6tables"] {
        let out = network.exec("b", &[tool, "-t", "mangle", "-F", "PREROUTING"]);
        assert!(out.status.success());
    }
    let lossy = LinkShape {
        loss_pct: Some(50.0),
        ..LinkShape::default()
    };
    links::shape(&mut network, "b", lossy, testnet, &std::env::temp_dir());
    let out = network.exec(
        "a",
        &["ping", "-c", "100", "-i", "0.01", "-W", "1", "198.18.0.3"],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let answered = round_trips(&text).len();
    // Binomial(100, 0.5): outside 20..=80 with probability below 1e-9.
    assert!(
        (20..=80).contains(&answered),
        "{answered} of 100 answered with 50% loss: {text}"
    );
}
