//! CPU kernels of [`crate::conv2d`]: im2col (unfold) + GEMM forward, and a backward that
//! computes `dX = col2im(Wᵀ · dY)` and `dW = Σ_n dY_n · cols_nᵀ` directly.
//!
//! Per block of `B` samples and group `g` (all matrices row-major):
//! - `cols` is `(C·KH·KW) × (B·OH·OW)`, row `(c, p, q)`, column `(b, i, j)` holding
//!   `x[n_b, c, s·i + d·p − pad, s·j + d·q − pad]` (zero outside the image);
//! - forward `Y_g = W_g · cols_g + b_g` with `W_g` the `(O/G) × (C/G·KH·KW)` block of the weight;
//! - input gradient `dcols_g = W_gᵀ · dY_g`, then `dX = col2im(dcols)` (the adjoint of im2col:
//!   every column entry is added back to the pixel it was copied from);
//! - weight gradient `dW_g = Σ_blocks dY_g · cols_gᵀ`; bias gradient `db_o = Σ_{n,i,j} dY[n,o,i,j]`.
//!
//! `B` is chosen so a block has about 256 columns (GEMMs with a long enough side), while
//! leaving at least one block per thread. Blocks are spread over rayon's pool; each GEMM runs
//! on one thread (the `gemm` crate, the one candle's CPU matmul uses) unless there are fewer
//! blocks than threads.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Shape, Tensor, bail};
use rayon::prelude::*;

use crate::conv::Conv2dConfig;
use crate::cpu::{Elem, Mat, by_dtype, gemm_into, slice};

/// All sizes of one convolution.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Geom {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    kh: usize,
    kw: usize,
    oh: usize,
    ow: usize,
    stride: usize,
    pad: usize,
    dil: usize,
    groups: usize,
}

impl Geom {
    /// Sizes from `x` (N, C, H, W), `w` (O, C/G, KH, KW) and the configuration; `None` when they
    /// do not fit together (the public wrapper has already reported that to the user).
    pub(crate) fn new(xd: &[usize], wd: &[usize], cfg: Conv2dConfig) -> Option<Self> {
        let (&[n, c, h, w], &[o, cg, kh, kw]) = (xd, wd) else {
            return None;
        };
        let (s, p, d, g) = (cfg.stride, cfg.padding, cfg.dilation, cfg.groups);
        if s == 0 || d == 0 || g == 0 || kh == 0 || kw == 0 || cg * g != c || o % g != 0 {
            return None;
        }
        let eh = d * (kh - 1) + 1;
        let ew = d * (kw - 1) + 1;
        if h + 2 * p < eh || w + 2 * p < ew {
            return None;
        }
        Some(Self {
            n,
            c,
            h,
            w,
            o,
            kh,
            kw,
            oh: (h + 2 * p - eh) / s + 1,
            ow: (w + 2 * p - ew) / s + 1,
            stride: s,
            pad: p,
            dil: d,
            groups: g,
        })
    }
    fn ohw(&self) -> usize {
        self.oh * self.ow
    }
    fn chw(&self) -> usize {
        self.c * self.h * self.w
    }
    fn ckk(&self) -> usize {
        self.c * self.kh * self.kw
    }
    fn cgkk(&self) -> usize {
        self.ckk() / self.groups
    }
    fn og(&self) -> usize {
        self.o / self.groups
    }
    fn out_dims(&self) -> (usize, usize, usize, usize) {
        (self.n, self.o, self.oh, self.ow)
    }
    /// A 1×1 kernel with stride 1 and no padding: im2col of one sample is the sample itself.
    fn pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == 1 && self.pad == 0
    }

    /// Output positions `j0..j1` along an axis of `size` inputs and `out` outputs whose input
    /// position `s·j + d·k − pad` (kernel tap `k`) lies inside `0..size`.
    fn valid(&self, k: usize, size: usize, out: usize) -> (usize, usize) {
        let off = (k * self.dil) as isize - self.pad as isize;
        let s = self.stride as isize;
        // j ≥ ceil(−off / s), j ≤ floor((size − 1 − off) / s).
        let j0 = if off >= 0 { 0 } else { (-off + s - 1) / s };
        let last = size as isize - 1 - off;
        let j1 = if last < 0 {
            0
        } else {
            (last / s + 1).min(out as isize)
        };
        let j0 = j0.min(j1);
        (j0 as usize, j1 as usize)
    }
}

/// `cols[:, off .. off + OH·OW] = im2col(x)` for one sample `x` (`C·H·W`); `ld` is the row
/// length of `cols`.
fn im2col<T: Elem>(g: &Geom, x: &[T], cols: &mut [T], ld: usize, off: usize) {
    let zero = T::default();
    let (ohw, ow, hw, s) = (g.ohw(), g.ow, g.h * g.w, g.stride);
    for (c, plane) in x.chunks_exact(hw).enumerate().take(g.c) {
        for p in 0..g.kh {
            let (i0, i1) = g.valid(p, g.h, g.oh);
            for q in 0..g.kw {
                let row = (c * g.kh + p) * g.kw + q;
                let dst = &mut cols[row * ld + off..row * ld + off + ohw];
                dst[..i0 * ow].fill(zero);
                dst[i1 * ow..].fill(zero);
                if i0 == i1 {
                    continue;
                }
                let (j0, j1) = g.valid(q, g.w, g.ow);
                if j0 == j1 {
                    // This kernel column only ever reads padding.
                    dst[i0 * ow..i1 * ow].fill(zero);
                    continue;
                }
                let r0 = i0 * s + p * g.dil - g.pad;
                let first = j0 * s + q * g.dil - g.pad;
                let rows = plane[r0 * g.w..].chunks(s * g.w);
                for (d, src) in dst[i0 * ow..i1 * ow].chunks_exact_mut(ow).zip(rows) {
                    d[..j0].fill(zero);
                    d[j1..].fill(zero);
                    if s == 1 {
                        copy_row(&mut d[j0..j1], &src[first..first + (j1 - j0)]);
                    } else {
                        for (v, &x) in d[j0..j1].iter_mut().zip(src[first..].iter().step_by(s)) {
                            *v = x;
                        }
                    }
                }
            }
        }
    }
}

/// `d = s` for the short rows of im2col (often 8 to 32 values), in blocks of 8 so that no
/// `memcpy` call is paid per row.
#[inline(always)]
fn copy_row<T: Elem>(d: &mut [T], s: &[T]) {
    if d.len() >= 128 {
        d.copy_from_slice(s);
        return;
    }
    let mut dc = d.chunks_exact_mut(8);
    let mut sc = s.chunks_exact(8);
    for (a, b) in (&mut dc).zip(&mut sc) {
        if let (Ok(a), Ok(b)) = (<&mut [T; 8]>::try_from(a), <&[T; 8]>::try_from(b)) {
            *a = *b;
        }
    }
    for (a, &b) in dc.into_remainder().iter_mut().zip(sc.remainder()) {
        *a = b;
    }
}

/// `dx += col2im(dcols[:, off .. off + OH·OW])` for one sample: the adjoint of [`im2col`].
fn col2im_add<T: Elem>(g: &Geom, dcols: &[T], ld: usize, off: usize, dx: &mut [T]) {
    let (ohw, ow, hw, s) = (g.ohw(), g.ow, g.h * g.w, g.stride);
    for (c, plane) in dx.chunks_exact_mut(hw).enumerate().take(g.c) {
        for p in 0..g.kh {
            let (i0, i1) = g.valid(p, g.h, g.oh);
            if i0 == i1 {
                continue;
            }
            for q in 0..g.kw {
                let (j0, j1) = g.valid(q, g.w, g.ow);
                if j0 == j1 {
                    continue;
                }
                let row = (c * g.kh + p) * g.kw + q;
                let src = &dcols[row * ld + off..row * ld + off + ohw];
                let r0 = i0 * s + p * g.dil - g.pad;
                let first = j0 * s + q * g.dil - g.pad;
                let rows = plane[r0 * g.w..].chunks_mut(s * g.w);
                for (sv, d) in src[i0 * ow..i1 * ow].chunks_exact(ow).zip(rows) {
                    let sv = &sv[j0..j1];
                    if s == 1 {
                        for (a, &b) in d[first..first + (j1 - j0)].iter_mut().zip(sv) {
                            *a += b;
                        }
                    } else {
                        for (a, &b) in d[first..].iter_mut().step_by(s).zip(sv) {
                            *a += b;
                        }
                    }
                }
            }
        }
    }
}

/// Rearranges a block of output gradients `(B, O, OH·OW)` into `(O, B·OH·OW)`.
fn gather_block<T: Elem>(g: &Geom, dy: &[T], b: usize, out: &mut [T]) {
    let (ohw, ld) = (g.ohw(), b * g.ohw());
    for k in 0..b {
        for oc in 0..g.o {
            out[oc * ld + k * ohw..oc * ld + (k + 1) * ohw]
                .copy_from_slice(&dy[(k * g.o + oc) * ohw..(k * g.o + oc + 1) * ohw]);
        }
    }
}

/// Samples per block: about 256 GEMM columns, but at least one block per thread.
fn block_size(g: &Geom) -> usize {
    let want = 256usize.div_ceil(g.ohw().max(1));
    let per_thread = g.n.div_ceil(rayon::current_num_threads().max(1));
    want.min(per_thread).max(1)
}

/// GEMMs go parallel only when there are fewer blocks than threads.
fn gemm_parallelism(blocks: usize) -> gemm::Parallelism {
    let t = rayon::current_num_threads();
    if blocks >= t || t <= 1 {
        gemm::Parallelism::None
    } else {
        gemm::Parallelism::Rayon(t)
    }
}

/// Runs `f(scratch, out_block, in_block)` over the blocks of samples, in one contiguous share
/// of blocks per thread; each share makes its scratch buffers once.
fn per_block<T: Elem, S>(
    g: &Geom,
    (out, out_per_sample): (&mut [T], usize),
    (inp, in_per_sample): (&[T], usize),
    scratch: impl Fn() -> S + Sync,
    f: impl Fn(&mut S, &mut [T], &[T]) -> candle_core::Result<()> + Sync,
) -> candle_core::Result<()> {
    let bs = block_size(g);
    let blocks = g.n.div_ceil(bs);
    let shares = rayon::current_num_threads().clamp(1, blocks.max(1));
    let per = blocks.div_ceil(shares) * bs;
    if out_per_sample == 0 || in_per_sample == 0 || per == 0 {
        return Ok(());
    }
    out.par_chunks_mut(per * out_per_sample)
        .zip(inp.par_chunks(per * in_per_sample))
        .try_for_each(|(o, i)| {
            let mut s = scratch();
            for (ob, ib) in o
                .chunks_mut(bs * out_per_sample)
                .zip(i.chunks(bs * in_per_sample))
            {
                f(&mut s, ob, ib)?;
            }
            Ok(())
        })
}

fn forward<T: Elem>(g: &Geom, x: &[T], w: &[T], bias: Option<&[T]>) -> candle_core::Result<Vec<T>> {
    let (ohw, og, cgkk) = (g.ohw(), g.og(), g.cgkk());
    let mut y = vec![T::default(); g.n * g.o * ohw];
    if y.is_empty() {
        return Ok(y);
    }
    let bs = block_size(g);
    let par = gemm_parallelism(g.n.div_ceil(bs));
    per_block(
        g,
        (&mut y, g.o * ohw),
        (x, g.chw()),
        || {
            let cols = vec![T::default(); g.ckk() * bs * ohw];
            let tmp = vec![T::default(); if bs > 1 { g.o * bs * ohw } else { 0 }];
            (cols, tmp)
        },
        |(cols, tmp), yb, xb| {
            let b = xb.len() / g.chw();
            let ld = b * ohw;
            // One sample of a pointwise convolution: the sample is its own im2col.
            let direct = b == 1 && g.pointwise();
            if !direct {
                for (k, xn) in xb.chunks_exact(g.chw()).enumerate() {
                    im2col(g, xn, cols, ld, k * ohw);
                }
            }
            let src: &[T] = if direct { xb } else { cols };
            // One sample: the GEMM writes (O, OH·OW) straight into y.
            let dst: &mut [T] = if b == 1 { yb } else { tmp };
            for gi in 0..g.groups {
                gemm_into(
                    (&mut dst[gi * og * ld..], Mat::row_major(og, ld)),
                    (&w[gi * og * cgkk..], Mat::row_major(og, cgkk)),
                    (&src[gi * cgkk * ld..], Mat::row_major(cgkk, ld)),
                    false,
                    par,
                )?;
            }
            if b > 1 {
                for k in 0..b {
                    for oc in 0..g.o {
                        let src = &tmp[oc * ld + k * ohw..oc * ld + (k + 1) * ohw];
                        yb[(k * g.o + oc) * ohw..(k * g.o + oc + 1) * ohw].copy_from_slice(src);
                    }
                }
            }
            if let Some(bias) = bias {
                for (row, &bv) in yb.chunks_exact_mut(ohw).zip(bias.iter().cycle()) {
                    for v in row {
                        *v += bv;
                    }
                }
            }
            Ok(())
        },
    )?;
    Ok(y)
}

fn backward_input<T: Elem>(g: &Geom, dy: &[T], w: &[T]) -> candle_core::Result<Vec<T>> {
    let (ohw, og, cgkk) = (g.ohw(), g.og(), g.cgkk());
    let mut dx = vec![T::default(); g.n * g.chw()];
    if dx.is_empty() || ohw == 0 {
        return Ok(dx);
    }
    let bs = block_size(g);
    let par = gemm_parallelism(g.n.div_ceil(bs));
    per_block(
        g,
        (&mut dx, g.chw()),
        (dy, g.o * ohw),
        || {
            let dcols = vec![T::default(); g.ckk() * bs * ohw];
            let dyb = vec![T::default(); if bs > 1 { g.o * bs * ohw } else { 0 }];
            (dcols, dyb)
        },
        |(dcols, dyb), dxb, dyblk| {
            let b = dxb.len() / g.chw();
            let ld = b * ohw;
            let dyv: &[T] = if b == 1 {
                dyblk
            } else {
                gather_block(g, dyblk, b, dyb);
                dyb
            };
            // One sample of a pointwise convolution: col2im is the identity, so the GEMM
            // writes the input gradient directly.
            let direct = b == 1 && g.pointwise();
            let dst: &mut [T] = if direct { dxb } else { dcols };
            for gi in 0..g.groups {
                gemm_into(
                    (&mut dst[gi * cgkk * ld..], Mat::row_major(cgkk, ld)),
                    (&w[gi * og * cgkk..], Mat::row_major(og, cgkk).t()),
                    (&dyv[gi * og * ld..], Mat::row_major(og, ld)),
                    false,
                    par,
                )?;
            }
            if !direct {
                for (k, dxn) in dxb.chunks_exact_mut(g.chw()).enumerate() {
                    col2im_add(g, dcols, ld, k * ohw, dxn);
                }
            }
            Ok(())
        },
    )?;
    Ok(dx)
}

fn backward_weight<T: Elem>(g: &Geom, x: &[T], dy: &[T]) -> candle_core::Result<Vec<T>> {
    let (ohw, og, cgkk) = (g.ohw(), g.og(), g.cgkk());
    let wlen = g.o * cgkk;
    if g.n == 0 || wlen == 0 || ohw == 0 {
        return Ok(vec![T::default(); wlen]);
    }
    let bs = block_size(g);
    let blocks = g.n.div_ceil(bs);
    let shares = rayon::current_num_threads().clamp(1, blocks);
    let per = blocks.div_ceil(shares);
    let par = gemm_parallelism(blocks);
    let partials = (0..shares)
        .into_par_iter()
        .map(|si| -> candle_core::Result<Vec<T>> {
            let mut dw = vec![T::default(); wlen];
            let mut cols = vec![T::default(); g.ckk() * bs * ohw];
            let mut dyb = vec![T::default(); if bs > 1 { g.o * bs * ohw } else { 0 }];
            let mut first = true;
            for blk in si * per..((si + 1) * per).min(blocks) {
                let n0 = blk * bs;
                let b = bs.min(g.n - n0);
                let ld = b * ohw;
                // One sample of a pointwise convolution: the sample is its own im2col.
                let direct = b == 1 && g.pointwise();
                if !direct {
                    for k in 0..b {
                        let n = n0 + k;
                        im2col(
                            g,
                            &x[n * g.chw()..(n + 1) * g.chw()],
                            &mut cols,
                            ld,
                            k * ohw,
                        );
                    }
                }
                let src: &[T] = if direct {
                    &x[n0 * g.chw()..(n0 + 1) * g.chw()]
                } else {
                    &cols
                };
                let dyblk = &dy[n0 * g.o * ohw..(n0 + b) * g.o * ohw];
                let dyv: &[T] = if b == 1 {
                    dyblk
                } else {
                    gather_block(g, dyblk, b, &mut dyb);
                    &dyb
                };
                for gi in 0..g.groups {
                    gemm_into(
                        (&mut dw[gi * og * cgkk..], Mat::row_major(og, cgkk)),
                        (&dyv[gi * og * ld..], Mat::row_major(og, ld)),
                        (&src[gi * cgkk * ld..], Mat::row_major(cgkk, ld).t()),
                        !first,
                        par,
                    )?;
                }
                first = false;
            }
            Ok(dw)
        })
        .collect::<candle_core::Result<Vec<_>>>()?;
    let mut it = partials.into_iter();
    let mut dw = it.next().unwrap_or_else(|| vec![T::default(); wlen]);
    for p in it {
        for (a, b) in dw.iter_mut().zip(p) {
            *a += b;
        }
    }
    Ok(dw)
}

/// `db_o = Σ_{n, i, j} dy[n, o, i, j]`.
fn bias_grad<T: Elem>(g: &Geom, dy: &[T]) -> Vec<T> {
    let ohw = g.ohw();
    (0..g.o)
        .into_par_iter()
        .map(|oc| {
            let mut s = T::default();
            for n in 0..g.n {
                for &v in &dy[(n * g.o + oc) * ohw..(n * g.o + oc + 1) * ohw] {
                    s += v;
                }
            }
            s
        })
        .collect()
}

fn geom(xd: &[usize], wd: &[usize], cfg: Conv2dConfig) -> candle_core::Result<Geom> {
    Geom::new(xd, wd, cfg).ok_or_else(|| {
        candle_core::Error::Msg(format!(
            "conv2d: input {xd:?} and weight {wd:?} do not fit {cfg:?}"
        ))
    })
}

fn run_forward<T: Elem>(
    g: &Geom,
    (xs, xl): (&CpuStorage, &Layout),
    (ws, wl): (&CpuStorage, &Layout),
    bias: Option<(&CpuStorage, &Layout)>,
) -> candle_core::Result<Vec<T>> {
    let b = match bias {
        Some((bs, bl)) => Some(slice::<T>(bs, bl, "conv2d: bias")?),
        None => None,
    };
    forward(
        g,
        slice(xs, xl, "conv2d: input")?,
        slice(ws, wl, "conv2d: weight")?,
        b,
    )
}

/// The forward op: `(x, w) ↦ conv2d(x, w)` as a [`CustomOp2`], `(x, w, b) ↦ conv2d(x, w) + b`
/// as a [`CustomOp3`].
pub(crate) struct Conv2dOp {
    pub(crate) cfg: Conv2dConfig,
}

impl Conv2dOp {
    fn grads(
        &self,
        x: &Tensor,
        w: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Geom, Tensor, Option<Tensor>, Option<Tensor>)> {
        let g = geom(x.dims(), w.dims(), self.cfg)?;
        let dy = dy.contiguous()?;
        // Only what autograd will use: a data batch that is not a variable gets no gradient.
        let dx = if x.track_op() {
            Some(dy.apply_op2_no_bwd(w, &Conv2dBackwardInput { g })?)
        } else {
            None
        };
        let dw = if w.track_op() {
            Some(x.apply_op2_no_bwd(&dy, &Conv2dBackwardWeight { g })?)
        } else {
            None
        };
        Ok((g, dy, dx, dw))
    }
}

impl CustomOp2 for Conv2dOp {
    fn name(&self) -> &'static str {
        "xfer-conv2d"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let _profile = crate::profile::scope(<Self as candle_core::CustomOp2>::name(self));
        let g = geom(xl.dims(), wl.dims(), self.cfg)?;
        let out = by_dtype!("conv2d", xs, run_forward(&g, (xs, xl), (ws, wl), None))?;
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

impl CustomOp3 for Conv2dOp {
    fn name(&self) -> &'static str {
        "xfer-conv2d-bias"
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
        let g = geom(xl.dims(), wl.dims(), self.cfg)?;
        if bl.dims() != [g.o] {
            bail!("conv2d: bias {:?} must be ({})", bl.dims(), g.o);
        }
        let out = by_dtype!(
            "conv2d",
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
            Some(dy.apply_op1_no_bwd(&Conv2dBackwardBias { g })?)
        } else {
            None
        };
        Ok((dx, dw, db))
    }
}

fn run_backward_input<T: Elem>(
    g: &Geom,
    (dys, dyl): (&CpuStorage, &Layout),
    (ws, wl): (&CpuStorage, &Layout),
) -> candle_core::Result<Vec<T>> {
    backward_input(
        g,
        slice(dys, dyl, "conv2d: output gradient")?,
        slice(ws, wl, "conv2d: weight")?,
    )
}

fn run_backward_weight<T: Elem>(
    g: &Geom,
    (xs, xl): (&CpuStorage, &Layout),
    (dys, dyl): (&CpuStorage, &Layout),
) -> candle_core::Result<Vec<T>> {
    backward_weight(
        g,
        slice(xs, xl, "conv2d: input")?,
        slice(dys, dyl, "conv2d: output gradient")?,
    )
}

fn run_backward_bias<T: Elem>(
    g: &Geom,
    (dys, dyl): (&CpuStorage, &Layout),
) -> candle_core::Result<Vec<T>> {
    Ok(bias_grad(g, slice(dys, dyl, "conv2d: output gradient")?))
}

fn check_dy(g: &Geom, dyl: &Layout) -> candle_core::Result<()> {
    if dyl.dims() != [g.n, g.o, g.oh, g.ow] {
        bail!(
            "conv2d backward: output gradient {:?} does not match {g:?}",
            dyl.dims()
        );
    }
    Ok(())
}

/// `(dy, w) ↦ dx = col2im(Wᵀ · dy)`.
struct Conv2dBackwardInput {
    g: Geom,
}

impl CustomOp2 for Conv2dBackwardInput {
    fn name(&self) -> &'static str {
        "xfer-conv2d-backward-input"
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
        let out = by_dtype!("conv2d", dys, run_backward_input(g, (dys, dyl), (ws, wl)))?;
        Ok((out, (g.n, g.c, g.h, g.w).into()))
    }
}

/// `(x, dy) ↦ dw = Σ dy · im2col(x)ᵀ`.
struct Conv2dBackwardWeight {
    g: Geom,
}

impl CustomOp2 for Conv2dBackwardWeight {
    fn name(&self) -> &'static str {
        "xfer-conv2d-backward-weight"
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
        if xl.dims() != [g.n, g.c, g.h, g.w] {
            bail!(
                "conv2d backward: input {:?} does not match {g:?}",
                xl.dims()
            );
        }
        let out = by_dtype!("conv2d", xs, run_backward_weight(g, (xs, xl), (dys, dyl)))?;
        Ok((out, (g.o, g.c / g.groups, g.kh, g.kw).into()))
    }
}

/// `dy ↦ db = Σ_{n, i, j} dy`.
struct Conv2dBackwardBias {
    g: Geom,
}

impl CustomOp1 for Conv2dBackwardBias {
    fn name(&self) -> &'static str {
        "xfer-conv2d-backward-bias"
    }

    fn cpu_fwd(&self, dys: &CpuStorage, dyl: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let _profile = crate::profile::scope(<Self as candle_core::CustomOp1>::name(self));
        let g = &self.g;
        check_dy(g, dyl)?;
        let out = by_dtype!("conv2d", dys, run_backward_bias(g, (dys, dyl)))?;
        Ok((out, g.o.into()))
    }
}
