//! The authority daemon: a QUIC endpoint answering directory requests, and
//! a scheduler that tests relays, votes, computes and signs on time and
//! sends votes and signatures to the other authorities. All decisions are
//! in [`AuthorityState`]; this file moves bytes and keeps time.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::{debug, info, warn};
use trine_circuit::IdentityKey;
use trine_directory::wire::{DirRequest, DirResponse};
use trine_link::message::is_message_cell;
use trine_link::{Endpoint, Link, LinkConfig};
use trine_node::authorities::Authority;
use trine_node::dirclient::{ask, serve_exchange};

use crate::config::Config;
use crate::state::AuthorityState;

/// Time allowed for one reachability test.
const DIAL_TIMEOUT: Duration = Duration::from_secs(3);
/// Reachability dials in flight at once.
const DIALS_AT_ONCE: usize = 256;
/// Addresses tested per relay.
const ADDRESSES_TESTED: usize = 2;
/// How often what is served is chosen again as time passes.
const REFRESH_EVERY: u64 = 5;
/// How often the scheduler looks at the clock.
const TICK: Duration = Duration::from_millis(250);

type Shared = Arc<Mutex<AuthorityState>>;

fn lock(state: &Shared) -> std::sync::MutexGuard<'_, AuthorityState> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Current UNIX time, seconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// Runs the authority until SIGINT or SIGTERM.
pub async fn run(config: Config, key: IdentityKey) -> anyhow::Result<()> {
    let endpoint = Arc::new(
        Endpoint::relay(config.listen, &key, &LinkConfig::default())
            .map_err(|error| anyhow::anyhow!("cannot listen on {}: {error}", config.listen))?,
    );
    let me = key.relay_id();
    if !config.authorities.set.contains(&me) {
        anyhow::bail!("this authority's key {me} is not in the authorities file");
    }
    let peers: Vec<Authority> = config
        .authorities
        .list
        .iter()
        .filter(|authority| authority.id != me)
        .copied()
        .collect();
    let state: Shared = Arc::new(Mutex::new(AuthorityState::new(
        key,
        config.authorities.set.clone(),
        config.interval_secs,
        config.params,
    )));
    info!(fingerprint = %me, listen = %config.listen, interval = config.interval_secs, "authority running");
    tokio::spawn(accept(endpoint.clone(), state.clone()));
    let schedule = schedule(endpoint.clone(), state, peers, config.interval_secs);
    tokio::select! {
        () = schedule => {}
        () = trine_node::shutdown_signal() => info!("shutting down"),
    }
    endpoint.close();
    Ok(())
}

/// Votes and computes on time, for ever.
async fn schedule(endpoint: Arc<Endpoint>, state: Shared, peers: Vec<Authority>, interval: u64) {
    let mut refreshed = 0;
    loop {
        tokio::time::sleep(TICK).await;
        let now = unix_now();
        if now >= refreshed + REFRESH_EVERY {
            lock(&state).refresh_served(now);
            refreshed = now;
        }
        let (valid_after, vote_due, compute_due) = {
            let state = lock(&state);
            let valid_after = state.next_period(now);
            (
                valid_after,
                now >= state.vote_time(valid_after) && !state.has_voted(valid_after),
                now >= state.compute_time(valid_after)
                    && state.has_voted(valid_after)
                    && !state.has_computed(valid_after),
            )
        };
        if vote_due {
            let deadline = Duration::from_secs((interval / 8).max(2));
            test_reachability(&endpoint, &state, deadline).await;
            let vote = lock(&state).vote(valid_after, unix_now());
            match vote {
                Ok(vote) => {
                    info!(valid_after, relays = vote.vote().entries().len(), "voted");
                    let request = DirRequest::PublishVote(vote.to_bytes());
                    broadcast(&endpoint, &peers, request);
                }
                Err(error) => warn!(%error, "could not vote"),
            }
        } else if compute_due {
            let computed = {
                let mut state = lock(&state);
                let computed = state.compute(valid_after);
                state.refresh_served(unix_now());
                computed
            };
            match computed {
                Ok((digest, signature)) => {
                    info!(valid_after, digest = %digest.to_hex(), "consensus computed and signed");
                    let request = DirRequest::PublishSignature {
                        valid_after,
                        digest,
                        signature,
                    };
                    broadcast(&endpoint, &peers, request);
                }
                Err(error) => {
                    warn!(valid_after, %error, "no consensus this period");
                    // Do not retry every tick: mark the period as done by
                    // waiting for the next one.
                    tokio::time::sleep(Duration::from_secs(
                        valid_after.saturating_sub(unix_now()) + 1,
                    ))
                    .await;
                }
            }
            lock(&state).prune(unix_now());
        }
    }
}

/// Connects to every relay with a descriptor, checking its identity: at
/// most [`DIALS_AT_ONCE`] at a time, the first [`ADDRESSES_TESTED`]
/// addresses of each, and all within `deadline`, so made-up descriptors
/// can neither make the vote late nor turn the authority into a dialer of
/// many addresses at once. A relay whose test started (with at least half
/// a dial timeout left) but did not answer by the deadline is unreachable
/// (a stopped QUIC endpoint never refuses, it just stays silent); relays
/// whose test did not get that long keep their state.
async fn test_reachability(endpoint: &Arc<Endpoint>, state: &Shared, deadline: Duration) {
    let targets = lock(state).reachability_targets();
    let round_end = tokio::time::Instant::now() + deadline;
    let permits = Arc::new(tokio::sync::Semaphore::new(DIALS_AT_ONCE));
    let mut tests = tokio::task::JoinSet::new();
    for (id, addresses) in targets {
        let endpoint = endpoint.clone();
        let permits = permits.clone();
        tests.spawn(async move {
            let _permit = permits.acquire_owned().await;
            // A test must get a fair time to answer, or not count.
            let fair = DIAL_TIMEOUT.min(deadline) / 2;
            if round_end.saturating_duration_since(tokio::time::Instant::now()) < fair {
                return None;
            }
            for address in addresses.into_iter().take(ADDRESSES_TESTED) {
                let left = round_end.saturating_duration_since(tokio::time::Instant::now());
                if left.is_zero() {
                    break;
                }
                if let Ok(Ok(link)) =
                    tokio::time::timeout(DIAL_TIMEOUT.min(left), endpoint.connect(address, id))
                        .await
                {
                    link.close("reachability test done");
                    return Some((id, true));
                }
            }
            Some((id, false))
        });
    }
    let mut results = Vec::new();
    let round = async {
        while let Some(Ok(result)) = tests.join_next().await {
            results.extend(result);
        }
    };
    // Every started test ends by `round_end`; the margin lets them report.
    let _ = tokio::time::timeout(deadline + Duration::from_millis(200), round).await;
    tests.abort_all();
    let now = unix_now();
    let mut state = lock(state);
    for (id, reachable) in results {
        state.record_reachability(&id, reachable, now);
    }
}

/// Sends `request` to every peer, each in its own task; failures are
/// logged (a peer that is down must not hold up the others).
fn broadcast(endpoint: &Arc<Endpoint>, peers: &[Authority], request: DirRequest) {
    for peer in peers.iter().copied() {
        let endpoint = endpoint.clone();
        let request = request.clone();
        tokio::spawn(async move {
            match ask(&endpoint, peer.address, peer.id, &request).await {
                Ok(DirResponse::Accepted) => debug!(peer = %peer.id, "peer accepted"),
                Ok(other) => warn!(peer = %peer.id, answer = ?other, "peer did not accept"),
                Err(error) => warn!(peer = %peer.id, %error, "peer unreachable"),
            }
        });
    }
}

/// Accepts links and answers every exchange on them.
async fn accept(endpoint: Arc<Endpoint>, state: Shared) {
    while let Some(incoming) = endpoint.accept().await {
        let state = state.clone();
        tokio::spawn(async move {
            let Ok(link) = incoming.accept().await else {
                return;
            };
            serve_link(link, state).await;
        });
    }
}

async fn serve_link(link: Link, state: Shared) {
    while let Ok(mut stream) = link.accept_circuit().await {
        let state = state.clone();
        tokio::spawn(async move {
            let mut first = Vec::new();
            if !matches!(stream.read_cell(&mut first).await, Ok(true)) || !is_message_cell(&first) {
                // Authorities carry no circuits.
                stream.reset(0);
                return;
            }
            serve_exchange(stream, first, |request| answer(&state, request)).await;
        });
    }
}

fn answer(state: &Shared, request: DirRequest) -> DirResponse {
    let now = unix_now();
    let mut state = lock(state);
    let refused = |error: String| DirResponse::Refused(error);
    match request {
        DirRequest::Consensus => state
            .best_consensus(now)
            .map_or(DirResponse::NotAvailable, |bytes| {
                DirResponse::Consensus(bytes.as_ref().clone())
            }),
        DirRequest::PublishDescriptor(bytes) => match state.accept_descriptor(&bytes, now) {
            Ok(id) => {
                debug!(relay = %id, "descriptor accepted");
                DirResponse::Accepted
            }
            Err(error) => refused(error),
        },
        DirRequest::PublishVote(bytes) => match state.accept_vote(&bytes, now) {
            Ok(()) => DirResponse::Accepted,
            Err(error) => refused(error),
        },
        DirRequest::PublishSignature {
            valid_after,
            digest,
            signature,
        } => match state.accept_signature(valid_after, digest, signature, now) {
            Ok(()) => {
                state.refresh_served(now);
                DirResponse::Accepted
            }
            Err(error) => refused(error),
        },
    }
}
