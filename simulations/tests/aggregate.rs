//! Across seeds, through the real binary, for both engines: each aggregate
//! mean is the mean of the values the seeds' own files hold, every
//! interval contains its mean, the CDFs' means are CDFs, and the figures
//! are real SVG and PNG images with bands. The t-interval itself against
//! known quantiles.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;
mod perf_common;

use std::path::Path;
use std::process::Command;

use trine_sim::SimError;
use trine_sim::aggregate::{Column, Table, across, estimate, t_975};
use trine_sim::plot::{self, Figure, Series};

const SEEDS: [u64; 3] = [11, 12, 13];

/// A CSV file as its header and rows of numbers (an empty cell is NaN).
struct Csv {
    header: Vec<String>,
    rows: Vec<Vec<f64>>,
}

impl Csv {
    fn read(path: &Path) -> Self {
        let text = std::fs::read_to_string(path).unwrap();
        let mut lines = text.lines();
        let header = lines
            .next()
            .unwrap()
            .split(',')
            .map(str::to_owned)
            .collect();
        let rows = lines
            .map(|line| {
                line.split(',')
                    .map(|cell| match cell {
                        "" => f64::NAN,
                        "true" => 1.0,
                        "false" => 0.0,
                        number => number.parse().unwrap(),
                    })
                    .collect()
            })
            .collect();
        Self { header, rows }
    }

    fn column(&self, name: &str) -> Vec<f64> {
        let index = self.header.iter().position(|h| h == name).unwrap();
        self.rows.iter().map(|row| row[index]).collect()
    }
}

/// The number after `"key": ` in a summary.json, or after `"key": {"part": `.
fn json_number(text: &str, key: &str, part: Option<&str>) -> f64 {
    let start = text.find(&format!("\"{key}\": ")).unwrap() + key.len() + 4;
    let rest = &text[start..];
    let rest = match part {
        Some(part) => {
            let at = rest.find(&format!("\"{part}\": ")).unwrap() + part.len() + 4;
            &rest[at..]
        }
        None => rest,
    };
    let end = rest.find([',', '}', '\n']).unwrap();
    rest[..end].trim().parse().unwrap()
}

fn run(scenario: &Path, out: &Path) {
    run_seeds(scenario, 11, 3, out);
}

fn run_seeds(scenario: &Path, seed: u64, seeds: u64, out: &Path) {
    let status = Command::new(env!("CARGO_BIN_EXE_trine-sim"))
        .arg("run")
        .arg(scenario)
        .args(["--seed", &seed.to_string(), "--seeds", &seeds.to_string()])
        .arg("--out")
        .arg(out)
        .status()
        .unwrap();
    assert!(status.success(), "trine-sim run failed: {status}");
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// Asserts the mean, low and high columns of `name` in `table` hold
/// fractions with low <= mean <= high, and returns the means.
fn checked_means(table: &Csv, name: &str) -> Vec<f64> {
    let means = table.column(&format!("{name}_mean"));
    let lows = table.column(&format!("{name}_ci95_low"));
    let highs = table.column(&format!("{name}_ci95_high"));
    for ((mean, low), high) in means.iter().zip(&lows).zip(&highs) {
        assert!(
            0.0 <= *low && low <= mean && mean <= high && *high <= 1.0,
            "{name}: {low} {mean} {high}"
        );
    }
    means
}

fn assert_non_decreasing(what: &str, values: &[f64]) {
    for pair in values.windows(2) {
        assert!(pair[0] <= pair[1], "{what} decreases: {pair:?}");
    }
}

/// The fraction of clients with a first compromise at or before `hours`,
/// from a run's own step CDF (one row per compromised client).
fn step_cdf(table: &Csv, hours: f64) -> f64 {
    let times = table.column("hours");
    let fractions = table.column("fraction_of_clients");
    times
        .iter()
        .zip(&fractions)
        .filter(|(t, _)| **t <= hours + 1e-9)
        .map(|(_, f)| *f)
        .fold(0.0, f64::max)
}

#[test]
fn aggregate_means_are_the_means_of_the_seeds_files() {
    let base = common::scratch("aggregate");
    let scenario = base.join("scenario.toml");
    // 48 hours: the time grid's points are whole seconds (864 s apart).
    let text = common::small(40, 48.0, 3.0, 10.0).to_toml().unwrap();
    std::fs::write(&scenario, text).unwrap();
    let out = base.join("out");
    run(&scenario, &out);
    let seed_dir = |seed: u64| out.join(format!("seed-{seed}"));

    // Headline numbers.
    let aggregate = std::fs::read_to_string(out.join("summary.json")).unwrap();
    assert!(aggregate.contains("\"seeds\": [11, 12, 13]"), "{aggregate}");
    let summaries: Vec<String> = SEEDS
        .iter()
        .map(|&seed| std::fs::read_to_string(seed_dir(seed).join("summary.json")).unwrap())
        .collect();
    for key in [
        "circuits",
        "compromised_circuit_fraction",
        "clients_ever_compromised",
        "guard_exposure",
        "observed_exit_entropy_bits",
    ] {
        let values: Vec<f64> = summaries
            .iter()
            .map(|s| json_number(s, key, None))
            .collect();
        let got = json_number(&aggregate, key, Some("mean"));
        assert!(
            (got - mean(&values)).abs() < 1e-6,
            "{key}: {got} vs {values:?}"
        );
        let (low, high) = (
            json_number(&aggregate, key, Some("ci95_low")),
            json_number(&aggregate, key, Some("ci95_high")),
        );
        assert!(low <= got && got <= high, "{key}: {low} {got} {high}");
        let spread = values.iter().any(|v| (v - values[0]).abs() > 1e-9);
        assert_eq!(
            high > low,
            spread,
            "{key}: interval width follows the seeds' spread"
        );
    }
    let clients_ever: Vec<f64> = summaries
        .iter()
        .map(|s| json_number(s, "clients_ever_compromised", None))
        .collect();
    assert!(
        mean(&clients_ever) > 0.0,
        "the adversary compromises someone"
    );

    // Compromise over time against each seed's compromise_by_day.csv.
    let over_time = Csv::read(&out.join("compromise_over_time.csv"));
    let circuits = checked_means(&over_time, "circuits_compromised");
    let ever = checked_means(&over_time, "clients_ever_compromised");
    let days: Vec<Csv> = SEEDS
        .iter()
        .map(|&seed| Csv::read(&seed_dir(seed).join("compromise_by_day.csv")))
        .collect();
    assert_eq!(circuits.len(), 2);
    for (day, got) in circuits.iter().enumerate() {
        let per_seed: Vec<f64> = days
            .iter()
            .map(|d| d.column("fraction_compromised")[day])
            .collect();
        assert!((got - mean(&per_seed)).abs() < 2e-6, "day {day}");
    }
    assert_non_decreasing("clients ever compromised", &ever);
    assert!((ever[1] - mean(&clients_ever)).abs() < 2e-6);

    // The first-compromise CDF against each seed's step CDF at every grid
    // point.
    let cdf = Csv::read(&out.join("first_compromise_cdf.csv"));
    let means = checked_means(&cdf, "clients_compromised");
    let steps: Vec<Csv> = SEEDS
        .iter()
        .map(|&seed| Csv::read(&seed_dir(seed).join("first_compromise_cdf.csv")))
        .collect();
    let hours = cdf.column("hours");
    assert_eq!(hours.len(), 201);
    assert_eq!((hours[0], hours[200]), (0.0, 48.0));
    for (at, got) in hours.iter().zip(&means) {
        let per_seed: Vec<f64> = steps.iter().map(|s| step_cdf(s, *at)).collect();
        assert!(
            (got - mean(&per_seed)).abs() < 2e-6,
            "at {at} h: {got} vs {per_seed:?}"
        );
    }
    assert_non_decreasing("first-compromise CDF", &means);
    assert!((means[200] - mean(&clients_ever)).abs() < 2e-6);

    // The CDF of per-client fractions against each seed's clients.csv.
    let fractions = Csv::read(&out.join("client_fraction_cdf.csv"));
    let means = checked_means(&fractions, "clients");
    let clients: Vec<Csv> = SEEDS
        .iter()
        .map(|&seed| Csv::read(&seed_dir(seed).join("clients.csv")))
        .collect();
    for (at, got) in fractions.column("fraction_compromised").iter().zip(&means) {
        let per_seed: Vec<f64> = clients
            .iter()
            .map(|c| {
                let (compromised, circuits) = (c.column("compromised"), c.column("circuits"));
                let below = compromised
                    .iter()
                    .zip(&circuits)
                    .filter(|(k, n)| **k <= at * n.max(1.0) + 1e-9)
                    .count();
                below as f64 / compromised.len() as f64
            })
            .collect();
        assert!(
            (got - mean(&per_seed)).abs() < 2e-6,
            "at {at}: {got} vs {per_seed:?}"
        );
    }
    assert_non_decreasing("client-fraction CDF", &means);
    assert_eq!(means.last(), Some(&1.0));

    // Every table's JSON holds its CSV: same columns, same numbers.
    let mut tables = vec![out.clone()];
    tables.extend(SEEDS.iter().map(|&seed| seed_dir(seed)));
    let mut checked = 0;
    for dir in tables {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "csv") {
                assert_json_matches_csv(&path);
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 3 + 3 * 3);
    let _ = std::fs::remove_dir_all(&base);
}

/// Asserts the `.json` beside `csv` has the CSV's header as `columns`
/// and its cells as `rows` (empty cells as null, booleans as 1 and 0).
fn assert_json_matches_csv(csv: &Path) {
    let table = Csv::read(csv);
    let text = std::fs::read_to_string(csv.with_extension("json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let stem = csv.file_stem().unwrap().to_str().unwrap();
    assert_eq!(json["table"], stem);
    let columns: Vec<&str> = json["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(columns, table.header, "{}", csv.display());
    let rows = json["rows"].as_array().unwrap();
    assert_eq!(rows.len(), table.rows.len(), "{}", csv.display());
    for (row, expected) in rows.iter().zip(&table.rows) {
        let cells: Vec<f64> = row
            .as_array()
            .unwrap()
            .iter()
            .map(|cell| match cell {
                serde_json::Value::Null => f64::NAN,
                serde_json::Value::Bool(b) => f64::from(u8::from(*b)),
                number => number.as_f64().unwrap(),
            })
            .collect();
        for (got, want) in cells.iter().zip(expected) {
            assert!(
                got == want || (got.is_nan() && want.is_nan()),
                "{}: {got} vs {want}",
                csv.display()
            );
        }
        assert_eq!(cells.len(), expected.len());
    }
}

/// Asserts `dir/name.svg` and `dir/name.png` are real, drawn images, the
/// SVG with `polygons` shaded bands.
fn assert_figure(dir: &Path, name: &str, polygons: usize) {
    let svg = std::fs::read_to_string(dir.join(format!("{name}.svg"))).unwrap();
    assert!(
        svg.starts_with("<svg width=\"800\" height=\"500\""),
        "{name}"
    );
    assert!(svg.trim_end().ends_with("</svg>"), "{name}");
    assert_eq!(svg.matches("<polygon").count(), polygons, "{name}");
    assert!(svg.matches("<polyline").count() >= 1, "{name} has no line");

    let file = std::fs::File::open(dir.join(format!("{name}.png"))).unwrap();
    let mut reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut pixels).unwrap();
    assert_eq!((frame.width, frame.height), (800, 500));
    let pixels = &pixels[..frame.buffer_size()];
    let drawn = pixels
        .chunks(3)
        .filter(|rgb| rgb.iter().any(|&c| c != 255))
        .count();
    assert!(drawn > 10_000, "{name}.png: only {drawn} pixels drawn");
    // The first line's colour (plotters' blue) is on it.
    assert!(
        pixels.chunks(3).any(|rgb| rgb == [31, 119, 180]),
        "{name}.png"
    );
}

#[test]
fn figures_are_real_images_with_bands_across_seeds() {
    let base = common::scratch("figures");
    let scenario = base.join("scenario.toml");
    std::fs::write(
        &scenario,
        common::small(20, 24.0, 2.0, 0.0).to_toml().unwrap(),
    )
    .unwrap();
    let out = base.join("out");
    run(&scenario, &out);
    for dir in [out.clone(), out.join("seed-12")] {
        let bands = usize::from(dir == out);
        assert_figure(&dir, "first_compromise_cdf", bands);
        assert_figure(&dir, "compromise_over_time", 2 * bands);
        assert_figure(&dir, "client_fraction_cdf", bands);
    }
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn t_interval_matches_known_quantiles() {
    // Table values, and the expansion beyond the table against published
    // quantiles of Student's t.
    assert_eq!(t_975(1), 12.7062);
    assert_eq!(t_975(30), 2.0423);
    for (df, t) in [(31, 2.0395), (40, 2.0211), (60, 2.0003), (120, 1.9799)] {
        assert!((t_975(df) - t).abs() < 2e-4, "df {df}: {}", t_975(df));
    }
    // Samples 1, 2, 3: mean 2, standard deviation 1, half-width t(2)/sqrt(3).
    let e = estimate(&[1.0, 2.0, 3.0]);
    let half = 4.3027 / 3f64.sqrt();
    assert!((e.mean - 2.0).abs() < 1e-12);
    assert!((e.low - (2.0 - half)).abs() < 1e-12 && (e.high - (2.0 + half)).abs() < 1e-12);
    // One sample: the interval is that sample; fractions are cut to [0, 1].
    let one = estimate(&[0.3]);
    assert_eq!((one.low, one.mean, one.high), (0.3, 0.3, 0.3));
    let cut = estimate(&[0.0, 0.0, 0.1]).of_fraction();
    assert_eq!(cut.low, 0.0);
    assert!(cut.mean > 0.0 && cut.high < 1.0);
}

fn table(x: Vec<f64>, values: Vec<f64>) -> Table<f64> {
    Table {
        figure: Figure {
            name: "test_table",
            title: "test",
            x_label: "x",
            y_label: "y",
        },
        x_name: "x",
        x,
        columns: vec![Column {
            name: "y".to_owned(),
            label: "y".to_owned(),
            values,
        }],
    }
}

#[test]
fn tables_on_other_grids_are_not_aggregated() {
    let a = table(vec![0.0, 1.0], vec![0.2, 0.4]);
    let b = table(vec![0.0, 2.0], vec![0.4, 0.6]);
    let short = table(vec![0.0, 1.0], vec![0.4]);
    for other in [&b, &short] {
        match across(&[&a, other]) {
            Err(SimError::Unaligned { table }) => assert_eq!(table, "test_table"),
            result => panic!("aggregated: {result:?}"),
        }
    }
    assert!(matches!(across(&[]), Err(SimError::Unaligned { .. })));
    let both = across(&[&a, &table(vec![0.0, 1.0], vec![0.4, 0.6])]).unwrap();
    let means: Vec<f64> = both.columns[0].values.iter().map(|e| e.mean).collect();
    assert!((means[0] - 0.3).abs() < 1e-12 && (means[1] - 0.5).abs() < 1e-12);
}

#[test]
fn a_band_must_have_a_bound_pair_per_point() {
    let dir = common::scratch("band-mismatch");
    plot::use_font(Path::new(plot::DEFAULT_FONT)).unwrap();
    let figure = Figure {
        name: "bad_band",
        title: "t",
        x_label: "x",
        y_label: "y",
    };
    let series = Series {
        label: "line".to_owned(),
        points: vec![(0.0, 0.1), (1.0, 0.2)],
        band: Some(vec![(0.0, 0.2)]),
    };
    match plot::fractions(&dir, &figure, std::slice::from_ref(&series)) {
        Err(SimError::Plot { reason, .. }) => {
            assert!(reason.contains("1 band bounds for 2 points"))
        }
        result => panic!("drawn: {result:?}"),
    }
    assert!(!dir.join("bad_band.svg").exists());
    let fixed = Series {
        band: Some(vec![(0.0, 0.2), (0.1, 0.3)]),
        ..series
    };
    plot::fractions(&dir, &figure, &[fixed]).unwrap();
    assert!(dir.join("bad_band.png").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Engine 2 across seeds: each seed's directory is byte for byte the run
/// of that seed alone; the headline means are the means of the seeds'
/// numbers; every CDF mean is a CDF that ends at the mean share of trials
/// that finished; the figures are drawn.
#[test]
fn performance_seeds_aggregate_to_the_means_of_their_runs() {
    let base = common::scratch("aggregate-perf");
    let scenario = base.join("perf.toml");
    let spec = perf_common::Spec {
        seconds: 10.0,
        topology: "kind = \"coordinates\"\nnodes = 10\nmin_latency = \"5 ms\"\n\
                   max_latency = \"60 ms\"\npacket_loss = 0.01\n\
                   host_bandwidth_up = \"20 Mbit\"\nhost_bandwidth_down = \"50 Mbit\"",
        ..Default::default()
    };
    std::fs::write(&scenario, spec.text()).unwrap();
    let (out, alone) = (base.join("out"), base.join("alone"));
    run_seeds(&scenario, 21, 3, &out);
    run_seeds(&scenario, 22, 1, &alone);
    let seeds = [21u64, 22, 23];
    let seed_dir = |seed: u64| out.join(format!("seed-{seed}"));
    for name in [
        "summary.json",
        "circuits.csv",
        "downloads.csv",
        "ttfb_cdf.png",
    ] {
        let read = |dir: &Path| std::fs::read(dir.join(name)).unwrap();
        assert!(read(&seed_dir(22)) == read(&alone), "{name} differs");
    }

    let aggregate = std::fs::read_to_string(out.join("summary.json")).unwrap();
    assert!(
        aggregate.contains("\"engine\": \"performance\""),
        "{aggregate}"
    );
    assert!(aggregate.contains("\"seeds\": [21, 22, 23]"), "{aggregate}");
    let summaries: Vec<String> = seeds
        .iter()
        .map(|&seed| std::fs::read_to_string(seed_dir(seed).join("summary.json")).unwrap())
        .collect();
    let per_seed = |key: &str| -> Vec<f64> {
        summaries
            .iter()
            .map(|s| json_number(s, key, None))
            .collect()
    };
    let ratio = |part: &str, whole: &str| -> Vec<f64> {
        per_seed(part)
            .iter()
            .zip(per_seed(whole))
            .map(|(part, whole)| part / whole)
            .collect()
    };
    let built = ratio("circuits_built", "circuits_started");
    let completed = ratio("downloads_completed", "downloads_started");
    for (key, values) in [
        ("circuits_started", per_seed("circuits_started")),
        ("circuits_built_fraction", built.clone()),
        ("build_ms_median", per_seed("build_ms_median")),
        ("downloads_completed_fraction", completed),
        ("ttfb_ms_median", per_seed("ttfb_ms_median")),
        ("drops_total", per_seed("drops_total")),
    ] {
        let got = json_number(&aggregate, key, Some("mean"));
        assert!(
            (got - mean(&values)).abs() < 1e-5,
            "{key}: {got} vs {values:?}"
        );
        let (low, high) = (
            json_number(&aggregate, key, Some("ci95_low")),
            json_number(&aggregate, key, Some("ci95_high")),
        );
        assert!(low <= got && got <= high, "{key}: {low} {got} {high}");
    }
    assert!(
        per_seed("build_ms_median")
            .windows(2)
            .any(|pair| pair[0] != pair[1]),
        "the seeds differ"
    );

    // The build-time CDF: a CDF whose last point is the mean built share.
    let builds = Csv::read(&out.join("build_time_cdf.csv"));
    let means = checked_means(&builds, "circuits_built");
    assert_non_decreasing("build-time CDF", &means);
    assert_eq!(means.len(), 202);
    assert_eq!(means[0], 0.0, "no build takes no time");
    assert!((means[201] - mean(&built)).abs() < 2e-6);
    // The grid: 0, then the same ratio from each point to the next.
    let x = builds.column("build_ms");
    let ratios: Vec<f64> = x[1..].windows(2).map(|pair| pair[1] / pair[0]).collect();
    assert!(
        ratios
            .iter()
            .all(|r| (r / ratios[0] - 1.0).abs() < 1e-3 && *r > 1.0),
        "{ratios:?}"
    );
    // Download times: one column per class, each ending at its class's
    // mean completed share.
    let downloads = Csv::read(&out.join("download_time_cdf.csv"));
    for class in ["web", "bulk_51200", "bulk_1048576"] {
        let means = checked_means(&downloads, class);
        assert_non_decreasing(class, &means);
        let shares: Vec<f64> = summaries
            .iter()
            .map(|s| {
                let downloads = &s[s.find("\"downloads\": {").unwrap()..];
                json_number(downloads, class, Some("completed"))
                    / json_number(downloads, class, Some("started"))
            })
            .collect();
        assert!(
            (means[means.len() - 1] - mean(&shares)).abs() < 2e-6,
            "{class}"
        );
    }
    for figure in ["build_time_cdf", "ttfb_cdf", "download_time_cdf"] {
        let svg = std::fs::read_to_string(out.join(format!("{figure}.svg"))).unwrap();
        assert!(svg.starts_with("<svg"), "{figure}");
        let png = std::fs::read(out.join(format!("{figure}.png"))).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{figure}");
    }
    let _ = std::fs::remove_dir_all(&base);
}
