//! [`AuthoritySet`]: the directory authorities a node trusts (their Ed25519
//! keys) and how many of them must sign a consensus.

use trine_circuit::RelayId;

/// Why an authority set was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthoritySetError {
    /// The threshold is 0 or larger than the number of distinct keys.
    #[error("threshold {threshold} impossible with {authorities} distinct authority keys")]
    BadThreshold {
        /// Threshold asked for.
        threshold: usize,
        /// Distinct keys given.
        authorities: usize,
    },
}

/// The configured authorities and the signing threshold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthoritySet {
    keys: Vec<RelayId>,
    threshold: usize,
}

impl AuthoritySet {
    /// The set of `keys` (duplicates dropped) with `threshold` signatures
    /// needed; `threshold` must be between 1 and the number of distinct
    /// keys. A strict majority (2 of 3) is the usual choice: any smaller
    /// threshold lets a minority of authorities sign a consensus alone.
    pub fn new(
        keys: impl IntoIterator<Item = RelayId>,
        threshold: usize,
    ) -> Result<Self, AuthoritySetError> {
        let mut keys: Vec<RelayId> = keys.into_iter().collect();
        keys.sort_unstable();
        keys.dedup();
        if threshold == 0 || threshold > keys.len() {
            return Err(AuthoritySetError::BadThreshold {
                threshold,
                authorities: keys.len(),
            });
        }
        Ok(Self { keys, threshold })
    }

    /// The keys, ascending.
    pub fn keys(&self) -> &[RelayId] {
        &self.keys
    }

    /// Valid signatures needed.
    pub fn threshold(&self) -> usize {
        self.threshold
    }

    /// Whether `key` is one of the authorities.
    pub fn contains(&self, key: &RelayId) -> bool {
        self.keys.binary_search(key).is_ok()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn threshold_must_be_between_one_and_the_distinct_keys() {
        let a = RelayId::from_bytes([1; 32]);
        let b = RelayId::from_bytes([2; 32]);
        assert!(AuthoritySet::new([a, b], 2).is_ok());
        assert_eq!(
            AuthoritySet::new([a, a], 2),
            Err(AuthoritySetError::BadThreshold {
                threshold: 2,
                authorities: 1
            })
        );
        assert!(AuthoritySet::new([a, b], 0).is_err());
        let set = AuthoritySet::new([b, a], 1).unwrap();
        assert_eq!(set.keys(), &[a, b]);
        assert!(set.contains(&a) && !set.contains(&RelayId::from_bytes([3; 32])));
    }
}
