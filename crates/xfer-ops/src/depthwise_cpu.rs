//! CPU kernels of [`crate::depthwise_conv2d`]: direct loops over one image plane at a time.
//!
//! Every output row `i` of plane `(n, c)` is the sum, over the kernel taps `(p, q)` whose input
//! row `s·i + p − top` lies in the image, of `w[c, p, q]` times a (strided) slice of that input
//! row: an axpy over the output positions `j0..j1` whose column `s·j + q − left` lies in the
//! image. The input gradient runs the same loops scattering into the input row; the weight
//! gradient takes the matching dot products, per channel over all samples. With stride
//! `s > 1` each plane is first split by column phase (`x[r, φ + s·k]` stored contiguously), so
//! the strided walks become contiguous, vectorisable slices. Planes (forward,
//! input gradient) and channels (weight and bias gradients) are spread over rayon's pool.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Shape, Tensor, bail};
use rayon::prelude::*;

use crate::cpu::{Elem, by_dtype, multiversion, slice};
use crate::depthwise::DepthwiseConfig;

/// All sizes of one depthwise convolution.
#[derive(Debug, Clone, Copy)]
struct Geom {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    oh: usize,
    ow: usize,
    stride: usize,
    top: usize,
    left: usize,
}

impl Geom {
    fn new(xd: &[usize], wd: &[usize], cfg: DepthwiseConfig) -> candle_core::Result<Self> {
        let p = cfg.padding;
        match (xd, wd) {
            (&[n, c, h, w], &[o, 1, kh, kw])
                if o == c
                    && cfg.stride > 0
                    && kh > 0
                    && kw > 0
                    && h + p.top + p.bottom >= kh
                    && w + p.left + p.right >= kw =>
            {
                Ok(Self {
                    n,
                    c,
                    h,
                    w,
                    kh,
                    kw,
                    oh: (h + p.top + p.bottom - kh) / cfg.stride + 1,
                    ow: (w + p.left + p.right - kw) / cfg.stride + 1,
                    stride: cfg.stride,
                    top: p.top,
                    left: p.left,
                })
            }
            _ => bail!("depthwise_conv2d: input {xd:?} and weight {wd:?} do not fit {cfg:?}"),
        }
    }
    fn hw(&self) -> usize {
        self.h * self.w
    }
    fn ohw(&self) -> usize {
        self.oh * self.ow
    }
    fn kk(&self) -> usize {
        self.kh * self.kw
    }
    fn out_dims(&self) -> (usize, usize, usize, usize) {
        (self.n, self.c, self.oh, self.ow)
    }

    /// The input row of output row `i` and kernel row `p`, when it lies inside the image.
    #[inline(always)]
    fn row(&self, i: usize, p: usize) -> Option<usize> {
        (self.stride * i + p)
            .checked_sub(self.top)
            .filter(|&r| r < self.h)
    }

    /// For every kernel column `q`: the output columns `j0..j1` whose input column
    /// `s·j + q − left` lies inside the image, and the input column of `j0`.
    fn columns(&self) -> Vec<(usize, usize, usize)> {
        let s = self.stride as isize;
        (0..self.kw)
            .map(|q| {
                let off = q as isize - self.left as isize;
                // j ≥ ceil(−off / s), j ≤ floor((w − 1 − off) / s).
                let j0 = if off >= 0 { 0 } else { (-off + s - 1) / s };
                let last = self.w as isize - 1 - off;
                let j1 = if last < 0 {
                    0
                } else {
                    (last / s + 1).min(self.ow as isize)
                };
                let j0 = j0.min(j1);
                let first = (s * j0 + off).max(0);
                (j0 as usize, j1 as usize, first as usize)
            })
            .collect()
    }

    /// Planes per rayon task: enough work (≈ 16k multiply-adds) to pay for the task.
    fn planes_per_task(&self) -> usize {
        (16 * 1024 / (self.ohw() * self.kk()).max(1)).max(1)
    }
}

/// `y += w · x` (over `y`'s length).
#[inline(always)]
fn axpy<T: Elem>(y: &mut [T], wv: T, x: &[T]) {
    for (a, &b) in y.iter_mut().zip(x) {
        *a += wv * b;
    }
}

/// `x += w · y` (over `y`'s length).
#[inline(always)]
fn scatter<T: Elem>(x: &mut [T], wv: T, y: &[T]) {
    for (a, &b) in x.iter_mut().zip(y) {
        *a += wv * b;
    }
}

/// `Σ_k y[k] · x[k]`, in 8 independent partial sums (lane `j` takes `k ≡ j mod 8`, added
/// in order at the end) so the multiply-adds vectorise instead of waiting on one another.
#[inline(always)]
fn dot<T: Elem>(y: &[T], x: &[T]) -> T {
    let n = y.len().min(x.len());
    let (y, x) = (&y[..n], &x[..n]);
    let mut acc = [T::default(); 8];
    let mut yc = y.chunks_exact(8);
    let mut xc = x.chunks_exact(8);
    for (a, b) in (&mut yc).zip(&mut xc) {
        for j in 0..8 {
            acc[j] += a[j] * b[j];
        }
    }
    for (j, (&a, &b)) in yc.remainder().iter().zip(xc.remainder()).enumerate() {
        acc[j] += a * b;
    }
    let mut s = T::default();
    for v in acc {
        s += v;
    }
    s
}

/// The output taps `(j0, j1, first)` of every kernel column (see `Geom::columns`).
type Cols = [(usize, usize, usize)];

/// Calls `f(i, tap, j0, j1, at)` for every output row `i` and kernel tap `(p, q)` whose input
/// row lies in the image, in row, then tap order: `tap = p·KW + q`, `j0..j1` the output columns
/// it reaches, `at` where its input walk starts (in the phase-split plane for stride > 1).
#[inline(always)]
fn for_each_tap(g: &Geom, cols: &Cols, mut f: impl FnMut(usize, usize, usize, usize, usize)) {
    for i in 0..g.oh {
        for p in 0..g.kh {
            let Some(r) = g.row(i, p) else { continue };
            for (q, &(j0, j1, first)) in cols.iter().enumerate() {
                if j0 >= j1 {
                    continue;
                }
                let at = if g.stride > 1 {
                    split_at(g, r, first)
                } else {
                    r * g.w + first
                };
                f(i, p * g.kw + q, j0, j1, at);
            }
        }
    }
}

multiversion! {
    /// One output plane: `yp = b + Σ_taps w · x` (the forward, for AVX-512 / AVX2 / SSE2).
    fn fwd_plane<T: Elem>(g: &Geom, cols: &Cols, wp: &[T], b: T, xp: &[T], yp: &mut [T], split: &mut [T]) {
        let src: &[T] = if g.stride > 1 {
            split_plane(g, xp, split);
            split
        } else {
            xp
        };
        yp.fill(b);
        let ow = g.ow;
        for_each_tap(g, cols, |i, tap, j0, j1, at| {
            axpy(&mut yp[i * ow + j0..i * ow + j1], wp[tap], &src[at..]);
        });
    }
}

multiversion! {
    /// One input-gradient plane: every output gradient scattered back through the taps.
    fn bwd_input_plane<T: Elem>(g: &Geom, cols: &Cols, wp: &[T], dyp: &[T], dxp: &mut [T], split: &mut [T]) {
        // Stride > 1: scatter into the phase-split plane (contiguous), merge at the end.
        let target: &mut [T] = if g.stride > 1 {
            split.fill(T::default());
            split
        } else {
            // Zero already: the output buffer is made zeroed.
            dxp
        };
        let ow = g.ow;
        for_each_tap(g, cols, |i, tap, j0, j1, at| {
            scatter(&mut target[at..], wp[tap], &dyp[i * ow + j0..i * ow + j1]);
        });
        if g.stride > 1 {
            merge_plane(g, split, dxp);
        }
    }
}

multiversion! {
    /// One plane's contribution to its channel's weight gradient: `acc[tap] += Σ dy · x`.
    fn bwd_weight_plane<T: Elem>(g: &Geom, cols: &Cols, xp: &[T], dyp: &[T], split: &mut [T], acc: &mut [f64]) {
        let src: &[T] = if g.stride > 1 {
            split_plane(g, xp, split);
            split
        } else {
            xp
        };
        let ow = g.ow;
        for_each_tap(g, cols, |i, tap, j0, j1, at| {
            acc[tap] += dot(&dyp[i * ow + j0..i * ow + j1], &src[at..]).to_f64();
        });
    }
}

/// Columns per phase of a row split by column phase (`⌈W/s⌉`).
fn phase_len(g: &Geom) -> usize {
    g.w.div_ceil(g.stride)
}

/// Splits an input plane by column phase: `out[(r·s + φ)·P + k] = x[r, φ + s·k]`
/// (`P` = [`phase_len`]), so that a stride-`s` walk along a row is a contiguous slice.
fn split_plane<T: Elem>(g: &Geom, xp: &[T], out: &mut [T]) {
    let (s, pw) = (g.stride, phase_len(g));
    for (row, dst) in xp.chunks_exact(g.w).zip(out.chunks_exact_mut(s * pw)) {
        for (ph, d) in dst.chunks_exact_mut(pw).enumerate() {
            for (o, &v) in d.iter_mut().zip(row.iter().skip(ph).step_by(s)) {
                *o = v;
            }
        }
    }
}

/// The inverse of [`split_plane`]: `xp[r, φ + s·k] = split[(r·s + φ)·P + k]`.
fn merge_plane<T: Elem>(g: &Geom, split: &[T], xp: &mut [T]) {
    let (s, pw) = (g.stride, phase_len(g));
    for (row, src) in xp.chunks_exact_mut(g.w).zip(split.chunks_exact(s * pw)) {
        for (ph, sv) in src.chunks_exact(pw).enumerate() {
            for (o, &v) in row.iter_mut().skip(ph).step_by(s).zip(sv) {
                *o = v;
            }
        }
    }
}

/// Where a stride-`s` walk from input column `first` starts in a split row of row `r`.
#[inline(always)]
fn split_at(g: &Geom, r: usize, first: usize) -> usize {
    (r * g.stride + first % g.stride) * phase_len(g) + first / g.stride
}

fn forward<T: Elem>(g: &Geom, x: &[T], w: &[T], bias: Option<&[T]>) -> Vec<T> {
    let (hw, ohw, kk) = (g.hw(), g.ohw(), g.kk());
    let mut y = vec![T::default(); g.n * g.c * ohw];
    if ohw == 0 || hw == 0 {
        return y;
    }
    let cols = g.columns();
    let split_len = if g.stride > 1 {
        g.h * g.stride * phase_len(g)
    } else {
        0
    };
    y.par_chunks_mut(ohw)
        .zip(x.par_chunks(hw))
        .enumerate()
        .with_min_len(g.planes_per_task())
        .for_each_init(
            || vec![T::default(); split_len],
            |split, (plane, (yp, xp))| {
                let ch = plane % g.c;
                let wp = &w[ch * kk..(ch + 1) * kk];
                let b = bias.map_or(T::default(), |b| b[ch]);
                fwd_plane(g, &cols, wp, b, xp, yp, split);
            },
        );
    y
}

fn backward_input<T: Elem>(g: &Geom, dy: &[T], w: &[T]) -> Vec<T> {
    let (hw, ohw, kk) = (g.hw(), g.ohw(), g.kk());
    let mut dx = vec![T::default(); g.n * g.c * hw];
    if ohw == 0 || hw == 0 {
        return dx;
    }
    let cols = g.columns();
    let split_len = if g.stride > 1 {
        g.h * g.stride * phase_len(g)
    } else {
        0
    };
    dx.par_chunks_mut(hw)
        .zip(dy.par_chunks(ohw))
        .enumerate()
        .with_min_len(g.planes_per_task())
        .for_each_init(
            || vec![T::default(); split_len],
            |split, (plane, (dxp, dyp))| {
                let ch = plane % g.c;
                let wp = &w[ch * kk..(ch + 1) * kk];
                bwd_input_plane(g, &cols, wp, dyp, dxp, split);
            },
        );
    dx
}

fn backward_weight<T: Elem>(g: &Geom, x: &[T], dy: &[T]) -> Vec<T> {
    let (hw, ohw, kk) = (g.hw(), g.ohw(), g.kk());
    let mut dw = vec![T::default(); g.c * kk];
    if ohw == 0 || hw == 0 {
        return dw;
    }
    let cols = g.columns();
    let split_len = if g.stride > 1 {
        g.h * g.stride * phase_len(g)
    } else {
        0
    };
    dw.par_chunks_mut(kk).enumerate().for_each_init(
        || vec![T::default(); split_len],
        |split, (ch, dwc)| {
            // One f64 accumulator per tap; each row's dot product is summed in T.
            let mut acc = vec![0f64; kk];
            for n in 0..g.n {
                let plane = n * g.c + ch;
                let xp = &x[plane * hw..(plane + 1) * hw];
                let dyp = &dy[plane * ohw..(plane + 1) * ohw];
                bwd_weight_plane(g, &cols, xp, dyp, split, &mut acc);
            }
            for (d, a) in dwc.iter_mut().zip(acc) {
                *d = T::from_f64(a);
            }
        },
    );
    dw
}

fn bias_grad<T: Elem>(g: &Geom, dy: &[T]) -> Vec<T> {
    let ohw = g.ohw();
    (0..g.c)
        .into_par_iter()
        .map(|ch| {
            let mut s = 0f64;
            for n in 0..g.n {
                let plane = n * g.c + ch;
                let mut row = T::default();
                for &v in &dy[plane * ohw..(plane + 1) * ohw] {
                    row += v;
                }
                s += row.to_f64();
            }
            T::from_f64(s)
        })
        .collect()
}

fn run_forward<T: Elem>(
    g: &Geom,
    (xs, xl): (&CpuStorage, &Layout),
    (ws, wl): (&CpuStorage, &Layout),
    bias: Option<(&CpuStorage, &Layout)>,
) -> candle_core::Result<Vec<T>> {
    let b = match bias {
        Some((bs, bl)) => Some(slice::<T>(bs, bl, "depthwise_conv2d: bias")?),
        None => None,
    };
    let x = slice::<T>(xs, xl, "depthwise_conv2d: input")?;
    let w = slice::<T>(ws, wl, "depthwise_conv2d: weight")?;
    if x.len() != g.n * g.c * g.hw() || w.len() != g.c * g.kk() || b.is_some_and(|b| b.len() != g.c)
    {
        bail!("depthwise_conv2d: buffers do not match {g:?}");
    }
    Ok(forward(g, x, w, b))
}

/// The forward op: `(x, w) ↦ dwconv(x, w)` as a [`CustomOp2`], `(x, w, b) ↦ dwconv(x, w) + b`
/// as a [`CustomOp3`].
pub(crate) struct DepthwiseOp {
    pub(crate) cfg: DepthwiseConfig,
}

impl DepthwiseOp {
    fn grads(
        &self,
        x: &Tensor,
        w: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Geom, Tensor, Option<Tensor>, Option<Tensor>)> {
        let g = Geom::new(x.dims(), w.dims(), self.cfg)?;
        let dy = dy.contiguous()?;
        let dx = if x.track_op() {
            Some(dy.apply_op2_no_bwd(&w.contiguous()?, &DepthwiseBackwardInput { g })?)
        } else {
            None
        };
        let dw = if w.track_op() {
            Some(
                x.contiguous()?
                    .apply_op2_no_bwd(&dy, &DepthwiseBackwardWeight { g })?,
            )
        } else {
            None
        };
        Ok((g, dy, dx, dw))
    }
}

impl CustomOp2 for DepthwiseOp {
    fn name(&self) -> &'static str {
        "xfer-depthwise-conv2d"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let _profile = crate::profile::scope(<Self as candle_core::CustomOp2>::name(self));
        let g = Geom::new(xl.dims(), wl.dims(), self.cfg)?;
        let out = by_dtype!(
            "depthwise_conv2d",
            xs,
            run_forward(&g, (xs, xl), (ws, wl), None)
        )?;
        Ok((out, g.out_dims().into()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (_, _, dx, dw) = self.grads(x, w, dy)?;
        Ok((dx, dw))
    }
}

impl CustomOp3 for DepthwiseOp {
    fn name(&self) -> &'static str {
        "xfer-depthwise-conv2d-bias"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let _profile = crate::profile::scope(<Self as candle_core::CustomOp3>::name(self));
        let g = Geom::new(xl.dims(), wl.dims(), self.cfg)?;
        let out = by_dtype!(
            "depthwise_conv2d",
            xs,
            run_forward(&g, (xs, xl), (ws, wl), Some((bs, bl)))
        )?;
        Ok((out, g.out_dims().into()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (g, dy, dx, dw) = self.grads(x, w, dy)?;
        let db = if b.track_op() {
            Some(dy.apply_op1_no_bwd(&DepthwiseBackwardBias { g })?)
        } else {
            None
        };
        Ok((dx, dw, db))
    }
}

fn check_dy(g: &Geom, dyl: &Layout) -> candle_core::Result<()> {
    if dyl.dims() != [g.n, g.c, g.oh, g.ow] {
        bail!(
            "depthwise_conv2d backward: output gradient {:?} does not match {g:?}",
            dyl.dims()
        );
    }
    Ok(())
}

fn run_backward_input<T: Elem>(
    g: &Geom,
    (dys, dyl): (&CpuStorage, &Layout),
    (ws, wl): (&CpuStorage, &Layout),
) -> candle_core::Result<Vec<T>> {
    let dy = slice::<T>(dys, dyl, "depthwise_conv2d: output gradient")?;
    let w = slice::<T>(ws, wl, "depthwise_conv2d: weight")?;
    if w.len() != g.c * g.kk() {
        bail!(
            "depthwise_conv2d backward: weight {:?} does not match {g:?}",
            wl.dims()
        );
    }
    Ok(backward_input(g, dy, w))
}

fn run_backward_weight<T: Elem>(
    g: &Geom,
    (xs, xl): (&CpuStorage, &Layout),
    (dys, dyl): (&CpuStorage, &Layout),
) -> candle_core::Result<Vec<T>> {
    let x = slice::<T>(xs, xl, "depthwise_conv2d: input")?;
    let dy = slice::<T>(dys, dyl, "depthwise_conv2d: output gradient")?;
    if x.len() != g.n * g.c * g.hw() {
        bail!(
            "depthwise_conv2d backward: input {:?} does not match {g:?}",
            xl.dims()
        );
    }
    Ok(backward_weight(g, x, dy))
}

fn run_backward_bias<T: Elem>(
    g: &Geom,
    (dys, dyl): (&CpuStorage, &Layout),
) -> candle_core::Result<Vec<T>> {
    Ok(bias_grad(
        g,
        slice::<T>(dys, dyl, "depthwise_conv2d: output gradient")?,
    ))
}

/// `(dy, w) ↦ dx`.
struct DepthwiseBackwardInput {
    g: Geom,
}

impl CustomOp2 for DepthwiseBackwardInput {
    fn name(&self) -> &'static str {
        "xfer-depthwise-conv2d-backward-input"
    }

    fn cpu_fwd(
        &self,
        dys: &CpuStorage,
        dyl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let _profile = crate::profile::scope(<Self as candle_core::CustomOp2>::name(self));
        let g = &self.g;
        check_dy(g, dyl)?;
        let out = by_dtype!(
            "depthwise_conv2d",
            dys,
            run_backward_input(g, (dys, dyl), (ws, wl))
        )?;
        Ok((out, (g.n, g.c, g.h, g.w).into()))
    }
}

/// `(x, dy) ↦ dw`.
struct DepthwiseBackwardWeight {
    g: Geom,
}

impl CustomOp2 for DepthwiseBackwardWeight {
    fn name(&self) -> &'static str {
        "xfer-depthwise-conv2d-backward-weight"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        dys: &CpuStorage,
        dyl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let _profile = crate::profile::scope(<Self as candle_core::CustomOp2>::name(self));
        let g = &self.g;
        check_dy(g, dyl)?;
        let out = by_dtype!(
            "depthwise_conv2d",
            xs,
            run_backward_weight(g, (xs, xl), (dys, dyl))
        )?;
        Ok((out, (g.c, 1, g.kh, g.kw).into()))
    }
}

/// `dy ↦ db`.
struct DepthwiseBackwardBias {
    g: Geom,
}

impl CustomOp1 for DepthwiseBackwardBias {
    fn name(&self) -> &'static str {
        "xfer-depthwise-conv2d-backward-bias"
    }

    fn cpu_fwd(&self, dys: &CpuStorage, dyl: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let _profile = crate::profile::scope(<Self as candle_core::CustomOp1>::name(self));
        let g = &self.g;
        check_dy(g, dyl)?;
        let out = by_dtype!("depthwise_conv2d", dys, run_backward_bias(g, (dys, dyl)))?;
        Ok((out, g.c.into()))
    }
}
