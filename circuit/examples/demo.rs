//! `make demo` (for now): a three-hop Trine circuit between one client and
//! three relays, all in this process and joined by in-memory queues, built
//! with fresh random keys; real packets go through it both ways, and a
//! tampered and a replayed cell are shown to be dropped. The network
//! namespace demo replaces this once the daemons exist.

use std::time::Instant;

use rand::rngs::OsRng;
use trine_circuit::memnet::{MemNet, Outcome};
use trine_circuit::{
    ClientCircuit, ClientConfig, HopSpec, IdentityKey, OnionSecretKey, RelayConfig, RelayTable,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let names = ["guard", "middle", "exit"];
    let mut path = Vec::new();
    let mut tables = Vec::new();
    let mut ids = Vec::new();
    for (index, name) in names.iter().enumerate() {
        let identity = IdentityKey::generate(&mut OsRng);
        let onion = OnionSecretKey::generate(&mut OsRng);
        let address = format!("198.18.0.{}:443", index + 1).parse()?;
        println!("{name:>6}  {}  {address}", identity.relay_id());
        path.push(HopSpec {
            id: identity.relay_id(),
            onion_key: onion.public_key(),
            addresses: vec![address],
        });
        let config = RelayConfig {
            exit: index == names.len() - 1,
            ..RelayConfig::default()
        };
        ids.push(identity.relay_id());
        tables.push(RelayTable::new(
            identity.relay_id(),
            vec![onion],
            config,
            OsRng,
        ));
    }

    let started = Instant::now();
    let client = ClientCircuit::new(path, &ClientConfig::default(), started, &mut OsRng)?;
    let mut net = MemNet::new(client, tables, ids);
    net.run(started);
    println!(
        "circuit {:?} in {:?}",
        net.client.state(),
        started.elapsed()
    );

    let packets: Vec<Vec<u8>> = (0..1000u32)
        .map(|i| i.to_be_bytes().repeat(1 + (i as usize % 320)))
        .collect();
    let sending = Instant::now();
    for packet in &packets {
        net.client_send(packet);
    }
    net.run(Instant::now());
    let Some(&(exit, circuit, _)) = net.exited.first() else {
        return Err("nothing reached the exit".into());
    };
    for packet in &packets {
        net.exit_send(exit, circuit, packet);
    }
    net.run(Instant::now());
    let out_ok = net.exited.iter().map(|(_, _, p)| p).eq(packets.iter());
    let back_ok = net.received.iter().eq(packets.iter());
    println!(
        "{} packets out through the exit ({}), {} back to the client ({}), in {:?}",
        net.exited.len(),
        if out_ok { "byte-exact" } else { "MISMATCH" },
        net.received.len(),
        if back_ok { "byte-exact" } else { "MISMATCH" },
        sending.elapsed()
    );

    net.client_send(b"tamper with me");
    let mut cell = net.pop().ok_or("no cell")?;
    let original = cell.clone();
    cell.bytes[20] ^= 1;
    let tampered = net.deliver(Instant::now(), cell);
    let first = net.deliver(Instant::now(), original.clone());
    let replayed = net.deliver(Instant::now(), original);
    println!("tampered cell: {tampered:?}; original: {first:?}; replayed: {replayed:?}");

    let dropped_ok = tampered != Outcome::Accepted && replayed != Outcome::Accepted;
    if out_ok && back_ok && dropped_ok && first == Outcome::Accepted {
        println!("demo OK");
        Ok(())
    } else {
        Err("demo failed".into())
    }
}
