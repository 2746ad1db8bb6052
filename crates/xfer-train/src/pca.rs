//! Principal component analysis in plain Rust (f64), for 2-D pictures of feature spaces.
//!
//! The leading `k` eigenvectors of the sample covariance `C = X̃ᵀX̃ / (n − 1)` (`X̃` the
//! centred data) are found by subspace iteration — repeated `V ← orth(C V)` with `C V`
//! computed as `X̃ᵀ(X̃ V)`, so `C` is never formed — followed by a Rayleigh–Ritz step (the
//! small matrix `VᵀCV` diagonalised by Jacobi rotations). Components are sorted by variance
//! and signed so their largest-magnitude entry is positive, which makes the output
//! deterministic.

use candle_core::{DType, Tensor};

use crate::{Result, TrainError};

/// A fitted PCA.
#[derive(Debug, Clone, PartialEq)]
pub struct Pca {
    /// The mean of the data (d).
    pub mean: Vec<f64>,
    /// The principal axes, unit vectors, by decreasing variance (k × d).
    pub components: Vec<Vec<f64>>,
    /// The variance of the data along each axis (k).
    pub explained_variance: Vec<f64>,
    /// The total variance `tr C`.
    pub total_variance: f64,
}

impl Pca {
    /// Fits `k` components to the rows of `x` (n × d, any float dtype).
    pub fn fit_tensor(x: &Tensor, k: usize) -> Result<Self> {
        if x.rank() != 2 {
            return Err(TrainError::metric(
                "pca",
                format!("expected data of shape (n, d), got {:?}", x.dims()),
            ));
        }
        Self::fit(&x.to_dtype(DType::F64)?.to_vec2::<f64>()?, k)
    }

    /// Fits `k` components to `rows` (n rows of equal width d; n ≥ 2, 1 ≤ k ≤ d).
    pub fn fit(rows: &[Vec<f64>], k: usize) -> Result<Self> {
        let n = rows.len();
        let d = rows.first().map_or(0, Vec::len);
        if n < 2 || d == 0 || rows.iter().any(|r| r.len() != d) {
            return Err(TrainError::metric(
                "pca",
                format!("need at least 2 rows of one width > 0 (got {n} rows, width {d})"),
            ));
        }
        if k == 0 || k > d {
            return Err(TrainError::metric(
                "pca",
                format!("k = {k} must be in 1..={d}"),
            ));
        }
        if rows.iter().flatten().any(|v| !v.is_finite()) {
            return Err(TrainError::metric(
                "pca",
                "the data hold NaN or infinite values",
            ));
        }
        let mut mean = vec![0.0; d];
        for r in rows {
            for (m, v) in mean.iter_mut().zip(r) {
                *m += v;
            }
        }
        for m in &mut mean {
            *m /= n as f64;
        }
        let xc: Vec<Vec<f64>> = rows
            .iter()
            .map(|r| r.iter().zip(&mean).map(|(v, m)| v - m).collect())
            .collect();
        let denom = (n - 1) as f64;
        let total_variance = xc.iter().flatten().map(|v| v * v).sum::<f64>() / denom;
        // C v = X̃ᵀ (X̃ v) / (n − 1)
        let cov_times = |v: &[f64]| -> Vec<f64> {
            let mut out = vec![0.0; d];
            for r in &xc {
                let a: f64 = r.iter().zip(v).map(|(x, y)| x * y).sum();
                if a != 0.0 {
                    for (o, x) in out.iter_mut().zip(r) {
                        *o += a * x;
                    }
                }
            }
            out.iter_mut().for_each(|o| *o /= denom);
            out
        };

        // Subspace iteration with a little oversampling for faster convergence.
        let m = (k + 2).min(d);
        let mut rng = xfer_ops::SeededRng::new(0x5043_4121);
        let mut v: Vec<Vec<f64>> = (0..m)
            .map(|_| (0..d).map(|_| rng.normal01()).collect())
            .collect();
        orthonormalise(&mut v);
        let mut prev: Vec<f64> = vec![f64::INFINITY; m];
        for _ in 0..1000 {
            let mut w: Vec<Vec<f64>> = v.iter().map(|c| cov_times(c)).collect();
            let ritz: Vec<f64> = v.iter().zip(&w).map(|(a, b)| dot(a, b)).collect();
            orthonormalise(&mut w);
            v = w;
            let scale = ritz.iter().fold(0.0f64, |a, b| a.max(b.abs())).max(1e-300);
            let converged = ritz
                .iter()
                .zip(&prev)
                .all(|(a, b)| (a - b).abs() <= 1e-13 * scale);
            prev = ritz;
            if converged {
                break;
            }
        }
        // Rayleigh–Ritz: diagonalise H = Vᵀ C V and rotate V.
        let cv: Vec<Vec<f64>> = v.iter().map(|c| cov_times(c)).collect();
        let mut h = vec![vec![0.0; m]; m];
        for i in 0..m {
            for j in 0..m {
                h[i][j] = 0.5 * (dot(&v[i], &cv[j]) + dot(&v[j], &cv[i]));
            }
        }
        let (evals, evecs) = jacobi_eigen(h);
        let mut order: Vec<usize> = (0..m).collect();
        order.sort_by(|&a, &b| evals[b].total_cmp(&evals[a]));
        let mut components = Vec::with_capacity(k);
        let mut explained_variance = Vec::with_capacity(k);
        for &i in order.iter().take(k) {
            let mut c = vec![0.0; d];
            for (j, vj) in v.iter().enumerate() {
                let a = evecs[j][i];
                for (cc, x) in c.iter_mut().zip(vj) {
                    *cc += a * x;
                }
            }
            let norm = dot(&c, &c).sqrt().max(1e-300);
            c.iter_mut().for_each(|x| *x /= norm);
            let big = c
                .iter()
                .copied()
                .fold(0.0f64, |a, b| if b.abs() > a.abs() { b } else { a });
            if big < 0.0 {
                c.iter_mut().for_each(|x| *x = -*x);
            }
            components.push(c);
            explained_variance.push(evals[i].max(0.0));
        }
        Ok(Self {
            mean,
            components,
            explained_variance,
            total_variance,
        })
    }

    /// The share of the total variance each component explains.
    pub fn explained_variance_ratio(&self) -> Vec<f64> {
        self.explained_variance
            .iter()
            .map(|v| {
                if self.total_variance > 0.0 {
                    v / self.total_variance
                } else {
                    0.0
                }
            })
            .collect()
    }

    /// Projects rows onto the components: `(x − mean) · componentᵢ`.
    pub fn transform(&self, rows: &[Vec<f64>]) -> Result<Vec<Vec<f64>>> {
        let d = self.mean.len();
        rows.iter()
            .map(|r| {
                if r.len() != d {
                    return Err(TrainError::metric(
                        "pca",
                        format!("row of width {} for a PCA fitted on width {d}", r.len()),
                    ));
                }
                Ok(self
                    .components
                    .iter()
                    .map(|c| {
                        r.iter()
                            .zip(&self.mean)
                            .zip(c)
                            .map(|((x, m), ci)| (x - m) * ci)
                            .sum()
                    })
                    .collect())
            })
            .collect()
    }

    /// Projects the rows of a tensor (n × d).
    pub fn transform_tensor(&self, x: &Tensor) -> Result<Vec<Vec<f64>>> {
        if x.rank() != 2 {
            return Err(TrainError::metric(
                "pca",
                format!("expected data of shape (n, d), got {:?}", x.dims()),
            ));
        }
        self.transform(&x.to_dtype(DType::F64)?.to_vec2::<f64>()?)
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Modified Gram–Schmidt; a vector that collapses is replaced by a unit basis vector
/// orthogonal enough to the rest.
fn orthonormalise(v: &mut [Vec<f64>]) {
    let d = v.first().map_or(0, Vec::len);
    for i in 0..v.len() {
        for attempt in 0..=d {
            for j in 0..i {
                let (head, tail) = v.split_at_mut(i);
                let p = dot(&tail[0], &head[j]);
                for (a, b) in tail[0].iter_mut().zip(&head[j]) {
                    *a -= p * b;
                }
            }
            let norm = dot(&v[i], &v[i]).sqrt();
            if norm > 1e-12 {
                v[i].iter_mut().for_each(|x| *x /= norm);
                break;
            }
            // degenerate: try the next basis vector
            v[i] = (0..d)
                .map(|t| if t == (i + attempt) % d { 1.0 } else { 0.0 })
                .collect();
        }
    }
}

/// Eigen-decomposition of a small symmetric matrix by cyclic Jacobi rotations; returns the
/// eigenvalues and the eigenvectors as columns (`vecs[row][col]`).
fn jacobi_eigen(mut a: Vec<Vec<f64>>) -> (Vec<f64>, Vec<Vec<f64>>) {
    let n = a.len();
    let mut vecs: Vec<Vec<f64>> = (0..n)
        .map(|i| (0..n).map(|j| if i == j { 1.0 } else { 0.0 }).collect())
        .collect();
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i][j] * a[i][j])
            .sum();
        let diag: f64 = (0..n).map(|i| a[i][i] * a[i][i]).sum();
        if off <= 1e-30 * diag.max(1e-300) {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                if a[p][q].abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for row in a.iter_mut() {
                    let (x, y) = (row[p], row[q]);
                    row[p] = c * x - s * y;
                    row[q] = s * x + c * y;
                }
                let (rp, rq) = (a[p].clone(), a[q].clone());
                a[p] = rp.iter().zip(&rq).map(|(x, y)| c * x - s * y).collect();
                a[q] = rp.iter().zip(&rq).map(|(x, y)| s * x + c * y).collect();
                for row in vecs.iter_mut() {
                    let vp = row[p];
                    let vq = row[q];
                    row[p] = c * vp - s * vq;
                    row[q] = s * vp + c * vq;
                }
            }
        }
    }
    ((0..n).map(|i| a[i][i]).collect(), vecs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pca_of_a_rank_two_set_recovers_axes_and_variance_order() {
        // x = 7 + a·u₁ + b·u₂ with a = 3 cos θ, b = sin θ, θ = 2πi/n: a and b are exactly
        // uncorrelated with sample variances 9·(n/2)/(n−1) and (n/2)/(n−1), u₁ ⟂ u₂ in R⁵.
        // PCA must return u₁ then u₂ with those variances, and nothing on a third axis.
        let s = 0.5f64;
        let u1 = [s, s, s, s, 0.0];
        let u2 = [s, -s, s, -s, 0.0];
        let n = 400usize;
        let rows: Vec<Vec<f64>> = (0..n)
            .map(|i| {
                let th = 2.0 * std::f64::consts::PI * i as f64 / n as f64;
                let (a, b) = (3.0 * th.cos(), th.sin());
                (0..5).map(|j| 7.0 + a * u1[j] + b * u2[j]).collect()
            })
            .collect();
        let pca = Pca::fit(&rows, 3).unwrap();
        let cos = |c: &[f64], u: &[f64]| dot(c, u).abs();
        assert!(
            cos(&pca.components[0], &u1) > 1.0 - 1e-9,
            "{:?}",
            pca.components[0]
        );
        assert!(
            cos(&pca.components[1], &u2) > 1.0 - 1e-9,
            "{:?}",
            pca.components[1]
        );
        let ev = &pca.explained_variance;
        let half = (n as f64 / 2.0) / (n as f64 - 1.0);
        assert!((ev[0] - 9.0 * half).abs() < 1e-9, "{ev:?}");
        assert!((ev[1] - half).abs() < 1e-9, "{ev:?}");
        assert!(ev[2] < 1e-9, "rank 2: {ev:?}");
        // the two components explain everything
        let r = pca.explained_variance_ratio();
        assert!((r[0] + r[1] - 1.0).abs() < 1e-9);
        // the projections' variances are the explained variances; the mean is recovered
        let proj = pca.transform(&rows).unwrap();
        let var0 = proj.iter().map(|p| p[0] * p[0]).sum::<f64>() / (n as f64 - 1.0);
        assert!((var0 - ev[0]).abs() < 1e-8 * ev[0]);
        assert!((pca.mean[4] - 7.0).abs() < 1e-12);
    }

    #[test]
    fn pca_matches_an_explicit_two_by_two_eigenproblem() {
        // Points along y = 2x plus a perpendicular wiggle: the exact covariance eigenvectors
        // come from the 2×2 matrix, computed here in closed form.
        let rows: Vec<Vec<f64>> = vec![
            vec![0.0, 0.0],
            vec![1.0, 2.2],
            vec![2.0, 3.9],
            vec![3.0, 6.1],
            vec![4.0, 7.8],
        ];
        let n = rows.len() as f64;
        let mx = rows.iter().map(|r| r[0]).sum::<f64>() / n;
        let my = rows.iter().map(|r| r[1]).sum::<f64>() / n;
        let cxx = rows.iter().map(|r| (r[0] - mx).powi(2)).sum::<f64>() / (n - 1.0);
        let cyy = rows.iter().map(|r| (r[1] - my).powi(2)).sum::<f64>() / (n - 1.0);
        let cxy = rows.iter().map(|r| (r[0] - mx) * (r[1] - my)).sum::<f64>() / (n - 1.0);
        let tr = cxx + cyy;
        let det = cxx * cyy - cxy * cxy;
        let l1 = tr / 2.0 + (tr * tr / 4.0 - det).sqrt();
        let l2 = tr / 2.0 - (tr * tr / 4.0 - det).sqrt();
        let pca = Pca::fit(&rows, 2).unwrap();
        assert!((pca.explained_variance[0] - l1).abs() < 1e-10 * l1);
        assert!((pca.explained_variance[1] - l2).abs() < 1e-8);
        // eigenvector of l1: (cxy, l1 − cxx) normalised
        let (ex, ey) = (cxy, l1 - cxx);
        let norm = (ex * ex + ey * ey).sqrt();
        let c = &pca.components[0];
        assert!(((c[0] * ex + c[1] * ey) / norm).abs() > 1.0 - 1e-12);
        assert!((pca.total_variance - tr).abs() < 1e-12);
    }

    #[test]
    fn pca_refuses_bad_input() {
        assert!(Pca::fit(&[vec![1.0, 2.0]], 1).is_err());
        assert!(Pca::fit(&[vec![1.0, 2.0], vec![1.0]], 1).is_err());
        assert!(Pca::fit(&[vec![1.0, 2.0], vec![3.0, 4.0]], 3).is_err());
        assert!(Pca::fit(&[vec![1.0, f64::NAN], vec![3.0, 4.0]], 1).is_err());
        let p = Pca::fit(&[vec![1.0, 2.0], vec![3.0, 4.0]], 1).unwrap();
        assert!(p.transform(&[vec![1.0]]).is_err());
    }

    #[test]
    fn jacobi_diagonalises_a_symmetric_matrix() {
        let a = vec![
            vec![4.0, 1.0, 0.5],
            vec![1.0, 3.0, 0.2],
            vec![0.5, 0.2, 1.0],
        ];
        let (vals, vecs) = jacobi_eigen(a.clone());
        for k in 0..3 {
            for i in 0..3 {
                let av: f64 = (0..3).map(|j| a[i][j] * vecs[j][k]).sum();
                assert!((av - vals[k] * vecs[i][k]).abs() < 1e-12);
            }
        }
        assert!((vals.iter().sum::<f64>() - 8.0).abs() < 1e-12);
    }
}
