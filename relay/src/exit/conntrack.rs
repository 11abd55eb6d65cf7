//! Forgetting the flows of a NAT pool address. The kernel's connection
//! tracking keeps the NAT mapping of an established TCP connection for
//! days (`nf_conntrack_tcp_timeout_established`: 5 days by default), so an
//! address a closed circuit gives back would still receive the late
//! packets of that circuit's connections, and the next circuit to lease
//! it could answer into them. Before the pool leases it again, the
//! `conntrack` tool (Debian package `conntrack`) deletes every entry from
//! or to it: in a thread of its own, one address after another, never on
//! the core loop. At start the whole pool's entries (a previous run's) go
//! the same way, and an exit whose `conntrack` does not work does not
//! start.

use std::process::Command;

use anyhow::Context;
use tokio::sync::mpsc;

use super::nat::Released;
use super::policy::Cidr;

/// The result of forgetting one released address's flows, for the core.
#[derive(Debug)]
pub struct Forgotten {
    /// The address (one per family), still in quarantine.
    pub released: Released,
    /// `Err` names what failed: the address must stay in quarantine.
    pub outcome: Result<(), String>,
}

/// The thread deleting released addresses' flows. The queues to and from
/// it hold at most one entry per pool address (each is released once
/// before it is leased again), so they need no bound of their own.
#[derive(Debug)]
pub struct Forgetter {
    jobs: mpsc::UnboundedSender<Released>,
}

impl Forgetter {
    /// Starts the thread; each address's result goes to `done`.
    pub fn start(done: mpsc::UnboundedSender<Forgotten>) -> anyhow::Result<Self> {
        let (jobs, mut queue) = mpsc::unbounded_channel::<Released>();
        std::thread::Builder::new()
            .name("conntrack".into())
            .spawn(move || {
                while let Some(released) = queue.blocking_recv() {
                    let outcome = released
                        .addresses()
                        .iter()
                        .try_for_each(|address| forget(&address.to_string(), address.is_ipv6()));
                    if done.send(Forgotten { released, outcome }).is_err() {
                        return;
                    }
                }
            })
            .context("cannot start the conntrack thread")?;
        Ok(Self { jobs })
    }

    /// Queues `released` for deletion; `false` if the thread is gone (the
    /// address then stays in quarantine).
    pub fn forget(&self, released: Released) -> bool {
        self.jobs.send(released).is_ok()
    }
}

/// Deletes every flow from or to the pool `prefixes` (at start: what a
/// previous run left). Fails if `conntrack` is missing or does not work.
pub fn forget_prefixes(prefixes: &[Cidr]) -> anyhow::Result<()> {
    for prefix in prefixes {
        forget(&prefix.to_string(), prefix.addr.is_ipv6())
            .map_err(anyhow::Error::msg)
            .with_context(|| {
                format!(
                    "cannot delete the connection tracking entries of the NAT pool {prefix} \
                     (an exit needs the `conntrack` tool: Debian package conntrack)"
                )
            })?;
    }
    Ok(())
}

/// Deletes the flows whose original source, then those whose original
/// destination, is `what` (an address or a prefix).
fn forget(what: &str, ipv6: bool) -> Result<(), String> {
    for direction in ["-s", "-d"] {
        let mut command = Command::new("conntrack");
        command.arg("-D");
        if ipv6 {
            command.args(["-f", "ipv6"]);
        }
        let output = command
            .args([direction, what])
            .output()
            .map_err(|error| format!("cannot run `conntrack`: {error}"))?;
        let count = deleted(
            output.status.code(),
            &String::from_utf8_lossy(&output.stderr),
        )?;
        tracing::debug!(count, what, direction, "conntrack entries deleted");
    }
    Ok(())
}

/// How many entries a `conntrack -D` run deleted, from its exit status and
/// standard error. It reports the count on standard error ("conntrack
/// v1.4.7 (conntrack-tools): 2 flow entries have been deleted.") and
/// exits 1 when there were none, which is not a failure.
fn deleted(status: Option<i32>, stderr: &str) -> Result<u64, String> {
    let count = stderr.lines().find_map(|line| {
        let (before, _) = line.split_once(" flow entries have been deleted")?;
        before.rsplit(' ').next()?.parse::<u64>().ok()
    });
    match (status, count) {
        (Some(0), Some(count)) => Ok(count),
        (Some(1), Some(0)) => Ok(0),
        (None, _) => Err("conntrack was killed by a signal".into()),
        (Some(code), _) => Err(format!(
            "conntrack exited with {code}: {}",
            stderr.trim().replace('\n', "; ")
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const TOOL: &str = "conntrack v1.4.7 (conntrack-tools)";

    #[test]
    fn none_deleted_is_success_despite_exit_status_1() {
        let none = format!("{TOOL}: 0 flow entries have been deleted.\n");
        assert_eq!(deleted(Some(1), &none), Ok(0));
        let two = format!("{TOOL}: 2 flow entries have been deleted.\n");
        assert_eq!(deleted(Some(0), &two), Ok(2));
    }

    #[test]
    fn errors_and_unexpected_output_are_failures() {
        let bad = format!("{TOOL}: Invalid IP address `bogus'\nTry `conntrack -h'\n");
        let error = deleted(Some(2), &bad).unwrap_err();
        assert!(error.contains("exited with 2") && error.contains("Invalid IP"));
        // Exit 1 without the "0 deleted" line is an error too (e.g. no
        // netlink access), as is a count with a failing status.
        let denied = format!("{TOOL}: Operation failed: Operation not permitted\n");
        assert!(deleted(Some(1), &denied).is_err());
        let some = format!("{TOOL}: 3 flow entries have been deleted.\n");
        assert!(deleted(Some(1), &some).is_err());
        assert!(deleted(None, "").is_err());
        assert!(deleted(Some(0), "").is_err(), "no count: not understood");
    }
}
