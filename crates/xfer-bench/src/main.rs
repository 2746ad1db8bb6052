//! `xfer-bench WORKLOAD [--steps N] [--threads N] [--device cpu|cuda] [--images N]`: one workload
//! of `shared/bench/WORKLOADS.md`, built only from xfer's public API, timed as the PyTorch
//! reference times it (3 untimed warm-up steps, then the median of N timed steps), printed as
//! `<workload> ms_per_step=<median> peak_rss_mb=<peak MB>`.
//!
//! `cargo xtask bench` runs each workload in its own process so the peak is that workload's.

use std::time::Instant;

mod imagefolder;

use anyhow::{Context, Result, bail};
use xfer::candle::{DType, Device, Tensor};
use xfer::losses::{DomainAdversarialLoss, L2Sp, ZeroShotHinge, cross_entropy};
use xfer::models::{
    Backbone, DannLeNet, DomainDiscriminator, DomainDiscriminatorConfig, LeNetConfig, Linear, Mlp,
    MlpConfig, MobileNetV2, Module, ModuleT, Param, ParamStore, ResNet, SentenceEncoder,
};
use xfer::ops::{ParamSnapshot, SeededRng};
use xfer::train::{Adam, AdamConfig, Optimizer, Sgd, SgdConfig};

/// One training step of a workload: forward, loss, backward, optimiser update.
pub(crate) type Step = Box<dyn FnMut() -> Result<()>>;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut steps = 30usize;
    let mut device = Device::Cpu;
    let mut workload = None;
    let mut images = 512usize;
    let mut profile = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--steps" => steps = it.next().context("--steps needs a number")?.parse()?,
            "--images" => images = it.next().context("--images needs a number")?.parse()?,
            // Time per xfer kernel over the timed steps (xfer_ops::profile), printed after.
            "--profile" => profile = true,
            // The thread count is read by rayon from RAYON_NUM_THREADS (set by xtask).
            "--threads" => {
                it.next().context("--threads needs a number")?;
            }
            "--device" => {
                let d = it.next().context("--device needs cpu or cuda")?;
                device = xfer::ops::select_device(d.parse()?)?;
            }
            w => workload = Some(w.to_string()),
        }
    }
    let workload = workload.context("usage: xfer-bench WORKLOAD [--steps N] [--device D]")?;
    let dev = &device;
    let (mut step, per_step_items): (Step, Option<usize>) = match workload.as_str() {
        "dann-lenet" => (dann_lenet(dev)?, None),
        "sourceonly-lenet" => (sourceonly_lenet(dev)?, None),
        "l2sp-mlp" => (l2sp_mlp(dev)?, None),
        "finetune-resnet18" => (finetune_resnet18(dev)?, None),
        "finetune-mobilenet_v2" => (finetune_mobilenet_v2(dev)?, None),
        "zsl-hinge" => (zsl_hinge(dev)?, None),
        "embed-minilm" => embed_minilm(dev)?,
        "matmul-peak" => (matmul_peak(dev)?, None),
        "imagefolder-read" => imagefolder::imagefolder_read(images)?,
        other => bail!(
            "unknown workload {other:?} (dann-lenet, sourceonly-lenet, l2sp-mlp, finetune-resnet18, finetune-mobilenet_v2, zsl-hinge, embed-minilm, matmul-peak, imagefolder-read)"
        ),
    };
    for _ in 0..3 {
        step()?;
    }
    let mut times = Vec::with_capacity(steps);
    if profile {
        xfer::ops::profile::take();
        xfer::ops::profile::enable();
    }
    for _ in 0..steps.max(1) {
        let t = Instant::now();
        step()?;
        dev.synchronize()?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    if profile {
        xfer::ops::profile::disable();
        print_profile(&workload, &times);
    }
    times.sort_by(f64::total_cmp);
    let n = times.len();
    let median = if n % 2 == 1 {
        times[n / 2]
    } else {
        (times[n / 2 - 1] + times[n / 2]) / 2.0
    };
    let mut line = format!(
        "{workload} ms_per_step={median:.3} peak_rss_mb={:.0}",
        peak_rss_mb()
    );
    if let Some(items) = per_step_items {
        let unit = if workload == "imagefolder-read" {
            "images_per_s"
        } else {
            "sentences_per_s"
        };
        line.push_str(&format!(" {unit}={:.1}", items as f64 * 1000.0 / median));
    }
    if let Some(flop) = flop_per_step(&workload) {
        // Achieved rate at the median step and at the fastest step (the machine is shared).
        line.push_str(&format!(
            " gflop_per_step={:.2} gflops={:.1} gflops_best={:.1}",
            flop / 1e9,
            flop / 1e6 / median,
            flop / 1e6 / times[0]
        ));
    }
    println!("{line}");
    Ok(())
}

/// The share of the timed steps spent in each xfer kernel, and the rest (candle's own ops,
/// autograd's bookkeeping, the optimiser's candle ops), one `profile` line each.
fn print_profile(workload: &str, times: &[f64]) {
    let n = times.len().max(1) as f64;
    let total: f64 = times.iter().sum::<f64>() / 1000.0;
    let ops = xfer::ops::profile::take();
    let inside: f64 = ops.iter().map(|o| o.2).sum();
    for (op, calls, secs) in &ops {
        println!(
            "profile {workload} {op} calls_per_step={:.1} ms_per_step={:.2} share={:.1}%",
            *calls as f64 / n,
            secs * 1000.0 / n,
            100.0 * secs / total
        );
    }
    println!(
        "profile {workload} other(candle ops, autograd, optimiser) ms_per_step={:.2} share={:.1}%",
        (total - inside).max(0.0) * 1000.0 / n,
        100.0 * (total - inside).max(0.0) / total
    );
}

/// Side of the square matrices of `matmul-peak`.
const PEAK_N: usize = 1024;

/// Floating-point operations of one step where they are counted: convolutions and matrix
/// products, forward and backward (2 per multiply-add).
fn flop_per_step(workload: &str) -> Option<f64> {
    match workload {
        "matmul-peak" => Some(2.0 * (PEAK_N as f64).powi(3)),
        "finetune-resnet18" => Some(resnet18_flop(16, 64, 64, 10)),
        _ => None,
    }
}

/// Convolution and matmul FLOPs of one ResNet-18 training step on an `n × 3 × h × w` batch:
/// forward `2·N·O·OH·OW·C·K²` per convolution; backward the same again for the weight
/// gradient and again for the input gradient, except for `conv1`, whose input is the data
/// batch (no gradient); the head `fc` likewise (its input is an activation). Pooling, batch
/// norm and element-wise work are not counted.
fn resnet18_flop(n: usize, h: usize, w: usize, classes: usize) -> f64 {
    let out = |s: usize, k: usize, stride: usize, pad: usize| (s + 2 * pad - k) / stride + 1;
    let mut total = 0.0;
    let mut conv = |c: usize, o: usize, k: usize, oh: usize, ow: usize, input_grad: bool| {
        let f = 2.0 * (n * o * oh * ow * c * k * k) as f64;
        total += f * if input_grad { 3.0 } else { 2.0 };
    };
    let (mut hh, mut ww) = (out(h, 7, 2, 3), out(w, 7, 2, 3));
    conv(3, 64, 7, hh, ww, false);
    (hh, ww) = (out(hh, 3, 2, 1), out(ww, 3, 2, 1));
    let mut cin = 64;
    for (i, c) in [64usize, 128, 256, 512].into_iter().enumerate() {
        for b in 0..2 {
            let stride = if i > 0 && b == 0 { 2 } else { 1 };
            let (oh, ow) = (out(hh, 3, stride, 1), out(ww, 3, stride, 1));
            conv(cin, c, 3, oh, ow, true);
            conv(c, c, 3, oh, ow, true);
            if stride != 1 || cin != c {
                conv(cin, c, 1, oh, ow, true);
            }
            (hh, ww, cin) = (oh, ow, c);
        }
    }
    total + 3.0 * 2.0 * (n * 512 * classes) as f64
}

/// The machine's matrix-product rate: `C = A·B` for two `1024 × 1024` f32 matrices through
/// candle's `matmul` (the `gemm` crate, on the threads set by `RAYON_NUM_THREADS`).
fn matmul_peak(dev: &Device) -> Result<Step> {
    let mut rng = SeededRng::new(0);
    let a = rng.normal(&[PEAK_N, PEAK_N], 0.0, 1.0, DType::F32, dev)?;
    let b = rng.normal(&[PEAK_N, PEAK_N], 0.0, 1.0, DType::F32, dev)?;
    Ok(Box::new(move || {
        a.matmul(&b)?;
        Ok(())
    }))
}

/// Peak resident set size of this process in MB (`VmHWM`), 0 where unknown.
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn named(params: &[Param]) -> Vec<(String, Tensor)> {
    params
        .iter()
        .map(|p| (p.name().to_string(), p.tensor()))
        .collect()
}

fn labels(rng: &mut SeededRng, n: usize, classes: usize, dev: &Device) -> Result<Tensor> {
    let v: Vec<u32> = (0..n).map(|_| rng.below(classes) as u32).collect();
    Ok(Tensor::from_vec(v, n, dev)?)
}

/// The DANN LeNet both LeNet workloads train, with its store and the generator after it.
fn lenet(dev: &Device) -> Result<(SeededRng, ParamStore, DannLeNet)> {
    let mut rng = SeededRng::new(0);
    let store = ParamStore::new();
    let net = DannLeNet::new(
        &store.scope(""),
        &LeNetConfig::default(),
        &mut rng,
        DType::F32,
        dev,
    )?;
    Ok((rng, store, net))
}

/// DANN LeNet: 64 source + 64 target 3×28×28 images through the feature extractor as one
/// batch; cross-entropy on the source rows + BCE on all domain outputs behind a GRL (λ 0.5).
fn dann_lenet(dev: &Device) -> Result<Step> {
    let (mut rng, store, net) = lenet(dev)?;
    let mut dcfg = DomainDiscriminatorConfig::new(net.feature_dim(), 100, 1);
    dcfg.batch_norm = false;
    let disc = DomainDiscriminator::new(&store.scope("domain"), &dcfg, &mut rng, DType::F32, dev)?;
    let loss_d = DomainAdversarialLoss::new(move |h: &Tensor| disc.forward_t(h, true));
    let mut opt = Sgd::new(store.trainable(), SgdConfig::momentum(0.9))?;
    let x = rng.normal(&[128, 3, 28, 28], 0.0, 1.0, DType::F32, dev)?;
    let ys = labels(&mut rng, 64, 10, dev)?;
    Ok(Box::new(move || {
        let h = net.features_t(&x, true)?;
        let (hs, ht) = (h.narrow(0, 0, 64)?, h.narrow(0, 64, 64)?);
        let ly = cross_entropy(&net.head_forward(&hs, true)?, &ys)?;
        let ld = loss_d.forward(&hs, &ht, 0.5)?;
        let loss = (ly + ld.loss)?;
        opt.step(&loss.backward()?, 0.01)?;
        Ok(())
    }))
}

/// The source-only step that `dann-lenet` is compared with: the same LeNet, the same 64
/// source images, cross-entropy only (no target batch, no discriminator).
fn sourceonly_lenet(dev: &Device) -> Result<Step> {
    let (mut rng, store, net) = lenet(dev)?;
    let mut opt = Sgd::new(store.trainable(), SgdConfig::momentum(0.9))?;
    let x = rng.normal(&[64, 3, 28, 28], 0.0, 1.0, DType::F32, dev)?;
    let ys = labels(&mut rng, 64, 10, dev)?;
    Ok(Box::new(move || {
        let h = net.features_t(&x, true)?;
        let loss = cross_entropy(&net.head_forward(&h, true)?, &ys)?;
        opt.step(&loss.backward()?, 0.01)?;
        Ok(())
    }))
}

/// L2-SP MLP: 64→512→512 body, 512→10 head, batch 256; α = 0.1 on the body weights against
/// their starting values, β = 0.01 on the head weight.
fn l2sp_mlp(dev: &Device) -> Result<Step> {
    let mut rng = SeededRng::new(0);
    let store = ParamStore::new();
    let mlp = Mlp::new(
        &store.scope(""),
        &MlpConfig::new(64, &[512, 512], 10),
        &mut rng,
        DType::F32,
        dev,
    )?;
    let body: Vec<Param> = store.select(&"features".into());
    let anchor = ParamSnapshot::capture(body.iter().map(|p| (p.name(), p.var().as_tensor())))?;
    let reg = L2Sp::new(anchor, 0.1, 0.01)?.with_new_layers(["classifier"]);
    let mut opt = Sgd::new(store.trainable(), SgdConfig::momentum(0.9))?;
    let x = rng.normal(&[256, 64], 0.0, 1.0, DType::F32, dev)?;
    let y = labels(&mut rng, 256, 10, dev)?;
    let all = store.trainable();
    Ok(Box::new(move || {
        let logits = mlp.head_forward(&mlp.features_t(&x, true)?)?;
        let loss = (cross_entropy(&logits, &y)? + reg.penalty(&named(&all))?)?;
        opt.step(&loss.backward()?, 0.01)?;
        Ok(())
    }))
}

/// ResNet-18 fine-tuning: batch norm in training mode, 10-class head, batch 16 of 3×64×64;
/// α = 0.1 on every backbone weight with more than one dimension, β = 0.01 on the head weight.
fn finetune_resnet18(dev: &Device) -> Result<Step> {
    let mut rng = SeededRng::new(0);
    let store = ParamStore::new();
    let net = ResNet::resnet18(&store, 10, 0, DType::F32, dev)?;
    let backbone: Vec<Param> = store.select(&"!fc".into());
    let anchor = ParamSnapshot::capture(backbone.iter().map(|p| (p.name(), p.var().as_tensor())))?;
    let reg = L2Sp::new(anchor, 0.1, 0.01)?.with_new_layers(["fc"]);
    let mut opt = Sgd::new(store.trainable(), SgdConfig::momentum(0.9))?;
    let x = rng.normal(&[16, 3, 64, 64], 0.0, 1.0, DType::F32, dev)?;
    let y = labels(&mut rng, 16, 10, dev)?;
    let all = store.trainable();
    Ok(Box::new(move || {
        let logits = net.forward_t(&x, true)?;
        let loss = (cross_entropy(&logits, &y)? + reg.penalty(&named(&all))?)?;
        opt.step(&loss.backward()?, 0.01)?;
        Ok(())
    }))
}

/// Fine-tuning MobileNetV2 (torchvision layout, width 1.0) with a new 10-class head: batch 16
/// of 3×128×128, batch norm in training mode, dropout 0.2 (seeded), cross-entropy, SGD lr 0.01
/// momentum 0.9 on every parameter (bench/torch_extra.py is the PyTorch side).
fn finetune_mobilenet_v2(dev: &Device) -> Result<Step> {
    let mut rng = SeededRng::new(0);
    let store = ParamStore::new();
    let net = MobileNetV2::mobilenet_v2(&store, 1000, 0, DType::F32, dev)?
        .with_num_classes(10, &mut rng)?;
    let mut opt = Sgd::new(store.trainable(), SgdConfig::momentum(0.9))?;
    let x = rng.normal(&[16, 3, 128, 128], 0.0, 1.0, DType::F32, dev)?;
    let y = labels(&mut rng, 16, 10, dev)?;
    let mut drop = SeededRng::new(1);
    Ok(Box::new(move || {
        let logits = net.forward_with_rng(&x, true, &mut drop)?;
        let loss = cross_entropy(&logits, &y)?;
        opt.step(&loss.backward()?, 0.01)?;
        Ok(())
    }))
}

/// Zero-shot hinge: f 2048→256→128, g 85→128 linear, 40 classes with L2-normalised
/// attributes, batch 256, the lecture's hinge with k = 1, Adam lr 1e-3.
fn zsl_hinge(dev: &Device) -> Result<Step> {
    let mut rng = SeededRng::new(0);
    let store = ParamStore::new();
    let f = Mlp::new(
        &store.scope("f"),
        &MlpConfig::new(2048, &[256], 128),
        &mut rng,
        DType::F32,
        dev,
    )?;
    let g = Linear::new(&store.scope("g"), 85, 128, true, &mut rng, DType::F32, dev)?;
    let att = rng.uniform(&[40, 85], 0.0, 1.0, DType::F32, dev)?;
    let att = att.broadcast_div(&att.sqr()?.sum_keepdim(1)?.sqrt()?)?;
    let hinge = ZeroShotHinge::new(1.0)?;
    let mut opt = Adam::new(store.trainable(), AdamConfig::adam())?;
    let x = rng.normal(&[256, 2048], 0.0, 1.0, DType::F32, dev)?;
    let y = labels(&mut rng, 256, 40, dev)?;
    Ok(Box::new(move || {
        let fx = f.head_forward(&f.features_t(&x, true)?)?;
        let scores = fx.matmul(&g.forward(&att)?.t()?)?;
        let loss = hinge.forward(&scores, &y)?;
        opt.step(&loss.backward()?, 1e-3)?;
        Ok(())
    }))
}

/// all-MiniLM-L6-v2 sentence embeddings of a batch of 32 fixture sentences (tokenisation
/// included), as `bench/torch_extra.py` does on the PyTorch side.
fn embed_minilm(dev: &Device) -> Result<(Step, Option<usize>)> {
    let shared = std::env::var_os("XFER_SHARED")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from("../shared"));
    let dir = shared.join("models/all-MiniLM-L6-v2");
    if !dir.join("config.json").is_file() {
        println!(
            "skipped: embed-minilm (model not found at {}; set XFER_SHARED)",
            dir.display()
        );
        std::process::exit(0);
    }
    let enc = SentenceEncoder::load_on(&dir, DType::F32, dev)
        .with_context(|| format!("embed-minilm needs the model at {}", dir.display()))?;
    let fixture = shared.join("fixtures/minilm_embeddings.json");
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&fixture).with_context(|| format!("{}", fixture.display()))?,
    )?;
    let sentences: Vec<String> = json["sentences"]
        .as_array()
        .context("fixture has no `sentences` list")?
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    if sentences.is_empty() {
        bail!("{}: no sentences", fixture.display());
    }
    let batch: Vec<String> = (0..32)
        .map(|i| sentences[i % sentences.len()].clone())
        .collect();
    Ok((
        Box::new(move || {
            let refs: Vec<&str> = batch.iter().map(String::as_str).collect();
            enc.encode(&refs)?;
            Ok(())
        }),
        Some(32),
    ))
}
