//! trine-sim: the research simulator.
//!
//! Engine 1 (path security) runs every client's guard choice and circuits
//! through the path selection and guard code that ships in
//! `trine-directory`, over event-driven simulated time, and measures how
//! often an adversary running relays sees both ends of a circuit. Relays
//! are generated from distributions or imported from a Tor or Trine
//! consensus. Engine 2 (network performance, [`perf`]) drives the shipped
//! circuit state machines over a modelled network. Runs write CSV and JSON
//! tables and SVG and PNG figures; several seeds are aggregated into means
//! with 95% confidence bands. Same scenario and seed, same bytes out. See
//! `docs/simulator.md`.

pub mod aggregate;
pub mod dist;
pub mod engine;
pub mod error;
pub mod import;
pub mod network;
pub mod output;
pub mod perf;
pub mod plot;
pub mod prefix;
pub mod progress;
pub mod scenario;

pub use engine::{RunResult, run, run_with_progress};
pub use error::SimError;
pub use network::Network;
pub use progress::Progress;
pub use scenario::{EXAMPLE, Scenario};
