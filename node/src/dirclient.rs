//! Directory exchanges over links, for every node: asking a directory
//! server (authority or mirror) one request, fetching and verifying the
//! consensus, and answering one exchange as a server.

use std::net::SocketAddr;
use std::time::Duration;

use trine_circuit::RelayId;
use trine_directory::wire::{DirRequest, DirResponse, MAX_MESSAGE_LEN};
use trine_directory::{UnverifiedConsensus, VerifiedConsensus};
use trine_link::message::{read_message, write_message};
use trine_link::{CircuitStream, Endpoint};

use crate::authorities::Authorities;

/// Time allowed for one exchange, connection included.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);

/// Sends `request` to the directory server `id` at `address` on a fresh
/// link and returns its answer.
pub async fn ask(
    endpoint: &Endpoint,
    address: SocketAddr,
    id: RelayId,
    request: &DirRequest,
) -> anyhow::Result<DirResponse> {
    let exchange = async {
        let link = endpoint.connect(address, id).await?;
        let answer = link.request(&request.to_bytes(), MAX_MESSAGE_LEN).await;
        link.close("done");
        anyhow::Ok(DirResponse::from_bytes(&answer?)?)
    };
    tokio::time::timeout(EXCHANGE_TIMEOUT, exchange)
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {EXCHANGE_TIMEOUT:?}"))?
}

/// Fetches the consensus from the first authority that has one that
/// verifies at `now` and is not older than `held`.
pub async fn fetch_consensus(
    endpoint: &Endpoint,
    authorities: &Authorities,
    held: Option<&VerifiedConsensus>,
    now: u64,
) -> anyhow::Result<VerifiedConsensus> {
    let mut failures = Vec::new();
    for authority in &authorities.list {
        let answer = ask(
            endpoint,
            authority.address,
            authority.id,
            &DirRequest::Consensus,
        )
        .await;
        let outcome = match answer {
            Ok(DirResponse::Consensus(bytes)) => UnverifiedConsensus::from_bytes(&bytes)
                .and_then(|consensus| consensus.verify(&authorities.set, now, held))
                .map_err(anyhow::Error::from),
            Ok(other) => Err(anyhow::anyhow!("answered {other:?}")),
            Err(error) => Err(error),
        };
        match outcome {
            Ok(consensus) => return Ok(consensus),
            Err(error) => failures.push(format!("{}: {error}", authority.address)),
        }
    }
    anyhow::bail!("no usable consensus: {}", failures.join("; "))
}

/// Answers the exchange on `stream` whose first cell is `first`, with
/// `answer` deciding the response. Malformed requests are refused.
pub async fn serve_exchange(
    mut stream: CircuitStream,
    first: Vec<u8>,
    answer: impl FnOnce(DirRequest) -> DirResponse,
) {
    // A peer trickling a request slowly must not hold the task for ever.
    let read = tokio::time::timeout(
        EXCHANGE_TIMEOUT,
        read_message(&mut stream, first, MAX_MESSAGE_LEN),
    );
    let Ok(Ok(request)) = read.await else {
        stream.reset(0);
        return;
    };
    let response = match DirRequest::from_bytes(&request) {
        Ok(request) => answer(request),
        Err(error) => DirResponse::Refused(format!("malformed request: {error}")),
    };
    let _ = write_message(&mut stream, &response.to_bytes()).await;
}
