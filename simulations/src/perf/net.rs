//! The virtual link layer: every host has an upstream and a downstream
//! port, each a FIFO queue served at the host's bandwidth with a bounded
//! backlog. A port is kept as "busy until" alone (no packet list): a
//! packet offered at `now` starts when everything before it has left and
//! takes `bytes / rate`. Datagrams that find the backlog full are dropped;
//! stream (control) cells model QUIC's reliable stream and always queue.

/// Wire bytes added to every cell: IPv4 (20) + UDP (8) + QUIC short
/// header (1 + 8-byte connection id + 4-byte packet number) + AEAD tag
/// (16) + DATAGRAM or STREAM frame header (3).
pub const CELL_OVERHEAD: usize = 60;

/// One direction of a host's access link.
#[derive(Debug, Clone)]
pub struct Port {
    rate: u64,
    capacity: u64,
    busy_until: u64,
    /// Bytes that left this port before the end of the run.
    sent: u64,
}

impl Port {
    /// A port serving `rate` bytes per second with a backlog of at most
    /// `capacity` bytes.
    pub fn new(rate: u64, capacity: u64) -> Self {
        Self {
            rate: rate.max(1),
            capacity,
            busy_until: 0,
            sent: 0,
        }
    }

    /// Bytes per second.
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Bytes that left before the end of the run.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Offers `bytes` at `now` (ns); the run ends at `end`. Returns when
    /// the last byte leaves, or `None` when a droppable packet finds the
    /// backlog full.
    pub fn offer(&mut self, now: u64, bytes: usize, droppable: bool, end: u64) -> Option<u64> {
        let start = self.busy_until.max(now);
        let backlog = ns_to_bytes(start - now, self.rate);
        if droppable && backlog + bytes as u64 > self.capacity {
            return None;
        }
        let finish = start + bytes_to_ns(bytes as u64, self.rate);
        self.busy_until = finish;
        if finish <= end {
            self.sent += bytes as u64;
        } else if start < end {
            // Only what is serialised before the end counts.
            self.sent += ns_to_bytes(end - start, self.rate).min(bytes as u64);
        }
        Some(finish)
    }
}

/// Time to serialise `bytes` at `rate`, rounded up.
fn bytes_to_ns(bytes: u64, rate: u64) -> u64 {
    let ns = (u128::from(bytes) * 1_000_000_000).div_ceil(u128::from(rate));
    u64::try_from(ns).unwrap_or(u64::MAX)
}

/// Bytes served in `ns` at `rate`, rounded down.
fn ns_to_bytes(ns: u64, rate: u64) -> u64 {
    let bytes = u128::from(ns) * u128::from(rate) / 1_000_000_000;
    u64::try_from(bytes).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_serialises_in_order_and_drops_when_full() {
        let mut port = Port::new(1_000_000, 3000);
        assert_eq!(port.offer(0, 1000, true, u64::MAX), Some(1_000_000));
        assert_eq!(port.offer(0, 1000, true, u64::MAX), Some(2_000_000));
        assert_eq!(port.offer(0, 1000, true, u64::MAX), Some(3_000_000));
        assert_eq!(port.offer(0, 1000, true, u64::MAX), None);
        assert_eq!(port.offer(0, 1000, false, u64::MAX), Some(4_000_000));
        assert_eq!(port.sent(), 4000);
    }

    #[test]
    fn only_bytes_before_the_end_count() {
        let mut port = Port::new(1_000, 1_000_000);
        port.offer(0, 3000, true, 2_000_000_000);
        assert_eq!(port.sent(), 2000);
    }
}
