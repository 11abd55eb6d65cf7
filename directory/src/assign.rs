//! How an authority turns what it observed about a relay into the flags it
//! votes: the one place these rules live, for the `trine-dir` daemon and the
//! simulator alike.

use crate::descriptor::SignedDescriptor;
use crate::flags::{Flag, Flags};
use crate::params::NetParams;

/// Ports an exit must allow for the Exit flag (web traffic).
pub const EXIT_REQUIRED_PORTS: [u16; 2] = [80, 443];

/// What an authority measured about one relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Observation {
    /// The last reachability test (QUIC connection with identity check)
    /// succeeded.
    pub reachable: bool,
    /// How long the relay has been continuously reachable, seconds.
    pub uptime_secs: u64,
    /// Bandwidth the authority measured, bytes per second.
    pub measured_bandwidth: u64,
}

/// The flags an authority votes for a relay whose descriptor verified:
///
/// - **Valid**: always (the descriptor verified);
/// - **Running**: the last reachability test succeeded;
/// - **Fast**: effective bandwidth ≥ `fast_min_bandwidth`, where effective
///   bandwidth is the measurement capped at the relay's declared rate;
/// - **Stable**: uptime ≥ `stable_min_uptime_secs`;
/// - **Guard**: Fast, Stable, effective bandwidth ≥ `guard_min_bandwidth`
///   and uptime ≥ `guard_min_uptime_secs`;
/// - **Exit**: the exit summary allows ports 80 and 443.
///
/// An unreachable relay keeps its other flags; path selection requires
/// Running.
pub fn assign_flags(
    descriptor: &SignedDescriptor,
    observation: &Observation,
    params: &NetParams,
) -> Flags {
    let fields = descriptor.descriptor();
    let bandwidth = effective_bandwidth(descriptor, observation);
    let fast = bandwidth >= params.fast_min_bandwidth;
    let stable = observation.uptime_secs >= params.stable_min_uptime_secs;
    let guard = fast
        && stable
        && bandwidth >= params.guard_min_bandwidth
        && observation.uptime_secs >= params.guard_min_uptime_secs;
    let exit = EXIT_REQUIRED_PORTS
        .iter()
        .all(|port| fields.exit.allows_port(*port));
    [
        (Flag::Valid, true),
        (Flag::Running, observation.reachable),
        (Flag::Fast, fast),
        (Flag::Stable, stable),
        (Flag::Guard, guard),
        (Flag::Exit, exit),
    ]
    .into_iter()
    .filter_map(|(flag, set)| set.then_some(flag))
    .collect()
}

/// The measured bandwidth capped at the relay's declared rate: a relay is
/// never weighted above what its operator allows it to carry. (A declared
/// rate of 0 means "not limited".)
pub fn effective_bandwidth(descriptor: &SignedDescriptor, observation: &Observation) -> u64 {
    let rate = descriptor.descriptor().bandwidth.rate;
    if rate == 0 {
        observation.measured_bandwidth
    } else {
        observation.measured_bandwidth.min(rate)
    }
}
