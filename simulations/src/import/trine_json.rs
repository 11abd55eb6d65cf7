//! Trine consensuses as `trine-dir show --json` prints them:
//! `{"valid_after":…, …, "relays":[{"identity":"<64 hex>", "nickname":…,
//! "addresses":["ip:port", …], "flags":["running", …], "weight":N,
//! "exit":bool, "onion_key":…}, …]}`. The consensus is not verified
//! (`show` does not verify either); keys other than those read are
//! ignored. The output carries no families, so none are imported.

use std::collections::HashSet;
use std::net::SocketAddr;

use trine_circuit::RelayId;
use trine_directory::{Candidate, Flag, Flags};

use serde_json::Value;

use super::{ImportError, ImportedRelay};

/// Parses the JSON of `trine-dir show --json`. Each relay needs
/// `identity`, `nickname`, `addresses`, `flags` (names as `Flag::name`),
/// `weight` and `exit` (whether its policy allows general traffic).
pub fn parse_trine_json(text: &str) -> Result<Vec<ImportedRelay>, ImportError> {
    if text.trim().is_empty() {
        return Err(ImportError::Empty);
    }
    let document: Value = serde_json::from_str(text).map_err(|error| ImportError::Syntax {
        line: error.line(),
        column: error.column(),
        reason: error.to_string(),
    })?;
    if !matches!(document, Value::Object(_)) {
        return Err(field("(document)", "expected an object"));
    }
    let Some(Value::Array(entries)) = document.get("relays") else {
        return Err(field("relays", "missing or not an array"));
    };
    if entries.is_empty() {
        return Err(ImportError::NoRelays);
    }
    let mut seen = HashSet::new();
    let mut relays = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let relay = relay(index, entry)?;
        if !seen.insert(relay.relay.id) {
            return Err(field(
                &format!("relays[{index}].identity"),
                "a relay with this identity is already listed",
            ));
        }
        relays.push(relay);
    }
    Ok(relays)
}

fn relay(index: usize, entry: &Value) -> Result<ImportedRelay, ImportError> {
    let path = |key: &str| format!("relays[{index}].{key}");
    let get = |key: &str| entry.get(key).ok_or_else(|| field(&path(key), "missing"));
    let identity = match get("identity")? {
        Value::String(hex) => {
            RelayId::from_hex(hex).map_err(|_| field(&path("identity"), "not 64 hex digits"))?
        }
        _ => return Err(field(&path("identity"), "not a string")),
    };
    let Value::String(nickname) = get("nickname")? else {
        return Err(field(&path("nickname"), "not a string"));
    };
    let mut addresses = Vec::new();
    for item in array(get("addresses")?, &path("addresses"))? {
        let address = match item {
            Value::String(text) => text.parse::<SocketAddr>().ok(),
            _ => None,
        };
        addresses.push(address.ok_or_else(|| field(&path("addresses"), "not ip:port"))?);
    }
    let mut flags = Flags::NONE;
    for item in array(get("flags")?, &path("flags"))? {
        let known = match item {
            Value::String(name) => Flag::ALL.into_iter().find(|flag| flag.name() == *name),
            _ => None,
        };
        flags = flags.with(known.ok_or_else(|| field(&path("flags"), "unknown flag"))?);
    }
    let weight = get("weight")?
        .as_u64()
        .ok_or_else(|| field(&path("weight"), "not a non-negative integer"))?;
    let Value::Bool(exit) = get("exit")? else {
        return Err(field(&path("exit"), "not true or false"));
    };
    Ok(ImportedRelay {
        nickname: nickname.clone(),
        relay: Candidate {
            id: identity,
            addresses,
            family: Vec::new(),
            flags,
            weight,
            exit_allows_general: *exit,
        },
    })
}

fn array<'a>(value: &'a Value, at: &str) -> Result<&'a [Value], ImportError> {
    match value {
        Value::Array(items) => Ok(items),
        _ => Err(field(at, "not an array")),
    }
}

fn field(at: &str, reason: &str) -> ImportError {
    ImportError::Field {
        field: at.to_owned(),
        reason: reason.to_owned(),
    }
}
