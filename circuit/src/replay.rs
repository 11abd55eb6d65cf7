//! Anti-replay sliding window over 64-bit sequence numbers (in the style of
//! RFC 6479: a ring of 64-bit blocks, no shifting).
//!
//! Checking and marking are separate so a cell is marked only after it has
//! been authenticated: a forged cell must not move the window.

/// Bits in the ring. One block is always being recycled, so the guaranteed
/// window is 64 less.
const BLOCKS: usize = 32;
const BLOCK_BITS: u64 = 64;

/// How far behind the newest accepted sequence number a cell may arrive and
/// still be accepted (if not already seen).
pub const WINDOW: u64 = (BLOCKS as u64 - 1) * BLOCK_BITS;
const _: () = assert!(
    WINDOW >= 1024,
    "the design requires a window of at least 1024"
);

/// Why a sequence number was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// This sequence number was already accepted.
    #[error("duplicate sequence number")]
    Duplicate,
    /// This sequence number is older than the window.
    #[error("sequence number too old")]
    TooOld,
}

/// The set of recently accepted sequence numbers for one key.
#[derive(Debug, Clone, Default)]
pub struct ReplayWindow {
    /// Highest accepted sequence number, if any.
    highest: Option<u64>,
    ring: [u64; BLOCKS],
}

impl ReplayWindow {
    /// An empty window.
    pub fn new() -> Self {
        Self::default()
    }

    /// The highest sequence number accepted so far, if any.
    pub fn highest(&self) -> Option<u64> {
        self.highest
    }

    fn slot(seq: u64) -> (usize, u64) {
        // `BLOCKS` is far below 2^32, so the cast is lossless.
        let block = ((seq / BLOCK_BITS) % BLOCKS as u64) as usize;
        (block, 1u64 << (seq % BLOCK_BITS))
    }

    /// Whether `seq` would be accepted, without recording it.
    pub fn check(&self, seq: u64) -> Result<(), ReplayError> {
        let Some(top) = self.highest else {
            return Ok(());
        };
        if seq > top {
            return Ok(());
        }
        if top - seq >= WINDOW {
            return Err(ReplayError::TooOld);
        }
        let (block, bit) = Self::slot(seq);
        if self.ring[block] & bit != 0 {
            Err(ReplayError::Duplicate)
        } else {
            Ok(())
        }
    }

    /// Records `seq` as accepted. Call only after [`ReplayWindow::check`]
    /// passed and the cell authenticated.
    pub fn mark(&mut self, seq: u64) {
        match self.highest {
            None => {
                self.ring = [0; BLOCKS];
                self.highest = Some(seq);
            }
            Some(top) if seq > top => {
                // Clear every block the window slides onto (at most the ring).
                let first_new = top / BLOCK_BITS + 1;
                let last_new = seq / BLOCK_BITS;
                if last_new >= first_new {
                    if last_new - first_new >= BLOCKS as u64 {
                        self.ring = [0; BLOCKS];
                    } else {
                        for block in first_new..=last_new {
                            let (index, _) = Self::slot(block * BLOCK_BITS);
                            self.ring[index] = 0;
                        }
                    }
                }
                self.highest = Some(seq);
            }
            Some(_) => {}
        }
        let (block, bit) = Self::slot(seq);
        self.ring[block] |= bit;
    }

    /// Checks and, if accepted, records `seq`.
    pub fn accept(&mut self, seq: u64) -> Result<(), ReplayError> {
        self.check(seq)?;
        self.mark(seq);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn in_order_sequence_is_accepted_once() {
        let mut window = ReplayWindow::new();
        for seq in 0..10_000 {
            window.accept(seq).unwrap();
            assert_eq!(window.accept(seq), Err(ReplayError::Duplicate));
        }
    }

    #[test]
    fn window_is_at_least_1024() {
        let mut window = ReplayWindow::new();
        window.accept(5_000).unwrap();
        window.accept(5_000 - WINDOW + 1).unwrap();
        assert_eq!(window.accept(5_000 - WINDOW), Err(ReplayError::TooOld));
    }

    #[test]
    fn large_jump_forgets_old_bits() {
        let mut window = ReplayWindow::new();
        window.accept(3).unwrap();
        window.accept(3 + 10 * WINDOW).unwrap();
        // 3 is now too old; a number that maps to the same slot is fresh.
        assert_eq!(window.accept(3), Err(ReplayError::TooOld));
        window.accept(3 + 10 * WINDOW - 64 * 32 * 2).ok();
        window.accept(u64::MAX).unwrap();
        assert_eq!(window.accept(u64::MAX), Err(ReplayError::Duplicate));
    }

    proptest! {
        /// The window agrees with an exact set model: a number is accepted
        /// iff it was never accepted and is within WINDOW of the highest.
        #[test]
        fn agrees_with_set_model(seqs in proptest::collection::vec(0u64..6_000, 1..3_000)) {
            let mut window = ReplayWindow::new();
            let mut seen = BTreeSet::new();
            let mut highest: Option<u64> = None;
            for seq in seqs {
                let expected = match highest {
                    Some(top) if seq <= top && top - seq >= WINDOW => Err(ReplayError::TooOld),
                    _ if seen.contains(&seq) => Err(ReplayError::Duplicate),
                    _ => Ok(()),
                };
                prop_assert_eq!(window.accept(seq), expected);
                if expected.is_ok() {
                    seen.insert(seq);
                    highest = Some(highest.map_or(seq, |top| top.max(seq)));
                }
            }
        }
    }
}
