//! PNG pictures with `plotters`: training curves of one or several runs, and 2-D PCA
//! projections of features coloured by domain and by class — the picture of
//! domain-adversarial training, before and after.
//!
//! Labels are drawn with DejaVu Sans, embedded in the crate (`assets/DejaVuSans.ttf`, Bitstream
//! Vera licence in `assets/LICENSE-DejaVu.txt`), so nothing depends on system fonts.
//! Pictures go under [`default_report_dir`] (`target/xfer-report/`) unless told otherwise.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use candle_core::Tensor;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::history::History;
use crate::pca::Pca;
use crate::{Result, TrainError};

/// Where examples write their pictures by default (relative to the working directory).
pub const DEFAULT_REPORT_DIR: &str = "target/xfer-report";

/// [`DEFAULT_REPORT_DIR`] as a path.
pub fn default_report_dir() -> PathBuf {
    PathBuf::from(DEFAULT_REPORT_DIR)
}

const FONT_BYTES: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
const FONT: &str = "sans-serif";

fn ensure_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(TrainError::Config(
            "the embedded DejaVu Sans font could not be registered".into(),
        ))
    }
}

/// The tab10 palette.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

fn prepare(path: &Path) -> Result<()> {
    ensure_font()?;
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|e| TrainError::file(dir, e))?;
    }
    Ok(())
}

/// A range covering `values` with a 5 % margin (a unit range around a single value).
fn padded_range(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        return 0.0..1.0;
    }
    let span = hi - lo;
    if span <= f64::EPSILON * lo.abs().max(1.0) {
        let pad = (lo.abs() * 0.1).max(0.5);
        return (lo - pad)..(hi + pad);
    }
    (lo - 0.05 * span)..(hi + 0.05 * span)
}

/// One named curve.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The legend entry.
    pub name: String,
    /// `(x, y)` points; non-finite ones are skipped.
    pub points: Vec<(f64, f64)>,
}

impl Series {
    /// A named curve.
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self {
            name: name.into(),
            points,
        }
    }
}

/// Draws `series` as lines (with markers when a curve has at most 60 points) into a PNG.
pub fn plot_curves(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
) -> Result<()> {
    prepare(path)?;
    let err = |e: &dyn std::fmt::Display| TrainError::file(path, e);
    let finite = |s: &Series| -> Vec<(f64, f64)> {
        s.points
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect()
    };
    let xr = padded_range(
        series
            .iter()
            .flat_map(|s| finite(s).into_iter().map(|p| p.0)),
    );
    let yr = padded_range(
        series
            .iter()
            .flat_map(|s| finite(s).into_iter().map(|p| p.1)),
    );
    let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 24))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(xr, yr)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .label_style((FONT, 14))
        .draw()
        .map_err(|e| err(&e))?;
    for (i, s) in series.iter().enumerate() {
        let c = colour(i);
        let pts = finite(s);
        chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(s.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        if pts.len() <= 60 {
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled())))
                .map_err(|e| err(&e))?;
        }
    }
    if !series.is_empty() {
        chart
            .configure_series_labels()
            .label_font((FONT, 14))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// Curves of `metric` for several runs: the evaluation metric (one point per epoch) when the
/// runs' evaluations report it, else the per-step value (`"loss"`, `"lr"`, `"grad_norm"` or an
/// objective metric).
pub fn plot_history(
    path: &Path,
    title: &str,
    runs: &[(&str, &History)],
    metric: &str,
) -> Result<()> {
    let series: Vec<Series> = runs
        .iter()
        .map(|(name, h)| {
            let eval = h.eval_curve(metric);
            let pts = if eval.is_empty() {
                h.step_curve(metric)
            } else {
                eval
            };
            Series::new(*name, pts)
        })
        .collect();
    plot_curves(path, title, "step", metric, &series)
}

/// The point labels of two data sets drawn in one panel, `a`'s rows first: the set of each
/// point (0 for `a`, 1 for `b`: source/target, seen/unseen) and its class.
pub fn two_set_labels(
    a: &xfer_data::TensorDataset,
    b: &xfer_data::TensorDataset,
) -> (Vec<usize>, Vec<usize>) {
    let sets = std::iter::repeat_n(0, a.len())
        .chain(std::iter::repeat_n(1, b.len()))
        .collect();
    let classes = a
        .labels()
        .iter()
        .chain(b.labels())
        .map(|&c| c as usize)
        .collect();
    (sets, classes)
}

/// Points in 2-D with a domain and a class each.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingPanel {
    /// The panel's title.
    pub title: String,
    /// The 2-D coordinates.
    pub points: Vec<[f64; 2]>,
    /// The domain of each point (0 = source, 1 = target, ...).
    pub domains: Vec<usize>,
    /// The class of each point.
    pub classes: Vec<usize>,
}

impl EmbeddingPanel {
    /// Projects `features` (n × d) on their first two principal components. The title gets
    /// the share of variance the two axes explain.
    pub fn pca(
        title: impl Into<String>,
        features: &Tensor,
        domains: &[usize],
        classes: &[usize],
    ) -> Result<Self> {
        let n = features.dims().first().copied().unwrap_or(0);
        if domains.len() != n || classes.len() != n {
            return Err(TrainError::metric(
                "embedding",
                format!(
                    "{n} feature rows but {} domains and {} classes",
                    domains.len(),
                    classes.len()
                ),
            ));
        }
        let d = features.dims().get(1).copied().unwrap_or(0);
        let k = d.min(2);
        let pca = Pca::fit_tensor(features, k)?;
        let proj = pca.transform_tensor(features)?;
        let r = pca.explained_variance_ratio();
        let pct: Vec<String> = r.iter().map(|v| format!("{:.0}%", 100.0 * v)).collect();
        Ok(Self {
            title: format!("{} (PCA: {})", title.into(), pct.join(" + ")),
            points: proj
                .into_iter()
                .map(|p| {
                    [
                        p.first().copied().unwrap_or(0.0),
                        p.get(1).copied().unwrap_or(0.0),
                    ]
                })
                .collect(),
            domains: domains.to_vec(),
            classes: classes.to_vec(),
        })
    }

    fn check(&self) -> Result<()> {
        if self.domains.len() != self.points.len() || self.classes.len() != self.points.len() {
            return Err(TrainError::metric(
                "embedding",
                format!(
                    "panel {:?}: {} points but {} domains and {} classes",
                    self.title,
                    self.points.len(),
                    self.domains.len(),
                    self.classes.len()
                ),
            ));
        }
        Ok(())
    }
}

/// Draws each panel as a row of two scatter plots: coloured by domain (left) and by class
/// (right; the marker shows the domain: ● first, ▲ second, ✕ third). `domain_names` label
/// the domains (`["source", "target"]`).
pub fn plot_embedding(
    path: &Path,
    title: &str,
    panels: &[EmbeddingPanel],
    domain_names: &[&str],
) -> Result<()> {
    for p in panels {
        p.check()?;
    }
    prepare(path)?;
    let err = |e: &dyn std::fmt::Display| TrainError::file(path, e);
    let rows = panels.len().max(1);
    let root = BitMapBackend::new(path, (1200, 40 + 480 * rows as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let root = root.titled(title, (FONT, 26)).map_err(|e| err(&e))?;
    let areas = root.split_evenly((rows, 2));
    for (r, panel) in panels.iter().enumerate() {
        let xr = padded_range(panel.points.iter().map(|p| p[0]));
        let yr = padded_range(panel.points.iter().map(|p| p[1]));
        for (c, by_domain) in [(0usize, true), (1, false)] {
            let Some(area) = areas.get(2 * r + c) else {
                continue;
            };
            let sub = if by_domain { "by domain" } else { "by class" };
            let mut chart = ChartBuilder::on(area)
                .caption(format!("{} — {sub}", panel.title), (FONT, 16))
                .margin(10)
                .x_label_area_size(30)
                .y_label_area_size(44)
                .build_cartesian_2d(xr.clone(), yr.clone())
                .map_err(|e| err(&e))?;
            chart
                .configure_mesh()
                .label_style((FONT, 12))
                .draw()
                .map_err(|e| err(&e))?;
            let mut domains: Vec<usize> = panel.domains.clone();
            domains.sort_unstable();
            domains.dedup();
            let mut classes: Vec<usize> = panel.classes.clone();
            classes.sort_unstable();
            classes.dedup();
            let groups: Vec<(usize, Option<usize>)> = if by_domain {
                domains.iter().map(|&d| (d, None)).collect()
            } else {
                domains
                    .iter()
                    .flat_map(|&d| classes.iter().map(move |&k| (d, Some(k))))
                    .collect()
            };
            let mut labelled = std::collections::BTreeSet::new();
            for (d, k) in groups {
                let pts: Vec<(f64, f64)> = panel
                    .points
                    .iter()
                    .zip(panel.domains.iter().zip(&panel.classes))
                    .filter(|(p, (pd, pk))| {
                        **pd == d
                            && k.is_none_or(|k| **pk == k)
                            && p[0].is_finite()
                            && p[1].is_finite()
                    })
                    .map(|(p, _)| (p[0], p[1]))
                    .collect();
                if pts.is_empty() {
                    continue;
                }
                let col = match k {
                    None => colour(d),
                    Some(k) => colour(k),
                };
                let style = col.mix(0.75).filled();
                let anno = match d % 3 {
                    0 => chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, style))),
                    1 => chart.draw_series(pts.iter().map(|&p| TriangleMarker::new(p, 4, style))),
                    _ => chart
                        .draw_series(pts.iter().map(|&p| Cross::new(p, 3, col.stroke_width(1)))),
                }
                .map_err(|e| err(&e))?;
                let label = match k {
                    None => domain_names
                        .get(d)
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| format!("domain {d}")),
                    Some(k) => format!("class {k}"),
                };
                if labelled.insert(label.clone()) && labelled.len() <= 12 {
                    anno.label(label)
                        .legend(move |(x, y)| Circle::new((x + 8, y), 4, col.filled()));
                }
            }
            chart
                .configure_series_labels()
                .label_font((FONT, 12))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(|e| err(&e))?;
        }
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// One-call picture: the PCA of `features` coloured by domain and by class.
pub fn plot_features_pca(
    path: &Path,
    title: &str,
    features: &Tensor,
    domains: &[usize],
    classes: &[usize],
    domain_names: &[&str],
) -> Result<()> {
    let panel = EmbeddingPanel::pca("features", features, domains, classes)?;
    plot_embedding(path, title, &[panel], domain_names)
}

/// Draws a confusion matrix (`rows[t][p]`: samples of true class `t` predicted as `p`) as a
/// PNG heat map, each row shaded by its share of the row's samples, with the counts written
/// in the cells when there are at most 30 classes.
pub fn plot_confusion(
    path: &Path,
    title: &str,
    class_names: &[String],
    rows: &[Vec<u64>],
) -> Result<()> {
    prepare(path)?;
    let err = |e: &dyn std::fmt::Display| TrainError::file(path, e);
    let n = rows.len();
    if n == 0 || rows.iter().any(|r| r.len() != n) {
        return Err(TrainError::BadData(format!(
            "{}: a confusion matrix must be square and non-empty",
            path.display()
        )));
    }
    let cell = (560 / n as u32).clamp(8, 60);
    let side = cell * n as u32;
    let name = |i: usize| class_names.get(i).cloned().unwrap_or_else(|| i.to_string());
    let root = BitMapBackend::new(path, (side + 220, side + 200)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 22))
        .margin(12)
        .x_label_area_size(110)
        .y_label_area_size(150)
        .build_cartesian_2d((0..n).into_segmented(), (0..n).into_segmented())
        .map_err(|e| err(&e))?;
    let show = n <= 30;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(if show { n } else { 0 })
        .y_labels(if show { n } else { 0 })
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) if *i < n => name(*i),
            _ => String::new(),
        })
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => (n - 1).checked_sub(*i).map(name).unwrap_or_default(),
            _ => String::new(),
        })
        .x_desc("predicted")
        .y_desc("true")
        .label_style((FONT, 12))
        .draw()
        .map_err(|e| err(&e))?;
    for (t, row) in rows.iter().enumerate() {
        let total: u64 = row.iter().sum();
        for (p, &v) in row.iter().enumerate() {
            let share = if total > 0 {
                v as f64 / total as f64
            } else {
                0.0
            };
            let shade = (255.0 * (1.0 - share)) as u8;
            let y = n - 1 - t;
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [
                        (SegmentValue::Exact(p), SegmentValue::Exact(y)),
                        (SegmentValue::Exact(p + 1), SegmentValue::Exact(y + 1)),
                    ],
                    RGBColor(shade, shade, 255).filled(),
                )))
                .map_err(|e| err(&e))?;
            if show && cell >= 18 {
                let colour = if share > 0.5 { WHITE } else { BLACK };
                chart
                    .draw_series(std::iter::once(Text::new(
                        v.to_string(),
                        (SegmentValue::CenterOf(p), SegmentValue::CenterOf(y)),
                        (FONT, 12).into_font().color(&colour),
                    )))
                    .map_err(|e| err(&e))?;
            }
        }
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{EvalRecord, StepRecord};
    use candle_core::{DType, Device};

    fn tmp(name: &str) -> PathBuf {
        std::env::temp_dir()
            .join(format!("xfer-train-plot-{}", std::process::id()))
            .join(name)
    }

    fn is_png(path: &Path) -> bool {
        let b = std::fs::read(path).unwrap();
        b.len() > 1000 && b.starts_with(b"\x89PNG\r\n\x1a\n")
    }

    #[test]
    fn training_curves_of_two_runs_are_written_as_png() {
        let run = |scale: f64| History {
            steps: (0..50)
                .map(|s| StepRecord {
                    step: s,
                    epoch: s / 10,
                    loss: scale / (1.0 + s as f64),
                    lr: 0.1,
                    grad_norm: None,
                    metrics: vec![],
                })
                .collect(),
            evals: (0..5)
                .map(|e| EvalRecord {
                    step: 10 * (e + 1),
                    epoch: e,
                    metrics: vec![("acc".into(), 0.5 + 0.1 * e as f64 * scale)],
                })
                .collect(),
        };
        let (a, b) = (run(1.0), run(0.5));
        let loss = tmp("loss.png");
        plot_history(&loss, "loss", &[("dann", &a), ("source_only", &b)], "loss").unwrap();
        assert!(is_png(&loss));
        let acc = tmp("acc.png");
        plot_history(
            &acc,
            "accuracy",
            &[("dann", &a), ("source_only", &b)],
            "acc",
        )
        .unwrap();
        assert!(is_png(&acc));
        // degenerate input (one constant point, a NaN) still draws
        let flat = tmp("flat.png");
        plot_curves(
            &flat,
            "flat",
            "x",
            "y",
            &[Series::new("c", vec![(1.0, 2.0), (f64::NAN, 1.0)])],
        )
        .unwrap();
        assert!(is_png(&flat));
    }

    #[test]
    fn pca_scatter_by_domain_and_class_is_written_as_png() {
        let mut rng = xfer_ops::SeededRng::new(1);
        let n = 120;
        let feats = rng
            .normal(&[n, 6], 0.0, 1.0, DType::F32, &Device::Cpu)
            .unwrap();
        let domains: Vec<usize> = (0..n).map(|i| i % 2).collect();
        let classes: Vec<usize> = (0..n).map(|i| (i / 2) % 3).collect();
        let before = EmbeddingPanel::pca("before", &feats, &domains, &classes).unwrap();
        assert!(before.title.contains('%'));
        let after =
            EmbeddingPanel::pca("after", &(feats.clone() * 2.0).unwrap(), &domains, &classes)
                .unwrap();
        let path = tmp("pca.png");
        plot_embedding(
            &path,
            "DANN features",
            &[before, after],
            &["source", "target"],
        )
        .unwrap();
        assert!(is_png(&path));
        let one = tmp("sub/one.png");
        plot_features_pca(&one, "features", &feats, &domains, &classes, &["s", "t"]).unwrap();
        assert!(is_png(&one));
        assert!(EmbeddingPanel::pca("x", &feats, &domains[..3], &classes).is_err());
    }
}
