//! The end hosts' transport model, carried inside the circuit as the IP
//! packets of DATA cells: a window-based reliable flow (segments numbered
//! from 0, cumulative ACKs echoing the segment's send time, slow start
//! then additive increase, halving on three duplicate ACKs with NewReno
//! partial-ACK retransmission, go-back-N with a doubled timeout on RTO as
//! RFC 6298 computes it, delayed ACKs as RFC 5681 §4.2 asks) and
//! unreliable constant-rate datagrams. Not TCP: no SACK, no handshake; the
//! receiver keeps every out-of-order segment. Plus the packet header both
//! use.

/// Transport header: kind (1) | client (4) | transfer (4) | number (4) |
/// time stamp in ns (8).
pub const HEADER_LEN: usize = 21;

const MIN_RTO_NS: u64 = 200_000_000;
const INITIAL_RTO_NS: u64 = 1_000_000_000;
const MAX_RTO_NS: u64 = 60_000_000_000;

/// How long a receiver holds the ACK of a lone in-order segment, hoping to
/// acknowledge the next one with it (Linux's shortest delayed-ACK time;
/// RFC 5681 allows up to 500 ms).
pub const DELAYED_ACK_NS: u64 = 40_000_000;

/// What a transport packet is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A segment of a request (client to server).
    Request,
    /// A segment of a response (server to client).
    Response,
    /// A cumulative ACK of a request (server to client).
    RequestAck,
    /// A cumulative ACK of a response (client to server).
    ResponseAck,
    /// A constant-rate datagram (client to server).
    Constant,
}

impl Kind {
    fn byte(self) -> u8 {
        match self {
            Self::Request => 1,
            Self::Response => 2,
            Self::RequestAck => 3,
            Self::ResponseAck => 4,
            Self::Constant => 5,
        }
    }

    fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            1 => Self::Request,
            2 => Self::Response,
            3 => Self::RequestAck,
            4 => Self::ResponseAck,
            5 => Self::Constant,
            _ => return None,
        })
    }
}

/// A decoded transport header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// What it is.
    pub kind: Kind,
    /// The client whose flow it belongs to.
    pub client: u32,
    /// The transfer (per client, from 0).
    pub transfer: u32,
    /// Segment number, or for an ACK the next segment expected.
    pub number: u32,
    /// Send time (ns); an ACK echoes the acknowledged copy's.
    pub stamp: u64,
}

impl Header {
    /// Writes the header and `payload` zero bytes into `out` (cleared).
    pub fn write(&self, payload: usize, out: &mut Vec<u8>) {
        out.clear();
        out.push(self.kind.byte());
        out.extend_from_slice(&self.client.to_be_bytes());
        out.extend_from_slice(&self.transfer.to_be_bytes());
        out.extend_from_slice(&self.number.to_be_bytes());
        out.extend_from_slice(&self.stamp.to_be_bytes());
        out.resize(HEADER_LEN + payload, 0);
    }

    /// Reads a header; `None` if `packet` is not one.
    pub fn read(packet: &[u8]) -> Option<Self> {
        let head = packet.get(..HEADER_LEN)?;
        let u32_at = |at: usize| head[at..at + 4].try_into().ok().map(u32::from_be_bytes);
        Some(Self {
            kind: Kind::from_byte(head[0])?,
            client: u32_at(1)?,
            transfer: u32_at(5)?,
            number: u32_at(9)?,
            stamp: u64::from_be_bytes(head[13..21].try_into().ok()?),
        })
    }
}

/// How many segments `size` bytes take, and the length of segment `n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segmenting {
    /// Bytes in all.
    pub size: u64,
    /// Payload bytes per segment.
    pub segment: u32,
}

impl Segmenting {
    /// Number of segments (at least 1).
    pub fn count(&self) -> u32 {
        u32::try_from(self.size.div_ceil(u64::from(self.segment)).max(1)).unwrap_or(u32::MAX)
    }

    /// Payload bytes of segment `n`.
    pub fn len(&self, n: u32) -> usize {
        let start = u64::from(n) * u64::from(self.segment);
        self.size.saturating_sub(start).min(u64::from(self.segment)) as usize
    }
}

/// The sending side of one reliable flow.
#[derive(Debug, Clone)]
pub struct Sender {
    shape: Segmenting,
    next: u32,
    una: u32,
    cwnd: f64,
    ssthresh: f64,
    max_window: f64,
    dupacks: u32,
    recover: Option<u32>,
    retransmit: Option<u32>,
    srtt: Option<(f64, f64)>,
    rto: u64,
    deadline: Option<u64>,
    /// Segments sent again.
    pub retransmissions: u64,
}

impl Sender {
    /// A flow of `shape`, window starting at `initial` and capped at `max`
    /// segments.
    pub fn new(shape: Segmenting, initial: u32, max: u32) -> Self {
        Self {
            shape,
            next: 0,
            una: 0,
            cwnd: f64::from(initial),
            ssthresh: f64::from(max),
            max_window: f64::from(max),
            dupacks: 0,
            recover: None,
            retransmit: None,
            srtt: None,
            rto: INITIAL_RTO_NS,
            deadline: None,
            retransmissions: 0,
        }
    }

    /// Every segment acknowledged.
    pub fn done(&self) -> bool {
        self.una >= self.shape.count()
    }

    /// When [`Sender::on_timeout`] is due, if anything is outstanding.
    pub fn deadline(&self) -> Option<u64> {
        self.deadline
    }

    /// The next segment to send now (a retransmission first), and its
    /// payload length; `None` when the window is full or all is sent.
    pub fn poll(&mut self, now: u64) -> Option<(u32, usize)> {
        let seq = if let Some(seq) = self.retransmit.take() {
            self.retransmissions += 1;
            seq
        } else {
            let in_flight = f64::from(self.next - self.una);
            if self.next >= self.shape.count() || in_flight >= self.cwnd.min(self.max_window) {
                return None;
            }
            self.next += 1;
            self.next - 1
        };
        if self.deadline.is_none() {
            self.deadline = Some(now + self.rto);
        }
        Some((seq, self.shape.len(seq)))
    }

    /// An ACK: the receiver next expects `cumulative`; it answers the copy
    /// sent at `echo`.
    pub fn on_ack(&mut self, now: u64, cumulative: u32, echo: u64) {
        let cumulative = cumulative.min(self.shape.count());
        if cumulative > self.una {
            self.sample_rtt(now.saturating_sub(echo));
            let acked = f64::from(cumulative - self.una);
            self.una = cumulative;
            self.next = self.next.max(cumulative);
            self.dupacks = 0;
            match self.recover {
                Some(recover) if self.una < recover => self.retransmit = Some(self.una),
                Some(_) => self.recover = None,
                None if self.cwnd < self.ssthresh => self.cwnd += acked,
                None => self.cwnd += acked / self.cwnd,
            }
            self.cwnd = self.cwnd.min(self.max_window);
            self.deadline = (self.una < self.next).then_some(now + self.rto);
        } else if cumulative == self.una && self.una < self.next {
            self.dupacks += 1;
            if self.dupacks == 3 && self.recover.is_none() {
                self.ssthresh = (f64::from(self.next - self.una) / 2.0).max(2.0);
                self.cwnd = self.ssthresh;
                self.recover = Some(self.next);
                self.retransmit = Some(self.una);
            }
        }
    }

    /// The retransmission timer fired at `now`: go back to the first
    /// unacknowledged segment with a window of 1 and a doubled timeout.
    pub fn on_timeout(&mut self, now: u64) {
        if self.deadline.is_none_or(|due| now < due) || self.done() {
            return;
        }
        self.ssthresh = (f64::from(self.next - self.una) / 2.0).max(2.0);
        self.cwnd = 1.0;
        self.recover = None;
        self.dupacks = 0;
        self.retransmit = None;
        self.retransmissions += u64::from(self.next - self.una);
        self.next = self.una;
        self.rto = (self.rto * 2).min(MAX_RTO_NS);
        self.deadline = None;
    }

    fn sample_rtt(&mut self, rtt: u64) {
        let rtt = rtt as f64;
        let (srtt, rttvar) = match self.srtt {
            None => (rtt, rtt / 2.0),
            Some((srtt, rttvar)) => (
                0.875 * srtt + 0.125 * rtt,
                0.75 * rttvar + 0.25 * (srtt - rtt).abs(),
            ),
        };
        self.srtt = Some((srtt, rttvar));
        let rto = (srtt + 4.0 * rttvar).round() as u64;
        self.rto = rto.clamp(MIN_RTO_NS, MAX_RTO_NS);
    }
}

/// The receiving side of one reliable flow.
#[derive(Debug, Clone)]
pub struct Receiver {
    shape: Segmenting,
    seen: Vec<u64>,
    expected: u32,
    /// The send time of an in-order segment not acknowledged yet.
    held: Option<u64>,
    /// Payload bytes received, each segment counted once.
    pub bytes: u64,
    /// When the first payload byte arrived (ns).
    pub first_byte: Option<u64>,
}

/// A cumulative acknowledgement to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    /// The next segment expected.
    pub cumulative: u32,
    /// The send time of the copy it answers, for the sender's RTT.
    pub echo: u64,
}

impl Receiver {
    /// Ready to receive a flow of `shape`.
    pub fn new(shape: Segmenting) -> Self {
        Self {
            shape,
            seen: vec![0; shape.count().div_ceil(64) as usize],
            expected: 0,
            held: None,
            bytes: 0,
            first_byte: None,
        }
    }

    /// Every segment arrived.
    pub fn complete(&self) -> bool {
        self.expected >= self.shape.count()
    }

    /// Segment `seq` with `payload` bytes, sent at `stamp`, arrived at
    /// `now`. Returns the ACK to send now, or `None` when it is held: a
    /// lone in-order segment is acknowledged with the next one, or by
    /// [`Self::take_held`] when the caller's timer of [`DELAYED_ACK_NS`]
    /// fires. Anything else (a segment out of order, a duplicate, one
    /// that fills a gap or completes the flow, the second of two in
    /// order) is acknowledged at once, so loss is signalled without delay.
    pub fn on_segment(&mut self, now: u64, seq: u32, payload: usize, stamp: u64) -> Option<Ack> {
        let before = self.expected;
        if seq < self.shape.count() && payload == self.shape.len(seq) {
            let (word, bit) = ((seq / 64) as usize, seq % 64);
            if self.seen[word] & (1 << bit) == 0 {
                self.seen[word] |= 1 << bit;
                self.bytes += payload as u64;
                self.first_byte.get_or_insert(now);
                while self.expected < self.shape.count() && self.has(self.expected) {
                    self.expected += 1;
                }
            }
        }
        let next_in_order = seq == before && self.expected == before + 1;
        if next_in_order && !self.complete() && self.held.is_none() {
            self.held = Some(stamp);
            return None;
        }
        // Echo the older of two in-order segments, as TCP's timestamps do.
        let echo = if next_in_order {
            self.held.take().unwrap_or(stamp)
        } else {
            self.held = None;
            stamp
        };
        Some(Ack {
            cumulative: self.expected,
            echo,
        })
    }

    /// The held ACK, if there is one (the delayed-ACK timer fired).
    pub fn take_held(&mut self) -> Option<Ack> {
        self.held.take().map(|echo| Ack {
            cumulative: self.expected,
            echo,
        })
    }

    fn has(&self, seq: u32) -> bool {
        self.seen[(seq / 64) as usize] & (1 << (seq % 64)) != 0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Delivers what `receiver` says to send now, and at the end of each
    /// round what it held (as its timer would).
    fn acks_of(receiver: &mut Receiver, segments: &[(u32, usize)], now: u64) -> Vec<Ack> {
        let mut acks: Vec<Ack> = segments
            .iter()
            .filter_map(|&(seq, len)| receiver.on_segment(now, seq, len, now))
            .collect();
        acks.extend(receiver.take_held());
        acks
    }

    #[test]
    fn lossless_flow_completes_with_exact_bytes() {
        let shape = Segmenting {
            size: 10_000,
            segment: 1200,
        };
        let mut sender = Sender::new(shape, 2, 100);
        let mut receiver = Receiver::new(shape);
        let mut now = 0;
        while !sender.done() {
            let mut sent = Vec::new();
            while let Some(segment) = sender.poll(now) {
                sent.push(segment);
            }
            let acks = acks_of(&mut receiver, &sent, now);
            now += 1_000_000;
            for ack in acks {
                sender.on_ack(now, ack.cumulative, ack.echo);
            }
        }
        assert!(receiver.complete());
        assert_eq!(receiver.bytes, 10_000);
        assert_eq!(sender.retransmissions, 0);
    }

    #[test]
    fn acks_are_delayed_only_for_lone_in_order_segments() {
        let shape = Segmenting {
            size: 6000,
            segment: 1000,
        };
        let mut receiver = Receiver::new(shape);
        // Two in order: the first is held, the second acknowledges both
        // and echoes the first's send time.
        assert_eq!(receiver.on_segment(1, 0, 1000, 10), None);
        let both = receiver.on_segment(2, 1, 1000, 20);
        assert_eq!(
            both,
            Some(Ack {
                cumulative: 2,
                echo: 10
            })
        );
        // A lone one is held until the timer takes it.
        assert_eq!(receiver.on_segment(3, 2, 1000, 30), None);
        assert_eq!(
            receiver.take_held(),
            Some(Ack {
                cumulative: 3,
                echo: 30
            })
        );
        assert_eq!(receiver.take_held(), None);
        // Out of order and duplicates: at once, with the same cumulative.
        let gap = receiver.on_segment(4, 4, 1000, 40);
        assert_eq!(
            gap,
            Some(Ack {
                cumulative: 3,
                echo: 40
            })
        );
        let again = receiver.on_segment(5, 1, 1000, 50);
        assert_eq!(
            again,
            Some(Ack {
                cumulative: 3,
                echo: 50
            })
        );
        // Filling the gap: at once, past what arrived early.
        let filled = receiver.on_segment(6, 3, 1000, 60);
        assert_eq!(
            filled,
            Some(Ack {
                cumulative: 5,
                echo: 60
            })
        );
        // The last segment completes the flow: at once.
        let last = receiver.on_segment(7, 5, 1000, 70);
        assert_eq!(
            last,
            Some(Ack {
                cumulative: 6,
                echo: 70
            })
        );
        assert!(receiver.complete());
        assert_eq!(receiver.bytes, 6000);
    }

    #[test]
    fn lost_segment_is_resent_after_three_duplicate_acks() {
        let shape = Segmenting {
            size: 6000,
            segment: 1000,
        };
        let mut sender = Sender::new(shape, 6, 6);
        let mut receiver = Receiver::new(shape);
        let mut sent = Vec::new();
        while let Some(segment) = sender.poll(0) {
            if segment.0 != 1 {
                sent.push(segment);
            }
        }
        for ack in acks_of(&mut receiver, &sent, 0) {
            sender.on_ack(10, ack.cumulative, ack.echo);
        }
        assert_eq!(sender.poll(10), Some((1, 1000)));
        let ack = receiver.on_segment(20, 1, 1000, 10).unwrap();
        sender.on_ack(20, ack.cumulative, ack.echo);
        assert!(sender.done());
        assert_eq!(receiver.bytes, 6000);
    }

    #[test]
    fn header_round_trips_and_garbage_is_refused() {
        let header = Header {
            kind: Kind::Response,
            client: 7,
            transfer: 3,
            number: 99,
            stamp: 123_456,
        };
        let mut packet = Vec::new();
        header.write(10, &mut packet);
        assert_eq!(packet.len(), HEADER_LEN + 10);
        assert_eq!(Header::read(&packet), Some(header));
        assert_eq!(Header::read(&packet[..HEADER_LEN - 1]), None);
        packet[0] = 0;
        assert_eq!(Header::read(&packet), None);
    }
}
