//! trine-directory: the signed peer directory, without I/O.
//!
//! Relays publish signed descriptors; directory authorities each sign a
//! vote; the consensus computed from the votes is accepted by clients only
//! when a threshold of authorities signed it. Path selection over a
//! verified consensus is here too, so the client and the simulator run the
//! same code.

pub mod assign;
pub mod authority;
pub mod cidr;
mod compact;
pub mod compute;
pub mod consensus;
pub mod descriptor;
pub mod digest;
pub mod entry;
pub mod flags;
pub mod guards;
pub mod params;
pub mod path;
pub mod policy;
pub mod reserved;
pub mod rules;
pub mod verify;
pub mod vote;
pub mod wire;

pub use assign::{Observation, assign_flags};
pub use authority::{AuthoritySet, AuthoritySetError};
pub use cidr::Cidr;
pub use compute::{ComputeError, ComputeParams, compute};
pub use consensus::{AuthoritySignature, Consensus, ConsensusBody};
pub use descriptor::{
    Bandwidth, Descriptor, DescriptorError, DescriptorRules, SignedDescriptor, UnverifiedDescriptor,
};
pub use digest::Digest;
pub use entry::RelayEntry;
pub use flags::{Flag, Flags};
pub use guards::{GuardEntry, GuardParams, GuardState, GuardStateError};
pub use params::{CLOCK_SKEW_SECS, NetParams, Period};
pub use path::{
    Candidate, Path, PathConfig, PathError, PathIndex, PathPositions, Position, PositionWeights,
    select_exit, select_middle, select_path, select_path_positions,
};
pub use policy::{ExitSummary, PortRange};
pub use rules::FormatError;
pub use verify::{DirError, UnverifiedConsensus, VerifiedConsensus};
pub use vote::{SignedVote, UnverifiedVote, Vote, VoteEntry, VoteError};
