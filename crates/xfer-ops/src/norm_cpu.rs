//! CPU kernels of the last-dimension normalisations, fused forward and explicit backward.
//!
//! Rows are the last dimension (length `D`), spread over rayon's pool. Sums are accumulated
//! in f64 whatever the element type.
//! - softmax: `y = e^{x − m} / Σ e^{x − m}`; backward `dx = y ⊙ (g − Σ g ⊙ y)`.
//! - log-softmax: `y = x − m − ln Σ e^{x − m}`; backward `dx = g − e^{y} · Σ g`.
//! - layer norm: `x̂ = (x − μ) · r`, `r = 1/√(σ² + ε)`, `y = x̂ ⊙ γ + β`; backward
//!   `dx = r · (ĝ − mean(ĝ) − x̂ · mean(ĝ ⊙ x̂))` with `ĝ = g ⊙ γ`, `dγ = Σ_rows g ⊙ x̂`,
//!   `dβ = Σ_rows g`.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Shape, Tensor, bail};
use rayon::prelude::*;

use crate::activation::{Activation, relu1, relu6_1};
use crate::cpu::{Elem, Reduce, by_dtype, slice};

/// Rows per rayon task: at least about 4096 elements of work.
fn min_rows(d: usize) -> usize {
    (4096 / d.max(1)).max(1)
}

fn last_dim(l: &Layout) -> candle_core::Result<usize> {
    match l.dims().last() {
        Some(&d) => Ok(d),
        None => bail!("normalisation over the last dimension of a scalar"),
    }
}

fn softmax_fwd<T: Elem>(x: &[T], d: usize, log: bool) -> candle_core::Result<Vec<T>> {
    let mut y = vec![T::default(); x.len()];
    if d == 0 {
        return Ok(y);
    }
    y.par_chunks_mut(d)
        .zip(x.par_chunks(d))
        .with_min_len(min_rows(d))
        .for_each(|(yr, xr)| {
            let mut m = xr[0];
            for &v in xr {
                if v > m || v.is_nan() {
                    m = v;
                }
            }
            let mut s = 0f64;
            for (o, &v) in yr.iter_mut().zip(xr) {
                let e = (v - m).exp();
                *o = e;
                s += e.to_f64();
            }
            if log {
                let lse = T::from_f64(s.ln());
                for (o, &v) in yr.iter_mut().zip(xr) {
                    *o = v - m - lse;
                }
            } else {
                let inv = T::from_f64(1.0 / s);
                for o in yr.iter_mut() {
                    *o *= inv;
                }
            }
        });
    Ok(y)
}

fn softmax_bwd<T: Elem>(y: &[T], g: &[T], d: usize, log: bool) -> candle_core::Result<Vec<T>> {
    let mut dx = vec![T::default(); y.len()];
    if d == 0 {
        return Ok(dx);
    }
    dx.par_chunks_mut(d)
        .zip(y.par_chunks(d).zip(g.par_chunks(d)))
        .with_min_len(min_rows(d))
        .for_each(|(dr, (yr, gr))| {
            if log {
                let s = T::from_f64(gr.iter().map(|v| v.to_f64()).sum());
                for ((o, &yv), &gv) in dr.iter_mut().zip(yr).zip(gr) {
                    *o = gv - yv.exp() * s;
                }
            } else {
                let s: f64 = yr.iter().zip(gr).map(|(a, b)| (*a * *b).to_f64()).sum();
                let s = T::from_f64(s);
                for ((o, &yv), &gv) in dr.iter_mut().zip(yr).zip(gr) {
                    *o = yv * (gv - s);
                }
            }
        });
    Ok(dx)
}

/// Mean and `1/√(σ² + ε)` of one row (two passes, f64 sums).
fn row_stats<T: Elem>(xr: &[T], eps: f64) -> (T, T) {
    let n = xr.len() as f64;
    let mu = xr.iter().map(|v| v.to_f64()).sum::<f64>() / n;
    let var = xr
        .iter()
        .map(|v| {
            let c = v.to_f64() - mu;
            c * c
        })
        .sum::<f64>()
        / n;
    (T::from_f64(mu), T::from_f64(1.0 / (var + eps).sqrt()))
}

fn layer_norm_fwd<T: Elem>(
    x: &[T],
    gamma: &[T],
    beta: &[T],
    eps: f64,
) -> candle_core::Result<Vec<T>> {
    let d = gamma.len();
    if beta.len() != d {
        bail!("layer_norm: gamma ({d}) and beta ({}) differ", beta.len());
    }
    let mut y = vec![T::default(); x.len()];
    if d == 0 {
        return Ok(y);
    }
    y.par_chunks_mut(d)
        .zip(x.par_chunks(d))
        .with_min_len(min_rows(d))
        .for_each(|(yr, xr)| {
            let (mu, r) = row_stats(xr, eps);
            for (((o, &v), &g), &b) in yr.iter_mut().zip(xr).zip(gamma).zip(beta) {
                *o = (v - mu) * r * g + b;
            }
        });
    Ok(y)
}

/// Returns `R + 2` rows of `D`: `dx` (R rows), then `dγ`, then `dβ`.
fn layer_norm_bwd<T: Elem>(x: &[T], gamma: &[T], g: &[T], eps: f64) -> candle_core::Result<Vec<T>> {
    let d = gamma.len();
    let mut out = vec![T::default(); x.len() + 2 * d];
    if d == 0 {
        return Ok(out);
    }
    let (dx, params) = out.split_at_mut(x.len());
    let partials: Vec<(Vec<f64>, Vec<f64>)> = dx
        .par_chunks_mut(d)
        .zip(x.par_chunks(d).zip(g.par_chunks(d)))
        .with_min_len(min_rows(d))
        .fold(
            || (vec![0f64; d], vec![0f64; d]),
            |(mut dg, mut db), (dr, (xr, gr))| {
                let (mu, r) = row_stats(xr, eps);
                let n = d as f64;
                let (mut sg, mut sgx) = (0f64, 0f64);
                for (((&v, &gv), &gm), (dgi, dbi)) in xr
                    .iter()
                    .zip(gr)
                    .zip(gamma)
                    .zip(dg.iter_mut().zip(db.iter_mut()))
                {
                    let xh = (v - mu) * r;
                    let gh = gv * gm;
                    sg += gh.to_f64();
                    sgx += (gh * xh).to_f64();
                    *dgi += (gv * xh).to_f64();
                    *dbi += gv.to_f64();
                }
                let (mg, mgx) = (T::from_f64(sg / n), T::from_f64(sgx / n));
                for (((o, &v), &gv), &gm) in dr.iter_mut().zip(xr).zip(gr).zip(gamma) {
                    let xh = (v - mu) * r;
                    *o = r * (gv * gm - mg - xh * mgx);
                }
                (dg, db)
            },
        )
        .collect();
    let (dgamma, dbeta) = params.split_at_mut(d);
    for (pg, pb) in partials {
        for ((o, p), (ob, pbv)) in dgamma.iter_mut().zip(&pg).zip(dbeta.iter_mut().zip(&pb)) {
            *o += T::from_f64(*p);
            *ob += T::from_f64(*pbv);
        }
    }
    Ok(out)
}

fn run_softmax_fwd<T: Elem>(s: &CpuStorage, l: &Layout, log: bool) -> candle_core::Result<Vec<T>> {
    softmax_fwd(slice(s, l, "softmax: input")?, last_dim(l)?, log)
}

fn run_softmax_bwd<T: Elem>(
    (ys, yl): (&CpuStorage, &Layout),
    (gs, gl): (&CpuStorage, &Layout),
    log: bool,
) -> candle_core::Result<Vec<T>> {
    if yl.dims() != gl.dims() {
        bail!(
            "softmax backward: output {:?} and gradient {:?} differ",
            yl.dims(),
            gl.dims()
        );
    }
    softmax_bwd(
        slice(ys, yl, "softmax backward: output")?,
        slice(gs, gl, "softmax backward: gradient")?,
        last_dim(yl)?,
        log,
    )
}

/// Softmax (or log-softmax) over the last dimension.
pub(crate) struct SoftmaxOp {
    pub(crate) log: bool,
}

impl CustomOp1 for SoftmaxOp {
    fn name(&self) -> &'static str {
        if self.log {
            "xfer-log-softmax"
        } else {
            "xfer-softmax"
        }
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let _profile = crate::profile::scope(<Self as candle_core::CustomOp1>::name(self));
        let out = by_dtype!("softmax", s, run_softmax_fwd(s, l, self.log))?;
        Ok((out, l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, y: &Tensor, g: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(y.apply_op2_no_bwd(
            &g.contiguous()?,
            &SoftmaxBackward { log: self.log },
        )?))
    }
}

struct SoftmaxBackward {
    log: bool,
}

impl CustomOp2 for SoftmaxBackward {
    fn name(&self) -> &'static str {
        "xfer-softmax-backward"
    }

    fn cpu_fwd(
        &self,
        ys: &CpuStorage,
        yl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let _profile = crate::profile::scope(<Self as candle_core::CustomOp2>::name(self));
        let out = by_dtype!("softmax", ys, run_softmax_bwd((ys, yl), (gs, gl), self.log))?;
        Ok((out, yl.shape().clone()))
    }
}

fn run_layer_norm_fwd<T: Elem>(
    (xs, xl): (&CpuStorage, &Layout),
    (gs, gl): (&CpuStorage, &Layout),
    (bs, bl): (&CpuStorage, &Layout),
    eps: f64,
) -> candle_core::Result<Vec<T>> {
    let gamma = slice(gs, gl, "layer_norm: gamma")?;
    if last_dim(xl)? != gamma.len() {
        bail!(
            "layer_norm: input {:?} and gamma {:?} differ",
            xl.dims(),
            gl.dims()
        );
    }
    layer_norm_fwd(
        slice(xs, xl, "layer_norm: input")?,
        gamma,
        slice(bs, bl, "layer_norm: beta")?,
        eps,
    )
}

fn run_layer_norm_bwd<T: Elem>(
    (xs, xl): (&CpuStorage, &Layout),
    (gms, gml): (&CpuStorage, &Layout),
    (gs, gl): (&CpuStorage, &Layout),
    eps: f64,
) -> candle_core::Result<Vec<T>> {
    let gamma = slice(gms, gml, "layer_norm backward: gamma")?;
    if xl.dims() != gl.dims() || last_dim(xl)? != gamma.len() {
        bail!(
            "layer_norm backward: input {:?}, gamma {:?} and gradient {:?} do not fit",
            xl.dims(),
            gml.dims(),
            gl.dims()
        );
    }
    layer_norm_bwd(
        slice(xs, xl, "layer_norm backward: input")?,
        gamma,
        slice(gs, gl, "layer_norm backward: gradient")?,
        eps,
    )
}

/// Layer norm over the last dimension: `(x, γ, β) ↦ x̂ ⊙ γ + β`.
pub(crate) struct LayerNormOp {
    pub(crate) eps: f64,
}

impl CustomOp3 for LayerNormOp {
    fn name(&self) -> &'static str {
        "xfer-layer-norm"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let _profile = crate::profile::scope(<Self as candle_core::CustomOp3>::name(self));
        let out = by_dtype!(
            "layer_norm",
            xs,
            run_layer_norm_fwd((xs, xl), (gs, gl), (bs, bl), self.eps)
        )?;
        Ok((out, xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        _y: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let d = gamma.elem_count();
        let rows = x.elem_count() / d.max(1);
        let packed = x.apply_op3_no_bwd(
            gamma,
            &g.contiguous()?,
            &LayerNormBackward { eps: self.eps },
        )?;
        let dx = packed.narrow(0, 0, rows)?.reshape(x.shape())?;
        let dgamma = packed.narrow(0, rows, 1)?.reshape(d)?;
        let dbeta = packed.narrow(0, rows + 1, 1)?.reshape(d)?;
        Ok((Some(dx), Some(dgamma), Some(dbeta)))
    }
}

/// `(x, γ, g) ↦` the `(R + 2, D)` block `[dx; dγ; dβ]`.
struct LayerNormBackward {
    eps: f64,
}

impl CustomOp3 for LayerNormBackward {
    fn name(&self) -> &'static str {
        "xfer-layer-norm-backward"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        gms: &CpuStorage,
        gml: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let _profile = crate::profile::scope(<Self as candle_core::CustomOp3>::name(self));
        let out = by_dtype!(
            "layer_norm",
            xs,
            run_layer_norm_bwd((xs, xl), (gms, gml), (gs, gl), self.eps)
        )?;
        let d = last_dim(xl)?;
        let rows = xl.shape().elem_count() / d.max(1);
        Ok((out, (rows + 2, d).into()))
    }
}

/// Batch-norm geometry: `(N, C, S)` with `S` the spatial size (1 for `(N, C)` input).
#[derive(Debug, Clone, Copy)]
pub(crate) struct BnDims {
    pub(crate) n: usize,
    pub(crate) c: usize,
    pub(crate) s: usize,
}

impl BnDims {
    fn count(&self) -> usize {
        self.n * self.s
    }
    fn check(&self, l: &Layout, what: &str) -> candle_core::Result<()> {
        if l.shape().elem_count() != self.n * self.c * self.s {
            bail!("batch_norm: {what} {:?} does not match {self:?}", l.dims());
        }
        Ok(())
    }
    /// The values of channel `ch`: `n` runs of `s` contiguous values.
    fn runs<'a, T>(&self, x: &'a [T], ch: usize) -> impl Iterator<Item = &'a [T]> + 'a {
        let (c, s) = (self.c, self.s);
        (0..self.n).map(move |n| &x[(n * c + ch) * s..(n * c + ch + 1) * s])
    }
}

/// Per channel: the mean and the biased variance (two passes, f64 sums); `(2, C)`.
fn bn_stats<T: Reduce>(dims: BnDims, x: &[T]) -> candle_core::Result<Vec<T>> {
    let m = dims.count().max(1) as f64;
    let stats: Vec<(f64, f64)> = (0..dims.c)
        .into_par_iter()
        .map(|ch| {
            let mu = T::sum_runs(dims.runs(x, ch)) / m;
            let var = T::sq_dev_runs(dims.runs(x, ch), mu) / m;
            (mu, var)
        })
        .collect();
    let mut out: Vec<T> = stats.iter().map(|s| T::from_f64(s.0)).collect();
    out.extend(stats.iter().map(|s| T::from_f64(s.1)));
    Ok(out)
}

/// `y = (x − μ_c) · r_c · γ_c + β_c`, `r_c = 1/√(σ²_c + ε)`; `gb` holds `[γ; β]`, `stats`
/// holds `[μ; σ²]`.
fn bn_fwd<T: Elem>(
    dims: BnDims,
    x: &[T],
    gb: &[T],
    stats: &[T],
    eps: f64,
    act: Activation,
) -> candle_core::Result<Vec<T>> {
    let mut y = vec![T::default(); x.len()];
    let (c, s) = (dims.c, dims.s);
    if s == 0 || c == 0 {
        return Ok(y);
    }
    y.par_chunks_mut(s)
        .zip(x.par_chunks(s))
        .enumerate()
        .with_min_len(min_rows(s))
        .for_each(|(i, (yr, xr))| {
            let ch = i % c;
            let r = T::from_f64(1.0 / (stats[c + ch].to_f64() + eps).sqrt());
            let (mu, scale, shift) = (stats[ch], r * gb[ch], gb[c + ch]);
            // One loop per activation, so each stays a plain vectorisable loop.
            match act {
                Activation::Identity => {
                    for (o, &v) in yr.iter_mut().zip(xr) {
                        *o = (v - mu) * scale + shift;
                    }
                }
                Activation::Relu => {
                    for (o, &v) in yr.iter_mut().zip(xr) {
                        *o = relu1((v - mu) * scale + shift);
                    }
                }
                Activation::Relu6 => {
                    for (o, &v) in yr.iter_mut().zip(xr) {
                        *o = relu6_1((v - mu) * scale + shift);
                    }
                }
            }
        });
    Ok(y)
}

/// Returns `N·C·S + 2C` values: `dx`, then `dγ`, then `dβ`.
fn bn_bwd<T: Reduce>(
    dims: BnDims,
    x: &[T],
    gb: &[T],
    stats: &[T],
    g: &[T],
    eps: f64,
) -> candle_core::Result<Vec<T>> {
    let (c, s) = (dims.c, dims.s);
    let m = dims.count().max(1) as f64;
    // Per channel: Σ g and Σ g·x̂.
    let sums: Vec<(f64, f64, f64)> = (0..c)
        .into_par_iter()
        .map(|ch| {
            let mu = stats[ch].to_f64();
            let r = 1.0 / (stats[c + ch].to_f64() + eps).sqrt();
            let (sg, sgd) = T::g_gdev_runs(dims.runs(x, ch).zip(dims.runs(g, ch)), mu);
            (sg, sgd * r, r)
        })
        .collect();
    let mut out = vec![T::default(); x.len() + 2 * c];
    let (dx, params) = out.split_at_mut(x.len());
    if s > 0 {
        dx.par_chunks_mut(s)
            .zip(x.par_chunks(s).zip(g.par_chunks(s)))
            .enumerate()
            .with_min_len(min_rows(s))
            .for_each(|(i, (dr, (xr, gr)))| {
                let ch = i % c;
                let (sg, sgx, r) = sums[ch];
                let mu = stats[ch];
                let rt = T::from_f64(r);
                let k = T::from_f64(r * gb[ch].to_f64());
                let (mg, mgx) = (T::from_f64(sg / m), T::from_f64(sgx / m));
                for ((o, &v), &gv) in dr.iter_mut().zip(xr).zip(gr) {
                    let xh = (v - mu) * rt;
                    *o = k * (gv - mg - xh * mgx);
                }
            });
    }
    let (dgamma, dbeta) = params.split_at_mut(c);
    for (ch, &(sg, sgx, _)) in sums.iter().enumerate() {
        dgamma[ch] = T::from_f64(sgx);
        dbeta[ch] = T::from_f64(sg);
    }
    Ok(out)
}

fn run_bn_stats<T: Reduce>(
    dims: BnDims,
    s: &CpuStorage,
    l: &Layout,
) -> candle_core::Result<Vec<T>> {
    dims.check(l, "input")?;
    bn_stats(dims, slice(s, l, "batch_norm: input")?)
}

fn run_bn_fwd<T: Elem>(
    dims: BnDims,
    (xs, xl): (&CpuStorage, &Layout),
    (gs, gl): (&CpuStorage, &Layout),
    (ss, sl): (&CpuStorage, &Layout),
    eps: f64,
    act: Activation,
) -> candle_core::Result<Vec<T>> {
    dims.check(xl, "input")?;
    let (gb, stats) = (
        slice(gs, gl, "batch_norm: gamma/beta")?,
        slice(ss, sl, "batch_norm: stats")?,
    );
    if gb.len() != 2 * dims.c || stats.len() != 2 * dims.c {
        bail!(
            "batch_norm: parameters or statistics do not hold 2·{} values",
            dims.c
        );
    }
    bn_fwd(
        dims,
        slice(xs, xl, "batch_norm: input")?,
        gb,
        stats,
        eps,
        act,
    )
}

fn run_bn_bwd<T: Reduce>(
    dims: BnDims,
    (xs, xl): (&CpuStorage, &Layout),
    (dys, dyl): (&CpuStorage, &Layout),
    (ps, pl): (&CpuStorage, &Layout),
    eps: f64,
) -> candle_core::Result<Vec<T>> {
    dims.check(xl, "input")?;
    dims.check(dyl, "output gradient")?;
    let p = slice::<T>(ps, pl, "batch_norm: parameters and statistics")?;
    let c = dims.c;
    if p.len() != 4 * c {
        bail!(
            "batch_norm backward: expected [γ; β; μ; σ²] of 4·{c} values, got {}",
            p.len()
        );
    }
    bn_bwd(
        dims,
        slice(xs, xl, "batch_norm: input")?,
        &p[..2 * c],
        &p[2 * c..],
        slice(dys, dyl, "batch_norm: output gradient")?,
        eps,
    )
}

/// `x ↦ [μ; σ²]` per channel, `(2, C)`; no gradient (the statistics are a constant of the
/// normalisation op, whose backward accounts for their dependence on `x`).
pub(crate) struct BatchStatsOp {
    pub(crate) dims: BnDims,
}

impl CustomOp1 for BatchStatsOp {
    fn name(&self) -> &'static str {
        "xfer-batch-stats"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let _profile = crate::profile::scope(<Self as candle_core::CustomOp1>::name(self));
        let out = by_dtype!("batch_norm", s, run_bn_stats(self.dims, s, l))?;
        Ok((out, (2, self.dims.c).into()))
    }
}

/// `(x, [γ; β], [μ; σ²]) ↦ y`, training-mode batch norm with the batch statistics; the
/// backward gives `dx` (through the statistics too) and `d[γ; β]`.
pub(crate) struct BatchNormOp {
    pub(crate) dims: BnDims,
    pub(crate) eps: f64,
    /// Applied to the normalised value in the same pass (its backward masks the gradient
    /// before the batch-norm backward).
    pub(crate) act: Activation,
}

impl CustomOp3 for BatchNormOp {
    fn name(&self) -> &'static str {
        "xfer-batch-norm"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
        ss: &CpuStorage,
        sl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let _profile = crate::profile::scope(<Self as candle_core::CustomOp3>::name(self));
        let out = by_dtype!(
            "batch_norm",
            xs,
            run_bn_fwd(self.dims, (xs, xl), (gs, gl), (ss, sl), self.eps, self.act)
        )?;
        Ok((out, xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gb: &Tensor,
        stats: &Tensor,
        y: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let masked = self.act.backward(y, g)?;
        let g = masked.as_ref().unwrap_or(g);
        let params = Tensor::cat(&[gb.flatten_all()?, stats.flatten_all()?], 0)?;
        let packed = x.apply_op3_no_bwd(
            &g.contiguous()?,
            &params,
            &BatchNormBackward {
                dims: self.dims,
                eps: self.eps,
            },
        )?;
        let n = x.elem_count();
        let dx = packed.narrow(0, 0, n)?.reshape(x.shape())?;
        let dgb = packed.narrow(0, n, 2 * self.dims.c)?;
        Ok((Some(dx), Some(dgb), None))
    }
}

/// `(x, g, [γ; β; μ; σ²]) ↦ [dx; dγ; dβ]` (flat).
struct BatchNormBackward {
    dims: BnDims,
    eps: f64,
}

impl CustomOp3 for BatchNormBackward {
    fn name(&self) -> &'static str {
        "xfer-batch-norm-backward"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        dys: &CpuStorage,
        dyl: &Layout,
        ps: &CpuStorage,
        pl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let _profile = crate::profile::scope(<Self as candle_core::CustomOp3>::name(self));
        let out = by_dtype!(
            "batch_norm",
            xs,
            run_bn_bwd(self.dims, (xs, xl), (dys, dyl), (ps, pl), self.eps)
        )?;
        let n = self.dims.n * self.dims.c * self.dims.s;
        Ok((out, (n + 2 * self.dims.c).into()))
    }
}
