//! conv2d forward + backward at the DANN LeNet shapes: xfer-ops (im2col + GEMM with its own
//! backward) against candle's built-in `Tensor::conv2d`.
//!
//! Run: `RAYON_NUM_THREADS=2 cargo bench -p xfer-ops --bench conv` (optional argument: the
//! number of timed runs, default 20). The two implementations run alternately (so a busy
//! machine slows both alike); prints the median and the fastest time of each and the ratio of
//! the medians.

use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use xfer_ops::{Conv2dConfig, SeededRng, conv2d};

type Step<'a> = Box<dyn Fn() -> candle_core::Result<()> + 'a>;

/// Median and minimum milliseconds of `a` and of `b`, timed alternately after two warm-ups.
fn time_pair(
    runs: usize,
    a: &dyn Fn() -> candle_core::Result<()>,
    b: &dyn Fn() -> candle_core::Result<()>,
) -> candle_core::Result<[(f64, f64); 2]> {
    for _ in 0..2 {
        a()?;
        b()?;
    }
    let (mut ta, mut tb) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
    for _ in 0..runs.max(1) {
        for (f, t) in [(a, &mut ta), (b, &mut tb)] {
            let s = Instant::now();
            f()?;
            t.push(s.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok([ta, tb].map(|mut t| {
        t.sort_by(|x, y| x.total_cmp(y));
        (t[t.len() / 2], t[0])
    }))
}

struct Layer {
    name: &'static str,
    x: Var,
    w: Var,
    b: Var,
}

impl Layer {
    fn new(
        rng: &mut SeededRng,
        name: &'static str,
        xs: [usize; 4],
        ws: [usize; 4],
    ) -> candle_core::Result<Self> {
        let dev = Device::Cpu;
        let mk = |r: &mut SeededRng, s: &[usize], std: f64| -> candle_core::Result<Var> {
            let t = r
                .normal(s, 0.0, std, DType::F32, &dev)
                .map_err(candle_core::Error::wrap)?;
            Var::from_tensor(&t)
        };
        let fan_in = (ws[1] * ws[2] * ws[3]) as f64;
        Ok(Self {
            name,
            x: mk(rng, &xs, 1.0)?,
            w: mk(rng, &ws, fan_in.powf(-0.5))?,
            b: mk(rng, &[ws[0]], 0.1)?,
        })
    }

    fn candle(&self) -> candle_core::Result<Tensor> {
        let o = self.w.dim(0)?;
        self.x
            .as_tensor()
            .conv2d(self.w.as_tensor(), 0, 1, 1, 1)?
            .broadcast_add(&self.b.as_tensor().reshape((1, o, 1, 1))?)
    }

    fn ours(&self, input: &Tensor) -> candle_core::Result<Tensor> {
        conv2d(
            input,
            self.w.as_tensor(),
            Some(self.b.as_tensor()),
            Conv2dConfig::default(),
        )
        .map_err(candle_core::Error::wrap)
    }
}

fn main() -> candle_core::Result<()> {
    let runs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20);
    let mut rng = SeededRng::new(0);
    let layers = [
        Layer::new(
            &mut rng,
            "conv1 3x28x28 -> 32 5x5",
            [128, 3, 28, 28],
            [32, 3, 5, 5],
        )?,
        Layer::new(
            &mut rng,
            "conv2 32x12x12 -> 48 5x5",
            [128, 32, 12, 12],
            [48, 32, 5, 5],
        )?,
    ];
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    println!(
        "conv2d, batch 128, f32, CPU, {} rayon threads, {runs} runs each (alternating), load average before: {}",
        rayon::current_num_threads(),
        load.join(" ")
    );
    println!(
        "{:<26} {:<20} {:>18} {:>18} {:>7}",
        "layer", "pass", "candle ms med/min", "xfer ms med/min", "ratio"
    );
    let (mut tc, mut tx) = (0.0, 0.0);
    for l in &layers {
        let x = l.x.as_tensor();
        let rows: [(&str, Step, Step); 3] = [
            (
                "forward",
                Box::new(|| l.candle().map(|_| ())),
                Box::new(|| l.ours(x).map(|_| ())),
            ),
            (
                "fwd+bwd",
                Box::new(|| l.candle()?.sum_all()?.backward().map(|_| ())),
                Box::new(|| l.ours(x)?.sum_all()?.backward().map(|_| ())),
            ),
            (
                // A data batch is no variable: ours skips its gradient, candle computes it anyway.
                "fwd+bwd, data input",
                Box::new(|| {
                    let o = l.w.dim(0)?;
                    x.detach()
                        .conv2d(l.w.as_tensor(), 0, 1, 1, 1)?
                        .broadcast_add(&l.b.as_tensor().reshape((1, o, 1, 1))?)?
                        .sum_all()?
                        .backward()
                        .map(|_| ())
                }),
                Box::new(|| l.ours(&x.detach())?.sum_all()?.backward().map(|_| ())),
            ),
        ];
        for (pass, c, o) in rows {
            let [(a, amin), (b, bmin)] = time_pair(runs, &c, &o)?;
            if pass == "fwd+bwd" {
                tc += a;
                tx += b;
            }
            println!(
                "{:<26} {:<20} {:>9.2} /{:>7.2} {:>9.2} /{:>7.2} {:>6.1}x",
                l.name,
                pass,
                a,
                amin,
                b,
                bmin,
                a / b
            );
        }
    }
    println!(
        "{:<26} {:<20} {:>9.2}          {:>9.2}          {:>6.1}x",
        "both convs (medians)",
        "fwd+bwd",
        tc,
        tx,
        tc / tx
    );
    Ok(())
}
