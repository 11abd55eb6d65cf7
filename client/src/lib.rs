//! The Trine desktop client: the root daemon (TUN device, policy routing,
//! kill switch, DNS, circuit manager), its control protocol, and the
//! configuration. The `trine` binary is the CLI over [`control`]; the
//! desktop app uses the same [`control::ControlClient`].

pub mod config;
pub mod control;
#[cfg(target_os = "linux")]
pub mod daemon;
pub mod os;
