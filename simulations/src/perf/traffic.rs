//! The traffic models a client runs: web-like request/response (a small
//! request, a response of drawn size, an exponential think time), bulk
//! downloads of fixed sizes (onionperf's 50 KiB, 1 MiB, 5 MiB) with a
//! pause between them, or a constant-rate flow of datagrams.

use rand::Rng;

use crate::dist;

use super::scenario::TrafficSpec;

/// Which model a client runs, for its whole life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Model {
    /// Request/response with think times.
    Web,
    /// Downloads back to back.
    Bulk,
    /// Constant-rate datagrams, client to exit.
    Constant,
}

impl Model {
    /// A client's model, drawn with the scenario's shares.
    pub fn draw<R: Rng + ?Sized>(spec: &TrafficSpec, rng: &mut R) -> Self {
        let draw: f64 = rng.r#gen();
        if draw < spec.web_share {
            Self::Web
        } else if draw < spec.web_share + spec.bulk_share || spec.constant_share == 0.0 {
            Self::Bulk
        } else {
            Self::Constant
        }
    }

    /// Name in outputs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Web => "web",
            Self::Bulk => "bulk",
            Self::Constant => "constant",
        }
    }

    /// The request and response sizes of the next transfer, bytes (`None`
    /// for the constant-rate model, which has no transfers).
    pub fn next_transfer<R: Rng + ?Sized>(
        self,
        spec: &TrafficSpec,
        rng: &mut R,
    ) -> Option<(u64, u64)> {
        match self {
            Self::Web => Some((
                u64::from(spec.web.request_bytes),
                dist::bandwidth(&spec.web.response_bytes, rng).min(super::scenario::MAX_TRANSFER),
            )),
            Self::Bulk => {
                let sizes = &spec.bulk.sizes;
                let size = *sizes.get(rng.gen_range(0..sizes.len().max(1)))?;
                Some((u64::from(spec.web.request_bytes), size))
            }
            Self::Constant => None,
        }
    }

    /// The pause after a completed transfer, ns.
    pub fn pause_ns<R: Rng + ?Sized>(self, spec: &TrafficSpec, rng: &mut R) -> u64 {
        let seconds = match self {
            Self::Web => dist::exponential(1.0 / spec.web.think_seconds, rng).unwrap_or(0.0),
            Self::Bulk => spec.bulk.pause_seconds,
            Self::Constant => 0.0,
        };
        (seconds * 1e9).round() as u64
    }
}
