//! `trine-gui`: the Trine desktop window (see the library for the app).
//! Runs as the user; talks to the root daemon over its control socket.
//!
//! ```text
//! trine-gui [--socket PATH] [--connect] [--screenshot FILE]
//! ```
//!
//! `--socket` (or `TRINE_SOCKET`, default /run/trine/control.sock) names
//! the socket. For unattended runs (the end-to-end test under Xvfb):
//! `--connect` sends "connect" at start, and `--screenshot FILE` waits
//! until the window shows a connected three-hop circuit, saves the window
//! as a PNG, prints the circuit and closes.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use trine_client::control::{Request, State};

/// Screenshot progress: not asked, asked, saved, failed.
const ASKED: u8 = 1;
const SAVED: u8 = 2;
const FAILED: u8 = 3;

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1).cloned())
    };
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!(
            "trine-gui [--socket PATH] [--connect] [--screenshot FILE]\n\
             The Trine desktop app; talks to the daemon at --socket, TRINE_SOCKET or {}.",
            trine_client::config::DEFAULT_SOCKET
        );
        return std::process::ExitCode::SUCCESS;
    }
    let socket = value("--socket")
        .or_else(|| std::env::var("TRINE_SOCKET").ok())
        .unwrap_or_else(|| trine_client::config::DEFAULT_SOCKET.to_string());
    let mut connect = args.iter().any(|a| a == "--connect");
    let screenshot = value("--screenshot").map(PathBuf::from);
    let progress = Arc::new(AtomicU8::new(0));
    let outcome = progress.clone();
    let mut app = trine_gui::Gui::new(PathBuf::from(socket));
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("Trine")
            .with_app_id("trine-gui")
            .with_inner_size([440.0, 560.0]),
        ..Default::default()
    };
    let result = eframe::run_ui_native("Trine", options, move |ui, _frame| {
        egui::ScrollArea::vertical().show(ui, |ui| {
            egui::Frame::new()
                .inner_margin(16.0)
                .show(ui, |ui| app.ui(ui));
        });
        if connect && app.status().is_some() {
            connect = false;
            app.send(Request::Connect);
        }
        let Some(path) = &screenshot else { return };
        match progress.load(Ordering::SeqCst) {
            0 => {
                let Some(status) = app.status() else { return };
                if status.state != State::Connected || status.hops.len() != 3 {
                    return;
                }
                let path = path.clone();
                let progress = progress.clone();
                println!(
                    "circuit: {} exit address: {}",
                    status
                        .hops
                        .iter()
                        .map(|h| h.nickname.as_str())
                        .collect::<Vec<_>>()
                        .join(" -> "),
                    status.exit_address.as_deref().unwrap_or("?")
                );
                progress.store(ASKED, Ordering::SeqCst);
                ui.ctx().request_screenshot(move |image| {
                    let [width, height] = image.size;
                    let bytes: Vec<u8> = image.pixels.iter().flat_map(|p| p.to_array()).collect();
                    let saved = image::RgbaImage::from_raw(width as u32, height as u32, bytes)
                        .map(|png| png.save(&path));
                    let done = matches!(saved, Some(Ok(())));
                    progress.store(if done { SAVED } else { FAILED }, Ordering::SeqCst);
                });
                ui.ctx().request_repaint();
            }
            SAVED | FAILED => ui.ctx().send_viewport_cmd(egui::ViewportCommand::Close),
            _ => ui.ctx().request_repaint(),
        }
    });
    match (result, outcome.load(Ordering::SeqCst)) {
        (Err(error), _) => {
            eprintln!("trine-gui: {error}");
            std::process::ExitCode::FAILURE
        }
        (Ok(()), FAILED) => {
            eprintln!("trine-gui: could not save the screenshot");
            std::process::ExitCode::FAILURE
        }
        _ => std::process::ExitCode::SUCCESS,
    }
}
