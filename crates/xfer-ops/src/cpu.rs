//! Shared plumbing of the CPU kernels: the element types they take, the contiguous slice of a
//! storage, and dispatch over the dtype.

use candle_core::{CpuStorage, Layout, bail};

/// Element types with a CPU kernel (f32 and f64; f16 and bf16 are computed in f32 by the
/// public wrappers): xfer's one dtype dispatch for hand-written CPU kernels (xfer-ops' conv,
/// norm and pool kernels, xfer-train's fused optimiser updates). Scalars convert with
/// [`candle_core::WithDType::from_f64`] (`x as f32` for f32).
pub trait Elem:
    Copy
    + Send
    + Sync
    + Default
    + PartialOrd
    + std::ops::AddAssign
    + std::ops::MulAssign
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
    + 'static
    + candle_core::WithDType
{
    /// `e^self`.
    fn exp(self) -> Self;
    /// Whether this is a NaN.
    fn is_nan(self) -> bool;
    /// The square root.
    fn sqrt(self) -> Self;
    /// The elements of a CPU storage of this dtype, mutably (`None` for another dtype).
    fn slice_mut(s: &mut CpuStorage) -> Option<&mut [Self]>;
}

impl Elem for f32 {
    fn exp(self) -> Self {
        f32::exp(self)
    }
    fn is_nan(self) -> bool {
        f32::is_nan(self)
    }
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
    fn slice_mut(s: &mut CpuStorage) -> Option<&mut [Self]> {
        match s {
            CpuStorage::F32(v) => Some(v),
            _ => None,
        }
    }
}

impl Elem for f64 {
    fn exp(self) -> Self {
        f64::exp(self)
    }
    fn is_nan(self) -> bool {
        f64::is_nan(self)
    }
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
    fn slice_mut(s: &mut CpuStorage) -> Option<&mut [Self]> {
        match s {
            CpuStorage::F64(v) => Some(v),
            _ => None,
        }
    }
}

/// The contiguous `T` slice a CPU storage holds under layout `l`; `what` names the tensor
/// (with its op) in the error.
pub(crate) fn slice<'a, T: Elem>(
    s: &'a CpuStorage,
    l: &Layout,
    what: &str,
) -> candle_core::Result<&'a [T]> {
    let v = s.as_slice::<T>()?;
    match l.contiguous_offsets() {
        Some((a, b)) if b <= v.len() => Ok(&v[a..b]),
        _ => bail!("{what} {:?} must be contiguous", l.dims()),
    }
}

/// Runs the generic kernel `f::<T>(args)` for the dtype of storage `s` (f32 or f64) and wraps
/// its `Vec<T>` in a [`CpuStorage`]; `op` names the op in the error for other dtypes.
macro_rules! by_dtype {
    ($op:literal, $s:expr, $f:ident ( $($arg:expr),* )) => {
        match candle_core::backend::BackendStorage::dtype($s) {
            candle_core::DType::F32 => Ok(<f32 as candle_core::WithDType>::to_cpu_storage_owned(
                $f::<f32>($($arg),*)?,
            )),
            candle_core::DType::F64 => Ok(<f64 as candle_core::WithDType>::to_cpu_storage_owned(
                $f::<f64>($($arg),*)?,
            )),
            dt => Err(candle_core::Error::Msg(format!(
                "{}: the CPU kernel takes f32 or f64, got {dt:?}",
                $op
            ))),
        }
    };
}
pub(crate) use by_dtype;

/// A row-major view of a matrix inside a slice: element `(r, c)` at `r·rs + c·cs`.
#[derive(Clone, Copy)]
pub(crate) struct Mat {
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl Mat {
    pub(crate) fn row_major(rows: usize, cols: usize) -> Self {
        Self {
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }
    pub(crate) fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }
    /// One past the largest offset the view touches.
    fn extent(&self) -> usize {
        if self.rows == 0 || self.cols == 0 {
            0
        } else {
            (self.rows - 1) * self.rs + (self.cols - 1) * self.cs + 1
        }
    }
}

/// `dst (+)= lhs · rhs` through the `gemm` crate, after checking every view fits its slice.
pub(crate) fn gemm_into<T: Elem>(
    (dst, dm): (&mut [T], Mat),
    (lhs, lm): (&[T], Mat),
    (rhs, rm): (&[T], Mat),
    accumulate: bool,
    par: gemm::Parallelism,
) -> candle_core::Result<()> {
    if lm.cols != rm.rows || dm.rows != lm.rows || dm.cols != rm.cols {
        bail!(
            "gemm: inner sizes differ ({}x{} · {}x{} → {}x{})",
            lm.rows,
            lm.cols,
            rm.rows,
            rm.cols,
            dm.rows,
            dm.cols
        );
    }
    if dm.extent() > dst.len() || lm.extent() > lhs.len() || rm.extent() > rhs.len() {
        bail!("gemm: a matrix view runs past its buffer");
    }
    if dm.rows == 0 || dm.cols == 0 {
        return Ok(());
    }
    if lm.cols == 0 {
        if !accumulate {
            dst.fill(T::default());
        }
        return Ok(());
    }
    let one = T::from_f64(1.0);
    // SAFETY: the three views were checked above to stay inside their slices, `dst` is
    // borrowed mutably and cannot alias `lhs` or `rhs`, and `T` is f32 or f64, both of which
    // `gemm` supports.
    unsafe {
        gemm::gemm(
            dm.rows,
            dm.cols,
            lm.cols,
            dst.as_mut_ptr(),
            dm.cs as isize,
            dm.rs as isize,
            accumulate,
            lhs.as_ptr(),
            lm.cs as isize,
            lm.rs as isize,
            rhs.as_ptr(),
            rm.cs as isize,
            rm.rs as isize,
            one,
            one,
            false,
            false,
            false,
            par,
        );
    }
    Ok(())
}

/// Defines `fn $name(args)` whose body is compiled three times on x86-64 — for AVX-512F,
/// for AVX2 + FMA and for the baseline (SSE2) — and picks the widest the CPU has at run time
/// (`is_x86_feature_detected!`, cached by std). xfer is built without `target-cpu`, so this is
/// how its compute-bound loops get wide vectors on machines that have them without failing
/// on machines that do not. The body must be plain loops the compiler can vectorise (no
/// calls into libm: those stay scalar).
macro_rules! multiversion {
    // A function generic over one element type (`T: Elem`).
    ($(#[$m:meta])* $vis:vis fn $name:ident<$g:ident: Elem>($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        $vis fn $name<$g: Elem>($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body<$g: Elem>($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                fn v4<$g: Elem>($($arg: $ty),*) $(-> $ret)? {
                    body::<$g>($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn v3<$g: Elem>($($arg: $ty),*) $(-> $ret)? {
                    body::<$g>($($arg),*)
                }
                if std::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F, checked just above.
                    return unsafe { v4::<$g>($($arg),*) };
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU has AVX2 and FMA, checked just above.
                    return unsafe { v3::<$g>($($arg),*) };
                }
            }
            body::<$g>($($arg),*)
        }
    };
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                fn v4($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn v3($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                if std::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F, checked just above.
                    return unsafe { v4($($arg),*) };
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU has AVX2 and FMA, checked just above.
                    return unsafe { v3($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}
pub(crate) use multiversion;

/// Independent f64 accumulators of [`Reduce`]: enough that the adds of a reduction do not
/// wait on each other (two AVX-512 vectors, four AVX2 ones) and the compiler may vectorise
/// without reordering anything — lane `j` sums elements `j, j + 16, …` in order, and the
/// lanes are added in order at the end, so the result is the same on every CPU.
const LANES: usize = 16;

#[inline(always)]
fn lane_total(acc: &[f64; LANES]) -> f64 {
    acc.iter().sum()
}

#[inline(always)]
fn sum_lanes<T: Elem>(acc: &mut [f64; LANES], x: &[T]) {
    let mut it = x.chunks_exact(LANES);
    for c in &mut it {
        for j in 0..LANES {
            acc[j] += c[j].to_f64();
        }
    }
    for (a, v) in acc.iter_mut().zip(it.remainder()) {
        *a += v.to_f64();
    }
}

#[inline(always)]
fn sq_dev_lanes<T: Elem>(acc: &mut [f64; LANES], x: &[T], mu: f64) {
    let mut it = x.chunks_exact(LANES);
    for c in &mut it {
        for j in 0..LANES {
            let d = c[j].to_f64() - mu;
            acc[j] += d * d;
        }
    }
    for (a, v) in acc.iter_mut().zip(it.remainder()) {
        let d = v.to_f64() - mu;
        *a += d * d;
    }
}

#[inline(always)]
fn g_gdev_lanes<T: Elem>(
    (sg, sgd): (&mut [f64; LANES], &mut [f64; LANES]),
    x: &[T],
    g: &[T],
    mu: f64,
) {
    let mut xi = x.chunks_exact(LANES);
    let mut gi = g.chunks_exact(LANES);
    for (xc, gc) in (&mut xi).zip(&mut gi) {
        for j in 0..LANES {
            let gv = gc[j].to_f64();
            sg[j] += gv;
            sgd[j] += gv * (xc[j].to_f64() - mu);
        }
    }
    for (j, (v, gv)) in xi.remainder().iter().zip(gi.remainder()).enumerate() {
        let gv = gv.to_f64();
        sg[j] += gv;
        sgd[j] += gv * (v.to_f64() - mu);
    }
}

#[inline(always)]
fn sq_diff_lanes<T: Elem>(acc: &mut [f64; LANES], x: &[T], a: &[T]) {
    let mut xi = x.chunks_exact(LANES);
    let mut ai = a.chunks_exact(LANES);
    for (xc, ac) in (&mut xi).zip(&mut ai) {
        for j in 0..LANES {
            let d = (xc[j] - ac[j]).to_f64();
            acc[j] += d * d;
        }
    }
    for (j, (&v, &w)) in xi.remainder().iter().zip(ai.remainder()).enumerate() {
        let d = (v - w).to_f64();
        acc[j] += d * d;
    }
}

/// The f64 sums of batch norm's statistics and gradients over runs of elements, vectorised
/// (see [`LANES`]) and compiled for the widest vectors the CPU has.
pub(crate) trait Reduce: Elem {
    /// `Σ x` over every run.
    fn sum_runs<'a>(runs: impl Iterator<Item = &'a [Self]>) -> f64;
    /// `Σ (x − μ)²` over every run.
    fn sq_dev_runs<'a>(runs: impl Iterator<Item = &'a [Self]>, mu: f64) -> f64;
    /// `(Σ g, Σ g·(x − μ))` over every pair of runs.
    fn g_gdev_runs<'a>(runs: impl Iterator<Item = (&'a [Self], &'a [Self])>, mu: f64)
    -> (f64, f64);
    /// `Σ (x − a)²` (the difference taken in `Self`, squared and summed in f64).
    fn sq_diff(x: &[Self], a: &[Self]) -> f64;
}

macro_rules! reduce_impl {
    ($t:ty, $sum:ident, $sq:ident, $gg:ident, $sd:ident) => {
        multiversion! {
            fn $sd(acc: &mut [f64; LANES], x: &[$t], a: &[$t]) {
                sq_diff_lanes(acc, x, a)
            }
        }
        multiversion! {
            fn $sum(acc: &mut [f64; LANES], x: &[$t]) {
                sum_lanes(acc, x)
            }
        }
        multiversion! {
            fn $sq(acc: &mut [f64; LANES], x: &[$t], mu: f64) {
                sq_dev_lanes(acc, x, mu)
            }
        }
        multiversion! {
            fn $gg(sg: &mut [f64; LANES], sgd: &mut [f64; LANES], x: &[$t], g: &[$t], mu: f64) {
                g_gdev_lanes((sg, sgd), x, g, mu)
            }
        }
        impl Reduce for $t {
            fn sum_runs<'a>(runs: impl Iterator<Item = &'a [$t]>) -> f64 {
                let mut acc = [0f64; LANES];
                for r in runs {
                    $sum(&mut acc, r);
                }
                lane_total(&acc)
            }
            fn sq_dev_runs<'a>(runs: impl Iterator<Item = &'a [$t]>, mu: f64) -> f64 {
                let mut acc = [0f64; LANES];
                for r in runs {
                    $sq(&mut acc, r, mu);
                }
                lane_total(&acc)
            }
            fn g_gdev_runs<'a>(
                runs: impl Iterator<Item = (&'a [$t], &'a [$t])>,
                mu: f64,
            ) -> (f64, f64) {
                let (mut sg, mut sgd) = ([0f64; LANES], [0f64; LANES]);
                for (x, g) in runs {
                    $gg(&mut sg, &mut sgd, x, g, mu);
                }
                (lane_total(&sg), lane_total(&sgd))
            }
            fn sq_diff(x: &[$t], a: &[$t]) -> f64 {
                let mut acc = [0f64; LANES];
                $sd(&mut acc, x, a);
                lane_total(&acc)
            }
        }
    };
}
reduce_impl!(f32, sum_f32, sq_dev_f32, g_gdev_f32, sq_diff_f32);
reduce_impl!(f64, sum_f64, sq_dev_f64, g_gdev_f64, sq_diff_f64);
