//! The tour of xfer on embedded data. It grows with the library: for now it shows the
//! primitives every method stands on.

use xfer::prelude::*;

mod common;

fn main() -> anyhow::Result<()> {
    let dev = Device::Cpu;
    let mut rng = SeededRng::new(0);
    let x = Var::from_tensor(&rng.normal(&[4, 3], 0.0, 1.0, DType::F32, &dev)?)?;
    // Gradient reversal: identity forward, gradient times -lambda backward.
    let y = grad_reverse(x.as_tensor(), 0.5)?;
    let g = y.sum_all()?.backward()?;
    let gx = g
        .get(x.as_tensor())
        .map(|t| t.flatten_all()?.to_vec1::<f32>())
        .transpose()?;
    println!(
        "grad_reverse(λ = 0.5): d(sum)/dx = {:?}",
        gx.unwrap_or_default()
    );

    // A frozen snapshot does not move when the live variable is updated in place.
    let store = ParamStore::new();
    let w = store.add(
        "fc.weight",
        rng.normal(&[2, 2], 0.0, 1.0, DType::F32, &dev)?,
    )?;
    let snap = ParamSnapshot::capture([(w.name(), w.var().as_tensor())])?;
    w.var().set(&Tensor::zeros((2, 2), DType::F32, &dev)?)?;
    let anchor = snap
        .get("fc.weight")
        .map(|t| t.sum_all()?.to_scalar::<f32>())
        .transpose()?;
    println!(
        "snapshot of fc.weight still sums to {:?} after the live weight was zeroed",
        anchor
    );
    Ok(())
}
