//! `compute` on votes built from the input over a fixed pool of eight
//! relays that share IP addresses, declare families and come in two
//! descriptor variants each.
//!
//! Input: the first byte gives the number of votes (1 to 5); then, per
//! vote, one byte for `max_relays_per_ip` (1 to 3) and, per pool relay,
//! two bytes: `listed(bit 7) | variant(bit 6) | flags(bits 0-5)` and the
//! measured bandwidth. Missing bytes read as zero.
//!
//! Checked: compute succeeds; the relays are sorted; each was listed by a
//! strict majority of votes, with each flag set by a strict majority of
//! those; its weight is one of their measurements; no IP carries more than
//! the cap; families name only listed relays; reversing the votes gives
//! the same bytes; the body survives encoding, decoding and verification.
#![no_main]

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use trine_circuit::{IdentityKey, OnionPublicKey};
use trine_directory::{
    AuthoritySet, ComputeParams, Consensus, Digest, ExitSummary, Flag, Flags, NetParams, Period,
    RelayEntry, SignedVote, UnverifiedConsensus, Vote, VoteEntry, compute,
};

const POOL: usize = 8;
const VALID_AFTER: u64 = 1_700_000_000;

struct Fixed {
    authorities: Vec<IdentityKey>,
    set: AuthoritySet,
    pool: Vec<[VoteEntry; 2]>,
}

static FIXED: LazyLock<Fixed> = LazyLock::new(|| {
    let authorities: Vec<IdentityKey> = (0..5u8)
        .map(|n| IdentityKey::from_secret_bytes(&[0xa0 + n; 32]))
        .collect();
    let Ok(set) = AuthoritySet::new(authorities.iter().map(IdentityKey::relay_id), 1) else {
        panic!("fixed authority set refused");
    };
    let ids: Vec<_> = (0..POOL)
        .map(|n| IdentityKey::from_secret_bytes(&[0x10 + n as u8; 32]).relay_id())
        .collect();
    let pool = (0..POOL)
        .map(|n| {
            // Three IPv4 addresses shared round-robin; odd relays also
            // share one IPv6 address.
            let mut addresses: Vec<SocketAddr> =
                vec![SocketAddr::from(([198, 18, 0, (n % 3) as u8], 443))];
            if n % 2 == 1 {
                addresses.push("[2001:db8::1]:443".parse().unwrap_or(addresses[0]));
            }
            addresses.sort();
            let mut family = vec![ids[(n + 1) % POOL], ids[(n + 3) % POOL]];
            family.sort();
            let base = VoteEntry {
                relay: RelayEntry {
                    identity: ids[n],
                    onion_key: OnionPublicKey::from_bytes([n as u8; 32]),
                    addresses,
                    nickname: format!("pool{n}"),
                    family,
                    exit: ExitSummary::REJECT_ALL,
                    flags: Flags::NONE,
                    weight: 0,
                },
                digest: Digest([n as u8; 32]),
                published: VALID_AFTER - 100,
                // Relay 7's certificate ends too early to be listed.
                onion_key_expires: if n == 7 { VALID_AFTER + 1 } else { u64::MAX },
            };
            let mut alt = base.clone();
            alt.relay.nickname = format!("alt{n}");
            alt.digest = Digest([0x80 + n as u8; 32]);
            alt.published += 1;
            [base, alt]
        })
        .collect();
    Fixed {
        authorities,
        set,
        pool,
    }
});

fn period() -> Period {
    Period {
        valid_after: VALID_AFTER,
        fresh_until: VALID_AFTER + 3_600,
        valid_until: VALID_AFTER + 10_800,
    }
}

fn build_votes(data: &[u8]) -> Vec<SignedVote> {
    let fixed = &*FIXED;
    let mut bytes = data.iter().copied();
    let mut next = move || bytes.next().unwrap_or(0);
    let count = 1 + usize::from(next()) % 5;
    (0..count)
        .map(|a| {
            let params = NetParams {
                max_relays_per_ip: 1 + u32::from(next()) % 3,
                ..NetParams::default()
            };
            let entries = (0..POOL)
                .filter_map(|n| {
                    let (spec, measured) = (next(), next());
                    if spec & 0x80 == 0 {
                        return None;
                    }
                    let mut entry = fixed.pool[n][usize::from(spec >> 6 & 1)].clone();
                    entry.relay.flags = Flags::from_bits(spec & 0x3f).unwrap_or(Flags::NONE);
                    entry.relay.weight = u64::from(measured);
                    Some(entry)
                })
                .collect();
            let Ok(vote) = Vote::new(period(), params, entries) else {
                panic!("pool vote refused");
            };
            vote.sign(&fixed.authorities[a])
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let votes = build_votes(data);
    let params = ComputeParams {
        valid_after: VALID_AFTER,
        min_votes: 1,
    };
    let body = match compute(&votes, &params) {
        Ok(body) => body,
        Err(error) => panic!("compute refused valid votes: {error}"),
    };
    let relays = body.relays();
    assert!(relays.windows(2).all(|p| p[0].identity < p[1].identity));
    let mut per_ip: HashMap<IpAddr, u32> = HashMap::new();
    for relay in relays {
        let listing: Vec<&VoteEntry> = votes
            .iter()
            .filter_map(|v| {
                v.vote()
                    .entries()
                    .iter()
                    .find(|e| e.relay.identity == relay.identity)
            })
            .collect();
        assert!(2 * listing.len() > votes.len(), "listed by a minority");
        for flag in Flag::ALL {
            let set = listing.iter().filter(|e| e.relay.flags.has(flag)).count();
            assert_eq!(relay.flags.has(flag), 2 * set > listing.len(), "{flag:?}");
        }
        assert!(listing.iter().any(|e| e.relay.weight == relay.weight));
        assert!(relay.family.iter().all(|m| relays.iter().any(|r| r.identity == *m)));
        let mut ips: Vec<IpAddr> = relay.addresses.iter().map(SocketAddr::ip).collect();
        ips.dedup();
        for ip in ips {
            *per_ip.entry(ip).or_insert(0) += 1;
        }
    }
    let cap = body.params().max_relays_per_ip;
    assert!(per_ip.values().all(|count| *count <= cap), "per-IP cap broken");

    let mut reversed = votes.clone();
    reversed.reverse();
    let Ok(again) = compute(&reversed, &params) else {
        panic!("compute refused reversed votes");
    };
    assert_eq!(again.to_bytes(), body.to_bytes(), "vote order mattered");

    let signature = body.sign(&FIXED.authorities[0]);
    let bytes = Consensus::new(body.clone()).with_signatures([signature]).to_bytes();
    let verified = UnverifiedConsensus::from_bytes(&bytes)
        .and_then(|c| c.verify(&FIXED.set, VALID_AFTER, None));
    match verified {
        Ok(verified) => assert_eq!(verified.relays(), relays),
        Err(error) => panic!("computed consensus refused: {error}"),
    }
});
