//! Which links count as links to a relay, for the exit's one-hop rule.
//! Sans-IO: the daemon reports each link whose peer proved an identity
//! (dialled or accepted alike) with the address it came from, and feeds in
//! the held consensus whenever it changes; the answers go to
//! [`trine_circuit::RelayTable::set_link_is_relay`].
//!
//! Proving an identity proves nothing by itself: anyone can make a key. A
//! peer counts as a relay only if its identity is one the operator trusts
//! by configuration (`[circuits] trusted_relays`, for networks without a
//! directory) or the held consensus lists it with the link's remote IP
//! among its addresses (Tor's rule). With neither, nothing counts, so an
//! exit that holds no consensus carries no DATA.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use trine_circuit::RelayId;
use trine_circuit::relay::LinkId;

/// What [`RelayPeers::link_up`] decided about a new link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkVerdict {
    /// Circuits from it may send DATA out of this exit.
    pub is_relay: bool,
    /// Its identity is not in the consensus held (nor an authority's):
    /// fetch one soon, it may be a relay newer than that consensus.
    pub fetch_soon: bool,
}

/// A link whose peer proved an identity.
#[derive(Debug, Clone, Copy)]
struct Peer {
    identity: RelayId,
    ip: IpAddr,
    is_relay: bool,
}

/// The links whose peer proved an identity, and whether each counts as a
/// relay.
#[derive(Debug)]
pub struct RelayPeers {
    trusted: BTreeSet<RelayId>,
    /// The directory authorities: known, so their links (reachability
    /// tests, uploads) are no news for the consensus.
    authorities: BTreeSet<RelayId>,
    links: BTreeMap<LinkId, Peer>,
}

impl RelayPeers {
    /// Peers are relays if listed, or if in `trusted`; `authorities`, if
    /// not listed, are not waiting to be (see [`RelayPeers::link_up`]).
    pub fn new(
        trusted: impl IntoIterator<Item = RelayId>,
        authorities: impl IntoIterator<Item = RelayId>,
    ) -> Self {
        Self {
            trusted: trusted.into_iter().collect(),
            authorities: authorities.into_iter().collect(),
            links: BTreeMap::new(),
        }
    }

    /// Whether `identity`, connected from `ip`, is a relay, given where
    /// the held consensus lists it (`None`: not listed, or none held).
    fn is_relay(&self, identity: &RelayId, ip: IpAddr, listed: Option<&[SocketAddr]>) -> bool {
        let ip = ip.to_canonical();
        self.trusted.contains(identity)
            || listed.is_some_and(|listed| {
                listed
                    .iter()
                    .any(|address| address.ip().to_canonical() == ip)
            })
    }

    /// `link` came up from `identity` at `remote`; `listed` as in the
    /// held consensus. Returns whether it counts as a relay, and whether a
    /// fresher consensus might change that (an identity it does not list
    /// that is not an authority's: a relay newer than the consensus held).
    /// Asked once per link, so an impostor holding links open cannot keep
    /// the consensus being fetched.
    pub fn link_up(
        &mut self,
        link: LinkId,
        identity: RelayId,
        remote: SocketAddr,
        listed: Option<&[SocketAddr]>,
    ) -> LinkVerdict {
        let ip = remote.ip();
        let is_relay = self.is_relay(&identity, ip, listed);
        self.links.insert(
            link,
            Peer {
                identity,
                ip,
                is_relay,
            },
        );
        LinkVerdict {
            is_relay,
            fetch_soon: !is_relay && listed.is_none() && !self.authorities.contains(&identity),
        }
    }

    /// Forgets a closed link.
    pub fn link_down(&mut self, link: LinkId) {
        self.links.remove(&link);
    }

    /// Decides every link again against a new consensus (`listed` gives
    /// where it lists an identity). Returns the links whose answer changed,
    /// with the new one.
    pub fn reconsider(
        &mut self,
        listed: impl Fn(&RelayId) -> Option<Vec<SocketAddr>>,
    ) -> Vec<(LinkId, bool)> {
        let mut changed = Vec::new();
        let decided: Vec<(LinkId, bool)> = self
            .links
            .iter()
            .map(|(link, peer)| {
                let listed = listed(&peer.identity);
                (
                    *link,
                    self.is_relay(&peer.identity, peer.ip, listed.as_deref()),
                )
            })
            .collect();
        for (link, is_relay) in decided {
            if let Some(peer) = self.links.get_mut(&link) {
                if peer.is_relay != is_relay {
                    peer.is_relay = is_relay;
                    changed.push((link, is_relay));
                }
            }
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn id(byte: u8) -> RelayId {
        RelayId::from_bytes([byte; 32])
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    fn verdict(is_relay: bool, fetch_soon: bool) -> LinkVerdict {
        LinkVerdict {
            is_relay,
            fetch_soon,
        }
    }

    #[test]
    fn a_peer_is_a_relay_only_if_listed_at_the_links_address_or_trusted() {
        let mut peers = RelayPeers::new([id(9)], [id(7)]);
        let listed = [addr("198.18.0.5:9001"), addr("[2001:db8::5]:9001")];
        let relay = verdict(true, false);
        // Listed, from a listed IP (any source port; IPv4-mapped too).
        assert_eq!(
            peers.link_up(1, id(1), addr("198.18.0.5:40000"), Some(&listed)),
            relay
        );
        assert_eq!(
            peers.link_up(2, id(1), addr("[::ffff:198.18.0.5]:1"), Some(&listed)),
            relay
        );
        assert_eq!(
            peers.link_up(3, id(1), addr("[2001:db8::5]:2"), Some(&listed)),
            relay
        );
        // Listed, but from elsewhere: someone else's address, or its key
        // used from another machine. The consensus knows it: no fetch.
        assert_eq!(
            peers.link_up(4, id(1), addr("198.18.0.2:40000"), Some(&listed)),
            verdict(false, false)
        );
        // A fresh identity, or no consensus held: maybe a newer relay.
        assert_eq!(
            peers.link_up(5, id(2), addr("198.18.0.2:40000"), None),
            verdict(false, true)
        );
        // Trusted by configuration: from anywhere.
        assert_eq!(
            peers.link_up(6, id(9), addr("198.18.0.2:40000"), None),
            relay
        );
        // An authority testing reachability: not a relay, and no reason to
        // fetch the consensus again.
        assert_eq!(
            peers.link_up(7, id(7), addr("198.18.0.11:40000"), None),
            verdict(false, false)
        );
    }

    #[test]
    fn a_newer_consensus_changes_the_links_it_decides_differently() {
        let mut peers = RelayPeers::new([], []);
        let middle = [addr("198.18.0.5:9001")];
        let other = [addr("198.18.0.6:9001")];
        assert!(!peers.link_up(1, id(1), addr("198.18.0.5:1"), None).is_relay);
        assert!(
            peers
                .link_up(2, id(2), addr("198.18.0.6:1"), Some(&other))
                .is_relay
        );
        // The middle is listed now; the other relay still is.
        let both = |who: &RelayId| match who.as_bytes()[0] {
            1 => Some(middle.to_vec()),
            2 => Some(other.to_vec()),
            _ => None,
        };
        assert_eq!(peers.reconsider(both), vec![(1, true)]);
        assert_eq!(peers.reconsider(both), vec![]);
        // Delisted (or the consensus is gone): both stop counting.
        assert_eq!(peers.reconsider(|_| None), vec![(1, false), (2, false)]);
    }
}
