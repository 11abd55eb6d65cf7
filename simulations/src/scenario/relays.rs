//! The scenario's `[relays]` table: where the honest relays come from
//! (generated from distributions, the default, or imported from a
//! consensus document) and their churn. Read through a flat table of
//! optional keys so that each source accepts exactly its own keys.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The honest relays: their source and churn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawRelays", into = "RawRelays")]
pub struct RelaySpec {
    /// Where the initial honest relays come from.
    pub source: RelaySource,
    /// Relays joining and leaving.
    pub churn: Churn,
}

/// Where the initial honest relays come from.
#[derive(Debug, Clone, PartialEq)]
pub enum RelaySource {
    /// Drawn from distributions (`source = "generated"`, the default).
    Generated(GeneratedRelays),
    /// Read from a consensus document.
    Imported(ImportSpec),
}

/// How the honest relays are generated.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedRelays {
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
}

/// A consensus document to import the honest relays from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportSpec {
    /// Its format.
    pub format: ImportFormat,
    /// The file. Relative paths are resolved against the scenario file's
    /// directory by [`crate::Scenario::from_file`].
    pub path: PathBuf,
}

/// The formats a relay population can be imported from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImportFormat {
    /// A Tor network-status consensus, text (`source = "tor"`).
    Tor,
    /// The JSON of `trine-dir show --json` (`source = "trine-json"`).
    TrineJson,
    /// A Trine consensus document, binary, as authorities publish it and
    /// clients cache it (`source = "trine"`).
    Trine,
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

/// Relay churn, as Poisson processes. Generated relays join drawn like
/// the initial ones; with an imported population a join copies a
/// uniformly chosen imported relay under a new identity. Leaving relays
/// are chosen uniformly among the honest relays.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Churn {
    /// Relays joining per day.
    pub join_per_day: f64,
    /// Relays leaving per day.
    pub leave_per_day: f64,
    /// In each consensus period, each honest relay is unreachable with
    /// this probability, independently, while the consensus still lists
    /// it (a circuit through it fails); 0 (the default) for none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub down_share: f64,
}

fn is_zero(value: &f64) -> bool {
    *value == 0.0
}

/// The `source` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum SourceName {
    Generated,
    Tor,
    TrineJson,
    Trine,
}

/// `[relays]` as written: every key of every source, checked against the
/// source on conversion. Field order is the order keys are written back.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRelays {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source: Option<SourceName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    path: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    guard_share: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exit_share: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subnets: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    families: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    family_size: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bandwidth: Option<Bandwidth>,
    churn: Churn,
}

impl TryFrom<RawRelays> for RelaySpec {
    type Error = String;

    fn try_from(raw: RawRelays) -> Result<Self, String> {
        let source = match raw.source.unwrap_or(SourceName::Generated) {
            SourceName::Generated => {
                if raw.path.is_some() {
                    return Err(not_for("path", "generated"));
                }
                RelaySource::Generated(GeneratedRelays {
                    count: required(raw.count, "count")?,
                    guard_share: required(raw.guard_share, "guard_share")?,
                    exit_share: required(raw.exit_share, "exit_share")?,
                    subnets: required(raw.subnets, "subnets")?,
                    families: required(raw.families, "families")?,
                    family_size: required(raw.family_size, "family_size")?,
                    bandwidth: required(raw.bandwidth, "bandwidth")?,
                })
            }
            name @ (SourceName::Tor | SourceName::TrineJson | SourceName::Trine) => {
                let (format, label) = match name {
                    SourceName::Tor => (ImportFormat::Tor, "tor"),
                    SourceName::Trine => (ImportFormat::Trine, "trine"),
                    _ => (ImportFormat::TrineJson, "trine-json"),
                };
                let generation_keys = [
                    ("count", raw.count.is_some()),
                    ("guard_share", raw.guard_share.is_some()),
                    ("exit_share", raw.exit_share.is_some()),
                    ("subnets", raw.subnets.is_some()),
                    ("families", raw.families.is_some()),
                    ("family_size", raw.family_size.is_some()),
                    ("bandwidth", raw.bandwidth.is_some()),
                ];
                if let Some((key, _)) = generation_keys.iter().find(|(_, given)| *given) {
                    return Err(not_for(key, label));
                }
                let Some(path) = raw.path else {
                    return Err(format!(
                        "missing field `path` (required with source = \"{label}\")"
                    ));
                };
                RelaySource::Imported(ImportSpec { format, path })
            }
        };
        Ok(Self {
            source,
            churn: raw.churn,
        })
    }
}

impl From<RelaySpec> for RawRelays {
    fn from(spec: RelaySpec) -> Self {
        let mut raw = Self {
            source: None,
            path: None,
            count: None,
            guard_share: None,
            exit_share: None,
            subnets: None,
            families: None,
            family_size: None,
            bandwidth: None,
            churn: spec.churn,
        };
        match spec.source {
            RelaySource::Generated(generated) => {
                raw.count = Some(generated.count);
                raw.guard_share = Some(generated.guard_share);
                raw.exit_share = Some(generated.exit_share);
                raw.subnets = Some(generated.subnets);
                raw.families = Some(generated.families);
                raw.family_size = Some(generated.family_size);
                raw.bandwidth = Some(generated.bandwidth);
            }
            RelaySource::Imported(import) => {
                raw.source = Some(match import.format {
                    ImportFormat::Tor => SourceName::Tor,
                    ImportFormat::TrineJson => SourceName::TrineJson,
                    ImportFormat::Trine => SourceName::Trine,
                });
                raw.path = Some(import.path);
            }
        }
        raw
    }
}

fn required<T>(value: Option<T>, key: &str) -> Result<T, String> {
    value.ok_or_else(|| {
        format!("missing field `{key}` (required with source = \"generated\", the default)")
    })
}

fn not_for(key: &str, source: &str) -> String {
    format!("field `{key}` does not apply to source = \"{source}\"")
}
