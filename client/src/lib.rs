//! The Trine desktop client (issue 5). This first slice holds the
//! operating-system side only: the kill switch (one nftables table) and
//! wg-quick style policy routing into the tunnel device, both behind
//! [`os`] so other systems can follow. The daemon, DNS, circuit manager,
//! control API and the `trine` CLI come later.

pub mod os;
