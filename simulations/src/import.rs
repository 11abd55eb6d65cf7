//! Importing the honest relay population from a consensus document: a
//! Tor network-status consensus (text) or the JSON of `trine-dir show
//! --json`. Documents are untrusted input: anything malformed is a typed
//! [`ImportError`] saying where, never a panic.

mod tor;
mod trine_json;

use trine_directory::Candidate;

use crate::error::SimError;
use crate::scenario::{ImportFormat, ImportSpec};

pub use tor::{parse_tor, tor_relay_id};
pub use trine_json::parse_trine_json;

/// One imported relay: its nickname and what path selection needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedRelay {
    /// The nickname the document gives it.
    pub nickname: String,
    /// The relay as path selection sees it. Imported relays declare no
    /// family: neither format carries one.
    pub relay: Candidate,
}

/// Why a document could not be imported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    /// The document is empty (or only whitespace).
    #[error("the document is empty")]
    Empty,
    /// The document is well formed but lists no relay.
    #[error("the document lists no relays")]
    NoRelays,
    /// A line of a text document is malformed (lines count from 1).
    #[error("line {line}: {reason}")]
    Line {
        /// The offending line.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A JSON document is not valid JSON (lines and columns count from 1;
    /// columns in characters).
    #[error("line {line}, column {column}: {reason}")]
    Syntax {
        /// Line of the error.
        line: usize,
        /// Column of the error.
        column: usize,
        /// What is wrong.
        reason: String,
    },
    /// A JSON document is valid JSON but a field is missing or wrong.
    #[error("{field}: {reason}")]
    Field {
        /// Where, as a path such as `relays[3].identity`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Parses a document of `format`.
pub fn parse(format: ImportFormat, text: &str) -> Result<Vec<ImportedRelay>, ImportError> {
    match format {
        ImportFormat::Tor => parse_tor(text),
        ImportFormat::TrineJson => parse_trine_json(text),
    }
}

/// Reads and parses the document a scenario names. Bytes that are not
/// UTF-8 are replaced (and then refused if they are in a line that
/// matters).
pub fn load(spec: &ImportSpec) -> Result<Vec<ImportedRelay>, SimError> {
    let bytes = std::fs::read(&spec.path).map_err(|source| SimError::Io {
        path: spec.path.clone(),
        source,
    })?;
    parse(spec.format, &String::from_utf8_lossy(&bytes)).map_err(|source| SimError::Import {
        path: spec.path.clone(),
        source,
    })
}
