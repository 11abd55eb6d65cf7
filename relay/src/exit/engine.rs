//! The exit's packet logic, without I/O: what to do with each packet a
//! client sends (rewrite its source to the circuit's pool address and send
//! it to the TUN, answer it as DNS, or refuse it with an ICMP error) and to
//! which circuit each packet from the TUN belongs (rewriting its
//! destination back to the client's fixed inner address).

use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;

use trine_circuit::ip::{self, PacketInfo};

use super::nat::{NatPool, Released};
use super::policy::{ExitPolicy, Refusal};

/// The DNS port on the tunnel's virtual resolver.
const DNS_PORT: u16 = 53;

/// What to do with a packet from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    /// Rewritten in place: write it to the TUN device.
    Tun,
    /// A DNS query to the virtual resolver: forward the payload at `query`
    /// upstream and answer with [`ExitEngine::dns_answer`].
    Dns {
        /// The query (UDP payload) within the packet.
        query: Range<usize>,
        /// Where the answer goes back to.
        client: SocketAddr,
        /// The resolver address the client asked.
        resolver: SocketAddr,
    },
    /// Refused by the exit policy. The ICMP error for the client, if one
    /// may be sent, is in the `reply` buffer.
    Refused(Refusal),
    /// Dropped without an answer.
    Dropped(ExitDrop),
}

/// Why a client's packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitDrop {
    /// Not a well-formed IPv4 or IPv6 packet.
    Malformed,
    /// Its source is not the client's inner address.
    Spoofed,
    /// No pool address left (or none of that family).
    PoolFull,
}

/// Exit counters, exported as metrics.
#[derive(Debug, Clone, Default)]
pub struct ExitStats {
    /// Packets written toward the internet.
    pub to_internet: u64,
    /// Packets from the internet mapped back to a circuit.
    pub from_internet: u64,
    /// Packets from the TUN that matched no circuit.
    pub unmatched: u64,
    /// DNS queries forwarded upstream.
    pub dns_queries: u64,
    /// Refused: reserved destination.
    pub refused_reserved: u64,
    /// Refused: one of the exit's own addresses.
    pub refused_own: u64,
    /// Refused: a port rule.
    pub refused_port: u64,
    /// Refused: an IP protocol not in the allowlist.
    pub refused_protocol: u64,
    /// Dropped: malformed.
    pub malformed: u64,
    /// Dropped: spoofed source.
    pub spoofed: u64,
    /// Dropped: pool exhausted.
    pub pool_full: u64,
}

/// Policy, pool and counters of one exit; `C` names a circuit.
#[derive(Debug)]
pub struct ExitEngine<C> {
    policy: ExitPolicy,
    nat: NatPool<C>,
    /// Counters.
    pub stats: ExitStats,
}

impl<C: Copy + Eq + Hash> ExitEngine<C> {
    /// An exit applying `policy` with addresses from `nat`.
    pub fn new(policy: ExitPolicy, nat: NatPool<C>) -> Self {
        Self {
            policy,
            nat,
            stats: ExitStats::default(),
        }
    }

    /// Decides about `packet` from `circuit`, rewriting it in place when it
    /// goes to the TUN and writing an ICMP error into `reply` when refused.
    pub fn outbound(&mut self, circuit: C, packet: &mut [u8], reply: &mut Vec<u8>) -> Outbound {
        reply.clear();
        let Ok(info) = ip::parse(packet) else {
            self.stats.malformed += 1;
            return Outbound::Dropped(ExitDrop::Malformed);
        };
        let (client, resolver) = tunnel_addresses(info.src);
        if info.src != client {
            self.stats.spoofed += 1;
            return Outbound::Dropped(ExitDrop::Spoofed);
        }
        if info.dst == resolver {
            return self.resolver(packet, &info, reply);
        }
        if let Err(refusal) = self.policy.check(packet, &info) {
            match refusal {
                Refusal::Reserved => self.stats.refused_reserved += 1,
                Refusal::OwnAddress => self.stats.refused_own += 1,
                Refusal::Port => self.stats.refused_port += 1,
                Refusal::Protocol => self.stats.refused_protocol += 1,
            }
            // No ICMP error is owed for some packets (ICMP errors, later
            // fragments): then the refusal is silent.
            let _ = ip::icmp_prohibited(packet, info.dst, reply);
            return Outbound::Refused(refusal);
        }
        let Some(pool_address) = self.nat.lease(circuit, info.dst) else {
            self.stats.pool_full += 1;
            return Outbound::Dropped(ExitDrop::PoolFull);
        };
        if ip::set_source(packet, pool_address).is_err() {
            self.stats.malformed += 1;
            return Outbound::Dropped(ExitDrop::Malformed);
        }
        self.stats.to_internet += 1;
        Outbound::Tun
    }

    /// A packet to the virtual resolver: UDP port 53 is DNS; anything else
    /// is refused like a reserved destination.
    fn resolver(&mut self, packet: &[u8], info: &PacketInfo, reply: &mut Vec<u8>) -> Outbound {
        let is_dns = info.protocol == ip::proto::UDP && info.dst_port == Some(DNS_PORT);
        let query = if is_dns {
            ip::udp_payload(packet, info).ok()
        } else {
            None
        };
        match (query, info.src_port) {
            (Some(query), Some(port)) => {
                self.stats.dns_queries += 1;
                Outbound::Dns {
                    query,
                    client: SocketAddr::new(info.src, port),
                    resolver: SocketAddr::new(info.dst, DNS_PORT),
                }
            }
            _ => {
                self.stats.refused_reserved += 1;
                let _ = ip::icmp_prohibited(packet, info.dst, reply);
                Outbound::Refused(Refusal::Reserved)
            }
        }
    }

    /// Maps a packet from the TUN to its circuit and rewrites its
    /// destination to the client's inner address. `None`: drop it.
    pub fn inbound(&mut self, packet: &mut [u8]) -> Option<C> {
        let circuit = ip::parse(packet)
            .ok()
            .and_then(|info| Some((self.nat.circuit_of(info.dst)?, info.dst)));
        let Some((circuit, dst)) = circuit else {
            self.stats.unmatched += 1;
            return None;
        };
        let (client, _) = tunnel_addresses(dst);
        if ip::set_destination(packet, client).is_err() {
            self.stats.unmatched += 1;
            return None;
        }
        self.stats.from_internet += 1;
        Some(circuit)
    }

    /// Builds the UDP packet carrying a DNS `answer` from `resolver` back
    /// to `client` into `out`. `false` if it cannot be built.
    pub fn dns_answer(
        client: SocketAddr,
        resolver: SocketAddr,
        answer: &[u8],
        out: &mut Vec<u8>,
    ) -> bool {
        ip::build_udp(resolver, client, answer, out).is_ok()
    }

    /// `circuit` is gone: its pool address goes into quarantine, and is
    /// returned (if it had one) for the kernel to forget its flows.
    pub fn closed(&mut self, circuit: C) -> Option<Released> {
        self.nat.release(circuit)
    }

    /// The kernel has forgotten `released`'s flows: it may be leased again.
    pub fn reusable(&mut self, released: Released) {
        self.nat.reusable(released);
    }

    /// Pool addresses leased now.
    pub fn leased(&self) -> usize {
        self.nat.leased()
    }

    /// Pool addresses in quarantine now.
    pub fn quarantined(&self) -> usize {
        self.nat.quarantined()
    }
}

/// The client's inner address and the virtual resolver, in `like`'s family.
fn tunnel_addresses(like: IpAddr) -> (IpAddr, IpAddr) {
    if like.is_ipv4() {
        (ip::TUNNEL_CLIENT_V4.into(), ip::TUNNEL_RESOLVER_V4.into())
    } else {
        (ip::TUNNEL_CLIENT_V6.into(), ip::TUNNEL_RESOLVER_V6.into())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use std::net::Ipv4Addr;

    const OWN: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);

    fn engine() -> ExitEngine<u64> {
        let policy = ExitPolicy::new(vec![], vec![OWN.into()], vec!["reject 25".parse().unwrap()]);
        let nat = NatPool::new(
            "10.200.0.0/16".parse().unwrap(),
            Some("fd74:7265::/64".parse().unwrap()),
            100,
        );
        ExitEngine::new(policy, nat)
    }

    fn udp(src: IpAddr, dst: SocketAddr) -> Vec<u8> {
        let mut packet = Vec::new();
        ip::build_udp(SocketAddr::new(src, 40_000), dst, b"payload", &mut packet).unwrap();
        packet
    }

    fn client4() -> IpAddr {
        ip::TUNNEL_CLIENT_V4.into()
    }

    #[test]
    fn a_packet_out_gets_the_circuits_pool_address_and_its_reply_comes_back() {
        let mut exit = engine();
        let web: SocketAddr = "198.18.0.4:7000".parse().unwrap();
        let mut packet = udp(client4(), web);
        let mut reply = Vec::new();
        assert_eq!(exit.outbound(7, &mut packet, &mut reply), Outbound::Tun);
        let out = ip::parse(&packet).unwrap();
        assert_eq!(out.src, "10.200.0.2".parse::<IpAddr>().unwrap());
        assert!(ip::transport_checksum_ok(&packet).unwrap());

        let mut answer = Vec::new();
        ip::build_udp(
            web,
            SocketAddr::new(out.src, 40_000),
            b"answer",
            &mut answer,
        )
        .unwrap();
        assert_eq!(exit.inbound(&mut answer), Some(7));
        assert_eq!(ip::parse(&answer).unwrap().dst, client4());
        assert!(ip::transport_checksum_ok(&answer).unwrap());

        let released = exit.closed(7).unwrap();
        assert_eq!(released.addresses()[0], out.src);
        assert_eq!(exit.quarantined(), 1);
        let mut late = Vec::new();
        ip::build_udp(web, SocketAddr::new(out.src, 40_000), b"late", &mut late).unwrap();
        assert_eq!(
            exit.inbound(&mut late),
            None,
            "closed circuit keeps no address"
        );
        assert_eq!(exit.stats.unmatched, 1);
    }

    #[test]
    fn spoofed_and_malformed_packets_are_dropped_and_counted() {
        let mut exit = engine();
        let mut reply = Vec::new();
        let mut spoofed = udp("172.22.0.9".parse().unwrap(), "1.1.1.1:53".parse().unwrap());
        assert_eq!(
            exit.outbound(1, &mut spoofed, &mut reply),
            Outbound::Dropped(ExitDrop::Spoofed)
        );
        let mut garbage = vec![0x45, 0, 0];
        assert_eq!(
            exit.outbound(1, &mut garbage, &mut reply),
            Outbound::Dropped(ExitDrop::Malformed)
        );
        assert_eq!((exit.stats.spoofed, exit.stats.malformed), (1, 1));
        assert_eq!(exit.leased(), 0);
    }

    #[test]
    fn refusals_answer_with_icmp_prohibited_and_lease_nothing() {
        let mut exit = engine();
        let mut reply = Vec::new();
        for (dst, refusal) in [
            ("127.0.0.1:80", Refusal::Reserved),
            ("169.254.169.254:80", Refusal::Reserved),
            ("203.0.113.9:22", Refusal::OwnAddress),
            ("1.1.1.1:25", Refusal::Port),
        ] {
            let dst: SocketAddr = dst.parse().unwrap();
            let mut packet = udp(client4(), dst);
            assert_eq!(
                exit.outbound(1, &mut packet, &mut reply),
                Outbound::Refused(refusal)
            );
            let icmp = ip::parse(&reply).unwrap();
            assert_eq!((icmp.src, icmp.dst), (dst.ip(), client4()));
            assert_eq!(icmp.protocol, ip::proto::ICMP);
        }
        assert_eq!(exit.leased(), 0);
        assert_eq!(exit.stats.refused_reserved, 2);

        // GRE is not on the default allowlist: refused as a protocol.
        let mut gre = udp(client4(), "1.1.1.1:80".parse().unwrap());
        gre[9] = 47;
        assert_eq!(
            exit.outbound(1, &mut gre, &mut reply),
            Outbound::Refused(Refusal::Protocol)
        );
        assert_eq!(ip::parse(&reply).unwrap().protocol, ip::proto::ICMP);
        let stats = &exit.stats;
        assert_eq!(
            (
                stats.refused_own,
                stats.refused_port,
                stats.refused_protocol
            ),
            (1, 1, 1)
        );
        assert_eq!(exit.leased(), 0);
    }

    #[test]
    fn dns_to_the_virtual_resolver_is_handed_out_and_answered() {
        let mut exit = engine();
        let mut reply = Vec::new();
        let resolver = SocketAddr::new(ip::TUNNEL_RESOLVER_V4.into(), 53);
        let mut query = udp(client4(), resolver);
        let Outbound::Dns {
            query: range,
            client,
            resolver: asked,
        } = exit.outbound(3, &mut query, &mut reply)
        else {
            panic!("not treated as DNS");
        };
        assert_eq!(&query[range], b"payload");
        assert_eq!(
            (client, asked),
            (SocketAddr::new(client4(), 40_000), resolver)
        );
        let mut answer = Vec::new();
        assert!(ExitEngine::<u64>::dns_answer(
            client,
            asked,
            b"answer",
            &mut answer
        ));
        let info = ip::parse(&answer).unwrap();
        assert_eq!(
            (info.src, info.dst, info.src_port),
            (resolver.ip(), client4(), Some(53))
        );

        // Anything else to the resolver address is refused.
        let mut other = udp(client4(), SocketAddr::new(resolver.ip(), 80));
        assert_eq!(
            exit.outbound(3, &mut other, &mut reply),
            Outbound::Refused(Refusal::Reserved)
        );
    }
}
