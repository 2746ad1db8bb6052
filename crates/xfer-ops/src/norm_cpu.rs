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

use crate::cpu::{Elem, by_dtype, slice};

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
