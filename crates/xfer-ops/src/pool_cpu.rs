//! CPU kernels of the pooling ops, with their backward.
//!
//! Every output cell `(i, j)` of a plane averages or maximises the window
//! `rows[i].0 .. rows[i].1 × cols[j].0 .. cols[j].1` of its input plane; the windows may overlap
//! (stride < window) or leave input unread (floor of odd sizes). Backward:
//! - max: the whole `dy[i, j]` goes to the first maximum of its window (PyTorch's choice;
//!   a NaN counts as the maximum, so it propagates);
//! - average: `dy[i, j] / |window|` goes to every element of the window.
//!
//! Planes `(n, c)` are spread over rayon's pool.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor, bail};
use rayon::prelude::*;

use crate::cpu::{Elem, by_dtype, slice};

/// The windows of one pooling: input `(N, C, H, W)`, output `(N, C, rows.len(), cols.len())`.
#[derive(Debug, Clone)]
pub(crate) struct Windows {
    pub(crate) dims: [usize; 4],
    pub(crate) rows: Vec<(usize, usize)>,
    pub(crate) cols: Vec<(usize, usize)>,
}

impl Windows {
    /// Fixed `k × k` windows at stride `s` (no padding, floor for the last window).
    pub(crate) fn fixed(dims: [usize; 4], k: usize, s: usize) -> Self {
        let axis = |size: usize| {
            (0..(size - k) / s + 1)
                .map(|i| (i * s, i * s + k))
                .collect()
        };
        Self {
            dims,
            rows: axis(dims[2]),
            cols: axis(dims[3]),
        }
    }

    /// `k × k` windows at stride `s` over the input padded by `p` on every side, clipped to
    /// the input (the padding is `−∞` for max pooling, so it never wins; PyTorch clips the
    /// same way). Needs `p ≤ k/2`, which keeps every window non-empty.
    pub(crate) fn padded(dims: [usize; 4], k: usize, s: usize, p: usize) -> Self {
        let axis = |size: usize| {
            (0..(size + 2 * p - k) / s + 1)
                .map(|i| ((i * s).saturating_sub(p), (i * s + k - p).min(size)))
                .collect()
        };
        Self {
            dims,
            rows: axis(dims[2]),
            cols: axis(dims[3]),
        }
    }

    /// PyTorch's adaptive windows: `⌊i·H/oh⌋ .. ⌈(i+1)·H/oh⌉`.
    pub(crate) fn adaptive(dims: [usize; 4], oh: usize, ow: usize) -> Self {
        let axis = |size: usize, out: usize| {
            (0..out)
                .map(|i| (i * size / out, ((i + 1) * size).div_ceil(out)))
                .collect()
        };
        Self {
            dims,
            rows: axis(dims[2], oh),
            cols: axis(dims[3], ow),
        }
    }

    fn planes(&self) -> usize {
        self.dims[0] * self.dims[1]
    }
    fn hw(&self) -> usize {
        self.dims[2] * self.dims[3]
    }
    fn ohw(&self) -> usize {
        self.rows.len() * self.cols.len()
    }
    fn out_shape(&self) -> Shape {
        (self.dims[0], self.dims[1], self.rows.len(), self.cols.len()).into()
    }
    fn check(&self, l: &Layout, what: &str) -> candle_core::Result<()> {
        if l.dims() != self.dims {
            bail!(
                "{what} {:?} does not match the pooling input {:?}",
                l.dims(),
                self.dims
            );
        }
        Ok(())
    }
    fn check_out(&self, l: &Layout, what: &str) -> candle_core::Result<()> {
        if l.dims() != self.out_shape().dims() {
            bail!(
                "{what} {:?} does not match the pooling output {:?}",
                l.dims(),
                self.out_shape()
            );
        }
        Ok(())
    }
}

/// Planes per rayon task: at least about 4096 input elements of work.
fn min_planes(hw: usize) -> usize {
    (4096 / hw.max(1)).max(1)
}

/// Max or average.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Max,
    Avg,
}

/// Offset (inside the plane) of the first maximum of a window.
fn argmax<T: Elem>(
    plane: &[T],
    w: usize,
    (r0, r1): (usize, usize),
    (c0, c1): (usize, usize),
) -> usize {
    let mut best = r0 * w + c0;
    let mut bv = plane[best];
    for r in r0..r1 {
        for (c, &v) in plane[r * w + c0..r * w + c1].iter().enumerate() {
            if !bv.is_nan() && (v > bv || v.is_nan()) {
                bv = v;
                best = r * w + c0 + c;
            }
        }
    }
    best
}

/// Whether every window is the 2×2 block at `(2i, 2j)` (max pooling 2×2, stride 2, no
/// padding: LeNet's and most small CNNs'), for the unrolled kernels below.
fn is_2x2(win: &Windows) -> bool {
    win.rows
        .iter()
        .enumerate()
        .all(|(i, &r)| r == (2 * i, 2 * i + 2))
        && win
            .cols
            .iter()
            .enumerate()
            .all(|(j, &c)| c == (2 * j, 2 * j + 2))
}

/// Which of `a, b, c, d` (a window in reading order) [`argmax`] picks: the first maximum, a
/// NaN counting as the maximum.
///
/// Branch-free (conditional moves): which element wins is data, so a branch would be
/// mispredicted about half the time — most of the op's time on a LeNet batch.
#[inline(always)]
fn first_max4<T: Elem>(v: [T; 4]) -> usize {
    let (mut best, mut bv) = (0usize, v[0]);
    for (k, &x) in v.iter().enumerate().skip(1) {
        let take = !bv.is_nan() & ((x > bv) | x.is_nan());
        best = std::hint::select_unpredictable(take, k, best);
        bv = std::hint::select_unpredictable(take, x, bv);
    }
    best
}

/// One output row of 2×2 max pooling from input rows `a`, `b`.
#[inline(always)]
fn max_row_2x2<T: Elem>(a: &[T], b: &[T], y: &mut [T]) {
    for ((o, a), b) in y.iter_mut().zip(a.chunks_exact(2)).zip(b.chunks_exact(2)) {
        let v = [a[0], a[1], b[0], b[1]];
        *o = v[first_max4(v)];
    }
}

fn forward<T: Elem>(win: &Windows, kind: Kind, x: &[T]) -> candle_core::Result<Vec<T>> {
    let (hw, ohw, w) = (win.hw(), win.ohw(), win.dims[3]);
    let mut y = vec![T::default(); win.planes() * ohw];
    if y.is_empty() || hw == 0 {
        return Ok(y);
    }
    if kind == Kind::Max && is_2x2(win) {
        let ow = win.cols.len();
        y.par_chunks_mut(ohw)
            .zip(x.par_chunks(hw))
            .with_min_len(min_planes(hw))
            .for_each(|(yp, xp)| {
                for (i, yr) in yp.chunks_exact_mut(ow).enumerate() {
                    let a = &xp[2 * i * w..2 * i * w + 2 * ow];
                    let b = &xp[(2 * i + 1) * w..(2 * i + 1) * w + 2 * ow];
                    max_row_2x2(a, b, yr);
                }
            });
        return Ok(y);
    }
    y.par_chunks_mut(ohw)
        .zip(x.par_chunks(hw))
        .with_min_len(min_planes(hw))
        .for_each(|(yp, xp)| {
            for (i, &rw) in win.rows.iter().enumerate() {
                for (j, &cw) in win.cols.iter().enumerate() {
                    yp[i * win.cols.len() + j] = match kind {
                        Kind::Max => xp[argmax(xp, w, rw, cw)],
                        Kind::Avg => {
                            let mut s = T::default();
                            for r in rw.0..rw.1 {
                                for &v in &xp[r * w + cw.0..r * w + cw.1] {
                                    s += v;
                                }
                            }
                            s / T::from_f64(((rw.1 - rw.0) * (cw.1 - cw.0)) as f64)
                        }
                    };
                }
            }
        });
    Ok(y)
}

/// `dx` from `dy` (and, for max, the input `x` to find each window's maximum).
fn backward<T: Elem>(
    win: &Windows,
    kind: Kind,
    x: Option<&[T]>,
    dy: &[T],
) -> candle_core::Result<Vec<T>> {
    let (hw, ohw, w) = (win.hw(), win.ohw(), win.dims[3]);
    let mut dx = vec![T::default(); win.planes() * hw];
    if dx.is_empty() || ohw == 0 {
        return Ok(dx);
    }
    let xs: &[T] = match (kind, x) {
        (Kind::Max, Some(x)) => x,
        (Kind::Max, None) => bail!("max_pool2d backward needs the input"),
        (Kind::Avg, _) => &[],
    };
    if kind == Kind::Max && is_2x2(win) {
        // Windows do not overlap: each output gradient lands on its window's maximum.
        let ow = win.cols.len();
        dx.par_chunks_mut(hw)
            .zip(dy.par_chunks(ohw).zip(xs.par_chunks(hw)))
            .with_min_len(min_planes(hw))
            .for_each(|(dxp, (dyp, xp))| {
                for (i, gr) in dyp.chunks_exact(ow).enumerate() {
                    let (ra, rb) = (2 * i * w, (2 * i + 1) * w);
                    for (j, &g) in gr.iter().enumerate() {
                        let c = 2 * j;
                        let v = [xp[ra + c], xp[ra + c + 1], xp[rb + c], xp[rb + c + 1]];
                        let at = [ra + c, ra + c + 1, rb + c, rb + c + 1];
                        dxp[at[first_max4(v)]] = g;
                    }
                }
            });
        return Ok(dx);
    }
    dx.par_chunks_mut(hw)
        .zip(dy.par_chunks(ohw))
        .enumerate()
        .with_min_len(min_planes(hw))
        .for_each(|(p, (dxp, dyp))| {
            for (i, &rw) in win.rows.iter().enumerate() {
                for (j, &cw) in win.cols.iter().enumerate() {
                    let g = dyp[i * win.cols.len() + j];
                    match kind {
                        Kind::Max => {
                            let xp = &xs[p * hw..(p + 1) * hw];
                            dxp[argmax(xp, w, rw, cw)] += g;
                        }
                        Kind::Avg => {
                            let g = g / T::from_f64(((rw.1 - rw.0) * (cw.1 - cw.0)) as f64);
                            for r in rw.0..rw.1 {
                                for v in &mut dxp[r * w + cw.0..r * w + cw.1] {
                                    *v += g;
                                }
                            }
                        }
                    }
                }
            }
        });
    Ok(dx)
}

fn run_forward<T: Elem>(
    win: &Windows,
    kind: Kind,
    s: &CpuStorage,
    l: &Layout,
) -> candle_core::Result<Vec<T>> {
    forward(win, kind, slice(s, l, "pool: input")?)
}

fn run_backward<T: Elem>(
    win: &Windows,
    kind: Kind,
    x: Option<(&CpuStorage, &Layout)>,
    (dys, dyl): (&CpuStorage, &Layout),
) -> candle_core::Result<Vec<T>> {
    let x = match x {
        Some((s, l)) => Some(slice::<T>(s, l, "pool: input")?),
        None => None,
    };
    backward(win, kind, x, slice(dys, dyl, "pool: output gradient")?)
}

/// The forward op `x ↦ pool(x)`.
pub(crate) struct PoolOp {
    pub(crate) kind: Kind,
    pub(crate) win: Arc<Windows>,
}

impl CustomOp1 for PoolOp {
    fn name(&self) -> &'static str {
        match self.kind {
            Kind::Max => "xfer-max-pool2d",
            Kind::Avg => "xfer-avg-pool2d",
        }
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let _profile = crate::profile::scope(<Self as candle_core::CustomOp1>::name(self));
        self.win.check(l, "pool: input")?;
        let out = by_dtype!("pool", s, run_forward(&self.win, self.kind, s, l))?;
        Ok((out, self.win.out_shape()))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, dy: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let dy = dy.contiguous()?;
        let win = self.win.clone();
        let dx = match self.kind {
            Kind::Max => x.apply_op2_no_bwd(&dy, &MaxPoolBackward { win })?,
            Kind::Avg => dy.apply_op1_no_bwd(&AvgPoolBackward { win })?,
        };
        Ok(Some(dx))
    }
}

/// `(x, dy) ↦ dx` of max pooling.
struct MaxPoolBackward {
    win: Arc<Windows>,
}

impl CustomOp2 for MaxPoolBackward {
    fn name(&self) -> &'static str {
        "xfer-max-pool2d-backward"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        dys: &CpuStorage,
        dyl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let _profile = crate::profile::scope(<Self as candle_core::CustomOp2>::name(self));
        self.win.check(xl, "max_pool2d backward: input")?;
        self.win
            .check_out(dyl, "max_pool2d backward: output gradient")?;
        let out = by_dtype!(
            "max_pool2d",
            xs,
            run_backward(&self.win, Kind::Max, Some((xs, xl)), (dys, dyl))
        )?;
        Ok((out, Shape::from(self.win.dims.to_vec())))
    }
}

/// `dy ↦ dx` of average pooling.
struct AvgPoolBackward {
    win: Arc<Windows>,
}

impl CustomOp1 for AvgPoolBackward {
    fn name(&self) -> &'static str {
        "xfer-avg-pool2d-backward"
    }

    fn cpu_fwd(&self, dys: &CpuStorage, dyl: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let _profile = crate::profile::scope(<Self as candle_core::CustomOp1>::name(self));
        self.win
            .check_out(dyl, "avg_pool2d backward: output gradient")?;
        let out = by_dtype!(
            "avg_pool2d",
            dys,
            run_backward(&self.win, Kind::Avg, None, (dys, dyl))
        )?;
        Ok((out, Shape::from(self.win.dims.to_vec())))
    }
}
