//! Same scenario and seed (or seeds) give byte-identical output files,
//! figures included, through the real `trine-sim` binary; another seed
//! gives other results.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

const FILES: [&str; 14] = [
    "scenario.toml",
    "clients.csv",
    "clients.json",
    "first_compromise_cdf.csv",
    "first_compromise_cdf.json",
    "compromise_by_day.csv",
    "compromise_by_day.json",
    "summary.json",
    "first_compromise_cdf.svg",
    "first_compromise_cdf.png",
    "compromise_over_time.svg",
    "compromise_over_time.png",
    "client_fraction_cdf.svg",
    "client_fraction_cdf.png",
];

/// The files written across seeds, beside the `seed-N` directories.
const AGGREGATE_FILES: [&str; 14] = [
    "scenario.toml",
    "summary.json",
    "first_compromise_cdf.csv",
    "first_compromise_cdf.json",
    "first_compromise_cdf.svg",
    "first_compromise_cdf.png",
    "compromise_over_time.csv",
    "compromise_over_time.json",
    "compromise_over_time.svg",
    "compromise_over_time.png",
    "client_fraction_cdf.csv",
    "client_fraction_cdf.json",
    "client_fraction_cdf.svg",
    "client_fraction_cdf.png",
];

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("trine-sim-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn run_binary(scenario: &Path, seed: u64, seeds: u64, out: &Path) {
    let status = Command::new(env!("CARGO_BIN_EXE_trine-sim"))
        .arg("run")
        .arg(scenario)
        .args(["--seed", &seed.to_string(), "--seeds", &seeds.to_string()])
        .arg("--out")
        .arg(out)
        .status()
        .unwrap_or_else(|error| panic!("cannot start trine-sim: {error}"));
    assert!(status.success(), "trine-sim run failed: {status}");
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// Every file under `dir`, as paths relative to it, sorted.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path.strip_prefix(dir).unwrap().to_owned());
            }
        }
    }
    files.sort();
    files
}

fn write_scenario(base: &Path) -> (PathBuf, trine_sim::Scenario) {
    std::fs::create_dir_all(base).unwrap_or_else(|error| panic!("{error}"));
    let scenario_path = base.join("scenario.toml");
    let scenario = common::small(30, 48.0, 2.0, 10.0);
    let text = scenario.to_toml().unwrap_or_else(|error| panic!("{error}"));
    std::fs::write(&scenario_path, text).unwrap_or_else(|error| panic!("{error}"));
    (scenario_path, scenario)
}

#[test]
fn same_seed_same_bytes() {
    let base = scratch("determinism");
    let (scenario_path, scenario) = write_scenario(&base);

    let (first, second, other) = (base.join("a"), base.join("b"), base.join("c"));
    run_binary(&scenario_path, 5, 1, &first);
    run_binary(&scenario_path, 5, 1, &second);
    run_binary(&scenario_path, 6, 1, &other);
    let expected: Vec<PathBuf> = {
        let mut names: Vec<PathBuf> = FILES.iter().map(PathBuf::from).collect();
        names.sort();
        names
    };
    assert_eq!(
        tree(&first),
        expected,
        "one seed writes exactly these files"
    );
    for name in FILES {
        assert_eq!(
            read(&first.join(name)),
            read(&second.join(name)),
            "{name} differs"
        );
    }
    for name in ["clients.csv", "first_compromise_cdf.svg"] {
        assert_ne!(read(&first.join(name)), read(&other.join(name)), "{name}");
    }
    let summary = String::from_utf8_lossy(&read(&first.join("summary.json"))).into_owned();
    assert!(summary.contains("\"seed\": 5"), "{summary}");
    assert!(summary.contains(env!("CARGO_PKG_VERSION")), "{summary}");
    let resolved = String::from_utf8_lossy(&read(&first.join("scenario.toml"))).into_owned();
    let reread =
        trine_sim::Scenario::from_toml(&resolved).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(reread, scenario);
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn same_seeds_same_bytes_in_every_file() {
    let base = scratch("determinism-seeds");
    let (scenario_path, _) = write_scenario(&base);
    let (first, second) = (base.join("a"), base.join("b"));
    run_binary(&scenario_path, 5, 3, &first);
    run_binary(&scenario_path, 5, 3, &second);

    let files = tree(&first);
    let mut expected: Vec<PathBuf> = AGGREGATE_FILES.iter().map(PathBuf::from).collect();
    for seed in 5..8 {
        expected.extend(
            FILES
                .iter()
                .map(|name| Path::new(&format!("seed-{seed}")).join(name)),
        );
    }
    expected.sort();
    assert_eq!(files, expected);
    assert_eq!(tree(&second), files);
    for name in &files {
        assert_eq!(
            read(&first.join(name)),
            read(&second.join(name)),
            "{} differs",
            name.display()
        );
    }
    // Each seed's files are those of a run with that seed alone.
    let alone = base.join("alone");
    run_binary(&scenario_path, 6, 1, &alone);
    for name in FILES {
        assert_eq!(
            read(&alone.join(name)),
            read(&first.join("seed-6").join(name)),
            "{name}"
        );
    }
    let _ = std::fs::remove_dir_all(&base);
}
