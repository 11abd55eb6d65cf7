//! How far a run has got, shared between the engine (which advances it,
//! from any thread) and whoever shows it (the CLI's progress bar). Only
//! counters: reading it never changes a result.

use std::sync::atomic::{AtomicU64, Ordering};

/// Units of work done out of a total the engine sets when it starts.
#[derive(Debug, Default)]
pub struct Progress {
    done: AtomicU64,
    total: AtomicU64,
}

impl Progress {
    /// A progress with nothing to do yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the amount of work and resets what is done.
    pub fn start(&self, total: u64) {
        self.done.store(0, Ordering::Relaxed);
        self.total.store(total, Ordering::Relaxed);
    }

    /// Records `units` more work done.
    pub fn advance(&self, units: u64) {
        self.done.fetch_add(units, Ordering::Relaxed);
    }

    /// Work done over the total, in [0, 1]; 0 before the engine started.
    pub fn fraction(&self) -> f64 {
        let total = self.total.load(Ordering::Relaxed);
        if total == 0 {
            return 0.0;
        }
        (self.done.load(Ordering::Relaxed) as f64 / total as f64).min(1.0)
    }
}
