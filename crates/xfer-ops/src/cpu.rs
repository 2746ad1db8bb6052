//! Shared plumbing of the CPU kernels: the element types they take, the contiguous slice of a
//! storage, and dispatch over the dtype.

use candle_core::{CpuStorage, Layout, bail};

/// Element types with a CPU kernel (f32 and f64; f16 and bf16 are computed in f32 by the
/// public wrappers).
pub(crate) trait Elem:
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
}

impl Elem for f32 {
    fn exp(self) -> Self {
        f32::exp(self)
    }
    fn is_nan(self) -> bool {
        f32::is_nan(self)
    }
}

impl Elem for f64 {
    fn exp(self) -> Self {
        f64::exp(self)
    }
    fn is_nan(self) -> bool {
        f64::is_nan(self)
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
