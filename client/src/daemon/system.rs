//! The daemon's hold on the operating system while the tunnel is up: the
//! kill switch first (so nothing leaks while the rest is set up), then the
//! TUN device, the policy routing and DNS; taken down in the reverse order.
//! Everything is idempotent, so the same calls clean up after a crash.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use trine_circuit::ip::{TUNNEL_CLIENT_V4, TUNNEL_CLIENT_V6};
use tun_rs::{AsyncDevice, DeviceBuilder};

use crate::config::{Config, DnsMode};
use crate::os::{KillSwitchSpec, RoutesSpec, TRINE_FWMARK, dns, killswitch, routes};

/// The resolver backup's file name in the state directory.
const DNS_BACKUP: &str = "resolv.conf.trine-backup";

/// Applies (or atomically replaces) the kill switch letting the daemon's
/// marked QUIC reach `peers` only.
pub fn kill_switch(config: &Config, peers: &[SocketAddr]) -> anyhow::Result<()> {
    killswitch::apply(&KillSwitchSpec {
        tun_name: config.tun_name.clone(),
        peers: peers.to_vec(),
        fwmark: TRINE_FWMARK,
    })?;
    Ok(())
}

/// Brings the tunnel's OS side up; on failure everything is taken down
/// again, keeping the block if `block` (lockdown, or the user's target is
/// up and the daemon will try again).
pub fn up(config: &Config, peers: &[SocketAddr], block: bool) -> anyhow::Result<Arc<AsyncDevice>> {
    let result = up_inner(config, peers);
    if result.is_err() {
        let _ = down(config, block);
    }
    result
}

fn up_inner(config: &Config, peers: &[SocketAddr]) -> anyhow::Result<Arc<AsyncDevice>> {
    kill_switch(config, peers)?;
    let mut builder = DeviceBuilder::new()
        .name(&config.tun_name)
        .mtu(config.mtu)
        .ipv4(TUNNEL_CLIENT_V4, 32, None);
    if config.ipv6 {
        builder = builder.ipv6(TUNNEL_CLIENT_V6, 128);
    }
    let tun = builder.build_async().with_context(|| {
        format!(
            "cannot create the TUN device {} (the daemon needs root)",
            config.tun_name
        )
    })?;
    // Replies to the marked socket are validated against the mark (as
    // wg-quick does); harmless where reverse-path filtering is off.
    if let Err(error) = std::fs::write("/proc/sys/net/ipv4/conf/all/src_valid_mark", "1") {
        tracing::warn!(%error, "cannot set src_valid_mark; with strict reverse-path filtering the guard's replies may be dropped");
    }
    routes::apply(&RoutesSpec {
        tun_name: config.tun_name.clone(),
        fwmark: TRINE_FWMARK,
        ipv6: config.ipv6,
    })?;
    match dns_mode(config) {
        DnsMode::Resolved => dns::redirect_resolved(&config.tun_name, config.ipv6)?,
        DnsMode::ResolvConf => dns::redirect(
            &config.resolv_conf,
            &config.state_dir.join(DNS_BACKUP),
            config.ipv6,
        )?,
        DnsMode::Auto | DnsMode::Off => {}
    }
    Ok(Arc::new(tun))
}

/// Takes the tunnel's OS side down: DNS and routes restored, then the kill
/// switch removed, or reduced to the block if `block`. Errors are logged:
/// every step is tried. The firewall step's error is returned too: a
/// block that could not be applied must not be reported as in place.
pub fn down(config: &Config, block: bool) -> anyhow::Result<()> {
    if dns_mode(config) == DnsMode::Resolved {
        dns::revert_resolved(&config.tun_name);
    }
    if let Err(error) = dns::restore(&config.resolv_conf, &config.state_dir.join(DNS_BACKUP)) {
        tracing::error!(%error, "cannot restore the resolver");
    }
    if let Err(error) = routes::remove() {
        tracing::error!(%error, "cannot remove the tunnel routes");
    }
    let firewall = if block {
        kill_switch(config, &[])
    } else {
        killswitch::remove().map_err(anyhow::Error::from)
    };
    if let Err(error) = &firewall {
        tracing::error!(%error, "cannot update the kill switch");
    }
    firewall
}

/// The DNS mode in force: `auto` resolved to what this machine runs.
pub fn dns_mode(config: &Config) -> DnsMode {
    match config.dns_mode {
        DnsMode::Auto if dns::resolved_manages(&config.resolv_conf) => DnsMode::Resolved,
        DnsMode::Auto => DnsMode::ResolvConf,
        other => other,
    }
}

/// Whether the OS side looks usable at all (for a clear start-up error).
pub fn check_tools() -> anyhow::Result<()> {
    for tool in ["ip", "nft"] {
        std::process::Command::new(tool)
            .arg("-V")
            .output()
            .with_context(|| format!("`{tool}` is missing (install iproute2 and nftables)"))?;
    }
    Ok(())
}
