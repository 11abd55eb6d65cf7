//! `trine-gui`: the Trine desktop window (see the library for the app).
//! Runs as the user; talks to the root daemon over its control socket
//! (`--socket`, `TRINE_SOCKET`, default /run/trine/control.sock).

use std::path::PathBuf;

fn main() -> eframe::Result<()> {
    let socket = std::env::args()
        .skip_while(|arg| arg != "--socket")
        .nth(1)
        .or_else(|| std::env::var("TRINE_SOCKET").ok())
        .unwrap_or_else(|| trine_client::config::DEFAULT_SOCKET.to_string());
    let mut app = trine_gui::Gui::new(PathBuf::from(socket));
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("Trine")
            .with_app_id("trine-gui")
            .with_inner_size([440.0, 560.0]),
        ..Default::default()
    };
    eframe::run_ui_native("Trine", options, move |ui, _frame| {
        egui::ScrollArea::vertical().show(ui, |ui| app.ui(ui));
    })
}
