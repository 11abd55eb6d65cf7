//! The app, driven headlessly by widget label (egui_kittest), against a
//! fake daemon that speaks the real control protocol on a temporary Unix
//! socket and records every request it gets.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::path::PathBuf;
use std::sync::mpsc::channel;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::fake_daemon;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use trine_client::control::Request;
use trine_gui::Gui;
use trine_gui::tray::{TrayAction, TrayLink, TrayView};

fn harness(socket: PathBuf) -> Harness<'static, Gui> {
    Harness::new_ui_state(|ui, gui: &mut Gui| gui.ui(ui), Gui::new(socket))
}

/// Steps the app until `label` is shown (the app polls every 500 ms).
fn wait_for_label(harness: &mut Harness<'_, Gui>, label: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        harness.step();
        if harness.query_by_label_contains(label).is_some() {
            return;
        }
        assert!(Instant::now() < deadline, "`{label}` never appeared");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn connect_sends_connect_and_the_view_follows_to_three_hops() {
    let (socket, fake) = fake_daemon("connect");
    let mut harness = harness(socket);
    wait_for_label(&mut harness, "Disconnected");
    harness.get_by_label("Connect").click();
    harness.step();
    assert!(fake.lock().unwrap().requests.contains(&Request::Connect));
    wait_for_label(&mut harness, "Connecting");
    wait_for_label(&mut harness, "Connected");
    for nickname in ["relay4", "relay6", "exit2"] {
        assert!(
            harness.query_by_label(nickname).is_some(),
            "{nickname} not shown"
        );
    }
    assert!(harness.query_by_label_contains("198.18.0.32").is_some());
    assert!(harness.query_by_label("Disconnect").is_some());
}

#[test]
fn the_daemons_error_is_shown_verbatim() {
    let (socket, fake) = fake_daemon("error");
    let message =
        "cannot create the TUN device trine0 (the daemon needs root): Operation not permitted";
    fake.lock().unwrap().connect_error = Some(message.to_string());
    let mut harness = harness(socket);
    wait_for_label(&mut harness, "Disconnected");
    harness.get_by_label("Connect").click();
    harness.step();
    wait_for_label(&mut harness, message);
}

#[test]
fn the_lockdown_toggle_sends_lockdown_on_then_off() {
    let (socket, fake) = fake_daemon("lockdown");
    let mut harness = harness(socket);
    wait_for_label(&mut harness, "Disconnected");
    harness.get_by_label("Lockdown").click();
    harness.step();
    harness.get_by_label("Lockdown").click();
    harness.step();
    let requests = fake.lock().unwrap().requests.clone();
    let toggles: Vec<&Request> = requests
        .iter()
        .filter(|r| matches!(r, Request::Lockdown { .. }))
        .collect();
    assert_eq!(
        toggles,
        [
            &Request::Lockdown { on: true },
            &Request::Lockdown { on: false }
        ]
    );
}

#[test]
fn a_daemon_that_is_not_running_gets_its_own_screen() {
    let socket = std::env::temp_dir().join(format!("trine-gui-none-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&socket);
    let mut harness = harness(socket);
    wait_for_label(&mut harness, "The Trine daemon is not running");
    assert!(
        harness
            .query_by_label_contains("systemctl start trine")
            .is_some()
    );
}

#[test]
fn the_daemon_going_away_shows_the_not_running_screen() {
    let (socket, fake) = fake_daemon("gone");
    let mut harness = harness(socket.clone());
    wait_for_label(&mut harness, "Disconnected");
    // The daemon stops: its socket file goes and its connections close.
    std::fs::remove_file(&socket).unwrap();
    for connection in fake.lock().unwrap().connections.drain(..) {
        let _ = connection.shutdown(std::net::Shutdown::Both);
    }
    wait_for_label(&mut harness, "The Trine daemon is not running");
}

#[test]
fn the_tray_menu_drives_the_daemon_and_the_tray_follows_the_state() {
    let (socket, fake) = fake_daemon("tray");
    let (actions, picked) = channel();
    let shown: Arc<Mutex<Vec<TrayView>>> = Arc::default();
    let published = shown.clone();
    let mut gui = Gui::new(socket);
    gui.attach_tray(TrayLink::new(
        picked,
        Box::new(move |view: &TrayView| published.lock().unwrap().push(view.clone())),
    ));
    let mut harness = Harness::new_ui_state(|ui, gui: &mut Gui| gui.ui(ui), gui);
    wait_for_label(&mut harness, "Disconnected");
    harness.step();
    let last = || shown.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last().headline, "Disconnected");
    assert_eq!(last().toggle, Some(TrayAction::Connect));
    assert!(!last().new_circuit);

    actions.send(TrayAction::Connect).unwrap();
    wait_for_label(&mut harness, "Connected");
    harness.step();
    assert!(fake.lock().unwrap().requests.contains(&Request::Connect));
    let view = last();
    assert_eq!(view.headline, "Connected");
    assert_eq!(view.detail, "Exit address 198.18.0.32");
    assert_eq!(view.toggle, Some(TrayAction::Disconnect));
    assert!(view.new_circuit && !view.attention);
    // Each change is published once, not every frame.
    let views = shown.lock().unwrap().clone();
    assert!(views.windows(2).all(|pair| pair[0] != pair[1]), "{views:?}");

    actions.send(TrayAction::NewCircuit).unwrap();
    actions.send(TrayAction::Disconnect).unwrap();
    wait_for_label(&mut harness, "Disconnected");
    let requests = fake.lock().unwrap().requests.clone();
    let acted: Vec<&Request> = requests
        .iter()
        .filter(|r| !matches!(r, Request::Status))
        .collect();
    assert_eq!(
        acted,
        [
            &Request::Connect,
            &Request::NewCircuit,
            &Request::Disconnect
        ]
    );
}

#[test]
fn settings_are_checked_as_typed_and_saved_through_the_daemon() {
    let (socket, fake) = fake_daemon("settings");
    let mut harness = harness(socket);
    wait_for_label(&mut harness, "Disconnected");
    harness.get_by_label("Settings").click();
    wait_for_label(&mut harness, "Tunnel device");
    harness
        .get_by_label("MTU")
        .set_text_value_accesskit("99999");
    wait_for_label(&mut harness, "The MTU must be a whole number");
    harness.get_by_label("MTU").set_text_value_accesskit("576");
    wait_for_label(&mut harness, "The MTU must be between 1280");
    harness.get_by_label("Save settings").click();
    harness.step();
    let changes = |fake: &Mutex<common::Fake>| {
        fake.lock()
            .unwrap()
            .requests
            .iter()
            .filter(|r| matches!(r, Request::ChangeSettings { .. }))
            .count()
    };
    assert_eq!(changes(&fake), 0, "an invalid MTU was sent");

    harness.get_by_label("MTU").set_text_value_accesskit("1400");
    harness.step();
    assert!(harness.query_by_label_contains("The MTU must").is_none());
    harness.get_by_label("Save settings").click();
    wait_for_label(&mut harness, "Saved.");
    assert!(
        fake.lock()
            .unwrap()
            .requests
            .contains(&Request::ChangeSettings {
                mtu: Some(1400),
                ipv6: Some(true),
                dns: Some(trine_client::config::DnsMode::Auto),
            })
    );
    assert_eq!(fake.lock().unwrap().settings.as_ref().unwrap().mtu, 1400);
}
