//! `trine-gui`: the Trine desktop window (see the library for the app).
//! Runs as the user; talks to the root daemon over its control socket.
//!
//! ```text
//! trine-gui [--socket PATH] [--no-tray] [--connect] [--screenshot FILE]
//! ```
//!
//! Where the desktop shows StatusNotifierItems, a tray icon shows the
//! state and offers connect/disconnect, new circuit, open and quit;
//! `--no-tray` leaves it out.
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

const USAGE: &str = "\
usage: trine-gui [--socket PATH] [--no-tray] [--connect] [--screenshot FILE]

The Trine desktop app. Talks to the Trine daemon's control socket.

  --socket PATH      the daemon's control socket (default: TRINE_SOCKET, else DEFAULT)
  --no-tray          no tray icon (by default one is shown where the desktop has a tray)
  --connect          send connect at start
  --screenshot FILE  once connected with three hops, save the window as PNG and quit
  -h, --help         this help";

/// The command line.
struct Options {
    socket: PathBuf,
    tray: bool,
    connect: bool,
    screenshot: Option<PathBuf>,
}

/// Parses the arguments after the program name; `Ok(None)` for help.
fn parse(args: &[String]) -> Result<Option<Options>, String> {
    let mut options = Options {
        socket: std::env::var_os("TRINE_SOCKET").map_or_else(
            || PathBuf::from(trine_client::config::DEFAULT_SOCKET),
            PathBuf::from,
        ),
        tray: true,
        connect: false,
        screenshot: None,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .map(PathBuf::from)
                .ok_or_else(|| format!("{arg} needs a value"))
        };
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--socket" => options.socket = value()?,
            "--screenshot" => options.screenshot = Some(value()?),
            "--no-tray" => options.tray = false,
            "--connect" => options.connect = true,
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(Some(options))
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = USAGE.replace("DEFAULT", trine_client::config::DEFAULT_SOCKET);
    let options = match parse(&args) {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{usage}");
            return std::process::ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("trine-gui: {error}\n\n{usage}");
            return std::process::ExitCode::from(2);
        }
    };
    let mut connect = options.connect;
    let mut want_tray = options.tray;
    let screenshot = options.screenshot;
    let progress = Arc::new(AtomicU8::new(0));
    let outcome = progress.clone();
    let mut app = trine_gui::Gui::new(options.socket);
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
        if std::mem::take(&mut want_tray) {
            let ctx = ui.ctx().clone();
            match trine_gui::tray::spawn(move || ctx.request_repaint()) {
                Ok(tray) => app.attach_tray(tray),
                Err(error) => eprintln!("trine-gui: no tray icon ({error}); the window is the app"),
            }
        }
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
