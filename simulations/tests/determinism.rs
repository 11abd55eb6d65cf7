//! Same scenario and seed give byte-identical output files, through the
//! real `trine-sim` binary; another seed gives other results.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

const FILES: [&str; 5] = [
    "scenario.toml",
    "clients.csv",
    "first_compromise_cdf.csv",
    "compromise_by_day.csv",
    "summary.json",
];

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("trine-sim-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

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
fn same_seed_same_bytes() {
    let base = scratch("determinism");
    std::fs::create_dir_all(&base).unwrap_or_else(|error| panic!("{error}"));
    let scenario_path = base.join("scenario.toml");
    let scenario = common::small(30, 48.0, 2.0, 10.0);
    let text = scenario.to_toml().unwrap_or_else(|error| panic!("{error}"));
    std::fs::write(&scenario_path, text).unwrap_or_else(|error| panic!("{error}"));

    let (first, second, other) = (base.join("a"), base.join("b"), base.join("c"));
    run_binary(&scenario_path, 5, &first);
    run_binary(&scenario_path, 5, &second);
    run_binary(&scenario_path, 6, &other);
    for name in FILES {
        assert_eq!(
            read(&first.join(name)),
            read(&second.join(name)),
            "{name} differs"
        );
    }
    assert_ne!(
        read(&first.join("clients.csv")),
        read(&other.join("clients.csv"))
    );
    let summary = String::from_utf8_lossy(&read(&first.join("summary.json"))).into_owned();
    assert!(summary.contains("\"seed\": 5"), "{summary}");
    assert!(summary.contains(env!("CARGO_PKG_VERSION")), "{summary}");
    let resolved = String::from_utf8_lossy(&read(&first.join("scenario.toml"))).into_owned();
    let reread =
        trine_sim::Scenario::from_toml(&resolved).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(reread, scenario);
    let _ = std::fs::remove_dir_all(&base);
}
