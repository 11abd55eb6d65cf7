//! The app, driven headlessly by widget label (egui_kittest), against a
//! fake daemon that speaks the real control protocol on a temporary Unix
//! socket and records every request it gets.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use trine_client::control::{self, Hop, Request, Response, State, Status};
use trine_gui::Gui;

/// What the fake daemon holds: its status and every request seen.
#[derive(Default)]
struct Fake {
    status: Option<Status>,
    requests: Vec<Request>,
    /// The answer to `connect` (default ok).
    connect_error: Option<String>,
    /// Open connections, to close when the daemon "stops".
    connections: Vec<std::os::unix::net::UnixStream>,
}

fn status(state: State) -> Status {
    Status {
        state,
        lockdown: false,
        hops: Vec::new(),
        exit_address: None,
        standby_ready: false,
        connected_since: None,
        bytes_up: 0,
        bytes_down: 0,
        last_error: None,
    }
}

fn three_hops() -> Vec<Hop> {
    ["guard", "middle", "exit"]
        .iter()
        .zip(["relay4", "relay6", "exit2"])
        .enumerate()
        .map(|(i, (position, nickname))| Hop {
            position: position.to_string(),
            nickname: nickname.to_string(),
            fingerprint: format!("{i}").repeat(64),
            address: format!("198.18.0.{}:9443", 24 + i),
        })
        .collect()
}

/// Serves the control protocol on a fresh socket; the daemon's behaviour
/// on `connect`: the status goes to connecting, and after one more status
/// request to connected with three hops.
fn fake_daemon(name: &str) -> (PathBuf, Arc<Mutex<Fake>>) {
    let path = std::env::temp_dir().join(format!("trine-gui-{name}-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).unwrap();
    let fake = Arc::new(Mutex::new(Fake {
        status: Some(status(State::Disconnected)),
        ..Fake::default()
    }));
    let shared = fake.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let fake = shared.clone();
            fake.lock()
                .unwrap()
                .connections
                .push(stream.try_clone().unwrap());
            std::thread::spawn(move || {
                let mut writer = stream.try_clone().unwrap();
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { return };
                    let request: Request = control::decode(&line).unwrap();
                    let response = answer(&mut fake.lock().unwrap(), request);
                    let mut out = control::encode(&response);
                    out.push('\n');
                    if writer.write_all(out.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (path, fake)
}

fn answer(fake: &mut Fake, request: Request) -> Response {
    fake.requests.push(request.clone());
    let current = fake.status.clone().unwrap();
    match request {
        Request::Status => {
            // A connecting tunnel is connected by the next status request.
            if current.state == State::Connecting && fake.requests.len() > 3 {
                fake.status = Some(Status {
                    hops: three_hops(),
                    exit_address: Some("198.18.0.32".to_string()),
                    standby_ready: true,
                    ..status(State::Connected)
                });
            }
            Response::Status(current)
        }
        Request::Connect => match fake.connect_error.clone() {
            Some(message) => Response::Error { message },
            None => {
                fake.status = Some(status(State::Connecting));
                Response::Ok
            }
        },
        Request::Disconnect => {
            fake.status = Some(status(State::Disconnected));
            Response::Ok
        }
        Request::Lockdown { on } => {
            let mut next = current;
            next.lockdown = on;
            fake.status = Some(next);
            Response::Ok
        }
        _ => Response::Ok,
    }
}

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
