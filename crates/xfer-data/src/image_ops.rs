//! Pixel operations on row-major `(C, H, W)` f32 images: bilinear resize, crops, flips and
//! affine warps. Shared by the transforms and the shifted-digit generators.

use crate::error::{DataError, Result};

/// `(C, H, W)` from a sample shape `[C, H, W]` or `[H, W]` (one channel).
pub fn chw(what: &str, shape: &[usize]) -> Result<(usize, usize, usize)> {
    match *shape {
        [c, h, w] if c > 0 && h > 0 && w > 0 => Ok((c, h, w)),
        [h, w] if h > 0 && w > 0 => Ok((1, h, w)),
        _ => Err(DataError::shape(
            what,
            format!("needs image samples of shape [C, H, W] or [H, W], got {shape:?}"),
        )),
    }
}

/// The image shape `[C, H, W]`, or `[H, W]` when the input was two-dimensional.
pub fn image_shape(like: &[usize], c: usize, h: usize, w: usize) -> Vec<usize> {
    if like.len() == 2 {
        vec![h, w]
    } else {
        vec![c, h, w]
    }
}

fn check_len(what: &str, x: &[f32], c: usize, h: usize, w: usize) -> Result<()> {
    if x.len() == c * h * w {
        Ok(())
    } else {
        Err(DataError::shape(
            what,
            format!("{} values for an image of {c}x{h}x{w}", x.len()),
        ))
    }
}

/// Bilinear resize to `(oh, ow)` with PyTorch's `align_corners=False` convention:
/// source coordinate `(dst + 0.5)·in/out − 0.5`, clamped at the border.
pub fn resize_bilinear(
    x: &[f32],
    (c, h, w): (usize, usize, usize),
    oh: usize,
    ow: usize,
) -> Result<Vec<f32>> {
    check_len("resize", x, c, h, w)?;
    if oh == 0 || ow == 0 {
        return Err(DataError::invalid(
            "resize",
            format!("target size {oh}x{ow} must be positive"),
        ));
    }
    let axis = |n_in: usize, n_out: usize| -> Vec<(usize, usize, f32)> {
        let s = n_in as f32 / n_out as f32;
        (0..n_out)
            .map(|d| {
                let src = ((d as f32 + 0.5) * s - 0.5).max(0.0);
                let i0 = (src.floor() as usize).min(n_in - 1);
                let i1 = (i0 + 1).min(n_in - 1);
                (i0, i1, src - i0 as f32)
            })
            .collect()
    };
    let ys = axis(h, oh);
    let xs = axis(w, ow);
    let mut out = Vec::with_capacity(c * oh * ow);
    for ch in 0..c {
        let plane = &x[ch * h * w..(ch + 1) * h * w];
        for &(y0, y1, ly) in &ys {
            for &(x0, x1, lx) in &xs {
                let top = plane[y0 * w + x0] * (1.0 - lx) + plane[y0 * w + x1] * lx;
                let bot = plane[y1 * w + x0] * (1.0 - lx) + plane[y1 * w + x1] * lx;
                out.push(top * (1.0 - ly) + bot * ly);
            }
        }
    }
    Ok(out)
}

/// A resampling filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Filter {
    /// Triangle filter, support 1 (bilinear interpolation).
    #[default]
    Bilinear,
    /// Keys' cubic convolution with a = −0.5, support 2 (PIL's and PyTorch's antialiased
    /// bicubic, TensorFlow's bicubic).
    Bicubic,
}

impl Filter {
    fn support(self) -> f64 {
        match self {
            Filter::Bilinear => 1.0,
            Filter::Bicubic => 2.0,
        }
    }
    fn weight(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Filter::Bilinear => (1.0 - x).max(0.0),
            Filter::Bicubic => {
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
        }
    }
}

/// Per output index: the first input index and the normalised weights of `filter`, widened
/// by the downscaling factor when `antialias` — PIL's and PyTorch's separable resampling.
fn coefficients(
    n_in: usize,
    n_out: usize,
    filter: Filter,
    antialias: bool,
) -> Vec<(usize, Vec<f32>)> {
    let scale = n_in as f64 / n_out as f64;
    let fscale = if antialias && scale > 1.0 { scale } else { 1.0 };
    let support = filter.support() * fscale;
    (0..n_out)
        .map(|i| {
            let center = scale * (i as f64 + 0.5);
            let lo = ((center - support + 0.5).floor().max(0.0) as usize).min(n_in - 1);
            let hi = ((center + support + 0.5).floor() as usize).clamp(lo + 1, n_in);
            let mut w: Vec<f64> = (lo..hi)
                .map(|j| filter.weight((j as f64 - center + 0.5) / fscale))
                .collect();
            let total: f64 = w.iter().sum();
            if total != 0.0 {
                w.iter_mut().for_each(|v| *v /= total);
            } else {
                w.iter_mut().for_each(|v| *v = 0.0);
                if let Some(v) = w.first_mut() {
                    *v = 1.0;
                }
            }
            (lo, w.into_iter().map(|v| v as f32).collect())
        })
        .collect()
}

/// Separable resize to `(oh, ow)` with `filter` (rows first, then columns); with
/// `antialias`, shrinking widens the filter by the scale factor so every input pixel counts
/// (PIL's `Image.resize`, PyTorch's `antialias=True`); without, it interpolates between the
/// nearest inputs only. Weights are renormalised at the border.
pub fn resample(
    x: &[f32],
    (c, h, w): (usize, usize, usize),
    oh: usize,
    ow: usize,
    filter: Filter,
    antialias: bool,
) -> Result<Vec<f32>> {
    check_len("resize", x, c, h, w)?;
    if oh == 0 || ow == 0 {
        return Err(DataError::invalid(
            "resize",
            format!("target size {oh}x{ow} must be positive"),
        ));
    }
    if (oh, ow) == (h, w) {
        return Ok(x.to_vec());
    }
    let cx = coefficients(w, ow, filter, antialias);
    let cy = coefficients(h, oh, filter, antialias);
    // Horizontal pass: (c, h, w) → (c, h, ow).
    let mut tmp = Vec::with_capacity(c * h * ow);
    for row in x.chunks_exact(w) {
        for (lo, wt) in &cx {
            let src = row.get(*lo..*lo + wt.len()).unwrap_or(&[]);
            tmp.push(src.iter().zip(wt).map(|(a, b)| a * b).sum::<f32>());
        }
    }
    // Vertical pass: (c, h, ow) → (c, oh, ow), accumulating whole rows.
    let mut out = vec![0f32; c * oh * ow];
    for (plane_in, plane_out) in tmp.chunks_exact(h * ow).zip(out.chunks_exact_mut(oh * ow)) {
        for ((lo, wt), dst) in cy.iter().zip(plane_out.chunks_exact_mut(ow)) {
            for (k, &wk) in wt.iter().enumerate() {
                let Some(src) = plane_in.get((lo + k) * ow..(lo + k + 1) * ow) else {
                    continue;
                };
                for (d, s) in dst.iter_mut().zip(src) {
                    *d += wk * s;
                }
            }
        }
    }
    Ok(out)
}

/// Antialiased bilinear resize to `(oh, ow)` (PIL's `Image.resize(BILINEAR)`, PyTorch's
/// `interpolate(..., mode="bilinear", antialias=True)`): when shrinking, every output pixel
/// averages all the input pixels under a triangle as wide as the scale factor, so no
/// aliasing; when enlarging it is ordinary bilinear interpolation (weights renormalised at
/// the border). Separable: rows first, then columns.
pub fn resize_antialias(
    x: &[f32],
    dims: (usize, usize, usize),
    oh: usize,
    ow: usize,
) -> Result<Vec<f32>> {
    resample(x, dims, oh, ow, Filter::Bilinear, true)
}

/// The `(ch, cw)` window at `(top, left)` (inside the image) resized (antialiased bilinear)
/// to `(oh, ow)`: torchvision's `resized_crop`.
#[allow(clippy::too_many_arguments)]
pub fn resized_crop(
    x: &[f32],
    (c, h, w): (usize, usize, usize),
    top: usize,
    left: usize,
    ch: usize,
    cw: usize,
    oh: usize,
    ow: usize,
) -> Result<Vec<f32>> {
    if ch == 0 || cw == 0 || top + ch > h || left + cw > w {
        return Err(DataError::shape(
            "resized_crop",
            format!("window {ch}x{cw} at ({top}, {left}) does not fit an image of {h}x{w}"),
        ));
    }
    let win = crop(x, (c, h, w), top as isize, left as isize, ch, cw, 0.0)?;
    resize_antialias(&win, (c, ch, cw), oh, ow)
}

/// The `(oh, ow)` window at `(top, left)` of a zero-padded image (`top`/`left` may be
/// negative or run past the border: outside pixels are `fill`).
pub fn crop(
    x: &[f32],
    (c, h, w): (usize, usize, usize),
    top: isize,
    left: isize,
    oh: usize,
    ow: usize,
    fill: f32,
) -> Result<Vec<f32>> {
    check_len("crop", x, c, h, w)?;
    let mut out = Vec::with_capacity(c * oh * ow);
    for ch in 0..c {
        for y in 0..oh {
            let sy = top + y as isize;
            for xx in 0..ow {
                let sx = left + xx as isize;
                let v = if sy >= 0 && sx >= 0 && (sy as usize) < h && (sx as usize) < w {
                    x[ch * h * w + sy as usize * w + sx as usize]
                } else {
                    fill
                };
                out.push(v);
            }
        }
    }
    Ok(out)
}

/// Mirror left–right.
pub fn flip_horizontal(x: &[f32], (c, h, w): (usize, usize, usize)) -> Result<Vec<f32>> {
    check_len("flip", x, c, h, w)?;
    let mut out = x.to_vec();
    for row in out.chunks_mut(w) {
        row.reverse();
    }
    Ok(out)
}

/// Affine warp about the image centre: output pixel `p` takes the bilinear sample of the
/// input at `A⁻¹ (p − centre − t) + centre`, where `A = scale · R(degrees)` (a positive angle
/// turns the content anticlockwise on screen) and `t = (tx, ty)` in pixels. Outside → `fill`.
pub fn affine(
    x: &[f32],
    (c, h, w): (usize, usize, usize),
    degrees: f32,
    scale: f32,
    (tx, ty): (f32, f32),
    fill: f32,
) -> Result<Vec<f32>> {
    check_len("affine", x, c, h, w)?;
    if !(scale.is_finite()
        && scale > 0.0
        && degrees.is_finite()
        && tx.is_finite()
        && ty.is_finite())
    {
        return Err(DataError::invalid(
            "affine",
            format!(
                "degrees {degrees}, scale {scale}, shift ({tx}, {ty}) must be finite, scale > 0"
            ),
        ));
    }
    let (cy, cx) = ((h as f32 - 1.0) / 2.0, (w as f32 - 1.0) / 2.0);
    // Screen coordinates have y pointing down; anticlockwise on screen is a negative
    // mathematical angle in (x, y) pixel space.
    let th = -degrees.to_radians();
    let (s, co) = th.sin_cos();
    let mut out = vec![fill; c * h * w];
    for y in 0..h {
        for xx in 0..w {
            let dx = xx as f32 - cx - tx;
            let dy = y as f32 - cy - ty;
            // inverse rotation R(−θ) and inverse scale
            let u = (co * dx + s * dy) / scale + cx;
            let v = (-s * dx + co * dy) / scale + cy;
            for ch in 0..c {
                let plane = &x[ch * h * w..(ch + 1) * h * w];
                out[ch * h * w + y * w + xx] = sample_bilinear(plane, h, w, u, v, fill);
            }
        }
    }
    Ok(out)
}

/// Bilinear sample of one plane at `(u, v)` (x, y); neighbours outside count as `fill`.
fn sample_bilinear(plane: &[f32], h: usize, w: usize, u: f32, v: f32, fill: f32) -> f32 {
    let (x0, y0) = (u.floor(), v.floor());
    let (lx, ly) = (u - x0, v - y0);
    let at = |yy: f32, xx: f32| -> f32 {
        if yy >= 0.0 && xx >= 0.0 && (yy as usize) < h && (xx as usize) < w {
            plane[yy as usize * w + xx as usize]
        } else {
            fill
        }
    };
    let top = at(y0, x0) * (1.0 - lx) + at(y0, x0 + 1.0) * lx;
    let bot = at(y0 + 1.0, x0) * (1.0 - lx) + at(y0 + 1.0, x0 + 1.0) * lx;
    top * (1.0 - ly) + bot * ly
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_to_same_size_is_identity_and_upsampling_matches_pytorch() {
        let x: Vec<f32> = (0..6).map(|v| v as f32).collect();
        assert_eq!(resize_bilinear(&x, (1, 2, 3), 2, 3).unwrap(), x);
        // torch.nn.functional.interpolate(torch.tensor([[[[0., 1.]]]]), size=(1, 4),
        // mode="bilinear", align_corners=False) = [0, 0.25, 0.75, 1]
        let up = resize_bilinear(&[0.0, 1.0], (1, 1, 2), 1, 4).unwrap();
        assert_eq!(up, vec![0.0, 0.25, 0.75, 1.0]);
    }

    #[test]
    fn affine_rotation_by_90_degrees_moves_right_edge_to_top() {
        // 3x3 with a bright right column; rotating anticlockwise by 90° puts it at the top row.
        let x = vec![0., 0., 1., 0., 0., 1., 0., 0., 1.];
        let r = affine(&x, (1, 3, 3), 90.0, 1.0, (0.0, 0.0), 0.0).unwrap();
        let expect = [1., 1., 1., 0., 0., 0., 0., 0., 0.];
        for (a, b) in r.iter().zip(expect) {
            assert!((a - b).abs() < 1e-5, "{r:?}");
        }
    }

    #[test]
    fn antialiased_resize_filters_with_a_widened_triangle() {
        // Halving: the triangle spans 4 inputs, weights 1/4, 3/4, 3/4, 1/4 (normalised); a
        // linear ramp stays linear inside (out[i] = 2i + 0.5), the border renormalises.
        let x: Vec<f32> = (0..8).map(|v| v as f32).collect();
        let y = resize_antialias(&x, (1, 1, 8), 1, 4).unwrap();
        for (a, b) in y.iter().zip([1.25 / 1.75, 2.5, 4.5, 11.0 / 1.75]) {
            assert!((a - b).abs() < 1e-5, "{y:?}");
        }
        // Enlarging is bilinear with align_corners=False away from the border.
        let up = resize_antialias(&[0.0, 1.0], (1, 1, 2), 1, 4).unwrap();
        assert_eq!(up, vec![0.0, 0.25, 0.75, 1.0]);
        // A constant image stays constant.
        let c = resize_antialias(&[0.5; 3 * 7 * 5], (3, 7, 5), 3, 4).unwrap();
        assert!(c.iter().all(|v| (v - 0.5).abs() < 1e-6));
    }

    #[test]
    fn antialiased_resize_matches_pytorch() {
        // torch.rand(1, 2, 7, 9, generator=torch.Generator().manual_seed(0)) resized with
        // F.interpolate(x, size, mode="bilinear", antialias=True) (PyTorch 2.15): down to 3×4,
        // and down in width / up in height to 11×5.
        let x = [
            0.4962566,
            0.7682218,
            0.08847743,
            0.1320305,
            0.3074228,
            0.6340787,
            0.4900934,
            0.8964447,
            0.455628,
            0.6323063,
            0.3488935,
            0.4017173,
            0.02232575,
            0.1688589,
            0.2938884,
            0.5185218,
            0.6976676,
            0.8000114,
            0.1610295,
            0.2822686,
            0.6816086,
            0.915194,
            0.3970999,
            0.8741559,
            0.4194083,
            0.552907,
            0.9527381,
            0.03616482,
            0.185231,
            0.3734174,
            0.3051,
            0.9320004,
            0.1759102,
            0.2698336,
            0.1506798,
            0.03171951,
            0.2081298,
            0.929799,
            0.7231092,
            0.7423363,
            0.5262958,
            0.2436582,
            0.5845923,
            0.03315264,
            0.1387169,
            0.242235,
            0.815469,
            0.7931606,
            0.2782525,
            0.4819588,
            0.8197803,
            0.9970666,
            0.6984411,
            0.5675464,
            0.8352432,
            0.2055988,
            0.593172,
            0.1123472,
            0.1534569,
            0.2417082,
            0.7262365,
            0.7010802,
            0.2038237,
            0.6510535,
            0.774486,
            0.4368913,
            0.5190908,
            0.6158524,
            0.8101883,
            0.9800971,
            0.1146882,
            0.3167651,
            0.696505,
            0.9142747,
            0.9351037,
            0.9411784,
            0.5995073,
            0.06520867,
            0.5459962,
            0.1871973,
            0.03402293,
            0.9442462,
            0.8801799,
            0.001236022,
            0.593586,
            0.41577,
            0.4177194,
            0.2711216,
            0.6922781,
            0.2038482,
            0.6832957,
            0.752854,
            0.8579358,
            0.6869556,
            0.005132377,
            0.1756516,
            0.7496575,
            0.6046507,
            0.109958,
            0.2120903,
            0.9703746,
            0.8369089,
            0.2819874,
            0.3741576,
            0.02370095,
            0.4910129,
            0.1234705,
            0.1143216,
            0.4724502,
            0.5750725,
            0.2952349,
            0.7966888,
            0.1957304,
            0.953685,
            0.8426499,
            0.07835853,
            0.3755578,
            0.5225613,
            0.5729505,
            0.6185871,
            0.6962141,
            0.5299501,
            0.2560356,
            0.7365945,
            0.02037555,
            0.2036467,
        ];
        let down = [
            0.456854, 0.3059608, 0.473289, 0.6771765, 0.352082, 0.5514961, 0.4573444, 0.3383025,
            0.5739068, 0.4612478, 0.5515965, 0.5294514, 0.7511066, 0.6431814, 0.5023785, 0.3076006,
            0.7126861, 0.5304452, 0.3501047, 0.3631692, 0.5492027, 0.5491626, 0.5035411, 0.2706308,
        ];
        let mixed = [
            0.5836861, 0.2295399, 0.3430142, 0.6112797, 0.6470113, 0.5430892, 0.2494095, 0.2615529,
            0.5524769, 0.6874804, 0.4721731, 0.3102052, 0.206295, 0.4914259, 0.7367018, 0.3167732,
            0.568871, 0.5037655, 0.5580114, 0.7413113, 0.2043429, 0.547748, 0.6222848, 0.4525819,
            0.5092592, 0.1241398, 0.3167833, 0.6065908, 0.2181412, 0.09971068, 0.3978149,
            0.6038397, 0.5455222, 0.3177412, 0.1160097, 0.5468529, 0.7320256, 0.5114139, 0.5140236,
            0.2695962, 0.5297078, 0.6483836, 0.5132527, 0.8392164, 0.6062333, 0.5386293, 0.49124,
            0.3231701, 0.7135445, 0.5451923, 0.5481049, 0.3702443, 0.1645491, 0.5701046, 0.454249,
            0.6886559, 0.5258777, 0.6388111, 0.7647365, 0.2775417, 0.742393, 0.7109772, 0.6003438,
            0.5664359, 0.2133131, 0.8107461, 0.8801922, 0.5454454, 0.3346048, 0.1618516, 0.8378258,
            0.5098608, 0.484281, 0.3775116, 0.3411419, 0.8043948, 0.5088398, 0.3662917, 0.4494244,
            0.399683, 0.7255807, 0.7848017, 0.2056835, 0.5430918, 0.3676621, 0.6340197, 0.7235321,
            0.2466186, 0.3731649, 0.226063, 0.5604466, 0.6383085, 0.3369549, 0.4009673, 0.1823495,
            0.5108572, 0.5211462, 0.4931597, 0.6924094, 0.2691504, 0.5295417, 0.5752524, 0.5095543,
            0.580272, 0.2169791, 0.5510157, 0.6342887, 0.5046206, 0.4521288, 0.1631697,
        ];
        for ((oh, ow), want) in [((3, 4), &down[..]), ((11, 5), &mixed[..])] {
            let got = resize_antialias(&x, (2, 7, 9), oh, ow).unwrap();
            assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(want) {
                assert!((g - w).abs() < 1e-5, "{oh}x{ow}: {g} vs {w}");
            }
        }
        // The same with mode="bicubic", antialias=True (Keys' cubic, a = -0.5).
        let down_cubic = [
            0.4637097, 0.2680924, 0.4652626, 0.7108464, 0.326397, 0.6145346, 0.4626603, 0.3067145,
            0.5879412, 0.4399297, 0.5577446, 0.5247566, 0.7622821, 0.6411731, 0.530432, 0.2954091,
            0.7362581, 0.5086477, 0.3211456, 0.3667711, 0.5445859, 0.5496899, 0.5258471, 0.2532707,
        ];
        let mixed_cubic = [
            0.6252534, 0.1926935, 0.3409777, 0.637561, 0.6465148, 0.5914564, 0.1966823, 0.2197685,
            0.5599834, 0.6988311, 0.4944146, 0.2830629, 0.1570997, 0.478063, 0.7658412, 0.2844379,
            0.6295845, 0.5344384, 0.5686452, 0.7993327, 0.136429, 0.5942201, 0.6878952, 0.4540455,
            0.5272096, 0.1098768, 0.333424, 0.6217228, 0.2228314, 0.09197541, 0.3967378, 0.6423897,
            0.5429835, 0.2705898, 0.03490209, 0.5719652, 0.8049814, 0.5012824, 0.5191361,
            0.2332472, 0.5329372, 0.6580784, 0.500626, 0.899744, 0.6143301, 0.5487945, 0.4633352,
            0.2767329, 0.7544889, 0.5599809, 0.5641822, 0.3356105, 0.1041395, 0.5665661, 0.4440125,
            0.6969399, 0.4760046, 0.6516997, 0.8343422, 0.2414453, 0.7384004, 0.7334862, 0.6066256,
            0.5966051, 0.1740765, 0.8075306, 0.9470274, 0.535654, 0.3043348, 0.1406394, 0.879527,
            0.447035, 0.4992713, 0.351416, 0.3580698, 0.8433983, 0.4391859, 0.3557635, 0.4605457,
            0.4363346, 0.723468, 0.8057942, 0.1675577, 0.547475, 0.3660144, 0.633736, 0.7812444,
            0.1773919, 0.3401129, 0.2053626, 0.5577237, 0.6538914, 0.3088626, 0.3783488, 0.1479599,
            0.5014684, 0.5020832, 0.5211945, 0.7431742, 0.2333384, 0.5198722, 0.5755506, 0.533344,
            0.6087921, 0.1858649, 0.5464142, 0.6628819, 0.501088, 0.4366875, 0.1348229,
        ];
        for ((oh, ow), want) in [((3, 4), &down_cubic[..]), ((11, 5), &mixed_cubic[..])] {
            let got = resample(&x, (2, 7, 9), oh, ow, Filter::Bicubic, true).unwrap();
            for (g, w) in got.iter().zip(want) {
                assert!((g - w).abs() < 1e-5, "bicubic {oh}x{ow}: {g} vs {w}");
            }
        }
        // Without antialiasing, halving a ramp with the triangle is plain bilinear.
        let r: Vec<f32> = (0..8).map(|v| v as f32).collect();
        let y = resample(&r, (1, 1, 8), 1, 4, Filter::Bilinear, false).unwrap();
        assert_eq!(y, vec![0.5, 2.5, 4.5, 6.5]);
    }

    #[test]
    fn crop_outside_the_image_is_filled() {
        let x = vec![1.0; 4];
        let r = crop(&x, (1, 2, 2), -1, -1, 3, 3, 0.0).unwrap();
        assert_eq!(r, vec![0., 0., 0., 0., 1., 1., 0., 1., 1.]);
    }
}
