//! `trine-dir show`: a consensus for people (a table) or programs (JSON),
//! without verifying it. Nicknames are ASCII letters and digits, so the
//! JSON needs no escaping beyond what is written here.

use std::fmt::Write;

use trine_directory::UnverifiedConsensus;

/// Renders the consensus as a table, or as JSON when `json`.
pub fn render(consensus: &UnverifiedConsensus, json: bool) -> String {
    let body = consensus.inspect();
    let period = body.period();
    let mut out = String::new();
    if json {
        let _ = write!(
            out,
            "{{\"valid_after\":{},\"fresh_until\":{},\"valid_until\":{},\"digest\":\"{}\",\"signers\":[{}],\"relays\":[",
            period.valid_after,
            period.fresh_until,
            period.valid_until,
            consensus.digest().to_hex(),
            consensus
                .signatures()
                .iter()
                .map(|s| format!("\"{}\"", s.authority))
                .collect::<Vec<_>>()
                .join(",")
        );
        for (index, relay) in body.relays().iter().enumerate() {
            let _ = write!(
                out,
                "{}{{\"identity\":\"{}\",\"nickname\":\"{}\",\"addresses\":[{}],\"flags\":[{}],\"weight\":{},\"exit\":{},\"onion_key\":\"{}\"}}",
                if index == 0 { "" } else { "," },
                relay.identity,
                json_text(&relay.nickname),
                relay
                    .addresses
                    .iter()
                    .map(|a| format!("\"{a}\""))
                    .collect::<Vec<_>>()
                    .join(","),
                relay
                    .flags
                    .iter()
                    .map(|f| format!("\"{}\"", f.name()))
                    .collect::<Vec<_>>()
                    .join(","),
                relay.weight,
                relay.exit.allows_general,
                relay.onion_key.to_hex(),
            );
        }
        out.push_str("]}\n");
        return out;
    }
    let _ = writeln!(
        out,
        "valid after {} · fresh until {} · valid until {} · {} relays · {} signatures · digest {}",
        period.valid_after,
        period.fresh_until,
        period.valid_until,
        body.relays().len(),
        consensus.signatures().len(),
        consensus.digest().to_hex()
    );
    for relay in body.relays() {
        let flags: Vec<&str> = relay.flags.iter().map(|f| f.name()).collect();
        let addresses: Vec<String> = relay.addresses.iter().map(ToString::to_string).collect();
        let _ = writeln!(
            out,
            "{}  {:<19}  {:<24}  weight {:>10}  {}",
            &relay.identity.to_string()[..16],
            relay.nickname,
            addresses.join(","),
            relay.weight,
            flags.join(",")
        );
    }
    out
}

/// Keeps JSON string content safe whatever a document says.
fn json_text(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}
