//! Criterion benchmark of consensus verification at network scale: 10,000
//! relays, signed by 3 authorities, verified against a threshold of 2.
//!
//! | group | item | what |
//! |---|---|---|
//! | `consensus_verify_10k` | `from_bytes_verify` | **measured**: `UnverifiedConsensus::from_bytes` + `verify` (nothing held) |
//! | | `decode_plus_3_ed25519` | **baseline**: decoding the 10,000 relay entries (no checks, same allocations) + 3 raw Ed25519 verifications |
//! | | `from_bytes_only` | the measured item's first half: decoding, format checks, body digest |
//! | | `decode_only`, `ed25519_x3`, `sha256_body` | the baseline's parts, and hashing the body |
//! | `consensus_compute_10k` | `compute_3_votes` | `compute` over 3 votes of 10,000 entries (information) |
//!
//! The network mix (seeded, so every run builds the same bytes): every
//! relay has one IPv4 address; 30% also an IPv6 address; nicknames of 6 to
//! 14 letters; 20% are exits refusing two port ranges; 10% sit in mutual
//! families of 3. Goals: verification ≤ 50 ms, encoded size ≤ 1 MiB. The
//! size is printed against 10,000 × the least bytes a relay entry can take
//! (identity 32 + onion key 32 + IPv4 and port 6 + flags 1 + weight 8 =
//! 79 bytes).
//!
//! After criterion finishes, the figures are read back from the estimates
//! it wrote in this run and printed as a Markdown table (see
//! `BENCHMARKS.md`).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../../circuit/benches/support/criterion_estimates.rs"]
mod criterion_estimates;

use std::hint::black_box;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use bincode::Decode;
use bincode::de::Decoder;
use bincode::error::DecodeError;
use criterion::Criterion;
use criterion_estimates::{output_directory, typical_time};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use trine_circuit::{IdentityKey, OnionPublicKey, RelayId, codec};
use trine_directory::{
    AuthoritySet, ComputeParams, Consensus, Digest, ExitSummary, Flag, Flags, NetParams, Period,
    PortRange, RelayEntry, SignedVote, UnverifiedConsensus, Vote, VoteEntry, compute,
};

const RELAYS: usize = 10_000;
const VALID_AFTER: u64 = 1_700_000_000;
/// The least bytes one relay entry can take (see the module docs).
const MIN_ENTRY_BYTES: usize = 32 + 32 + 6 + 1 + 8;
/// Bytes a relay entry would grow by if it carried its onion-key
/// certificate (expiry 8 + signature 64; identity and key are already there).
const CERT_BYTES: usize = 8 + 64;
/// The signature context of consensus documents (kept in step with the
/// library: the bench checks the raw signatures verify).
const CONSENSUS_CONTEXT: &[u8] = b"trine consensus v1\0";

fn period() -> Period {
    Period {
        valid_after: VALID_AFTER,
        fresh_until: VALID_AFTER + 3_600,
        valid_until: VALID_AFTER + 3 * 3_600,
    }
}

/// 10,000 vote entries with the mix described in the module docs.
fn network(rng: &mut ChaCha20Rng) -> Vec<VoteEntry> {
    let ids: Vec<RelayId> = (0..RELAYS)
        .map(|_| {
            let mut bytes = [0; 32];
            rng.fill_bytes(&mut bytes);
            RelayId::from_bytes(bytes)
        })
        .collect();
    (0..RELAYS)
        .map(|n| {
            let [_, hi, mid, lo] = (n as u32).to_be_bytes();
            let mut addresses = vec![SocketAddr::from(([198, 18 + hi, mid, lo], 443))];
            if rng.gen_bool(0.3) {
                addresses.push(SocketAddr::from((
                    [0x2001, 0xdb8, 0, 0, 0, 0, mid.into(), lo.into()],
                    443,
                )));
            }
            let nickname: String = (0..rng.gen_range(6..=14))
                .map(|_| char::from(b'a' + rng.gen_range(0..26)))
                .collect();
            let exit = rng.gen_bool(0.2);
            let summary = if exit {
                ExitSummary::new(
                    true,
                    vec![PortRange::single(25), PortRange::new(6_881, 6_999).unwrap()],
                )
            } else {
                ExitSummary::REJECT_ALL
            };
            // Relays 0..1000 form families of three: 3k, 3k+1, 3k+2.
            let mut family = Vec::new();
            if n < RELAYS / 10 - 1 {
                let base = n - n % 3;
                family = (base..base + 3)
                    .filter(|m| *m != n)
                    .map(|m| ids[m])
                    .collect();
                family.sort();
            }
            let mut flags = Flags::NONE
                .with(Flag::Running)
                .with(Flag::Valid)
                .with(Flag::Fast);
            if exit {
                flags = flags.with(Flag::Exit);
            }
            if rng.gen_bool(0.3) {
                flags = flags.with(Flag::Guard).with(Flag::Stable);
            }
            let mut onion = [0; 32];
            rng.fill_bytes(&mut onion);
            VoteEntry {
                relay: RelayEntry {
                    identity: ids[n],
                    onion_key: OnionPublicKey::from_bytes(onion),
                    addresses,
                    nickname,
                    family,
                    exit: summary,
                    flags,
                    weight: rng.gen_range(100_000..100_000_000),
                },
                digest: Digest::of(&n.to_be_bytes()),
                published: VALID_AFTER - 600,
                onion_key_expires: VALID_AFTER + 7 * 86_400,
            }
        })
        .collect()
}

struct Setup {
    authorities: Vec<IdentityKey>,
    set: AuthoritySet,
    votes: Vec<SignedVote>,
    consensus: Consensus,
    bytes: Vec<u8>,
}

fn setup() -> Setup {
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let authorities: Vec<IdentityKey> = (0..3).map(|_| IdentityKey::generate(&mut rng)).collect();
    let set = AuthoritySet::new(authorities.iter().map(IdentityKey::relay_id), 2).unwrap();
    let entries = network(&mut rng);
    let votes: Vec<SignedVote> = authorities
        .iter()
        .map(|key| {
            Vote::new(period(), NetParams::default(), entries.clone())
                .unwrap()
                .sign(key)
        })
        .collect();
    let params = ComputeParams {
        valid_after: VALID_AFTER,
        min_votes: 2,
    };
    let body = compute(&votes, &params).unwrap();
    assert_eq!(body.relays().len(), RELAYS);
    let signatures: Vec<_> = authorities.iter().map(|key| body.sign(key)).collect();
    let consensus = Consensus::new(body).with_signatures(signatures);
    let bytes = consensus.to_bytes();
    Setup {
        authorities,
        set,
        votes,
        consensus,
        bytes,
    }
}

/// The body's relays decoded with no checks at all: the least decoding
/// work there is (period, parameters, 4-byte count, entries with the same
/// allocations as `RelayEntry`, family members left as positions).
#[allow(dead_code)] // decoded to be measured, never read
struct RawBody(Period, NetParams, Vec<RawRelay>);

#[allow(dead_code)]
struct RawRelay {
    identity: [u8; 32],
    onion_key: [u8; 32],
    addresses: Vec<SocketAddr>,
    nickname: String,
    family: Vec<u32>,
    exit: ExitSummary,
    flags: Flags,
    weight: u64,
}

fn raw_addr<C, D: Decoder<Context = C>>(decoder: &mut D) -> Result<SocketAddr, DecodeError> {
    Ok(match u8::decode(decoder)? {
        4 => SocketAddr::from((<[u8; 4]>::decode(decoder)?, u16::decode(decoder)?)),
        _ => SocketAddr::from((<[u8; 16]>::decode(decoder)?, u16::decode(decoder)?)),
    })
}

impl<C> Decode<C> for RawRelay {
    fn decode<D: Decoder<Context = C>>(decoder: &mut D) -> Result<Self, DecodeError> {
        let identity = Decode::decode(decoder)?;
        let onion_key = Decode::decode(decoder)?;
        let addresses = (0..u8::decode(decoder)?)
            .map(|_| raw_addr(decoder))
            .collect::<Result<_, _>>()?;
        let len = u8::decode(decoder)?;
        let bytes = (0..len)
            .map(|_| u8::decode(decoder))
            .collect::<Result<Vec<u8>, _>>()?;
        let nickname = String::from_utf8(bytes).map_err(|_| DecodeError::Other("utf-8"))?;
        let family = (0..u8::decode(decoder)?)
            .map(|_| u32::decode(decoder))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            identity,
            onion_key,
            addresses,
            nickname,
            family,
            exit: Decode::decode(decoder)?,
            flags: Decode::decode(decoder)?,
            weight: Decode::decode(decoder)?,
        })
    }
}

impl<C> Decode<C> for RawBody {
    fn decode<D: Decoder<Context = C>>(decoder: &mut D) -> Result<Self, DecodeError> {
        let period = Period::decode(decoder)?;
        let params = NetParams::decode(decoder)?;
        let count = u32::decode(decoder)? as usize;
        let mut relays = Vec::with_capacity(count.min(1 << 16));
        for _ in 0..count {
            relays.push(RawRelay::decode(decoder)?);
        }
        Ok(Self(period, params, relays))
    }
}
bincode::impl_borrow_decode!(RawBody);

fn verify_group(criterion: &mut Criterion, setup: &Setup) {
    let now = VALID_AFTER + 60;
    let body_bytes = setup.consensus.body_bytes().to_vec();
    let mut message = CONSENSUS_CONTEXT.to_vec();
    message.extend_from_slice(&setup.consensus.digest().0);
    let signatures = setup.consensus.signatures().to_vec();
    for signature in &signatures {
        signature
            .authority
            .verify(&message, &signature.signature)
            .unwrap();
    }
    let raw: RawBody = codec::decode(&body_bytes, codec::MAX_DOCUMENT_LEN).unwrap();
    assert_eq!(raw.2.len(), RELAYS);
    let verified = UnverifiedConsensus::from_bytes(&setup.bytes)
        .unwrap()
        .verify(&setup.set, now, None)
        .unwrap();
    assert_eq!(verified.relays().len(), RELAYS);
    assert_eq!(verified.signers().len(), 3);

    let mut group = criterion.benchmark_group("consensus_verify_10k");
    group.sample_size(20);
    group.bench_function("from_bytes_verify", |b| {
        b.iter(|| {
            UnverifiedConsensus::from_bytes(black_box(&setup.bytes))
                .unwrap()
                .verify(&setup.set, now, None)
                .unwrap()
        });
    });
    group.bench_function("from_bytes_only", |b| {
        b.iter(|| UnverifiedConsensus::from_bytes(black_box(&setup.bytes)).unwrap());
    });
    group.bench_function("decode_plus_3_ed25519", |b| {
        b.iter(|| {
            let raw: RawBody =
                codec::decode(black_box(&body_bytes), codec::MAX_DOCUMENT_LEN).unwrap();
            for signature in &signatures {
                signature
                    .authority
                    .verify(&message, &signature.signature)
                    .unwrap();
            }
            raw
        });
    });
    group.bench_function("decode_only", |b| {
        b.iter(|| {
            let raw: RawBody =
                codec::decode(black_box(&body_bytes), codec::MAX_DOCUMENT_LEN).unwrap();
            raw
        });
    });
    group.bench_function("ed25519_x3", |b| {
        b.iter(|| {
            for signature in &signatures {
                signature
                    .authority
                    .verify(black_box(&message), &signature.signature)
                    .unwrap();
            }
        });
    });
    group.bench_function("sha256_body", |b| {
        b.iter(|| Digest::of(black_box(&body_bytes)));
    });
    group.finish();
}

fn compute_group(criterion: &mut Criterion, setup: &Setup) {
    let params = ComputeParams {
        valid_after: VALID_AFTER,
        min_votes: 2,
    };
    let mut group = criterion.benchmark_group("consensus_compute_10k");
    group.sample_size(10);
    group.bench_function("compute_3_votes", |b| {
        b.iter(|| compute(black_box(&setup.votes), &params).unwrap());
    });
    group.finish();
    // Keep the keys alive for symmetry with the votes' signers.
    assert_eq!(setup.authorities.len(), 3);
}

fn ms(ns: f64) -> String {
    format!("{:.2} ms", ns / 1e6)
}

fn report(dir: &Path, since: SystemTime, setup: &Setup) {
    let size = setup.bytes.len();
    let minimal = RELAYS * MIN_ENTRY_BYTES;
    let mib = 1024.0 * 1024.0;
    println!("\nEncoded size, {RELAYS} relays, 3 signatures:\n");
    println!("| item | bytes | per relay | MiB | vs minimal | goal | met |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| consensus (measured) | {size} | {:.1} | {:.3} | {:.2}× | ≤ 1 MiB | {} |",
        size as f64 / RELAYS as f64,
        size as f64 / mib,
        size as f64 / minimal as f64,
        if size as f64 <= mib { "yes" } else { "**no**" },
    );
    println!(
        "| baseline: {RELAYS} × {MIN_ENTRY_BYTES} B minimal entries | {minimal} | {MIN_ENTRY_BYTES} | {:.3} | 1.00× | | |",
        minimal as f64 / mib
    );
    let with_certs = size + RELAYS * CERT_BYTES;
    println!(
        "| if entries carried onion-key certificates | {with_certs} | {:.1} | {:.3} | {:.2}× | ≤ 1 MiB | {} |",
        with_certs as f64 / RELAYS as f64,
        with_certs as f64 / mib,
        with_certs as f64 / minimal as f64,
        if with_certs as f64 <= mib {
            "yes"
        } else {
            "no"
        },
    );

    let group = "consensus_verify_10k";
    let time = |bench| typical_time(dir, group, bench, since);
    let (Some(measured), Some(baseline)) =
        (time("from_bytes_verify"), time("decode_plus_3_ed25519"))
    else {
        println!("\n(no verification estimates written by this run)");
        return;
    };
    println!("\nVerification, same run (criterion's estimate per iteration):\n");
    println!("| item | time | vs baseline |");
    println!("|---|---|---|");
    println!(
        "| from_bytes + verify (measured; goal ≤ 50 ms: {}) | {} | {:.2}× |",
        if measured <= 50e6 {
            "met"
        } else {
            "**missed**"
        },
        ms(measured),
        measured / baseline
    );
    println!(
        "| baseline: decode + 3 × Ed25519 | {} | 1.00× |",
        ms(baseline)
    );
    for part in [
        "from_bytes_only",
        "decode_only",
        "ed25519_x3",
        "sha256_body",
    ] {
        if let Some(t) = time(part) {
            println!("| part: {part} | {} | {:.2}× |", ms(t), t / baseline);
        }
    }
    if let Some(x3) = time("ed25519_x3") {
        let certs = x3 / 3.0 * RELAYS as f64;
        println!(
            "| estimate: verifying {RELAYS} onion-key certificates (10,000 × one Ed25519) | {} | {:.2}× |",
            ms(certs),
            certs / baseline
        );
    }
    if let Some(t) = typical_time(dir, "consensus_compute_10k", "compute_3_votes", since) {
        println!(
            "| information: compute over 3 votes × {RELAYS} entries | {} | |",
            ms(t)
        );
    }
}

fn main() {
    let started = SystemTime::now();
    let dir = output_directory();
    let setup = setup();
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .output_directory(&dir)
        .configure_from_args();
    verify_group(&mut criterion, &setup);
    compute_group(&mut criterion, &setup);
    criterion.final_summary();
    report(&dir, started, &setup);
}
