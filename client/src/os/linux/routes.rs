//! Policy routing like wg-quick: a routing table of Trine's own holds
//! default routes (IPv4 and IPv6) into the tunnel device, and two rules
//! per family send there every packet without the daemon's firewall mark:
//!
//! ```text
//! 7472: from all lookup main suppress_prefixlength 0
//! 7473: not from all fwmark 0x7472 lookup 7472
//! ```
//!
//! The first keeps the main table's specific routes (the local network,
//! the guard's on-link route) but ignores its default route; the second
//! sends all unmarked traffic into the tunnel. Nothing in the main table is
//! touched. The client owns exactly table [`TRINE_TABLE`] and the rules at
//! [`TRINE_RULE_PRIORITY`] and the one after, so leftovers of a crashed run
//! are found without parsing `ip` output: [`remove`] deletes by priority
//! and flushes the table.

use super::command::{self, CommandError};

/// The routing table holding the default routes into the tunnel.
pub const TRINE_TABLE: u32 = 7472;

/// The priority of the `suppress_prefixlength 0` rule; the `not fwmark`
/// rule is at the next priority.
pub const TRINE_RULE_PRIORITY: u32 = 7472;

/// Removal stops after this many deletions of one priority: more means
/// something else keeps adding rules there.
const MAX_DUPLICATES: usize = 64;

/// What to route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutesSpec {
    /// The tunnel device the default routes point into.
    pub tun_name: String,
    /// Packets with this mark (the daemon's own) bypass the tunnel.
    pub fwmark: u32,
    /// Whether to route IPv6 too (false only where the kernel has no
    /// IPv6; the kill switch blocks it either way).
    pub ipv6: bool,
}

/// Routes or rules that could not be applied or removed.
#[derive(Debug, thiserror::Error)]
pub enum RoutesError {
    /// `ip` could not be run or refused a change.
    #[error("routing: {0}")]
    Ip(#[from] CommandError),
}

/// The `ip` invocations that install the routing, in order.
pub fn apply_commands(spec: &RoutesSpec) -> Vec<Vec<String>> {
    let table = TRINE_TABLE.to_string();
    let suppress = TRINE_RULE_PRIORITY.to_string();
    let not_marked = (TRINE_RULE_PRIORITY + 1).to_string();
    let mark = format!("{:#x}", spec.fwmark);
    let families: &[&str] = if spec.ipv6 { &["-4", "-6"] } else { &["-4"] };
    let mut commands = Vec::new();
    for family in families {
        let words: [&[&str]; 3] = [
            &[
                family,
                "route",
                "replace",
                "default",
                "dev",
                &spec.tun_name,
                "table",
                &table,
            ],
            &[
                family,
                "rule",
                "add",
                "priority",
                &suppress,
                "table",
                "main",
                "suppress_prefixlength",
                "0",
            ],
            &[
                family,
                "rule",
                "add",
                "priority",
                &not_marked,
                "not",
                "fwmark",
                &mark,
                "table",
                &table,
            ],
        ];
        commands.extend(
            words
                .iter()
                .map(|w| w.iter().map(|s| s.to_string()).collect()),
        );
    }
    commands
}

/// Installs the routing; first removes whatever an earlier run left, so
/// rules are never duplicated. On failure, what was applied is removed.
pub fn apply(spec: &RoutesSpec) -> Result<(), RoutesError> {
    remove()?;
    for args in apply_commands(spec) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        if let Err(error) = command::run("ip", &args, None) {
            let _ = remove();
            return Err(error.into());
        }
    }
    tracing::info!(tun = %spec.tun_name, table = TRINE_TABLE, "tunnel routing applied");
    Ok(())
}

/// Removes Trine's rules (both priorities, both families, any number of
/// copies) and flushes its table. Idempotent: absent state is not an
/// error.
pub fn remove() -> Result<(), RoutesError> {
    let table = TRINE_TABLE.to_string();
    for family in ["-4", "-6"] {
        for priority in [TRINE_RULE_PRIORITY, TRINE_RULE_PRIORITY + 1] {
            let priority = priority.to_string();
            for _ in 0..MAX_DUPLICATES {
                if !command::run_absent_ok("ip", &[family, "rule", "del", "priority", &priority])? {
                    break;
                }
            }
        }
        command::run_absent_ok("ip", &[family, "route", "flush", "table", &table])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(spec: &RoutesSpec) -> Vec<String> {
        apply_commands(spec).iter().map(|c| c.join(" ")).collect()
    }

    #[test]
    fn like_wg_quick_for_both_families() {
        let spec = RoutesSpec {
            tun_name: "trn0".to_string(),
            fwmark: 0x7472,
            ipv6: true,
        };
        let expected = [
            "route replace default dev trn0 table 7472",
            "rule add priority 7472 table main suppress_prefixlength 0",
            "rule add priority 7473 not fwmark 0x7472 table 7472",
        ];
        let got = lines(&spec);
        assert_eq!(got.len(), 6);
        for (i, family) in ["-4", "-6"].iter().enumerate() {
            for (j, line) in expected.iter().enumerate() {
                assert_eq!(got[i * 3 + j], format!("{family} {line}"));
            }
        }
    }

    #[test]
    fn ipv4_only_when_asked() {
        let spec = RoutesSpec {
            tun_name: "trn0".to_string(),
            fwmark: 1,
            ipv6: false,
        };
        let got = lines(&spec);
        assert_eq!(got.len(), 3);
        assert!(got.iter().all(|l| l.starts_with("-4 ")));
        assert!(got[2].ends_with("not fwmark 0x1 table 7472"));
    }
}
