//! The exit's DNS screen, without I/O: which client queries may go to the
//! upstream resolver, and which upstream answers may go back. It keeps the
//! forwarder from being a window into the exit's own networks:
//! - refused (RCODE REFUSED, built here): reverse lookups inside reserved
//!   networks (`10.in-addr.arpa`, `d.f.ip6.arpa`, ...), special-use and
//!   private names (`.local`, `.internal`, `.lan`, `_gateway`, this host's
//!   name, ...), classes other than IN, zone transfers, opcodes other
//!   than QUERY; FORMERR for a query with no single readable question;
//! - answers with an A or AAAA record (or an SVCB/HTTPS address hint) in a
//!   reserved network are replaced by SERVFAIL (DNS rebinding into the
//!   exit's networks), as are answers that cannot be read; answers that are
//!   not for the query asked (ID or question differ) are dropped.
//!
//! The screen counts what it does ([`DnsStats`]); it is shared with the
//! tasks that await upstream answers, so its counters are atomic.
//! Everything here reads untrusted bytes: every read is bounds-checked and
//! nothing panics.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};

use super::policy::Cidr;

/// DNS header length.
const HEADER_LEN: usize = 12;
/// Longest name on the wire (RFC 1035 §2.3.4).
const NAME_MAX: usize = 255;
const CLASS_IN: u16 = 1;
const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const TYPE_SVCB: u16 = 64;
const TYPE_HTTPS: u16 = 65;
/// Zone transfers: IXFR, AXFR, and the obsolete MAILB and MAILA.
const TRANSFER_TYPES: [u16; 4] = [251, 252, 253, 254];
/// SVCB parameters holding addresses (RFC 9460 §7.3).
const IPV4_HINT: u16 = 4;
const IPV6_HINT: u16 = 6;

const RCODE_FORMERR: u8 = 1;
const RCODE_SERVFAIL: u8 = 2;
const RCODE_REFUSED: u8 = 5;

/// Names (and everything under them) never asked upstream: special-use
/// names (RFC 6761, RFC 6762 `.local`, RFC 8375 `home.arpa`, RFC 7686
/// `.onion`), the private-use `.internal` (ICANN, 2024) that clouds use for
/// their hosts, names ICANN never delegates because private networks use
/// them (`lan`, `home`, `corp`, `intranet`, `private`, `localdomain`), and
/// the names systemd-resolved answers itself with this host's addresses.
const SPECIAL_NAMES: &[&str] = &[
    "localhost",
    "local",
    "localdomain",
    "internal",
    "home.arpa",
    "lan",
    "home",
    "corp",
    "intranet",
    "private",
    "onion",
    "_gateway",
    "_outbound",
    "_localdnsstub",
    "_localdnsproxy",
];

/// Why the screen answered a query itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Not one readable question: answered FORMERR.
    Malformed,
    /// A reverse lookup inside a reserved network.
    PrivateReverse,
    /// A special-use or private name, or this host's.
    PrivateName,
    /// Not a plain IN-class query (other class or opcode, zone transfer).
    NotAQuery,
}

impl Refused {
    /// Every reason, in the order of [`DnsStats::refused`].
    pub const ALL: [Refused; 4] = [
        Refused::Malformed,
        Refused::PrivateReverse,
        Refused::PrivateName,
        Refused::NotAQuery,
    ];

    /// The reason's metric label.
    pub fn name(self) -> &'static str {
        match self {
            Refused::Malformed => "malformed",
            Refused::PrivateReverse => "private_reverse",
            Refused::PrivateName => "private_name",
            Refused::NotAQuery => "not_a_query",
        }
    }
}

/// What the screen did, counted since start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsStats {
    /// Queries answered by the screen itself, by [`Refused::ALL`] index.
    pub refused: [u64; 4],
    /// Upstream answers replaced by SERVFAIL (reserved addresses in them,
    /// or unreadable).
    pub servfail: u64,
    /// Upstream answers dropped as not for the query asked.
    pub mismatched: u64,
}

/// The screen of one exit.
#[derive(Debug)]
pub struct DnsScreen {
    /// Names refused with everything under them, as lowercase labels.
    names: Vec<Vec<Vec<u8>>>,
    reserved: Vec<Cidr>,
    allowed: Vec<Cidr>,
    refused: [AtomicU64; 4],
    servfail: AtomicU64,
    mismatched: AtomicU64,
}

/// A query's question: where it lies in the query, and its parts.
struct Question {
    /// `HEADER_LEN..end` of the query.
    end: usize,
    /// Lowercase labels, leftmost first.
    labels: Vec<Vec<u8>>,
    qtype: u16,
    qclass: u16,
}

impl DnsScreen {
    /// Refuses `reserved` networks except `allowed` ones (the exit
    /// policy's), the special names, and `host_name` (this host's) with
    /// its first label.
    pub fn new(reserved: Vec<Cidr>, allowed: Vec<Cidr>, host_name: Option<&str>) -> Self {
        let mut names: Vec<Vec<Vec<u8>>> = SPECIAL_NAMES.iter().map(|name| labels(name)).collect();
        if let Some(host) = host_name.map(str::trim).filter(|host| !host.is_empty()) {
            let host = labels(host.trim_end_matches('.'));
            if host.len() > 1 {
                names.extend(host.first().map(|first| vec![first.clone()]));
            }
            names.push(host);
        }
        Self {
            names,
            reserved,
            allowed,
            refused: Default::default(),
            servfail: AtomicU64::new(0),
            mismatched: AtomicU64::new(0),
        }
    }

    /// The counters, as of now.
    pub fn stats(&self) -> DnsStats {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        DnsStats {
            refused: self.refused.each_ref().map(read),
            servfail: read(&self.servfail),
            mismatched: read(&self.mismatched),
        }
    }

    /// Screens a client's query: `Ok` to forward it, or `Err` with the
    /// reply to send the client instead (`None`: drop it, it is no query).
    pub fn query(&self, query: &[u8]) -> Result<(), Option<(Refused, Vec<u8>)>> {
        let verdict = self.screen_query(query);
        if let Err(Some((why, _))) = &verdict {
            self.refused[*why as usize].fetch_add(1, Ordering::Relaxed);
        }
        verdict
    }

    fn screen_query(&self, query: &[u8]) -> Result<(), Option<(Refused, Vec<u8>)>> {
        let header = query.get(..HEADER_LEN).ok_or(None)?;
        let flags = be16(header, 2).ok_or(None)?;
        if flags & 0x8000 != 0 {
            return Err(None);
        }
        let Some(question) = read_question(query) else {
            return Err(Some((
                Refused::Malformed,
                reply(query, None, RCODE_FORMERR),
            )));
        };
        let opcode = (flags >> 11) & 0xf;
        let refused = if opcode != 0
            || question.qclass != CLASS_IN
            || TRANSFER_TYPES.contains(&question.qtype)
        {
            Some(Refused::NotAQuery)
        } else if self.private_reverse(&question.labels) {
            Some(Refused::PrivateReverse)
        } else if self
            .names
            .iter()
            .any(|name| ends_with(&question.labels, name))
        {
            Some(Refused::PrivateName)
        } else {
            None
        };
        match refused {
            None => Ok(()),
            Some(why) => Err(Some((why, reply(query, Some(&question), RCODE_REFUSED)))),
        }
    }

    /// Screens the upstream's `answer` to `query` (one [`DnsScreen::query`]
    /// let through): the bytes to give the client — the answer itself, or
    /// SERVFAIL when it points into a reserved network or cannot be read —
    /// or `None` when it is no answer to this query.
    pub fn answer(&self, query: &[u8], answer: &[u8]) -> Option<Vec<u8>> {
        let Some((question, clean)) = self.judge(query, answer) else {
            self.mismatched.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        if clean {
            return Some(answer.to_vec());
        }
        // Rebinding: SERVFAIL rather than silence (the client's stub gives
        // up at once instead of retrying for seconds) and rather than the
        // answer minus its bad records (nothing of the upstream's answer
        // reaches the client: no TTLs, no partial record sets a client
        // might cache). Unreadable answers alike.
        self.servfail.fetch_add(1, Ordering::Relaxed);
        Some(reply(query, Some(&question), RCODE_SERVFAIL))
    }

    /// `None` if `answer` is not for `query`; else its question and whether
    /// its records are clean (readable, none in a reserved network).
    fn judge(&self, query: &[u8], answer: &[u8]) -> Option<(Question, bool)> {
        let question = read_question(query)?;
        let answer_header = answer.get(..HEADER_LEN)?;
        let flags = be16(answer_header, 2)?;
        let same_question = answer.get(HEADER_LEN..question.end).is_some_and(|asked| {
            asked.eq_ignore_ascii_case(query.get(HEADER_LEN..question.end).unwrap_or_default())
        });
        if answer_header.get(..2) != query.get(..2)
            || flags & 0x8000 == 0
            || be16(answer_header, 4) != Some(1)
            || !same_question
        {
            return None;
        }
        let clean = self.records_clean(answer, question.end) == Some(true);
        Some((question, clean))
    }

    /// Whether every record after the question (ending at `at`) points
    /// outside reserved networks; `None` if the records cannot be read.
    fn records_clean(&self, answer: &[u8], mut at: usize) -> Option<bool> {
        let mut records = 0usize;
        for count_at in [6, 8, 10] {
            records += usize::from(be16(answer, count_at)?);
        }
        for _ in 0..records {
            at = skip_name(answer, at)?;
            let rtype = be16(answer, at)?;
            let class = be16(answer, at + 2)?;
            let length = usize::from(be16(answer, at + 8)?);
            let start = at.checked_add(10)?;
            let end = start.checked_add(length)?;
            let data = answer.get(start..end)?;
            at = end;
            if class != CLASS_IN {
                continue;
            }
            let clean = match rtype {
                TYPE_A | TYPE_AAAA => address(data).is_some_and(|ip| !self.blocked(ip)),
                TYPE_SVCB | TYPE_HTTPS => self.hints_clean(data)?,
                _ => true,
            };
            if !clean {
                return Some(false);
            }
        }
        Some(true)
    }

    /// Whether the address hints of SVCB/HTTPS record data are all
    /// outside reserved networks; `None` if it cannot be read.
    fn hints_clean(&self, data: &[u8]) -> Option<bool> {
        // Priority, then the target name (never compressed, RFC 9460).
        let mut at = skip_name(data, 2)?;
        while at < data.len() {
            let key = be16(data, at)?;
            let length = usize::from(be16(data, at + 2)?);
            let value = data.get(at + 4..at.checked_add(4 + length)?)?;
            at += 4 + length;
            let size = match key {
                IPV4_HINT => 4,
                IPV6_HINT => 16,
                _ => continue,
            };
            if value.is_empty() || value.len() % size != 0 {
                return None;
            }
            if value
                .chunks(size)
                .filter_map(address)
                .any(|ip| self.blocked(ip))
            {
                return Some(false);
            }
        }
        Some(true)
    }

    /// Whether `ip` is in a reserved network the operator did not allow.
    fn blocked(&self, ip: IpAddr) -> bool {
        self.reserved.iter().any(|net| net.contains(ip))
            && !self.allowed.iter().any(|net| net.contains(ip))
    }

    /// Whether `labels` name a reverse zone overlapping a reserved
    /// network (not wholly inside an allowed one). Names in a reverse
    /// tree that spell no address are refused too.
    fn private_reverse(&self, labels: &[Vec<u8>]) -> bool {
        let Some(prefix) = reverse_prefix(labels) else {
            return false;
        };
        let Some(prefix) = prefix else {
            return true;
        };
        let overlaps = |net: &Cidr| {
            (net.prefix <= prefix.prefix && net.contains(prefix.addr))
                || (prefix.prefix <= net.prefix && prefix.contains(net.addr))
        };
        let inside_allowed = self
            .allowed
            .iter()
            .any(|net| net.prefix <= prefix.prefix && net.contains(prefix.addr));
        self.reserved.iter().any(overlaps) && !inside_allowed
    }
}

/// For a name under `in-addr.arpa` or `ip6.arpa`: `Some(Some(prefix))`
/// spelled by its address labels (those nearest the zone; labels further
/// left, like `_dns-sd._udp`, are ignored), `Some(None)` if they spell no
/// address. `None` for other names.
fn reverse_prefix(labels: &[Vec<u8>]) -> Option<Option<Cidr>> {
    let parts = if ends_with(labels, &labels_of(b"in-addr.arpa")) {
        4
    } else if ends_with(labels, &labels_of(b"ip6.arpa")) {
        32
    } else {
        return None;
    };
    let digits = labels.get(..labels.len().saturating_sub(2))?;
    let mut value: u128 = 0;
    let mut count = 0u8;
    for label in digits.iter().rev().take(parts) {
        let part = if parts == 4 {
            std::str::from_utf8(label).ok().and_then(|text| {
                let ok =
                    !text.is_empty() && text.len() <= 3 && text.bytes().all(|b| b.is_ascii_digit());
                ok.then(|| text.parse::<u8>().ok()).flatten()
            })
        } else {
            match label.as_slice() {
                [digit] => (*digit as char)
                    .to_digit(16)
                    .and_then(|d| u8::try_from(d).ok()),
                _ => None,
            }
        };
        let Some(part) = part else {
            break;
        };
        value = (value << if parts == 4 { 8 } else { 4 }) | u128::from(part);
        count += 1;
    }
    let address_bits: u8 = if parts == 4 { 32 } else { 128 };
    let bits = count * if parts == 4 { 8 } else { 4 };
    let shifted = value
        .checked_shl(u32::from(address_bits - bits))
        .unwrap_or(0);
    let addr = if parts == 4 {
        IpAddr::V4(Ipv4Addr::from(u32::try_from(shifted).ok()?))
    } else {
        IpAddr::V6(Ipv6Addr::from(shifted))
    };
    // Leftover labels that are not address parts (beyond the ignored
    // service labels) make it no address: e.g. `x.10.in-addr.arpa` is
    // still 10/8, but `x.in-addr.arpa` is nothing.
    if count == 0 && !digits.is_empty() {
        return Some(None);
    }
    Some(Cidr::new(addr, bits))
}

/// A reply to `query` with `rcode`: its ID, opcode and RD flag, QR and RA
/// set, and its question when readable; no records.
fn reply(query: &[u8], question: Option<&Question>, rcode: u8) -> Vec<u8> {
    let id = query.get(..2).unwrap_or(&[0, 0]);
    let flags = be16(query, 2).unwrap_or(0);
    let opcode_and_rd = flags & 0x7900;
    let reply_flags = 0x8000 | opcode_and_rd | 0x0080 | u16::from(rcode);
    let mut out = Vec::with_capacity(HEADER_LEN + NAME_MAX + 4);
    out.extend_from_slice(id);
    out.extend_from_slice(&reply_flags.to_be_bytes());
    let echoed = question.and_then(|q| query.get(HEADER_LEN..q.end));
    out.extend_from_slice(&u16::from(echoed.is_some()).to_be_bytes());
    out.extend_from_slice(&[0; 6]);
    out.extend_from_slice(echoed.unwrap_or_default());
    out
}

/// The single question of a query, if it has exactly one, readable and
/// uncompressed (a pointer in a query's only question is malformed).
fn read_question(query: &[u8]) -> Option<Question> {
    if be16(query, 4)? != 1 {
        return None;
    }
    let mut at = HEADER_LEN;
    let mut labels = Vec::new();
    loop {
        let length = usize::from(*query.get(at)?);
        at += 1;
        if length == 0 {
            break;
        }
        if length > 63 || at + length - HEADER_LEN > NAME_MAX {
            return None;
        }
        labels.push(query.get(at..at + length)?.to_ascii_lowercase());
        at += length;
    }
    Some(Question {
        end: at + 4,
        labels,
        qtype: be16(query, at)?,
        qclass: be16(query, at + 2)?,
    })
}

/// The offset after the (possibly compressed) name at `at`. Pointers are
/// not followed: a pointer ends the name in place.
fn skip_name(message: &[u8], mut at: usize) -> Option<usize> {
    let start = at;
    loop {
        let length = *message.get(at)?;
        match length & 0xc0 {
            0xc0 => return message.get(at + 1).map(|_| at + 2),
            0x00 if length == 0 => return Some(at + 1),
            0x00 => {
                at += 1 + usize::from(length);
                if at - start > NAME_MAX {
                    return None;
                }
            }
            _ => return None,
        }
    }
}

/// The address in A (4 bytes) or AAAA (16 bytes) record data.
fn address(data: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(data) {
        return Some(Ipv4Addr::from(v4).into());
    }
    <[u8; 16]>::try_from(data)
        .ok()
        .map(|v6| Ipv6Addr::from(v6).into())
}

fn be16(bytes: &[u8], at: usize) -> Option<u16> {
    let pair = bytes.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([*pair.first()?, *pair.get(1)?]))
}

/// Lowercase labels of a dotted name.
fn labels(name: &str) -> Vec<Vec<u8>> {
    labels_of(name.as_bytes())
}

fn labels_of(name: &[u8]) -> Vec<Vec<u8>> {
    name.split(|b| *b == b'.')
        .filter(|label| !label.is_empty())
        .map(<[u8]>::to_ascii_lowercase)
        .collect()
}

/// Whether `name` is `suffix` or under it.
fn ends_with(name: &[Vec<u8>], suffix: &[Vec<u8>]) -> bool {
    !suffix.is_empty() && name.ends_with(suffix)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use crate::exit::policy::reserved_networks;
    use rand::{Rng, SeedableRng};

    const ID: [u8; 2] = [0xbe, 0xef];

    fn screen() -> DnsScreen {
        let allowed = vec!["10.9.0.0/16".parse().unwrap()];
        DnsScreen::new(reserved_networks(), allowed, Some("exit7.example.net"))
    }

    fn name(text: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for label in text.split('.').filter(|l| !l.is_empty()) {
            out.push(u8::try_from(label.len()).unwrap());
            out.extend_from_slice(label.as_bytes());
        }
        out.push(0);
        out
    }

    fn query_with(flags: u16, qname: &str, qtype: u16, qclass: u16) -> Vec<u8> {
        let mut out = ID.to_vec();
        out.extend_from_slice(&flags.to_be_bytes());
        out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
        out.extend_from_slice(&name(qname));
        out.extend_from_slice(&qtype.to_be_bytes());
        out.extend_from_slice(&qclass.to_be_bytes());
        out
    }

    fn query(qname: &str, qtype: u16) -> Vec<u8> {
        query_with(0x0100, qname, qtype, CLASS_IN)
    }

    /// An answer to `query` carrying `records` (type, data), each named
    /// by a pointer to the question.
    fn answer(query: &[u8], records: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut out = query.to_vec();
        out[2] |= 0x80;
        out[3] |= 0x80;
        out[6..8].copy_from_slice(&u16::try_from(records.len()).unwrap().to_be_bytes());
        for (rtype, data) in records {
            out.extend_from_slice(&[0xc0, 12]);
            out.extend_from_slice(&rtype.to_be_bytes());
            out.extend_from_slice(&CLASS_IN.to_be_bytes());
            out.extend_from_slice(&300u32.to_be_bytes());
            out.extend_from_slice(&u16::try_from(data.len()).unwrap().to_be_bytes());
            out.extend_from_slice(data);
        }
        out
    }

    fn rcode(message: &[u8]) -> u8 {
        message[3] & 0xf
    }

    fn refused(query: &[u8]) -> Refused {
        let Err(Some((why, reply))) = screen().query(query) else {
            panic!("not refused");
        };
        // A well-formed reply: same ID, opcode and RD, QR and RA set, the
        // question echoed, no records.
        assert_eq!(reply[..2], ID);
        assert_eq!(reply[2] & 0x80, 0x80, "QR");
        assert_eq!(reply[2] & 0x79, query[2] & 0x79, "opcode and RD as asked");
        assert_eq!(reply[3] & 0x80, 0x80, "RA");
        let expected = if why == Refused::Malformed {
            RCODE_FORMERR
        } else {
            RCODE_REFUSED
        };
        assert_eq!(rcode(&reply), expected);
        assert_eq!(reply[6..12], [0; 6]);
        if why != Refused::Malformed {
            assert_eq!(reply[4..6], [0, 1]);
            assert_eq!(reply[12..], query[12..]);
        }
        why
    }

    #[test]
    fn private_reverse_lookups_are_refused() {
        for name in [
            "1.0.0.127.in-addr.arpa",
            "3.2.1.10.in-addr.arpa",
            "10.in-addr.arpa",
            "254.169.254.169.in-addr.arpa",
            "16.129.63.168.in-addr.arpa",
            "1.0.168.192.IN-ADDR.ARPA",
            "b._dns-sd._udp.0.168.192.in-addr.arpa",
            "in-addr.arpa",
            "x.in-addr.arpa",
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa",
            "d.f.ip6.arpa",
            "0.8.e.f.ip6.arpa",
            "ip6.arpa",
        ] {
            assert_eq!(refused(&query(name, 12)), Refused::PrivateReverse, "{name}");
        }
        for public in [
            "1.1.1.1.in-addr.arpa",
            "4.0.18.198.in-addr.arpa",
            "1.9.9.10.in-addr.arpa", // 10.9/16 is allowed
            "8.8.8.8.in-addr.arpa",
            "1.1.1.1.0.0.0.0.0.0.7.4.6.0.6.2.ip6.arpa",
        ] {
            assert_eq!(screen().query(&query(public, 12)), Ok(()), "{public}");
        }
    }

    #[test]
    fn special_and_host_names_are_refused() {
        for name in [
            "printer.local",
            "ip-10-0-0-5.ec2.internal",
            "metadata.google.internal",
            "localhost",
            "a.localhost",
            "nas.home.arpa",
            "router.lan",
            "_gateway",
            "_outbound",
            "exit7.example.net",
            "EXIT7",
            "admin.exit7.example.net",
        ] {
            assert_eq!(
                refused(&query(name, TYPE_A)),
                Refused::PrivateName,
                "{name}"
            );
        }
        for public in [
            "example.net",
            "web.trine.test",
            "internal.example.com",
            "com",
        ] {
            assert_eq!(screen().query(&query(public, TYPE_A)), Ok(()), "{public}");
        }
    }

    #[test]
    fn other_classes_opcodes_and_transfers_are_refused() {
        let chaos = query_with(0x0100, "version.bind", 16, 3);
        assert_eq!(refused(&chaos), Refused::NotAQuery);
        assert_eq!(refused(&query("example.com", 252)), Refused::NotAQuery);
        let update = query_with(0x2800, "example.com", 6, CLASS_IN);
        assert_eq!(refused(&update), Refused::NotAQuery);
        let update_reply = screen().query(&update).unwrap_err().unwrap().1;
        assert_eq!(update_reply[2] & 0x78, 0x28, "opcode echoed");

        let mut two = query("example.com", TYPE_A);
        two[5] = 2;
        assert_eq!(refused(&two), Refused::Malformed);
        let mut pointer = query("example.com", TYPE_A);
        pointer[12] = 0xc0;
        assert_eq!(refused(&pointer), Refused::Malformed);
        // A response posing as a query, or a stub of a header: dropped.
        let mut response = query("example.com", TYPE_A);
        response[2] |= 0x80;
        assert_eq!(screen().query(&response), Err(None));
        assert_eq!(screen().query(&ID), Err(None));
    }

    #[test]
    fn answers_into_reserved_networks_become_servfail() {
        let asked = query("rebind.example", TYPE_A);
        let v4 = |a: [u8; 4]| (TYPE_A, a.to_vec());
        let v6 = |text: &str| {
            (
                TYPE_AAAA,
                text.parse::<Ipv6Addr>().unwrap().octets().to_vec(),
            )
        };
        for records in [
            vec![v4([127, 0, 0, 1])],
            vec![v4([93, 184, 216, 34]), v4([10, 1, 2, 3])],
            vec![v4([169, 254, 169, 254])],
            vec![v6("::1")],
            vec![v6("fd00:ec2::254")],
            vec![v6("::ffff:10.0.0.1")],
        ] {
            let reply = screen().answer(&asked, &answer(&asked, &records)).unwrap();
            assert_eq!(rcode(&reply), RCODE_SERVFAIL, "{records:?}");
            assert_eq!(reply[6..12], [0; 6], "no record survives");
            assert_eq!(reply[12..], asked[12..]);
        }
        for records in [
            vec![v4([93, 184, 216, 34])],
            vec![v4([10, 9, 0, 1])], // allowed network
            vec![v6("2606:4700::1111")],
            vec![(5, name("other.example"))],
            vec![],
        ] {
            let clean = answer(&asked, &records);
            assert_eq!(screen().answer(&asked, &clean), Some(clean), "{records:?}");
        }
    }

    #[test]
    fn https_address_hints_are_screened() {
        let asked = query("rebind.example", TYPE_HTTPS);
        let https = |key: u16, value: &[u8]| {
            let mut data = vec![0, 1, 0];
            data.extend_from_slice(&key.to_be_bytes());
            data.extend_from_slice(&u16::try_from(value.len()).unwrap().to_be_bytes());
            data.extend_from_slice(value);
            (TYPE_HTTPS, data)
        };
        let bad = answer(&asked, &[https(IPV4_HINT, &[1, 1, 1, 1, 127, 0, 0, 1])]);
        assert_eq!(
            rcode(&screen().answer(&asked, &bad).unwrap()),
            RCODE_SERVFAIL
        );
        let bad6 = answer(&asked, &[https(IPV6_HINT, &Ipv6Addr::LOCALHOST.octets())]);
        assert_eq!(
            rcode(&screen().answer(&asked, &bad6).unwrap()),
            RCODE_SERVFAIL
        );
        let good = answer(
            &asked,
            &[https(1, b"\x02h3"), https(IPV4_HINT, &[1, 1, 1, 1])],
        );
        assert_eq!(screen().answer(&asked, &good), Some(good));
    }

    #[test]
    fn answers_to_another_query_are_dropped_and_unreadable_ones_fail() {
        let asked = query("example.com", TYPE_A);
        let good = answer(&asked, &[(TYPE_A, vec![1, 1, 1, 1])]);
        let mut other_id = good.clone();
        other_id[1] ^= 1;
        assert_eq!(screen().answer(&asked, &other_id), None);
        let other_question = answer(&query("example.org", TYPE_A), &[]);
        assert_eq!(screen().answer(&asked, &other_question), None);
        assert_eq!(screen().answer(&asked, &asked), None, "not a response");
        // Case may differ (0x20 randomisation upstream).
        let mut shouted = good.clone();
        shouted[13..20].make_ascii_uppercase();
        assert_eq!(screen().answer(&asked, &shouted), Some(shouted));
        // A record running past the end.
        let mut cut = good.clone();
        cut.pop();
        assert_eq!(
            rcode(&screen().answer(&asked, &cut).unwrap()),
            RCODE_SERVFAIL
        );
    }

    #[test]
    fn refusals_servfails_and_drops_are_counted() {
        let screen = screen();
        let asked = query("example.com", TYPE_A);
        assert_eq!(screen.query(&asked), Ok(()));
        for refused in [
            query("1.0.0.10.in-addr.arpa", 12),
            query("db.internal", TYPE_A),
            query("printer.local", TYPE_A),
            query("example.com", 252),
            vec![0xbe, 0xef, 1, 0, 0, 2, 0, 0, 0, 0, 0, 0],
        ] {
            assert!(screen.query(&refused).is_err());
        }
        // A response sent as a query is dropped, not refused.
        assert_eq!(screen.query(&answer(&asked, &[])), Err(None));
        let clean = answer(&asked, &[(TYPE_A, vec![1, 1, 1, 1])]);
        let rebinding = answer(&asked, &[(TYPE_A, vec![127, 0, 0, 1])]);
        let mut other_id = clean.clone();
        other_id[0] ^= 1;
        assert!(screen.answer(&asked, &clean).is_some());
        assert!(screen.answer(&asked, &rebinding).is_some());
        assert!(screen.answer(&asked, &other_id).is_none());
        assert!(screen.answer(&asked, &other_id).is_none());
        let stats = screen.stats();
        // Malformed, private reverse, private names (two), not a query.
        assert_eq!(stats.refused, [1, 1, 2, 1]);
        assert_eq!((stats.servfail, stats.mismatched), (1, 2));
        let names: Vec<&str> = Refused::ALL.iter().map(|why| why.name()).collect();
        assert_eq!(
            names,
            [
                "malformed",
                "private_reverse",
                "private_name",
                "not_a_query"
            ]
        );
    }

    /// Random bytes, and valid messages with random damage, never panic.
    #[test]
    fn random_bytes_never_panic() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(13);
        let screen = screen();
        let asked = query("rebind.example", TYPE_A);
        let valid = answer(
            &asked,
            &[(TYPE_A, vec![1, 1, 1, 1]), (TYPE_AAAA, vec![0; 16])],
        );
        for round in 0..20_000 {
            let len = rng.gen_range(0..80);
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.r#gen()).collect();
            let _ = screen.query(&bytes);
            let _ = screen.answer(&bytes, &bytes);
            let _ = screen.answer(&asked, &bytes);
            let base = if round % 2 == 0 { &valid } else { &asked };
            bytes.clone_from(base);
            for _ in 0..rng.gen_range(1..4) {
                let at = rng.gen_range(0..bytes.len());
                bytes[at] = rng.r#gen();
            }
            bytes.truncate(rng.gen_range(0..=bytes.len()));
            let _ = screen.query(&bytes);
            let _ = screen.answer(&asked, &bytes);
            let _ = screen.answer(&bytes, &valid);
        }
    }
}
