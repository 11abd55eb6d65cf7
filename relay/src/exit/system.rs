//! The exit's hold on the operating system (Linux): the TUN device the pool
//! is routed to, IP forwarding, and one nftables table that masquerades the
//! pool behind the exit's own address and drops anything from the TUN
//! addressed to the exit itself (a kernel-side backstop to the policy's
//! own-address rule). The table is installed on start, replaced if a
//! crashed run left it behind, and removed on stop.

use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, bail};
use tun_rs::{AsyncDevice, DeviceBuilder};

use super::policy::Cidr;

/// The nftables table this relay owns (`inet` family). One exit per
/// network namespace.
pub const NFT_TABLE: &str = "trine_exit";

/// The exit's OS resources; dropping it removes the nftables table.
pub struct ExitSystem {
    /// The TUN device the pool is routed to.
    pub tun: AsyncDevice,
    installed: AtomicBool,
}

impl ExitSystem {
    /// Creates the TUN device `name` with the pool gateways, enables
    /// forwarding and installs the nftables table.
    pub fn start(
        name: &str,
        mtu: u16,
        pool: (Cidr, Option<Cidr>),
        gateway: (IpAddr, Option<IpAddr>),
    ) -> anyhow::Result<Self> {
        let (pool4, pool6) = pool;
        let mut builder =
            DeviceBuilder::new()
                .name(name)
                .mtu(mtu)
                .ipv4(ipv4(gateway.0)?, pool4.prefix, None);
        if let (Some(gateway6), Some(pool6)) = (gateway.1, pool6) {
            builder = builder.ipv6(ipv6(gateway6)?, pool6.prefix);
        }
        let tun = builder.build_async().with_context(|| {
            format!("cannot create TUN device {name} (an exit needs root or CAP_NET_ADMIN)")
        })?;
        enable_forwarding(pool6.is_some())?;
        let system = Self {
            tun,
            installed: AtomicBool::new(false),
        };
        // A table left by a crashed run would hold stale rules: replace it.
        let _ = nft(&format!("delete table inet {NFT_TABLE}\n"));
        nft(&ruleset(name, pool4, pool6)).context("cannot install the exit's nftables table")?;
        system.installed.store(true, Ordering::SeqCst);
        Ok(system)
    }

    /// Removes the nftables table, once.
    pub fn stop(&self) {
        if self.installed.swap(false, Ordering::SeqCst) {
            if let Err(error) = nft(&format!("delete table inet {NFT_TABLE}\n")) {
                tracing::warn!(%error, "could not remove the nftables table {NFT_TABLE}");
            }
        }
    }
}

impl Drop for ExitSystem {
    fn drop(&mut self) {
        self.stop();
    }
}

fn ipv4(address: IpAddr) -> anyhow::Result<std::net::Ipv4Addr> {
    match address {
        IpAddr::V4(v4) => Ok(v4),
        IpAddr::V6(_) => bail!("exit_network.pool_v4 must be an IPv4 prefix"),
    }
}

fn ipv6(address: IpAddr) -> anyhow::Result<std::net::Ipv6Addr> {
    match address {
        IpAddr::V6(v6) => Ok(v6),
        IpAddr::V4(_) => bail!("exit_network.pool_v6 must be an IPv6 prefix"),
    }
}

/// The exit's table: masquerade the pool out of every other interface,
/// never deliver TUN traffic to the exit itself.
fn ruleset(tun: &str, pool4: Cidr, pool6: Option<Cidr>) -> String {
    let masquerade6 = pool6
        .map(|pool6| format!("        ip6 saddr {pool6} oifname != \"{tun}\" masquerade\n"))
        .unwrap_or_default();
    format!(
        "table inet {NFT_TABLE} {{\n\
         \x20   chain input {{\n\
         \x20       type filter hook input priority filter; policy accept;\n\
         \x20       iifname \"{tun}\" counter drop\n\
         \x20   }}\n\
         \x20   chain postrouting {{\n\
         \x20       type nat hook postrouting priority srcnat; policy accept;\n\
         \x20       ip saddr {pool4} oifname != \"{tun}\" masquerade\n\
         {masquerade6}\
         \x20   }}\n\
         }}\n"
    )
}

/// Feeds `script` to `nft -f -`.
fn nft(script: &str) -> anyhow::Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run `nft` (install the nftables package)")?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes())?;
    }
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!(
            "nft: {}",
            String::from_utf8_lossy(&output.stderr)
                .trim()
                .replace('\n', "; ")
        );
    }
    Ok(())
}

/// Turns on IPv4 (and IPv6) forwarding in this network namespace.
fn enable_forwarding(ipv6: bool) -> anyhow::Result<()> {
    let mut knobs = vec!["/proc/sys/net/ipv4/ip_forward"];
    if ipv6 {
        knobs.push("/proc/sys/net/ipv6/conf/all/forwarding");
    }
    for knob in knobs {
        std::fs::write(knob, "1").with_context(|| format!("cannot enable forwarding ({knob})"))?;
    }
    Ok(())
}

/// Every address on this host's interfaces.
pub fn own_addresses() -> anyhow::Result<Vec<IpAddr>> {
    Ok(if_addrs::get_if_addrs()
        .context("cannot list this host's addresses")?
        .into_iter()
        .map(|interface| interface.ip())
        .collect())
}

/// The first `nameserver` in resolv.conf text.
pub fn first_nameserver(resolv_conf: &str) -> Option<IpAddr> {
    resolv_conf.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next() == Some("nameserver"))
            .then(|| words.next()?.parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ruleset_masquerades_both_pools_and_blocks_input_from_the_tun() {
        let rules = ruleset(
            "trx0",
            "10.200.0.0/16".parse().unwrap(),
            Some("fd74:7265::/64".parse().unwrap()),
        );
        assert!(rules.contains("iifname \"trx0\" counter drop"));
        assert!(rules.contains("ip saddr 10.200.0.0/16 oifname != \"trx0\" masquerade"));
        assert!(rules.contains("ip6 saddr fd74:7265::/64 oifname != \"trx0\" masquerade"));
        let v4_only = ruleset("trx0", "10.200.0.0/16".parse().unwrap(), None);
        assert!(!v4_only.contains("ip6"));
    }

    #[test]
    fn nameserver_is_read_from_resolv_conf() {
        let text = "# comment\nsearch example\nnameserver 198.18.200.1\nnameserver 1.1.1.1\n";
        assert_eq!(
            first_nameserver(text),
            Some("198.18.200.1".parse().unwrap())
        );
        assert_eq!(first_nameserver("nameserver bogus\n"), None);
    }
}
