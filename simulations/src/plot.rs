//! Drawing figures as SVG and PNG with plotters: lines of fractions over
//! an x axis, each with an optional confidence band. Nothing here knows
//! what an engine measured, so any engine can draw its CDFs (or any
//! fractions) with [`fractions`]. Text needs a TrueType font registered once per process with
//! [`use_font`]; the same input always gives the same bytes.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::SimError;

/// Where the plot font is looked for when neither `--font` nor
/// [`FONT_ENV`] names one (Debian package `fonts-dejavu-core`).
pub const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// The environment variable naming the plot font.
pub const FONT_ENV: &str = "TRINE_SIM_FONT";

/// Width and height of every figure, in pixels.
const SIZE: (u32, u32) = (800, 500);

/// Line colours, one per series in order (then again from the start).
const COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

/// One line of a figure.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Its name in the legend.
    pub label: String,
    /// Points `(x, y)` in increasing `x`, `y` a fraction in [0, 1].
    pub points: Vec<(f64, f64)>,
    /// A band around the line: `(lower, upper)` for each point, drawn
    /// shaded.
    pub band: Option<Vec<(f64, f64)>>,
}

/// What a figure is called and what its axes say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Figure<'a> {
    /// File stem: the figure is written as `name.svg` and `name.png`.
    pub name: &'a str,
    /// Title above the plot.
    pub title: &'a str,
    /// Caption of the x axis.
    pub x_label: &'a str,
    /// Caption of the y axis (which always runs from 0 to 1).
    pub y_label: &'a str,
}

/// Reads the TrueType font at `path` and uses it for all text of every
/// later figure of this process.
pub fn use_font(path: &Path) -> Result<(), SimError> {
    let font_error = |reason: String| SimError::Font {
        path: path.to_owned(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|error| {
        font_error(format!(
            "{error} (install Debian's fonts-dejavu-core, or name a .ttf with --font or {FONT_ENV})"
        ))
    })?;
    // plotters keeps registered fonts for the life of the process.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| font_error("not a TrueType or OpenType font".to_owned()))
}

/// Draws `series` (y: a fraction, 0 to 1) as `dir/name.svg` and
/// `dir/name.png`.
pub fn fractions(dir: &Path, figure: &Figure, series: &[Series]) -> Result<(), SimError> {
    for line in series {
        if let Some(band) = &line.band {
            if band.len() != line.points.len() {
                return Err(SimError::Plot {
                    path: dir.join(figure.name),
                    reason: format!(
                        "series {}: {} band bounds for {} points",
                        line.label,
                        band.len(),
                        line.points.len()
                    ),
                });
            }
        }
    }
    let svg_path = dir.join(format!("{}.svg", figure.name));
    let svg = SVGBackend::new(&svg_path, SIZE).into_drawing_area();
    draw(&svg, figure, series).map_err(|error| plot_error(&svg_path, error))?;
    drop(svg);

    let png_path = dir.join(format!("{}.png", figure.name));
    let mut pixels = vec![0u8; SIZE.0 as usize * SIZE.1 as usize * 3];
    {
        let png = BitMapBackend::with_buffer(&mut pixels, SIZE).into_drawing_area();
        draw(&png, figure, series).map_err(|error| plot_error(&png_path, error))?;
    }
    write_png(&png_path, &pixels)
}

/// Height of one legend line under the plot, in pixels.
const LEGEND_LINE: u32 = 22;

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    figure: &Figure,
    series: &[Series],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let legend_height = 8 + LEGEND_LINE * series.len() as u32;
    let (plot_area, legend) = root.split_vertically(SIZE.1.saturating_sub(legend_height));
    let (low, high) = x_range(series);
    let mut chart = ChartBuilder::on(&plot_area)
        .caption(figure.title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(low..high, 0.0..1.0)?;
    chart
        .configure_mesh()
        .x_desc(figure.x_label)
        .y_desc(figure.y_label)
        .label_style(("sans-serif", 14))
        .light_line_style(RGBColor(238, 238, 238))
        .draw()?;
    for (index, line) in series.iter().enumerate() {
        let color = COLORS[index % COLORS.len()];
        if let Some(band) = &line.band {
            let upper = line
                .points
                .iter()
                .zip(band)
                .map(|(&(x, _), &(_, hi))| (x, hi));
            let lower = line
                .points
                .iter()
                .zip(band)
                .map(|(&(x, _), &(lo, _))| (x, lo));
            let outline: Vec<(f64, f64)> = upper.chain(lower.rev()).collect();
            chart.draw_series(std::iter::once(Polygon::new(outline, color.mix(0.2))))?;
        }
        chart.draw_series(LineSeries::new(
            line.points.iter().copied(),
            color.stroke_width(2),
        ))?;
        // The legend, one line per series under the plot, where it hides
        // no data.
        let y = (LEGEND_LINE * index as u32 + LEGEND_LINE / 2) as i32;
        legend.draw(&PathElement::new(
            [(72, y), (102, y)],
            color.stroke_width(2),
        ))?;
        let text = match line.band {
            Some(_) => format!("{} (mean, 95% interval shaded)", line.label),
            None => line.label.clone(),
        };
        legend.draw(&Text::new(text, (110, y - 8), ("sans-serif", 14)))?;
    }
    root.present()
}

/// The x range covering every point (at least one unit wide).
fn x_range(series: &[Series]) -> (f64, f64) {
    let xs = || {
        series
            .iter()
            .flat_map(|line| line.points.iter().map(|p| p.0))
    };
    let low = xs().fold(f64::INFINITY, f64::min);
    let high = xs().fold(f64::NEG_INFINITY, f64::max);
    if !low.is_finite() || !high.is_finite() {
        (0.0, 1.0)
    } else if high > low {
        (low, high)
    } else {
        (low, low + 1.0)
    }
}

fn write_png(path: &Path, rgb: &[u8]) -> Result<(), SimError> {
    let file = std::fs::File::create(path).map_err(|source| SimError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), SIZE.0, SIZE.1);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder
        .write_header()
        .and_then(|mut writer| writer.write_image_data(rgb))
        .map_err(|error| plot_error(path, error))
}

fn plot_error(path: &Path, error: impl std::fmt::Display) -> SimError {
    SimError::Plot {
        path: PathBuf::from(path),
        reason: error.to_string(),
    }
}
