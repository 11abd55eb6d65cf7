//! The Trine desktop app: an unprivileged window over the root daemon's
//! control socket. It polls the daemon's status through
//! [`trine_client::control::ControlClient`] — the same protocol code the
//! `trine` CLI uses — and draws one of three screens: the tunnel (state,
//! the big Connect/Disconnect button, the circuit, traffic), "the daemon
//! is not running", or "no permission for the socket".
//!
//! [`Gui::ui`] is the whole app; `main.rs` only hands it to eframe, and
//! the tests drive it headlessly with egui_kittest. A [`tray`] icon, where
//! the desktop has a tray, is another view of the same state: it sends
//! its menu's actions here and shows what [`Gui::tray_view`] says.

pub mod tray;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use egui::{Color32, RichText};
use tray::{TrayAction, TrayLink, TrayView};
use trine_client::config::{DnsMode, check_mtu};
use trine_client::control::{
    ControlClient, ControlError, Request, Response, Settings, State, Status, human_bytes,
};

/// How often the status is asked for.
const POLL: Duration = Duration::from_millis(500);
/// Traffic samples kept for the graph (one per poll: a minute).
const HISTORY: usize = 120;
/// How long one control request may take before the daemon counts as
/// unresponsive.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// What the window shows.
#[derive(Debug, Clone, PartialEq)]
enum Screen {
    /// Not asked yet.
    Starting,
    /// The daemon answers.
    Tunnel(Box<Status>),
    /// Nobody listens on the socket.
    NotRunning,
    /// The socket is there but this user may not use it.
    NoPermission,
    /// Something else went wrong talking to the daemon.
    Broken(String),
}

/// The app.
pub struct Gui {
    socket: PathBuf,
    client: Option<ControlClient>,
    screen: Screen,
    last_poll: Option<Instant>,
    /// The daemon's answer to the last action, if it was an error.
    action_error: Option<String>,
    /// (bytes up, bytes down) per poll, oldest first.
    history: VecDeque<(u64, u64)>,
    /// The settings view, while open.
    settings: Option<SettingsForm>,
    tray: Option<TrayLink>,
}

/// The settings view: what the daemon said, and the user's edits.
#[derive(Debug, Clone)]
struct SettingsForm {
    current: Settings,
    mtu: String,
    ipv6: bool,
    dns: DnsMode,
    /// Shown after a save.
    notice: Option<String>,
}

impl SettingsForm {
    fn new(current: Settings) -> Self {
        Self {
            mtu: current.mtu.to_string(),
            ipv6: current.ipv6,
            dns: current.dns_mode,
            current,
            notice: None,
        }
    }

    /// The MTU typed, or what is wrong with it.
    fn mtu(&self) -> Result<u16, String> {
        let mtu: u16 = self
            .mtu
            .trim()
            .parse()
            .map_err(|_| "The MTU must be a whole number.".to_string())?;
        check_mtu(mtu).map_err(|problem| format!("The MTU {problem}."))?;
        Ok(mtu)
    }
}

const DNS_MODES: [(DnsMode, &str); 4] = [
    (DnsMode::Auto, "Automatic"),
    (DnsMode::ResolvConf, "Rewrite resolv.conf"),
    (DnsMode::Resolved, "systemd-resolved"),
    (DnsMode::Off, "Leave the resolver alone"),
];

impl Gui {
    /// An app talking to the daemon at `socket`.
    pub fn new(socket: PathBuf) -> Self {
        Self {
            socket,
            client: None,
            screen: Screen::Starting,
            last_poll: None,
            action_error: None,
            history: VecDeque::with_capacity(HISTORY),
            settings: None,
            tray: None,
        }
    }

    /// Lets a tray icon drive the app and shows the state on it.
    pub fn attach_tray(&mut self, tray: TrayLink) {
        self.tray = Some(tray);
    }

    /// Sends one request, (re)connecting as needed. A broken connection
    /// is retried once on a fresh one (the daemon may have restarted);
    /// then a failure sets the screen.
    fn request(&mut self, request: &Request) -> Option<Response> {
        let had_connection = self.client.is_some();
        match self.request_once(request) {
            Err(error) if had_connection && !matches!(error, ControlError::Daemon(_)) => {
                self.client = None;
                let retried = self.request_once(request);
                self.finish(retried)
            }
            result => self.finish(result),
        }
    }

    fn finish(&mut self, result: Result<Response, ControlError>) -> Option<Response> {
        match result {
            Ok(response) => Some(response),
            Err(ControlError::Daemon(message)) => {
                self.action_error = Some(message);
                None
            }
            Err(error) => {
                self.client = None;
                self.unreachable(error);
                None
            }
        }
    }

    fn request_once(&mut self, request: &Request) -> Result<Response, ControlError> {
        if self.client.is_none() {
            let mut client = ControlClient::connect(&self.socket)?;
            client.set_timeout(REQUEST_TIMEOUT);
            self.client = Some(client);
        }
        match self.client.as_mut() {
            Some(client) => client.request(request),
            None => Err(ControlError::NotRunning(self.socket.clone())),
        }
    }

    fn unreachable(&mut self, error: ControlError) {
        self.screen = match error {
            ControlError::NotRunning(_) => Screen::NotRunning,
            ControlError::PermissionDenied(_) => Screen::NoPermission,
            other => Screen::Broken(other.to_string()),
        };
    }

    /// Asks for the status if a poll is due.
    fn poll(&mut self, now: Instant) {
        if self
            .last_poll
            .is_some_and(|at| now.duration_since(at) < POLL)
        {
            return;
        }
        self.last_poll = Some(now);
        self.refresh();
    }

    fn refresh(&mut self) {
        if let Some(Response::Status(status)) = self.request(&Request::Status) {
            if self.history.len() == HISTORY {
                self.history.pop_front();
            }
            self.history.push_back((status.bytes_up, status.bytes_down));
            self.screen = Screen::Tunnel(Box::new(status));
        }
    }

    /// Sends an action and shows the new state at once.
    fn act(&mut self, request: Request) {
        self.action_error = None;
        if self.request(&request).is_some() {
            self.refresh();
        }
    }

    /// The daemon's last status, if it answers.
    pub fn status(&self) -> Option<&Status> {
        match &self.screen {
            Screen::Tunnel(status) => Some(status),
            _ => None,
        }
    }

    /// Sends `request` as if its control had been used.
    pub fn send(&mut self, request: Request) {
        self.act(request);
    }

    /// What a tray icon should show now.
    pub fn tray_view(&self) -> TrayView {
        let red = Color32::from_rgb(200, 40, 40);
        // (headline, detail, colour, whether the user is needed)
        let (headline, detail, colour, needs_user) = match &self.screen {
            Screen::Starting => ("Starting".to_string(), String::new(), Color32::GRAY, false),
            Screen::NotRunning => (
                "The daemon is not running".to_string(),
                "sudo systemctl start trine".to_string(),
                red,
                true,
            ),
            Screen::NoPermission => (
                "No permission for the daemon".to_string(),
                "Join the daemon's group (usually trine)".to_string(),
                red,
                true,
            ),
            Screen::Broken(message) => ("Daemon error".to_string(), message.clone(), red, true),
            Screen::Tunnel(status) => {
                let (words, colour) = describe(status.state);
                let detail = match (&status.exit_address, &self.action_error) {
                    (_, Some(error)) => error.clone(),
                    (Some(exit), None) => format!("Exit address {exit}"),
                    (None, None) => status.last_error.clone().unwrap_or_default(),
                };
                let blocked = status.state == State::Blocked;
                (words.to_string(), detail, colour, blocked)
            }
        };
        let status = self.status();
        TrayView {
            headline,
            detail,
            colour: [colour.r(), colour.g(), colour.b()],
            toggle: status.map(|s| match s.state {
                State::Disconnected | State::Blocked => TrayAction::Connect,
                _ => TrayAction::Disconnect,
            }),
            new_circuit: status
                .is_some_and(|s| matches!(s.state, State::Connected | State::Reconnecting)),
            attention: needs_user || self.action_error.is_some(),
        }
    }

    /// Carries out what the tray's menu asked for, and shows the state
    /// on the tray.
    fn serve_tray(&mut self, ctx: &egui::Context) {
        let Some(tray) = &self.tray else { return };
        let actions: Vec<TrayAction> = std::iter::from_fn(|| tray.next_action()).collect();
        for action in actions {
            match action {
                TrayAction::Connect => self.act(Request::Connect),
                TrayAction::Disconnect => self.act(Request::Disconnect),
                TrayAction::NewCircuit => self.act(Request::NewCircuit),
                TrayAction::OpenWindow => {
                    ctx.send_viewport_cmd(egui::ViewportCommand::Minimized(false));
                    ctx.send_viewport_cmd(egui::ViewportCommand::Focus);
                }
                TrayAction::Quit => ctx.send_viewport_cmd(egui::ViewportCommand::Close),
            }
        }
        let view = self.tray_view();
        if let Some(tray) = &mut self.tray {
            tray.show(view);
        }
    }

    /// Draws the app (and polls the daemon when due).
    pub fn ui(&mut self, ui: &mut egui::Ui) {
        self.poll(Instant::now());
        self.serve_tray(ui.ctx());
        ui.ctx().request_repaint_after(POLL);
        match self.screen.clone() {
            Screen::Starting => {
                ui.label("Asking the Trine daemon…");
            }
            Screen::NotRunning => self.not_running(ui),
            Screen::NoPermission => self.no_permission(ui),
            Screen::Broken(message) => {
                ui.heading("Cannot talk to the Trine daemon");
                ui.label(message);
                if ui.button("Try again").clicked() {
                    self.refresh();
                }
            }
            Screen::Tunnel(status) => self.tunnel(ui, &status),
        }
    }

    fn not_running(&mut self, ui: &mut egui::Ui) {
        ui.heading("The Trine daemon is not running");
        ui.label(format!("Nothing answers on {}.", self.socket.display()));
        ui.label("Start it, then this window connects by itself:");
        ui.monospace("sudo systemctl start trine");
        ui.label("(or run `sudo trine daemon` in a terminal).");
        if ui.button("Try again").clicked() {
            self.refresh();
        }
    }

    fn no_permission(&mut self, ui: &mut egui::Ui) {
        ui.heading("No permission to talk to the Trine daemon");
        ui.label(format!(
            "Your user may not use {}. Join the group the daemon gives it \
             (its `control.group` setting, usually `trine`), then log in again:",
            self.socket.display()
        ));
        ui.monospace("sudo usermod -aG trine $USER");
        if ui.button("Try again").clicked() {
            self.refresh();
        }
    }

    fn tunnel(&mut self, ui: &mut egui::Ui, status: &Status) {
        let (words, colour) = describe(status.state);
        ui.label(RichText::new(words).size(24.0).color(colour).strong());
        let (button, request) = match status.state {
            State::Disconnected | State::Blocked => ("Connect", Request::Connect),
            _ => ("Disconnect", Request::Disconnect),
        };
        let big = egui::Button::new(RichText::new(button).size(22.0));
        if ui.add_sized([220.0, 56.0], big).clicked() {
            self.act(request);
        }
        if let Some(error) = self.action_error.clone() {
            ui.colored_label(Color32::from_rgb(200, 40, 40), error);
        }
        if let Some(error) = &status.last_error {
            ui.label(RichText::new(format!("Last error: {error}")).italics());
        }
        ui.separator();
        circuit(ui, status);
        ui.separator();
        self.traffic(ui, status);
        ui.separator();
        ui.horizontal(|ui| {
            let connected = matches!(status.state, State::Connected | State::Reconnecting);
            if ui
                .add_enabled(connected, egui::Button::new("New circuit"))
                .on_hover_text("A fresh path with a new exit")
                .clicked()
            {
                self.act(Request::NewCircuit);
            }
            let mut lockdown = status.lockdown;
            if ui
                .checkbox(&mut lockdown, "Lockdown")
                .on_hover_text("Block all traffic whenever the tunnel is down")
                .changed()
            {
                self.act(Request::Lockdown { on: lockdown });
            }
            if ui.button("Settings").clicked() {
                self.settings = match self.settings {
                    Some(_) => None,
                    None => self.fetch_settings().map(SettingsForm::new),
                };
            }
        });
        if self.settings.is_some() {
            ui.separator();
            self.settings_view(ui);
        }
    }

    fn fetch_settings(&mut self) -> Option<Settings> {
        match self.request(&Request::Settings) {
            Some(Response::Settings(settings)) => Some(settings),
            _ => None,
        }
    }

    fn settings_view(&mut self, ui: &mut egui::Ui) {
        let Some(form) = &mut self.settings else {
            return;
        };
        let current = form.current.clone();
        ui.label(RichText::new("Settings").strong());
        egui::Grid::new("settings").num_columns(2).show(ui, |ui| {
            ui.label("Configuration");
            ui.label(&current.config);
            ui.end_row();
            ui.label("Tunnel device");
            ui.label(&current.tun_name);
            ui.end_row();
            let label = ui.label("MTU");
            ui.add(egui::TextEdit::singleline(&mut form.mtu).desired_width(80.0))
                .labelled_by(label.id)
                .on_hover_text("The largest packet the tunnel device takes (1280 to 9000)");
            ui.end_row();
            ui.label("IPv6");
            ui.checkbox(&mut form.ipv6, "Tunnel IPv6 (otherwise it is blocked)");
            ui.end_row();
            let label = ui.label("DNS");
            egui::ComboBox::from_id_salt("dns")
                .selected_text(dns_words(form.dns))
                .show_ui(ui, |ui| {
                    for (mode, words) in DNS_MODES {
                        ui.selectable_value(&mut form.dns, mode, words);
                    }
                })
                .response
                .labelled_by(label.id);
            ui.end_row();
            ui.label("Directory authorities");
            ui.label(format!(
                "{} (threshold {})",
                current.authorities.join(", "),
                current.threshold
            ));
            ui.end_row();
        });
        ui.label(format!("DNS now: {}", current.dns));
        ui.label(
            "The authorities (the bootstrap list) come with their keys from the file the \
             configuration names; change them there, as root.",
        );
        let mtu = form.mtu();
        if let Err(problem) = &mtu {
            ui.colored_label(Color32::from_rgb(200, 40, 40), problem);
        }
        let changed = mtu.as_ref().is_ok_and(|mtu| *mtu != current.mtu)
            || form.ipv6 != current.ipv6
            || form.dns != current.dns_mode;
        let save = ui.add_enabled(mtu.is_ok() && changed, egui::Button::new("Save settings"));
        if let Some(notice) = &form.notice {
            ui.label(notice);
        }
        if let (true, Ok(mtu)) = (save.clicked(), mtu) {
            let change = Request::ChangeSettings {
                mtu: Some(mtu),
                ipv6: Some(form.ipv6),
                dns: Some(form.dns),
            };
            self.action_error = None;
            if self.request(&change).is_some() {
                if let Some(settings) = self.fetch_settings() {
                    let pending = settings.pending;
                    let mut form = SettingsForm::new(settings);
                    form.notice = Some(
                        if pending {
                            "Saved. The tunnel uses them from the next connect."
                        } else {
                            "Saved."
                        }
                        .to_string(),
                    );
                    self.settings = Some(form);
                }
            }
        }
    }

    fn traffic(&self, ui: &mut egui::Ui, status: &Status) {
        ui.label(format!(
            "Traffic: {} up, {} down",
            human_bytes(status.bytes_up),
            human_bytes(status.bytes_down)
        ));
        if let Some(since) = status.connected_since {
            ui.label(format!("Connected since Unix time {since}"));
        }
        // Bytes per poll interval over the last minute, down in blue, up
        // in orange.
        let rates: Vec<(f32, f32)> = self
            .history
            .iter()
            .zip(self.history.iter().skip(1))
            .map(|(a, b)| {
                (
                    b.0.saturating_sub(a.0) as f32,
                    b.1.saturating_sub(a.1) as f32,
                )
            })
            .collect();
        let peak = rates
            .iter()
            .map(|(up, down)| up.max(*down))
            .fold(1.0, f32::max);
        let (response, painter) = ui.allocate_painter(
            egui::vec2(ui.available_width().min(360.0), 60.0),
            egui::Sense::hover(),
        );
        let rect = response.rect;
        painter.rect_stroke(
            rect,
            2.0,
            egui::Stroke::new(1.0, Color32::GRAY),
            egui::StrokeKind::Inside,
        );
        let step = rect.width() / (HISTORY.max(2) - 1) as f32;
        for (pick, colour) in [
            (0usize, Color32::from_rgb(230, 140, 30)),
            (1, Color32::from_rgb(40, 110, 220)),
        ] {
            let points: Vec<egui::Pos2> = rates
                .iter()
                .enumerate()
                .map(|(i, rate)| {
                    let value = if pick == 0 { rate.0 } else { rate.1 };
                    egui::pos2(
                        rect.left() + i as f32 * step,
                        rect.bottom() - value / peak * rect.height(),
                    )
                })
                .collect();
            if points.len() > 1 {
                painter.add(egui::Shape::line(points, egui::Stroke::new(1.5, colour)));
            }
        }
        response.on_hover_text("Traffic over the last minute: orange up, blue down");
    }
}

/// The state in words and colour.
fn describe(state: State) -> (&'static str, Color32) {
    match state {
        State::Disconnected => ("Disconnected", Color32::GRAY),
        State::Connecting => ("Connecting…", Color32::from_rgb(220, 160, 0)),
        State::Connected => ("Connected", Color32::from_rgb(20, 160, 60)),
        State::Reconnecting => ("Reconnecting…", Color32::from_rgb(220, 160, 0)),
        State::Blocked => ("Blocked by lockdown", Color32::from_rgb(200, 40, 40)),
    }
}

fn circuit(ui: &mut egui::Ui, status: &Status) {
    if status.hops.is_empty() {
        ui.label("No circuit.");
        return;
    }
    ui.label(RichText::new("Your circuit").strong());
    egui::Grid::new("circuit").striped(true).show(ui, |ui| {
        for hop in &status.hops {
            ui.label(&hop.position);
            ui.label(&hop.nickname);
            ui.monospace(&hop.fingerprint[..16.min(hop.fingerprint.len())]);
            ui.label(&hop.address);
            ui.end_row();
        }
    });
    if let Some(exit) = &status.exit_address {
        ui.label(format!("Your traffic leaves from the exit: {exit}"));
    }
    ui.label(if status.standby_ready {
        "A standby circuit is ready."
    } else {
        "No standby circuit yet."
    });
}

fn dns_words(mode: DnsMode) -> &'static str {
    DNS_MODES
        .iter()
        .find(|(m, _)| *m == mode)
        .map_or("?", |(_, words)| words)
}
