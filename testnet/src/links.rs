//! Delay and loss on the test network's links. This kernel has no `netem`
//! qdisc, so delay is made in userspace: in each node's namespace an
//! iptables rule (`-j NFQUEUE`; the kernel lacks nftables' own `queue`
//! expression, iptables-nft reaches the queue through its compatibility
//! layer) sends every packet arriving on `eth0` to queue 0, and
//! `trine-testnet link-delay` (running in that namespace) holds each one
//! for the delay before letting it go. Loss needs no helper: a `statistic
//! --mode random` rule drops that share of the packets arriving on `eth0`.
//! A packet between two nodes meets the delay once and the loss once; a
//! round trip meets the delay twice.
//!
//! Why on arrival: a packet held on its sender's way out still counts
//! against the sending TCP socket's small-queue limit (about a
//! millisecond of data may sit in the host), so TCP would crawl behind a
//! sender-side delay; a packet that crossed the veth into another
//! namespace no longer belongs to its socket.
//!
//! The NFQUEUE protocol is spoken here directly over a netlink socket
//! (nfnetlink, subsystem "queue"): bind with metadata-only copies and GSO
//! packets left whole, read packet ids, and answer with batch verdicts —
//! packets are held first in, first out, so one verdict releases every
//! packet that is due. The message building and parsing are plain
//! functions, tested without a kernel.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use crate::{Network, must};

/// The queue number the rules use in every namespace.
pub const QUEUE: u16 = 0;

/// How every link of a network is shaped.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LinkShape {
    /// Rate limit each way, Mbit/s.
    pub rate_mbit: Option<u32>,
    /// Delay added to what each node receives, ms.
    pub delay_ms: Option<u32>,
    /// Share of what each node receives that is dropped, percent.
    pub loss_pct: Option<f32>,
}

impl LinkShape {
    /// In words, for reports ("unshaped" when nothing is set).
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(mbit) = self.rate_mbit {
            parts.push(format!("{mbit} Mbit/s per link (tbf)"));
        }
        if let Some(ms) = self.delay_ms {
            parts.push(format!(
                "+{ms} ms one-way per link (userspace NFQUEUE helper; round trips meet it twice per link)"
            ));
        }
        if let Some(loss) = self.loss_pct {
            parts.push(format!("{loss}% loss per link (iptables statistic)"));
        }
        if parts.is_empty() {
            "links unshaped".to_string()
        } else {
            parts.join(", ")
        }
    }
}

/// Shapes the link of `role` in `network`: a rate limit (a token bucket
/// on both ends of its veth pair), and delay and loss on what it
/// receives.
/// The delay helper (`testnet`'s `link-delay`) becomes one of the
/// network's processes, in a process group of its own (a Ctrl-C meant for
/// the terminal must not stop the network's links), logging to
/// `log_dir/link-delay.log`. Panics, saying what failed, on a broken
/// system.
pub fn shape(network: &mut Network, role: &str, links: LinkShape, testnet: &Path, log_dir: &Path) {
    let ns = network.ns(role);
    if let Some(mbit) = links.rate_mbit {
        let rate = format!("{mbit}mbit");
        let hub = network.ns(crate::HUB);
        let port = network.hub_port(role);
        for (namespace, device) in [(ns.as_str(), "eth0"), (hub.as_str(), port.as_str())] {
            must(&[
                "ip", "netns", "exec", namespace, "tc", "qdisc", "replace", "dev", device, "root",
                "tbf", "rate", &rate, "burst", "64kb", "latency", "50ms",
            ]);
        }
    }
    if let Some(ms) = links.delay_ms {
        // The helper binds the queue before any packet is sent its way (a
        // queue nobody reads drops everything).
        let log_path = log_dir.join("link-delay.log");
        let log = std::fs::File::create(&log_path)
            .unwrap_or_else(|e| panic!("{}: {e}", log_path.display()));
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns])
            .arg(testnet)
            .args(["link-delay", "--ms", &ms.to_string()])
            .stdout(Stdio::piped())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the delay helper: {e}"));
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            let _ = BufReader::new(out).read_line(&mut line);
        }
        network.children.push(child);
        assert!(
            line.trim() == "ready",
            "the delay helper in {ns} did not start"
        );
    }
    for rule in rules(links.delay_ms.is_some(), links.loss_pct.unwrap_or(0.0)) {
        for tool in ["iptables", "ip6tables"] {
            let mut args = vec![
                "ip",
                "netns",
                "exec",
                &ns,
                tool,
                "-t",
                "mangle",
                "-A",
                "PREROUTING",
            ];
            args.extend(rule.iter().map(String::as_str));
            must(&args);
        }
    }
}

/// The mangle PREROUTING rules that drop `loss_pct` percent of what
/// arrives on `eth0` and, if `delay`, queue the rest for the helper.
pub fn rules(delay: bool, loss_pct: f32) -> Vec<Vec<String>> {
    let mut rules = Vec::new();
    let out = ["-i", "eth0"].map(String::from);
    if loss_pct > 0.0 {
        let probability = format!("{:.4}", loss_pct / 100.0);
        let mut rule = out.to_vec();
        rule.extend(
            [
                "-m",
                "statistic",
                "--mode",
                "random",
                "--probability",
                &probability,
                "-j",
                "DROP",
            ]
            .map(String::from),
        );
        rules.push(rule);
    }
    if delay {
        let mut rule = out.to_vec();
        rule.extend(["-j", "NFQUEUE", "--queue-num", &QUEUE.to_string()].map(String::from));
        rules.push(rule);
    }
    rules
}

/// Checks `--delay` and `--loss` values; the problem in words if wrong.
pub fn check(delay_ms: Option<u32>, loss_pct: Option<f32>) -> Result<(), String> {
    if delay_ms.is_some_and(|d| d == 0 || d > 10_000) {
        return Err("--delay must be 1 to 10000 ms".to_string());
    }
    if loss_pct.is_some_and(|l| !(l > 0.0 && l <= 100.0)) {
        return Err("--loss must be above 0 and at most 100 (percent)".to_string());
    }
    Ok(())
}

const NETLINK_NETFILTER: i32 = 12;
const AF_NETLINK: i32 = 16;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLMSG_ERROR: u16 = 2;
const NFNL_SUBSYS_QUEUE: u16 = 3;
const NFQNL_MSG_PACKET: u16 = 0;
const NFQNL_MSG_CONFIG: u16 = 2;
const NFQNL_MSG_VERDICT_BATCH: u16 = 3;
const NFQA_PACKET_HDR: u16 = 1;
const NFQA_VERDICT_HDR: u16 = 2;
const NFQA_CFG_CMD: u16 = 1;
const NFQA_CFG_PARAMS: u16 = 2;
const NFQA_CFG_QUEUE_MAXLEN: u16 = 3;
const NFQA_CFG_MASK: u16 = 4;
const NFQA_CFG_FLAGS: u16 = 5;
const NFQNL_CFG_CMD_BIND: u8 = 1;
const NFQNL_COPY_META: u8 = 1;
const NFQA_CFG_F_GSO: u32 = 4;
const NF_ACCEPT: u32 = 1;
/// Linux's errno when a netlink socket's buffer overflowed.
const ENOBUFS: i32 = 105;
/// Packets the kernel may hold for us (a fast link times a long delay).
const MAX_HELD: u32 = 1 << 20;

/// One netlink message of the queue subsystem: header, nfgenmsg, then
/// attributes (each padded to 4 bytes).
fn message(kind: u16, flags: u16, queue: u16, attributes: &[(u16, &[u8])]) -> Vec<u8> {
    let mut out = vec![0u8; 16];
    out.extend_from_slice(&[0, 0]); // AF_UNSPEC, NFNETLINK_V0
    out.extend_from_slice(&queue.to_be_bytes());
    for (kind, value) in attributes {
        out.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(value);
        out.resize(out.len().next_multiple_of(4), 0);
    }
    let length = out.len() as u32;
    out[0..4].copy_from_slice(&length.to_ne_bytes());
    out[4..6].copy_from_slice(&((NFNL_SUBSYS_QUEUE << 8) | kind).to_ne_bytes());
    out[6..8].copy_from_slice(&flags.to_ne_bytes());
    out
}

/// Binds `queue`: metadata only, GSO packets whole, room for many.
fn bind_message(queue: u16) -> Vec<u8> {
    let command = [NFQNL_CFG_CMD_BIND, 0, 0, 0];
    let mut params = 0u32.to_be_bytes().to_vec();
    params.push(NFQNL_COPY_META);
    message(
        NFQNL_MSG_CONFIG,
        NLM_F_REQUEST | NLM_F_ACK,
        queue,
        &[
            (NFQA_CFG_CMD, &command),
            (NFQA_CFG_PARAMS, &params),
            (NFQA_CFG_QUEUE_MAXLEN, &MAX_HELD.to_be_bytes()),
            (NFQA_CFG_FLAGS, &NFQA_CFG_F_GSO.to_be_bytes()),
            (NFQA_CFG_MASK, &NFQA_CFG_F_GSO.to_be_bytes()),
        ],
    )
}

/// Accepts every packet of `queue` with an id up to `id`.
fn accept_up_to(queue: u16, id: u32) -> Vec<u8> {
    let mut header = NF_ACCEPT.to_be_bytes().to_vec();
    header.extend_from_slice(&id.to_be_bytes());
    message(
        NFQNL_MSG_VERDICT_BATCH,
        NLM_F_REQUEST,
        queue,
        &[(NFQA_VERDICT_HDR, &header)],
    )
}

/// What the kernel said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    /// A packet waits for a verdict.
    Packet(u32),
    /// A request succeeded (0) or failed (an errno).
    Ack(i32),
}

/// Every message in one datagram from the kernel (malformed ones end the
/// datagram; unknown kinds are skipped).
fn parse(mut datagram: &[u8]) -> Vec<Event> {
    let mut events = Vec::new();
    while datagram.len() >= 16 {
        let length = u32::from_ne_bytes([datagram[0], datagram[1], datagram[2], datagram[3]]);
        let length = length as usize;
        if length < 16 || length > datagram.len() {
            break;
        }
        let kind = u16::from_ne_bytes([datagram[4], datagram[5]]);
        let body = &datagram[16..length];
        if kind == NLMSG_ERROR && body.len() >= 4 {
            let code = i32::from_ne_bytes([body[0], body[1], body[2], body[3]]);
            events.push(Event::Ack(-code));
        } else if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET && body.len() >= 4 {
            if let Some(id) = packet_id(&body[4..]) {
                events.push(Event::Packet(id));
            }
        }
        datagram = &datagram[length.next_multiple_of(4).min(datagram.len())..];
    }
    events
}

/// The packet id in a packet message's attributes.
fn packet_id(mut attributes: &[u8]) -> Option<u32> {
    while attributes.len() >= 4 {
        let length = u16::from_ne_bytes([attributes[0], attributes[1]]) as usize;
        let kind = u16::from_ne_bytes([attributes[2], attributes[3]]) & 0x3fff;
        if length < 4 || length > attributes.len() {
            return None;
        }
        if kind == NFQA_PACKET_HDR && length >= 8 {
            let id = &attributes[4..8];
            return Some(u32::from_be_bytes([id[0], id[1], id[2], id[3]]));
        }
        attributes = &attributes[length.next_multiple_of(4).min(attributes.len())..];
    }
    None
}

/// Holds every packet of queue [`QUEUE`] in this namespace for `delay`,
/// in order, until killed. Fails if the queue cannot be bound.
///
/// One thread reads packet ids as they arrive; this one sleeps until the
/// oldest is due (a precise sleep: a socket's receive timeout counts in
/// scheduler ticks, which would add milliseconds) and releases every
/// packet that is due with one verdict.
pub fn run_delay(delay: Duration) -> Result<(), String> {
    let socket = Socket::new(
        Domain::from(AF_NETLINK),
        Type::RAW,
        Some(Protocol::from(NETLINK_NETFILTER)),
    )
    .map_err(|e| format!("netlink socket: {e}"))?;
    // Bursts of a fast link must not overflow the socket.
    let _ = socket.set_recv_buffer_size(16 << 20);
    socket
        .send(&bind_message(QUEUE))
        .map_err(|e| format!("binding queue {QUEUE}: {e}"))?;
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let mut buffer = vec![0u8; 1 << 16];
    let read = (&socket)
        .read(&mut buffer)
        .map_err(|e| format!("binding queue {QUEUE}: {e}"))?;
    match parse(&buffer[..read]).first() {
        Some(Event::Ack(0)) => {}
        Some(Event::Ack(errno)) => {
            return Err(format!(
                "binding queue {QUEUE}: {}",
                std::io::Error::from_raw_os_error(*errno)
            ));
        }
        _ => return Err(format!("binding queue {QUEUE}: no answer")),
    }
    socket.set_read_timeout(None).map_err(|e| e.to_string())?;
    let socket = std::sync::Arc::new(socket);
    let (arrivals, arrived) = std::sync::mpsc::channel::<(Instant, u32)>();
    let reader = socket.clone();
    std::thread::spawn(move || {
        loop {
            // Errors: ENOBUFS after a burst (the batch verdict releases
            // packets whose messages were lost too); anything else ends.
            let read = match (&*reader).read(&mut buffer) {
                Ok(read) => read,
                Err(e) if e.raw_os_error() == Some(ENOBUFS) => continue,
                Err(_) => return,
            };
            let now = Instant::now();
            for event in parse(&buffer[..read]) {
                if let Event::Packet(id) = event {
                    if arrivals.send((now + delay, id)).is_err() {
                        return;
                    }
                }
            }
        }
    });
    // The caller waits for this line before sending packets our way.
    println!("ready");
    let _ = std::io::Write::flush(&mut std::io::stdout());
    let mut held: VecDeque<(Instant, u32)> = VecDeque::new();
    loop {
        if held.is_empty() {
            match arrived.recv() {
                Ok(packet) => held.push_back(packet),
                Err(_) => return Err("the queue reader stopped".to_string()),
            }
        }
        held.extend(arrived.try_iter());
        if let Some(&(due, _)) = held.front() {
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        held.extend(arrived.try_iter());
        let now = Instant::now();
        let mut last_due = None;
        while let Some(&(due, id)) = held.front() {
            if due > now {
                break;
            }
            last_due = Some(id);
            held.pop_front();
        }
        if let Some(id) = last_due {
            socket
                .send(&accept_up_to(QUEUE, id))
                .map_err(|e| format!("verdict: {e}"))?;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A packet message as the kernel sends it: one NFQA_PACKET_HDR, after
    /// an attribute of another kind.
    fn packet(id: u32) -> Vec<u8> {
        let mut header = id.to_be_bytes().to_vec();
        header.extend_from_slice(&[0x08, 0x00, 3]);
        message(
            NFQNL_MSG_PACKET,
            0,
            QUEUE,
            &[
                (NFQA_CFG_MASK, &[1, 2, 3, 4, 5]),
                (NFQA_PACKET_HDR, &header),
            ],
        )
    }

    #[test]
    fn packet_ids_are_read_from_every_message_of_a_datagram() {
        let mut datagram = packet(7);
        datagram.extend(packet(8));
        let mut ack = vec![0u8; 16];
        ack[0..4].copy_from_slice(&36u32.to_ne_bytes());
        ack[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        ack.extend_from_slice(&(-16i32).to_ne_bytes());
        ack.extend_from_slice(&[0; 16]);
        datagram.extend(ack);
        assert_eq!(
            parse(&datagram),
            [Event::Packet(7), Event::Packet(8), Event::Ack(16)]
        );
    }

    #[test]
    fn truncated_and_garbage_datagrams_give_nothing_and_never_panic() {
        let whole = packet(9);
        for cut in 0..whole.len() {
            let events = parse(&whole[..cut]);
            assert!(events.is_empty(), "cut at {cut}: {events:?}");
        }
        let mut lying = whole.clone();
        lying[0..4].copy_from_slice(&4000u32.to_ne_bytes());
        assert!(parse(&lying).is_empty());
        let mut bad_attribute = whole;
        bad_attribute[20..22].copy_from_slice(&2u16.to_ne_bytes());
        assert!(parse(&bad_attribute).is_empty());
    }

    #[test]
    fn a_verdict_names_the_subsystem_queue_and_id() {
        let verdict = accept_up_to(5, 0x01020304);
        assert_eq!(verdict.len(), 16 + 4 + 12);
        assert_eq!(u32::from_ne_bytes(verdict[0..4].try_into().unwrap()), 32);
        assert_eq!(u16::from_ne_bytes([verdict[4], verdict[5]]), 0x0303);
        assert_eq!(&verdict[18..20], &5u16.to_be_bytes());
        assert_eq!(&verdict[24..28], &NF_ACCEPT.to_be_bytes());
        assert_eq!(&verdict[28..32], &[1, 2, 3, 4]);
        // The bind request asks for an answer, and its parameters say
        // "metadata only".
        let bind = bind_message(0);
        assert_eq!(
            u16::from_ne_bytes([bind[6], bind[7]]),
            NLM_F_REQUEST | NLM_F_ACK
        );
        assert_eq!(bind[24], NFQNL_CFG_CMD_BIND);
        assert_eq!(bind[28..30], 9u16.to_ne_bytes());
        assert_eq!(bind[30..32], NFQA_CFG_PARAMS.to_ne_bytes());
        assert_eq!(bind[32..37], [0, 0, 0, 0, NFQNL_COPY_META]);
    }

    #[test]
    fn the_rules_drop_a_share_and_queue_the_rest() {
        let both: Vec<String> = rules(true, 2.5).into_iter().map(|r| r.join(" ")).collect();
        assert_eq!(
            both,
            [
                "-i eth0 -m statistic --mode random --probability 0.0250 -j DROP",
                "-i eth0 -j NFQUEUE --queue-num 0"
            ]
        );
        assert_eq!(rules(false, 1.0).len(), 1);
        assert!(rules(false, 0.0).is_empty());
        assert!(check(Some(0), None).is_err());
        assert!(check(None, Some(0.0)).is_err());
        assert!(check(None, Some(101.0)).is_err());
        assert!(check(Some(5), Some(1.0)).is_ok());
    }
}
