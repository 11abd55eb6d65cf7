//! Engine 2: the same performance scenario and seed give byte-identical
//! output files through the real `trine-sim` binary; another seed gives
//! other results.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod perf_common;

use std::path::Path;
use std::process::Command;

const FILES: [&str; 16] = [
    "scenario.toml",
    "summary.json",
    "circuits.csv",
    "build_time_cdf.csv",
    "downloads.csv",
    "ttfb_cdf.csv",
    "download_time_cdf.csv",
    "flows.csv",
    "relays.csv",
    "drops.csv",
    "build_time_cdf.svg",
    "build_time_cdf.png",
    "ttfb_cdf.svg",
    "ttfb_cdf.png",
    "download_time_cdf.svg",
    "download_time_cdf.png",
];

fn run_binary(scenario: &Path, seed: u64, out: &Path) {
    let status = Command::new(env!("CARGO_BIN_EXE_trine-sim"))
        .arg("run")
        .arg(scenario)
        .args(["--seed", &seed.to_string(), "--out"])
        .arg(out)
        .status()
        .unwrap_or_else(|error| panic!("cannot start trine-sim: {error}"));
    assert!(status.success(), "trine-sim run failed: {status}");
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

#[test]
fn same_seed_same_bytes_other_seed_other_results() {
    let base = perf_common::scratch("determinism");
    let scenario = base.join("perf.toml");
    let spec = perf_common::Spec {
        topology: "kind = \"coordinates\"\nnodes = 10\nmin_latency = \"5 ms\"\n\
                   max_latency = \"60 ms\"\npacket_loss = 0.01\n\
                   host_bandwidth_up = \"20 Mbit\"\nhost_bandwidth_down = \"50 Mbit\"",
        ..Default::default()
    };
    std::fs::write(&scenario, spec.text()).unwrap();
    let (first, second, other) = (base.join("a"), base.join("b"), base.join("c"));
    run_binary(&scenario, 5, &first);
    run_binary(&scenario, 5, &second);
    run_binary(&scenario, 6, &other);
    for name in FILES {
        assert_eq!(
            read(&first.join(name)),
            read(&second.join(name)),
            "{name} differs"
        );
    }
    assert_ne!(
        read(&first.join("downloads.csv")),
        read(&other.join("downloads.csv"))
    );
    // The figures are real images of the CDFs.
    assert!(read(&first.join("download_time_cdf.png")).starts_with(b"\x89PNG\r\n\x1a\n"));
    let svg = String::from_utf8_lossy(&read(&first.join("build_time_cdf.svg"))).into_owned();
    assert!(
        svg.contains("<svg") && svg.contains("Circuit build time"),
        "{svg}"
    );
    let summary = String::from_utf8_lossy(&read(&first.join("summary.json"))).into_owned();
    assert!(summary.contains("\"seed\": 5"), "{summary}");
    assert!(summary.contains("\"engine\": \"performance\""), "{summary}");
    let resolved = String::from_utf8_lossy(&read(&first.join("scenario.toml"))).into_owned();
    let reread = trine_sim::perf::PerfScenario::from_toml(&resolved).unwrap();
    assert_eq!(reread, spec.scenario());
    let _ = std::fs::remove_dir_all(&base);
}
