//! Safetensors feature files: a features tensor `(N, ...)` (any float or integer dtype,
//! converted to f32) and a labels tensor `(N,)` (integer dtype, or floats holding integers),
//! by default named `x` and `y`. For features extracted by another program.

use crate::dataset::TensorDataset;
use crate::error::{DataError, Result};
use safetensors::{Dtype, SafeTensors};
use std::path::Path;

/// Tensor names to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafetensorsOptions {
    /// Name of the features tensor (default `x`).
    pub x: String,
    /// Name of the labels tensor (default `y`).
    pub y: String,
}

impl Default for SafetensorsOptions {
    fn default() -> Self {
        Self {
            x: "x".into(),
            y: "y".into(),
        }
    }
}

fn to_f64(path: &Path, name: &str, dtype: Dtype, b: &[u8]) -> Result<Vec<f64>> {
    let v: Vec<f64> = match dtype {
        Dtype::U8 => b.iter().map(|&v| f64::from(v)).collect(),
        Dtype::I8 => b.iter().map(|&v| f64::from(v as i8)).collect(),
        Dtype::U16 => b
            .chunks_exact(2)
            .map(|c| f64::from(u16::from_le_bytes([c[0], c[1]])))
            .collect(),
        Dtype::I16 => b
            .chunks_exact(2)
            .map(|c| f64::from(i16::from_le_bytes([c[0], c[1]])))
            .collect(),
        Dtype::F16 => b
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f64())
            .collect(),
        Dtype::BF16 => b
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f64())
            .collect(),
        Dtype::U32 => b
            .chunks_exact(4)
            .map(|c| f64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        Dtype::I32 => b
            .chunks_exact(4)
            .map(|c| f64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        Dtype::F32 => b
            .chunks_exact(4)
            .map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        Dtype::F64 => b
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect(),
        Dtype::I64 => b
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f64)
            .collect(),
        Dtype::U64 => b
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f64)
            .collect(),
        other => {
            return Err(DataError::parse(
                path,
                format!("tensor `{name}`"),
                format!("unsupported dtype {other:?}"),
            ));
        }
    };
    Ok(v)
}

/// Reads features and labels from a safetensors file.
pub fn read_safetensors(
    path: &Path,
    opts: &SafetensorsOptions,
    scale: f32,
) -> Result<TensorDataset> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| DataError::parse(path, "header", e.to_string()))?;
    let get = |name: &str| {
        st.tensor(name).map_err(|_| {
            let mut have: Vec<&str> = st.names();
            have.sort_unstable();
            DataError::parse(
                path,
                format!("tensor `{name}`"),
                format!(
                    "not found (tensors: {}); name them with x=NAME,y=NAME",
                    have.join(", ")
                ),
            )
        })
    };
    let x = get(&opts.x)?;
    let y = get(&opts.y)?;
    let xs = x.shape().to_vec();
    let Some((&n, rest)) = xs.split_first() else {
        return Err(DataError::parse(
            path,
            format!("tensor `{}`", opts.x),
            "features must have at least one dimension (N, ...)",
        ));
    };
    let sample_shape = if rest.is_empty() {
        vec![1]
    } else {
        rest.to_vec()
    };
    let ys = y.shape();
    let ny: usize = ys.iter().product();
    if !(ys.len() == 1 || (ys.len() == 2 && ys[1] == 1)) || ny != n {
        return Err(DataError::shape(
            path.display().to_string(),
            format!(
                "labels `{}` of shape {ys:?} do not match features `{}` of shape {xs:?}: need ({n},)",
                opts.y, opts.x
            ),
        ));
    }
    if n == 0 {
        return Err(DataError::Empty(path.display().to_string()));
    }
    let xv = to_f64(path, &opts.x, x.dtype(), x.data())?;
    let mut features = Vec::with_capacity(xv.len());
    for (i, v) in xv.into_iter().enumerate() {
        if !v.is_finite() {
            return Err(DataError::parse(
                path,
                format!("tensor `{}`, element {i}", opts.x),
                format!("value {v} is not finite"),
            ));
        }
        features.push(v as f32 * scale);
    }
    let yv = to_f64(path, &opts.y, y.dtype(), y.data())?;
    let mut labels = Vec::with_capacity(n);
    for (i, v) in yv.into_iter().enumerate() {
        if !(v >= 0.0 && v.fract() == 0.0 && v <= f64::from(u32::MAX)) {
            return Err(DataError::parse(
                path,
                format!("tensor `{}`, element {i}", opts.y),
                format!("label {v} is not a class id (a non-negative integer)"),
            ));
        }
        labels.push(v as u32);
    }
    TensorDataset::new(path.display().to_string(), features, sample_shape, labels)
}
