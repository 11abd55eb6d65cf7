//! A fake Trine daemon for the app's tests: it speaks the real control
//! protocol on a temporary Unix socket, records every request, and moves
//! from connecting to connected as the real one would.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use trine_client::config::DnsMode;
use trine_client::control::{self, Hop, Request, Response, Settings, State, Status};

/// What the fake daemon holds: its status and every request seen.
#[derive(Default)]
pub struct Fake {
    pub status: Option<Status>,
    pub requests: Vec<Request>,
    /// The answer to `connect` (default ok).
    pub connect_error: Option<String>,
    /// What `settings` answers; `change-settings` edits it.
    pub settings: Option<Settings>,
    /// Open connections, to close when the daemon "stops".
    pub connections: Vec<std::os::unix::net::UnixStream>,
}

pub fn status(state: State) -> Status {
    Status {
        state,
        lockdown: false,
        hops: Vec::new(),
        exit_address: None,
        standby_ready: false,
        connected_since: None,
        bytes_up: 0,
        bytes_down: 0,
        dropped_from_exit: 0,
        dropped_to_exit: 0,
        last_error: None,
    }
}

pub fn three_hops() -> Vec<Hop> {
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
pub fn fake_daemon(name: &str) -> (PathBuf, Arc<Mutex<Fake>>) {
    let path = std::env::temp_dir().join(format!("trine-gui-{name}-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).unwrap();
    let fake = Arc::new(Mutex::new(Fake {
        status: Some(status(State::Disconnected)),
        settings: Some(Settings {
            config: "/etc/trine/trine.toml".to_string(),
            tun_name: "trine0".to_string(),
            mtu: 1280,
            ipv6: true,
            dns: "off".to_string(),
            dns_mode: DnsMode::Auto,
            pending: false,
            lockdown: false,
            authorities: vec!["198.18.0.11:7000".to_string()],
            threshold: 1,
        }),
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
        Request::Settings => Response::Settings(fake.settings.clone().unwrap()),
        Request::ChangeSettings { mtu, ipv6, dns } => {
            let settings = fake.settings.as_mut().unwrap();
            settings.mtu = mtu.unwrap_or(settings.mtu);
            settings.ipv6 = ipv6.unwrap_or(settings.ipv6);
            settings.dns_mode = dns.unwrap_or(settings.dns_mode);
            Response::Ok
        }
        _ => Response::Ok,
    }
}
