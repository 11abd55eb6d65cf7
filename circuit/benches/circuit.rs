//! Criterion benchmarks of trine-circuit's hot paths, each measured next to
//! a baseline in the same criterion group and the same run, so every figure
//! is read as a ratio (measured time / baseline time), not as an absolute
//! number that depends on the machine and on whatever else it is running.
//!
//! | group | measured | baseline |
//! |---|---|---|
//! | `client_seal_1280` | `cell::data_cell` + `ClientCircuit::seal_data` of a 1280-byte packet through 3 layers | three raw `LayerCipher::seal` calls of the same sizes |
//! | `relay_forward_1280` | `RelayTable::handle_cell` at the guard: parse, replay check, open one layer, forward | one raw `LayerCipher::open` of the same size |
//! | `ntor_server` | `ntor::server_handshake` (ephemeral made beforehand, and made inside) | two raw X25519 DH (plus one fixed-base multiplication) |
//! | `cipher_backend_1280` | `LayerCipher::seal` (RustCrypto ChaCha20-Poly1305) | ring's ChaCha20-Poly1305 `seal_in_place_separate_tag` |
//! | `circuit_build` | a whole in-memory 3-hop build over `memnet::MemNet` | three ntor handshakes, both sides, alone |
//!
//! After criterion finishes, the ratios are read back from the estimates it
//! wrote in this run and printed as a Markdown table (see `BENCHMARKS.md`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/criterion_estimates.rs"]
mod criterion_estimates;

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use criterion::{BatchSize, Criterion, Throughput};
use criterion_estimates::{output_directory, typical_time};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use trine_circuit::aead::{LayerCipher, TAG_LEN};
use trine_circuit::cell::{self, RELAY_HEADER_LEN};
use trine_circuit::client::CircuitState;
use trine_circuit::memnet::MemNet;
use trine_circuit::ntor::{self, NtorClient, NtorProtocol};
use trine_circuit::onion::LAYER_OVERHEAD;
use trine_circuit::{
    Channel, ClientCircuit, ClientConfig, HopSpec, IdentityKey, OnionSecretKey, RelayAction,
    RelayConfig, RelayId, RelayTable,
};

/// The inner packet: the IPv6 minimum MTU, Trine's default.
const PACKET_LEN: usize = 1280;
/// Hops in every circuit here.
const HOPS: usize = 3;
/// The RELAY command byte, the associated data of every layer.
const RELAY_COMMAND: u8 = 4;

/// Relay keys and the client's view of them, made once per benchmark.
struct Relays {
    identities: Vec<IdentityKey>,
    onion: Vec<[u8; 32]>,
}

impl Relays {
    fn new(seed: u64) -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let identities = (0..HOPS).map(|_| IdentityKey::generate(&mut rng)).collect();
        let onion = (0..HOPS)
            .map(|_| *OnionSecretKey::generate(&mut rng).to_secret_bytes())
            .collect();
        Self { identities, onion }
    }

    fn ids(&self) -> Vec<RelayId> {
        self.identities.iter().map(IdentityKey::relay_id).collect()
    }

    fn path(&self) -> Vec<HopSpec> {
        (0..HOPS)
            .map(|i| HopSpec {
                id: self.identities[i].relay_id(),
                onion_key: OnionSecretKey::from_secret_bytes(self.onion[i]).public_key(),
                addresses: vec![format!("198.18.0.{}:443", i + 1).parse().unwrap()],
            })
            .collect()
    }

    /// Fresh relay tables (the last one an exit). Rebuilding an
    /// `OnionSecretKey` from bytes costs one fixed-base multiplication each.
    fn tables(&self, rng: &mut ChaCha20Rng) -> Vec<RelayTable<ChaCha20Rng>> {
        (0..HOPS)
            .map(|i| {
                RelayTable::new(
                    self.identities[i].relay_id(),
                    vec![OnionSecretKey::from_secret_bytes(self.onion[i])],
                    RelayConfig {
                        exit: i == HOPS - 1,
                        ..RelayConfig::default()
                    },
                    ChaCha20Rng::seed_from_u64(rng.next_u64()),
                )
            })
            .collect()
    }
}

/// A memnet whose 3-hop circuit is built and ready.
fn ready_network(relays: &Relays, now: Instant) -> MemNet<ChaCha20Rng> {
    let mut rng = ChaCha20Rng::seed_from_u64(0xc11e);
    let client =
        ClientCircuit::new(relays.path(), &ClientConfig::default(), now, &mut rng).unwrap();
    let mut net = MemNet::new(client, relays.tables(&mut rng), relays.ids());
    net.run(now);
    assert_eq!(net.client.state(), CircuitState::Ready, "{:?}", net.drops);
    net
}

fn packet() -> Vec<u8> {
    (0..PACKET_LEN).map(|i| (i * 31) as u8).collect()
}

/// Bytes each layer encrypts, innermost first: the relay message (DATA
/// command + packet) and flag, then the inner layers' flags and tags too.
fn layer_body_lens() -> [usize; HOPS] {
    let mut lens = [0; HOPS];
    let mut len = 1 + PACKET_LEN + 1;
    for slot in &mut lens {
        *slot = len;
        len += LAYER_OVERHEAD;
    }
    lens
}

fn layer_ciphers() -> Vec<LayerCipher> {
    (0..HOPS)
        .map(|i| LayerCipher::new(&[i as u8 + 1; 32]))
        .collect()
}

/// (a) The client sealing one DATA packet for the last of three hops.
fn client_seal(c: &mut Criterion) {
    let now = Instant::now();
    let relays = Relays::new(1);
    let mut net = ready_network(&relays, now);
    let packet = packet();

    let mut group = c.benchmark_group("client_seal_1280");
    group.throughput(Throughput::Bytes(PACKET_LEN as u64));

    let capacity = RELAY_HEADER_LEN + 1 + PACKET_LEN + HOPS * LAYER_OVERHEAD;
    let mut buf = Vec::with_capacity(capacity);
    let client = &mut net.client;
    group.bench_function("client_seal_data", |b| {
        b.iter(|| {
            cell::data_cell(&mut buf, black_box(&packet));
            assert!(client.seal_data(&mut buf));
            black_box(buf.as_slice());
        });
    });
    assert_eq!(buf.len(), capacity);
    assert_eq!(buf.capacity(), capacity, "the cell buffer was reallocated");

    let ciphers = layer_ciphers();
    let lens = layer_body_lens();
    let mut raw = vec![0u8; capacity];
    raw[RELAY_HEADER_LEN..RELAY_HEADER_LEN + 1 + PACKET_LEN].fill(7);
    let mut seq = 0u64;
    group.bench_function("raw_aead_x3", |b| {
        b.iter(|| {
            seq += 1;
            // Last hop's layer first, as the client does.
            for (cipher, &len) in ciphers.iter().rev().zip(&lens) {
                let end = RELAY_HEADER_LEN + len;
                let tag = cipher.seal(seq, &[RELAY_COMMAND], &mut raw[RELAY_HEADER_LEN..end]);
                raw[end..end + TAG_LEN].copy_from_slice(&tag);
            }
            black_box(raw.as_slice());
        });
    });
    group.finish();
}

/// (b) The guard opening its layer of a client cell and forwarding the rest.
fn relay_forward(c: &mut Criterion) {
    let now = Instant::now();
    let relays = Relays::new(2);
    let mut net = ready_network(&relays, now);
    let packet = packet();

    // The client's end of its link to the guard, taken from a real cell.
    assert!(net.client_send(&packet));
    let from = net.pop().expect("a cell in flight").on;

    let capacity = RELAY_HEADER_LEN + 1 + PACKET_LEN + HOPS * LAYER_OVERHEAD;
    let client = &mut net.client;
    let guard = &mut net.relays[0];
    // Each cell is sealed by the client in the (untimed) setup, so every
    // sequence number is fresh and in order for the guard's replay window.
    let mut sealed = || {
        let mut cell = Vec::with_capacity(capacity);
        cell::data_cell(&mut cell, &packet);
        assert!(client.seal_data(&mut cell));
        cell
    };
    {
        let mut cell = sealed();
        let action = guard.handle_cell(now, from, Channel::Datagram, &mut cell);
        assert!(
            matches!(action, RelayAction::Forward { .. }),
            "guard did not forward: {action:?}"
        );
    }

    let mut group = c.benchmark_group("relay_forward_1280");
    group.throughput(Throughput::Bytes(PACKET_LEN as u64));
    group.bench_function("relay_handle_cell", |b| {
        b.iter_batched_ref(
            &mut sealed,
            |cell| guard.handle_cell(now, from, Channel::Datagram, cell),
            BatchSize::SmallInput,
        );
    });
    let dropped: u64 = guard.stats().drops.values().sum();
    assert_eq!(dropped, 0, "{:?}", guard.stats().drops);

    // The same number of bytes as the guard opens: everything between the
    // RELAY header and the outermost tag.
    let body_len = capacity - RELAY_HEADER_LEN - TAG_LEN;
    let cipher = LayerCipher::new(&[9; 32]);
    let mut template = vec![5u8; body_len];
    let tag = cipher.seal(1, &[RELAY_COMMAND], &mut template);
    group.bench_function("raw_aead_open_x1", |b| {
        b.iter_batched_ref(
            || template.clone(),
            |body| {
                cipher
                    .open(1, &[RELAY_COMMAND], body, &tag)
                    .expect("authentic")
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

/// (c) The relay half of ntor against the X25519 work it cannot avoid.
fn ntor_server(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let relay_id = IdentityKey::generate(&mut rng).relay_id();
    let onion = OnionSecretKey::generate(&mut rng);
    let (_, message) = NtorClient::start(
        NtorProtocol::TRINE,
        relay_id.as_bytes(),
        onion.public_key(),
        OnionSecretKey::generate(&mut rng),
    );
    let handshake = |ephemeral| {
        ntor::server_handshake(
            NtorProtocol::TRINE,
            relay_id.as_bytes(),
            &[&onion],
            ephemeral,
            black_box(&message),
        )
        .expect("handshake")
    };

    let mut group = c.benchmark_group("ntor_server");
    // The ephemeral `y` (and so `Y`) is made in the untimed setup: this is
    // `server_handshake` alone, as its signature takes it.
    group.bench_function("server_handshake", |b| {
        b.iter_batched(
            || OnionSecretKey::generate(&mut rng),
            handshake,
            BatchSize::SmallInput,
        );
    });
    // What a relay pays per CREATE: draw `y`, compute `Y = y·G`, handshake.
    group.bench_function("server_handshake_with_keygen", |b| {
        b.iter(|| handshake(OnionSecretKey::generate(&mut rng)));
    });

    let y = x25519_dalek::StaticSecret::random_from_rng(&mut rng);
    let b_secret = x25519_dalek::StaticSecret::from(*onion.to_secret_bytes());
    let mut x_bytes = [0u8; 32];
    x_bytes.copy_from_slice(&message[64..96]);
    let x_public = x25519_dalek::PublicKey::from(x_bytes);
    group.bench_function("x25519_x2", |b| {
        b.iter(|| {
            let xy = black_box(&y).diffie_hellman(black_box(&x_public));
            let xb = black_box(&b_secret).diffie_hellman(black_box(&x_public));
            (xy.to_bytes(), xb.to_bytes())
        });
    });
    group.bench_function("x25519_x2_plus_base", |b| {
        b.iter(|| {
            let y_public = x25519_dalek::PublicKey::from(black_box(&y));
            let xy = black_box(&y).diffie_hellman(black_box(&x_public));
            let xb = black_box(&b_secret).diffie_hellman(black_box(&x_public));
            (y_public.to_bytes(), xy.to_bytes(), xb.to_bytes())
        });
    });
    group.finish();
}

/// (d) Our ChaCha20-Poly1305 backend (RustCrypto) against ring's.
fn cipher_backend(c: &mut Criterion) {
    use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};

    let key = [0x42u8; 32];
    let ours = LayerCipher::new(&key);
    let theirs = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &key).expect("key"));
    let mut buf = vec![7u8; PACKET_LEN];
    let mut seq = 0u64;

    let mut group = c.benchmark_group("cipher_backend_1280");
    group.throughput(Throughput::Bytes(PACKET_LEN as u64));
    group.bench_function("layer_cipher_seal", |b| {
        b.iter(|| {
            seq += 1;
            ours.seal(seq, &[RELAY_COMMAND], black_box(&mut buf))
        });
    });
    group.bench_function("ring_seal_in_place", |b| {
        b.iter(|| {
            seq += 1;
            // The same nonce layout as `LayerCipher`.
            let mut nonce = [0u8; 12];
            nonce[4..].copy_from_slice(&seq.to_be_bytes());
            theirs
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from([RELAY_COMMAND]),
                    black_box(&mut buf),
                )
                .expect("seal")
        });
    });
    group.finish();
}

/// (e) Building a whole 3-hop circuit in memory against its handshakes alone.
fn circuit_build(c: &mut Criterion) {
    let now = Instant::now();
    let relays = Relays::new(5);
    let ids = relays.ids();
    let path = relays.path();
    let config = ClientConfig::default();
    let mut rng = ChaCha20Rng::seed_from_u64(6);

    let mut group = c.benchmark_group("circuit_build");
    group.sample_size(30);
    // Relay tables are made in the untimed setup: they need owned onion
    // secrets, and `OnionSecretKey` is not `Clone`, so each table would
    // otherwise pay a fixed-base multiplication a real relay never repeats.
    let mut setup_rng = ChaCha20Rng::seed_from_u64(7);
    group.bench_function("memnet_3_hops", |b| {
        b.iter_batched(
            || (relays.tables(&mut setup_rng), path.clone(), ids.clone()),
            |(tables, path, ids)| {
                let client = ClientCircuit::new(path, &config, now, &mut rng).unwrap();
                let mut net = MemNet::new(client, tables, ids);
                net.run(now);
                net
            },
            BatchSize::SmallInput,
        );
    });
    {
        let client = ClientCircuit::new(path.clone(), &config, now, &mut rng).unwrap();
        let mut net = MemNet::new(client, relays.tables(&mut setup_rng), ids.clone());
        net.run(now);
        assert_eq!(net.client.state(), CircuitState::Ready, "{:?}", net.drops);
    }

    let onion: Vec<OnionSecretKey> = relays
        .onion
        .iter()
        .map(|bytes| OnionSecretKey::from_secret_bytes(*bytes))
        .collect();
    group.bench_function("ntor_x3_both_sides", |b| {
        b.iter(|| {
            let mut keys = Vec::with_capacity(HOPS);
            for (hop, secret) in path.iter().zip(&onion) {
                let (client, message) = NtorClient::start(
                    NtorProtocol::TRINE,
                    hop.id.as_bytes(),
                    hop.onion_key,
                    OnionSecretKey::generate(&mut rng),
                );
                let (reply, server_keys) = ntor::server_handshake(
                    NtorProtocol::TRINE,
                    hop.id.as_bytes(),
                    &[secret],
                    OnionSecretKey::generate(&mut rng),
                    &message,
                )
                .expect("server half");
                keys.push((client.finish(&reply).expect("client half"), server_keys));
            }
            keys
        });
    });
    group.finish();
}

/// What a ratio is held to.
#[derive(Clone, Copy)]
enum Goal {
    /// Measured time at most this multiple of the baseline's.
    MaxTime(f64),
    /// Measured throughput at least this fraction of the baseline's.
    MinThroughput(f64),
    /// Reported for information.
    None,
}

/// One line of the summary: `measured` against `baseline`, both in `group`.
const COMPARISONS: &[(&str, &str, &str, Goal)] = &[
    (
        "client_seal_1280",
        "client_seal_data",
        "raw_aead_x3",
        Goal::MaxTime(1.10),
    ),
    (
        "relay_forward_1280",
        "relay_handle_cell",
        "raw_aead_open_x1",
        Goal::None,
    ),
    (
        "ntor_server",
        "server_handshake",
        "x25519_x2",
        Goal::MinThroughput(0.9),
    ),
    (
        "ntor_server",
        "server_handshake_with_keygen",
        "x25519_x2",
        Goal::MinThroughput(0.9),
    ),
    (
        "ntor_server",
        "server_handshake_with_keygen",
        "x25519_x2_plus_base",
        Goal::MinThroughput(0.9),
    ),
    (
        "cipher_backend_1280",
        "layer_cipher_seal",
        "ring_seal_in_place",
        Goal::None,
    ),
    (
        "circuit_build",
        "memnet_3_hops",
        "ntor_x3_both_sides",
        Goal::None,
    ),
];

fn format_time(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.3} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

/// Prints every comparison this run measured as a Markdown table.
fn print_ratios(dir: &Path, since: SystemTime) {
    let mut rows = Vec::new();
    for &(group, measured, baseline, goal) in COMPARISONS {
        let (Some(m), Some(b)) = (
            typical_time(dir, group, measured, since),
            typical_time(dir, group, baseline, since),
        ) else {
            continue;
        };
        let ratio = m / b;
        let (goal_text, met) = match goal {
            Goal::MaxTime(max) => (
                format!("time ≤ {max:.2}× baseline"),
                if ratio <= max { "yes" } else { "**no**" }.to_owned(),
            ),
            Goal::MinThroughput(min) => (
                format!("throughput ≥ {min:.2}× baseline"),
                format!(
                    "{} (throughput {:.2}×)",
                    if 1.0 / ratio >= min { "yes" } else { "**no**" },
                    1.0 / ratio
                ),
            ),
            Goal::None => ("—".to_owned(), "—".to_owned()),
        };
        rows.push(format!(
            "| {group} | {measured} | {} | {baseline} | {} | {ratio:.3}× | {goal_text} | {met} |",
            format_time(m),
            format_time(b),
        ));
    }
    if rows.is_empty() {
        println!("\n(no estimates written by this run: nothing to compare)");
        return;
    }
    println!("\nRatios against same-run baselines (time per iteration, criterion's estimate):\n");
    println!("| group | measured | time | baseline | time | ratio (time) | goal | met |");
    println!("|---|---|---|---|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
}

fn main() {
    let started = SystemTime::now();
    let dir = output_directory();
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .output_directory(&dir)
        .configure_from_args();
    client_seal(&mut criterion);
    relay_forward(&mut criterion);
    ntor_server(&mut criterion);
    cipher_backend(&mut criterion);
    circuit_build(&mut criterion);
    criterion.final_summary();
    print_ratios(&dir, started);
}
