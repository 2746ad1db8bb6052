//! Input checks shared by the losses (private): every refusal is a typed [`LossError`] that
//! names the loss and the tensor.

use candle_core::{DType, Device, Tensor};

use crate::{LossError, Result};

/// The tensor must hold floating-point values.
pub(crate) fn float(loss: &'static str, name: &str, t: &Tensor) -> Result<()> {
    match t.dtype() {
        DType::F16 | DType::BF16 | DType::F32 | DType::F64 => Ok(()),
        got => Err(LossError::DType {
            loss,
            tensor: name.to_string(),
            got,
            expected: "a float dtype (f16, bf16, f32 or f64)".into(),
        }),
    }
}

/// `b` must have the dtype of `a`.
pub(crate) fn same_dtype(
    loss: &'static str,
    (a_name, a): (&str, &Tensor),
    (b_name, b): (&str, &Tensor),
) -> Result<()> {
    if a.dtype() != b.dtype() {
        return Err(LossError::DType {
            loss,
            tensor: b_name.to_string(),
            got: b.dtype(),
            expected: format!("{:?} (the dtype of `{a_name}`)", a.dtype()),
        });
    }
    Ok(())
}

/// The float tensor must be 2-D; returns its `(rows, cols)`.
pub(crate) fn matrix(loss: &'static str, name: &str, t: &Tensor) -> Result<(usize, usize)> {
    float(loss, name, t)?;
    match t.dims() {
        &[r, c] => Ok((r, c)),
        d => Err(LossError::shape(
            loss,
            name,
            d,
            "a 2-D (rows, columns) tensor",
        )),
    }
}

/// Like [`matrix`] but also refuses zero rows or zero columns.
pub(crate) fn nonempty_matrix(
    loss: &'static str,
    name: &str,
    t: &Tensor,
) -> Result<(usize, usize)> {
    let (r, c) = matrix(loss, name, t)?;
    if r == 0 || c == 0 {
        return Err(LossError::shape(
            loss,
            name,
            t.dims(),
            "at least one row and one column",
        ));
    }
    Ok((r, c))
}

/// `b` must have exactly the shape of `a`.
pub(crate) fn same_shape(
    loss: &'static str,
    (a_name, a): (&str, &Tensor),
    (b_name, b): (&str, &Tensor),
) -> Result<()> {
    if a.dims() != b.dims() {
        return Err(LossError::shape(
            loss,
            b_name,
            b.dims(),
            format!("{:?} (the shape of `{a_name}`)", a.dims()),
        ));
    }
    same_dtype(loss, (a_name, a), (b_name, b))
}

/// A scalar loss value: shape `()` or `(1)`, float. Returns it as a rank-0 tensor.
pub(crate) fn scalar(loss: &'static str, name: &str, t: &Tensor) -> Result<Tensor> {
    float(loss, name, t)?;
    match t.dims() {
        [] => Ok(t.clone()),
        [1] => Ok(t.squeeze(0)?),
        d => Err(LossError::shape(loss, name, d, "a scalar: shape () or (1)")),
    }
}

/// Reads an integer label vector of length `n` (u8, u32 or i64) and checks every label
/// against `0..num_classes` before anything indexes with it. Where `keep` is given, positions
/// with `keep[i] == false` are not checked (they may hold placeholders such as −1) and are
/// returned as 0.
pub(crate) fn labels(
    loss: &'static str,
    name: &str,
    t: &Tensor,
    n: usize,
    num_classes: usize,
    keep: Option<&[bool]>,
) -> Result<Vec<u32>> {
    match t.dtype() {
        DType::U8 | DType::U32 | DType::I64 => {}
        got => {
            return Err(LossError::DType {
                loss,
                tensor: name.to_string(),
                got,
                expected: "integer class labels (u8, u32 or i64)".into(),
            });
        }
    }
    if t.dims() != [n] {
        return Err(LossError::shape(
            loss,
            name,
            t.dims(),
            format!("({n}): one label per row of the scores"),
        ));
    }
    let raw = t.to_dtype(DType::I64)?.to_vec1::<i64>()?;
    let mut out = Vec::with_capacity(raw.len());
    for (index, &label) in raw.iter().enumerate() {
        let wanted = keep.and_then(|k| k.get(index).copied()).unwrap_or(true);
        if !wanted {
            out.push(0);
            continue;
        }
        if label < 0 || label as u64 >= num_classes as u64 {
            return Err(LossError::LabelOutOfRange {
                loss,
                tensor: name.to_string(),
                index,
                label,
                num_classes,
            });
        }
        out.push(label as u32);
    }
    Ok(out)
}

/// Reads a 0/1 (or boolean-like) mask of length `n`: any non-zero value keeps the position.
pub(crate) fn mask(loss: &'static str, name: &str, t: &Tensor, n: usize) -> Result<Vec<bool>> {
    if t.dims() != [n] {
        return Err(LossError::shape(
            loss,
            name,
            t.dims(),
            format!("({n}): one entry per example"),
        ));
    }
    let v = t.to_dtype(DType::F64)?.to_vec1::<f64>()?;
    Ok(v.into_iter().map(|x| x != 0.0).collect())
}

/// Dense `(n, c)` matrix holding `on` at `(i, labels[i])` and `off` elsewhere.
pub(crate) fn label_matrix(
    labels: &[u32],
    c: usize,
    on: f64,
    off: f64,
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    let mut data = vec![off; labels.len() * c];
    for (i, &y) in labels.iter().enumerate() {
        if let Some(slot) = data.get_mut(i * c + y as usize) {
            *slot = on;
        }
    }
    Ok(Tensor::from_vec(data, (labels.len(), c), &Device::Cpu)?
        .to_dtype(dtype)?
        .to_device(device)?)
}

/// `max(0, x)` whose gradient is 0 where `x ≤ 0` (candle's `relu` passes gradient at `x = 0`,
/// so a margin met exactly would still pull).
pub(crate) fn positive_part(x: &Tensor) -> Result<Tensor> {
    let on = x.gt(0.0)?.to_dtype(x.dtype())?;
    Ok(x.mul(&on)?)
}

/// A finite value, or a typed refusal naming the argument.
pub(crate) fn finite(loss: &'static str, arg: &'static str, v: f64) -> Result<f64> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(LossError::argument(
            loss,
            arg,
            format!("must be finite, got {v}"),
        ))
    }
}

/// A finite value `≥ 0`.
pub(crate) fn non_negative(loss: &'static str, arg: &'static str, v: f64) -> Result<f64> {
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(LossError::argument(
            loss,
            arg,
            format!("must be finite and ≥ 0, got {v}"),
        ))
    }
}

/// A finite value `> 0`.
pub(crate) fn positive(loss: &'static str, arg: &'static str, v: f64) -> Result<f64> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(LossError::argument(
            loss,
            arg,
            format!("must be finite and > 0, got {v}"),
        ))
    }
}
