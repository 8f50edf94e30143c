//! Line charts as PNG, for the experiments: the book's figures (curves with markers, dashed
//! comparisons, a legend, labelled axes, a title), one panel or a grid of them. Text is drawn
//! with the DejaVu Sans font embedded in the binary, so no system fonts are needed.

use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

/// A curve.
#[derive(Debug, Clone)]
pub struct Series {
    /// Its name in the legend (empty: not in the legend).
    pub label: String,
    /// `(x, y)` points.
    pub points: Vec<(f64, f64)>,
    /// Dashed instead of solid.
    pub dashed: bool,
    /// A marker every this many points (0: none).
    pub mark_every: usize,
}

impl Series {
    /// A solid curve without markers.
    pub fn new(label: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Series {
            label: label.into(),
            points,
            dashed: false,
            mark_every: 0,
        }
    }

    /// Dashed.
    pub fn dashed(mut self) -> Self {
        self.dashed = true;
        self
    }

    /// With a marker every `n` points.
    pub fn marked(mut self, n: usize) -> Self {
        self.mark_every = n;
        self
    }
}

/// One chart.
#[derive(Debug, Clone)]
pub struct Panel {
    /// Its title.
    pub title: String,
    /// The axes' labels.
    pub x_label: String,
    /// The y axis' label.
    pub y_label: String,
    /// The y axis' range (the x axis spans the data).
    pub y_range: (f64, f64),
    /// The curves.
    pub series: Vec<Series>,
    /// Draw the legend.
    pub legend: bool,
}

/// The book's colours (matplotlib's first four) and then some.
const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// Registers the embedded font (once).
pub(crate) fn fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is valid (it is DejaVu Sans); should it not parse, text is not drawn and the
        // plot still is.
        let _ = register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
    });
}

/// Draws `panels` in a grid of `cols` columns into a PNG at `path`, `size` pixels, with
/// `title` over the whole (empty: none).
pub fn draw(
    path: &Path,
    title: &str,
    panels: &[Panel],
    cols: usize,
    size: (u32, u32),
) -> Result<(), String> {
    fonts();
    let fail = |e: &dyn std::fmt::Display| format!("{}: cannot draw the plot: {e}", path.display());
    let root = BitMapBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let area = if title.is_empty() {
        root.clone()
    } else {
        root.titled(title, ("sans-serif", 24))
            .map_err(|e| fail(&e))?
    };
    let cols = cols.max(1);
    let rows = panels.len().div_ceil(cols).max(1);
    let cells = area.split_evenly((rows, cols));
    for (panel, cell) in panels.iter().zip(&cells) {
        draw_panel(panel, cell, panels.len() > 1).map_err(|e| fail(&e))?;
    }
    root.present().map_err(|e| fail(&e))
}

fn draw_panel<DB: DrawingBackend>(
    p: &Panel,
    area: &DrawingArea<DB, Shift>,
    small: bool,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let (x0, x1) = p
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|q| q.0))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
            (a.min(x), b.max(x))
        });
    let (x0, x1) = if x0 < x1 { (x0, x1) } else { (0.0, 1.0) };
    let (title_size, label_size) = if small { (14, 12) } else { (20, 16) };
    let mut chart = ChartBuilder::on(area)
        .caption(&p.title, ("sans-serif", title_size))
        .margin(if small { 6 } else { 12 })
        .x_label_area_size(if small { 28 } else { 40 })
        .y_label_area_size(if small { 36 } else { 50 })
        .build_cartesian_2d(x0..x1, p.y_range.0..p.y_range.1)?;
    chart
        .configure_mesh()
        .x_desc(&p.x_label)
        .y_desc(&p.y_label)
        .label_style(("sans-serif", label_size))
        .axis_desc_style(("sans-serif", label_size))
        .light_line_style(WHITE.mix(0.0))
        .x_labels(if small { 4 } else { 8 })
        .y_labels(6)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.1}"))
        .draw()?;
    for (k, s) in p.series.iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        let style = color.stroke_width(2);
        let clipped: Vec<(f64, f64)> = s
            .points
            .iter()
            .map(|&(x, y)| (x, y.clamp(p.y_range.0, p.y_range.1)))
            .collect();
        let drawn = if s.dashed {
            chart.draw_series(DashedLineSeries::new(clipped.clone(), 6, 4, style))?
        } else {
            chart.draw_series(LineSeries::new(clipped.clone(), style))?
        };
        if !s.label.is_empty() {
            let (dashed, marked) = (s.dashed, s.mark_every > 0);
            drawn.label(&s.label).legend(move |(x, y)| {
                let line: Vec<(i32, i32)> = if dashed {
                    vec![(0, 0), (6, 0)]
                } else {
                    vec![(0, 0), (20, 0)]
                };
                let style = color.stroke_width(2);
                EmptyElement::at((x, y))
                    + PathElement::new(line, style)
                    + PathElement::new(legend_marker(marked, k), style)
            });
        }
        if s.mark_every > 0 {
            let marks = clipped.iter().step_by(s.mark_every).copied();
            match k % 4 {
                0 => {
                    chart.draw_series(marks.map(|q| Circle::new(q, 4, color.stroke_width(2))))?;
                }
                1 => {
                    chart.draw_series(marks.map(|q| Cross::new(q, 4, color.stroke_width(2))))?;
                }
                2 => {
                    chart.draw_series(
                        marks.map(|q| TriangleMarker::new(q, 5, color.stroke_width(2))),
                    )?;
                }
                _ => {
                    chart.draw_series(marks.map(|q| {
                        EmptyElement::at(q)
                            + Rectangle::new([(-4, -4), (4, 4)], color.stroke_width(2))
                    }))?;
                }
            }
        }
    }
    if p.legend && p.series.iter().any(|s| !s.label.is_empty()) {
        chart
            .configure_series_labels()
            .label_font(("sans-serif", label_size))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()?;
    }
    Ok(())
}

/// The outline of curve `k`'s marker in a legend, relative to the legend's line (a point if
/// the curve has none): circle, cross, triangle or square, as on the curve.
fn legend_marker(marked: bool, k: usize) -> Vec<(i32, i32)> {
    let at = |pts: &[(i32, i32)]| pts.iter().map(|&(x, y)| (x + 10, y)).collect();
    match (marked, k % 4) {
        (false, _) => at(&[(0, 0)]),
        (true, 0) => at(&[
            (4, 0),
            (3, 3),
            (0, 4),
            (-3, 3),
            (-4, 0),
            (-3, -3),
            (0, -4),
            (3, -3),
            (4, 0),
        ]),
        (true, 1) => at(&[(-4, -4), (4, 4), (0, 0), (-4, 4), (4, -4)]),
        (true, 2) => at(&[(0, -5), (5, 4), (-5, 4), (0, -5)]),
        _ => at(&[(-4, -4), (4, -4), (4, 4), (-4, 4), (-4, -4)]),
    }
}

/// A training run as the book draws it: train and test accuracy per epoch (ch05's
/// `train_neuralnet.py`), and the loss per iteration, smoothed (ch06's figures), side by side.
/// `per_epoch` is the iterations of one epoch.
pub fn draw_run(
    path: &Path,
    title: &str,
    report: &crate::train::TrainReport,
    per_epoch: f64,
) -> Result<(), String> {
    let epochs = |f: fn(&crate::train::Epoch) -> f64| -> Vec<(f64, f64)> {
        report
            .epochs
            .iter()
            .map(|e| (e.iter as f64 / per_epoch, f(e)))
            .collect()
    };
    let mark = (report.epochs.len() / 20).max(1);
    let accuracy = Panel {
        title: "accuracy".into(),
        x_label: "epochs".into(),
        y_label: "accuracy".into(),
        y_range: (0.0, 1.0),
        series: vec![
            Series::new("train acc", epochs(|e| e.train_acc)).marked(mark),
            Series::new("test acc", epochs(|e| e.test_acc))
                .dashed()
                .marked(mark),
        ],
        legend: true,
    };
    let losses: Vec<f64> = report.losses.iter().map(|&l| l as f64).collect();
    let smooth = smooth_curve(&losses);
    let top = smooth
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let loss = Panel {
        title: "loss".into(),
        x_label: "iterations".into(),
        y_label: "loss".into(),
        y_range: (0.0, (top * 1.05).max(1e-3)),
        series: vec![Series::new(
            "",
            smooth
                .iter()
                .enumerate()
                .map(|(i, &y)| (i as f64, y))
                .collect(),
        )],
        legend: false,
    };
    draw(path, title, &[accuracy, loss], 2, (1200, 480))
}

/// The book's `smooth_curve` (`common/util.py`): the curve reflected at both ends and
/// convolved with a Kaiser window of 11 points, β = 2; as many points as it is given.
pub fn smooth_curve(x: &[f64]) -> Vec<f64> {
    const WINDOW: usize = 11;
    let n = x.len();
    if n < WINDOW {
        return x.to_vec();
    }
    // s = x[10:0:-1] + x + x[-1:-11:-1]
    let mut s: Vec<f64> = (1..WINDOW).rev().map(|i| x[i]).collect();
    s.extend_from_slice(x);
    s.extend((1..WINDOW).map(|i| x[n - i]));
    let w = kaiser(WINDOW, 2.0);
    let total: f64 = w.iter().sum();
    // np.convolve(w/w.sum(), s, mode='valid'), then y[5:len(y)-5].
    let y: Vec<f64> = (0..=s.len() - WINDOW)
        .map(|j| {
            (0..WINDOW)
                .map(|k| w[k] / total * s[j + WINDOW - 1 - k])
                .sum()
        })
        .collect();
    y[5..y.len() - 5].to_vec()
}

/// NumPy's `kaiser(m, beta)`.
fn kaiser(m: usize, beta: f64) -> Vec<f64> {
    let alpha = (m as f64 - 1.0) / 2.0;
    (0..m)
        .map(|k| {
            let r = (k as f64 - alpha) / alpha;
            bessel_i0(beta * (1.0 - r * r).max(0.0).sqrt()) / bessel_i0(beta)
        })
        .collect()
}

/// The modified Bessel function of the first kind, order 0, by its series.
fn bessel_i0(x: f64) -> f64 {
    let (mut sum, mut term) = (1.0, 1.0);
    for k in 1..40 {
        term *= (x / 2.0) * (x / 2.0) / (k as f64 * k as f64);
        sum += term;
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kaiser_and_smoothing_are_numpys_and_the_books() {
        // np.kaiser(11, 2)
        let want = [
            0.4386762798370488,
            0.6113943543616491,
            0.7676749968275236,
            0.8921614338542881,
            0.9723298008693713,
            1.0,
        ];
        for (a, b) in kaiser(11, 2.0).iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        }
        // common.util.smooth_curve(np.sin(np.arange(30)/3.0) + np.arange(30)/10)
        let x: Vec<f64> = (0..30)
            .map(|i| (i as f64 / 3.0).sin() + i as f64 / 10.0)
            .collect();
        let y = smooth_curve(&x);
        assert_eq!(y.len(), 30);
        let head = [
            0.840833756215802,
            0.8583887345983716,
            0.90761085244522,
            0.9787681495693915,
            1.057535411221072,
        ];
        let tail = [3.065988633956451, 3.04714779758341, 3.0344102046712433];
        for (a, b) in y.iter().zip(head).chain(y[27..].iter().zip(tail)) {
            assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        }
    }

    #[test]
    fn smoothing_keeps_the_length_and_a_constant() {
        let x = vec![0.5; 40];
        let y = smooth_curve(&x);
        assert_eq!(y.len(), 40);
        assert!(y.iter().all(|v| (v - 0.5).abs() < 1e-12));
        // A step is spread over the window, monotonically.
        let step: Vec<f64> = (0..40).map(|i| if i < 20 { 0.0 } else { 1.0 }).collect();
        let s = smooth_curve(&step);
        assert!(s.windows(2).all(|w| w[1] >= w[0] - 1e-12));
        assert!(s[14] < 1e-12 && s[25] > 1.0 - 1e-12);
    }
}
