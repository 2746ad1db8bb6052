//! Pooling forward + backward at the DANN LeNet shapes: xfer-ops' kernels against candle's
//! `max_pool2d` / `avg_pool2d` (whose backward is wrong: see `xfer_ops::pool`; timed anyway).
//!
//! Run: `RAYON_NUM_THREADS=2 cargo bench -p xfer-ops --bench pool` (optional argument: the
//! number of timed runs, default 20). Alternating runs; median / fastest ms and the ratio of
//! the medians.

use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use xfer_ops::{SeededRng, avg_pool2d, max_pool2d};

type Step<'a> = Box<dyn Fn() -> candle_core::Result<()> + 'a>;

fn time_pair(runs: usize, a: &Step, b: &Step) -> candle_core::Result<[(f64, f64); 2]> {
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

fn wrap(r: xfer_ops::Result<Tensor>) -> candle_core::Result<Tensor> {
    r.map_err(candle_core::Error::wrap)
}

fn main() -> candle_core::Result<()> {
    let runs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20);
    let mut rng = SeededRng::new(0);
    println!(
        "pool 2x2 stride 2, f32, CPU, {} rayon threads, {runs} runs each (alternating)",
        rayon::current_num_threads()
    );
    println!(
        "{:<22} {:<8} {:>18} {:>18} {:>7}",
        "input", "op", "candle ms med/min", "xfer ms med/min", "ratio"
    );
    for shape in [[128usize, 32, 24, 24], [128, 48, 8, 8]] {
        let x = Var::from_tensor(
            &rng.normal(&shape, 0.0, 1.0, DType::F32, &Device::Cpu)
                .map_err(candle_core::Error::wrap)?,
        )?;
        let x = x.as_tensor();
        let rows: [(&str, Step, Step); 2] = [
            (
                "max",
                Box::new(|| x.max_pool2d(2)?.sum_all()?.backward().map(|_| ())),
                Box::new(|| wrap(max_pool2d(x, 2, 2))?.sum_all()?.backward().map(|_| ())),
            ),
            (
                "avg",
                Box::new(|| x.avg_pool2d(2)?.sum_all()?.backward().map(|_| ())),
                Box::new(|| wrap(avg_pool2d(x, 2, 2))?.sum_all()?.backward().map(|_| ())),
            ),
        ];
        for (op, c, o) in rows {
            let [(a, amin), (b, bmin)] = time_pair(runs, &c, &o)?;
            println!(
                "{:<22} {:<8} {:>9.2} /{:>7.2} {:>9.2} /{:>7.2} {:>6.1}x",
                format!("{shape:?}"),
                op,
                a,
                amin,
                b,
                bmin,
                a / b
            );
        }
    }
    Ok(())
}
