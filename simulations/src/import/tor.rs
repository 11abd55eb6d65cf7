//! Tor network-status consensus documents (dir-spec
//! "network-status-consensus-3", text; the `ns` and `microdesc` flavours):
//! each router entry's `r`, `a`, `s`, `w` and `p` lines become a
//! [`Candidate`].
//! Headers, footer, signatures and every other line are ignored.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use trine_circuit::RelayId;
use trine_directory::{Candidate, Flag, Flags};

use super::{ImportError, ImportedRelay};

/// Fills the 12 bytes after a Tor identity's 20 in its [`RelayId`], so an
/// imported Tor relay can never share an identity with a generated one
/// (whose last 24 bytes are zero).
const TOR_ID_TAG: &[u8; 12] = b"tor-identity";

/// The [`RelayId`] a Tor relay is simulated under: its 20-byte identity
/// (RSA key digest) followed by `tor-identity`, so the id's fingerprint
/// starts with the relay's 40-digit Tor fingerprint (in lower case).
pub fn tor_relay_id(identity: &[u8; 20]) -> RelayId {
    let mut bytes = [0; 32];
    bytes[..20].copy_from_slice(identity);
    bytes[20..].copy_from_slice(TOR_ID_TAG);
    RelayId::from_bytes(bytes)
}

/// One router entry while its lines are read.
struct Entry {
    line: usize,
    nickname: String,
    identity: [u8; 20],
    /// The `r` line's IPv4 address, then those of its `a` lines.
    addresses: Vec<SocketAddr>,
    flags: Option<Vec<String>>,
    weight: Option<u64>,
    /// Whether the `p` summary lets port 80 or 443 out; `None` without one.
    general_policy: Option<bool>,
}

/// Parses a Tor consensus. The first line (after `@` annotations, as in
/// CollecTor files) must be `network-status-version 3` (optionally
/// `microdesc`). Every router entry needs one `r`, one `s` and one `w`
/// line with `Bandwidth=`; `p` is optional, and each `a` line adds an
/// address (`[IPv6]:port` in practice), which path selection's subnet
/// rule then counts as Tor's does. Flags: Guard, Exit, Running,
/// Valid, Stable and Fast are kept; BadExit removes Exit and MiddleOnly
/// removes Guard and Exit; the others are ignored. A relay is a general
/// exit only if it keeps Exit and its `p` summary (when there is one)
/// allows port 80 or 443.
pub fn parse_tor(text: &str) -> Result<Vec<ImportedRelay>, ImportError> {
    if text.trim().is_empty() {
        return Err(ImportError::Empty);
    }
    let mut lines = (1..)
        .zip(text.lines())
        .filter(|(_, line)| !line.trim().is_empty());
    let r_arguments = loop {
        match lines.next() {
            Some((_, line)) if line.starts_with('@') => continue,
            Some((number, line)) => break header(number, line)?,
            None => return Err(ImportError::Empty),
        }
    };
    let mut relays = Vec::new();
    let mut seen = HashSet::new();
    let mut entry: Option<Entry> = None;
    let mut in_object = false;
    for (number, line) in lines {
        if in_object {
            in_object = !line.starts_with("-----END ");
            continue;
        }
        if line.starts_with("-----BEGIN ") {
            in_object = true;
            continue;
        }
        let mut words = line.split([' ', '\t']).filter(|word| !word.is_empty());
        let keyword = words.next().unwrap_or("");
        let arguments: Vec<&str> = words.collect();
        match keyword {
            "r" => {
                if let Some(done) = entry.take() {
                    relays.push(finish(done)?);
                }
                let started = router(number, &arguments, r_arguments)?;
                if !seen.insert(started.identity) {
                    return bad(number, "a relay with this identity is already listed");
                }
                entry = Some(started);
            }
            "a" => {
                let Some(current) = entry.as_mut() else {
                    return bad(number, "`a` line outside a router entry");
                };
                let text = arguments.first().copied().unwrap_or("");
                let address = text.parse::<SocketAddr>().map_err(|_| {
                    line_error(
                        number,
                        format!("bad address `{text}` (expected `[IPv6]:port`)"),
                    )
                })?;
                if address.port() == 0 {
                    return bad(number, format!("bad port in `{text}`"));
                }
                current.addresses.push(address);
            }
            "s" | "w" | "p" => {
                let Some(current) = entry.as_mut() else {
                    return bad(number, format!("`{keyword}` line outside a router entry"));
                };
                match keyword {
                    "s" => set_once(&mut current.flags, flags(&arguments), number, "s")?,
                    "w" => set_once(
                        &mut current.weight,
                        weight(number, &arguments)?,
                        number,
                        "w",
                    )?,
                    _ => set_once(
                        &mut current.general_policy,
                        policy(number, &arguments)?,
                        number,
                        "p",
                    )?,
                }
            }
            "directory-footer" => break,
            _ => {}
        }
    }
    if let Some(done) = entry.take() {
        relays.push(finish(done)?);
    }
    if relays.is_empty() {
        return Err(ImportError::NoRelays);
    }
    Ok(relays)
}

/// Checks the version line; the number of `r` arguments of the flavour.
fn header(number: usize, line: &str) -> Result<usize, ImportError> {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["network-status-version", "3"] => Ok(8),
        ["network-status-version", "3", "microdesc"] => Ok(7),
        _ => bad(
            number,
            "not a Tor consensus: expected `network-status-version 3`",
        ),
    }
}

/// An `r` line: `nickname identity [digest] date time IP ORPort DirPort`
/// (the digest only in the `ns` flavour). Extra arguments are ignored.
fn router(number: usize, arguments: &[&str], expected: usize) -> Result<Entry, ImportError> {
    if arguments.len() < expected {
        return bad(
            number,
            format!(
                "`r` line has {} arguments, expected {expected}",
                arguments.len()
            ),
        );
    }
    let nickname = arguments.first().copied().unwrap_or("");
    if nickname.is_empty()
        || nickname.len() > 19
        || !nickname.chars().all(|c| c.is_ascii_alphanumeric())
    {
        return bad(number, format!("bad nickname `{nickname}`"));
    }
    let identity_text = arguments.get(1).copied().unwrap_or("");
    let identity = base64(identity_text)
        .and_then(|bytes| <[u8; 20]>::try_from(bytes).ok())
        .ok_or_else(|| line_error(number, format!("bad identity `{identity_text}`")))?;
    // IP, ORPort and DirPort are the last three of the expected arguments.
    let field = |index: usize| arguments.get(expected - 3 + index).copied().unwrap_or("");
    let ip: Ipv4Addr = field(0)
        .parse()
        .map_err(|_| line_error(number, format!("bad IPv4 address `{}`", field(0))))?;
    let or_port = match field(1).parse::<u16>() {
        Ok(port) if port > 0 => port,
        _ => return bad(number, format!("bad ORPort `{}`", field(1))),
    };
    if field(2).parse::<u16>().is_err() {
        return bad(number, format!("bad DirPort `{}`", field(2)));
    }
    Ok(Entry {
        line: number,
        nickname: nickname.to_owned(),
        identity,
        addresses: vec![SocketAddr::new(IpAddr::V4(ip), or_port)],
        flags: None,
        weight: None,
        general_policy: None,
    })
}

fn flags(arguments: &[&str]) -> Vec<String> {
    arguments.iter().map(|flag| (*flag).to_owned()).collect()
}

/// A `w` line: `Key=Value` pairs, of which `Bandwidth` is the weight.
fn weight(number: usize, arguments: &[&str]) -> Result<u64, ImportError> {
    let mut bandwidth = None;
    for argument in arguments {
        let Some((key, value)) = argument.split_once('=') else {
            return bad(
                number,
                format!("`w` argument `{argument}` is not Key=Value"),
            );
        };
        if key == "Bandwidth" && bandwidth.is_none() {
            bandwidth = Some(
                value
                    .parse::<u64>()
                    .map_err(|_| line_error(number, format!("bad Bandwidth `{value}`")))?,
            );
        }
    }
    bandwidth.ok_or_else(|| line_error(number, "`w` line without Bandwidth="))
}

/// A `p` line: `accept` or `reject` and a port list such as `80,443,1-1024`.
/// Whether it lets port 80 or 443 out.
fn policy(number: usize, arguments: &[&str]) -> Result<bool, ImportError> {
    let (accept, list) = match arguments {
        ["accept", list, ..] => (true, *list),
        ["reject", list, ..] => (false, *list),
        _ => return bad(number, "`p` line must be `p accept|reject PORTLIST`"),
    };
    let mut listed = [false; 2];
    for item in list.split(',') {
        let (first, last) = item.split_once('-').unwrap_or((item, item));
        let range = match (first.parse::<u16>(), last.parse::<u16>()) {
            (Ok(first), Ok(last)) if first >= 1 && first <= last => first..=last,
            _ => return bad(number, format!("bad port or range `{item}`")),
        };
        for (slot, port) in listed.iter_mut().zip([80, 443]) {
            *slot |= range.contains(&port);
        }
    }
    // An accept list lets a port out when it lists it; a reject list when
    // it does not.
    Ok(listed.contains(&accept))
}

/// The candidate for a complete entry.
fn finish(entry: Entry) -> Result<ImportedRelay, ImportError> {
    let nickname = &entry.nickname;
    let Some(names) = entry.flags else {
        return bad(entry.line, format!("relay `{nickname}` has no `s` line"));
    };
    let Some(weight) = entry.weight else {
        return bad(entry.line, format!("relay `{nickname}` has no `w` line"));
    };
    let has = |name: &str| names.iter().any(|flag| flag == name);
    let middle_only = has("MiddleOnly");
    let mut flags = Flags::NONE;
    for (name, flag) in [
        ("Running", Flag::Running),
        ("Valid", Flag::Valid),
        ("Stable", Flag::Stable),
        ("Fast", Flag::Fast),
    ] {
        if has(name) {
            flags = flags.with(flag);
        }
    }
    if has("Guard") && !middle_only {
        flags = flags.with(Flag::Guard);
    }
    let exit = has("Exit") && !has("BadExit") && !middle_only;
    if exit {
        flags = flags.with(Flag::Exit);
    }
    Ok(ImportedRelay {
        nickname: entry.nickname,
        relay: Candidate {
            id: tor_relay_id(&entry.identity),
            addresses: entry.addresses,
            family: Vec::new(),
            flags,
            weight,
            exit_allows_general: exit && entry.general_policy.unwrap_or(true),
        },
    })
}

fn set_once<T>(
    slot: &mut Option<T>,
    value: T,
    number: usize,
    keyword: &str,
) -> Result<(), ImportError> {
    if slot.is_some() {
        return bad(
            number,
            format!("second `{keyword}` line in one router entry"),
        );
    }
    *slot = Some(value);
    Ok(())
}

/// Decodes base64 (standard alphabet, padding optional, as Tor writes it
/// without). `None` on any other character or an impossible length.
fn base64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for byte in text.trim_end_matches('=').bytes() {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        buffer = (buffer << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    (bits < 6).then_some(out)
}

fn line_error(line: usize, reason: impl Into<String>) -> ImportError {
    ImportError::Line {
        line,
        reason: reason.into(),
    }
}

fn bad<T>(line: usize, reason: impl Into<String>) -> Result<T, ImportError> {
    Err(line_error(line, reason))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn base64_decodes_tor_identities_and_refuses_junk() {
        assert_eq!(base64("AAECAw").unwrap(), vec![0, 1, 2, 3]);
        assert_eq!(base64("AAECAw==").unwrap(), vec![0, 1, 2, 3]);
        assert_eq!(base64("/+8").unwrap(), vec![0xff, 0xef]);
        assert_eq!(base64("A"), None);
        assert_eq!(base64("AA*A"), None);
    }

    #[test]
    fn policy_summaries_count_ports_80_and_443() {
        assert!(policy(1, &["accept", "80,443"]).unwrap());
        assert!(policy(1, &["accept", "20-23,443"]).unwrap());
        assert!(!policy(1, &["accept", "22,6667"]).unwrap());
        assert!(!policy(1, &["reject", "1-65535"]).unwrap());
        assert!(!policy(1, &["reject", "80,443"]).unwrap());
        assert!(policy(1, &["reject", "25,80"]).unwrap());
        assert!(policy(1, &["reject", "x"]).is_err());
        assert!(policy(1, &["reject", "90-80"]).is_err());
        assert!(policy(1, &["allow", "80"]).is_err());
    }
}
