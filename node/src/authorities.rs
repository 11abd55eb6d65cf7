//! The network's authorities file, shared by authorities, relays and
//! clients alike: who the directory authorities are (fingerprint and
//! address) and how many must sign a consensus.
//!
//! ```toml
//! threshold = 2
//! [[authority]]
//! id = "3f0c…"            # 64 hex digits
//! address = "198.18.0.11:7000"
//! ```

use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;
use trine_circuit::RelayId;
use trine_directory::AuthoritySet;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    threshold: usize,
    authority: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    id: String,
    address: SocketAddr,
}

/// One directory authority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Authority {
    /// Its signing key (fingerprint).
    pub id: RelayId,
    /// Its QUIC endpoint.
    pub address: SocketAddr,
}

/// The authorities and the signing threshold.
#[derive(Debug, Clone)]
pub struct Authorities {
    /// Every authority, in file order.
    pub list: Vec<Authority>,
    /// Their keys and the threshold, for verifying a consensus.
    pub set: AuthoritySet,
}

/// Why an authorities file was refused; the message names the file and the
/// field.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct AuthoritiesError {
    path: String,
    problem: String,
}

impl Authorities {
    /// Reads and validates an authorities file.
    pub fn load(path: &Path) -> Result<Self, AuthoritiesError> {
        let fail = |problem: String| AuthoritiesError {
            path: path.display().to_string(),
            problem,
        };
        let text = std::fs::read_to_string(path).map_err(|error| fail(error.to_string()))?;
        Self::parse(&text).map_err(fail)
    }

    /// Validates authorities-file text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: File = toml::from_str(text)
            .map_err(|error| error.to_string().trim_end().replace('\n', " "))?;
        let mut list = Vec::new();
        for (index, entry) in file.authority.iter().enumerate() {
            let id = RelayId::from_hex(&entry.id)
                .map_err(|_| format!("`authority[{index}].id` must be 64 hex digits"))?;
            list.push(Authority {
                id,
                address: entry.address,
            });
        }
        let set = AuthoritySet::new(list.iter().map(|a| a.id), file.threshold)
            .map_err(|error| format!("`threshold`: {error}"))?;
        if set.keys().len() != list.len() {
            return Err("an authority is listed twice".into());
        }
        Ok(Self { list, set })
    }

    /// The file text for `list` and `threshold`.
    pub fn render(list: &[Authority], threshold: usize) -> String {
        let mut text = format!(
            "# Trine directory authorities: fingerprint and address of each, and how\n\
             # many must sign a consensus (a strict majority).\nthreshold = {threshold}\n"
        );
        for authority in list {
            text.push_str(&format!(
                "\n[[authority]]\nid = \"{}\"\naddress = \"{}\"\n",
                authority.id, authority.address
            ));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn render_parses_back_and_bad_files_name_the_field() {
        let list: Vec<Authority> = (1..=3u8)
            .map(|i| Authority {
                id: RelayId::from_bytes([i; 32]),
                address: SocketAddr::from(([198, 18, 0, i], 7000)),
            })
            .collect();
        let parsed = Authorities::parse(&Authorities::render(&list, 2)).unwrap();
        assert_eq!(parsed.list, list);
        assert_eq!(parsed.set.threshold(), 2);
        let too_high = Authorities::render(&list, 4);
        assert!(
            Authorities::parse(&too_high)
                .unwrap_err()
                .contains("threshold")
        );
        let bad_id = "threshold = 1\n[[authority]]\nid = \"xyz\"\naddress = \"1.2.3.4:5\"\n";
        assert!(
            Authorities::parse(bad_id)
                .unwrap_err()
                .contains("authority[0].id")
        );
        assert!(Authorities::parse("threshold = 1\nauthority = []\nextra = 1\n").is_err());
    }
}
