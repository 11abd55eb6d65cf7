//! `trine daemon`: the root process that owns the tunnel. This file is the
//! async shell: it cleans up what a crashed run left, opens the marked
//! QUIC endpoint and the control socket, and runs the [`engine`] loop
//! until SIGTERM or SIGINT, then takes everything down.

mod engine;
mod filter;
mod link;
mod planner;
mod system;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use trine_link::{Endpoint, LinkConfig};

use crate::config::{Config, Overrides};
use crate::control::{self, MAX_LINE, Request, Response};
use crate::os::{TRINE_FWMARK, marked_udp_socket};
use engine::Engine;

/// Control connections served at once; more are closed at once.
const MAX_CONTROL_CONNECTIONS: usize = 32;
/// A control connection silent this long is closed.
const CONTROL_IDLE: Duration = Duration::from_secs(600);

/// How often the engine checks timers (keepalives, build deadlines).
const TICK: Duration = Duration::from_millis(100);

type ControlRequest = (Request, oneshot::Sender<Response>);

/// Runs the daemon until a signal; returns once everything is taken down.
pub async fn run(config: Config) -> anyhow::Result<()> {
    system::check_tools()?;
    trine_node::keyfile::create_private_dir(&config.state_dir)
        .with_context(|| format!("cannot create {}", config.state_dir.display()))?;
    let overrides = Overrides::load(&config.state_dir).unwrap_or_else(|error| {
        tracing::warn!(%error, "ignoring the kept settings changes");
        Overrides::default()
    });
    let lockdown = match std::fs::read_to_string(config.state_dir.join("lockdown")) {
        Ok(saved) => saved.trim() == "on",
        Err(_) => config.lockdown,
    };
    // Refuse to start beside a running daemon before touching anything:
    // the clean-up below would strip its protection.
    let listener = bind_control(&config)?;
    // The user's `trine up` outlives a daemon that died without `trine
    // down`: its kill switch stays shut (replaced by the block) until the
    // tunnel is back, never opened in between.
    let target_up = engine::target_was_up(&config.state_dir);
    // Whatever a crashed run left: resolver backup, routes, firewall. A
    // block that cannot be applied is fatal: better no daemon (and the
    // unit failed) than one that says it is ready with the network open.
    let block = lockdown || target_up;
    let firewall = system::down(&config.with(&overrides), block);
    if let (true, Err(error)) = (block, firewall) {
        bail!("cannot apply the kill switch's block: {error:#}");
    }

    let endpoint = marked_endpoint()?;
    let autoconnect = config.autoconnect;
    let (mut engine, mut inputs) =
        Engine::new(config.clone(), overrides, endpoint, lockdown, target_up);
    let (control_tx, mut control_rx) = mpsc::channel::<ControlRequest>(64);
    tokio::spawn(serve_control(listener, control_tx));
    tracing::info!(socket = %config.socket.display(), lockdown, "trine daemon ready");
    if autoconnect || target_up {
        if target_up {
            tracing::info!("the tunnel was up when the last daemon stopped: reconnecting");
        }
        let _ = engine.on_request(Request::Connect);
    }
    // The firewall is as it must be: tell systemd (Type=notify) that
    // units ordered after this one may start.
    notify_ready();

    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            Some(io) = inputs.io.recv() => engine.on_io(io),
            Some(packet) = inputs.tun.recv() => engine.on_tun(packet),
            Some((request, reply)) = control_rx.recv() => {
                let _ = reply.send(engine.on_request(request));
            }
            Some(fetched) = inputs.fetched.recv() => engine.on_fetched(fetched),
            _ = tick.tick() => engine.on_tick(),
            () = &mut shutdown => break,
        }
    }
    tracing::info!("stopping");
    engine.shutdown();
    let _ = std::fs::remove_file(&config.socket);
    Ok(())
}

/// Tells systemd the daemon is ready (`READY=1` on `$NOTIFY_SOCKET`, the
/// sd_notify protocol), if it runs as a `Type=notify` unit.
fn notify_ready() {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let target = target.to_string_lossy().into_owned();
    let address = match target.strip_prefix('@') {
        Some(name) => UnixAddr::from_abstract_name(name.as_bytes()),
        None => UnixAddr::from_pathname(&target),
    };
    let sent =
        address.and_then(|address| UnixDatagram::unbound()?.send_to_addr(b"READY=1", &address));
    if let Err(error) = sent {
        tracing::warn!(%error, socket = %target, "cannot notify systemd that the daemon is ready");
    }
}

/// Resolves on SIGINT, SIGTERM or SIGHUP (a closed terminal must not
/// leave the machine's routes and resolver pointing at a dead tunnel).
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::hangup()) {
        Ok(mut hangup) => {
            tokio::select! {
                () = trine_node::shutdown_signal() => {}
                _ = hangup.recv() => {}
            }
        }
        Err(_) => trine_node::shutdown_signal().await,
    }
}

/// The daemon's QUIC endpoint on a socket carrying the firewall mark.
fn marked_endpoint() -> anyhow::Result<Endpoint> {
    let any6 = SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0));
    let any4 = SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0));
    let socket = marked_udp_socket(any6, TRINE_FWMARK)
        .or_else(|_| marked_udp_socket(any4, TRINE_FWMARK))
        .context("cannot open the daemon's marked UDP socket (needs root: SO_MARK)")?;
    let config = LinkConfig {
        idle_timeout: Duration::from_secs(15),
        keep_alive: Duration::from_secs(5),
        ..LinkConfig::default()
    };
    Ok(Endpoint::client_on_socket(socket, &config)?)
}

/// Binds the control socket (mode 0660, group `control.group`), refusing
/// to start beside a running daemon and removing a dead one's socket.
fn bind_control(config: &Config) -> anyhow::Result<UnixListener> {
    let path = &config.socket;
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        bail!(
            "another trine daemon is running (it answers on {})",
            path.display()
        );
    }
    let _ = std::fs::remove_file(path);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("cannot listen on {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    if !config.group.is_empty() {
        let gid = group_id(&config.group)
            .with_context(|| format!("control.group: no group named {:?}", config.group))?;
        std::os::unix::fs::chown(path, None, Some(gid))
            .with_context(|| format!("cannot give {} to group {}", path.display(), config.group))?;
    }
    Ok(listener)
}

/// The id of group `name`, from /etc/group.
fn group_id(name: &str) -> Option<u32> {
    let groups = std::fs::read_to_string(Path::new("/etc/group")).ok()?;
    groups.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next()? == name)
            .then(|| fields.nth(1)?.parse().ok())
            .flatten()
    })
}

async fn serve_control(listener: UnixListener, to_engine: mpsc::Sender<ControlRequest>) {
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONTROL_CONNECTIONS));
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    tracing::warn!("too many control connections; refusing one");
                    continue;
                };
                let to_engine = to_engine.clone();
                tokio::spawn(async move {
                    serve_connection(stream, to_engine).await;
                    drop(slot);
                });
            }
            Err(error) => {
                tracing::warn!(%error, "control socket accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Answers requests on one connection, one line each, until it closes.
async fn serve_connection(stream: UnixStream, to_engine: mpsc::Sender<ControlRequest>) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    loop {
        let mut line = String::new();
        let read = tokio::time::timeout(
            CONTROL_IDLE,
            (&mut reader).take(MAX_LINE as u64).read_line(&mut line),
        )
        .await;
        let response = match read {
            Err(_) | Ok(Ok(0) | Err(_)) => return,
            Ok(Ok(len)) if len >= MAX_LINE && !line.ends_with('\n') => Response::Error {
                message: format!("request line longer than {MAX_LINE} bytes"),
            },
            Ok(Ok(_)) => match control::decode::<Request>(&line) {
                Err(problem) => Response::Error {
                    message: format!("bad request: {problem}"),
                },
                Ok(request) => {
                    let (reply, answer) = oneshot::channel();
                    if to_engine.send((request, reply)).await.is_err() {
                        return;
                    }
                    match answer.await {
                        Ok(response) => response,
                        Err(_) => return,
                    }
                }
            },
        };
        let mut out = control::encode(&response);
        out.push('\n');
        if write.write_all(out.as_bytes()).await.is_err() {
            return;
        }
        if !line.ends_with('\n') {
            return;
        }
    }
}
