//! Linux: the kill switch is an nftables table fed to `nft -f -`; routes
//! and rules are applied with `ip` (whose output is never parsed: the
//! client knows what it owns by a fixed table number and rule
//! priorities); DNS by managing the resolver file; the daemon's socket is
//! marked with `SO_MARK`.

mod command;
pub mod dns;
pub mod killswitch;
pub mod routes;

pub use command::CommandError;
pub use dns::DnsError;
pub use killswitch::{KillSwitchError, KillSwitchSpec};
pub use routes::{RoutesError, RoutesSpec, TRINE_RULE_PRIORITY, TRINE_TABLE};

/// The firewall mark the daemon puts on its own QUIC socket (`SO_MARK`):
/// marked packets bypass the tunnel and are the only ones the kill switch
/// lets out to the guard. "tr" in ASCII.
pub const TRINE_FWMARK: u32 = 0x7472;

/// A UDP socket bound to `bind` whose packets carry `mark`, so policy
/// routing sends them around the tunnel and the kill switch lets them out.
pub fn marked_udp_socket(
    bind: std::net::SocketAddr,
    mark: u32,
) -> std::io::Result<std::net::UdpSocket> {
    let domain = socket2::Domain::for_address(bind);
    let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    socket.set_mark(mark)?;
    socket.bind(&bind.into())?;
    Ok(socket.into())
}
