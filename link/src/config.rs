//! [`LinkConfig`]: the QUIC transport settings every Trine node shares, and
//! the [`quinn::TransportConfig`] built from them.

use std::sync::Arc;
use std::time::Duration;

use quinn::{IdleTimeout, MtuDiscoveryConfig, TransportConfig, VarInt};

use crate::error::LinkError;

/// The ALPN protocol id of Trine links. A peer that does not offer it is
/// refused during the handshake.
pub const ALPN: &[u8] = b"trine/1";

/// The default [`LinkConfig::initial_mtu`]: the largest UDP payload of a
/// 1500-byte path over IPv6 (1500 - 40 - 8), which leaves a QUIC datagram of
/// about 1414 bytes: a 1280-byte inner packet plus all onion overhead fits.
pub const DEFAULT_INITIAL_MTU: u16 = 1452;

/// QUIC's minimum (and quinn's default) UDP payload size.
const QUIC_MIN_MTU: u16 = 1200;

/// Transport settings for every link of an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkConfig {
    /// A link with no traffic (not even keep-alives) for this long is closed.
    pub idle_timeout: Duration,
    /// Send a keep-alive after this much silence; must be shorter than
    /// `idle_timeout`. `Duration::ZERO` turns keep-alives off.
    pub keep_alive: Duration,
    /// UDP payload size used from the start, before path-MTU discovery (which
    /// is always on) probes further. At least 1200. If the path cannot carry
    /// it, quinn's black-hole detection falls back to 1200.
    pub initial_mtu: u16,
    /// How many circuits (bidirectional streams) the peer may have open on
    /// one link at once (`max_concurrent_bidi_streams`). Opening more waits.
    pub max_circuits_per_link: u32,
    /// Bytes of datagrams buffered per link in each direction. When full,
    /// the oldest are dropped: data cells are unreliable on purpose.
    pub datagram_buffer: usize,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(30),
            keep_alive: Duration::from_secs(10),
            initial_mtu: DEFAULT_INITIAL_MTU,
            max_circuits_per_link: 1024,
            datagram_buffer: 2 * 1024 * 1024,
        }
    }
}

impl LinkConfig {
    /// Checks the values and builds quinn's transport configuration.
    pub(crate) fn transport(&self) -> Result<Arc<TransportConfig>, LinkError> {
        if self.idle_timeout.is_zero() {
            return Err(LinkError::InvalidConfig("idle_timeout must not be zero"));
        }
        if self.keep_alive >= self.idle_timeout {
            return Err(LinkError::InvalidConfig(
                "keep_alive must be shorter than idle_timeout",
            ));
        }
        if self.initial_mtu < QUIC_MIN_MTU {
            return Err(LinkError::InvalidConfig(
                "initial_mtu must be at least 1200 (QUIC's minimum)",
            ));
        }
        if self.max_circuits_per_link == 0 {
            return Err(LinkError::InvalidConfig(
                "max_circuits_per_link must be at least 1",
            ));
        }
        if self.datagram_buffer == 0 {
            return Err(LinkError::InvalidConfig("datagram_buffer must not be zero"));
        }
        let idle = IdleTimeout::try_from(self.idle_timeout)
            .map_err(|_| LinkError::InvalidConfig("idle_timeout is too long"))?;

        let mut mtu_discovery = MtuDiscoveryConfig::default();
        // Probe at least as high as we start, so discovery never caps us lower.
        mtu_discovery.upper_bound(self.initial_mtu.max(DEFAULT_INITIAL_MTU));

        let mut transport = TransportConfig::default();
        transport
            .max_idle_timeout(Some(idle))
            .keep_alive_interval((!self.keep_alive.is_zero()).then_some(self.keep_alive))
            .initial_mtu(self.initial_mtu)
            .mtu_discovery_config(Some(mtu_discovery))
            .max_concurrent_bidi_streams(VarInt::from_u32(self.max_circuits_per_link))
            // Trine uses no unidirectional streams.
            .max_concurrent_uni_streams(VarInt::from_u32(0))
            .datagram_receive_buffer_size(Some(self.datagram_buffer))
            .datagram_send_buffer_size(self.datagram_buffer);
        Ok(Arc::new(transport))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn default_is_valid_and_bad_values_are_refused() {
        LinkConfig::default().transport().unwrap();
        let bad = [
            LinkConfig {
                idle_timeout: Duration::ZERO,
                ..LinkConfig::default()
            },
            LinkConfig {
                keep_alive: Duration::from_secs(30),
                ..LinkConfig::default()
            },
            LinkConfig {
                initial_mtu: 1199,
                ..LinkConfig::default()
            },
            LinkConfig {
                max_circuits_per_link: 0,
                ..LinkConfig::default()
            },
            LinkConfig {
                datagram_buffer: 0,
                ..LinkConfig::default()
            },
        ];
        for config in bad {
            assert!(
                matches!(config.transport(), Err(LinkError::InvalidConfig(_))),
                "{config:?}"
            );
        }
        let no_keep_alive = LinkConfig {
            keep_alive: Duration::ZERO,
            ..LinkConfig::default()
        };
        no_keep_alive.transport().unwrap();
    }
}
