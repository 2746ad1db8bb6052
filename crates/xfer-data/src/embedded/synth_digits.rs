//! Synthetic digits: a generated source domain for synthetic → real transfer onto optdigits
//! (the shape of the DANN paper's synthetic-numbers → SVHN experiment).
//!
//! Each digit is a few strokes — lines and elliptic arcs — in a unit box, with per-sample
//! random perturbations of every control point, style variants (a flag on the 1, an open or
//! closed 4, a bar on the 7), and a random affine placement: height, width, slant (shear),
//! rotation and position, and a random pen thickness. The strokes are drawn on a 32×32 binary
//! canvas and reduced to 8×8 exactly as optdigits was made: the number of set pixels in each
//! 4×4 block, 0..16.

use crate::dataset::TensorDataset;
use crate::embedded::digit_attributes::digit_attributes;
use crate::error::{DataError, Result};
use crate::seed::{rng_for, tag};
use xfer_ops::SeededRng;

const CANVAS: usize = 32;

#[derive(Clone, Copy)]
enum Stroke {
    /// From `(u0, v0)` to `(u1, v1)` in the unit box (v points down).
    Line(f64, f64, f64, f64),
    /// Ellipse centre `(cu, cv)`, radii `(ru, rv)`, from angle `t0` to `t1` in degrees
    /// (`0` = right, `90` = bottom, `−90` = top).
    Arc(f64, f64, f64, f64, f64, f64),
}

use Stroke::{Arc, Line};

/// The strokes of digit `d`, style chosen with `rng`.
fn glyph(d: u32, rng: &mut SeededRng) -> Vec<Stroke> {
    let coin = |rng: &mut SeededRng, p: f64| rng.uniform01() < p;
    match d {
        0 => vec![Arc(0.5, 0.5, 0.42, 0.48, 0.0, 360.0)],
        1 => {
            let mut s = vec![Line(0.55, 0.02, 0.5, 0.98)];
            if coin(rng, 0.6) {
                s.push(Line(0.25, 0.28, 0.55, 0.02));
            }
            if coin(rng, 0.2) {
                s.push(Line(0.28, 0.98, 0.75, 0.98));
            }
            s
        }
        2 => vec![
            Arc(0.5, 0.3, 0.4, 0.27, -170.0, 30.0),
            Line(0.85, 0.43, 0.08, 0.97),
            Line(0.08, 0.97, 0.95, 0.97),
        ],
        3 => vec![
            Arc(0.48, 0.27, 0.4, 0.25, -160.0, 90.0),
            Arc(0.48, 0.74, 0.44, 0.25, -90.0, 160.0),
        ],
        4 => {
            if coin(rng, 0.5) {
                vec![
                    Line(0.7, 0.02, 0.05, 0.68),
                    Line(0.05, 0.68, 0.95, 0.68),
                    Line(0.7, 0.02, 0.7, 0.98),
                ]
            } else {
                vec![
                    Line(0.15, 0.02, 0.1, 0.65),
                    Line(0.1, 0.65, 0.92, 0.65),
                    Line(0.72, 0.1, 0.72, 0.98),
                ]
            }
        }
        5 => vec![
            Line(0.88, 0.03, 0.2, 0.03),
            Line(0.2, 0.03, 0.15, 0.47),
            Arc(0.48, 0.68, 0.4, 0.29, -140.0, 150.0),
        ],
        6 => vec![
            Arc(0.55, 0.55, 0.43, 0.5, -50.0, -200.0),
            Arc(0.52, 0.72, 0.36, 0.26, 0.0, 360.0),
        ],
        7 => {
            let mut s = vec![Line(0.05, 0.03, 0.95, 0.03), Line(0.95, 0.03, 0.38, 0.98)];
            if coin(rng, 0.25) {
                s.push(Line(0.35, 0.5, 0.85, 0.5));
            }
            s
        }
        8 => vec![
            Arc(0.5, 0.26, 0.34, 0.24, 0.0, 360.0),
            Arc(0.5, 0.73, 0.42, 0.26, 0.0, 360.0),
        ],
        _ => {
            if coin(rng, 0.5) {
                vec![
                    Arc(0.48, 0.3, 0.4, 0.28, 0.0, 360.0),
                    Line(0.88, 0.3, 0.7, 0.98),
                ]
            } else {
                vec![
                    Arc(0.48, 0.3, 0.4, 0.28, 0.0, 360.0),
                    Arc(0.3, 0.3, 0.58, 0.68, 0.0, 80.0),
                ]
            }
        }
    }
}

/// Random placement of one glyph on the canvas.
struct Pose {
    h: f64,
    w: f64,
    slant: f64,
    rot: f64,
    cx: f64,
    cy: f64,
}

impl Pose {
    fn draw(rng: &mut SeededRng) -> Self {
        let mut u = |lo: f64, hi: f64| lo + (hi - lo) * rng.uniform01();
        let h = u(25.0, 31.0);
        Self {
            h,
            w: h * u(0.55, 0.85),
            slant: u(-0.3, 0.3),
            rot: u(-8.0, 8.0).to_radians(),
            cx: 16.0 + u(-1.5, 1.5),
            cy: 16.0 + u(-1.0, 1.0),
        }
    }
    fn map(&self, u: f64, v: f64) -> (f64, f64) {
        let mut x = (u - 0.5) * self.w;
        let y = (v - 0.5) * self.h;
        x -= self.slant * y;
        let (s, c) = self.rot.sin_cos();
        (self.cx + c * x - s * y, self.cy + s * x + c * y)
    }
}

/// The strokes as canvas polylines after jitter and placement.
fn polylines(strokes: &[Stroke], pose: &Pose, rng: &mut SeededRng) -> Vec<Vec<(f64, f64)>> {
    let mut j = |s: f64| s * rng.normal01();
    strokes
        .iter()
        .map(|st| match *st {
            Line(u0, v0, u1, v1) => {
                let a = pose.map(u0 + j(0.03), v0 + j(0.02));
                let b = pose.map(u1 + j(0.03), v1 + j(0.02));
                vec![a, b]
            }
            Arc(cu, cv, ru, rv, t0, t1) => {
                let (cu, cv) = (cu + j(0.02), cv + j(0.02));
                let (ru, rv) = (ru * (1.0 + j(0.08)), rv * (1.0 + j(0.06)));
                let (t0, t1) = (t0 + j(8.0), t1 + j(8.0));
                let steps = ((t1 - t0).abs() / 10.0).ceil().max(2.0) as usize;
                (0..=steps)
                    .map(|k| {
                        let t = (t0 + (t1 - t0) * k as f64 / steps as f64).to_radians();
                        pose.map(cu + ru * t.cos(), cv + rv * t.sin())
                    })
                    .collect()
            }
        })
        .collect()
}

fn dist2_to_segment(px: f64, py: f64, (ax, ay): (f64, f64), (bx, by): (f64, f64)) -> f64 {
    let (dx, dy) = (bx - ax, by - ay);
    let len2 = dx * dx + dy * dy;
    let t = if len2 > 0.0 {
        (((px - ax) * dx + (py - ay) * dy) / len2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let (qx, qy) = (ax + t * dx - px, ay + t * dy - py);
    qx * qx + qy * qy
}

/// Draws polylines with a round pen of diameter `thickness` on a binary 32×32 canvas.
fn rasterise(lines: &[Vec<(f64, f64)>], thickness: f64) -> Vec<bool> {
    let mut canvas = vec![false; CANVAS * CANVAS];
    let r = thickness / 2.0;
    let r2 = r * r;
    for pl in lines {
        for seg in pl.windows(2) {
            let (a, b) = (seg[0], seg[1]);
            let lo_x = (a.0.min(b.0) - r).floor().max(0.0) as usize;
            let hi_x = ((a.0.max(b.0) + r).ceil().max(0.0) as usize).min(CANVAS);
            let lo_y = (a.1.min(b.1) - r).floor().max(0.0) as usize;
            let hi_y = ((a.1.max(b.1) + r).ceil().max(0.0) as usize).min(CANVAS);
            for y in lo_y..hi_y {
                for x in lo_x..hi_x {
                    if dist2_to_segment(x as f64 + 0.5, y as f64 + 0.5, a, b) <= r2 {
                        canvas[y * CANVAS + x] = true;
                    }
                }
            }
        }
    }
    canvas
}

/// Counts set pixels in each 4×4 block of a 32×32 canvas: 8×8 values 0..16 (optdigits'
/// reduction).
pub fn block_counts_32_to_8(canvas: &[bool]) -> Vec<f32> {
    let mut out = vec![0f32; 64];
    for (i, &on) in canvas.iter().enumerate().take(CANVAS * CANVAS) {
        if on {
            let (y, x) = (i / CANVAS, i % CANVAS);
            out[(y / 4) * 8 + x / 4] += 1.0;
        }
    }
    out
}

/// One synthetic digit `d` as a 32×32 binary canvas.
pub fn render_digit_32(d: u32, rng: &mut SeededRng) -> Vec<bool> {
    let strokes = glyph(d % 10, rng);
    let pose = Pose::draw(rng);
    let lines = polylines(&strokes, &pose, rng);
    let thickness = 2.5 + 3.0 * rng.uniform01();
    rasterise(&lines, thickness)
}

/// `n_per_class` synthetic digits of each class 0..9, as images `[1, 8, 8]` with values 0..16
/// (like optdigits), classes `"0"`..`"9"`, digit attributes attached; seeded. The samples
/// are ordered class by class; loaders shuffle.
pub fn synth_digits(n_per_class: usize, seed: u64) -> Result<TensorDataset> {
    if n_per_class == 0 {
        return Err(DataError::invalid(
            "synth_digits",
            "n_per_class must be positive",
        ));
    }
    let mut x = Vec::with_capacity(n_per_class * 10 * 64);
    let mut y = Vec::with_capacity(n_per_class * 10);
    for d in 0..10u32 {
        for k in 0..n_per_class {
            let mut rng = rng_for(seed, &[tag::GENERATE, 2, u64::from(d), k as u64]);
            x.extend(block_counts_32_to_8(&render_digit_32(d, &mut rng)));
            y.push(d);
        }
    }
    TensorDataset::new("synth-digits", x, vec![1, 8, 8], y)?
        .with_num_classes(10)?
        .with_attributes(digit_attributes())
}
