//! Linux: the kill switch is an nftables table fed to `nft -f -`; routes
//! and rules are applied with `ip` (whose output is never parsed: the
//! client knows what it owns by a fixed table number and rule
//! priorities).

mod command;
pub mod killswitch;
pub mod routes;

pub use command::CommandError;
pub use killswitch::{KillSwitchError, KillSwitchSpec};
pub use routes::{RoutesError, RoutesSpec, TRINE_RULE_PRIORITY, TRINE_TABLE};

/// The firewall mark the daemon puts on its own QUIC socket (`SO_MARK`):
/// marked packets bypass the tunnel and are the only ones the kill switch
/// lets out to the guard. "tr" in ASCII.
pub const TRINE_FWMARK: u32 = 0x7472;
