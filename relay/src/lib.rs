//! The Trine relay as a library: the `trine-relay` binary is a thin CLI over
//! it. Public are the configuration, the keys and the daemon, so that a
//! test can run a real relay in-process or, through [`daemon::ExitTap`], an
//! exit whose operator changed it (an adversarial test's hostile exit).

mod cellqueue;
pub mod config;
pub mod daemon;
mod directory;
mod exit;
mod extend;
mod fetch;
pub mod keys;
mod limits;
mod metrics;
mod peers;
