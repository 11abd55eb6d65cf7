//! Directory requests and responses as they travel in a link's
//! request/response exchange (`trine_link::message`): descriptor uploads
//! from relays, votes and consensus signatures between authorities, and
//! consensus downloads by anyone. Encoded with the one codec; documents
//! inside stay in their own signed encodings.

use bincode::{Decode, Encode};
use trine_circuit::codec::{self, CodecError, MAX_DOCUMENT_LEN};

use crate::consensus::AuthoritySignature;
use crate::digest::Digest;

/// Largest request or response, in bytes.
pub const MAX_MESSAGE_LEN: usize = MAX_DOCUMENT_LEN;

/// What a node asks of a directory server (authority or mirror).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum DirRequest {
    /// The newest consensus the server holds, with all its signatures.
    Consensus,
    /// A relay publishes its signed descriptor (authorities only).
    PublishDescriptor(Vec<u8>),
    /// An authority hands its signed vote to another (authorities only).
    PublishVote(Vec<u8>),
    /// An authority's signature over the consensus body with `digest`
    /// (authorities only).
    PublishSignature {
        /// The consensus's valid-after time.
        valid_after: u64,
        /// Digest of the signed consensus body.
        digest: Digest,
        /// The authority and its signature.
        signature: AuthoritySignature,
    },
}

/// A directory server's answer.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum DirResponse {
    /// The consensus document (signed encoding).
    Consensus(Vec<u8>),
    /// The upload was accepted.
    Accepted,
    /// The request was refused; the reason is for logs and people.
    Refused(String),
    /// The server has nothing to answer with yet.
    NotAvailable,
}

impl DirRequest {
    /// The encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Decodes untrusted bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CodecError> {
        codec::decode(bytes, MAX_MESSAGE_LEN)
    }
}

impl DirResponse {
    /// The encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Decodes untrusted bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CodecError> {
        codec::decode(bytes, MAX_MESSAGE_LEN)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn messages_round_trip_and_garbage_is_refused() {
        let requests = [
            DirRequest::Consensus,
            DirRequest::PublishDescriptor(vec![1, 2, 3]),
            DirRequest::PublishVote(vec![]),
            DirRequest::PublishSignature {
                valid_after: 7,
                digest: Digest([3; 32]),
                signature: AuthoritySignature {
                    authority: trine_circuit::RelayId::from_bytes([9; 32]),
                    signature: [4; 64],
                },
            },
        ];
        for request in requests {
            assert_eq!(
                DirRequest::from_bytes(&request.to_bytes()).unwrap(),
                request
            );
        }
        for response in [
            DirResponse::Consensus(vec![5; 100]),
            DirResponse::Accepted,
            DirResponse::Refused("stale".into()),
            DirResponse::NotAvailable,
        ] {
            assert_eq!(
                DirResponse::from_bytes(&response.to_bytes()).unwrap(),
                response
            );
        }
        assert!(DirRequest::from_bytes(&[0xff; 3]).is_err());
        assert!(DirResponse::from_bytes(&[]).is_err());
        let mut trailing = DirRequest::Consensus.to_bytes();
        trailing.push(0);
        assert!(DirRequest::from_bytes(&trailing).is_err());
    }
}
