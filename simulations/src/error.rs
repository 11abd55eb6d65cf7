//! Typed errors of the simulator.

use std::path::PathBuf;

/// Why a scenario could not be read or a run could not finish.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The scenario file is not valid TOML or does not match the format
    /// (unknown keys are refused, naming the field).
    #[error("scenario: {0}")]
    Parse(#[from] toml::de::Error),
    /// The scenario parses but a value is out of range.
    #[error("scenario: {field}: {reason}")]
    Invalid {
        /// The offending field, as a dotted TOML path.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The adversary cannot be placed on the actual network: a chosen
    /// relay that matches no relay or several, or a share of weight in a
    /// position the network has no weight in.
    #[error("scenario: {field}: {reason}")]
    Adversary {
        /// The offending field or entry, such as `adversary.exit_share` or
        /// `adversary.relays[2]`.
        field: String,
        /// What is wrong with it (naming the entry).
        reason: String,
    },
    /// The resolved scenario could not be written back as TOML.
    #[error("cannot write the resolved scenario: {0}")]
    Serialize(#[from] toml::ser::Error),
    /// A relay population could not be imported from its document.
    #[error("importing relays from {path}: {source}")]
    Import {
        /// The document.
        path: PathBuf,
        /// What is wrong with it.
        source: crate::import::ImportError,
    },
    /// A network graph (GML) could not be read.
    #[error("network graph {path}: {source}")]
    Graph {
        /// The graph file.
        path: PathBuf,
        /// What is wrong with it (naming the line).
        source: crate::perf::GraphError,
    },
    /// Reading the scenario or writing an output failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The plot font could not be read or is not a font.
    #[error("plot font {path}: {reason}")]
    Font {
        /// The font file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A figure could not be drawn or written.
    #[error("plot {path}: {reason}")]
    Plot {
        /// The figure's file.
        path: PathBuf,
        /// What the drawing backend or encoder reported.
        reason: String,
    },
    /// The same table of runs with different seeds does not line up
    /// (another grid or other columns), so it cannot be aggregated.
    #[error("table {table}: the seeds' grids or columns differ")]
    Unaligned {
        /// The table's name.
        table: &'static str,
    },
}
