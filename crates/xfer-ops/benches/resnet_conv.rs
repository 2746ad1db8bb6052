//! conv2d forward + backward at the ResNet-18 shapes of the `finetune-resnet18` workload
//! (batch 16, 64×64 input), one line per convolution: median and fastest milliseconds and the
//! GFLOP/s they mean (2 FLOPs per multiply-add; forward, input gradient and weight gradient).
//!
//! Run: `RAYON_NUM_THREADS=2 cargo bench -p xfer-ops --bench resnet_conv [-- RUNS]`.

use std::time::Instant;

use candle_core::{DType, Device, Var};
use xfer_ops::{Conv2dConfig, SeededRng, conv2d};

fn main() -> candle_core::Result<()> {
    let runs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10);
    let dev = Device::Cpu;
    let mut rng = SeededRng::new(0);
    // (name, C, H (=W), O, k, stride, padding)
    let layers = [
        ("conv1 7x7/2", 3, 64, 64, 7, 2, 3),
        ("layer1 3x3", 64, 16, 64, 3, 1, 1),
        ("layer2 3x3/2", 64, 16, 128, 3, 2, 1),
        ("layer2 3x3", 128, 8, 128, 3, 1, 1),
        ("layer2 1x1/2", 64, 16, 128, 1, 2, 0),
        ("layer3 3x3", 256, 4, 256, 3, 1, 1),
        ("layer4 3x3", 512, 2, 512, 3, 1, 1),
    ];
    let (mut total_ms, mut total_flop) = (0.0, 0.0);
    for (name, c, h, o, k, s, p) in layers {
        let n = 16;
        let mk = |rng: &mut SeededRng, shape: &[usize]| -> candle_core::Result<Var> {
            Var::from_tensor(
                &rng.normal(shape, 0.0, 1.0, DType::F32, &dev)
                    .map_err(candle_core::Error::wrap)?,
            )
        };
        let x = mk(&mut rng, &[n, c, h, h])?;
        let w = mk(&mut rng, &[o, c, k, k])?;
        let cfg = Conv2dConfig {
            stride: s,
            padding: p,
            ..Default::default()
        };
        let oh = (h + 2 * p - k) / s + 1;
        let flop = 2.0 * (n * o * oh * oh * c * k * k) as f64 * 3.0;
        let step = || -> candle_core::Result<()> {
            let y = conv2d(x.as_tensor(), w.as_tensor(), None, cfg)
                .map_err(candle_core::Error::wrap)?;
            y.sum_all()?.backward()?;
            Ok(())
        };
        step()?;
        let mut t = Vec::with_capacity(runs);
        for _ in 0..runs.max(1) {
            let start = Instant::now();
            step()?;
            t.push(start.elapsed().as_secs_f64() * 1e3);
        }
        t.sort_by(f64::total_cmp);
        let (med, best) = (t[t.len() / 2], t[0]);
        total_ms += med;
        total_flop += flop;
        println!(
            "{name:14} x ({n},{c},{h},{h}) w ({o},{c},{k},{k}): median {med:7.2} ms ({:5.1} GFLOP/s), fastest {best:7.2} ms ({:5.1} GFLOP/s)",
            flop / med / 1e6,
            flop / best / 1e6
        );
    }
    println!(
        "all: {total_ms:.1} ms, {:.1} GFLOP/s at the medians",
        total_flop / total_ms / 1e6
    );
    Ok(())
}
