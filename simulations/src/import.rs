//! Importing the honest relay population from a consensus document: a
//! Tor network-status consensus (text), the JSON of `trine-dir show
//! --json`, or a binary Trine consensus. Documents are untrusted input: anything malformed is a typed
//! [`ImportError`] saying where, never a panic.

mod tor;
mod trine_binary;
mod trine_json;

use trine_directory::Candidate;

use crate::error::SimError;
use crate::scenario::{ImportFormat, ImportSpec};

pub use tor::{parse_tor, tor_relay_id};
pub use trine_binary::parse_trine;
pub use trine_json::parse_trine_json;

/// One imported relay: its nickname and what path selection needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedRelay {
    /// The nickname the document gives it.
    pub nickname: String,
    /// The relay as path selection sees it. Only a binary Trine consensus
    /// carries families; relays from the other formats declare none.
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
    /// A binary document does not decode as a Trine consensus.
    #[error("not a Trine consensus: {0}")]
    Binary(String),
    /// A JSON document is valid JSON but a field is missing or wrong.
    #[error("{field}: {reason}")]
    Field {
        /// Where, as a path such as `relays[3].identity`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Parses a document of `format`. In the text formats, bytes that are not
/// UTF-8 are replaced (and then refused if they are in a line that
/// matters).
pub fn parse(format: ImportFormat, bytes: &[u8]) -> Result<Vec<ImportedRelay>, ImportError> {
    match format {
        ImportFormat::Tor => parse_tor(&String::from_utf8_lossy(bytes)),
        ImportFormat::TrineJson => parse_trine_json(&String::from_utf8_lossy(bytes)),
        ImportFormat::Trine => parse_trine(bytes),
    }
}

/// Reads and parses the document a scenario names.
pub fn load(spec: &ImportSpec) -> Result<Vec<ImportedRelay>, SimError> {
    let bytes = std::fs::read(&spec.path).map_err(|source| SimError::Io {
        path: spec.path.clone(),
        source,
    })?;
    parse(spec.format, &bytes).map_err(|source| SimError::Import {
        path: spec.path.clone(),
        source,
    })
}
