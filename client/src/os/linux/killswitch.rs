//! The kill switch: one nftables table, `inet trine_client`, that lets
//! out only the daemon's marked QUIC to the current guard, the tunnel
//! device and loopback. DNS to anything but the tunnel's resolver is
//! rejected; every other IPv4 and IPv6 packet is rejected, so IPv6 is
//! tunnelled or blocked, never leaked. From the tunnel device only replies
//! come in (`ct state established`, and ICMP errors about this machine's
//! own connections, `related`; not the connections a conntrack helper
//! expects, which a hostile exit could open through an injected FTP or SIP
//! command): the exit side is behind a NAT,
//! as it would be for any user. Nothing is forwarded while the table is
//! in place, to or from any device: a packet a hostile exit sends to a LAN
//! host never leaves through the real interface. Applied while connecting,
//! connected and reconnecting, and (lockdown, no peers) while disconnected.
//!
//! The table is replaced in one `nft` transaction (`add table; delete
//! table; table { … }`): there is never a moment without it, and a table
//! left by a crashed run is replaced, not duplicated. See
//! docs/client-os.md for why each rule is there.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use trine_circuit::ip::{TUNNEL_RESOLVER_V4, TUNNEL_RESOLVER_V6};

use super::command::{self, CommandError};

/// The nftables table the client owns (family `inet`: IPv4 and IPv6).
pub const TABLE: &str = "trine_client";

/// What the kill switch lets through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KillSwitchSpec {
    /// The tunnel device; everything may leave through it.
    pub tun_name: String,
    /// Where the daemon's marked QUIC may go: the current guard (and,
    /// while bootstrapping without a usable consensus, the authorities).
    /// Empty is lockdown: nothing but loopback and the tunnel device may
    /// pass.
    pub peers: Vec<SocketAddr>,
    /// The firewall mark on the daemon's own socket.
    pub fwmark: u32,
}

/// A kill switch that could not be applied or removed.
#[derive(Debug, thiserror::Error)]
pub enum KillSwitchError {
    /// The device name could break out of its quotes in the ruleset.
    #[error("invalid tunnel device name {0:?}")]
    BadDeviceName(String),
    /// `nft` could not be run or refused the ruleset.
    #[error("nftables: {0}")]
    Nft(#[from] CommandError),
}

/// Whether `name` is a Linux interface name safe to quote in a ruleset.
fn valid_device_name(name: &str) -> bool {
    (1..16).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// The whole `nft -f` script: replace any old table with the new one, in
/// one transaction.
pub fn render(spec: &KillSwitchSpec) -> Result<String, KillSwitchError> {
    if !valid_device_name(&spec.tun_name) {
        return Err(KillSwitchError::BadDeviceName(spec.tun_name.clone()));
    }
    let tun = &spec.tun_name;
    let mark = spec.fwmark;
    let mut guard = String::new();
    for peer in &spec.peers {
        let family = if peer.is_ipv4() { "ip" } else { "ip6" };
        // Writing to a String cannot fail.
        let _ = writeln!(
            guard,
            "        meta mark {mark:#x} {family} daddr {} udp dport {} counter accept",
            peer.ip(),
            peer.port()
        );
    }
    if spec.peers.is_empty() {
        guard.push_str("        # lockdown: no guard, nothing but loopback and the tunnel\n");
    }
    // IPv6 neighbour discovery is needed only to reach an IPv6 peer.
    let neighbours = if spec.peers.iter().any(SocketAddr::is_ipv6) {
        "        icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept\n"
    } else {
        ""
    };
    let mut dns = String::new();
    for (family, resolver) in [
        ("ip", IpAddr::V4(TUNNEL_RESOLVER_V4)),
        ("ip6", IpAddr::V6(TUNNEL_RESOLVER_V6)),
    ] {
        // Writing to a String cannot fail.
        let _ = write!(
            dns,
            "        udp dport 53 {family} daddr != {resolver} counter reject with icmpx type admin-prohibited\n\
             \x20       tcp dport 53 {family} daddr != {resolver} counter reject with tcp reset\n"
        );
    }
    Ok(format!(
        "add table inet {TABLE}\n\
         delete table inet {TABLE}\n\
         table inet {TABLE} {{\n\
         \x20   chain output {{\n\
         \x20       type filter hook output priority filter; policy drop;\n\
         \x20       oifname \"lo\" accept\n\
         {neighbours}\
         \x20       udp sport 68 udp dport 67 accept\n\
         \x20       udp sport 546 udp dport 547 accept\n\
         {dns}\
         \x20       oifname \"{tun}\" counter accept\n\
         {guard}\
         \x20       meta l4proto tcp counter reject with tcp reset\n\
         \x20       counter reject with icmpx type admin-prohibited\n\
         \x20   }}\n\
         \x20   chain premangle {{\n\
         \x20       type filter hook prerouting priority mangle; policy accept;\n\
         \x20       meta l4proto udp meta mark set ct mark\n\
         \x20   }}\n\
         \x20   chain postmangle {{\n\
         \x20       type filter hook postrouting priority mangle; policy accept;\n\
         \x20       meta l4proto udp meta mark {mark:#x} ct mark set meta mark\n\
         \x20   }}\n\
         \x20   chain input {{\n\
         \x20       type filter hook input priority filter; policy accept;\n\
         \x20       iifname \"{tun}\" ct state established accept\n\
         \x20       iifname \"{tun}\" ct state related meta l4proto {{ icmp, ipv6-icmp }} accept\n\
         \x20       iifname \"{tun}\" counter drop\n\
         \x20   }}\n\
         \x20   chain forward {{\n\
         \x20       type filter hook forward priority filter; policy drop;\n\
         \x20       counter drop\n\
         \x20   }}\n\
         }}\n"
    ))
}

/// Installs (or atomically replaces) the kill switch.
pub fn apply(spec: &KillSwitchSpec) -> Result<(), KillSwitchError> {
    let script = render(spec)?;
    command::run("nft", &["-f", "-"], Some(&script))?;
    tracing::info!(tun = %spec.tun_name, peers = ?spec.peers, "kill switch applied");
    Ok(())
}

/// Removes the kill switch; removing an absent one is not an error. The
/// `add table` first makes the `delete` valid either way, in one
/// transaction.
pub fn remove() -> Result<(), KillSwitchError> {
    let script = format!("add table inet {TABLE}\ndelete table inet {TABLE}\n");
    command::run("nft", &["-f", "-"], Some(&script))?;
    tracing::info!("kill switch removed");
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn spec(guard: Option<&str>) -> KillSwitchSpec {
        KillSwitchSpec {
            tun_name: "trn0".to_string(),
            peers: guard.iter().map(|g| g.parse().unwrap()).collect(),
            fwmark: 0x7472,
        }
    }

    #[test]
    fn replaces_the_table_in_one_transaction() {
        let rules = render(&spec(Some("198.18.0.3:9443"))).unwrap();
        let add = rules.find("add table inet trine_client\n").unwrap();
        let delete = rules.find("delete table inet trine_client\n").unwrap();
        let table = rules.find("table inet trine_client {").unwrap();
        assert!(add < delete && delete < table);
        assert!(rules.contains("policy drop;"));
    }

    #[test]
    fn only_marked_udp_to_the_guard_tunnel_and_loopback_pass() {
        let rules = render(&spec(Some("198.18.0.3:9443"))).unwrap();
        assert!(
            rules.contains("meta mark 0x7472 ip daddr 198.18.0.3 udp dport 9443 counter accept")
        );
        assert!(rules.contains("oifname \"lo\" accept"));
        assert!(rules.contains("oifname \"trn0\" counter accept"));
        assert_eq!(rules.matches(" accept\n").count(), 7, "{rules}");
        let v6 = render(&spec(Some("[2001:db8::3]:9443"))).unwrap();
        assert!(v6.contains("meta mark 0x7472 ip6 daddr 2001:db8::3 udp dport 9443"));
        let mut two = spec(Some("198.18.0.3:9443"));
        two.peers.push("198.18.0.11:7000".parse().unwrap());
        let two = render(&two).unwrap();
        assert!(
            two.contains("meta mark 0x7472 ip daddr 198.18.0.11 udp dport 7000 counter accept")
        );
        assert_eq!(two.matches(" accept\n").count(), 8, "{two}");
    }

    #[test]
    fn dns_is_rejected_unless_to_the_tunnel_resolver_before_the_tunnel_accept() {
        let rules = render(&spec(Some("198.18.0.3:9443"))).unwrap();
        let dns4 = rules
            .find("udp dport 53 ip daddr != 172.22.0.53 counter reject")
            .unwrap();
        assert!(
            rules.contains("tcp dport 53 ip daddr != 172.22.0.53 counter reject with tcp reset")
        );
        assert!(rules.contains("udp dport 53 ip6 daddr != fd74:726e::53 counter reject"));
        assert!(rules.contains("tcp dport 53 ip6 daddr != fd74:726e::53 counter reject"));
        assert!(dns4 < rules.find("oifname \"trn0\"").unwrap());
        assert!(dns4 > rules.find("oifname \"lo\"").unwrap());
    }

    #[test]
    fn replies_to_the_marked_socket_carry_its_mark_for_reverse_path_checks() {
        let rules = render(&spec(Some("198.18.0.3:9443"))).unwrap();
        assert!(rules.contains("meta l4proto udp meta mark 0x7472 ct mark set meta mark"));
        assert!(rules.contains("meta l4proto udp meta mark set ct mark"));
    }

    #[test]
    fn the_local_link_keeps_working_without_carrying_data() {
        let nd = "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept";
        assert!(
            render(&spec(Some("[2001:db8::3]:9443")))
                .unwrap()
                .contains(nd)
        );
        assert!(!render(&spec(Some("198.18.0.3:9443"))).unwrap().contains(nd));
        let rules = render(&spec(None)).unwrap();
        assert!(!rules.contains(nd), "no IPv6 peer, no neighbour discovery");
        assert!(rules.contains("udp sport 68 udp dport 67 accept"));
        assert!(rules.contains("udp sport 546 udp dport 547 accept"));
    }

    #[test]
    fn from_the_tunnel_only_replies_come_in_and_nothing_is_forwarded() {
        let rules = render(&spec(Some("198.18.0.3:9443"))).unwrap();
        let input = rules.find("chain input {").unwrap();
        let replies = rules
            .find("iifname \"trn0\" ct state established accept")
            .unwrap();
        let errors = rules
            .find("iifname \"trn0\" ct state related meta l4proto { icmp, ipv6-icmp } accept")
            .unwrap();
        let rest = rules.find("iifname \"trn0\" counter drop").unwrap();
        assert!(input < replies && replies < errors && errors < rest);
        let forward = &rules[rules.find("chain forward {").unwrap()..];
        let forward = &forward[..forward.find('}').unwrap()];
        assert!(forward.contains("policy drop;"));
        assert!(!forward.contains("accept"), "{forward}");
    }

    #[test]
    fn lockdown_has_no_guard_rule() {
        let rules = render(&spec(None)).unwrap();
        assert!(!rules.contains("meta mark 0x7472 ip"));
        assert!(rules.contains("oifname \"trn0\" counter accept"));
    }

    #[test]
    fn device_names_that_could_escape_are_refused() {
        for bad in ["", "a\"b", "tun0; flush ruleset", "0123456789abcdef"] {
            let mut s = spec(None);
            s.tun_name = bad.to_string();
            assert!(matches!(render(&s), Err(KillSwitchError::BadDeviceName(_))));
        }
    }
}
