//! The control protocol between the daemon and its clients (the `trine`
//! CLI, the desktop app): JSON lines over a Unix socket. Each request is
//! one JSON object on one line; the daemon answers each with one line, in
//! order, and keeps the connection open for more. The format is documented
//! in docs/using-trine.md; the field names here are the stable ones.
//!
//! [`ControlClient`] is the one client implementation every front end
//! uses.

use std::io::{BufRead, BufReader, Read as _, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::DnsMode;

/// The longest request line the daemon accepts (bytes).
pub const MAX_LINE: usize = 1 << 20;
/// The longest response line a client accepts (the relay list of a large
/// network is several megabytes).
pub const MAX_RESPONSE: usize = 64 << 20;

/// A request to the daemon. Unknown extra fields are ignored (so newer
/// front ends can talk to older daemons); unknown requests are errors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "kebab-case")]
pub enum Request {
    /// Bring the tunnel up.
    Connect,
    /// Take the tunnel down.
    Disconnect,
    /// The current state.
    Status,
    /// Replace the circuit with one on a fresh path (new exit).
    NewCircuit,
    /// The relays of the consensus held.
    Relays,
    /// The guard list.
    Guards,
    /// Turn lockdown on or off.
    Lockdown {
        /// The new setting.
        on: bool,
    },
    /// The settings the daemon runs with.
    Settings,
    /// Change settings: each field given; the others stay. Checked, kept
    /// across restarts, and used from the next connect.
    ChangeSettings {
        /// The tunnel's MTU (1280 to 9000).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mtu: Option<u16>,
        /// Tunnel IPv6 (otherwise it is blocked).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ipv6: Option<bool>,
        /// How DNS is redirected.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dns: Option<DnsMode>,
    },
}

/// The tunnel's state, as users see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Down; traffic flows normally (no lockdown).
    Disconnected,
    /// Fetching the directory or building the first circuit.
    Connecting,
    /// Traffic flows through a circuit.
    Connected,
    /// The circuit failed and no standby was ready: building another while
    /// the kill switch holds.
    Reconnecting,
    /// Down with lockdown on: nothing leaves the machine.
    Blocked,
}

impl State {
    /// The state in words.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disconnected => "disconnected",
            Self::Connecting => "connecting",
            Self::Connected => "connected",
            Self::Reconnecting => "reconnecting",
            Self::Blocked => "blocked",
        }
    }
}

/// One relay of the active circuit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hop {
    /// "guard", "middle" or "exit".
    pub position: String,
    /// The relay's nickname.
    pub nickname: String,
    /// Its identity, 64 hex digits.
    pub fingerprint: String,
    /// The address the client (guard) or the previous hop reaches it at.
    pub address: String,
}

/// The answer to [`Request::Status`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The state.
    pub state: State,
    /// Whether lockdown is on.
    pub lockdown: bool,
    /// The active circuit, guard first; empty when there is none.
    pub hops: Vec<Hop>,
    /// The exit relay's address (the world sees traffic leave from there).
    pub exit_address: Option<String>,
    /// Whether a standby circuit is built and ready.
    pub standby_ready: bool,
    /// When the tunnel first carried traffic after `connect` (Unix
    /// seconds); failovers do not reset it.
    pub connected_since: Option<u64>,
    /// Bytes of packets sent into the tunnel since `connect`.
    pub bytes_up: u64,
    /// Bytes of packets received from the tunnel since `connect`.
    pub bytes_down: u64,
    /// Packets from the exit dropped since `connect` because they were
    /// not addressed to the tunnel's own address (a hostile exit's).
    #[serde(default)]
    pub dropped_from_exit: u64,
    /// Packets dropped since `connect` before they went into the tunnel
    /// because their source was not the tunnel's own address (it would
    /// have shown a local address to the exit).
    #[serde(default)]
    pub dropped_to_exit: u64,
    /// The last error, verbatim, if any since `connect`.
    pub last_error: Option<String>,
}

/// One relay of the consensus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayInfo {
    /// Its nickname.
    pub nickname: String,
    /// Its identity.
    pub fingerprint: String,
    /// Its addresses.
    pub addresses: Vec<String>,
    /// Its flags, by name.
    pub flags: Vec<String>,
    /// Its consensus weight.
    pub weight: u64,
}

/// One guard of the guard list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardInfo {
    /// Its identity.
    pub fingerprint: String,
    /// Its nickname, if the consensus held lists it.
    pub nickname: Option<String>,
    /// Whether it is usable now (listed, not failed recently).
    pub usable: bool,
}

/// The answer to [`Request::Settings`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// The configuration file.
    pub config: String,
    /// The TUN device.
    pub tun_name: String,
    /// Its MTU.
    pub mtu: u16,
    /// Whether IPv6 is tunnelled.
    pub ipv6: bool,
    /// How DNS is redirected, in words.
    pub dns: String,
    /// The DNS setting (`auto` picks systemd-resolved or the file).
    pub dns_mode: DnsMode,
    /// Whether changed settings wait for the next connect.
    pub pending: bool,
    /// Whether lockdown is on.
    pub lockdown: bool,
    /// The authorities' addresses (the bootstrap list).
    pub authorities: Vec<String>,
    /// How many authority signatures a consensus needs.
    pub threshold: usize,
}

/// A response from the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "response", rename_all = "kebab-case")]
pub enum Response {
    /// Done.
    Ok,
    /// The state.
    Status(Status),
    /// The relays.
    Relays {
        /// Every relay of the consensus held.
        relays: Vec<RelayInfo>,
    },
    /// The guards.
    Guards {
        /// The guard list, in order of preference.
        guards: Vec<GuardInfo>,
    },
    /// The settings.
    Settings(Settings),
    /// The request failed; the message is for people, verbatim.
    Error {
        /// What went wrong.
        message: String,
    },
}

/// Talking to the daemon failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Nobody listens on the socket.
    #[error(
        "the Trine daemon is not running (no {0}); start it with `systemctl start trine` or `sudo trine daemon`"
    )]
    NotRunning(PathBuf),
    /// The socket exists but this user may not use it.
    #[error(
        "permission denied on {0}: run as root, or join the group the daemon gives the socket (its `control.group` setting)"
    )]
    PermissionDenied(PathBuf),
    /// Reading or writing the socket failed.
    #[error("control socket {path}: {source}")]
    Io {
        /// The socket.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The daemon's answer was not a response.
    #[error("the daemon sent something that is not a response: {0}")]
    Protocol(String),
    /// The daemon answered with an error.
    #[error("{0}")]
    Daemon(String),
}

/// A connection to the daemon's control socket.
pub struct ControlClient {
    path: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl ControlClient {
    /// Connects to the socket at `path`.
    pub fn connect(path: &Path) -> Result<Self, ControlError> {
        let stream = UnixStream::connect(path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                ControlError::NotRunning(path.to_path_buf())
            }
            std::io::ErrorKind::PermissionDenied => {
                ControlError::PermissionDenied(path.to_path_buf())
            }
            _ => ControlError::Io {
                path: path.to_path_buf(),
                source,
            },
        })?;
        let io = |source| ControlError::Io {
            path: path.to_path_buf(),
            source,
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(io)?;
        let writer = stream.try_clone().map_err(io)?;
        Ok(Self {
            path: path.to_path_buf(),
            reader: BufReader::new(stream),
            writer,
        })
    }

    /// Sends `request` and waits for its response. A [`Response::Error`]
    /// comes back as [`ControlError::Daemon`].
    pub fn request(&mut self, request: &Request) -> Result<Response, ControlError> {
        let io = |source| ControlError::Io {
            path: self.path.clone(),
            source,
        };
        let mut line = encode(request);
        line.push('\n');
        self.writer.write_all(line.as_bytes()).map_err(io)?;
        let mut answer = String::new();
        let read = (&mut self.reader)
            .take(MAX_RESPONSE as u64)
            .read_line(&mut answer)
            .map_err(io)?;
        if read == 0 {
            return Err(ControlError::Protocol(
                "the connection closed without an answer".to_string(),
            ));
        }
        match decode::<Response>(&answer) {
            Ok(Response::Error { message }) => Err(ControlError::Daemon(message)),
            Ok(response) => Ok(response),
            Err(error) => Err(ControlError::Protocol(error)),
        }
    }

    /// How long a request may wait for its answer (30 s unless set).
    pub fn set_timeout(&mut self, timeout: Duration) {
        let _ = self.writer.set_read_timeout(Some(timeout));
        let _ = self.writer.set_write_timeout(Some(timeout));
    }

    /// [`Request::Status`], unwrapped.
    pub fn status(&mut self) -> Result<Status, ControlError> {
        match self.request(&Request::Status)? {
            Response::Status(status) => Ok(status),
            other => Err(ControlError::Protocol(format!("{other:?}"))),
        }
    }
}

/// A byte count for people: `512 B`, `1.5 kB`, `3.2 MB`, `1.25 GB`.
pub fn human_bytes(n: u64) -> String {
    match n {
        0..1_000 => format!("{n} B"),
        1_000..1_000_000 => format!("{:.1} kB", n as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} MB", n as f64 / 1e6),
        _ => format!("{:.2} GB", n as f64 / 1e9),
    }
}

/// One message as a JSON line body (no newline).
pub fn encode<T: Serialize>(message: &T) -> String {
    // Serialising these plain structs cannot fail.
    serde_json::to_string(message).unwrap_or_default()
}

/// Parses one line; the error is for people.
pub fn decode<T: for<'a> Deserialize<'a>>(line: &str) -> Result<T, String> {
    serde_json::from_str(line.trim_end()).map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn requests_are_stable_json_lines() {
        assert_eq!(encode(&Request::Connect), r#"{"request":"connect"}"#);
        assert_eq!(encode(&Request::NewCircuit), r#"{"request":"new-circuit"}"#);
        assert_eq!(
            encode(&Request::Lockdown { on: true }),
            r#"{"request":"lockdown","on":true}"#
        );
        for request in [
            Request::Connect,
            Request::Disconnect,
            Request::Status,
            Request::NewCircuit,
            Request::Relays,
            Request::Guards,
            Request::Lockdown { on: false },
            Request::Settings,
        ] {
            assert_eq!(decode::<Request>(&encode(&request)).unwrap(), request);
        }
    }

    #[test]
    fn status_round_trips_with_its_field_names() {
        let status = Status {
            state: State::Connected,
            lockdown: false,
            hops: vec![Hop {
                position: "guard".to_string(),
                nickname: "relay1".to_string(),
                fingerprint: "ab".repeat(32),
                address: "198.18.0.3:9443".to_string(),
            }],
            exit_address: Some("198.18.0.5".to_string()),
            standby_ready: true,
            connected_since: Some(1_700_000_000),
            bytes_up: 1,
            bytes_down: 2,
            dropped_from_exit: 3,
            dropped_to_exit: 4,
            last_error: None,
        };
        let line = encode(&Response::Status(status.clone()));
        assert!(
            line.starts_with(r#"{"response":"status","state":"connected""#),
            "{line}"
        );
        assert!(line.contains(r#""bytes_down":2"#));
        assert_eq!(decode::<Response>(&line).unwrap(), Response::Status(status));
    }

    #[test]
    fn malformed_and_unknown_requests_are_errors_not_panics() {
        for bad in [
            "",
            "{",
            r#"{"request":"launch-missiles"}"#,
            r#"{"request":"lockdown"}"#,
            "\u{0}\u{0}",
        ] {
            assert!(decode::<Request>(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_missing_daemon_is_said_plainly() {
        let error = ControlClient::connect(Path::new("/nonexistent/trine.sock"))
            .err()
            .unwrap();
        assert!(matches!(error, ControlError::NotRunning(_)));
        assert!(error.to_string().contains("not running"));
    }
}
