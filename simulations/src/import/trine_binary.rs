//! Binary Trine consensus documents, as the authorities publish them and
//! clients cache them (`consensus.bin`). Decoded with the directory's own
//! decoder, which checks every format rule; the authorities' signatures are
//! not checked (a researcher's copy of a consensus, as `trine-dir show`
//! reads it). Unlike the JSON of `show`, the document carries the relays'
//! mutual families, and they are imported.

use trine_directory::{Candidate, UnverifiedConsensus};

use super::{ImportError, ImportedRelay};

/// Parses a binary Trine consensus.
pub fn parse_trine(bytes: &[u8]) -> Result<Vec<ImportedRelay>, ImportError> {
    if bytes.is_empty() {
        return Err(ImportError::Empty);
    }
    let consensus = UnverifiedConsensus::from_bytes(bytes)
        .map_err(|error| ImportError::Binary(error.to_string()))?;
    let relays: Vec<ImportedRelay> = consensus
        .inspect()
        .relays()
        .iter()
        .map(|entry| ImportedRelay {
            nickname: entry.nickname.clone(),
            relay: Candidate::from(entry),
        })
        .collect();
    if relays.is_empty() {
        return Err(ImportError::NoRelays);
    }
    Ok(relays)
}
