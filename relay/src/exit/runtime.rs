//! The exit's async shell: reads the TUN device into the core loop, writes
//! the client packets the engine lets through to it, and forwards DNS
//! queries to the upstream resolver through the [`DnsScreen`]; hands the
//! pool addresses of closed circuits to the [`Forgetter`] and takes them
//! back into use once the kernel has forgotten their flows. The core loop
//! owns the [`ExitRuntime`]; the tasks here only move bytes.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::UdpSocket;
use tokio::sync::{Semaphore, mpsc};
use tracing::{debug, info, warn};
use trine_circuit::CircuitHandle;
use trine_circuit::cell;

use super::conntrack::{self, Forgetter, Forgotten};
use super::dns::{DnsScreen, DnsStats};
use super::engine::{ExitEngine, Outbound};
use super::nat::NatPool;
use super::policy::{ExitPolicy, reserved_networks};
use super::system::{self, ExitSystem};
use crate::config::ExitSettings;

/// DNS queries in flight at once; more are dropped (the client retries).
const DNS_IN_FLIGHT: usize = 256;
/// How long an upstream resolver gets to answer.
const DNS_TIMEOUT: Duration = Duration::from_secs(5);
/// Packets queued from the TUN toward the core loop.
pub const TUN_QUEUE: usize = 1024;
/// Room for the backward onion layer an exit adds to a DATA cell.
const CELL_OVERHEAD: usize = 64;
/// Largest DNS answer accepted from upstream.
const DNS_MAX: usize = 4096;

/// A DNS answer to send back through a circuit.
#[derive(Debug)]
pub struct DnsAnswer {
    /// The circuit that asked.
    pub circuit: CircuitHandle,
    /// The client's inner address and port.
    pub client: SocketAddr,
    /// The virtual resolver it asked.
    pub resolver: SocketAddr,
    /// The upstream's answer.
    pub answer: Vec<u8>,
}

/// Counters of the exit's I/O, beside the engine's.
#[derive(Debug, Clone, Default)]
pub struct ExitIoStats {
    /// Packets dropped because the TUN device would block.
    pub tun_full: u64,
    /// DNS queries dropped because too many were in flight.
    pub dns_busy: u64,
    /// Released pool addresses whose flows could not be deleted (they
    /// stay in quarantine for good).
    pub conntrack_failed: u64,
}

/// Exit mode, running.
pub struct ExitRuntime {
    /// Policy, pool and counters.
    pub engine: ExitEngine<CircuitHandle>,
    /// I/O counters.
    pub io_stats: ExitIoStats,
    system: Arc<ExitSystem>,
    dns_upstream: SocketAddr,
    dns_screen: Arc<DnsScreen>,
    dns_permits: Arc<Semaphore>,
    dns_answers: mpsc::Sender<DnsAnswer>,
    forgetter: Forgetter,
}

impl ExitRuntime {
    /// Sets up the TUN device and nftables, deletes the pool's leftover
    /// flows, and starts reading the TUN into `from_tun` (as unsealed DATA
    /// cells). DNS answers will arrive on `dns_answers`, released pool
    /// addresses whose flows were deleted (or not) on `forgotten`.
    pub fn start(
        settings: &ExitSettings,
        advertised: &[IpAddr],
        max_circuits: usize,
        from_tun: mpsc::Sender<Vec<u8>>,
        dns_answers: mpsc::Sender<DnsAnswer>,
        forgotten: mpsc::UnboundedSender<Forgotten>,
    ) -> anyhow::Result<Self> {
        let dns_upstream = settings
            .dns_upstream
            .context("exit_network.dns_upstream: an exit must name its DNS resolver")?;
        let host_resolver = std::fs::read_to_string("/etc/resolv.conf")
            .ok()
            .and_then(|text| system::first_nameserver(&text));
        if host_resolver == Some(dns_upstream.ip()) {
            warn!(
                %dns_upstream,
                "exit_network.dns_upstream is this host's own resolver: names only it knows \
                 (private zones of the host's network) resolve for clients"
            );
        }
        // The host's name (and the names under it) are refused.
        let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok();
        let dns_screen = Arc::new(DnsScreen::new(
            reserved_networks(),
            settings.allow_networks.clone(),
            host_name.as_deref(),
        ));
        let nat = NatPool::new(settings.pool_v4, settings.pool_v6, max_circuits);
        let system = Arc::new(ExitSystem::start(
            &settings.tun_name,
            settings.mtu,
            nat.prefixes(),
            nat.gateway(),
        )?);
        // A previous run's flows must not reach this run's circuits.
        let (pool4, pool6) = nat.prefixes();
        conntrack::forget_prefixes(
            &[Some(pool4), pool6]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>(),
        )?;
        let forgetter = Forgetter::start(forgotten)?;
        // Read after the TUN exists: its gateway addresses count as our
        // own.
        let own = own_addresses(system::own_addresses()?, advertised, dns_upstream.ip());
        let policy = ExitPolicy::new(settings.allow_networks.clone(), own, settings.ports.clone())
            .with_pools([pool4].into_iter().chain(pool6))
            .with_protocols(settings.protocols);
        info!(
            tun = %settings.tun_name,
            pool_v4 = %settings.pool_v4,
            pool_v6 = ?settings.pool_v6.map(|p| p.to_string()),
            %dns_upstream,
            "exit mode on"
        );
        tokio::spawn(read_tun(system.clone(), settings.mtu, from_tun));
        Ok(Self {
            engine: ExitEngine::new(policy, nat),
            io_stats: ExitIoStats::default(),
            system,
            dns_upstream,
            dns_screen,
            dns_permits: Arc::new(Semaphore::new(DNS_IN_FLIGHT)),
            dns_answers,
            forgetter,
        })
    }

    /// `circuit` is gone: its pool address goes into quarantine while the
    /// kernel forgets its flows.
    pub fn closed(&mut self, circuit: CircuitHandle) {
        if let Some(released) = self.engine.closed(circuit) {
            if !self.forgetter.forget(released) {
                self.io_stats.conntrack_failed += 1;
                warn!("the conntrack thread is gone: a pool address stays in quarantine");
            }
        }
    }

    /// The kernel's flows of a released pool address are deleted (it may
    /// be leased again), or could not be (it stays in quarantine).
    pub fn forgotten(&mut self, forgotten: Forgotten) {
        match forgotten.outcome {
            Ok(()) => self.engine.reusable(forgotten.released),
            Err(error) => {
                self.io_stats.conntrack_failed += 1;
                warn!(
                    %error,
                    addresses = ?forgotten.released.addresses(),
                    "cannot delete a released pool address's flows: it stays in quarantine"
                );
            }
        }
    }

    /// Handles a packet from `circuit`. Writes into `reply` a packet to
    /// send back through the circuit (an ICMP error), if any.
    pub fn client_packet(
        &mut self,
        circuit: CircuitHandle,
        packet: &mut [u8],
        reply: &mut Vec<u8>,
    ) {
        match self.engine.outbound(circuit, packet, reply) {
            Outbound::Tun => {
                if self.system.tun.try_send(packet).is_err() {
                    self.io_stats.tun_full += 1;
                }
            }
            Outbound::Dns {
                query,
                client,
                resolver,
            } => {
                let Some(query) = packet.get(query) else {
                    return;
                };
                self.resolve(circuit, client, resolver, query.to_vec());
            }
            Outbound::Refused(_) | Outbound::Dropped(_) => {}
        }
    }

    /// The DNS screen's counters.
    pub fn dns_stats(&self) -> DnsStats {
        self.dns_screen.stats()
    }

    /// Removes the nftables table (also done on drop).
    pub fn stop(&self) {
        self.system.stop();
    }

    /// Answers a query the screen refuses at once; asks the upstream
    /// resolver about the others in a task of its own, from a fresh socket
    /// (a fresh source port per query), and passes on what the screen
    /// lets through of its answer.
    fn resolve(
        &mut self,
        circuit: CircuitHandle,
        client: SocketAddr,
        resolver: SocketAddr,
        query: Vec<u8>,
    ) {
        if let Err(refusal) = self.dns_screen.query(&query) {
            if let Some((why, answer)) = refusal {
                debug!(?why, "DNS query refused");
                let refused = DnsAnswer {
                    circuit,
                    client,
                    resolver,
                    answer,
                };
                if self.dns_answers.try_send(refused).is_err() {
                    self.io_stats.dns_busy += 1;
                }
            }
            return;
        }
        let Ok(permit) = self.dns_permits.clone().try_acquire_owned() else {
            self.io_stats.dns_busy += 1;
            return;
        };
        let upstream = self.dns_upstream;
        let screen = self.dns_screen.clone();
        let answers = self.dns_answers.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let answer = match ask(upstream, &query).await {
                Ok(answer) => answer,
                Err(error) => return debug!(%error, "DNS query upstream failed"),
            };
            let Some(answer) = screen.answer(&query, &answer) else {
                return debug!("upstream DNS answer not for the query asked; dropped");
            };
            let _ = answers
                .send(DnsAnswer {
                    circuit,
                    client,
                    resolver,
                    answer,
                })
                .await;
        });
    }
}

/// The addresses no client reaches, whatever `allow_networks` says: those
/// on this host's `interfaces`, the `advertised` ones (behind a 1:1 NAT on
/// no interface, yet they reach this host) and the DNS upstream's (a
/// resolver that answers this host alone would answer a client asking it
/// straight, past the [`DnsScreen`]).
fn own_addresses(
    interfaces: Vec<IpAddr>,
    advertised: &[IpAddr],
    dns_upstream: IpAddr,
) -> Vec<IpAddr> {
    // Canonical: an IPv4-mapped IPv6 form must not hide an IPv4 address
    // from the policy, which compares packets' (plain) addresses.
    let mut own = interfaces;
    own.extend(advertised);
    own.push(dns_upstream);
    own.into_iter().map(|ip| ip.to_canonical()).collect()
}

async fn ask(upstream: SocketAddr, query: &[u8]) -> anyhow::Result<Vec<u8>> {
    let bind: SocketAddr = match upstream.ip() {
        IpAddr::V4(_) => ([0, 0, 0, 0], 0).into(),
        IpAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(bind).await?;
    socket.connect(upstream).await?;
    socket.send(query).await?;
    let mut answer = vec![0; DNS_MAX];
    let len = tokio::time::timeout(DNS_TIMEOUT, socket.recv(&mut answer))
        .await
        .context("timed out")??;
    answer.truncate(len);
    Ok(answer)
}

/// Moves packets from the TUN device to the core loop until it goes away.
/// Each is read straight into an unsealed DATA cell (packet at
/// `cell::DATA_OFFSET`), so the core seals it in place without a copy.
async fn read_tun(system: Arc<ExitSystem>, mtu: u16, to_core: mpsc::Sender<Vec<u8>>) {
    let largest = usize::from(mtu).max(1500);
    loop {
        let mut cell = Vec::with_capacity(cell::DATA_OFFSET + largest + CELL_OVERHEAD);
        match system
            .tun
            .recv(cell::data_cell_slot(&mut cell, largest))
            .await
        {
            Ok(len) => {
                cell.truncate(cell::DATA_OFFSET + len);
                if to_core.send(cell).await.is_err() {
                    return;
                }
            }
            Err(error) => {
                tracing::warn!(%error, "TUN read failed; exit traffic stops");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::exit::policy::Refusal;
    use trine_circuit::ip;

    #[test]
    fn the_dns_upstream_is_refused_like_the_exits_own_addresses() {
        let upstream: IpAddr = "198.51.100.53".parse().unwrap();
        let own = own_addresses(
            vec!["127.0.0.1".parse().unwrap()],
            &["203.0.113.9".parse().unwrap()],
            upstream,
        );
        // Even inside a network the operator allows, and on any port.
        let allowed = vec!["198.51.100.0/24".parse().unwrap()];
        let policy = ExitPolicy::new(allowed, own, vec![]);
        for port in [53, 443, 853] {
            let mut packet = Vec::new();
            let to = SocketAddr::new(upstream, port);
            ip::build_udp((ip::TUNNEL_CLIENT_V4, 40_000).into(), to, b"q", &mut packet).unwrap();
            let info = ip::parse(&packet).unwrap();
            assert_eq!(policy.check(&packet, &info), Err(Refusal::OwnAddress));
        }
        let mut neighbour = Vec::new();
        let to = SocketAddr::from(([198, 51, 100, 54], 53));
        ip::build_udp(
            (ip::TUNNEL_CLIENT_V4, 40_000).into(),
            to,
            b"q",
            &mut neighbour,
        )
        .unwrap();
        let info = ip::parse(&neighbour).unwrap();
        assert_eq!(policy.check(&neighbour, &info), Ok(()));
    }
}
