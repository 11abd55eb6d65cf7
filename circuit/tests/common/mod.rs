//! Shared test fixtures: a deterministic network of relays and a client.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Instant;

use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use trine_circuit::memnet::MemNet;
use trine_circuit::{
    ClientCircuit, ClientConfig, ClientEvent, HopSpec, IdentityKey, OnionSecretKey, RelayConfig,
    RelayId, RelayTable,
};

pub type Net = MemNet<ChaCha20Rng>;

/// Keys for `n` relays, deterministic per seed.
pub struct Relays {
    pub identities: Vec<IdentityKey>,
    pub onion: Vec<[u8; 32]>,
}

impl Relays {
    pub fn new(n: usize, seed: u64) -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let identities = (0..n).map(|_| IdentityKey::generate(&mut rng)).collect();
        let onion = (0..n)
            .map(|_| *OnionSecretKey::generate(&mut rng).to_secret_bytes())
            .collect();
        Self { identities, onion }
    }

    pub fn ids(&self) -> Vec<RelayId> {
        self.identities.iter().map(IdentityKey::relay_id).collect()
    }

    pub fn hop(&self, index: usize) -> HopSpec {
        HopSpec {
            id: self.identities[index].relay_id(),
            onion_key: OnionSecretKey::from_secret_bytes(self.onion[index]).public_key(),
            addresses: vec![format!("198.18.0.{}:443", index + 1).parse().unwrap()],
        }
    }

    /// Relay tables; the last one is an exit.
    pub fn tables(&self, seed: u64) -> Vec<RelayTable<ChaCha20Rng>> {
        let n = self.identities.len();
        (0..n)
            .map(|i| {
                RelayTable::new(
                    self.identities[i].relay_id(),
                    vec![OnionSecretKey::from_secret_bytes(self.onion[i])],
                    RelayConfig {
                        exit: i == n - 1,
                        ..RelayConfig::default()
                    },
                    ChaCha20Rng::seed_from_u64(seed + i as u64),
                )
            })
            .collect()
    }
}

/// A network of `hops` relays and a client whose path is all of them, in
/// order; nothing delivered yet.
pub fn network(hops: usize, seed: u64, now: Instant) -> Net {
    let relays = Relays::new(hops, seed);
    let path = (0..hops).map(|i| relays.hop(i)).collect();
    let client = ClientCircuit::new(
        path,
        &ClientConfig::default(),
        now,
        &mut ChaCha20Rng::seed_from_u64(seed ^ 0xc11e),
    )
    .unwrap();
    MemNet::new(client, relays.tables(seed), relays.ids())
}

/// Drains the client's events.
pub fn events(net: &mut Net) -> Vec<ClientEvent> {
    std::iter::from_fn(|| net.client.poll_event()).collect()
}

/// A network whose circuit is built.
pub fn ready_network(hops: usize, seed: u64, now: Instant) -> Net {
    let mut net = network(hops, seed, now);
    net.run(now);
    let events = events(&mut net);
    assert_eq!(
        events.last(),
        Some(&ClientEvent::Ready),
        "{events:?} {:?}",
        net.drops
    );
    net
}

/// A packet whose bytes depend on `index`, of varying length (1..=1280).
pub fn packet(index: usize) -> Vec<u8> {
    let len = 1 + (index * 7919) % 1280;
    (0..len).map(|i| (i * 31 + index) as u8).collect()
}
