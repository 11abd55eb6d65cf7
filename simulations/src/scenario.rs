//! The scenario: what network, clients, adversary and time span a run
//! simulates. Read from strict TOML (unknown keys are refused) and written
//! back, resolved, next to every run's results.

mod relays;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use trine_directory::guards::MAX_STORED_GUARDS;
use trine_directory::{Cidr, GuardParams};

use crate::error::SimError;

pub use relays::{
    Bandwidth, Churn, GeneratedRelays, ImportFormat, ImportSpec, RelaySource, RelaySpec,
};

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
    /// Network links the adversary watches as well (optional).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<LinkSpec>,
}

/// Links a link adversary watches: any traffic between an address in
/// `between` and one in `and`, either way. Of a circuit it can see the
/// client–guard link and the exit–destination link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    /// Prefixes on one side (`"198.51.100.0/24"`, `"2001:db8::/32"`).
    pub between: Vec<String>,
    /// Prefixes on the other side.
    pub and: Vec<String>,
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

/// The clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSpec {
    /// Number of clients.
    pub count: u32,
    /// New circuits per hour per client (a Poisson process).
    pub circuits_per_hour: f64,
    /// Each client arrives at a uniformly drawn time in the first this many
    /// days (0, the default: every client is there from the start).
    #[serde(default)]
    pub arrive_over_days: f64,
    /// Each client leaves for good after an exponentially drawn stay with
    /// this mean, in days; absent: it stays to the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean_stay_days: Option<f64>,
    /// The clients' guard settings, as in the client's `GuardParams`.
    #[serde(default)]
    pub guards: GuardSpec,
    /// Where clients are: each gets an address drawn from one of these
    /// prefixes (chosen uniformly); needed for link adversaries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefixes: Vec<String>,
    /// Where circuits go: each circuit's destination is drawn likewise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destinations: Vec<String>,
}

/// Guard settings of every client (the shipped defaults unless given).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuardSpec {
    /// Usable sampled guards the client tops up to.
    pub sample_size: u32,
    /// Most sampled guards held, usable or not.
    pub max_sampled: u32,
    /// How many of the first usable sampled guards are primary.
    pub primary_count: u32,
    /// Shortest lifetime of a sampled guard, days.
    pub min_lifetime_days: f64,
    /// Longest lifetime of a sampled guard, days.
    pub max_lifetime_days: f64,
}

impl Default for GuardSpec {
    fn default() -> Self {
        let params = GuardParams::default();
        let days = |seconds: u64| seconds as f64 / 86_400.0;
        Self {
            // The defaults are small; the casts cannot truncate.
            sample_size: params.sample_size as u32,
            max_sampled: params.max_sampled as u32,
            primary_count: params.primary_count as u32,
            min_lifetime_days: days(params.min_lifetime),
            max_lifetime_days: days(params.max_lifetime),
        }
    }
}

impl GuardSpec {
    /// The client's guard parameters with these settings (retry delays as
    /// shipped: the simulator has no failing relays).
    pub fn params(&self) -> GuardParams {
        let seconds = |days: f64| (days * 86_400.0).round() as u64;
        GuardParams {
            sample_size: self.sample_size as usize,
            max_sampled: self.max_sampled as usize,
            primary_count: self.primary_count as usize,
            min_lifetime: seconds(self.min_lifetime_days),
            max_lifetime: seconds(self.max_lifetime_days),
            ..GuardParams::default()
        }
    }

    fn check(&self) -> Result<(), SimError> {
        at_least_one("clients.guards.sample_size", self.sample_size)?;
        at_least_one("clients.guards.primary_count", self.primary_count)?;
        if self.max_sampled < self.sample_size || self.max_sampled as usize > MAX_STORED_GUARDS {
            return invalid(
                "clients.guards.max_sampled",
                &format!("must be between sample_size and {MAX_STORED_GUARDS}"),
            );
        }
        if self.primary_count > self.sample_size {
            return invalid(
                "clients.guards.primary_count",
                "must be at most sample_size",
            );
        }
        positive("clients.guards.min_lifetime_days", self.min_lifetime_days)?;
        positive("clients.guards.max_lifetime_days", self.max_lifetime_days)?;
        if self.max_lifetime_days < self.min_lifetime_days {
            return invalid(
                "clients.guards.max_lifetime_days",
                "must be at least min_lifetime_days",
            );
        }
        Ok(())
    }
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
    /// A uniformly chosen fraction of the initial honest relays (generated
    /// or imported) is the adversary's (they keep their flags and
    /// bandwidth).
    Existing {
        /// The fraction, in [0, 1].
        fraction: f64,
    },
    /// Initial relays taken in a random order (from the network's stream)
    /// until they hold at least these shares of the guard- and
    /// exit-position weight of the first consensus, then each given back
    /// if the targets stay met without it (see `docs/simulator.md`).
    Bandwidth {
        /// Share of guard-position weight, in [0, 1].
        guard_share: f64,
        /// Share of exit-position weight, in [0, 1].
        exit_share: f64,
    },
    /// The listed initial relays: by nickname (imported: the document's;
    /// generated: `relay0`, `relay1`, … in generation order), by full
    /// fingerprint (64 hex digits) or by the first 20 bytes of the
    /// identity (40 hex digits: a Tor relay's fingerprint).
    Chosen {
        /// The relays, each matching exactly one relay.
        relays: Vec<String>,
    },
}

/// The scenario `trine-sim example` prints, with comments.
pub const EXAMPLE: &str = r#"# trine-sim scenario (Engine 1: path security).
# Every key is required unless marked optional; unknown keys are refused.

[time]
days = 7.0              # length of the run
consensus_hours = 1.0   # a new consensus (with churn applied) this often

[relays]
# source = "generated"  # optional, the default: draw relays as below. Or import
#                       # a real network (then only path and [relays.churn]):
# source = "tor"        # a Tor network-status consensus (text), or
# source = "trine-json" # the output of `trine-dir show --json`, with
# path = "cached-consensus"  # relative to this file's directory
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

[relays.churn]          # Poisson joins and leaves of honest relays (imported:
                        # a join copies a random imported relay, new identity)
join_per_day = 5.0
leave_per_day = 5.0
# down_share = 0.02     # optional: each honest relay is unreachable in a
                        # consensus period with this probability; circuits
                        # through it fail and clients mark a down guard

[clients]
count = 200
circuits_per_hour = 6.0 # Poisson; one circuit every 10 minutes on average
# arrive_over_days = 0.0   # optional: arrivals uniform over the first N days
# mean_stay_days = 30.0    # optional: exponential stay, then the client leaves

# prefixes = ["100.64.0.0/10"]   # optional: client addresses, and ...
# destinations = ["93.184.0.0/16", "151.101.0.0/16"]  # ... circuit destinations
#                          # (both needed by [[links]] below)

# [clients.guards]         # optional: the client's guard settings (defaults
# sample_size = 20         # as shipped)
# max_sampled = 40
# primary_count = 3
# min_lifetime_days = 60.0
# max_lifetime_days = 120.0

[adversary]
kind = "added"          # new relays bought with a bandwidth budget
relays = 10
bandwidth = 300000      # total, same unit as relays.bandwidth
guard_fraction = 0.5    # share of budget and relays run as guards; rest exits
subnets = 10
# or: kind = "existing", fraction = 0.05  (that share of the initial honest
#     relays, generated or imported)
# or: kind = "bandwidth", guard_share = 0.1, exit_share = 0.1  (initial relays
#     taken at random until they hold at least these shares of guard- and
#     exit-position weight; no relay more than needed)
# or: kind = "chosen", relays = ["relay0", "relay17"]  (exactly these initial
#     relays, by nickname or 64-hex fingerprint; generated relays are named
#     relay0, relay1, ... in generation order, imported ones as the document
#     names them, and a Tor relay also by its 40-hex fingerprint)

# [[links]]               # optional, repeatable: links the adversary also
# between = ["100.64.0.0/10"]   # watches (traffic between the two sides,
# and = ["0.0.0.0/0"]           # either way): here every client's link to
#                               # its guard. A circuit is compromised when the
#                               # adversary sees both ends: its guard or the
#                               # client-guard link, and its exit or the
#                               # exit-destination link.
"#;

impl Scenario {
    /// Parses and checks a scenario.
    pub fn from_toml(text: &str) -> Result<Self, SimError> {
        let scenario: Self = toml::from_str(text)?;
        scenario.check()?;
        Ok(scenario)
    }

    /// Reads and checks the scenario file at `path`, and resolves a
    /// relative import path against the file's directory, then makes it
    /// absolute, so the resolved scenario written next to the results
    /// names the same file from anywhere.
    pub fn from_file(path: &Path) -> Result<Self, SimError> {
        let mut scenario = Self::from_toml(&read_text(path)?)?;
        if let RelaySource::Imported(import) = &mut scenario.relays.source {
            import.path = resolve_beside(path, &import.path)?;
        }
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
        if let RelaySource::Generated(generated) = &self.relays.source {
            check_generated(generated)?;
        }
        non_negative("relays.churn.join_per_day", self.relays.churn.join_per_day)?;
        non_negative(
            "relays.churn.leave_per_day",
            self.relays.churn.leave_per_day,
        )?;
        fraction("relays.churn.down_share", self.relays.churn.down_share)?;
        if self.relays.churn.down_share >= 1.0 {
            invalid("relays.churn.down_share", "must be below 1")?;
        }
        at_least_one("clients.count", self.clients.count)?;
        positive("clients.circuits_per_hour", self.clients.circuits_per_hour)?;
        non_negative("clients.arrive_over_days", self.clients.arrive_over_days)?;
        if self.clients.arrive_over_days > self.time.days {
            invalid("clients.arrive_over_days", "must be at most time.days")?;
        }
        if let Some(stay) = self.clients.mean_stay_days {
            positive("clients.mean_stay_days", stay)?;
        }
        self.clients.guards.check()?;
        prefixes("clients.prefixes", &self.clients.prefixes)?;
        prefixes("clients.destinations", &self.clients.destinations)?;
        for link in &self.links {
            if prefixes("links.between", &link.between)?.is_empty() {
                invalid("links.between", "must name at least one prefix")?;
            }
            if prefixes("links.and", &link.and)?.is_empty() {
                invalid("links.and", "must name at least one prefix")?;
            }
        }
        if !self.links.is_empty() {
            if self.clients.prefixes.is_empty() {
                invalid(
                    "clients.prefixes",
                    "a link adversary needs the clients' prefixes",
                )?;
            }
            if self.clients.destinations.is_empty() {
                invalid(
                    "clients.destinations",
                    "a link adversary needs the destinations",
                )?;
            }
        }
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
            AdversarySpec::Bandwidth {
                guard_share,
                exit_share,
            } => {
                fraction("adversary.guard_share", guard_share)?;
                fraction("adversary.exit_share", exit_share)?;
            }
            // Checked against the network when the run starts.
            AdversarySpec::Chosen { .. } => {}
        }
        Ok(())
    }
}

/// `relative` resolved against the directory of the file `beside`, made
/// absolute (a path already absolute stays as it is).
pub(crate) fn resolve_beside(beside: &Path, relative: &Path) -> Result<PathBuf, SimError> {
    let base = beside.parent().unwrap_or(Path::new(""));
    let joined = base.join(relative);
    std::path::absolute(&joined).map_err(|source| SimError::Io {
        path: joined.clone(),
        source,
    })
}

pub(crate) fn check_generated(generated: &GeneratedRelays) -> Result<(), SimError> {
    fraction("relays.guard_share", generated.guard_share)?;
    fraction("relays.exit_share", generated.exit_share)?;
    at_least_one("relays.subnets", generated.subnets)?;
    if u64::from(generated.families) * u64::from(generated.family_size) > u64::from(generated.count)
    {
        return invalid("relays.families", "families × family_size exceeds count");
    }
    match generated.bandwidth {
        Bandwidth::Lognormal { mu, sigma } => {
            finite("relays.bandwidth.mu", mu)?;
            non_negative("relays.bandwidth.sigma", sigma)
        }
        Bandwidth::Pareto { scale, shape } => {
            positive("relays.bandwidth.scale", scale)?;
            positive("relays.bandwidth.shape", shape)
        }
        Bandwidth::Constant { .. } => Ok(()),
    }
}

/// The text of the scenario file at `path`.
pub(crate) fn read_text(path: &Path) -> Result<String, SimError> {
    std::fs::read_to_string(path).map_err(|source| SimError::Io {
        path: path.to_owned(),
        source,
    })
}

/// The prefixes of a scenario list, each checked; an error names the list
/// and the entry.
pub fn prefixes(field: &'static str, texts: &[String]) -> Result<Vec<Cidr>, SimError> {
    texts
        .iter()
        .enumerate()
        .map(|(index, text)| {
            text.parse::<Cidr>().map_err(|reason| SimError::Invalid {
                field,
                reason: format!("entry {index}: {reason}"),
            })
        })
        .collect()
}

pub(crate) fn invalid(field: &'static str, reason: &str) -> Result<(), SimError> {
    Err(SimError::Invalid {
        field,
        reason: reason.to_owned(),
    })
}

pub(crate) fn finite(field: &'static str, value: f64) -> Result<(), SimError> {
    if value.is_finite() {
        Ok(())
    } else {
        invalid(field, "must be a finite number")
    }
}

pub(crate) fn non_negative(field: &'static str, value: f64) -> Result<(), SimError> {
    finite(field, value)?;
    if value >= 0.0 {
        Ok(())
    } else {
        invalid(field, "must not be negative")
    }
}

pub(crate) fn positive(field: &'static str, value: f64) -> Result<(), SimError> {
    finite(field, value)?;
    if value > 0.0 {
        Ok(())
    } else {
        invalid(field, "must be positive")
    }
}

pub(crate) fn fraction(field: &'static str, value: f64) -> Result<(), SimError> {
    non_negative(field, value)?;
    if value <= 1.0 {
        Ok(())
    } else {
        invalid(field, "must be at most 1")
    }
}

pub(crate) fn at_least_one(field: &'static str, value: u32) -> Result<(), SimError> {
    if value >= 1 {
        Ok(())
    } else {
        invalid(field, "must be at least 1")
    }
}
