//! Everything the client does to the operating system, behind one module.
//! Only Linux exists so far; its items are re-exported here so callers
//! never name the platform.

#[cfg(target_os = "linux")]
pub mod linux;

#[cfg(target_os = "linux")]
pub use linux::{
    CommandError, DnsError, KillSwitchError, KillSwitchSpec, RoutesError, RoutesSpec, TRINE_FWMARK,
    TRINE_RULE_PRIORITY, TRINE_TABLE, dns, killswitch, marked_udp_socket, routes,
};
