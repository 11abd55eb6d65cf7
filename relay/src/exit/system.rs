//! The exit's hold on the operating system (Linux): the TUN device the pool
//! is routed to, IP forwarding, and one nftables table that masquerades the
//! pool behind the exit's own address, drops anything from the TUN
//! addressed to the exit itself (a kernel-side backstop to the policy's
//! own-address rule) and forwards only what circuits need: out of the TUN
//! anything valid but ICMP errors about known flows (conntrack's `related`:
//! it matches them by the packet they quote, which may be another
//! circuit's), into it only replies (established/related), nothing invalid
//! either way. When forwarding was off before the exit turned it
//! on, the host forwards nothing else either; when it was on, the host's
//! other forwarding is left alone. The table is installed on start,
//! replaced if a crashed run left it behind, and removed on stop, when the
//! forwarding sysctls get the values they had before start back (kept in
//! the table's comment, so a crashed run's are not lost).

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
    forwarding: Forwarding,
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
        // A table left by a crashed run holds the values from before it
        // (this host's now are the crashed run's), and stale rules.
        let forwarding = match left_behind() {
            Some(before) => before,
            None => Forwarding::read(pool6.is_some())?,
        };
        let _ = nft(&format!("delete table inet {NFT_TABLE}\n"));
        let system = Self {
            tun,
            installed: AtomicBool::new(true),
            forwarding,
        };
        // From here on, dropping `system` undoes whatever was done.
        nft(&ruleset(name, pool4, pool6, &system.forwarding))
            .context("cannot install the exit's nftables table")?;
        system.forwarding.enable()?;
        Ok(system)
    }

    /// Removes the nftables table and restores the forwarding sysctls,
    /// once.
    pub fn stop(&self) {
        if self.installed.swap(false, Ordering::SeqCst) {
            self.forwarding.restore();
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

/// The exit's table: forward only what circuits need (counting what is
/// refused in the named counters `invalid`, `related` and `unsolicited`),
/// masquerade the pool out of every other interface, never deliver TUN
/// traffic to the exit itself. A client's ICMP errors never leave: those
/// about its own flows quote its inner address (conntrack finds them
/// `invalid`), and those conntrack finds `related` quote a flow of some
/// pool address, maybe another circuit's. Forwarding that did not involve
/// the TUN is dropped for each family whose forwarding was off before the
/// exit turned it on.
fn ruleset(tun: &str, pool4: Cidr, pool6: Option<Cidr>, before: &Forwarding) -> String {
    let masquerade6 = pool6
        .map(|pool6| format!("        ip6 saddr {pool6} oifname != \"{tun}\" masquerade\n"))
        .unwrap_or_default();
    let mut not_ours = String::new();
    if before.ipv4.as_deref() == Some("0") {
        not_ours.push_str("        meta nfproto ipv4 drop\n");
    }
    if before.ipv6.as_deref() == Some("0") {
        not_ours.push_str("        meta nfproto ipv6 drop\n");
    }
    format!(
        "table inet {NFT_TABLE} {{\n\
         \x20   comment \"{comment}\"\n\
         \x20   counter invalid {{ }}\n\
         \x20   counter unsolicited {{ }}\n\
         \x20   counter related {{ }}\n\
         \x20   chain input {{\n\
         \x20       type filter hook input priority filter; policy accept;\n\
         \x20       iifname \"{tun}\" counter drop\n\
         \x20   }}\n\
         \x20   chain forward {{\n\
         \x20       type filter hook forward priority filter; policy accept;\n\
         \x20       iifname \"{tun}\" ct state invalid counter name invalid drop\n\
         \x20       oifname \"{tun}\" ct state invalid counter name invalid drop\n\
         \x20       iifname \"{tun}\" oifname \"{tun}\" drop\n\
         \x20       iifname \"{tun}\" ct state related counter name related drop\n\
         \x20       iifname \"{tun}\" accept\n\
         \x20       oifname \"{tun}\" ct state established,related accept\n\
         \x20       oifname \"{tun}\" counter name unsolicited drop\n\
         {not_ours}\
         \x20   }}\n\
         \x20   chain postrouting {{\n\
         \x20       type nat hook postrouting priority srcnat; policy accept;\n\
         \x20       ip saddr {pool4} oifname != \"{tun}\" masquerade\n\
         {masquerade6}\
         \x20   }}\n\
         }}\n",
        comment = before.comment(),
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

const IPV4_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";
const IPV6_FORWARD: &str = "/proc/sys/net/ipv6/conf/all/forwarding";
/// Starts the table comment that records the values from before start.
const COMMENT_PREFIX: &str = "trine forwarding before:";

/// The forwarding sysctls as they were before the exit started: `None`
/// for a family the exit does not turn on.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Forwarding {
    ipv4: Option<String>,
    ipv6: Option<String>,
}

impl Forwarding {
    /// Reads the values now (IPv6 only if `ipv6`).
    fn read(ipv6: bool) -> anyhow::Result<Self> {
        let read = |knob: &str| {
            std::fs::read_to_string(knob)
                .map(|value| value.trim().to_string())
                .with_context(|| format!("cannot read {knob}"))
        };
        Ok(Self {
            ipv4: Some(read(IPV4_FORWARD)?),
            ipv6: if ipv6 {
                Some(read(IPV6_FORWARD)?)
            } else {
                None
            },
        })
    }

    /// Turns forwarding on for the families recorded.
    fn enable(&self) -> anyhow::Result<()> {
        for (knob, _) in self.knobs() {
            std::fs::write(knob, "1")
                .with_context(|| format!("cannot enable forwarding ({knob})"))?;
        }
        Ok(())
    }

    /// Writes the recorded values back.
    fn restore(&self) {
        for (knob, value) in self.knobs() {
            if let Err(error) = std::fs::write(knob, value) {
                tracing::warn!(%error, knob, "could not restore forwarding");
            }
        }
    }

    fn knobs(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [(IPV4_FORWARD, &self.ipv4), (IPV6_FORWARD, &self.ipv6)]
            .into_iter()
            .filter_map(|(knob, value)| Some((knob, value.as_deref()?)))
    }

    /// The table comment recording these values, e.g.
    /// `trine forwarding before: ipv4=0 ipv6=-` (`-`: not touched).
    fn comment(&self) -> String {
        let show = |value: &Option<String>| value.clone().unwrap_or_else(|| "-".into());
        format!(
            "{COMMENT_PREFIX} ipv4={} ipv6={}",
            show(&self.ipv4),
            show(&self.ipv6)
        )
    }

    /// Reads a comment written by [`Forwarding::comment`] out of `nft
    /// list` output; `None` if there is none or it is not well formed.
    fn from_listing(listing: &str) -> Option<Self> {
        let rest = &listing[listing.find(COMMENT_PREFIX)? + COMMENT_PREFIX.len()..];
        let mut words = rest.split(['"', ' ']).filter(|w| !w.is_empty());
        let mut value = |family: &str| -> Option<Option<String>> {
            let value = words.next()?.strip_prefix(family)?;
            match value {
                "-" => Some(None),
                "0" | "1" | "2" => Some(Some(value.to_string())),
                _ => None,
            }
        };
        Some(Self {
            ipv4: value("ipv4=")?,
            ipv6: value("ipv6=")?,
        })
    }
}

/// The forwarding values recorded by a table a crashed run left behind.
fn left_behind() -> Option<Forwarding> {
    let out = Command::new("nft")
        .args(["list", "table", "inet", NFT_TABLE])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    Forwarding::from_listing(&String::from_utf8_lossy(&out.stdout))
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
        let off = Forwarding {
            ipv4: Some("0".into()),
            ipv6: Some("0".into()),
        };
        let rules = ruleset(
            "trx0",
            "10.200.0.0/16".parse().unwrap(),
            Some("fd74:7265::/64".parse().unwrap()),
            &off,
        );
        assert!(rules.contains("iifname \"trx0\" counter drop"));
        assert!(rules.contains("ip saddr 10.200.0.0/16 oifname != \"trx0\" masquerade"));
        assert!(rules.contains("ip6 saddr fd74:7265::/64 oifname != \"trx0\" masquerade"));
        let on4 = Forwarding {
            ipv4: Some("1".into()),
            ipv6: None,
        };
        let v4_only = ruleset("trx0", "10.200.0.0/16".parse().unwrap(), None, &on4);
        assert!(!v4_only.contains("ip6"));
        assert!(
            !v4_only.contains("nfproto"),
            "the host's own forwarding stays"
        );
    }

    #[test]
    fn forward_chain_passes_only_what_circuits_need() {
        let off = Forwarding {
            ipv4: Some("0".into()),
            ipv6: None,
        };
        let rules = ruleset("trx0", "10.200.0.0/16".parse().unwrap(), None, &off);
        let chain = &rules[rules.find("chain forward").unwrap()..];
        let chain = &chain[..chain.find('}').unwrap()];
        let order = [
            "iifname \"trx0\" ct state invalid counter name invalid drop",
            "oifname \"trx0\" ct state invalid counter name invalid drop",
            "iifname \"trx0\" oifname \"trx0\" drop",
            "iifname \"trx0\" ct state related counter name related drop",
            "iifname \"trx0\" accept",
            "oifname \"trx0\" ct state established,related accept",
            "oifname \"trx0\" counter name unsolicited drop",
            "meta nfproto ipv4 drop",
        ];
        let at: Vec<usize> = order.iter().map(|rule| chain.find(rule).unwrap()).collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{chain}");
        assert!(!chain.contains("ipv6"));
    }

    #[test]
    fn forwarding_before_start_survives_in_the_table_comment() {
        for before in [
            Forwarding {
                ipv4: Some("0".into()),
                ipv6: Some("1".into()),
            },
            Forwarding {
                ipv4: Some("1".into()),
                ipv6: None,
            },
        ] {
            let listing = format!(
                "table inet trine_exit {{\n\tcomment \"{}\"\n}}\n",
                before.comment()
            );
            assert_eq!(Forwarding::from_listing(&listing), Some(before));
        }
        assert_eq!(Forwarding::from_listing("table inet trine_exit {}"), None);
        let bad = format!("comment \"{COMMENT_PREFIX} ipv4=7 ipv6=-\"");
        assert_eq!(Forwarding::from_listing(&bad), None);
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
