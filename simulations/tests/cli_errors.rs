//! Bad arguments to `trine-sim run` are refused with an error that says
//! what to fix, before anything is written, and never with a panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::path::Path;
use std::process::Command;

/// Runs the binary with `args` after `run SCENARIO --out OUT` and
/// `TRINE_SIM_FONT` set to `font_env` (if any); asserts it fails without
/// writing OUT and returns its stderr.
fn refused(base: &Path, args: &[&str], font_env: Option<&Path>) -> String {
    let scenario = base.join("scenario.toml");
    let out = base.join("out");
    let mut command = Command::new(env!("CARGO_BIN_EXE_trine-sim"));
    command
        .arg("run")
        .arg(&scenario)
        .arg("--out")
        .arg(&out)
        .args(args);
    command.env_remove("TRINE_SIM_FONT");
    if let Some(font) = font_env {
        command.env("TRINE_SIM_FONT", font);
    }
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "{args:?} accepted");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!out.exists(), "{args:?} wrote {}", out.display());
    stderr
}

#[test]
fn bad_seeds_and_fonts_are_refused_naming_the_fix() {
    let base = common::scratch("cli-errors");
    let scenario = base.join("scenario.toml");
    std::fs::write(
        &scenario,
        common::small(5, 2.0, 1.0, 0.0).to_toml().unwrap(),
    )
    .unwrap();

    for seeds in ["0", "1001", "many"] {
        let stderr = refused(&base, &["--seeds", seeds], None);
        assert!(stderr.contains("--seeds"), "{stderr}");
    }

    let stderr = refused(
        &base,
        &["--seed", &u64::MAX.to_string(), "--seeds", "2"],
        None,
    );
    assert!(stderr.contains("largest seed"), "{stderr}");

    let missing = base.join("no-such-font.ttf");
    let stderr = refused(&base, &["--font", missing.to_str().unwrap()], None);
    assert!(stderr.contains("no-such-font.ttf"), "{stderr}");
    assert!(stderr.contains("fonts-dejavu-core"), "{stderr}");

    // The environment variable names the font when --font does not.
    let stderr = refused(&base, &[], Some(&missing));
    assert!(stderr.contains("no-such-font.ttf"), "{stderr}");

    // A file that is not a font.
    let stderr = refused(&base, &["--font", scenario.to_str().unwrap()], None);
    assert!(stderr.contains("not a TrueType"), "{stderr}");
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn font_flag_wins_over_the_environment() {
    let base = common::scratch("cli-font");
    let scenario = base.join("scenario.toml");
    std::fs::write(
        &scenario,
        common::small(5, 2.0, 1.0, 0.0).to_toml().unwrap(),
    )
    .unwrap();
    let out = base.join("out");
    let status = Command::new(env!("CARGO_BIN_EXE_trine-sim"))
        .arg("run")
        .arg(&scenario)
        .arg("--out")
        .arg(&out)
        .args(["--font", trine_sim::plot::DEFAULT_FONT])
        .env("TRINE_SIM_FONT", base.join("no-such-font.ttf"))
        .status()
        .unwrap();
    assert!(status.success());
    assert!(out.join("client_fraction_cdf.png").exists());
    let _ = std::fs::remove_dir_all(&base);
}
