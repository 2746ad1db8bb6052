//! Shapes with attributes: small colour images `[3, 16, 16]` (values in `[0, 1]`) of a shape
//! of some kind, colour and fill, for zero-shot learning on attribute combinations never seen
//! in training.
//!
//! Every class is one combination kind × colour × fill: 3 × 4 × 2 = 24 classes, class id
//! `kind·8 + colour·2 + fill`. The class-attribute matrix is one-hot per factor (9 columns:
//! `kind=circle|square|triangle`, `colour=red|green|blue|yellow`, `fill=solid|striped`), so
//! an unseen combination is described by attributes that were each seen in other classes.
//! Size (radius 3.5–7 px), position, rotation, colour shade and background noise vary per
//! sample and belong to no class.

use crate::dataset::{ClassAttributes, TensorDataset};
use crate::error::{DataError, Result};
use crate::seed::{rng_for, tag};

/// Shape kinds.
pub const SHAPE_KINDS: [&str; 3] = ["circle", "square", "triangle"];
/// Colours.
pub const SHAPE_COLOURS: [&str; 4] = ["red", "green", "blue", "yellow"];
/// Fills.
pub const SHAPE_FILLS: [&str; 2] = ["solid", "striped"];
/// Image side in pixels.
pub const SHAPE_SIZE: usize = 16;

const RGB: [[f32; 3]; 4] = [
    [0.9, 0.15, 0.1],
    [0.15, 0.8, 0.2],
    [0.15, 0.3, 0.95],
    [0.95, 0.85, 0.1],
];

/// Number of classes (24).
pub const SHAPE_CLASSES: usize = SHAPE_KINDS.len() * SHAPE_COLOURS.len() * SHAPE_FILLS.len();

/// `(kind, colour, fill)` of a class id.
pub fn shape_factors(class: u32) -> (usize, usize, usize) {
    let c = class as usize;
    (c / 8, (c / 2) % 4, c % 2)
}

/// The class-attribute matrix `(24, 9)`, one-hot per factor.
pub fn shape_attributes() -> ClassAttributes {
    let mut names: Vec<String> = SHAPE_KINDS.iter().map(|k| format!("kind={k}")).collect();
    names.extend(SHAPE_COLOURS.iter().map(|c| format!("colour={c}")));
    names.extend(SHAPE_FILLS.iter().map(|f| format!("fill={f}")));
    let mut values = vec![0f32; SHAPE_CLASSES * 9];
    for c in 0..SHAPE_CLASSES {
        let (k, col, f) = shape_factors(c as u32);
        values[c * 9 + k] = 1.0;
        values[c * 9 + 3 + col] = 1.0;
        values[c * 9 + 7 + f] = 1.0;
    }
    ClassAttributes::from_trusted(names, values, SHAPE_CLASSES)
}

/// Class names, e.g. `"red striped triangle"`.
pub fn shape_class_names() -> Vec<String> {
    (0..SHAPE_CLASSES as u32)
        .map(|c| {
            let (k, col, f) = shape_factors(c);
            format!(
                "{} {} {}",
                SHAPE_COLOURS[col], SHAPE_FILLS[f], SHAPE_KINDS[k]
            )
        })
        .collect()
}

fn inside(kind: usize, dx: f64, dy: f64, r: f64) -> bool {
    match kind {
        0 => dx * dx + dy * dy <= r * r,
        1 => dx.abs() <= 0.82 * r && dy.abs() <= 0.82 * r,
        _ => {
            // Upward triangle with vertices on the circle of radius r.
            let v = |deg: f64| {
                let t = deg.to_radians();
                (r * t.cos(), r * t.sin())
            };
            let (a, b, c) = (v(-90.0), v(30.0), v(150.0));
            let side =
                |p: (f64, f64), q: (f64, f64)| (q.0 - p.0) * (dy - p.1) - (q.1 - p.1) * (dx - p.0);
            let (s1, s2, s3) = (side(a, b), side(b, c), side(c, a));
            (s1 >= 0.0 && s2 >= 0.0 && s3 >= 0.0) || (s1 <= 0.0 && s2 <= 0.0 && s3 <= 0.0)
        }
    }
}

/// `n_per_class` images of each of the 24 classes, classes and attribute matrix attached;
/// seeded.
pub fn shapes(n_per_class: usize, seed: u64) -> Result<TensorDataset> {
    if n_per_class == 0 {
        return Err(DataError::invalid("shapes", "n_per_class must be positive"));
    }
    let s = SHAPE_SIZE;
    let mut x = Vec::with_capacity(n_per_class * SHAPE_CLASSES * 3 * s * s);
    let mut y = Vec::with_capacity(n_per_class * SHAPE_CLASSES);
    for class in 0..SHAPE_CLASSES as u32 {
        let (kind, col, fill) = shape_factors(class);
        for k in 0..n_per_class {
            let mut rng = rng_for(seed, &[tag::GENERATE, 5, u64::from(class), k as u64]);
            let mut u = |lo: f64, hi: f64| lo + (hi - lo) * rng.uniform01();
            let r = u(3.5, 7.0);
            let cx = u(r + 0.5, s as f64 - r - 0.5);
            let cy = u(r + 0.5, s as f64 - r - 0.5);
            let rot = u(-20.0, 20.0).to_radians();
            let stripe_period = u(3.0, 4.5);
            let stripe_phase = u(0.0, stripe_period);
            let bg = u(0.05, 0.2) as f32;
            let shade: Vec<f32> = RGB[col]
                .iter()
                .map(|&v| (v + u(-0.08, 0.08) as f32).clamp(0.0, 1.0))
                .collect();
            let (sn, cs) = rot.sin_cos();
            let mut img = vec![0f32; 3 * s * s];
            for py in 0..s {
                for px in 0..s {
                    // 3×3 supersampling for soft edges.
                    let mut cover = 0.0f32;
                    let mut on_stripe = 0.0f32;
                    for sy in 0..3 {
                        for sx in 0..3 {
                            let fx = px as f64 + (sx as f64 + 0.5) / 3.0 - cx;
                            let fy = py as f64 + (sy as f64 + 0.5) / 3.0 - cy;
                            let (dx, dy) = (cs * fx + sn * fy, -sn * fx + cs * fy);
                            if inside(kind, dx, dy, r) {
                                cover += 1.0 / 9.0;
                                let t = ((fx + fy + stripe_phase) / stripe_period).rem_euclid(1.0);
                                if t < 0.5 {
                                    on_stripe += 1.0 / 9.0;
                                }
                            }
                        }
                    }
                    for ch in 0..3 {
                        let paint = if fill == 0 {
                            cover * shade[ch]
                        } else {
                            on_stripe * shade[ch] + (cover - on_stripe) * 0.25 * shade[ch]
                        };
                        img[ch * s * s + py * s + px] = bg * (1.0 - cover) + paint;
                    }
                }
            }
            let mut noise = rng_for(seed, &[tag::GENERATE, 6, u64::from(class), k as u64]);
            for v in img.iter_mut() {
                *v = (*v + 0.03 * noise.normal01() as f32).clamp(0.0, 1.0);
            }
            x.extend(img);
            y.push(class);
        }
    }
    TensorDataset::new("shapes", x, vec![3, s, s], y)?
        .with_class_names(shape_class_names())?
        .with_attributes(shape_attributes())
}
