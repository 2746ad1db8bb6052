//! Depthwise convolution forward + backward (input and weight gradients) at MobileNetV2's
//! depthwise shapes for the `finetune-mobilenet_v2` workload (batch 16, 128×128 input): the
//! depthwise kernel (`depthwise_conv2d`) against the generic im2col + GEMM `conv2d` with
//! `groups = C`, one line per layer with the median milliseconds of each and the speed-up.
//!
//! Run: `RAYON_NUM_THREADS=2 cargo bench -p xfer-ops --bench depthwise [-- RUNS]`.

use std::time::Instant;

use candle_core::{DType, Device, Var};
use xfer_ops::{Conv2dConfig, DepthwiseConfig, Padding2d, SeededRng, conv2d, depthwise_conv2d};

fn median_ms(
    runs: usize,
    mut f: impl FnMut() -> candle_core::Result<()>,
) -> candle_core::Result<f64> {
    f()?;
    let mut t = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let start = Instant::now();
        f()?;
        t.push(start.elapsed().as_secs_f64() * 1e3);
    }
    t.sort_by(f64::total_cmp);
    Ok(t[t.len() / 2])
}

fn main() -> candle_core::Result<()> {
    let runs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10);
    let dev = Device::Cpu;
    let mut rng = SeededRng::new(0);
    // (name, C, H (=W) of the input, k, stride): MobileNetV2's depthwise layers at 128×128.
    let layers = [
        ("features.1 3x3", 32, 64, 3, 1),
        ("features.2 3x3/2", 96, 64, 3, 2),
        ("features.3 3x3", 144, 32, 3, 1),
        ("features.4 3x3/2", 144, 32, 3, 2),
        ("features.5 3x3", 192, 16, 3, 1),
        ("features.7 3x3/2", 192, 16, 3, 2),
        ("features.8 3x3", 384, 8, 3, 1),
        ("features.14 3x3/2", 576, 8, 3, 2),
        ("features.15 3x3", 960, 4, 3, 1),
        ("lite0 5x5/2", 144, 32, 5, 2),
    ];
    let n = 16;
    let (mut tot_dw, mut tot_gen) = (0.0, 0.0);
    for (name, c, h, k, s) in layers {
        let mk = |rng: &mut SeededRng, shape: &[usize]| -> candle_core::Result<Var> {
            Var::from_tensor(
                &rng.normal(shape, 0.0, 1.0, DType::F32, &dev)
                    .map_err(candle_core::Error::wrap)?,
            )
        };
        let x = mk(&mut rng, &[n, c, h, h])?;
        let w = mk(&mut rng, &[c, 1, k, k])?;
        let p = (k - 1) / 2;
        let dw_cfg = DepthwiseConfig {
            stride: s,
            padding: Padding2d::uniform(p),
        };
        let gen_cfg = Conv2dConfig {
            stride: s,
            padding: p,
            dilation: 1,
            groups: c,
        };
        let dw = median_ms(runs, || {
            let y = depthwise_conv2d(x.as_tensor(), w.as_tensor(), None, dw_cfg)
                .map_err(candle_core::Error::wrap)?;
            y.sum_all()?.backward()?;
            Ok(())
        })?;
        let gen_ms = median_ms(runs, || {
            let y = conv2d(x.as_tensor(), w.as_tensor(), None, gen_cfg)
                .map_err(candle_core::Error::wrap)?;
            y.sum_all()?.backward()?;
            Ok(())
        })?;
        tot_dw += dw;
        tot_gen += gen_ms;
        println!(
            "{name:18} x ({n},{c},{h},{h}) k {k} s {s}: depthwise {dw:7.2} ms, conv2d groups=C {gen_ms:7.2} ms, {:4.1}x",
            gen_ms / dw
        );
    }
    println!(
        "all: depthwise {tot_dw:.1} ms, conv2d groups=C {tot_gen:.1} ms, {:.1}x",
        tot_gen / tot_dw
    );
    Ok(())
}
