//! The desktop app against a real network: `trine-gui` on a virtual
//! display (Xvfb, Mesa software OpenGL) talks to the real client daemon in
//! a namespace network (3 authorities, 3 relays, 2 exits), presses
//! Connect itself (`--connect`), and once its window shows a connected
//! three-hop circuit saves a screenshot and prints the circuit. The test
//! checks that circuit and exit address against the daemon's own status
//! and keeps the screenshot as a build artifact
//! (`target/artifacts/trine-gui-e2e.png`, not in git).
//!
//! Needs root and `xvfb-run` (scripts/install-deps.sh installs it);
//! TRINE_SKIP_NETNS=1 skips it knowingly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::Path;
use std::process::Command;

use trine_testnet::netns_tests_enabled;
use trine_testnet::trine::{Binaries, Naming, Shape, TrineNet};

#[test]
fn the_app_connects_and_shows_the_circuit_on_a_real_display() {
    if !netns_tests_enabled() {
        return;
    }
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_trine-testnet"))
        .parent()
        .unwrap();
    let gui = bin_dir.join("trine-gui");
    let binaries = Binaries::in_dir(bin_dir);
    for needed in [gui.as_path()].into_iter().chain(binaries.missing()) {
        assert!(
            needed.exists(),
            "{} is missing: `cargo build --workspace` (make test does)",
            needed.display()
        );
    }
    assert!(
        Command::new("xvfb-run").arg("--help").output().is_ok(),
        "xvfb-run is missing: run scripts/install-deps.sh (as root)"
    );
    let artifacts = bin_dir.parent().unwrap().join("artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let screenshot = artifacts.join("trine-gui-e2e.png");
    let _ = std::fs::remove_file(&screenshot);

    let root = std::env::temp_dir().join(format!("trine-gui-e2e-{}", std::process::id()));
    let shape = Shape {
        relays: 3,
        exits: 2,
        interval_secs: 6,
        ..Shape::default()
    };
    let mut net = TrineNet::start(Naming::PerProcess("trng"), shape, binaries, &root);
    net.start_client();

    // The app presses Connect itself; it waits through the directory's
    // first consensus. `timeout` bounds the whole run.
    let out = Command::new("timeout")
        .args(["180", "xvfb-run", "-a", "-s", "-screen 0 1024x768x24"])
        .arg(&gui)
        .arg("--socket")
        .arg(net.client_socket())
        .args(["--connect", "--screenshot"])
        .arg(&screenshot)
        .env("LIBGL_ALWAYS_SOFTWARE", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "trine-gui failed: {stdout}{}\nclient log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        net.log("client")
    );

    // What the window showed is what the daemon says.
    let path = net.client_path();
    let status = net.client_status();
    let exit = status["exit_address"].as_str().unwrap();
    assert_eq!(path.len(), 3);
    let shown = format!("circuit: {} exit address: {exit}", path.join(" -> "));
    assert!(
        stdout.contains(&shown),
        "the app showed {stdout:?}, the daemon says {shown:?}"
    );
    let png = std::fs::read(&screenshot).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    assert!(
        png.len() > 10_000,
        "a nearly empty screenshot ({} bytes)",
        png.len()
    );
    drop(net);
    let _ = std::fs::remove_dir_all(&root);
}
