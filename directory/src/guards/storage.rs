//! The persisted form of a [`GuardState`]: what the client writes to disk
//! between runs, and the checks that refuse anything else.
//!
//! Layout: the 8-byte magic `TRINEGRD`, one version byte (1), then the
//! sampled guards in order as a [`trine_circuit::codec`] list of
//! `(id, added_at, expires_at, listed_usable, failures, retry_at,
//! last_success_at)`. The parameters are configuration, not state, and are
//! not stored.

use std::collections::HashSet;

use trine_circuit::RelayId;
use trine_circuit::codec::{self, CodecError};

use super::{GuardEntry, GuardParams, GuardState};

/// Most guards a stored state may hold.
pub const MAX_STORED_GUARDS: usize = 1024;

const MAGIC: [u8; 8] = *b"TRINEGRD";
const VERSION: u8 = 1;
const HEADER_LEN: usize = MAGIC.len() + 1;
/// Generous bound on the body: every entry is under 80 bytes.
const MAX_BODY_LEN: usize = 8 + MAX_STORED_GUARDS * 80;

/// One [`GuardEntry`] as stored, fields in declaration order.
type StoredEntry = (RelayId, u64, u64, bool, u32, Option<u64>, Option<u64>);

/// Why stored bytes are not a guard state this build can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardStateError {
    /// The bytes do not start with the guard-state magic.
    #[error("not a Trine guard state")]
    NotGuardState,
    /// A version this build does not read.
    #[error("guard state version {found} is not supported (this build reads {supported})")]
    UnsupportedVersion {
        /// The version in the bytes.
        found: u8,
        /// The version this build reads.
        supported: u8,
    },
    /// The body is not a valid encoding.
    #[error("malformed guard state: {0}")]
    Malformed(#[from] CodecError),
    /// More guards than any state holds.
    #[error("guard state holds {count} guards, limit is {limit}")]
    TooManyGuards {
        /// Guards in the bytes.
        count: usize,
        /// [`MAX_STORED_GUARDS`].
        limit: usize,
    },
    /// One relay sampled twice.
    #[error("guard {0} is listed twice")]
    DuplicateGuard(RelayId),
    /// A guard that expires before it was added.
    #[error("guard {0} expires before it was added")]
    ExpiresBeforeAdded(RelayId),
}

impl GuardState {
    /// The bytes to persist; [`Self::from_bytes`] reads them back.
    pub fn to_bytes(&self) -> Vec<u8> {
        let stored: Vec<StoredEntry> = self.sampled.iter().map(to_stored).collect();
        let mut bytes = Vec::with_capacity(HEADER_LEN + 64 * stored.len());
        bytes.extend_from_slice(&MAGIC);
        bytes.push(VERSION);
        codec::encode_into(&stored, &mut bytes);
        bytes
    }

    /// Reads persisted bytes back, with `params` as the configuration.
    /// Untrusted input: anything but a well-formed state of this version is
    /// refused with a [`GuardStateError`].
    pub fn from_bytes(bytes: &[u8], params: GuardParams) -> Result<Self, GuardStateError> {
        let (magic, rest) = bytes
            .split_first_chunk::<8>()
            .ok_or(GuardStateError::NotGuardState)?;
        if *magic != MAGIC {
            return Err(GuardStateError::NotGuardState);
        }
        let (&version, body) = rest.split_first().ok_or(GuardStateError::NotGuardState)?;
        if version != VERSION {
            return Err(GuardStateError::UnsupportedVersion {
                found: version,
                supported: VERSION,
            });
        }
        let stored: Vec<StoredEntry> = codec::decode(body, MAX_BODY_LEN)?;
        if stored.len() > MAX_STORED_GUARDS {
            return Err(GuardStateError::TooManyGuards {
                count: stored.len(),
                limit: MAX_STORED_GUARDS,
            });
        }
        let mut seen = HashSet::with_capacity(stored.len());
        let mut sampled = Vec::with_capacity(stored.len());
        for entry in stored.into_iter().map(from_stored) {
            if !seen.insert(entry.id) {
                return Err(GuardStateError::DuplicateGuard(entry.id));
            }
            if entry.expires_at < entry.added_at {
                return Err(GuardStateError::ExpiresBeforeAdded(entry.id));
            }
            sampled.push(entry);
        }
        Ok(Self {
            params,
            sampled,
            reconciled: None,
            revision: 0,
        })
    }
}

fn to_stored(entry: &GuardEntry) -> StoredEntry {
    (
        entry.id,
        entry.added_at,
        entry.expires_at,
        entry.listed_usable,
        entry.failures,
        entry.retry_at,
        entry.last_success_at,
    )
}

fn from_stored(stored: StoredEntry) -> GuardEntry {
    let (id, added_at, expires_at, listed_usable, failures, retry_at, last_success_at) = stored;
    GuardEntry {
        id,
        added_at,
        expires_at,
        listed_usable,
        failures,
        retry_at,
        last_success_at,
    }
}
