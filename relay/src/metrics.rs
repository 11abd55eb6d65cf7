//! Prometheus metrics: the text exposition format rendered from the relay's
//! counters, served over plain HTTP on a loopback address.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use trine_circuit::relay::{DropReason, RelayStats};

use crate::exit::dns::{DnsStats, Refused};
use crate::exit::engine::ExitStats;
use crate::exit::runtime::ExitIoStats;
use crate::extend::Refusal;

/// Everything exported, captured at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The protocol core's counters.
    pub core: RelayStats,
    /// Circuits currently open.
    pub circuits_open: usize,
    /// QUIC links currently open.
    pub links_open: usize,
    /// EXTENDs refused without dialing, by why.
    pub extend_refused: BTreeMap<Refusal, u64>,
    /// Dial attempts for EXTENDs that failed or timed out.
    pub extend_dials_failed: u64,
    /// CREATE cells refused by the per-source rate limit.
    pub create_rate_limited: u64,
    /// Cells dropped by the bandwidth cap.
    pub bandwidth_limited: u64,
    /// Cells dropped because a link's send queue was full.
    pub send_queue_full: u64,
    /// Datagrams larger than the link could carry.
    pub datagram_too_large: u64,
    /// Onion-key rotations since start.
    pub onion_rotations: u64,
    /// Exits only.
    pub exit: Option<ExitSnapshot>,
}

/// An exit's counters and pool gauges.
#[derive(Debug, Clone, Default)]
pub struct ExitSnapshot {
    /// The engine's counters.
    pub stats: ExitStats,
    /// The I/O counters.
    pub io: ExitIoStats,
    /// Pool addresses leased to circuits.
    pub leased: usize,
    /// Pool addresses in quarantine.
    pub quarantined: usize,
    /// The DNS screen's counters.
    pub dns: DnsStats,
}

/// Renders `snapshot` in the Prometheus text format (version 0.0.4).
pub fn render(snapshot: &Snapshot) -> String {
    let mut out = String::new();
    let core = &snapshot.core;
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
        let _ = writeln!(out, "# HELP trine_relay_{name} {help}");
        let _ = writeln!(out, "# TYPE trine_relay_{name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "trine_relay_{name}{labels} {value}");
        }
    };
    metric(
        "circuits_open",
        "gauge",
        "Circuits through this relay.",
        &[("", snapshot.circuits_open as u64)],
    );
    metric(
        "links_open",
        "gauge",
        "QUIC links to other nodes.",
        &[("", snapshot.links_open as u64)],
    );
    metric(
        "circuits_created_total",
        "counter",
        "CREATE cells answered.",
        &[("", core.circuits_created)],
    );
    metric(
        "circuits_closed_total",
        "counter",
        "Circuits removed.",
        &[("", core.circuits_closed)],
    );
    metric(
        "handshakes_failed_total",
        "counter",
        "CREATE handshakes that failed.",
        &[("", core.handshakes_failed)],
    );
    metric(
        "cells_forwarded_total",
        "counter",
        "Cells relayed, by direction.",
        &[
            ("{direction=\"forward\"}", core.forward_cells),
            ("{direction=\"backward\"}", core.backward_cells),
        ],
    );
    metric(
        "bytes_forwarded_total",
        "counter",
        "Bytes of relayed cells, by direction.",
        &[
            ("{direction=\"forward\"}", core.forward_bytes),
            ("{direction=\"backward\"}", core.backward_bytes),
        ],
    );
    metric(
        "exit_packets_total",
        "counter",
        "Packets leaving to, and returning from, the internet.",
        &[
            ("{direction=\"out\"}", core.exit_packets),
            ("{direction=\"in\"}", core.exit_replies),
        ],
    );
    metric(
        "onion_key_rotations_total",
        "counter",
        "Onion-key rotations since start.",
        &[("", snapshot.onion_rotations)],
    );
    let refused: Vec<(String, u64)> = Refusal::ALL
        .iter()
        .map(|refusal| {
            (
                format!("{{reason=\"{}\"}}", refusal.name()),
                snapshot.extend_refused.get(refusal).copied().unwrap_or(0),
            )
        })
        .collect();
    let refused: Vec<(&str, u64)> = refused.iter().map(|(l, v)| (l.as_str(), *v)).collect();
    metric(
        "extend_refused_total",
        "counter",
        "EXTENDs answered with TRUNCATED without dialing, by reason.",
        &refused,
    );
    metric(
        "extend_dials_failed_total",
        "counter",
        "Dial attempts for EXTENDs that failed or timed out.",
        &[("", snapshot.extend_dials_failed)],
    );
    let mut drops: Vec<(String, u64)> = DropReason::ALL
        .iter()
        .map(|reason| {
            (
                format!("{{reason=\"{}\"}}", reason.name()),
                core.drops.get(reason).copied().unwrap_or(0),
            )
        })
        .collect();
    drops.push((
        "{reason=\"create_rate\"}".into(),
        snapshot.create_rate_limited,
    ));
    drops.push(("{reason=\"bandwidth\"}".into(), snapshot.bandwidth_limited));
    drops.push((
        "{reason=\"send_queue_full\"}".into(),
        snapshot.send_queue_full,
    ));
    drops.push((
        "{reason=\"datagram_too_large\"}".into(),
        snapshot.datagram_too_large,
    ));
    let drops: Vec<(&str, u64)> = drops.iter().map(|(l, v)| (l.as_str(), *v)).collect();
    metric(
        "cells_dropped_total",
        "counter",
        "Cells dropped, by reason.",
        &drops,
    );
    if let Some(ExitSnapshot {
        stats: exit,
        io,
        leased,
        quarantined,
        dns,
    }) = &snapshot.exit
    {
        metric(
            "exit_pool_leased",
            "gauge",
            "Exit NAT pool addresses leased to circuits.",
            &[("", *leased as u64)],
        );
        metric(
            "exit_pool_quarantined",
            "gauge",
            "Exit NAT pool addresses released by closed circuits and not yet reusable.",
            &[("", *quarantined as u64)],
        );
        metric(
            "exit_conntrack_failed_total",
            "counter",
            "Released pool addresses whose connection tracking entries could not be deleted \
             (kept in quarantine).",
            &[("", io.conntrack_failed)],
        );
        metric(
            "exit_dns_queries_total",
            "counter",
            "DNS queries forwarded upstream.",
            &[("", exit.dns_queries)],
        );
        let dns_refused: Vec<(String, u64)> = Refused::ALL
            .iter()
            .zip(dns.refused)
            .map(|(why, count)| (format!("{{reason=\"{}\"}}", why.name()), count))
            .collect();
        let dns_refused: Vec<(&str, u64)> =
            dns_refused.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        metric(
            "exit_dns_refused_total",
            "counter",
            "DNS queries the exit answered itself (REFUSED; FORMERR if malformed), by reason.",
            &dns_refused,
        );
        metric(
            "exit_dns_servfail_total",
            "counter",
            "Upstream DNS answers replaced by SERVFAIL (reserved addresses in them, or unreadable).",
            &[("", dns.servfail)],
        );
        metric(
            "exit_dns_answers_dropped_total",
            "counter",
            "Upstream DNS answers dropped as not for the query asked.",
            &[("", dns.mismatched)],
        );
        metric(
            "exit_refused_total",
            "counter",
            "Client packets refused by the exit policy, by rule.",
            &[
                ("{rule=\"reserved\"}", exit.refused_reserved),
                ("{rule=\"own_address\"}", exit.refused_own),
                ("{rule=\"port\"}", exit.refused_port),
                ("{rule=\"protocol\"}", exit.refused_protocol),
            ],
        );
        metric(
            "exit_dropped_total",
            "counter",
            "Exit packets dropped, by reason.",
            &[
                ("{reason=\"malformed\"}", exit.malformed),
                ("{reason=\"spoofed_source\"}", exit.spoofed),
                ("{reason=\"pool_full\"}", exit.pool_full),
                ("{reason=\"no_circuit\"}", exit.unmatched),
                ("{reason=\"tun_full\"}", io.tun_full),
                ("{reason=\"dns_busy\"}", io.dns_busy),
            ],
        );
    }
    out
}

/// A scrape's request for the current counters: the daemon answers it with
/// a fresh [`Snapshot`], so what is served is never stale.
pub type ScrapeRequest = oneshot::Sender<Snapshot>;

/// Serves `GET /metrics` on `listener`, asking `scrapes` for the counters
/// at each request, until the daemon stops answering. Anything else gets
/// 404; malformed requests are closed.
pub async fn serve(listener: TcpListener, scrapes: mpsc::Sender<ScrapeRequest>) {
    loop {
        let mut stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Out of descriptors, say: do not spin.
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let (answer, snapshot) = oneshot::channel();
        if scrapes.send(answer).await.is_err() {
            return;
        }
        let Ok(snapshot) = snapshot.await else {
            return;
        };
        let body = render(&snapshot);
        tokio::spawn(async move {
            let mut request = [0u8; 1024];
            let read =
                tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut request))
                    .await;
            let Ok(Ok(len)) = read else {
                return;
            };
            let line = request[..len]
                .split(|b| *b == b'\n')
                .next()
                .unwrap_or_default();
            let response = if line.starts_with(b"GET /metrics ") || line.starts_with(b"GET / ") {
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_string()
            };
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}

/// Binds the metrics listener; errors name the address.
pub async fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(address).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_drop_reason_is_exported_with_help_and_type() {
        let mut snapshot = Snapshot::default();
        snapshot.core.drops.insert(DropReason::Replay, 3);
        snapshot.circuits_open = 2;
        snapshot.extend_refused.insert(Refusal::NotGlobal, 4);
        let text = render(&snapshot);
        assert!(text.contains("trine_relay_extend_refused_total{reason=\"not_global\"} 4"));
        for refusal in Refusal::ALL {
            assert!(text.contains(&format!("reason=\"{}\"", refusal.name())));
        }
        assert!(text.contains("trine_relay_cells_dropped_total{reason=\"replay\"} 3"));
        assert!(text.contains("trine_relay_circuits_open 2"));
        for reason in DropReason::ALL {
            assert!(text.contains(&format!("reason=\"{}\"", reason.name())));
        }
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.rsplit_once(' ').unwrap_or(("", "x"));
            assert!(name.starts_with("trine_relay_"), "{line}");
            assert!(value.parse::<u64>().is_ok(), "{line}");
        }
    }

    #[test]
    fn exit_refusals_and_dns_screen_counters_are_exported() {
        let mut snapshot = Snapshot::default();
        let mut exit = ExitSnapshot::default();
        exit.stats.refused_port = 2;
        exit.stats.refused_protocol = 3;
        exit.dns = DnsStats {
            refused: [4, 5, 6, 7],
            servfail: 8,
            mismatched: 9,
        };
        snapshot.exit = Some(exit);
        let text = render(&snapshot);
        assert!(text.contains("trine_relay_exit_refused_total{rule=\"port\"} 2"));
        assert!(text.contains("trine_relay_exit_refused_total{rule=\"protocol\"} 3"));
        for sample in [
            "exit_dns_refused_total{reason=\"malformed\"} 4",
            "exit_dns_refused_total{reason=\"private_reverse\"} 5",
            "exit_dns_refused_total{reason=\"private_name\"} 6",
            "exit_dns_refused_total{reason=\"not_a_query\"} 7",
            "exit_dns_servfail_total 8",
            "exit_dns_answers_dropped_total 9",
        ] {
            assert!(
                text.contains(&format!("trine_relay_{sample}\n")),
                "{sample}"
            );
        }
    }
}
