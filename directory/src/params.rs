//! Validity periods and network parameters: the numbers votes carry and the
//! consensus publishes, and the clock-skew allowance every time check uses.

use bincode::{Decode, Encode};

use crate::rules::FormatError;

/// Clock skew allowed in every time check, in seconds: a document is
/// accepted this long before its start and after its end, and a
/// descriptor may be published this far in the future.
pub const CLOCK_SKEW_SECS: u64 = 300;

/// When a vote or consensus applies, in UNIX seconds:
/// `valid_after < fresh_until <= valid_until`. A client uses a consensus
/// from `valid_after`, fetches a newer one from `fresh_until`, and stops
/// using it at `valid_until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub struct Period {
    /// Start of validity.
    pub valid_after: u64,
    /// After this a newer document should be fetched.
    pub fresh_until: u64,
    /// End of validity (exclusive).
    pub valid_until: u64,
}

impl Period {
    /// Checks `valid_after < fresh_until <= valid_until`.
    pub fn validate(&self) -> Result<(), FormatError> {
        if self.valid_after < self.fresh_until && self.fresh_until <= self.valid_until {
            Ok(())
        } else {
            Err(FormatError::BadPeriod {
                valid_after: self.valid_after,
                fresh_until: self.fresh_until,
                valid_until: self.valid_until,
            })
        }
    }
}

/// Thresholds for flags, and limits path selection relies on. Each
/// authority votes its own; the consensus takes the low median of each
/// field (see [`crate::compute`]). Bandwidths are bytes per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Encode, Decode)]
pub struct NetParams {
    /// Least bandwidth for the Fast flag.
    pub fast_min_bandwidth: u64,
    /// Least uptime for the Stable flag, seconds.
    pub stable_min_uptime_secs: u64,
    /// Least bandwidth for the Guard flag.
    pub guard_min_bandwidth: u64,
    /// Least uptime for the Guard flag, seconds.
    pub guard_min_uptime_secs: u64,
    /// Most relays the consensus lists on one IP address (at least 1).
    pub max_relays_per_ip: u32,
}

impl Default for NetParams {
    /// Fast from 100 kB/s; Stable after 1 day; Guard from 1 MB/s and 8
    /// days; 2 relays per IP.
    fn default() -> Self {
        Self {
            fast_min_bandwidth: 100_000,
            stable_min_uptime_secs: 86_400,
            guard_min_bandwidth: 1_000_000,
            guard_min_uptime_secs: 8 * 86_400,
            max_relays_per_ip: 2,
        }
    }
}

impl NetParams {
    /// Checks the ranges: `max_relays_per_ip` at least 1.
    pub fn validate(&self) -> Result<(), FormatError> {
        if self.max_relays_per_ip == 0 {
            return Err(FormatError::BadParam("max_relays_per_ip"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_must_be_ordered() {
        let period = |a, f, u| Period {
            valid_after: a,
            fresh_until: f,
            valid_until: u,
        };
        assert_eq!(period(10, 20, 30).validate(), Ok(()));
        assert_eq!(period(10, 20, 20).validate(), Ok(()));
        assert!(period(10, 10, 30).validate().is_err());
        assert!(period(10, 31, 30).validate().is_err());
    }

    #[test]
    fn zero_relays_per_ip_is_refused() {
        let params = NetParams {
            max_relays_per_ip: 0,
            ..NetParams::default()
        };
        assert_eq!(
            params.validate(),
            Err(FormatError::BadParam("max_relays_per_ip"))
        );
        assert_eq!(NetParams::default().validate(), Ok(()));
    }
}
