//! One authority's state, without I/O: the descriptors it accepted, what it
//! observed of each relay, the votes of the period being decided, the
//! consensus it computed and the signatures gathered for it. The daemon
//! feeds it requests and the clock; every decision is made here.
//!
//! A period of `interval` seconds starts at each multiple of it. For the
//! period starting at `V`: the authority votes at `V - interval/2`,
//! computes and signs the consensus at `V - interval/4` from the votes it
//! holds (a majority of the authorities needed), and from then serves the
//! newest consensus that carries the threshold of signatures.

use std::collections::BTreeMap;
use std::sync::Arc;

use trine_circuit::{IdentityKey, RelayId};
use trine_directory::{
    AuthoritySet, AuthoritySignature, ComputeParams, Consensus, DescriptorRules, Digest, NetParams,
    Observation, Period, SignedDescriptor, SignedVote, UnverifiedConsensus, UnverifiedDescriptor,
    UnverifiedVote, Vote, VoteEntry, assign_flags, compute,
};

/// Bandwidth assumed for a relay that reports none, bytes/s. Authorities do
/// not measure bandwidth yet: they take the relay's reported `observed`.
pub const UNMEASURED_BANDWIDTH: u64 = 50_000;

/// Most descriptors an authority holds: anyone can make an identity, so
/// uploads of new ones are refused beyond this.
pub const MAX_DESCRIPTORS: usize = 50_000;

/// What the authority knows about one relay.
#[derive(Debug, Clone)]
struct Known {
    descriptor: SignedDescriptor,
    reachable: bool,
    reachable_since: Option<u64>,
}

/// The authority.
pub struct AuthorityState {
    key: IdentityKey,
    authorities: AuthoritySet,
    interval: u64,
    params: NetParams,
    descriptors: BTreeMap<RelayId, Known>,
    votes: BTreeMap<u64, BTreeMap<RelayId, SignedVote>>,
    consensus: BTreeMap<u64, Consensus>,
    /// Signatures that arrived before this authority's own consensus for
    /// their period: one per (period, authority), so bounded.
    early_signatures: BTreeMap<(u64, RelayId), (Digest, AuthoritySignature)>,
    /// What `Consensus` requests are answered with, kept encoded so a
    /// request costs a copy, not a verification.
    served: Option<(Period, Arc<Vec<u8>>)>,
}

impl AuthorityState {
    /// An authority signing with `key`, one of `authorities`.
    pub fn new(
        key: IdentityKey,
        authorities: AuthoritySet,
        interval: u64,
        params: NetParams,
    ) -> Self {
        Self {
            key,
            authorities,
            interval,
            params,
            descriptors: BTreeMap::new(),
            votes: BTreeMap::new(),
            consensus: BTreeMap::new(),
            early_signatures: BTreeMap::new(),
            served: None,
        }
    }

    /// This authority's key.
    pub fn id(&self) -> RelayId {
        self.key.relay_id()
    }

    /// Start of the next period after `now`.
    pub fn next_period(&self, now: u64) -> u64 {
        (now / self.interval + 1) * self.interval
    }

    /// When to vote for the period starting at `valid_after`.
    pub fn vote_time(&self, valid_after: u64) -> u64 {
        valid_after - self.interval / 2
    }

    /// When to compute the consensus for the period starting at `valid_after`.
    pub fn compute_time(&self, valid_after: u64) -> u64 {
        valid_after - self.interval / 4
    }

    fn period(&self, valid_after: u64) -> Period {
        Period {
            valid_after,
            fresh_until: valid_after + self.interval,
            valid_until: valid_after + 3 * self.interval,
        }
    }

    /// A relay uploads its descriptor. Kept if it verifies and is newer
    /// than the one held.
    pub fn accept_descriptor(&mut self, bytes: &[u8], now: u64) -> Result<RelayId, String> {
        let descriptor = UnverifiedDescriptor::from_bytes(bytes)
            .map_err(|error| error.to_string())?
            .verify(now, &DescriptorRules::default())
            .map_err(|error| error.to_string())?;
        let id = descriptor.identity();
        let published = descriptor.descriptor().published;
        if self.descriptors.len() >= MAX_DESCRIPTORS && !self.descriptors.contains_key(&id) {
            self.evict_one_unreachable();
        }
        let full = self.descriptors.len() >= MAX_DESCRIPTORS;
        match self.descriptors.get_mut(&id) {
            Some(known) if known.descriptor.descriptor().published >= published => Err(format!(
                "a descriptor published at {} or later is held",
                known.descriptor.descriptor().published
            )),
            Some(known) => {
                known.descriptor = descriptor;
                Ok(id)
            }
            None if full => Err(format!(
                "this authority holds {MAX_DESCRIPTORS} descriptors already"
            )),
            None => {
                self.descriptors.insert(
                    id,
                    Known {
                        descriptor,
                        reachable: false,
                        reachable_since: None,
                    },
                );
                Ok(id)
            }
        }
    }

    /// Makes room by forgetting the never-reachable relay with the oldest
    /// descriptor, so made-up identities cannot lock real relays out.
    fn evict_one_unreachable(&mut self) {
        let victim = self
            .descriptors
            .iter()
            .filter(|(_, known)| known.reachable_since.is_none())
            .min_by_key(|(_, known)| known.descriptor.descriptor().published)
            .map(|(id, _)| *id);
        if let Some(victim) = victim {
            self.descriptors.remove(&victim);
        }
    }

    /// Relays to test for reachability: identity and addresses.
    pub fn reachability_targets(&self) -> Vec<(RelayId, Vec<std::net::SocketAddr>)> {
        self.descriptors
            .iter()
            .map(|(id, known)| (*id, known.descriptor.descriptor().addresses.clone()))
            .collect()
    }

    /// Records a reachability test's result.
    pub fn record_reachability(&mut self, id: &RelayId, reachable: bool, now: u64) {
        if let Some(known) = self.descriptors.get_mut(id) {
            known.reachable = reachable;
            known.reachable_since = match (reachable, known.reachable_since) {
                (true, Some(since)) => Some(since),
                (true, None) => Some(now),
                (false, _) => None,
            };
        }
    }

    /// Whether this authority has voted for `valid_after`.
    pub fn has_voted(&self, valid_after: u64) -> bool {
        self.votes
            .get(&valid_after)
            .is_some_and(|votes| votes.contains_key(&self.id()))
    }

    /// Makes, keeps and returns this authority's vote for `valid_after`:
    /// every descriptor still valid at `now`, with flags from what was
    /// observed.
    pub fn vote(&mut self, valid_after: u64, now: u64) -> Result<SignedVote, String> {
        let rules = DescriptorRules::default();
        self.descriptors.retain(|_, known| {
            now.saturating_sub(known.descriptor.descriptor().published) <= rules.max_age_secs
        });
        let entries = self
            .descriptors
            .values()
            .map(|known| {
                let reported = known.descriptor.descriptor().bandwidth.observed;
                let observation = Observation {
                    reachable: known.reachable,
                    uptime_secs: known
                        .reachable_since
                        .map_or(0, |since| now.saturating_sub(since)),
                    measured_bandwidth: if reported > 0 {
                        reported
                    } else {
                        UNMEASURED_BANDWIDTH
                    },
                };
                let flags = assign_flags(&known.descriptor, &observation, &self.params);
                let weight =
                    trine_directory::assign::effective_bandwidth(&known.descriptor, &observation);
                VoteEntry::new(&known.descriptor, flags, weight)
            })
            .collect();
        let vote = Vote::new(self.period(valid_after), self.params, entries)
            .map_err(|error| error.to_string())?
            .sign(&self.key);
        let me = self.id();
        self.votes
            .entry(valid_after)
            .or_default()
            .insert(me, vote.clone());
        Ok(vote)
    }

    /// Another authority's vote.
    pub fn accept_vote(&mut self, bytes: &[u8], now: u64) -> Result<(), String> {
        let vote = UnverifiedVote::from_bytes(bytes)
            .map_err(|error| error.to_string())?
            .verify(&self.authorities)
            .map_err(|error| error.to_string())?;
        let valid_after = vote.vote().period().valid_after;
        if valid_after != self.next_period(now)
            && valid_after != self.next_period(now) + self.interval
        {
            return Err(format!(
                "vote for valid_after {valid_after} is not for the coming period"
            ));
        }
        self.votes
            .entry(valid_after)
            .or_default()
            .insert(vote.authority(), vote);
        Ok(())
    }

    /// Whether the consensus for `valid_after` was computed.
    pub fn has_computed(&self, valid_after: u64) -> bool {
        self.consensus.contains_key(&valid_after)
    }

    /// Computes and signs the consensus for `valid_after` from the votes
    /// held (at least a majority of the authorities). Returns the digest and
    /// this authority's signature, to send to the others.
    pub fn compute(&mut self, valid_after: u64) -> Result<(Digest, AuthoritySignature), String> {
        let votes: Vec<SignedVote> = self
            .votes
            .get(&valid_after)
            .map(|votes| votes.values().cloned().collect())
            .unwrap_or_default();
        let params = ComputeParams {
            valid_after,
            min_votes: self.authorities.keys().len() / 2 + 1,
        };
        let body = compute(&votes, &params).map_err(|error| error.to_string())?;
        let signature = body.sign(&self.key);
        let consensus = Consensus::new(body).with_signatures([signature]);
        let digest = *consensus.digest();
        let early: Vec<AuthoritySignature> = self
            .early_signatures
            .iter()
            .filter(|((period, _), (signed, _))| *period == valid_after && *signed == digest)
            .map(|(_, (_, signature))| *signature)
            .collect();
        self.consensus
            .insert(valid_after, consensus.with_signatures(early));
        Ok((digest, signature))
    }

    /// Another authority's signature on the consensus for `valid_after`.
    /// Kept if it verifies; held until this authority's own consensus for
    /// that period exists if it arrives first.
    pub fn accept_signature(
        &mut self,
        valid_after: u64,
        digest: Digest,
        signature: AuthoritySignature,
        now: u64,
    ) -> Result<(), String> {
        if !self.authorities.contains(&signature.authority) {
            return Err("signature by a key that is not an authority".into());
        }
        // Signatures do not cover `valid_after`: only the periods being
        // decided now are accepted, so replayed public signatures cannot
        // fill the store with made-up periods.
        let next = self.next_period(now);
        if valid_after + self.interval < next || valid_after > next + self.interval {
            return Err(format!(
                "signature for valid_after {valid_after} is not for a current period"
            ));
        }
        signature
            .verify(&digest)
            .map_err(|_| "signature does not verify".to_string())?;
        match self.consensus.remove(&valid_after) {
            Some(consensus) if *consensus.digest() == digest => {
                self.consensus
                    .insert(valid_after, consensus.with_signatures([signature]));
                Ok(())
            }
            Some(consensus) => {
                self.consensus.insert(valid_after, consensus);
                Err("signature over a different consensus than this authority computed".into())
            }
            None => {
                self.early_signatures
                    .insert((valid_after, signature.authority), (digest, signature));
                Ok(())
            }
        }
    }

    /// The newest consensus clients would accept at `now`, encoded, as last
    /// chosen by [`AuthorityState::refresh_served`].
    pub fn best_consensus(&self, now: u64) -> Option<Arc<Vec<u8>>> {
        let (period, bytes) = self.served.as_ref()?;
        (now < period.valid_until + trine_directory::CLOCK_SKEW_SECS).then(|| bytes.clone())
    }

    /// Chooses what to serve: the newest consensus that verifies at `now`
    /// with the threshold of signatures. Call it after a consensus or a
    /// signature was added, and now and then as time passes.
    pub fn refresh_served(&mut self, now: u64) {
        let best = self.consensus.values().rev().find_map(|consensus| {
            let bytes = consensus.to_bytes();
            UnverifiedConsensus::from_bytes(&bytes)
                .ok()?
                .verify(&self.authorities, now, None)
                .ok()
                .map(|verified| (*verified.period(), Arc::new(bytes)))
        });
        let newer = match (&best, &self.served) {
            (Some((period, _)), Some((served, _))) => period.valid_after >= served.valid_after,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if newer {
            self.served = best;
        }
    }

    /// Forgets votes, signatures and consensus documents no longer needed.
    pub fn prune(&mut self, now: u64) {
        let horizon = now.saturating_sub(3 * self.interval);
        self.votes.retain(|valid_after, _| *valid_after >= horizon);
        self.consensus
            .retain(|valid_after, _| *valid_after >= horizon);
        self.early_signatures
            .retain(|(valid_after, _), _| *valid_after >= horizon);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rand::rngs::OsRng;
    use trine_circuit::{OnionKeyCert, OnionSecretKey};
    use trine_directory::{Bandwidth, Descriptor, ExitSummary};

    const NOW: u64 = 1_000_000;

    fn descriptor(key: &IdentityKey, published: u64) -> Vec<u8> {
        let onion_key = OnionSecretKey::generate(&mut OsRng).public_key();
        Descriptor {
            identity: key.relay_id(),
            onion_key,
            onion_cert: OnionKeyCert::issue(key, onion_key, NOW + 86_400),
            addresses: vec![([198, 18, 0, 5], 9443).into()],
            nickname: "relay".into(),
            family: Vec::new(),
            bandwidth: Bandwidth::default(),
            exit: ExitSummary::REJECT_ALL,
            version: "test".into(),
            published,
        }
        .sign(key)
        .unwrap()
        .to_bytes()
    }

    fn authorities(n: usize) -> (Vec<IdentityKey>, AuthoritySet) {
        let keys: Vec<IdentityKey> = (0..n).map(|_| IdentityKey::generate(&mut OsRng)).collect();
        let set = AuthoritySet::new(keys.iter().map(IdentityKey::relay_id), n / 2 + 1).unwrap();
        (keys, set)
    }

    fn state(key: &IdentityKey, set: &AuthoritySet) -> AuthorityState {
        let key = IdentityKey::from_secret_bytes(&key.to_secret_bytes());
        AuthorityState::new(key, set.clone(), 60, NetParams::default())
    }

    #[test]
    fn only_newer_descriptors_replace_the_held_one() {
        let (keys, set) = authorities(1);
        let mut authority = state(&keys[0], &set);
        let relay = IdentityKey::generate(&mut OsRng);
        authority
            .accept_descriptor(&descriptor(&relay, NOW - 10), NOW)
            .unwrap();
        assert!(
            authority
                .accept_descriptor(&descriptor(&relay, NOW - 20), NOW)
                .is_err()
        );
        authority
            .accept_descriptor(&descriptor(&relay, NOW), NOW)
            .unwrap();
        assert!(authority.accept_descriptor(b"garbage", NOW).is_err());
        let forged = {
            let mut bytes = descriptor(&relay, NOW + 1);
            let last = bytes.len() - 1;
            bytes[last] ^= 1;
            bytes
        };
        assert!(authority.accept_descriptor(&forged, NOW).is_err());
    }

    #[test]
    fn two_of_three_make_a_consensus_and_early_or_foreign_signatures_are_handled() {
        let (keys, set) = authorities(3);
        let mut a = state(&keys[0], &set);
        let mut b = state(&keys[1], &set);
        let relay = IdentityKey::generate(&mut OsRng);
        for authority in [&mut a, &mut b] {
            authority
                .accept_descriptor(&descriptor(&relay, NOW), NOW)
                .unwrap();
            authority.record_reachability(&relay.relay_id(), true, NOW);
        }
        let valid_after = a.next_period(NOW);
        let vote_a = a.vote(valid_after, NOW).unwrap();
        let vote_b = b.vote(valid_after, NOW).unwrap();
        a.accept_vote(&vote_b.to_bytes(), NOW).unwrap();
        b.accept_vote(&vote_a.to_bytes(), NOW).unwrap();
        // b signs first; its signature reaches a before a computes.
        let (digest_b, signature_b) = b.compute(valid_after).unwrap();
        a.accept_signature(valid_after, digest_b, signature_b, NOW)
            .unwrap();
        assert!(
            a.best_consensus(valid_after).is_none(),
            "nothing computed yet"
        );
        let (digest_a, signature_a) = a.compute(valid_after).unwrap();
        assert_eq!(digest_a, digest_b, "same votes, same consensus");
        b.accept_signature(valid_after, digest_a, signature_a, NOW)
            .unwrap();
        for authority in [&mut a, &mut b] {
            authority.refresh_served(valid_after);
            let bytes = authority.best_consensus(valid_after).unwrap();
            let verified = UnverifiedConsensus::from_bytes(&bytes)
                .unwrap()
                .verify(&set, valid_after, None)
                .unwrap();
            assert_eq!(verified.signers().len(), 2);
            assert_eq!(verified.relays().len(), 1);
        }
        // A key outside the authority set cannot add a signature.
        let outsider = IdentityKey::generate(&mut OsRng);
        let foreign = AuthoritySignature::new(&digest_a, &outsider);
        assert!(
            a.accept_signature(valid_after, digest_a, foreign, NOW)
                .is_err()
        );
        // A real signature replayed for a made-up period is refused.
        assert!(
            b.accept_signature(valid_after + 1_000_000, digest_a, signature_a, NOW)
                .is_err()
        );
    }
}
