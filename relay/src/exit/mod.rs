//! Exit mode: clients' IP packets out to the internet and the answers back.
//! [`engine`] decides (policy, NAT pool, DNS) without I/O; [`system`] owns
//! the TUN device and the nftables table, [`conntrack`] the kernel's
//! memory of released pool addresses' flows; the daemon moves the bytes.

pub mod conntrack;
pub mod dns;
pub mod engine;
pub mod nat;
pub mod policy;
pub mod runtime;
pub mod system;
