//! The consensus a node holds, kept on disk so a restart does not have to
//! wait for the directory: loaded (and verified again) at start, replaced
//! only by a consensus that verifies and is not older, written atomically.
//! Relays and clients use the same store.

use std::path::{Path, PathBuf};

use trine_directory::{AuthoritySet, DirError, UnverifiedConsensus, VerifiedConsensus};

/// A verified consensus and the file it is cached in.
#[derive(Debug)]
pub struct ConsensusStore {
    path: PathBuf,
    held: Option<VerifiedConsensus>,
}

impl ConsensusStore {
    /// Opens the cache at `path`, keeping its consensus if it still
    /// verifies at `now`; a missing, damaged or expired file is ignored.
    pub fn open(path: &Path, authorities: &AuthoritySet, now: u64) -> Self {
        let held = std::fs::read(path).ok().and_then(|bytes| {
            UnverifiedConsensus::from_bytes(&bytes)
                .and_then(|consensus| consensus.verify(authorities, now, None))
                .ok()
        });
        Self {
            path: path.to_path_buf(),
            held,
        }
    }

    /// A store at `path` holding nothing (and not reading the file).
    pub fn empty(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            held: None,
        }
    }

    /// The consensus held, if any.
    pub fn held(&self) -> Option<&VerifiedConsensus> {
        self.held.as_ref()
    }

    /// Offers `bytes`: kept (and written to disk) if it verifies at `now`
    /// and is not older than the one held. Returns whether it is new; on
    /// error the held consensus stays.
    pub fn offer(
        &mut self,
        bytes: &[u8],
        authorities: &AuthoritySet,
        now: u64,
    ) -> Result<bool, DirError> {
        let consensus =
            UnverifiedConsensus::from_bytes(bytes)?.verify(authorities, now, self.held.as_ref())?;
        Ok(self.replace(consensus))
    }

    /// Keeps an already verified `consensus` (it must have been verified
    /// against the held one). Returns whether it is new.
    pub fn replace(&mut self, consensus: VerifiedConsensus) -> bool {
        let new = self.held.as_ref().map(VerifiedConsensus::digest) != Some(consensus.digest());
        if new {
            let temporary = self.path.with_extension("tmp");
            let written = std::fs::write(&temporary, consensus.to_bytes())
                .and_then(|()| std::fs::rename(&temporary, &self.path));
            if let Err(error) = written {
                tracing::warn!(path = %self.path.display(), %error, "cannot cache the consensus");
            }
        }
        self.held = Some(consensus);
        new
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use trine_circuit::IdentityKey;
    use trine_directory::{ComputeParams, Consensus, NetParams, Period, Vote, compute};

    fn consensus(key: &IdentityKey, valid_after: u64) -> Vec<u8> {
        let period = Period {
            valid_after,
            fresh_until: valid_after + 60,
            valid_until: valid_after + 180,
        };
        let vote = Vote::new(period, NetParams::default(), Vec::new())
            .unwrap()
            .sign(key);
        let params = ComputeParams {
            valid_after,
            min_votes: 1,
        };
        let body = compute(&[vote], &params).unwrap();
        let signature = body.sign(key);
        Consensus::new(body).with_signatures([signature]).to_bytes()
    }

    #[test]
    fn newer_consensus_is_kept_and_cached_older_or_garbage_is_refused() {
        let key = IdentityKey::generate(&mut rand::rngs::OsRng);
        let authorities = AuthoritySet::new([key.relay_id()], 1).unwrap();
        let dir = std::env::temp_dir().join(format!("trine-cache-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cached-consensus");
        let _ = std::fs::remove_file(&path);
        let now = 1_000_000;

        let mut store = ConsensusStore::open(&path, &authorities, now);
        assert!(store.held().is_none());
        assert!(
            store
                .offer(&consensus(&key, now), &authorities, now)
                .unwrap()
        );
        assert!(
            !store
                .offer(&consensus(&key, now), &authorities, now)
                .unwrap(),
            "same one again"
        );
        let held = store.held().unwrap().digest().to_owned();

        // Older: a rollback, refused; garbage too; the held one stays.
        assert!(matches!(
            store.offer(&consensus(&key, now - 60), &authorities, now),
            Err(DirError::Rollback { .. })
        ));
        assert!(store.offer(b"garbage", &authorities, now).is_err());
        assert_eq!(store.held().unwrap().digest(), &held);

        // A restart finds it on disk, verified again; once expired, not.
        let reopened = ConsensusStore::open(&path, &authorities, now + 10);
        assert_eq!(reopened.held().unwrap().digest(), &held);
        assert!(
            ConsensusStore::open(&path, &authorities, now + 10_000)
                .held()
                .is_none()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
