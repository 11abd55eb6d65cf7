//! The scenario: what network, clients, adversary and time span a run
//! simulates. Read from strict TOML (unknown keys are refused) and written
//! back, resolved, next to every run's results.

use serde::{Deserialize, Serialize};

use crate::error::SimError;

/// A whole scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Simulated time.
    pub time: TimeSpec,
    /// The honest relays.
    pub relays: RelaySpec,
    /// The clients.
    pub clients: ClientSpec,
    /// The adversary's relays.
    pub adversary: AdversarySpec,
}

/// Simulated time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeSpec {
    /// Length of the run, days.
    pub days: f64,
    /// A new consensus every this many hours.
    pub consensus_hours: f64,
}

/// How the honest relays are generated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelaySpec {
    /// Relays at the start.
    pub count: u32,
    /// Probability that a relay has the Guard flag.
    pub guard_share: f64,
    /// Probability that a relay has the Exit flag (and a general policy).
    pub exit_share: f64,
    /// Number of distinct IPv4 /16 prefixes the relays are spread over.
    pub subnets: u32,
    /// Number of families (operators declaring several relays).
    pub families: u32,
    /// Relays in each family.
    pub family_size: u32,
    /// Bandwidth distribution (consensus weight, KB/s).
    pub bandwidth: Bandwidth,
    /// Relays joining and leaving.
    pub churn: Churn,
}

/// A bandwidth distribution. Draws are rounded and at least 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Bandwidth {
    /// `exp(N(mu, sigma^2))`.
    Lognormal {
        /// Mean of the logarithm.
        mu: f64,
        /// Standard deviation of the logarithm.
        sigma: f64,
    },
    /// Pareto with minimum `scale` and tail index `shape`.
    Pareto {
        /// The smallest value.
        scale: f64,
        /// The tail index (larger: lighter tail).
        shape: f64,
    },
    /// Every relay the same.
    Constant {
        /// The value.
        value: u64,
    },
}

/// Relay churn, as Poisson processes. New relays draw flags and bandwidth
/// like the initial ones; leaving relays are chosen uniformly among the
/// honest relays.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Churn {
    /// Relays joining per day.
    pub join_per_day: f64,
    /// Relays leaving per day.
    pub leave_per_day: f64,
}

/// The clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSpec {
    /// Number of clients, all present for the whole span.
    pub count: u32,
    /// New circuits per hour per client (a Poisson process).
    pub circuits_per_hour: f64,
}

/// The adversary's relays. They never leave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum AdversarySpec {
    /// New relays bought with a bandwidth budget, split between guards
    /// (Guard flag only) and exits (Exit flag only).
    Added {
        /// Number of new relays (at least 2 when both fractions are used).
        relays: u32,
        /// Total bandwidth, same unit as the honest relays.
        bandwidth: u64,
        /// Share of the budget and relays given to guards; the rest are exits.
        guard_fraction: f64,
        /// Number of /16 prefixes the adversary's relays are spread over.
        subnets: u32,
    },
    /// A uniformly chosen fraction of the initial honest relays is the
    /// adversary's (they keep their flags and bandwidth).
    Existing {
        /// The fraction, in [0, 1].
        fraction: f64,
    },
}

/// The scenario `trine-sim example` prints, with comments.
pub const EXAMPLE: &str = r#"# trine-sim scenario (Engine 1: path security).
# Every key is required; unknown keys are refused.

[time]
days = 7.0              # length of the run
consensus_hours = 1.0   # a new consensus (with churn applied) this often

[relays]
count = 500             # honest relays at the start
guard_share = 0.4       # probability of the Guard flag
exit_share = 0.2        # probability of the Exit flag (independent of Guard)
subnets = 300           # relays spread uniformly over this many IPv4 /16s
families = 20           # operators declaring several relays ...
family_size = 3         # ... of this many relays each

[relays.bandwidth]      # consensus weight, KB/s
kind = "lognormal"      # or: kind = "pareto", scale = 100.0, shape = 1.5
mu = 8.0                #     kind = "constant", value = 1000
sigma = 1.2

[relays.churn]          # Poisson joins and leaves of honest relays
join_per_day = 5.0
leave_per_day = 5.0

[clients]
count = 200
circuits_per_hour = 6.0 # Poisson; one circuit every 10 minutes on average

[adversary]
kind = "added"          # new relays bought with a bandwidth budget
relays = 10
bandwidth = 300000      # total, same unit as relays.bandwidth
guard_fraction = 0.5    # share of budget and relays run as guards; rest exits
subnets = 10
# or: kind = "existing", fraction = 0.05  (that share of honest relays)
"#;

impl Scenario {
    /// Parses and checks a scenario.
    pub fn from_toml(text: &str) -> Result<Self, SimError> {
        let scenario: Self = toml::from_str(text)?;
        scenario.check()?;
        Ok(scenario)
    }

    /// The resolved scenario as TOML.
    pub fn to_toml(&self) -> Result<String, SimError> {
        Ok(toml::to_string(self)?)
    }

    /// Refuses values no run can use.
    pub fn check(&self) -> Result<(), SimError> {
        positive("time.days", self.time.days)?;
        positive("time.consensus_hours", self.time.consensus_hours)?;
        fraction("relays.guard_share", self.relays.guard_share)?;
        fraction("relays.exit_share", self.relays.exit_share)?;
        at_least_one("relays.subnets", self.relays.subnets)?;
        if u64::from(self.relays.families) * u64::from(self.relays.family_size)
            > u64::from(self.relays.count)
        {
            return invalid("relays.families", "families × family_size exceeds count");
        }
        non_negative("relays.churn.join_per_day", self.relays.churn.join_per_day)?;
        non_negative(
            "relays.churn.leave_per_day",
            self.relays.churn.leave_per_day,
        )?;
        match self.relays.bandwidth {
            Bandwidth::Lognormal { mu, sigma } => {
                finite("relays.bandwidth.mu", mu)?;
                non_negative("relays.bandwidth.sigma", sigma)?;
            }
            Bandwidth::Pareto { scale, shape } => {
                positive("relays.bandwidth.scale", scale)?;
                positive("relays.bandwidth.shape", shape)?;
            }
            Bandwidth::Constant { .. } => {}
        }
        at_least_one("clients.count", self.clients.count)?;
        positive("clients.circuits_per_hour", self.clients.circuits_per_hour)?;
        match self.adversary {
            AdversarySpec::Added {
                guard_fraction,
                subnets,
                ..
            } => {
                fraction("adversary.guard_fraction", guard_fraction)?;
                at_least_one("adversary.subnets", subnets)?;
            }
            AdversarySpec::Existing { fraction: share } => fraction("adversary.fraction", share)?,
        }
        Ok(())
    }
}

fn invalid(field: &'static str, reason: &str) -> Result<(), SimError> {
    Err(SimError::Invalid {
        field,
        reason: reason.to_owned(),
    })
}

fn finite(field: &'static str, value: f64) -> Result<(), SimError> {
    if value.is_finite() {
        Ok(())
    } else {
        invalid(field, "must be a finite number")
    }
}

fn non_negative(field: &'static str, value: f64) -> Result<(), SimError> {
    finite(field, value)?;
    if value >= 0.0 {
        Ok(())
    } else {
        invalid(field, "must not be negative")
    }
}

fn positive(field: &'static str, value: f64) -> Result<(), SimError> {
    finite(field, value)?;
    if value > 0.0 {
        Ok(())
    } else {
        invalid(field, "must be positive")
    }
}

fn fraction(field: &'static str, value: f64) -> Result<(), SimError> {
    non_negative(field, value)?;
    if value <= 1.0 {
        Ok(())
    } else {
        invalid(field, "must be at most 1")
    }
}

fn at_least_one(field: &'static str, value: u32) -> Result<(), SimError> {
    if value >= 1 {
        Ok(())
    } else {
        invalid(field, "must be at least 1")
    }
}
