//! Quantities with units as Shadow writes them in a network graph and as
//! the performance scenario accepts them: bandwidths (`"100 Mbit"`,
//! `"2 MB"`, per second) and durations (`"10 ms"`).

/// Why a quantity did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    /// No number at the start.
    #[error("{0:?} does not start with a number")]
    Number(String),
    /// A unit this parser does not know.
    #[error("unknown unit {unit:?} (known: {known})")]
    Unit {
        /// The unit written.
        unit: String,
        /// The units accepted.
        known: &'static str,
    },
    /// Negative, not finite, or too large.
    #[error("{0:?} is out of range")]
    Range(String),
}

const BANDWIDTH_UNITS: &str =
    "bit, Kbit, Mbit, Gbit, Kibit, Mibit, Gibit, B, KB, MB, GB, KiB, MiB, GiB (per second)";
const TIME_UNITS: &str = "ns, us, ms, s";

/// A bandwidth in bytes per second, from `"<number> <unit>"` (space
/// optional). Bit units are divided by 8. At least 1 byte per second.
pub fn bandwidth(text: &str) -> Result<u64, UnitError> {
    let (value, unit) = split(text)?;
    let bits_per_unit: f64 = match unit {
        "bit" => 1.0,
        "Kbit" | "kbit" => 1e3,
        "Mbit" => 1e6,
        "Gbit" => 1e9,
        "Kibit" => 1024.0,
        "Mibit" => 1024.0 * 1024.0,
        "Gibit" => 1024.0 * 1024.0 * 1024.0,
        "B" | "byte" => 8.0,
        "KB" | "kB" => 8e3,
        "MB" => 8e6,
        "GB" => 8e9,
        "KiB" => 8.0 * 1024.0,
        "MiB" => 8.0 * 1024.0 * 1024.0,
        "GiB" => 8.0 * 1024.0 * 1024.0 * 1024.0,
        _ => {
            return Err(UnitError::Unit {
                unit: unit.to_owned(),
                known: BANDWIDTH_UNITS,
            });
        }
    };
    let bytes = value * bits_per_unit / 8.0;
    if !(1.0..1e15).contains(&bytes) {
        return Err(UnitError::Range(text.to_owned()));
    }
    // In range, so the cast keeps the value (rounded).
    Ok(bytes.round() as u64)
}

/// A duration in nanoseconds, from `"<number> <unit>"` (space optional).
pub fn duration_ns(text: &str) -> Result<u64, UnitError> {
    let (value, unit) = split(text)?;
    let ns_per_unit = match unit {
        "ns" => 1.0,
        "us" | "μs" => 1e3,
        "ms" => 1e6,
        "s" | "sec" => 1e9,
        _ => {
            return Err(UnitError::Unit {
                unit: unit.to_owned(),
                known: TIME_UNITS,
            });
        }
    };
    let ns = value * ns_per_unit;
    if !(0.0..1e15).contains(&ns) {
        return Err(UnitError::Range(text.to_owned()));
    }
    Ok(ns.round() as u64)
}

/// The leading number and the unit after it.
fn split(text: &str) -> Result<(f64, &str), UnitError> {
    let text = text.trim();
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(end);
    let value: f64 = number
        .parse()
        .map_err(|_| UnitError::Number(text.to_owned()))?;
    if !value.is_finite() || value < 0.0 {
        return Err(UnitError::Range(text.to_owned()));
    }
    Ok((value, unit.trim()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn shadow_quantities_parse() {
        assert_eq!(bandwidth("100 Mbit").unwrap(), 12_500_000);
        assert_eq!(bandwidth("1 Gbit").unwrap(), 125_000_000);
        assert_eq!(bandwidth("2MB").unwrap(), 2_000_000);
        assert_eq!(duration_ns("10 ms").unwrap(), 10_000_000);
        assert_eq!(duration_ns("1.5 s").unwrap(), 1_500_000_000);
        assert!(matches!(bandwidth("fast"), Err(UnitError::Number(_))));
        assert!(matches!(
            bandwidth("10 furlongs"),
            Err(UnitError::Unit { .. })
        ));
        assert!(matches!(duration_ns("-3 ms"), Err(UnitError::Range(_))));
        assert!(matches!(bandwidth("0 bit"), Err(UnitError::Range(_))));
    }
}
