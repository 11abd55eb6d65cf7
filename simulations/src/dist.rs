//! Random draws the scenario needs: bandwidths and exponential waiting
//! times. Written here from uniform draws so that the same seed gives the
//! same values on every platform with only `rand`.

use rand::Rng;

use crate::scenario::Bandwidth;

/// One bandwidth draw, rounded, at least 1.
pub fn bandwidth<R: Rng + ?Sized>(spec: &Bandwidth, rng: &mut R) -> u64 {
    let value = match *spec {
        Bandwidth::Lognormal { mu, sigma } => (mu + sigma * standard_normal(rng)).exp(),
        Bandwidth::Pareto { scale, shape } => scale / open_unit(rng).powf(1.0 / shape),
        Bandwidth::Constant { value } => return value.max(1),
    };
    // `as` saturates for floats out of range; bandwidths are far below 2^64.
    (value.round() as u64).max(1)
}

/// A waiting time of a Poisson process with `rate` events per unit, in the
/// same unit. `None` when the rate is 0 (the event never happens).
pub fn exponential<R: Rng + ?Sized>(rate: f64, rng: &mut R) -> Option<f64> {
    (rate > 0.0).then(|| -open_unit(rng).ln() / rate)
}

/// Uniform in (0, 1].
fn open_unit<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    1.0 - rng.r#gen::<f64>()
}

/// Standard normal by Box–Muller (one of the pair).
fn standard_normal<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    let radius = (-2.0 * open_unit(rng).ln()).sqrt();
    let angle = std::f64::consts::TAU * rng.r#gen::<f64>();
    radius * angle.cos()
}
