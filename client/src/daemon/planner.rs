//! What the client knows about the network and how it picks paths: the
//! verified consensus (cached on disk), the guard list (persisted), and
//! the shipped path selection over them. No I/O but the two state files.

use std::path::PathBuf;

use rand::rngs::OsRng;
use trine_circuit::{HopSpec, RelayId};
use trine_directory::path::{Candidate, PathConfig, PathError, PathIndex, select_path};
use trine_directory::{GuardParams, GuardState, RelayEntry, VerifiedConsensus};
use trine_node::cache::ConsensusStore;

use crate::config::Config;
use crate::control::{GuardInfo, Hop, RelayInfo};

/// A chosen path, ready to build.
#[derive(Debug, Clone)]
pub struct Chosen {
    /// Guard, middle, exit.
    pub hops: Vec<HopSpec>,
    /// The same relays for people.
    pub view: Vec<Hop>,
}

impl Chosen {
    /// The guard's identity.
    pub fn guard(&self) -> RelayId {
        self.hops[0].id
    }
}

/// Why no path could be chosen.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// No consensus that may still be used is held.
    #[error("no usable consensus yet")]
    NoConsensus,
    /// The consensus has no path that fits the rules.
    #[error("no path: {0}")]
    Path(#[from] PathError),
}

/// The consensus and guards.
pub struct Planner {
    store: ConsensusStore,
    guards: GuardState,
    guards_path: PathBuf,
    path_config: PathConfig,
}

impl Planner {
    /// Loads the cached consensus (if it still verifies) and the guards.
    pub fn open(config: &Config, now: u64) -> Self {
        let store = ConsensusStore::open(
            &config.state_dir.join("consensus.bin"),
            &config.authorities.set,
            now,
        );
        let guards_path = config.state_dir.join("guards.bin");
        let guards = std::fs::read(&guards_path)
            .ok()
            .and_then(
                |bytes| match GuardState::from_bytes(&bytes, GuardParams::default()) {
                    Ok(guards) => Some(guards),
                    Err(error) => {
                        tracing::warn!(%error, "ignoring a damaged guard file");
                        None
                    }
                },
            )
            .unwrap_or_else(|| GuardState::new(GuardParams::default()));
        Self {
            store,
            guards,
            guards_path,
            path_config: PathConfig {
                enforce_distinct_subnets: !config.allow_same_subnet,
            },
        }
    }

    /// The consensus held, if any.
    pub fn consensus(&self) -> Option<&VerifiedConsensus> {
        self.store.held()
    }

    /// Whether a consensus that may be used at `now` is held.
    pub fn usable(&self, now: u64) -> bool {
        self.store.held().is_some_and(|c| c.is_usable(now))
    }

    /// Whether a newer consensus should be fetched at `now`.
    pub fn wants_fresh(&self, now: u64) -> bool {
        !self.store.held().is_some_and(|c| c.is_fresh(now))
    }

    /// Keeps a consensus verified against the one held.
    pub fn accept(&mut self, consensus: VerifiedConsensus) {
        if self.store.replace(consensus) {
            tracing::info!("new consensus");
        }
    }

    /// Chooses a path, preferring a middle and an exit not in `avoid` (so
    /// a standby shares no relay but the guard with the active circuit,
    /// and a "new circuit" leaves from somewhere else, when the network
    /// allows).
    pub fn choose(&mut self, now: u64, avoid: &[RelayId]) -> Result<Chosen, PlanError> {
        let consensus = self
            .store
            .held()
            .filter(|c| c.is_usable(now))
            .ok_or(PlanError::NoConsensus)?;
        let index = PathIndex::new(consensus.relays().iter().map(Candidate::from).collect());
        // Up to 9 draws for a path clear of `avoid`; else the last one.
        let mut draws = 0;
        let path = loop {
            let path = select_path(&index, &mut self.guards, now, &mut OsRng, &self.path_config)?;
            draws += 1;
            let clear = !avoid.contains(&path.exit) && !avoid.contains(&path.middle);
            if clear || draws == 9 {
                break path;
            }
        };
        self.save_guards();
        let entries = [path.guard, path.middle, path.exit].map(|id| consensus.relay(&id));
        let mut hops = Vec::with_capacity(3);
        let mut view = Vec::with_capacity(3);
        for (entry, position) in entries.into_iter().zip(["guard", "middle", "exit"]) {
            // select_path only returns listed relays.
            let Some(entry) = entry else {
                return Err(PlanError::NoConsensus);
            };
            hops.push(HopSpec {
                id: entry.identity,
                onion_key: entry.onion_key,
                addresses: entry.addresses.clone(),
            });
            view.push(hop_view(entry, position));
        }
        Ok(Chosen { hops, view })
    }

    /// Records whether a circuit through `guard` got past it.
    pub fn guard_outcome(&mut self, guard: RelayId, reachable: bool, now: u64) {
        if reachable {
            self.guards.mark_succeeded(guard, now);
        } else {
            self.guards.mark_failed(guard, now);
        }
        self.save_guards();
    }

    /// Every relay of the consensus, for `trine relays`.
    pub fn relays(&self) -> Vec<RelayInfo> {
        let Some(consensus) = self.store.held() else {
            return Vec::new();
        };
        consensus
            .relays()
            .iter()
            .map(|entry| RelayInfo {
                nickname: entry.nickname.clone(),
                fingerprint: entry.identity.to_string(),
                addresses: entry.addresses.iter().map(ToString::to_string).collect(),
                flags: entry.flags.iter().map(|f| f.name().to_string()).collect(),
                weight: entry.weight,
            })
            .collect()
    }

    /// The guard list, for `trine guards`.
    pub fn guards(&self, now: u64) -> Vec<GuardInfo> {
        let usable: Vec<RelayId> = self.guards.usable(now).collect();
        self.guards
            .entries()
            .iter()
            .map(|entry| GuardInfo {
                fingerprint: entry.id.to_string(),
                nickname: self
                    .store
                    .held()
                    .and_then(|c| c.relay(&entry.id))
                    .map(|r| r.nickname.clone()),
                usable: usable.contains(&entry.id),
            })
            .collect()
    }

    fn save_guards(&self) {
        let temporary = self.guards_path.with_extension("tmp");
        let written = std::fs::write(&temporary, self.guards.to_bytes())
            .and_then(|()| std::fs::rename(&temporary, &self.guards_path));
        if let Err(error) = written {
            tracing::warn!(path = %self.guards_path.display(), %error, "cannot save the guards");
        }
    }
}

fn hop_view(entry: &RelayEntry, position: &str) -> Hop {
    Hop {
        position: position.to_string(),
        nickname: entry.nickname.clone(),
        fingerprint: entry.identity.to_string(),
        address: entry
            .addresses
            .first()
            .map(ToString::to_string)
            .unwrap_or_default(),
    }
}
