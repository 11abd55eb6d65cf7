//! The relay's part in the directory: it publishes its signed descriptor to
//! every authority (on start, after an onion-key rotation and every
//! `publish_every_secs`), fetches and verifies the consensus, and serves
//! it to anyone who asks over a link (a mirror), so clients fetch from
//! their guard rather than from the authorities. When it fetches is
//! `fetch.rs`'s decision.

use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Instant;

use tokio::sync::{Notify, watch};
use tracing::{debug, info, warn};
use trine_circuit::{OnionKeyCert, RelayId};
use trine_directory::wire::{DirRequest, DirResponse};
use trine_directory::{Bandwidth, Descriptor, ExitSummary, PortRange};
use trine_link::{CircuitStream, Endpoint};
use trine_node::authorities::Authorities;
use trine_node::cache::ConsensusStore;
use trine_node::dirclient::{ask, fetch_consensus, serve_exchange};

use crate::config::Config;
use crate::fetch::{FetchSchedule, Fetched};
use crate::keys::KeyStore;

/// The consensus this relay holds and serves (cached on disk).
pub type ConsensusCache = Arc<RwLock<ConsensusStore>>;

/// Where the consensus held in `cache` lists `identity` (`None`: not
/// listed, or none held).
pub fn listed_addresses(cache: &ConsensusCache, identity: &RelayId) -> Option<Vec<SocketAddr>> {
    cache
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .held()
        .and_then(|consensus| consensus.relay(identity))
        .map(|entry| entry.addresses.clone())
}

/// The software version published in descriptors.
const VERSION: &str = concat!("trine-relay ", env!("CARGO_PKG_VERSION"));

/// This relay's descriptor at `now`, signed, encoded.
pub fn descriptor(config: &Config, keys: &KeyStore, now: u64) -> anyhow::Result<Vec<u8>> {
    let onion_key = keys.onion.key.public_key();
    // Valid until the key is retired and its overlap ends.
    let expires = keys.onion.created + (config.onion_rotation + config.onion_overlap).as_secs();
    let (rate, burst) = config.bandwidth.unwrap_or((0, 0));
    let exit = if config.exit {
        let rejected = config
            .exit_settings
            .ports
            .iter()
            .filter(|rule| !rule.accept)
            .filter_map(|rule| PortRange::new(rule.low, rule.high))
            .collect();
        ExitSummary::new(true, rejected)
    } else {
        ExitSummary::REJECT_ALL
    };
    let descriptor = Descriptor {
        identity: keys.identity.relay_id(),
        onion_key,
        onion_cert: OnionKeyCert::issue(&keys.identity, onion_key, expires),
        addresses: config.advertise.clone(),
        nickname: config.nickname.clone(),
        family: Vec::new(),
        bandwidth: Bandwidth {
            rate,
            burst,
            observed: 0,
        },
        exit,
        version: VERSION.into(),
        published: now,
    };
    Ok(descriptor.sign(&keys.identity)?.to_bytes())
}

/// Publishes the current descriptor from `descriptors` and each new one
/// (the daemon re-signs it periodically and after key rotation), and keeps
/// `cache` up to date, for ever; `unlisted` is the daemon's hint that a
/// peer proved an identity the held consensus does not list.
pub async fn run(
    endpoint: Arc<Endpoint>,
    authorities: Authorities,
    mut descriptors: watch::Receiver<Vec<u8>>,
    cache: ConsensusCache,
    unlisted: Arc<Notify>,
    now: fn() -> u64,
) {
    let mut schedule = FetchSchedule::new(Instant::now());
    descriptors.mark_changed();
    loop {
        tokio::select! {
            changed = descriptors.changed() => {
                if changed.is_err() {
                    return;
                }
                let descriptor = descriptors.borrow_and_update().clone();
                publish_all(&endpoint, &authorities, descriptor).await;
            }
            () = unlisted.notified() => schedule.unlisted_peer(Instant::now()),
            () = tokio::time::sleep_until(schedule.next().into()) => {
                let held = cache.read().unwrap_or_else(PoisonError::into_inner).held().cloned();
                let outcome = match fetch_consensus(&endpoint, &authorities, held.as_ref(), now()).await {
                    Ok(consensus) => {
                        let (valid_after, relays) = (consensus.period().valid_after, consensus.relays().len());
                        if cache.write().unwrap_or_else(PoisonError::into_inner).replace(consensus) {
                            info!(valid_after, relays, "new consensus");
                            Fetched::Newer
                        } else {
                            Fetched::Same
                        }
                    }
                    Err(error) => {
                        debug!(%error, "consensus fetch failed; keeping the one held");
                        if held.is_some() { Fetched::Same } else { Fetched::Nothing }
                    }
                };
                schedule.fetched(Instant::now(), outcome);
            }
        }
    }
}

async fn publish_all(endpoint: &Endpoint, authorities: &Authorities, descriptor: Vec<u8>) {
    let request = DirRequest::PublishDescriptor(descriptor);
    for authority in &authorities.list {
        match ask(endpoint, authority.address, authority.id, &request).await {
            Ok(DirResponse::Accepted) => debug!(authority = %authority.id, "descriptor published"),
            Ok(other) => {
                warn!(authority = %authority.id, answer = ?other, "descriptor not accepted")
            }
            Err(error) => warn!(authority = %authority.id, %error, "cannot publish descriptor"),
        }
    }
}

/// Answers a directory exchange as a mirror: the cached consensus, nothing
/// else.
pub async fn serve(stream: CircuitStream, first: Vec<u8>, cache: ConsensusCache) {
    serve_exchange(stream, first, |request| match request {
        DirRequest::Consensus => cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .held()
            .map_or(DirResponse::NotAvailable, |consensus| {
                DirResponse::Consensus(consensus.to_bytes())
            }),
        _ => DirResponse::Refused("a relay only serves the consensus".into()),
    })
    .await;
}
