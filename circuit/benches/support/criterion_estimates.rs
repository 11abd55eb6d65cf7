//! Reading back what criterion measured in this run, shared by every
//! crate's benchmark that prints its own ratio table (included with
//! `#[path]`): where criterion writes, and the headline time of one
//! benchmark, ignoring files left over from earlier runs.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Where criterion writes (set explicitly, so the summary reads the same
/// place): `$CRITERION_HOME`, else `$CARGO_TARGET_DIR/criterion`, else the
/// `criterion` directory of the target directory holding this executable.
pub fn output_directory() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    // <target>/<profile>/deps/<this executable>
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            exe.ancestors()
                .nth(3)
                .map(|target| target.join("criterion"))
        })
        .unwrap_or_else(|| PathBuf::from("target/criterion"))
}

/// The point estimate of `statistic` in an `estimates.json`, or `None` if it
/// is absent or `null` (criterion writes no slope for flat sampling).
fn point_estimate(json: &str, statistic: &str) -> Option<f64> {
    let start = json.find(&format!("\"{statistic}\":{{"))?;
    let rest = &json[start..];
    let value = &rest[rest.find("\"point_estimate\":")? + "\"point_estimate\":".len()..];
    let end = value.find([',', '}'])?;
    value[..end].trim().parse().ok()
}

/// Criterion's headline time (slope if sampled linearly, else mean), in
/// nanoseconds, if this run wrote one for `group/bench`.
pub fn typical_time(dir: &Path, group: &str, bench: &str, since: SystemTime) -> Option<f64> {
    let path = dir.join(group).join(bench).join("new/estimates.json");
    let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok()?;
    if modified < since {
        return None; // left over from an earlier run
    }
    let json = std::fs::read_to_string(&path).ok()?;
    point_estimate(&json, "slope").or_else(|| point_estimate(&json, "mean"))
}
